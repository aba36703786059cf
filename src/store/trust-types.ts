/**
 * The identity and trust contract of the store: our long-term signing keys, and what we
 * learned about our peers' keys (which JIDs presented them, petnames, how they were
 * verified, revocations).
 *
 * Spec: XEP-0116 v0.16 section 7.3 "Verifying Keys" (#sec-keys: "Bob could communicate
 * the full SHA-256 fingerprint of his public key to Alice via secure out-of-band
 * communication") and section 7.4 "Key Associations" (#sec-associations):
 * - "An entity SHOULD remember the fingerprints of all public keys it receives, and
 *   remember whether or not they have been validated by the user" (`PeerKey`,
 *   `fingerprintCheckedAt`, `sasConfirmedAt`);
 * - "Entities MUST associate one or more JIDs with each public key fingerprint that they
 *   store" (`PeerKey.jids`);
 * - "Entities SHOULD associate a 'petname' with each public key fingerprint" (`petname`).
 * Section 14 ("save private keys to a file in cleartext!"): our private keys are stored
 * either sealed under a passphrase (src/identity/keyfile.ts) or, at least, in the 0600
 * database file.
 * XEP-0189 v0.14 section 4 (revocations): `revokedAt` on both our and peers' keys.
 *
 * Like ./types.ts: every method returns a Promise; JIDs are stored bare; values are
 * copied in and out; errors are StoreError ("io", "corrupt", "not-found"); malformed
 * arguments reject with RangeError. The alerts themselves are computed by src/trust/.
 */
import type { Jid } from "../core/types.js";
import type { SignAlg } from "../identity/keys.js";
import { validateTime } from "./types.js";
import type { Store } from "./types.js";

export type KeyProtection = "none" | "passphrase";

/** One of our own long-term signing keys, as stored. */
export interface StoredIdentity {
  /** Opaque id. */
  readonly id: string;
  /** Our bare JID the key belongs to. */
  readonly account: Jid;
  readonly alg: SignAlg;
  /** SubjectPublicKeyInfo DER. */
  readonly publicKey: Uint8Array;
  /** XEP-0116 fingerprint (Base64 SHA-256 of the canonical Normalized <KeyValue/>). */
  readonly fingerprint: string;
  /**
   * PKCS#8 DER when `protection` is "none"; the UTF-8 JSON of a sealed key
   * (src/identity/keyfile.ts SealedPrivateKey) when "passphrase". Redacted from
   * inspect/JSON.
   */
  readonly privateKey: Uint8Array;
  readonly protection: KeyProtection;
  readonly createdAt: number;
  /** Set once we revoked the key (XEP-0189 section 4). */
  readonly revokedAt?: number;
}

export interface PutIdentityArgs {
  readonly account: Jid;
  readonly alg: SignAlg;
  readonly publicKey: Uint8Array;
  readonly fingerprint: string;
  readonly privateKey: Uint8Array;
  readonly protection: KeyProtection;
  readonly createdAt: number;
}

export interface IdentityStore {
  /**
   * Stores a key; a key with the same (account, fingerprint) is updated in place (keeping
   * its id, createdAt and revocation), e.g. to change its passphrase.
   */
  putIdentity(args: PutIdentityArgs): Promise<StoredIdentity>;
  /** Our keys for `account`, newest first, revoked ones included. */
  listIdentities(account: Jid): Promise<StoredIdentity[]>;
  getIdentity(id: string): Promise<StoredIdentity | undefined>;
  /** Marks a key revoked (keeps the earliest time). Rejects "not-found". */
  revokeIdentity(id: string, now: number): Promise<void>;
  /** Destroys a key (securely deleted). Resolves to whether it existed. */
  removeIdentity(id: string): Promise<boolean>;
}

/** A JID a peer key was presented by. */
export interface KeyJidLink {
  /** Bare JID. */
  readonly jid: Jid;
  readonly firstSeen: number;
  readonly lastSeen: number;
  /**
   * Whether the user accepted that this JID uses this key: automatically for the first
   * key a JID ever presents (trust on first use), otherwise only by a user decision
   * (verify / accept). Unaccepted links keep raising alerts (src/trust/).
   */
  readonly accepted: boolean;
}

/** A peer's public key as remembered (XEP-0116 section 7.4). */
export interface PeerKey {
  readonly account: Jid;
  /** XEP-0116 fingerprint (Base64 SHA-256 of the canonical Normalized <KeyValue/>). */
  readonly fingerprint: string;
  readonly alg: SignAlg;
  /** SubjectPublicKeyInfo DER. */
  readonly publicKey: Uint8Array;
  readonly firstSeen: number;
  readonly lastSeen: number;
  readonly petname?: string;
  /** When the user compared the full fingerprint out of band (XEP-0116 7.3). */
  readonly fingerprintCheckedAt?: number;
  /** When the user confirmed a SAS of a session authenticated by this key. */
  readonly sasConfirmedAt?: number;
  /** When we stopped trusting the key (ours or the owner's XEP-0189 revocation). */
  readonly revokedAt?: number;
  /** Every JID that presented the key, oldest first. */
  readonly jids: readonly KeyJidLink[];
}

export interface RecordKeySeenArgs {
  readonly account: Jid;
  readonly jid: Jid;
  readonly fingerprint: string;
  readonly alg: SignAlg;
  readonly publicKey: Uint8Array;
  readonly now: number;
  /** Accept the (jid, key) link (it is never un-accepted by this call). */
  readonly accepted: boolean;
}

