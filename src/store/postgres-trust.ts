/**
 * The identity and trust contract (./trust-types.ts) on PostgreSQL: our own signing keys,
 * peers' keys and the JIDs each peer key was presented by (schema version 2 of
 * ./postgres-db.ts).
 *
 * Spec: XEP-0116 v0.16 section 7.3 "Verifying Keys" and 7.4 "Key Associations" (remember
 * every received key's fingerprint, whether the user validated it, the JIDs associated
 * with it, its petname), section 14 (private keys at rest), XEP-0189 v0.14 section 4
 * (revocations). Same semantics as ./sqlite-trust.ts and ./memory.ts.
 *
 * Concurrency (several processes on one database): `putIdentity` is one
 * `INSERT ... ON CONFLICT (account, fingerprint) DO UPDATE ... RETURNING`, so two
 * processes storing the same key end with one row; `recordKeySeen` upserts the key and
 * then the link in one transaction (always in that order, so concurrent calls cannot
 * deadlock) and reads the result inside it; times only move the way the contract says
 * (`greatest` / `least`), so the order in which processes commit does not matter. A key
 * and its links are read by one statement (one snapshot).
 */
import { bareJid, type Jid } from "../core/types.js";
import { isSignAlg } from "../identity/keys.js";
import { PgDb, bool, bytes, int, optInt, pgCorrupt, str, toPgStoreError, type Queryable, type Row } from "./postgres-db.js";
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

const ID_COLS = "id, account, alg, public_key, fingerprint, private_key, protection, created_at, revoked_at";

function toIdentity(row: Row): StoredIdentity {
  const t = "identities";
  const alg = str(row["alg"], t);
  const protection = row["protection"];
  if (!isSignAlg(alg) || (protection !== "none" && protection !== "passphrase")) throw pgCorrupt(t);
  const revokedAt = optInt(row["revoked_at"], t);
  return makeStoredIdentity({
    id: str(row["id"], t),
    account: str(row["account"], t) as Jid,
    alg,
    publicKey: bytes(row["public_key"], t),
    fingerprint: str(row["fingerprint"], t),
    privateKey: bytes(row["private_key"], t),
    protection,
    createdAt: int(row["created_at"], t),
    ...(revokedAt === undefined ? {} : { revokedAt }),
  });
}

function toLink(x: unknown): KeyJidLink {
  const t = "peer_key_jids";
  if (typeof x !== "object" || x === null) throw pgCorrupt(t);
  const r = x as Row;
  return { jid: str(r["jid"], t) as Jid, firstSeen: int(r["first_seen"], t), lastSeen: int(r["last_seen"], t), accepted: bool(r["accepted"], t) };
}

function toPeerKey(row: Row): PeerKey {
  const t = "peer_keys";
  const alg = str(row["alg"], t);
  if (!isSignAlg(alg)) throw pgCorrupt(t);
  const petname = row["petname"];
  if (petname !== null && typeof petname !== "string") throw pgCorrupt(t);
  const fingerprintCheckedAt = optInt(row["fingerprint_checked_at"], t);
  const sasConfirmedAt = optInt(row["sas_confirmed_at"], t);
  const revokedAt = optInt(row["revoked_at"], t);
  const jids = row["jids"];
  if (!Array.isArray(jids)) throw pgCorrupt(t);
  return makePeerKey({
    account: str(row["account"], t) as Jid,
    fingerprint: str(row["fingerprint"], t),
    alg,
    publicKey: bytes(row["public_key"], t),
    firstSeen: int(row["first_seen"], t),
    lastSeen: int(row["last_seen"], t),
    petname: petname ?? undefined,
    fingerprintCheckedAt,
    sasConfirmedAt,
    revokedAt,
    jids: jids.map(toLink),
  });
}

/** Statements over the v2 tables, on the store's {@link PgDb}. */
export class PgTrustTables {
  private readonly ids: string;
  private readonly keys: string;
  private readonly links: string;
  /** A peer key with its links aggregated in the same statement (one snapshot). */
  private readonly keySelect: string;
  /** JIDs and fingerprints order byte-wise whatever the database's collation (like SQLite). */
  private readonly keyOrder = `ORDER BY k.last_seen DESC, k.fingerprint COLLATE "C"`;

