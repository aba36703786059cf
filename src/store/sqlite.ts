/**
 * The default persistent {@link Store}: one SQLite file (better-sqlite3), WAL mode, a
 * schema version table with forward-only migrations, prepared statements, and one
 * IMMEDIATE transaction per replace so that destroying the old retained secret and
 * storing the new one happen together or not at all.
 *
 * Spec: XEP-0116 v0.16 sections 4.7.3 / 4.8.1 and XEP-0217 v0.1 sections 4.5.4 / 4.6.1:
 * each party "MUST destroy all [its] copies of the old retained secret (SRS)" and "MUST
 * *securely* store the new value". Hence: the file is created with mode 0600 (its
 * directory 0700 when this code creates it); `secure_delete` overwrites deleted rows
 * with zeros; the WAL is checkpointed and truncated after every deletion so old page
 * images do not linger in the -wal file; secrets never appear in errors or logs.
 * XEP-0116 section 4.7.2 / XEP-0217 section 4.5.3 (SAS reminders) and XEP-0116 section 7.3
 * (verified chain flag): see ./types.ts. Schema and porting notes: docs/store.md.
 * Schema v2 adds the identity and trust tables (XEP-0116 sections 7.3, 7.4, 14; see
 * ./sqlite-trust.ts and ./trust-types.ts).
 */
import { resolve } from "node:path";
import Database from "better-sqlite3";
import { bareJid, type Clock, type Jid } from "../core/types.js";
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
import { prepareFile, toStoreError } from "./sqlite-file.js";
import { TRUST_MIGRATION_SQL, TrustTables } from "./sqlite-trust.js";
import type { FullStore, PeerKey, PutIdentityArgs, RecordKeySeenArgs, StoredIdentity } from "./trust-types.js";

export { StoreError } from "./types.js";
export type { StoreErrorCondition } from "./types.js";

export interface SqliteStoreOptions {
  /** Stamps `schema_version.applied_at`; defaults to the system clock. */
  readonly clock?: Clock;
}

