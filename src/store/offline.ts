/**
 * Persistent state of XEP-0187 offline ESessions: the publisher's one-time option secrets
 * (N_A, x per group, expiry) and the replay set of d / N_B values, behind an async
 * interface; in memory here, SQLite in ./offline-sqlite.ts.
 *
 * Spec: XEP-0187 v0.5 section 3.1 ("MUST store her value of N_A, all her values of x ...
 * and the time ... they will expire in a secure way"), 3.4 (retrieve them on return;
 * "destroy in a secure way any persistently stored copies"), 6.1 ("MUST remember all the
 * values of d ... and reject any offline ESessions that specify a value of d she has
 * already received"). `take` removes a secret in the same step that returns it: a
 * one-time set can be used once, even by two devices or processes sharing the store.
 */
import type { Jid } from "../core/types.js";
import type { DhGroupId } from "../crypto/provider.js";

export interface StoredOfflineSecret {
  readonly id: string;
  readonly nonce: Uint8Array;
  readonly pairs: readonly { readonly group: DhGroupId; readonly x: Uint8Array }[];
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly stanzas: readonly string[];
  readonly logging: readonly string[];
  /**
   * The offered crypt_algs / hash_algs. Absent in sets stored before they were kept (SQLite:
   * not in the JSON body; PostgreSQL: NULL, the default of schema version 5's columns):
   * the reader then applies {@link LEGACY_OFFERED_CRYPT_ALGS} / {@link LEGACY_OFFERED_HASH_ALGS}.
   * Stores return exactly what was put.
   */
  readonly cryptAlgs?: readonly string[];
  readonly hashAlgs?: readonly string[];
}

/**
 * What a set stored before its offered algorithms were recorded allows: every cipher and
 * hash the code accepted when it was written (any one we supported). Fixed history, not
 * tied to today's list; such sets expire within their lifetime (7 days by default).
 */
export const LEGACY_OFFERED_CRYPT_ALGS: readonly string[] = Object.freeze(["aes256-ctr", "aes192-ctr", "aes128-ctr"]);
export const LEGACY_OFFERED_HASH_ALGS: readonly string[] = Object.freeze(["sha256", "sha384", "sha512"]);

export interface OfflineStore {
  put(account: Jid, secret: StoredOfflineSecret): Promise<void>;
  /** Ids and expiry of the sets still held (no secret bytes). */
  list(account: Jid): Promise<readonly { readonly id: string; readonly expiresAt: number }[]>;
  /**
   * A copy of the set `id` WITHOUT using it (undefined if unknown or used): the publisher
   * verifies an offline start with it and only then calls `take`, so a junk start naming
   * the (public) nonce cannot destroy the set. The caller wipes the copy.
   */
  get(account: Jid, id: string): Promise<StoredOfflineSecret | undefined>;
  /** Removes and returns the set `id` (undefined if unknown or already used). */
  take(account: Jid, id: string): Promise<StoredOfflineSecret | undefined>;
  /** Records a replay key; false when it was recorded before. */
  markSeen(account: Jid, key: string, now: number): Promise<boolean>;
  /** Destroys sets that expired before `now` and returns their ids. */
  expire(account: Jid, now: number): Promise<readonly string[]>;
  close(): Promise<void>;
}

function copy(s: StoredOfflineSecret): StoredOfflineSecret {
  return {
    ...s,
    nonce: s.nonce.slice(),
    pairs: s.pairs.map((p) => ({ group: p.group, x: p.x.slice() })),
    ...(s.cryptAlgs ? { cryptAlgs: [...s.cryptAlgs] } : {}),
    ...(s.hashAlgs ? { hashAlgs: [...s.hashAlgs] } : {}),
  };
}

export class MemoryOfflineStore implements OfflineStore {
  private readonly sets = new Map<string, StoredOfflineSecret>();
  private readonly seen = new Set<string>();
  private key(account: Jid, id: string): string {
    return `${account}\u0000${id}`;
  }
  async put(account: Jid, secret: StoredOfflineSecret): Promise<void> {
    this.sets.set(this.key(account, secret.id), copy(secret));
  }
  async list(account: Jid): Promise<readonly { id: string; expiresAt: number }[]> {
    const prefix = `${account}\u0000`;
    return [...this.sets].filter(([k]) => k.startsWith(prefix)).map(([, s]) => ({ id: s.id, expiresAt: s.expiresAt }));
  }
  async get(account: Jid, id: string): Promise<StoredOfflineSecret | undefined> {
    const s = this.sets.get(this.key(account, id));
    return s ? copy(s) : undefined;
  }
  async take(account: Jid, id: string): Promise<StoredOfflineSecret | undefined> {
    const k = this.key(account, id);
    const s = this.sets.get(k);
    if (!s) return undefined;
    this.sets.delete(k);
    const out = copy(s);
    for (const p of s.pairs) p.x.fill(0);
    return out;
  }
  async markSeen(account: Jid, key: string): Promise<boolean> {
    const k = this.key(account, key);
    if (this.seen.has(k)) return false;
    this.seen.add(k);
    return true;
  }
  async expire(account: Jid, now: number): Promise<readonly string[]> {
    const out: string[] = [];
    const prefix = `${account}\u0000`;
    for (const [k, s] of [...this.sets]) {
      if (k.startsWith(prefix) && s.expiresAt <= now) {
        for (const p of s.pairs) p.x.fill(0);
        this.sets.delete(k);
        out.push(s.id);
      }
    }
    return out;
  }
  async close(): Promise<void> {
    for (const s of this.sets.values()) for (const p of s.pairs) p.x.fill(0);
    this.sets.clear();
  }
}
