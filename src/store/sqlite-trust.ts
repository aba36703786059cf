/**
 * The SQLite tables and statements of the identity and trust contract (schema v2):
 * our own signing keys, peers' keys, and the JIDs each peer key was presented by.
 *
 * Spec: XEP-0116 v0.16 section 7.3 "Verifying Keys", 7.4 "Key Associations" (remember
 * every received key's fingerprint, whether the user validated it, the JIDs associated
 * with it, its petname) and section 14 (private keys at rest; the file is 0600 and
 * `secure_delete` zeroes freed pages). XEP-0189 v0.14 section 4 (revocations). See
 * ./trust-types.ts for the contract and ./sqlite.ts for the file handling.
 */
import type Database from "better-sqlite3";
import { bareJid, type Jid } from "../core/types.js";
import { isSignAlg } from "../identity/keys.js";
import {
  makePeerKey,
  makeStoredIdentity,
  validateFingerprint,
  validatePetname,
  validatePutIdentity,
  validateRecordKeySeen,
  type KeyJidLink,
  type PeerKey,
  type PutIdentityArgs,
  type RecordKeySeenArgs,
  type StoredIdentity,
} from "./trust-types.js";
import { StoreError, validateTime } from "./types.js";

export const TRUST_MIGRATION_SQL = `
  CREATE TABLE identities (
    id          TEXT    NOT NULL PRIMARY KEY,
    account     TEXT    NOT NULL,
    alg         TEXT    NOT NULL,
    public_key  BLOB    NOT NULL,
    fingerprint TEXT    NOT NULL,
    private_key BLOB    NOT NULL,
    protection  TEXT    NOT NULL CHECK (protection IN ('none', 'passphrase')),
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    UNIQUE (account, fingerprint)
  );
  CREATE TABLE peer_keys (
    account                TEXT    NOT NULL,
    fingerprint            TEXT    NOT NULL,
    alg                    TEXT    NOT NULL,
    public_key             BLOB    NOT NULL,
    first_seen             INTEGER NOT NULL,
    last_seen              INTEGER NOT NULL,
    petname                TEXT,
    fingerprint_checked_at INTEGER,
    sas_confirmed_at       INTEGER,
    revoked_at             INTEGER,
    PRIMARY KEY (account, fingerprint)
  ) WITHOUT ROWID;
  CREATE TABLE peer_key_jids (
    account     TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    jid         TEXT    NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    accepted    INTEGER NOT NULL CHECK (accepted IN (0, 1)),
    PRIMARY KEY (account, fingerprint, jid),
    FOREIGN KEY (account, fingerprint) REFERENCES peer_keys (account, fingerprint) ON DELETE CASCADE
  ) WITHOUT ROWID;
  CREATE INDEX peer_key_jids_by_jid ON peer_key_jids (account, jid);
`;

function corrupt(table: string): StoreError {
  return new StoreError("corrupt", `malformed ${table} row in the database`);
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null;
}

function int(x: unknown, table: string): number {
  if (typeof x !== "number" || !Number.isSafeInteger(x)) throw corrupt(table);
  return x;
}

function optInt(x: unknown, table: string): number | undefined {
  return x === null || x === undefined ? undefined : int(x, table);
}

function str(x: unknown, table: string): string {
  if (typeof x !== "string") throw corrupt(table);
  return x;
}

function blob(x: unknown, table: string): Uint8Array {
  if (!(x instanceof Uint8Array) || x.length === 0) throw corrupt(table);
  return new Uint8Array(x);
}

function toIdentity(row: unknown): StoredIdentity {
  const t = "identities";
  if (!isRecord(row)) throw corrupt(t);
  const alg = str(row["alg"], t);
  const protection = row["protection"];
  if (!isSignAlg(alg) || (protection !== "none" && protection !== "passphrase")) throw corrupt(t);
  const revokedAt = optInt(row["revoked_at"], t);
  const raw = row["private_key"];
  const privateKey = blob(raw, t);
  if (raw instanceof Uint8Array) raw.fill(0);
  return makeStoredIdentity({
    id: str(row["id"], t),
    account: str(row["account"], t) as Jid,
    alg,
    publicKey: blob(row["public_key"], t),
    fingerprint: str(row["fingerprint"], t),
    privateKey,
    protection,
    createdAt: int(row["created_at"], t),
    ...(revokedAt === undefined ? {} : { revokedAt }),
  });
}

function toLink(row: unknown): KeyJidLink {
  const t = "peer_key_jids";
  if (!isRecord(row)) throw corrupt(t);
  const accepted = row["accepted"];
  if (accepted !== 0 && accepted !== 1) throw corrupt(t);
  return { jid: str(row["jid"], t) as Jid, firstSeen: int(row["first_seen"], t), lastSeen: int(row["last_seen"], t), accepted: accepted === 1 };
}

