/**
 * The {@link FullStore} on PostgreSQL (the `pg` driver), for deployments that run several
 * processes against one database (a gateway, a bot farm): the same contract as the SQLite
 * store (./sqlite.ts) and MemoryStore, checked by the same contract tests
 * (test/unit/store-contract.ts).
 *
 * Spec: XEP-0116 v0.16 sections 4.7.3 "Generating Bob's Final Session Keys" and 4.8.1
 * "Generating Alice's Final Session Keys" / XEP-0217 v0.1 sections 4.5.4 and 4.6.1: each
 * party "MUST destroy all [its] copies of the old retained secret (SRS)" and "MUST
 * *securely* store the new value". `replace` is one transaction that starts with
 * `DELETE ... WHERE id = $old RETURNING verified_chain`: the row lock makes two
 * processes that used the same SRS serialise, and the second finds nothing and gets
 * StoreError("not-found") (compare-and-swap, one entry per peer client either way).
 * XEP-0116 section 4.7.2 / XEP-0217 section 4.5.3 (SAS reminders: an upsert keeping the
 * latest time) and section 7.3 (the verified-chain flag). Identity and trust (XEP-0116
 * sections 7.3, 7.4, 14; XEP-0189 section 4): ./postgres-trust.ts.
 *
 * PostgreSQL does not overwrite deleted rows in place: a destroyed secret stays in the
 * table's pages until VACUUM reuses them, and in WAL and backups. See docs/store.md
 * "PostgreSQL" for what that means and how to deploy it.
 */
import { bareJid, type Jid } from "../core/types.js";
import { PgDb, bool, bytes, int, str, type PgStoreOptions, type Row } from "./postgres-db.js";
import { PgTrustTables } from "./postgres-trust.js";
import type { FullStore, PeerKey, PutIdentityArgs, RecordKeySeenArgs, StoredIdentity } from "./trust-types.js";
import {
  makeRetainedSecret,
  StoreError,
  type ReplaceRetainedSecretArgs,
  type RetainedSecret,
  type SasState,
  validateReplaceArgs,
  validateTime,
} from "./types.js";

export type { PgStoreOptions } from "./postgres-db.js";
export { DEFAULT_PG_SCHEMA, PG_SCHEMA_VERSION } from "./postgres-db.js";
export { openPgOfflineStore, openPgReplayCache } from "./postgres-offline.js";

const COLUMNS = "id, account, peer, secret, created_at, verified_chain";

function toRetainedSecret(row: Row): RetainedSecret {
  const t = "retained_secrets";
  return makeRetainedSecret({
    id: str(row["id"], t),
    account: str(row["account"], t) as Jid,
    peer: str(row["peer"], t) as Jid,
    secret: bytes(row["secret"], t),
    createdAt: int(row["created_at"], t),
    verifiedChain: bool(row["verified_chain"], t),
  });
}

/**
 * Opens the store in `opts.schema` (default "xmpp_e2e") of the database given by
 * `opts.pool` or `opts.connection`, creating or migrating the tables. Rejects with
 * StoreError ("io": unreachable server, "corrupt": a newer schema) or RangeError (bad
 * options).
 */
export async function openPgStore(opts: PgStoreOptions): Promise<FullStore> {
  const db = await PgDb.open(opts, "open PostgreSQL store");
  return new PgStore(db);
}

class PgStore implements FullStore {
  private readonly trust: PgTrustTables;
  private readonly t: string;

  constructor(private readonly db: PgDb) {
    this.trust = new PgTrustTables(db);
    this.t = `${db.s}.retained_secrets`;
  }

  async list(account: Jid, peer: Jid): Promise<RetainedSecret[]> {
    const r = await this.db.query(
      "list",
      `SELECT ${COLUMNS} FROM ${this.t} WHERE account = $1 AND peer = $2 ORDER BY created_at DESC, seq DESC`,
      [bareJid(account), bareJid(peer)],
    );
    return r.rows.map(toRetainedSecret);
  }

  async listAll(account: Jid): Promise<RetainedSecret[]> {
    const r = await this.db.query(
      "listAll",
      `SELECT ${COLUMNS} FROM ${this.t} WHERE account = $1 ORDER BY created_at DESC, seq DESC`,
      [bareJid(account)],
    );
    return r.rows.map(toRetainedSecret);
  }