  constructor(private readonly db: PgDb) {
    this.ids = `${db.s}.identities`;
    this.keys = `${db.s}.peer_keys`;
    this.links = `${db.s}.peer_key_jids`;
    this.keySelect = `SELECT k.account, k.fingerprint, k.alg, k.public_key, k.first_seen, k.last_seen, k.petname,
        k.fingerprint_checked_at, k.sas_confirmed_at, k.revoked_at,
        coalesce((SELECT json_agg(json_build_object('jid', l.jid, 'first_seen', l.first_seen, 'last_seen', l.last_seen,
                    'accepted', l.accepted) ORDER BY l.first_seen, l.jid COLLATE "C")
                  FROM ${this.links} l WHERE l.account = k.account AND l.fingerprint = k.fingerprint), '[]'::json) AS jids
      FROM ${this.keys} k`;
  }

  async putIdentity(a: PutIdentityArgs): Promise<StoredIdentity> {
    this.db.live();
    validatePutIdentity(a);
    const key = Buffer.from(a.privateKey);
    try {
      // Same (account, fingerprint) again: update the private key and protection in place
      // (e.g. a new passphrase), keeping id, createdAt and any revocation.
      const r = await this.db.query(
        "putIdentity",
        `INSERT INTO ${this.ids} AS i (id, account, alg, public_key, fingerprint, private_key, protection, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (account, fingerprint) DO UPDATE SET private_key = excluded.private_key, protection = excluded.protection
         RETURNING ${ID_COLS}`,
        [globalThis.crypto.randomUUID(), bareJid(a.account), a.alg, Buffer.from(a.publicKey), a.fingerprint, key, a.protection, a.createdAt],
      );
      const row = r.rows[0];
      if (row === undefined) throw new StoreError("io", "putIdentity: no row returned");
      return toIdentity(row);
    } finally {
      key.fill(0);
    }
  }

  async listIdentities(account: Jid): Promise<StoredIdentity[]> {
    const r = await this.db.query("listIdentities", `SELECT ${ID_COLS} FROM ${this.ids} WHERE account = $1 ORDER BY created_at DESC, seq DESC`, [
      bareJid(account),
    ]);
    return r.rows.map(toIdentity);
  }

  async getIdentity(id: string): Promise<StoredIdentity | undefined> {
    const r = await this.db.query("getIdentity", `SELECT ${ID_COLS} FROM ${this.ids} WHERE id = $1`, [id]);
    const row = r.rows[0];
    return row === undefined ? undefined : toIdentity(row);
  }

  async revokeIdentity(id: string, now: number): Promise<void> {
    this.db.live();
    validateTime(now);
    const r = await this.db.query("revokeIdentity", `UPDATE ${this.ids} SET revoked_at = least(coalesce(revoked_at, $1), $1) WHERE id = $2`, [now, id]);
    if ((r.rowCount ?? 0) === 0) throw new StoreError("not-found", "revokeIdentity: no such identity");
  }

  async removeIdentity(id: string): Promise<boolean> {
    const r = await this.db.query("removeIdentity", `DELETE FROM ${this.ids} WHERE id = $1`, [id]);
    return (r.rowCount ?? 0) > 0;
  }

  private async readKey(q: Queryable, account: Jid, fingerprint: string): Promise<PeerKey | undefined> {
    const r = await q.query<Row>(`${this.keySelect} WHERE k.account = $1 AND k.fingerprint = $2`, [account, fingerprint]);
    const row = r.rows[0];
    return row === undefined ? undefined : toPeerKey(row);
  }

  async recordKeySeen(a: RecordKeySeenArgs): Promise<PeerKey> {
    this.db.live();
    validateRecordKeySeen(a);
    const account = bareJid(a.account);
    return this.db.tx("recordKeySeen", async (c) => {
      await c.query(
        `INSERT INTO ${this.keys} AS k (account, fingerprint, alg, public_key, first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (account, fingerprint) DO UPDATE SET last_seen = greatest(k.last_seen, excluded.last_seen)`,
        [account, a.fingerprint, a.alg, Buffer.from(a.publicKey), a.now],
      );
      await c.query(
        `INSERT INTO ${this.links} AS l (account, fingerprint, jid, first_seen, last_seen, accepted) VALUES ($1, $2, $3, $4, $4, $5)
         ON CONFLICT (account, fingerprint, jid) DO UPDATE SET
           last_seen = greatest(l.last_seen, excluded.last_seen), accepted = l.accepted OR excluded.accepted`,
        [account, a.fingerprint, bareJid(a.jid), a.now, a.accepted],
      );
      const got = await this.readKey(c, account, a.fingerprint);
      if (got === undefined) throw new StoreError("io", "recordKeySeen: row vanished");
      return got;
    });
  }