interface Migration {
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

/** Forward-only migrations; each runs once, in order, inside the opening transaction. */
const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "retained secrets and SAS state",
    sql: `
      CREATE TABLE retained_secrets (
        id             TEXT    NOT NULL PRIMARY KEY,
        account        TEXT    NOT NULL,
        peer           TEXT    NOT NULL,
        secret         BLOB    NOT NULL,
        created_at     INTEGER NOT NULL,
        verified_chain INTEGER NOT NULL DEFAULT 0 CHECK (verified_chain IN (0, 1))
      );
      CREATE INDEX retained_secrets_by_peer ON retained_secrets (account, peer, created_at);
      CREATE INDEX retained_secrets_by_age ON retained_secrets (created_at);
      CREATE TABLE sas_state (
        account      TEXT    NOT NULL,
        peer         TEXT    NOT NULL,
        confirmed_at INTEGER NOT NULL,
        PRIMARY KEY (account, peer)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    description: "identities, peer keys and the JIDs that presented them",
    sql: TRUST_MIGRATION_SQL,
  },
];

/** The schema version this code writes. */
export const SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

const COLUMNS = "id, account, peer, secret, created_at, verified_chain";
function corrupt(what: string): StoreError {
  return new StoreError("corrupt", `malformed ${what} row in the database`);
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null;
}

/** Validates a row read back from the file (a damaged or foreign file is "corrupt"). */
function toRetainedSecret(row: unknown): RetainedSecret {
  if (!isRecord(row)) throw corrupt("retained_secrets");
  const { id, account, peer, secret, created_at: createdAt, verified_chain: verified } = row;
  if (
    typeof id !== "string" ||
    typeof account !== "string" ||
    typeof peer !== "string" ||
    !(secret instanceof Uint8Array) ||
    secret.length === 0 ||
    typeof createdAt !== "number" ||
    !Number.isSafeInteger(createdAt) ||
    (verified !== 0 && verified !== 1)
  )
    throw corrupt("retained_secrets");
  const copy = new Uint8Array(secret);
  secret.fill(0);
  return makeRetainedSecret({
    id,
    account: account as Jid,
    peer: peer as Jid,
    secret: copy,
    createdAt,
    verifiedChain: verified === 1,
  });
}

function migrate(db: Database.Database, clock: Clock): void {
  const run = db.transaction(() => {
    db.exec(
      "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL PRIMARY KEY, applied_at INTEGER NOT NULL)",
    );
    const row: unknown = db.prepare("SELECT max(version) AS v FROM schema_version").get();
    const v = isRecord(row) ? row["v"] : undefined;
    const current = v === null ? 0 : v;
    if (typeof current !== "number" || !Number.isSafeInteger(current) || current < 0)
      throw corrupt("schema_version");
    if (current > SCHEMA_VERSION)
      throw new StoreError(
        "corrupt",
        `database schema version ${current} is newer than this code supports (${SCHEMA_VERSION})`,
      );
    const record = db.prepare("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)");
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      db.exec(m.sql);
      record.run(m.version, clock.now());
    }
  });
  run.immediate();
}

/**
 * Opens (creating if needed) the store at `path`, or a private in-memory database for
 * ":memory:". Throws StoreError ("io" when the file cannot be created or opened,
 * "corrupt" when it is not a database of this schema).
 */
export function openSqliteStore(path: string | ":memory:", opts: SqliteStoreOptions = {}): FullStore {
  const clock = opts.clock ?? { now: () => Date.now() };
  const file = path === ":memory:" ? path : resolve(path);
  let db: Database.Database;
  try {
    if (file !== ":memory:") prepareFile(file);
    db = new Database(file, { timeout: 5000 });
  } catch (e) {
    throw toStoreError(`open ${file}`, e);
  }
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("secure_delete = ON");
    db.pragma("foreign_keys = ON");
    migrate(db, clock);
    return new SqliteStore(db, file === ":memory:");
  } catch (e) {
    db.close();
    throw toStoreError(`open ${file}`, e);
  }
}

class SqliteStore implements Store, FullStore {
  private closed = false;
  private readonly q;
  private readonly replaceTx;
  private readonly trust: TrustTables;

  constructor(
    private readonly db: Database.Database,
    private readonly inMemory: boolean,
  ) {
    this.q = {
      list: db.prepare(
        `SELECT ${COLUMNS} FROM retained_secrets WHERE account = ? AND peer = ? ORDER BY created_at DESC, rowid DESC`,
      ),
      listAll: db.prepare(
        `SELECT ${COLUMNS} FROM retained_secrets WHERE account = ? ORDER BY created_at DESC, rowid DESC`,
      ),
      oldFlag: db.prepare("SELECT verified_chain FROM retained_secrets WHERE id = ? AND account = ?"),
      insert: db.prepare(`INSERT INTO retained_secrets (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`),
      remove: db.prepare("DELETE FROM retained_secrets WHERE id = ?"),
      expire: db.prepare("DELETE FROM retained_secrets WHERE created_at < ?"),
      markVerified: db.prepare("UPDATE retained_secrets SET verified_chain = 1 WHERE id = ?"),
      getSas: db.prepare("SELECT confirmed_at FROM sas_state WHERE account = ? AND peer = ?"),
      setSas: db.prepare(
        `INSERT INTO sas_state (account, peer, confirmed_at) VALUES (?, ?, ?)
         ON CONFLICT (account, peer) DO UPDATE SET confirmed_at = max(confirmed_at, excluded.confirmed_at)`,
      ),
    };
    this.trust = new TrustTables(db);
    const q = this.q;
    this.replaceTx = db.transaction((args: ReplaceRetainedSecretArgs): RetainedSecret => {
      const account = bareJid(args.account);
      let verified = args.verifiedChain;
      if (args.oldSecretId !== undefined) {
        const old: unknown = q.oldFlag.get(args.oldSecretId, account);
        if (old === undefined)
          throw new StoreError("not-found", "replace: the old retained secret no longer exists");
        if (!isRecord(old) || (old["verified_chain"] !== 0 && old["verified_chain"] !== 1))
          throw corrupt("retained_secrets");
        verified ||= old["verified_chain"] === 1;
        q.remove.run(args.oldSecretId);
      }
      const id = globalThis.crypto.randomUUID();
      const peer = bareJid(args.peer);
      const blob = Buffer.from(args.secret); // a copy, wiped once SQLite has its own
      try {
        q.insert.run(id, account, peer, blob, args.now, verified ? 1 : 0);
      } finally {
        blob.fill(0);
      }
      return makeRetainedSecret({
        id,
        account,
        peer,
        secret: args.secret.slice(),
        createdAt: args.now,
        verifiedChain: verified,
      });
    });
  }

  /** Runs `f` on the open database, mapping failures to StoreError. */
  private use<T>(op: string, f: () => T): T {
    if (this.closed) throw new StoreError("io", "store is closed");
    try {
      return f();
    } catch (e) {
      throw toStoreError(op, e);
    }
  }

  /**
   * Moves the WAL into the main file and truncates it, so page images that held a
   * destroyed secret do not stay in the -wal file (best effort: a concurrent reader on
   * another connection can make the checkpoint partial; the next one finishes it).
   */
  private scrubWal(): void {
    if (!this.inMemory) this.db.pragma("wal_checkpoint(TRUNCATE)");
  }

  async list(account: Jid, peer: Jid): Promise<RetainedSecret[]> {
    return this.use("list", () => this.q.list.all(bareJid(account), bareJid(peer)).map(toRetainedSecret));
  }

  async listAll(account: Jid): Promise<RetainedSecret[]> {
    return this.use("listAll", () => this.q.listAll.all(bareJid(account)).map(toRetainedSecret));
  }

  async replace(args: ReplaceRetainedSecretArgs): Promise<RetainedSecret> {
    validateReplaceArgs(args);
    return this.use("replace", () => {
      const r = this.replaceTx.immediate(args);
      if (args.oldSecretId !== undefined) this.scrubWal();
      return r;
    });
  }

  async remove(id: string): Promise<boolean> {
    return this.use("remove", () => {
      const n = this.q.remove.run(id).changes;
      if (n > 0) this.scrubWal();
      return n > 0;
    });
  }

  async expire(before: number): Promise<number> {
    return this.use("expire", () => {
      const n = this.q.expire.run(before).changes;
      if (n > 0) this.scrubWal();
      return n;
    });
  }

  async markChainVerified(id: string): Promise<void> {
    this.use("markChainVerified", () => {
      if (this.q.markVerified.run(id).changes === 0)
        throw new StoreError("not-found", "markChainVerified: no such retained secret");
    });
  }

  async getSasState(account: Jid, peer: Jid): Promise<SasState> {
    return this.use("getSasState", () => {
      const row: unknown = this.q.getSas.get(bareJid(account), bareJid(peer));
      if (row === undefined) return { confirmed: false };
      const at = isRecord(row) ? row["confirmed_at"] : undefined;
      if (typeof at !== "number" || !Number.isSafeInteger(at)) throw corrupt("sas_state");
      return { confirmed: true, confirmedAt: at };
    });
  }

  async setSasConfirmed(account: Jid, peer: Jid, now: number): Promise<void> {
    validateTime(now);
    this.use("setSasConfirmed", () => {
      this.q.setSas.run(bareJid(account), bareJid(peer), now);
    });
  }

  // ---- IdentityStore / TrustStore (schema v2, ./sqlite-trust.ts) ----

  async putIdentity(args: PutIdentityArgs): Promise<StoredIdentity> {
    return this.use("putIdentity", () => {
      const r = this.trust.putIdentity(args);
      this.scrubWal(); // an update replaced a private key (e.g. a new passphrase)
      return r;
    });
  }

  async listIdentities(account: Jid): Promise<StoredIdentity[]> {
    return this.use("listIdentities", () => this.trust.listIdentities(account));
  }

  async getIdentity(id: string): Promise<StoredIdentity | undefined> {
    return this.use("getIdentity", () => this.trust.getIdentity(id));
  }

  async revokeIdentity(id: string, now: number): Promise<void> {
    this.use("revokeIdentity", () => this.trust.revokeIdentity(id, now));
  }

  async removeIdentity(id: string): Promise<boolean> {
    return this.use("removeIdentity", () => {
      const gone = this.trust.removeIdentity(id);
      if (gone) this.scrubWal();
      return gone;
    });
  }

  async recordKeySeen(args: RecordKeySeenArgs): Promise<PeerKey> {
    return this.use("recordKeySeen", () => this.trust.recordKeySeen(args));
  }

  async getPeerKey(account: Jid, fingerprint: string): Promise<PeerKey | undefined> {
    return this.use("getPeerKey", () => this.trust.getPeerKey(account, fingerprint));
  }

  async listPeerKeys(account: Jid): Promise<PeerKey[]> {
    return this.use("listPeerKeys", () => this.trust.listPeerKeys(account));
  }

  async keysForJid(account: Jid, jid: Jid): Promise<PeerKey[]> {
    return this.use("keysForJid", () => this.trust.keysForJid(account, jid));
  }

  async setPetname(account: Jid, fingerprint: string, petname: string | undefined): Promise<void> {
    this.use("setPetname", () => this.trust.setPetname(account, fingerprint, petname));
  }

  async acceptKeyForJid(account: Jid, fingerprint: string, jid: Jid, now: number): Promise<void> {
    this.use("acceptKeyForJid", () => this.trust.acceptKeyForJid(account, fingerprint, jid, now));
  }

  async markFingerprintChecked(account: Jid, fingerprint: string, now: number): Promise<void> {
    this.use("markFingerprintChecked", () => this.trust.markFingerprintChecked(account, fingerprint, now));
  }

  async markKeySasConfirmed(account: Jid, fingerprint: string, now: number): Promise<void> {
    this.use("markKeySasConfirmed", () => this.trust.markKeySasConfirmed(account, fingerprint, now));
  }

  async revokePeerKey(account: Jid, fingerprint: string, now: number): Promise<void> {
    this.use("revokePeerKey", () => this.trust.revokePeerKey(account, fingerprint, now));
  }

  async removePeerKey(account: Jid, fingerprint: string): Promise<boolean> {
    return this.use("removePeerKey", () => this.trust.removePeerKey(account, fingerprint));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      this.scrubWal();
    } catch {
      // closing must not fail because a checkpoint could not run; SQLite checkpoints on close
    }
    this.closed = true;
    try {
      this.db.close();
    } catch (e) {
      throw toStoreError("close", e);
    }
  }
}
