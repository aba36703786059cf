/**
 * The project's store contracts (src/store/types.ts Store, src/store/trust-types.ts
 * IdentityStore + TrustStore) over IndexedDB, so the web client keeps what every other
 * client keeps across visits: retained secrets, SAS confirmations, the peers' key
 * fingerprints and the user's trust decisions, plus the account settings of the login
 * form (never the password).
 *
 * Spec: XEP-0116 v0.16 sections 4.7.3 / 4.8.1 and XEP-0217 v0.1 sections 4.5.4 / 4.6.1
 * (retained secrets: the old SRS destroyed in the same transaction that stores the new
 * one, "MUST securely store the new value"), 4.7.2 / 4.5.3 (remembering that a SAS was
 * confirmed), 7.3 (whether the chain was validated) and 7.4 (remember every key received,
 * the JIDs that presented it, petnames); W3C Indexed Database API 3.0 (one readwrite
 * transaction per operation makes `replace` atomic; values are structured clones, so
 * Uint8Array round-trips). Semantics follow the reference MemoryStore (src/store/memory.ts)
 * exactly; the contract tests run against both (test/browser/idb-store.test.ts).
 *
 * What IndexedDB cannot do: securely delete. A removed secret is overwritten with zeros
 * in a first write and then deleted, which is the best a page can do; the browser profile
 * is the user's, as the 0600 SQLite file is on a desktop. Identity private keys in this
 * store are bytes (the contract's PKCS#8); the web client itself keeps its own key as a
 * non-extractable CryptoKey (./keystore.ts) and does not use `putIdentity`.
 */
import { bareJid, type Jid } from "../core/types.js";
import {
  makePeerKey,
  makeStoredIdentity,
  sortedLinks,
  validateFingerprint,
  validatePetname,
  validatePutIdentity,
  validateRecordKeySeen,
  type FullStore,
  type KeyJidLink,
  type PeerKey,
  type PutIdentityArgs,
  type RecordKeySeenArgs,
  type StoredIdentity,
} from "../store/trust-types.js";
import {
  makeRetainedSecret,
  StoreError,
  type ReplaceRetainedSecretArgs,
  type RetainedSecret,
  type SasState,
  validateReplaceArgs,
  validateTime,
} from "../store/types.js";

export const IDB_STORE_NAME = "xmpp-e2e-state";
const VERSION = 1;
const S = { retained: "retained", sas: "sas", identities: "identities", peerKeys: "peerKeys", settings: "settings", meta: "meta" } as const;
type StoreName = (typeof S)[keyof typeof S];

interface RetainedRow {
  id: string;
  account: Jid;
  peer: Jid;
  secret: Uint8Array;
  createdAt: number;
  verifiedChain: boolean;
  seq: number;
}

interface SasRow {
  key: string;
  confirmedAt: number;
}

interface IdentityRow {
  id: string;
  account: Jid;
  alg: StoredIdentity["alg"];
  publicKey: Uint8Array;
  fingerprint: string;
  privateKey: Uint8Array;
  protection: StoredIdentity["protection"];
  createdAt: number;
  revokedAt?: number;
  seq: number;
}

interface PeerKeyRow {
  key: string;
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
  jids: KeyJidLink[];
}

/** What the login form remembers per account (never the password). */
export interface AccountSettings {
  /** The bare JID. */
  readonly account: string;
  readonly service: string;
  readonly resource: string;
  readonly lastLogin: number;
}

const k2 = (a: string, b: string): string => `${a}\u0000${b}`;

function req<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error ?? new DOMException("request failed", "UnknownError"));
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new DOMException("transaction aborted", "AbortError"));
    tx.onerror = () => reject(tx.error ?? new DOMException("transaction failed", "UnknownError"));
  });
}

function retainedOut(r: RetainedRow): RetainedSecret {
  return makeRetainedSecret({ id: r.id, account: r.account, peer: r.peer, secret: r.secret.slice(), createdAt: r.createdAt, verifiedChain: r.verifiedChain });
}

function peerKeyOut(r: PeerKeyRow): PeerKey {
  return makePeerKey({ ...r, publicKey: r.publicKey.slice(), jids: sortedLinks(r.jids) });
}

