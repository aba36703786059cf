/**
 * Public surface of the object-encryption layer (draft-ietf-xmpp-e2e-03 / RFC 3923):
 * S/MIME signing and encryption of CPIM messages and PIDF presence in <e2e/>.
 * See docs/object-encryption.md.
 */
export { SmimeError, type SmimeErrorCondition, SMIME_ERROR_CONDITIONS, stanzaErrorFor } from "./errors.js";
export { type ContentCipher, CONTENT_CIPHERS, type SmimeIdentity, signDetached, verifyDetached, envelope, openEnvelope } from "./cms.js";
export {
  generateIdentity,
  xmppAddrs,
  checkAddressBinding,
  validateChain,
  importCertificates,
  importPrivateKey,
  toPem,
  fromPem,
  ID_ON_XMPP_ADDR,
} from "./certs.js";
export {
  type CertificateStore,
  type ListableCertificateStore,
  type StoredCertificate,
  MemoryCertificateStore,
  FileCertificateStore,
} from "./certstore.js";
export { TrustCertificateStore, type TrustCertificateStoreOptions, isCaCertificate } from "./trust-store.js";
export {
  type CertificateWithChain,
  type FetchedCertificate,
  type FetchedCertificates,
  type PublishCertificateOptions,
  certificatePubKey,
  certificateFromPubKey,
  certificateItemId,
  certificateUri,
  certificatesFromUri,
  certificateResponder,
  publishCertificate,
  retractCertificate,
  fetchCertificates,
  requestCertificate,
  PKIX_CERT_URI_PREFIX,
  CERTS_ONLY_URI_PREFIX,
  CERTIFICATE_ITEM_PREFIX,
  DEFAULT_MAX_ITEMS,
} from "./publish.js";
export { protectEntity, unprotectEntity, type ProtectOptions, type UnprotectedEntity } from "./protect.js";
export { NS_E2E, wrapObject, stripWrapper, e2eText, findE2e } from "./e2e.js";
export { ObjectSession, ObjectClient, type ObjectEvent, type ObjectPolicy, DEFAULT_OBJECT_POLICY } from "./session.js";
export { OBJECT_ENCRYPTION_FEATURES, CERTIFICATE_PUBLISHING_FEATURES } from "./features.js";
