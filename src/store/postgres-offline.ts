/**
 * The XEP-0187 offline store (./offline.ts) and the RFC 3923 replay cache (./replay.ts)
 * on PostgreSQL (schema versions 3, 4 and 5 of ./postgres-db.ts), for several processes
 * sharing one database.
 *
 * Spec: XEP-0187 v0.5 section 3.1 (the publisher "MUST store her value of N_A, all her
 * values of x ... and the time ... they will expire in a secure way"), section 3.4 (use
 * them once, then "destroy in a secure way any persistently stored copies") and section
 * 6.1 ("MUST remember all the values of d ... and reject any offline ESessions that
 * specify a value of d she has already received"). `take` is one
 * `DELETE ... RETURNING`: whichever process's statement gets the row lock first receives
 * the set, every other one (even one blocked on the same row) gets nothing, so a one-time
 * value is used at most once across processes. `markSeen` is one
 * `INSERT ... ON CONFLICT DO NOTHING`: the primary key lets exactly one process record a
 * given d.
 * RFC 2779 section 2.5.2 via draft-ietf-xmpp-e2e-03 section 2 (replay detection) and
 * RFC 3923 section 6.9 (the DateTime window bounds what must be remembered):
 * `checkAndRecord` is the same single-statement upsert.
 */
import { fromBase64, toBase64 } from "../core/bytes.js";
import type { Jid } from "../core/types.js";
import { isDhGroup, type DhGroupId } from "../crypto/provider.js";
import type { OfflineStore, StoredOfflineSecret } from "./offline.js";
import { PgDb, bytes, int, pgCorrupt, str, type PgStoreOptions, type Row } from "./postgres-db.js";
import type { ReplayCache } from "./replay.js";
import { validateTime } from "./types.js";

const T = "offline_secrets";

function strings(x: unknown): string[] {
  if (!Array.isArray(x) || !x.every((s): s is string => typeof s === "string")) throw pgCorrupt(T);
  return x;
}

function decodePairs(x: unknown): { group: DhGroupId; x: Uint8Array }[] {
  if (!Array.isArray(x)) throw pgCorrupt(T);
  return x.map((p: unknown) => {
    if (typeof p !== "object" || p === null) throw pgCorrupt(T);
    const r = p as Row;
    const group = typeof r["group"] === "string" ? isDhGroup(r["group"]) : undefined;
    const value = typeof r["x"] === "string" ? fromBase64(r["x"]) : undefined;
    if (group === undefined || value === undefined || value.length === 0) throw pgCorrupt(T);
    return { group, x: value };
  });
}

function toSecret(row: Row): StoredOfflineSecret {
  return {
    id: str(row["id"], T),
    nonce: bytes(row["nonce"], T),
    pairs: decodePairs(row["pairs"]),
    createdAt: int(row["created_at"], T),
    expiresAt: int(row["expires_at"], T),
    stanzas: strings(row["stanzas"]),
    logging: strings(row["logging"]),
    // NULL: a set stored before schema version 5 (the reader applies LEGACY_OFFERED_*).
    ...(row["crypt_algs"] === null ? {} : { cryptAlgs: strings(row["crypt_algs"]) }),
    ...(row["hash_algs"] === null ? {} : { hashAlgs: strings(row["hash_algs"]) }),
  };
}

/** Opens the offline store in the database given by `opts` (see {@link PgStoreOptions}). */
export async function openPgOfflineStore(opts: PgStoreOptions): Promise<OfflineStore> {
  const db = await PgDb.open(opts, "open PostgreSQL offline store");
  const t = `${db.s}.offline_secrets`;
  const seen = `${db.s}.offline_seen`;
  const cols = "id, nonce, pairs, created_at, expires_at, stanzas, logging, crypt_algs, hash_algs";
  return {
    async put(account: Jid, s: StoredOfflineSecret): Promise<void> {
      db.live();
      validateTime(s.createdAt);
      validateTime(s.expiresAt);
      const nonce = Buffer.from(s.nonce);
      const pairs = JSON.stringify(s.pairs.map((p) => ({ group: String(p.group), x: toBase64(p.x) })));
      try {
        // Putting an id again replaces the set (as the SQLite and memory stores do).
        await db.query(
          "put",
          `INSERT INTO ${t} (account, ${cols}) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7::jsonb, $8::jsonb, $9::jsonb, $10::jsonb)
           ON CONFLICT (account, id) DO UPDATE SET nonce = excluded.nonce, pairs = excluded.pairs,
             created_at = excluded.created_at, expires_at = excluded.expires_at, stanzas = excluded.stanzas, logging = excluded.logging,
             crypt_algs = excluded.crypt_algs, hash_algs = excluded.hash_algs`,
          [
            account,
            s.id,
            nonce,
            pairs,
            s.createdAt,
            s.expiresAt,
            JSON.stringify(s.stanzas),
            JSON.stringify(s.logging),
            s.cryptAlgs ? JSON.stringify(s.cryptAlgs) : null,
            s.hashAlgs ? JSON.stringify(s.hashAlgs) : null,
          ],
        );
      } finally {
        nonce.fill(0);
      }
    },
    async list(account: Jid) {
      const r = await db.query("list", `SELECT id, expires_at FROM ${t} WHERE account = $1 ORDER BY expires_at, id COLLATE "C"`, [account]);
      return r.rows.map((row) => ({ id: str(row["id"], T), expiresAt: int(row["expires_at"], T) }));
    },
    async get(account: Jid, id: string) {
      // A read only: the set stays until take() (the publisher verifies the start first).
      const r = await db.query("get", `SELECT ${cols} FROM ${t} WHERE account = $1 AND id = $2`, [account, id]);
      const row = r.rows[0];
      return row === undefined ? undefined : toSecret(row);
    },
    async take(account: Jid, id: string) {
      // One statement: the row lock decides which of several concurrent takers gets it.
      const r = await db.query("take", `DELETE FROM ${t} WHERE account = $1 AND id = $2 RETURNING ${cols}`, [account, id]);
      const row = r.rows[0];
      return row === undefined ? undefined : toSecret(row);
    },
    async markSeen(account: Jid, key: string, now: number) {
      db.live();
      validateTime(now);
      const r = await db.query("markSeen", `INSERT INTO ${seen} (account, k, seen_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [
        account,
        key,
        now,
      ]);
      return r.rowCount === 1;
    },
    async expire(account: Jid, now: number) {
      db.live();
      validateTime(now);
      const r = await db.query("expire", `DELETE FROM ${t} WHERE account = $1 AND expires_at <= $2 RETURNING id`, [account, now]);
      return r.rows.map((row) => str(row["id"], T));
    },
    close: () => db.close(),
  };
}

/** Opens the object replay cache in the database given by `opts`. */
export async function openPgReplayCache(opts: PgStoreOptions): Promise<ReplayCache> {
  const db = await PgDb.open(opts, "open PostgreSQL replay cache");
  const t = `${db.s}.e2e_replay`;
  return {
    async checkAndRecord(account, sender, id, now) {
      db.live();
      if (!Number.isSafeInteger(now)) throw new RangeError("now must be an integer number of ms");
      const r = await db.query(
        "checkAndRecord",
        `INSERT INTO ${t} (account, sender, id, seen_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
        [account, sender, id, now],
      );
      return r.rowCount === 1;
    },
    async expire(before) {
      db.live();
      validateTime(before);
      const r = await db.query("expire", `DELETE FROM ${t} WHERE seen_at < $1`, [before]);
      return r.rowCount ?? 0;
    },
    close: () => db.close(),
  };
}