function identityOut(r: IdentityRow): StoredIdentity {
  return makeStoredIdentity({
    id: r.id,
    account: r.account,
    alg: r.alg,
    publicKey: r.publicKey.slice(),
    fingerprint: r.fingerprint,
    privateKey: r.privateKey.slice(),
    protection: r.protection,
    createdAt: r.createdAt,
    ...(r.revokedAt === undefined ? {} : { revokedAt: r.revokedAt }),
  });
}

const newestFirst = (a: RetainedRow, b: RetainedRow): number => b.createdAt - a.createdAt || b.seq - a.seq;
const byLastSeen = (a: PeerKeyRow, b: PeerKeyRow): number => b.lastSeen - a.lastSeen || (a.fingerprint < b.fingerprint ? -1 : 1);

/** Opens (creating or upgrading) the database; rejects with StoreError("io"). */
export async function openIdbStore(name: string = IDB_STORE_NAME, factory: IDBFactory = indexedDB): Promise<IdbStore> {
  const r = factory.open(name, VERSION);
  r.onupgradeneeded = () => {
    const db = r.result;
    if (!db.objectStoreNames.contains(S.retained)) db.createObjectStore(S.retained, { keyPath: "id" }).createIndex("account", "account");
    if (!db.objectStoreNames.contains(S.sas)) db.createObjectStore(S.sas, { keyPath: "key" });
    if (!db.objectStoreNames.contains(S.identities)) db.createObjectStore(S.identities, { keyPath: "id" }).createIndex("account", "account");
    if (!db.objectStoreNames.contains(S.peerKeys)) db.createObjectStore(S.peerKeys, { keyPath: "key" }).createIndex("account", "account");
    if (!db.objectStoreNames.contains(S.settings)) db.createObjectStore(S.settings, { keyPath: "account" });
    if (!db.objectStoreNames.contains(S.meta)) db.createObjectStore(S.meta);
  };
  try {
    return new IdbStore(await req(r));
  } catch (e) {
    throw new StoreError("io", "could not open the browser database", e instanceof DOMException ? e.name : undefined);
  }
}

export class IdbStore implements FullStore {
  private closed = false;

  constructor(private readonly db: IDBDatabase) {}

  /**
   * Runs `body` in one transaction over `stores`; resolves once the transaction committed.
   * Only IndexedDB requests may be awaited inside `body` (anything else would let the
   * transaction commit early). Errors become StoreError("io") with the DOMException's name;
   * StoreErrors and RangeErrors thrown by `body` abort the transaction and pass through.
   */
  private async tx<T>(op: string, stores: StoreName[], mode: IDBTransactionMode, body: (t: IDBTransaction) => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError("io", `${op}: store is closed`);
    let t: IDBTransaction;
    try {
      t = this.db.transaction(stores, mode);
    } catch (e) {
      throw new StoreError("io", `${op}: cannot start a transaction`, e instanceof DOMException ? e.name : undefined);
    }
    const committed = done(t);
    committed.catch(() => undefined);
    let value: T;
    try {
      value = await body(t);
    } catch (e) {
      try {
        t.abort();
      } catch {
        /* already finished */
      }
      if (e instanceof StoreError || e instanceof RangeError) throw e;
      throw new StoreError("io", `${op} failed`, e instanceof DOMException ? e.name : undefined);
    }
    try {
      await committed;
    } catch (e) {
      throw new StoreError("io", `${op}: the transaction did not commit`, e instanceof DOMException ? e.name : undefined);
    }
    return value;
  }

  private async nextSeq(t: IDBTransaction): Promise<number> {
    const meta = t.objectStore(S.meta);
    const n = ((await req(meta.get("seq"))) as number | undefined) ?? 0;
    await req(meta.put(n + 1, "seq"));
    return n;
  }

  private static async byAccount<R>(t: IDBTransaction, store: StoreName, account: Jid): Promise<R[]> {
    return (await req(t.objectStore(store).index("account").getAll(account))) as R[];
  }

  // ---- Store: retained secrets ----

  async list(account: Jid, peer: Jid): Promise<RetainedSecret[]> {
    const a = bareJid(account);
    const p = bareJid(peer);
    return this.tx("list", [S.retained], "readonly", async (t) =>
      (await IdbStore.byAccount<RetainedRow>(t, S.retained, a)).filter((r) => r.peer === p).sort(newestFirst).map(retainedOut),
    );
  }