const ID_COLS = "id, account, alg, public_key, fingerprint, private_key, protection, created_at, revoked_at";
const PK_COLS = "account, fingerprint, alg, public_key, first_seen, last_seen, petname, fingerprint_checked_at, sas_confirmed_at, revoked_at";

/** Statements over the v2 tables; every method runs inside the caller's error mapping. */
export class TrustTables {
  private readonly q;
  private readonly recordTx;
  private readonly putTx;

  constructor(db: Database.Database) {
    this.q = {
      idByFp: db.prepare("SELECT id FROM identities WHERE account = ? AND fingerprint = ?"),
      idUpdate: db.prepare("UPDATE identities SET private_key = ?, protection = ? WHERE id = ?"),
      idInsert: db.prepare(`INSERT INTO identities (${ID_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)`),
      idGet: db.prepare(`SELECT ${ID_COLS} FROM identities WHERE id = ?`),
      idList: db.prepare(`SELECT ${ID_COLS} FROM identities WHERE account = ? ORDER BY created_at DESC, rowid DESC`),
      idRevoke: db.prepare("UPDATE identities SET revoked_at = min(coalesce(revoked_at, ?), ?) WHERE id = ?"),
      idRemove: db.prepare("DELETE FROM identities WHERE id = ?"),
      pkGet: db.prepare(`SELECT ${PK_COLS} FROM peer_keys WHERE account = ? AND fingerprint = ?`),
      pkList: db.prepare(`SELECT ${PK_COLS} FROM peer_keys WHERE account = ? ORDER BY last_seen DESC, fingerprint`),
      pkForJid: db.prepare(
        `SELECT ${PK_COLS} FROM peer_keys WHERE account = ? AND fingerprint IN
           (SELECT fingerprint FROM peer_key_jids WHERE account = ? AND jid = ?) ORDER BY last_seen DESC, fingerprint`,
      ),
      pkInsert: db.prepare(
        `INSERT INTO peer_keys (account, fingerprint, alg, public_key, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (account, fingerprint) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)`,
      ),
      linkUpsert: db.prepare(
        `INSERT INTO peer_key_jids (account, fingerprint, jid, first_seen, last_seen, accepted) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (account, fingerprint, jid) DO UPDATE SET
           last_seen = max(last_seen, excluded.last_seen), accepted = max(accepted, excluded.accepted)`,
      ),
      links: db.prepare("SELECT jid, first_seen, last_seen, accepted FROM peer_key_jids WHERE account = ? AND fingerprint = ? ORDER BY first_seen, jid"),
      setPetname: db.prepare("UPDATE peer_keys SET petname = ? WHERE account = ? AND fingerprint = ?"),
      fpChecked: db.prepare("UPDATE peer_keys SET fingerprint_checked_at = max(coalesce(fingerprint_checked_at, ?), ?) WHERE account = ? AND fingerprint = ?"),
      sasConfirmed: db.prepare("UPDATE peer_keys SET sas_confirmed_at = max(coalesce(sas_confirmed_at, ?), ?) WHERE account = ? AND fingerprint = ?"),
      revoke: db.prepare("UPDATE peer_keys SET revoked_at = min(coalesce(revoked_at, ?), ?) WHERE account = ? AND fingerprint = ?"),
      pkRemove: db.prepare("DELETE FROM peer_keys WHERE account = ? AND fingerprint = ?"),
    };
    const q = this.q;
    this.putTx = db.transaction((a: PutIdentityArgs): string => {
      const account = bareJid(a.account);
      const existing: unknown = q.idByFp.get(account, a.fingerprint);
      const key = Buffer.from(a.privateKey);
      try {
        if (existing !== undefined) {
          const id = str(isRecord(existing) ? existing["id"] : undefined, "identities");
          q.idUpdate.run(key, a.protection, id);
          return id;
        }
        const id = globalThis.crypto.randomUUID();
        q.idInsert.run(id, account, a.alg, Buffer.from(a.publicKey), a.fingerprint, key, a.protection, a.createdAt);
        return id;
      } finally {
        key.fill(0);
      }
    });
    this.recordTx = db.transaction((a: RecordKeySeenArgs): void => {
      const account = bareJid(a.account);
      q.pkInsert.run(account, a.fingerprint, a.alg, Buffer.from(a.publicKey), a.now, a.now);
      q.linkUpsert.run(account, a.fingerprint, bareJid(a.jid), a.now, a.now, a.accepted ? 1 : 0);
    });
  }

