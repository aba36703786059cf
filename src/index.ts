/**
 * xmpp-e2e public API: end-to-end encryption for XMPP.
 *
 * Spec: XEP-0217 / XEP-0116 (negotiation), XEP-0200 (stanza encryption), XEP-0155 (stanza
 * sessions), XEP-0201 (threads), XEP-0030 / XEP-0115 (discovery). See README.md.
 */
export { SecureClient, type ClientEvent, type Established, type SecureClientOptions, type Timers } from "./client/secure-client.js";
export { ESession, DEFAULT_POLICY, type ESessionEvent, type Policy, type SessionParams, type NegotiatedOptions } from "./esession/session.js";
export { StanzaChannel } from "./esession/channel.js";
export { ESessionError, type ESessionCondition } from "./esession/errors.js";
export { SPEC_PROFILE, GAJIM_PROFILE, profileByName, type Profile, type ProfileName } from "./esession/profile.js";
export { checkVectorFile, type VectorCheck } from "./esession/vectors.js";
export type { StanzaConnection } from "./adapters/connection.js";
export { AdapterError } from "./adapters/connection.js";
export { Switchboard } from "./adapters/switchboard.js";
export { connectXmpp, type XmppConnectOptions } from "./adapters/xmpp-client.js";
export { openSqliteStore } from "./store/sqlite.js";
export { MemoryStore } from "./store/memory.js";
export { StoreError, type Store, type RetainedSecretStore, type SasStore, type RetainedSecret } from "./store/types.js";
export { nodeCrypto, systemRandom, systemClock } from "./crypto/node.js";
export type { CryptoProvider, ModpGroup, HashAlg } from "./crypto/provider.js";
export { parseJid, parseFullJid, bareJid, type Jid, type FullJid, type ThreadId, type Random, type Clock } from "./core/types.js";
export { el, parseXml, type Element } from "./xml/index.js";

// Asynchronous signing (a non-extractable WebCrypto key, a token): docs/esession.md.
export type { AnySigningIdentity, AsyncSigningIdentity, SigningIdentity, KeyVerifier, PeerKey, PubkeyMethod } from "./esession/identity.js";
export type { SignRequest } from "./esession/session.js";
export { signingIdentity, keyVerifier } from "./client/keys.js";
// Limits and DoS resistance: docs/security.md.
export { DEFAULT_LIMITS, configureLimits, getLimits, resetLimits, type Limits } from "./limits.js";
// The PostgreSQL store (deployments with several processes) is the separate entry point
// "xmpp-e2e/postgres", so that only its users need the optional `pg` package: docs/store.md.

// Each layer as a namespace (their own docs in docs/): many devices and carbons, the encrypted
// archive, identity keys, trust, XEP-0189 public keys, RFC 3923 objects, XTLS and its transports.
export * as devices from "./devices/index.js";
export * as archive from "./archive/index.js";
export * as identity from "./identity/index.js";
export * as trust from "./trust/index.js";
export * as pubkey from "./pubkey/index.js";
export * as smime from "./smime/index.js";
export * as xtls from "./xtls/index.js";
export * as jingle from "./jingle/index.js";
export * as ibb from "./ibb/index.js";
export * as socks5 from "./socks5/index.js";
export * as streams from "./streams/index.js";
export * as tlsSrp from "./tls-srp/index.js";
