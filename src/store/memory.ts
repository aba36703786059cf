/**
 * In-memory {@link Store}: the reference implementation of the store contract, for tests,
 * simulations and the demo. Nothing survives the process.
 *
 * Spec: XEP-0116 v0.16 sections 4.7.3 / 4.8.1 and XEP-0217 v0.1 sections 4.5.4 / 4.6.1
 * (retained secrets: one per peer client, the old one destroyed when the new one is
 * stored), section 4.7.2 / 4.5.3 (remembering SAS confirmation) and XEP-0116 section 7.3
 * (remembering whether the chain was validated by a SAS). See ./types.ts.
 *
 * Destroyed secrets are overwritten with zeros (best effort: JS may hold other copies).
 * Every secret is copied on the way in and on the way out.
 *
 * Also the identity and trust contract (./trust-types.ts; XEP-0116 sections 7.3, 7.4, 14).
 */
import { wipe } from "../core/bytes.js";
import { bareJid, type Clock, type Jid } from "../core/types.js";
import {
  makePeerKey,
  makeStoredIdentity,
  sortedLinks,
  validateFingerprint,
  validatePetname,
  validatePutIdentity,
  validateRecordKeySeen,
  type FullStore,
  type IdentityStore,
  type PeerKey,
  type PutIdentityArgs,
  type RecordKeySeenArgs,
  type StoredIdentity,
  type TrustStore,
} from "./trust-types.js";
import {
  makeRetainedSecret,
  StoreError,
  type ReplaceRetainedSecretArgs,
  type RetainedSecret,
  type SasState,
  type Store,
  validateReplaceArgs,
  validateTime,
} from "./types.js";

interface Row {
  id: string;
  account: Jid;
  peer: Jid;
  secret: Uint8Array;
  createdAt: number;
  verifiedChain: boolean;
  /** Insertion order, to break createdAt ties like the SQLite store (rowid). */
  seq: number;
}

export interface MemoryStoreOptions {
  /** Unused by the memory store; accepted for symmetry with `openSqliteStore`. */
  readonly clock?: Clock;
}

function out(r: Row): RetainedSecret {
  return makeRetainedSecret({
    id: r.id,
    account: r.account,
    peer: r.peer,
    secret: r.secret.slice(),
    createdAt: r.createdAt,
    verifiedChain: r.verifiedChain,
  });
}

function newestFirst(a: Row, b: Row): number {
  return b.createdAt - a.createdAt || b.seq - a.seq;
}

type IdentityRow = { -readonly [K in keyof StoredIdentity]: StoredIdentity[K] };

interface PeerKeyRow {
  account: Jid;
  fingerprint: string;
  alg: PeerKey["alg"];
  publicKey: Uint8Array;
  firstSeen: number;
  lastSeen: number;
  petname?: string;
  fingerprintCheckedAt?: number;
  sasConfirmedAt?: number;
  revokedAt?: number;
  jids: Map<Jid, { jid: Jid; firstSeen: number; lastSeen: number; accepted: boolean }>;
}

function peerKeyOut(r: PeerKeyRow): PeerKey {
  return makePeerKey({ ...r, publicKey: r.publicKey.slice(), jids: sortedLinks(r.jids.values()) });
}

function identityOut(r: IdentityRow): StoredIdentity {
  return makeStoredIdentity({ ...r, publicKey: r.publicKey.slice(), privateKey: r.privateKey.slice() });
}

function byLastSeen(a: PeerKeyRow, b: PeerKeyRow): number {
  return b.lastSeen - a.lastSeen || (a.fingerprint < b.fingerprint ? -1 : 1);
}

export class MemoryStore implements Store, IdentityStore, TrustStore, FullStore {
  private readonly rows = new Map<string, Row>();
  private readonly sas = new Map<string, number>();
  private readonly identities = new Map<string, IdentityRow & { seq: number }>();
  private readonly peerKeys = new Map<string, PeerKeyRow>();
  private seq = 0;
  private closed = false;

  constructor(_opts: MemoryStoreOptions = {}) {}

  private open(): void {
    if (this.closed) throw new StoreError("io", "store is closed");
  }

  async list(account: Jid, peer: Jid): Promise<RetainedSecret[]> {
    this.open();
    const a = bareJid(account);
    const p = bareJid(peer);
    return [...this.rows.values()]
      .filter((r) => r.account === a && r.peer === p)
      .sort(newestFirst)
      .map(out);
  }

