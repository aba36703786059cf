/**
 * Our own long-term identity keys over an IdentityStore: create, import, unlock (with a
 * passphrase when sealed), pick the current key, revoke.
 *
 * Spec: XEP-0116 v0.16 section 4.1 (the signing key behind `init_pubkey` / `resp_pubkey`
 * 'key' and 'hash'), section 14 (private keys at rest: sealed under a passphrase with
 * scrypt + AES-256-GCM, see ./keyfile.ts, or at least in the 0600 store), XEP-0189 v0.14
 * section 4 (a revoked key is never used again).
 */
import { fromUtf8, utf8 } from "../core/bytes.js";
import { bareJid, type Jid } from "../core/types.js";
import type { CryptoProvider } from "../crypto/provider.js";
import type { IdentityStore, StoredIdentity } from "../store/trust-types.js";
import { IdentityError } from "./errors.js";
import { createIdentityKey, makeIdentityKey, parseSealed, sealPrivateKey, unsealPrivateKey, type IdentityKey, type SealOptions } from "./keyfile.js";
import type { GenerateOptions, SignAlg } from "./keys.js";
import { keyFingerprint } from "./keyvalue.js";

export interface KeyringOptions {
  readonly store: IdentityStore;
  readonly crypto: CryptoProvider;
}

export class Keyring {
  constructor(private readonly opts: KeyringOptions) {}

  /** Generates a key for `account` and stores it (sealed when a passphrase is given). */
  async create(account: Jid, alg: SignAlg, now: number, opts: GenerateOptions & SealOptions & { passphrase?: string } = {}): Promise<StoredIdentity> {
    return this.add(account, createIdentityKey(alg, now, opts), opts);
  }

  /** Stores an existing key (e.g. imported from a file); re-adding a key updates its protection. */
  async add(account: Jid, key: IdentityKey, opts: SealOptions & { passphrase?: string } = {}): Promise<StoredIdentity> {
    const sealed = opts.passphrase === undefined ? undefined : utf8(JSON.stringify(sealPrivateKey(key, opts.passphrase, opts)));
    return this.opts.store.putIdentity({
      account: bareJid(account),
      alg: key.alg,
      publicKey: key.publicKey,
      fingerprint: keyFingerprint(this.opts.crypto, key.publicKey),
      privateKey: sealed ?? key.privateKey,
      protection: sealed === undefined ? "none" : "passphrase",
      createdAt: key.createdAt,
    });
  }

  /** The newest non-revoked key of `account` (optionally of one algorithm). */
  async current(account: Jid, alg?: SignAlg): Promise<StoredIdentity | undefined> {
    const all = await this.opts.store.listIdentities(account);
    return all.find((k) => k.revokedAt === undefined && (alg === undefined || k.alg === alg));
  }

  async list(account: Jid): Promise<StoredIdentity[]> {
    return this.opts.store.listIdentities(account);
  }

  /** Finds a key by id or by (a prefix of at least 8 characters of) its fingerprint. */
  async find(account: Jid, ref: string): Promise<StoredIdentity | undefined> {
    const all = await this.opts.store.listIdentities(account);
    const exact = all.find((k) => k.id === ref || k.fingerprint === ref);
    if (exact !== undefined) return exact;
    if (ref.length < 8) return undefined;
    const matches = all.filter((k) => k.fingerprint.startsWith(ref));
    return matches.length === 1 ? matches[0] : undefined;
  }

  /** The usable key (private half in clear, in memory only). Throws IdentityError for sealed keys without the right passphrase. */
  unlock(stored: StoredIdentity, passphrase?: string): IdentityKey {
    if (stored.revokedAt !== undefined) throw new IdentityError("revoked", "the key was revoked");
    if (stored.protection === "none")
      return makeIdentityKey({ alg: stored.alg, publicKey: stored.publicKey, privateKey: stored.privateKey, createdAt: stored.createdAt });
    if (passphrase === undefined) throw new IdentityError("passphrase-required", "the key is protected by a passphrase");
    let sealed: unknown;
    try {
      sealed = JSON.parse(fromUtf8(stored.privateKey));
    } catch {
      throw new IdentityError("malformed-key", "sealed key in the store");
    }
    const privateKey = unsealPrivateKey(parseSealed(sealed), passphrase, stored.alg, stored.publicKey);
    return makeIdentityKey({ alg: stored.alg, publicKey: stored.publicKey, privateKey, createdAt: stored.createdAt });
  }

  async revoke(id: string, now: number): Promise<void> {
    await this.opts.store.revokeIdentity(id, now);
  }

  async remove(id: string): Promise<boolean> {
    return this.opts.store.removeIdentity(id);
  }
}
