/**
 * TLS-SRP: RFC 5054 (Using SRP for TLS Authentication) over RFC 5246 (TLS 1.2), the
 * `srp` method of XTLS (draft-meyer-xmpp-e2e-encryption-02 section 5). Public API.
 */
export { SrpTlsConnection, type SrpTlsConfig, type SrpTlsClientConfig, type SrpTlsServerConfig, type SrpTlsEvent, type SrpTlsOutput } from "./connection.js";
export { SrpTlsError, ALERTS, type AlertName, type SrpTlsCondition } from "./errors.js";
export { SRP_SUITES, SRP_SUITE_NAMES, isSrpSuiteName, type SrpSuiteName } from "./messages.js";
export { SRP_GROUP_BITS, DEFAULT_GROUP_BITS, srpGroup, knownGroup, type SrpGroup, type SrpGroupBits } from "./groups.js";
export {
  MemoryVerifierStore,
  createVerifier,
  parseTpasswd,
  formatTpasswd,
  TpasswdError,
  type VerifierRecord,
  type VerifierStore,
} from "./verifiers.js";
export { SIGNATURE_SCHEMES, type TlsCrypto, type TlsPrivateKey, type SignatureScheme } from "./crypto.js";
export { nodeTlsCrypto } from "./node-crypto.js";
export { srpTlsOverDuplex, readTpasswdFiles, pemCertificates, SrpTlsDuplex, type SrpTlsOptions } from "./node.js";