  async listAll(account: Jid): Promise<RetainedSecret[]> {
    this.open();
    const a = bareJid(account);
    return [...this.rows.values()]
      .filter((r) => r.account === a)
      .sort(newestFirst)
      .map(out);
  }

  async replace(args: ReplaceRetainedSecretArgs): Promise<RetainedSecret> {
    this.open();
    validateReplaceArgs(args);
    const account = bareJid(args.account);
    let verifiedChain = args.verifiedChain;
    // Check first, mutate after: either both steps happen or neither does.
    if (args.oldSecretId !== undefined) {
      const old = this.rows.get(args.oldSecretId);
      if (old === undefined || old.account !== account)
        throw new StoreError("not-found", "replace: the old retained secret no longer exists");
      verifiedChain ||= old.verifiedChain;
      wipe(old.secret);
      this.rows.delete(old.id);
    }
    const row: Row = {
      id: globalThis.crypto.randomUUID(),
      account,
      peer: bareJid(args.peer),
      secret: args.secret.slice(),
      createdAt: args.now,
      verifiedChain,
      seq: this.seq++,
    };
    this.rows.set(row.id, row);
    return out(row);
  }

  async remove(id: string): Promise<boolean> {
    this.open();
    const r = this.rows.get(id);
    if (r === undefined) return false;
    wipe(r.secret);
    return this.rows.delete(id);
  }

  async expire(before: number): Promise<number> {
    this.open();
    let n = 0;
    for (const r of [...this.rows.values()]) {
      if (r.createdAt < before) {
        wipe(r.secret);
        this.rows.delete(r.id);
        n++;
      }
    }
    return n;
  }

  async markChainVerified(id: string): Promise<void> {
    this.open();
    const r = this.rows.get(id);
    if (r === undefined) throw new StoreError("not-found", "markChainVerified: no such retained secret");
    r.verifiedChain = true;
  }

  async getSasState(account: Jid, peer: Jid): Promise<SasState> {
    this.open();
    const at = this.sas.get(sasKey(account, peer));
    return at === undefined ? { confirmed: false } : { confirmed: true, confirmedAt: at };
  }