  async getPeerKey(account: Jid, fingerprint: string): Promise<PeerKey | undefined> {
    this.db.live();
    try {
      return await this.readKey(this.db.pool, bareJid(account), fingerprint);
    } catch (e) {
      throw toPgStoreError("getPeerKey", e);
    }
  }

  async listPeerKeys(account: Jid): Promise<PeerKey[]> {
    const r = await this.db.query("listPeerKeys", `${this.keySelect} WHERE k.account = $1 ${this.keyOrder}`, [bareJid(account)]);
    return r.rows.map(toPeerKey);
  }

  async keysForJid(account: Jid, jid: Jid): Promise<PeerKey[]> {
    const r = await this.db.query(
      "keysForJid",
      `${this.keySelect} WHERE k.account = $1 AND EXISTS
         (SELECT 1 FROM ${this.links} j WHERE j.account = k.account AND j.fingerprint = k.fingerprint AND j.jid = $2)
       ${this.keyOrder}`,
      [bareJid(account), bareJid(jid)],
    );
    return r.rows.map(toPeerKey);
  }

  private async update(op: string, sql: string, values: unknown[]): Promise<void> {
    const r = await this.db.query(op, sql, values);
    if ((r.rowCount ?? 0) === 0) throw new StoreError("not-found", `${op}: no such peer key`);
  }

  async setPetname(account: Jid, fingerprint: string, petname: string | undefined): Promise<void> {
    this.db.live();
    validatePetname(petname);
    await this.update("setPetname", `UPDATE ${this.keys} SET petname = $1 WHERE account = $2 AND fingerprint = $3`, [
      petname ?? null,
      bareJid(account),
      fingerprint,
    ]);
  }

  async acceptKeyForJid(account: Jid, fingerprint: string, jid: Jid, now: number): Promise<void> {
    this.db.live();
    validateTime(now);
    const a = bareJid(account);
    await this.db.tx("acceptKeyForJid", async (c) => {
      // KEY SHARE keeps a concurrent removePeerKey from deleting the key between the check
      // and the insert (it waits for this transaction, then cascades to the new link).
      const k = await c.query(`SELECT 1 FROM ${this.keys} WHERE account = $1 AND fingerprint = $2 FOR KEY SHARE`, [a, fingerprint]);
      if (k.rows.length === 0) throw new StoreError("not-found", "acceptKeyForJid: no such peer key");
      await c.query(
        `INSERT INTO ${this.links} (account, fingerprint, jid, first_seen, last_seen, accepted) VALUES ($1, $2, $3, $4, $4, true)
         ON CONFLICT (account, fingerprint, jid) DO UPDATE SET accepted = true`,
        [a, fingerprint, bareJid(jid), now],
      );
    });
  }

  async markFingerprintChecked(account: Jid, fingerprint: string, now: number): Promise<void> {
    this.db.live();
    validateTime(now);
    await this.update(
      "markFingerprintChecked",
      `UPDATE ${this.keys} SET fingerprint_checked_at = greatest(coalesce(fingerprint_checked_at, $1), $1) WHERE account = $2 AND fingerprint = $3`,
      [now, bareJid(account), fingerprint],
    );
  }

  async markKeySasConfirmed(account: Jid, fingerprint: string, now: number): Promise<void> {
    this.db.live();
    validateTime(now);
    await this.update(
      "markKeySasConfirmed",
      `UPDATE ${this.keys} SET sas_confirmed_at = greatest(coalesce(sas_confirmed_at, $1), $1) WHERE account = $2 AND fingerprint = $3`,
      [now, bareJid(account), fingerprint],
    );
  }

  async revokePeerKey(account: Jid, fingerprint: string, now: number): Promise<void> {
    this.db.live();
    validateTime(now);
    await this.update(
      "revokePeerKey",
      `UPDATE ${this.keys} SET revoked_at = least(coalesce(revoked_at, $1), $1) WHERE account = $2 AND fingerprint = $3`,
      [now, bareJid(account), fingerprint],
    );
  }

  async removePeerKey(account: Jid, fingerprint: string): Promise<boolean> {
    this.db.live();
    validateFingerprint(fingerprint);
    const r = await this.db.query("removePeerKey", `DELETE FROM ${this.keys} WHERE account = $1 AND fingerprint = $2`, [bareJid(account), fingerprint]);
    return (r.rowCount ?? 0) > 0;
  }
}