  async listAll(account: Jid): Promise<RetainedSecret[]> {
    const a = bareJid(account);
    return this.tx("listAll", [S.retained], "readonly", async (t) => (await IdbStore.byAccount<RetainedRow>(t, S.retained, a)).sort(newestFirst).map(retainedOut));
  }

  async replace(args: ReplaceRetainedSecretArgs): Promise<RetainedSecret> {
    validateReplaceArgs(args);
    const account = bareJid(args.account);
    const id = globalThis.crypto.randomUUID();
    return this.tx("replace", [S.retained, S.meta], "readwrite", async (t) => {
      const store = t.objectStore(S.retained);
      let verifiedChain = args.verifiedChain;
      if (args.oldSecretId !== undefined) {
        const old = (await req(store.get(args.oldSecretId))) as RetainedRow | undefined;
        if (old === undefined || old.account !== account) throw new StoreError("not-found", "replace: the old retained secret no longer exists");
        verifiedChain ||= old.verifiedChain;
        await req(store.put({ ...old, secret: new Uint8Array(old.secret.length) }));
        await req(store.delete(old.id));
      }
      const row: RetainedRow = { id, account, peer: bareJid(args.peer), secret: args.secret.slice(), createdAt: args.now, verifiedChain, seq: await this.nextSeq(t) };
      await req(store.add(row));
      return retainedOut(row);
    });
  }

  async remove(id: string): Promise<boolean> {
    return this.tx("remove", [S.retained], "readwrite", async (t) => {
      const store = t.objectStore(S.retained);
      const r = (await req(store.get(id))) as RetainedRow | undefined;
      if (r === undefined) return false;
      await req(store.put({ ...r, secret: new Uint8Array(r.secret.length) }));
      await req(store.delete(id));
      return true;
    });
  }

  async expire(before: number): Promise<number> {
    validateTime(before);
    return this.tx("expire", [S.retained], "readwrite", async (t) => {
      const store = t.objectStore(S.retained);
      const all = (await req(store.getAll())) as RetainedRow[];
      let n = 0;
      for (const r of all) {
        if (r.createdAt >= before) continue;
        await req(store.put({ ...r, secret: new Uint8Array(r.secret.length) }));
        await req(store.delete(r.id));
        n++;
      }
      return n;
    });
  }

  async markChainVerified(id: string): Promise<void> {
    return this.tx("markChainVerified", [S.retained], "readwrite", async (t) => {
      const store = t.objectStore(S.retained);
      const r = (await req(store.get(id))) as RetainedRow | undefined;
      if (r === undefined) throw new StoreError("not-found", "markChainVerified: no such retained secret");
      await req(store.put({ ...r, verifiedChain: true }));
    });
  }

  // ---- Store: SAS ----

  async getSasState(account: Jid, peer: Jid): Promise<SasState> {
    return this.tx("getSasState", [S.sas], "readonly", async (t) => {
      const r = (await req(t.objectStore(S.sas).get(k2(bareJid(account), bareJid(peer))))) as SasRow | undefined;
      return r === undefined ? { confirmed: false } : { confirmed: true, confirmedAt: r.confirmedAt };
    });
  }

  async setSasConfirmed(account: Jid, peer: Jid, now: number): Promise<void> {
    validateTime(now);
    const key = k2(bareJid(account), bareJid(peer));
    return this.tx("setSasConfirmed", [S.sas], "readwrite", async (t) => {
      const store = t.objectStore(S.sas);
      const r = (await req(store.get(key))) as SasRow | undefined;
      await req(store.put({ key, confirmedAt: Math.max(now, r?.confirmedAt ?? now) }));
    });
  }