  async replace(args: ReplaceRetainedSecretArgs): Promise<RetainedSecret> {
    this.db.live();
    validateReplaceArgs(args);
    const account = bareJid(args.account);
    const peer = bareJid(args.peer);
    const id = globalThis.crypto.randomUUID();
    const blob = Buffer.from(args.secret); // a copy, wiped once the driver has sent it
    try {
      const verified = await this.db.tx("replace", async (c) => {
        let flag = args.verifiedChain;
        if (args.oldSecretId !== undefined) {
          // The row lock taken by DELETE serialises concurrent replaces of one SRS; the
          // loser re-checks after the winner commits and deletes nothing.
          const old = await c.query<Row>(
            `DELETE FROM ${this.t} WHERE id = $1 AND account = $2 RETURNING verified_chain`,
            [args.oldSecretId, account],
          );
          const row = old.rows[0];
          if (row === undefined) throw new StoreError("not-found", "replace: the old retained secret no longer exists");
          flag ||= bool(row["verified_chain"], "retained_secrets");
        }
        await c.query(`INSERT INTO ${this.t} (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)`, [
          id,
          account,
          peer,
          blob,
          args.now,
          flag,
        ]);
        return flag;
      });
      return makeRetainedSecret({ id, account, peer, secret: args.secret.slice(), createdAt: args.now, verifiedChain: verified });
    } finally {
      blob.fill(0);
    }
  }

  async remove(id: string): Promise<boolean> {
    const r = await this.db.query("remove", `DELETE FROM ${this.t} WHERE id = $1`, [id]);
    return (r.rowCount ?? 0) > 0;
  }

  async expire(before: number): Promise<number> {
    validateTime(before);
    const r = await this.db.query("expire", `DELETE FROM ${this.t} WHERE created_at < $1`, [before]);
    return r.rowCount ?? 0;
  }

  async markChainVerified(id: string): Promise<void> {
    const r = await this.db.query("markChainVerified", `UPDATE ${this.t} SET verified_chain = true WHERE id = $1`, [id]);
    if ((r.rowCount ?? 0) === 0) throw new StoreError("not-found", "markChainVerified: no such retained secret");
  }

  async getSasState(account: Jid, peer: Jid): Promise<SasState> {
    const r = await this.db.query("getSasState", `SELECT confirmed_at FROM ${this.db.s}.sas_state WHERE account = $1 AND peer = $2`, [
      bareJid(account),
      bareJid(peer),
    ]);
    const row = r.rows[0];
    if (row === undefined) return { confirmed: false };
    return { confirmed: true, confirmedAt: int(row["confirmed_at"], "sas_state") };
  }

  async setSasConfirmed(account: Jid, peer: Jid, now: number): Promise<void> {
    this.db.live();
    validateTime(now);
    await this.db.query(
      "setSasConfirmed",
      `INSERT INTO ${this.db.s}.sas_state AS s (account, peer, confirmed_at) VALUES ($1, $2, $3)
       ON CONFLICT (account, peer) DO UPDATE SET confirmed_at = greatest(s.confirmed_at, excluded.confirmed_at)`,
      [bareJid(account), bareJid(peer), now],
    );
  }

  // ---- IdentityStore / TrustStore (./postgres-trust.ts) ----

  putIdentity(args: PutIdentityArgs): Promise<StoredIdentity> {
    return this.trust.putIdentity(args);
  }
  listIdentities(account: Jid): Promise<StoredIdentity[]> {
    return this.trust.listIdentities(account);
  }
  getIdentity(id: string): Promise<StoredIdentity | undefined> {
    return this.trust.getIdentity(id);
  }
  revokeIdentity(id: string, now: number): Promise<void> {
    return this.trust.revokeIdentity(id, now);
  }
  removeIdentity(id: string): Promise<boolean> {
    return this.trust.removeIdentity(id);
  }
  recordKeySeen(args: RecordKeySeenArgs): Promise<PeerKey> {
    return this.trust.recordKeySeen(args);
  }
  getPeerKey(account: Jid, fingerprint: string): Promise<PeerKey | undefined> {
    return this.trust.getPeerKey(account, fingerprint);
  }
  listPeerKeys(account: Jid): Promise<PeerKey[]> {
    return this.trust.listPeerKeys(account);
  }
  keysForJid(account: Jid, jid: Jid): Promise<PeerKey[]> {
    return this.trust.keysForJid(account, jid);
  }
  setPetname(account: Jid, fingerprint: string, petname: string | undefined): Promise<void> {
    return this.trust.setPetname(account, fingerprint, petname);
  }
  acceptKeyForJid(account: Jid, fingerprint: string, jid: Jid, now: number): Promise<void> {
    return this.trust.acceptKeyForJid(account, fingerprint, jid, now);
  }
  markFingerprintChecked(account: Jid, fingerprint: string, now: number): Promise<void> {
    return this.trust.markFingerprintChecked(account, fingerprint, now);
  }
  markKeySasConfirmed(account: Jid, fingerprint: string, now: number): Promise<void> {
    return this.trust.markKeySasConfirmed(account, fingerprint, now);
  }
  revokePeerKey(account: Jid, fingerprint: string, now: number): Promise<void> {
    return this.trust.revokePeerKey(account, fingerprint, now);
  }
  removePeerKey(account: Jid, fingerprint: string): Promise<boolean> {
    return this.trust.removePeerKey(account, fingerprint);
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