export interface TrustStore {
  /**
   * Records that `jid` presented the key: inserts the key (or updates `lastSeen`) and the
   * (key, jid) link (`lastSeen`, `accepted ||= args.accepted`). Resolves to the key.
   */
  recordKeySeen(args: RecordKeySeenArgs): Promise<PeerKey>;
  getPeerKey(account: Jid, fingerprint: string): Promise<PeerKey | undefined>;
  /** All keys of `account`'s peers, most recently seen first. */
  listPeerKeys(account: Jid): Promise<PeerKey[]>;
  /** The keys `jid` (bare) ever presented, most recently seen first. */
  keysForJid(account: Jid, jid: Jid): Promise<PeerKey[]>;
  /** Sets (or, with undefined, clears) a key's petname. Rejects "not-found". */
  setPetname(account: Jid, fingerprint: string, petname: string | undefined): Promise<void>;
  /** Accepts that `jid` uses the key (creates the link if needed). Rejects "not-found". */
  acceptKeyForJid(account: Jid, fingerprint: string, jid: Jid, now: number): Promise<void>;
  /** Records an out-of-band fingerprint check (keeps the latest time). Rejects "not-found". */
  markFingerprintChecked(account: Jid, fingerprint: string, now: number): Promise<void>;
  /** Records a SAS confirmed in a session authenticated by the key (latest time). Rejects "not-found". */
  markKeySasConfirmed(account: Jid, fingerprint: string, now: number): Promise<void>;
  /** Marks the key revoked (keeps the earliest time). Rejects "not-found". */
  revokePeerKey(account: Jid, fingerprint: string, now: number): Promise<void>;
  /** Forgets a key and its links. Resolves to whether it existed. */
  removePeerKey(account: Jid, fingerprint: string): Promise<boolean>;
}

/** Everything the default stores implement. */
export type FullStore = Store & IdentityStore & TrustStore;

const PETNAME_MAX = 256;

export function validatePutIdentity(a: PutIdentityArgs): void {
  if (!(a.publicKey instanceof Uint8Array) || a.publicKey.length === 0) throw new RangeError("publicKey must be a non-empty Uint8Array");
  if (!(a.privateKey instanceof Uint8Array) || a.privateKey.length === 0) throw new RangeError("privateKey must be a non-empty Uint8Array");
  if (a.protection !== "none" && a.protection !== "passphrase") throw new RangeError("protection must be none or passphrase");
  validateFingerprint(a.fingerprint);
  validateTime(a.createdAt);
}

export function validateRecordKeySeen(a: RecordKeySeenArgs): void {
  if (!(a.publicKey instanceof Uint8Array) || a.publicKey.length === 0) throw new RangeError("publicKey must be a non-empty Uint8Array");
  validateFingerprint(a.fingerprint);
  validateTime(a.now);
}

export function validateFingerprint(fp: string): void {
  if (typeof fp !== "string" || fp.length === 0 || fp.length > 200) throw new RangeError("bad fingerprint");
}

export function validatePetname(p: string | undefined): void {
  if (p === undefined) return;
  // Petnames are shown prominently (XEP-0116 7.4): no control characters, bounded length.
  // eslint-disable-next-line no-control-regex
  if (p.trim().length === 0 || p.length > PETNAME_MAX || /[\u0000-\u001f\u007f]/.test(p)) throw new RangeError("bad petname");
}

/** A PeerKey's fields as a backend reads them: absent optionals may come as undefined. */
export type PeerKeyFields = Omit<PeerKey, "petname" | "fingerprintCheckedAt" | "sasConfirmedAt" | "revokedAt"> & {
  readonly petname?: string | undefined;
  readonly fingerprintCheckedAt?: number | undefined;
  readonly sasConfirmedAt?: number | undefined;
  readonly revokedAt?: number | undefined;
};

/** Builds a PeerKey, leaving out the optional fields a backend has no value for. */
export function makePeerKey(f: PeerKeyFields): PeerKey {
  return {
    account: f.account,
    fingerprint: f.fingerprint,
    alg: f.alg,
    publicKey: f.publicKey,
    firstSeen: f.firstSeen,
    lastSeen: f.lastSeen,
    ...(f.petname === undefined ? {} : { petname: f.petname }),
    ...(f.fingerprintCheckedAt === undefined ? {} : { fingerprintCheckedAt: f.fingerprintCheckedAt }),
    ...(f.sasConfirmedAt === undefined ? {} : { sasConfirmedAt: f.sasConfirmedAt }),
    ...(f.revokedAt === undefined ? {} : { revokedAt: f.revokedAt }),
    jids: f.jids,
  };
}

/** In-memory backends: a key's links, oldest first (ties by JID), as copies. */
export function sortedLinks(links: Iterable<KeyJidLink>): KeyJidLink[] {
  return [...links].sort((a, b) => a.firstSeen - b.firstSeen || (a.jid < b.jid ? -1 : 1)).map((l) => ({ ...l }));
}

const REDACTED = "[private key redacted]";

/** Builds a StoredIdentity whose private key cannot leak through inspect or JSON. */
export function makeStoredIdentity(f: StoredIdentity): StoredIdentity {
  const r: StoredIdentity = {
    id: f.id,
    account: f.account,
    alg: f.alg,
    publicKey: f.publicKey,
    fingerprint: f.fingerprint,
    privateKey: f.privateKey,
    protection: f.protection,
    createdAt: f.createdAt,
    ...(f.revokedAt === undefined ? {} : { revokedAt: f.revokedAt }),
  };
  const describe = () => ({ ...r, publicKey: `[${r.publicKey.length} bytes]`, privateKey: REDACTED });
  Object.defineProperty(r, "toJSON", { value: describe, enumerable: false });
  Object.defineProperty(r, Symbol.for("nodejs.util.inspect.custom"), { value: describe, enumerable: false });
  return r;
}