  /** Closes the database. Later calls reject with StoreError("io"). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  // ---- IdentityStore ----

  async putIdentity(args: PutIdentityArgs): Promise<StoredIdentity> {
    validatePutIdentity(args);
    const account = bareJid(args.account);
    const id = globalThis.crypto.randomUUID();
    return this.tx("putIdentity", [S.identities, S.meta], "readwrite", async (t) => {
      const store = t.objectStore(S.identities);
      const existing = (await IdbStore.byAccount<IdentityRow>(t, S.identities, account)).find((r) => r.fingerprint === args.fingerprint);
      if (existing !== undefined) {
        const row: IdentityRow = { ...existing, privateKey: args.privateKey.slice(), protection: args.protection };
        await req(store.put(row));
        return identityOut(row);
      }
      const row: IdentityRow = {
        id,
        account,
        alg: args.alg,
        publicKey: args.publicKey.slice(),
        fingerprint: args.fingerprint,
        privateKey: args.privateKey.slice(),
        protection: args.protection,
        createdAt: args.createdAt,
        seq: await this.nextSeq(t),
      };
      await req(store.add(row));
      return identityOut(row);
    });
  }

  async listIdentities(account: Jid): Promise<StoredIdentity[]> {
    const a = bareJid(account);
    return this.tx("listIdentities", [S.identities], "readonly", async (t) =>
      (await IdbStore.byAccount<IdentityRow>(t, S.identities, a)).sort((x, y) => y.createdAt - x.createdAt || y.seq - x.seq).map(identityOut),
    );
  }

  async getIdentity(id: string): Promise<StoredIdentity | undefined> {
    return this.tx("getIdentity", [S.identities], "readonly", async (t) => {
      const r = (await req(t.objectStore(S.identities).get(id))) as IdentityRow | undefined;
      return r === undefined ? undefined : identityOut(r);
    });
  }

  async revokeIdentity(id: string, now: number): Promise<void> {
    validateTime(now);
    return this.tx("revokeIdentity", [S.identities], "readwrite", async (t) => {
      const store = t.objectStore(S.identities);
      const r = (await req(store.get(id))) as IdentityRow | undefined;
      if (r === undefined) throw new StoreError("not-found", "revokeIdentity: no such identity");
      await req(store.put({ ...r, revokedAt: Math.min(now, r.revokedAt ?? now) }));
    });
  }

  async removeIdentity(id: string): Promise<boolean> {
    return this.tx("removeIdentity", [S.identities], "readwrite", async (t) => {
      const store = t.objectStore(S.identities);
      const r = (await req(store.get(id))) as IdentityRow | undefined;
      if (r === undefined) return false;
      await req(store.put({ ...r, privateKey: new Uint8Array(r.privateKey.length) }));
      await req(store.delete(id));
      return true;
    });
  }

  // ---- TrustStore ----

  private async peerKeyRow(t: IDBTransaction, account: Jid, fingerprint: string, op: string): Promise<PeerKeyRow> {
    const r = (await req(t.objectStore(S.peerKeys).get(k2(bareJid(account), fingerprint)))) as PeerKeyRow | undefined;
    if (r === undefined) throw new StoreError("not-found", `${op}: no such peer key`);
    return r;
  }

  async recordKeySeen(args: RecordKeySeenArgs): Promise<PeerKey> {
    validateRecordKeySeen(args);
    const account = bareJid(args.account);
    const jid = bareJid(args.jid);
    const key = k2(account, args.fingerprint);
    return this.tx("recordKeySeen", [S.peerKeys], "readwrite", async (t) => {
      const store = t.objectStore(S.peerKeys);
      const found = (await req(store.get(key))) as PeerKeyRow | undefined;
      const r: PeerKeyRow = found ?? {
        key,
        account,
        fingerprint: args.fingerprint,
        alg: args.alg,
        publicKey: args.publicKey.slice(),
        firstSeen: args.now,
        lastSeen: args.now,
        jids: [],
      };
      if (found) r.lastSeen = Math.max(r.lastSeen, args.now);
      const i = r.jids.findIndex((l) => l.jid === jid);
      const l = r.jids[i];
      if (l === undefined) r.jids.push({ jid, firstSeen: args.now, lastSeen: args.now, accepted: args.accepted });
      else r.jids[i] = { ...l, lastSeen: Math.max(l.lastSeen, args.now), accepted: l.accepted || args.accepted };
      await req(store.put(r));
      return peerKeyOut(r);
    });
  }

  async getPeerKey(account: Jid, fingerprint: string): Promise<PeerKey | undefined> {
    return this.tx("getPeerKey", [S.peerKeys], "readonly", async (t) => {
      const r = (await req(t.objectStore(S.peerKeys).get(k2(bareJid(account), fingerprint)))) as PeerKeyRow | undefined;
      return r === undefined ? undefined : peerKeyOut(r);
    });
  }

  async listPeerKeys(account: Jid): Promise<PeerKey[]> {
    const a = bareJid(account);
    return this.tx("listPeerKeys", [S.peerKeys], "readonly", async (t) => (await IdbStore.byAccount<PeerKeyRow>(t, S.peerKeys, a)).sort(byLastSeen).map(peerKeyOut));
  }

  async keysForJid(account: Jid, jid: Jid): Promise<PeerKey[]> {
    const a = bareJid(account);
    const j = bareJid(jid);
    return this.tx("keysForJid", [S.peerKeys], "readonly", async (t) =>
      (await IdbStore.byAccount<PeerKeyRow>(t, S.peerKeys, a))
        .filter((r) => r.jids.some((l) => l.jid === j))
        .sort(byLastSeen)
        .map(peerKeyOut),
    );
  }

  private update(op: string, account: Jid, fingerprint: string, change: (r: PeerKeyRow) => void): Promise<void> {
    return this.tx(op, [S.peerKeys], "readwrite", async (t) => {
      const r = await this.peerKeyRow(t, account, fingerprint, op);
      change(r);
      await req(t.objectStore(S.peerKeys).put(r));
    });
  }

  async setPetname(account: Jid, fingerprint: string, petname: string | undefined): Promise<void> {
    validatePetname(petname);
    return this.update("setPetname", account, fingerprint, (r) => {
      if (petname === undefined) delete r.petname;
      else r.petname = petname;
    });
  }

  async acceptKeyForJid(account: Jid, fingerprint: string, jid: Jid, now: number): Promise<void> {
    validateTime(now);
    const j = bareJid(jid);
    return this.update("acceptKeyForJid", account, fingerprint, (r) => {
      const i = r.jids.findIndex((l) => l.jid === j);
      const l = r.jids[i];
      if (l === undefined) r.jids.push({ jid: j, firstSeen: now, lastSeen: now, accepted: true });
      else r.jids[i] = { ...l, accepted: true };
    });
  }

  async markFingerprintChecked(account: Jid, fingerprint: string, now: number): Promise<void> {
    validateTime(now);
    return this.update("markFingerprintChecked", account, fingerprint, (r) => {
      r.fingerprintCheckedAt = Math.max(now, r.fingerprintCheckedAt ?? now);
    });
  }

  async markKeySasConfirmed(account: Jid, fingerprint: string, now: number): Promise<void> {
    validateTime(now);
    return this.update("markKeySasConfirmed", account, fingerprint, (r) => {
      r.sasConfirmedAt = Math.max(now, r.sasConfirmedAt ?? now);
    });
  }

  async revokePeerKey(account: Jid, fingerprint: string, now: number): Promise<void> {
    validateTime(now);
    return this.update("revokePeerKey", account, fingerprint, (r) => {
      r.revokedAt = Math.min(now, r.revokedAt ?? now);
    });
  }

  async removePeerKey(account: Jid, fingerprint: string): Promise<boolean> {
    validateFingerprint(fingerprint);
    return this.tx("removePeerKey", [S.peerKeys], "readwrite", async (t) => {
      const store = t.objectStore(S.peerKeys);
      const key = k2(bareJid(account), fingerprint);
      if ((await req(store.get(key))) === undefined) return false;
      await req(store.delete(key));
      return true;
    });
  }

  // ---- account settings (the login form; never the password) ----

  async getSettings(account: string): Promise<AccountSettings | undefined> {
    return this.tx("getSettings", [S.settings], "readonly", async (t) => (await req(t.objectStore(S.settings).get(account))) as AccountSettings | undefined);
  }

  /** The most recently used account's settings (to prefill the form). */
  async lastSettings(): Promise<AccountSettings | undefined> {
    return this.tx("lastSettings", [S.settings], "readonly", async (t) =>
      ((await req(t.objectStore(S.settings).getAll())) as AccountSettings[]).sort((a, b) => b.lastLogin - a.lastLogin)[0],
    );
  }

  async putSettings(s: AccountSettings): Promise<void> {
    validateTime(s.lastLogin);
    return this.tx("putSettings", [S.settings], "readwrite", async (t) => {
      await req(t.objectStore(S.settings).put({ account: s.account, service: s.service, resource: s.resource, lastLogin: s.lastLogin }));
    });
  }
}