  async setSasConfirmed(account: Jid, peer: Jid, now: number): Promise<void> {
    this.open();
    validateTime(now);
    const k = sasKey(account, peer);
    this.sas.set(k, Math.max(now, this.sas.get(k) ?? now));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.rows.values()) wipe(r.secret);
    this.rows.clear();
    this.sas.clear();
    for (const r of this.identities.values()) wipe(r.privateKey);
    this.identities.clear();
    this.peerKeys.clear();
  }

  // ---- IdentityStore ----

  async putIdentity(args: PutIdentityArgs): Promise<StoredIdentity> {
    this.open();
    validatePutIdentity(args);
    const account = bareJid(args.account);
    const existing = [...this.identities.values()].find((r) => r.account === account && r.fingerprint === args.fingerprint);
    if (existing !== undefined) {
      wipe(existing.privateKey);
      existing.privateKey = args.privateKey.slice();
      existing.protection = args.protection;
      return identityOut(existing);
    }
    const row = {
      id: globalThis.crypto.randomUUID(),
      account,
      alg: args.alg,
      publicKey: args.publicKey.slice(),
      fingerprint: args.fingerprint,
      privateKey: args.privateKey.slice(),
      protection: args.protection,
      createdAt: args.createdAt,
      seq: this.seq++,
    };
    this.identities.set(row.id, row);
    return identityOut(row);
  }

  async listIdentities(account: Jid): Promise<StoredIdentity[]> {
    this.open();
    const a = bareJid(account);
    return [...this.identities.values()]
      .filter((r) => r.account === a)
      .sort((x, y) => y.createdAt - x.createdAt || y.seq - x.seq)
      .map(identityOut);
  }

  async getIdentity(id: string): Promise<StoredIdentity | undefined> {
    this.open();
    const r = this.identities.get(id);
    return r === undefined ? undefined : identityOut(r);
  }

  async revokeIdentity(id: string, now: number): Promise<void> {
    this.open();
    validateTime(now);
    const r = this.identities.get(id);
    if (r === undefined) throw new StoreError("not-found", "revokeIdentity: no such identity");
    r.revokedAt = Math.min(now, r.revokedAt ?? now);
  }

  async removeIdentity(id: string): Promise<boolean> {
    this.open();
    const r = this.identities.get(id);
    if (r === undefined) return false;
    wipe(r.privateKey);
    return this.identities.delete(id);
  }

  // ---- TrustStore ----

  private peerKey(account: Jid, fingerprint: string, op: string): PeerKeyRow {
    const r = this.peerKeys.get(pkKey(account, fingerprint));
    if (r === undefined) throw new StoreError("not-found", `${op}: no such peer key`);
    return r;
  }

  async recordKeySeen(args: RecordKeySeenArgs): Promise<PeerKey> {
    this.open();
    validateRecordKeySeen(args);
    const account = bareJid(args.account);
    const jid = bareJid(args.jid);
    const k = pkKey(account, args.fingerprint);
    let r = this.peerKeys.get(k);
    if (r === undefined) {
      r = {
        account,
        fingerprint: args.fingerprint,
        alg: args.alg,
        publicKey: args.publicKey.slice(),
        firstSeen: args.now,
        lastSeen: args.now,
        jids: new Map(),
      };
      this.peerKeys.set(k, r);
    } else r.lastSeen = Math.max(r.lastSeen, args.now);
    const l = r.jids.get(jid);
    if (l === undefined) r.jids.set(jid, { jid, firstSeen: args.now, lastSeen: args.now, accepted: args.accepted });
    else {
      l.lastSeen = Math.max(l.lastSeen, args.now);
      l.accepted ||= args.accepted;
    }
    return peerKeyOut(r);
  }

  async getPeerKey(account: Jid, fingerprint: string): Promise<PeerKey | undefined> {
    this.open();
    const r = this.peerKeys.get(pkKey(account, fingerprint));
    return r === undefined ? undefined : peerKeyOut(r);
  }

  async listPeerKeys(account: Jid): Promise<PeerKey[]> {
    this.open();
    const a = bareJid(account);
    return [...this.peerKeys.values()].filter((r) => r.account === a).sort(byLastSeen).map(peerKeyOut);
  }

  async keysForJid(account: Jid, jid: Jid): Promise<PeerKey[]> {
    this.open();
    const a = bareJid(account);
    const j = bareJid(jid);
    return [...this.peerKeys.values()]
      .filter((r) => r.account === a && r.jids.has(j))
      .sort(byLastSeen)
      .map(peerKeyOut);
  }

  async setPetname(account: Jid, fingerprint: string, petname: string | undefined): Promise<void> {
    this.open();
    validatePetname(petname);
    const r = this.peerKey(account, fingerprint, "setPetname");
    if (petname === undefined) delete r.petname;
    else r.petname = petname;
  }

  async acceptKeyForJid(account: Jid, fingerprint: string, jid: Jid, now: number): Promise<void> {
    this.open();
    validateTime(now);
    const r = this.peerKey(account, fingerprint, "acceptKeyForJid");
    const j = bareJid(jid);
    const l = r.jids.get(j);
    if (l === undefined) r.jids.set(j, { jid: j, firstSeen: now, lastSeen: now, accepted: true });
    else l.accepted = true;
  }

  async markFingerprintChecked(account: Jid, fingerprint: string, now: number): Promise<void> {
    this.open();
    validateTime(now);
    const r = this.peerKey(account, fingerprint, "markFingerprintChecked");
    r.fingerprintCheckedAt = Math.max(now, r.fingerprintCheckedAt ?? now);
  }

  async markKeySasConfirmed(account: Jid, fingerprint: string, now: number): Promise<void> {
    this.open();
    validateTime(now);
    const r = this.peerKey(account, fingerprint, "markKeySasConfirmed");
    r.sasConfirmedAt = Math.max(now, r.sasConfirmedAt ?? now);
  }

  async revokePeerKey(account: Jid, fingerprint: string, now: number): Promise<void> {
    this.open();
    validateTime(now);
    const r = this.peerKey(account, fingerprint, "revokePeerKey");
    r.revokedAt = Math.min(now, r.revokedAt ?? now);
  }

  async removePeerKey(account: Jid, fingerprint: string): Promise<boolean> {
    this.open();
    validateFingerprint(fingerprint);
    return this.peerKeys.delete(pkKey(account, fingerprint));
  }
}

function pkKey(account: Jid, fingerprint: string): string {
  return `${bareJid(account)}\u0000${fingerprint}`;
}

function sasKey(account: Jid, peer: Jid): string {
  // NUL cannot occur in a JID, so the key is unambiguous.
  return `${bareJid(account)}\u0000${bareJid(peer)}`;
}