  private peerKeyOf(row: unknown): PeerKey {
    const t = "peer_keys";
    if (!isRecord(row)) throw corrupt(t);
    const alg = str(row["alg"], t);
    if (!isSignAlg(alg)) throw corrupt(t);
    const account = str(row["account"], t) as Jid;
    const fingerprint = str(row["fingerprint"], t);
    const petname = row["petname"];
    if (petname !== null && typeof petname !== "string") throw corrupt(t);
    const fingerprintCheckedAt = optInt(row["fingerprint_checked_at"], t);
    const sasConfirmedAt = optInt(row["sas_confirmed_at"], t);
    const revokedAt = optInt(row["revoked_at"], t);
    return makePeerKey({
      account,
      fingerprint,
      alg,
      publicKey: blob(row["public_key"], t),
      firstSeen: int(row["first_seen"], t),
      lastSeen: int(row["last_seen"], t),
      petname: petname ?? undefined,
      fingerprintCheckedAt,
      sasConfirmedAt,
      revokedAt,
      jids: this.q.links.all(account, fingerprint).map(toLink),
    });
  }

  putIdentity(a: PutIdentityArgs): StoredIdentity {
    validatePutIdentity(a);
    const id = this.putTx.immediate(a);
    const got = this.getIdentity(id);
    if (got === undefined) throw new StoreError("io", "putIdentity: row vanished");
    return got;
  }

  listIdentities(account: Jid): StoredIdentity[] {
    return this.q.idList.all(bareJid(account)).map(toIdentity);
  }

  getIdentity(id: string): StoredIdentity | undefined {
    const row: unknown = this.q.idGet.get(id);
    return row === undefined ? undefined : toIdentity(row);
  }

  revokeIdentity(id: string, now: number): void {
    validateTime(now);
    if (this.q.idRevoke.run(now, now, id).changes === 0) throw new StoreError("not-found", "revokeIdentity: no such identity");
  }

  /** Resolves whether a row was deleted; the caller scrubs the WAL. */
  removeIdentity(id: string): boolean {
    return this.q.idRemove.run(id).changes > 0;
  }

  recordKeySeen(a: RecordKeySeenArgs): PeerKey {
    validateRecordKeySeen(a);
    this.recordTx.immediate(a);
    const got = this.getPeerKey(a.account, a.fingerprint);
    if (got === undefined) throw new StoreError("io", "recordKeySeen: row vanished");
    return got;
  }

  getPeerKey(account: Jid, fingerprint: string): PeerKey | undefined {
    const row: unknown = this.q.pkGet.get(bareJid(account), fingerprint);
    return row === undefined ? undefined : this.peerKeyOf(row);
  }

  listPeerKeys(account: Jid): PeerKey[] {
    return this.q.pkList.all(bareJid(account)).map((r) => this.peerKeyOf(r));
  }

  keysForJid(account: Jid, jid: Jid): PeerKey[] {
    const a = bareJid(account);
    return this.q.pkForJid.all(a, a, bareJid(jid)).map((r) => this.peerKeyOf(r));
  }

  private mustChange(changes: number, op: string): void {
    if (changes === 0) throw new StoreError("not-found", `${op}: no such peer key`);
  }

  setPetname(account: Jid, fingerprint: string, petname: string | undefined): void {
    validatePetname(petname);
    this.mustChange(this.q.setPetname.run(petname ?? null, bareJid(account), fingerprint).changes, "setPetname");
  }

  acceptKeyForJid(account: Jid, fingerprint: string, jid: Jid, now: number): void {
    validateTime(now);
    const a = bareJid(account);
    if (this.q.pkGet.get(a, fingerprint) === undefined) throw new StoreError("not-found", "acceptKeyForJid: no such peer key");
    this.q.linkUpsert.run(a, fingerprint, bareJid(jid), now, now, 1);
  }

  markFingerprintChecked(account: Jid, fingerprint: string, now: number): void {
    validateTime(now);
    this.mustChange(this.q.fpChecked.run(now, now, bareJid(account), fingerprint).changes, "markFingerprintChecked");
  }

  markKeySasConfirmed(account: Jid, fingerprint: string, now: number): void {
    validateTime(now);
    this.mustChange(this.q.sasConfirmed.run(now, now, bareJid(account), fingerprint).changes, "markKeySasConfirmed");
  }

  revokePeerKey(account: Jid, fingerprint: string, now: number): void {
    validateTime(now);
    this.mustChange(this.q.revoke.run(now, now, bareJid(account), fingerprint).changes, "revokePeerKey");
  }

  removePeerKey(account: Jid, fingerprint: string): boolean {
    validateFingerprint(fingerprint);
    return this.q.pkRemove.run(bareJid(account), fingerprint).changes > 0;
  }
}
