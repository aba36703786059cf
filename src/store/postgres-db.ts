/**
 * What every PostgreSQL-backed store shares: the connection pool (owned or borrowed), the
 * schema and its forward-only migrations (run once per database, serialised between
 * processes by an advisory lock), transactions with a retry on serialisation failures,
 * row-value decoding, and mapping driver failures to a StoreError that carries only the
 * operation and the SQLSTATE.
 *
 * Spec: none of its own (server persistence of the state the XEPs require us to keep):
 * XEP-0116 v0.16 sections 4.7.3 / 4.8.1 and XEP-0217 v0.1 sections 4.5.4 / 4.6.1 (retained
 * secrets, destroyed and replaced together), XEP-0187 v0.5 sections 3.1 / 3.4 / 6.1
 * (one-time offline values, the replay set of d / N_B), RFC 2779 section 2.5.2 via
 * draft-ietf-xmpp-e2e-03 section 2 (the object replay cache). See docs/store.md
 * "PostgreSQL".
 *
 * Several processes (a gateway, a bot farm) may share one database: every operation that
 * two processes could race on is one statement whose effect is decided by a row lock or a
 * unique constraint (`DELETE ... RETURNING`, `INSERT ... ON CONFLICT`), or one
 * transaction that starts with such a statement. Nothing relies on state cached in the
 * process.
 */
import pg from "pg";
import type { Pool, PoolClient, PoolConfig } from "pg";
import type { Clock } from "../core/types.js";
import { StoreError } from "./types.js";

/** How a PostgreSQL store reaches its database. */
export interface PgStoreOptions {
  /**
   * A pool to borrow (several stores and the application may share one). The store never
   * ends a borrowed pool; `close()` only stops this store from using it.
   */
  readonly pool?: Pool;
  /**
   * Or connection settings (a `postgres://` URL or a pg PoolConfig): the store creates its
   * own pool and ends it on `close()`. Exactly one of `pool` and `connection` is required.
   */
  readonly connection?: string | PoolConfig;
  /**
   * The PostgreSQL schema (namespace) that holds the tables; created if missing. Lets
   * several deployments (or tests) share one database. Default "xmpp_e2e". Lower-case
   * letters, digits and `_`, at most 63 characters, not starting with a digit.
   */
  readonly schema?: string;
  /** Stamps `schema_version.applied_at`; defaults to the system clock. */
  readonly clock?: Clock;
}

export const DEFAULT_PG_SCHEMA = "xmpp_e2e";
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** SQLSTATE classes that mean the data itself is damaged (PostgreSQL Appendix A, class XX). */
const CORRUPT_CODES = new Set(["XX001", "XX002"]);
/** serialization_failure, deadlock_detected: safe to retry the whole transaction. */
const RETRY_CODES = new Set(["40001", "40P01"]);

function errorCode(e: unknown): string | undefined {
  return e instanceof Error && "code" in e && typeof e.code === "string" ? e.code : undefined;
}

/**
 * Maps any failure to a StoreError carrying only the operation and the driver's code
 * (SQLSTATE or errno). The driver's message is dropped: PostgreSQL quotes offending
 * values in messages and `detail` (e.g. a duplicate key), which may be secret.
 */
export function toPgStoreError(op: string, e: unknown): Error {
  if (e instanceof StoreError || e instanceof RangeError) return e;
  const code = errorCode(e);
  return new StoreError(code !== undefined && CORRUPT_CODES.has(code) ? "corrupt" : "io", `${op} failed`, code);
}

export type Row = Record<string, unknown>;

/** Something that runs queries: a pool or a client inside a transaction. */
export interface Queryable {
  query<R extends Row = Row>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

function corrupt(table: string): StoreError {
  return new StoreError("corrupt", `malformed ${table} row in the database`);
}

/** A bigint column (pg returns int8 as a decimal string) as a safe integer number. */
export function int(x: unknown, table: string): number {
  const n = typeof x === "string" && /^-?\d{1,16}$/.test(x) ? Number(x) : x;
  if (typeof n !== "number" || !Number.isSafeInteger(n)) throw corrupt(table);
  return n;
}

export function optInt(x: unknown, table: string): number | undefined {
  return x === null || x === undefined ? undefined : int(x, table);
}

export function str(x: unknown, table: string): string {
  if (typeof x !== "string") throw corrupt(table);
  return x;
}

export function bool(x: unknown, table: string): boolean {
  if (typeof x !== "boolean") throw corrupt(table);
  return x;
}

/** A non-empty bytea as a fresh Uint8Array; the driver's Buffer is wiped. */
export function bytes(x: unknown, table: string): Uint8Array {
  if (!(x instanceof Uint8Array) || x.length === 0) throw corrupt(table);
  const out = new Uint8Array(x);
  x.fill(0);
  return out;
}

export { corrupt as pgCorrupt };

interface Migration {
  readonly version: number;
  readonly description: string;
  /** The SQL, with `S.` standing for the quoted schema name. */
  readonly sql: string;
}

/**
 * Forward-only migrations of the whole database (every store kind shares the schema
 * version, so any opener brings the database up to date). Never edit a released entry;
 * append one. The tables mirror the SQLite ones (src/store/sqlite.ts, sqlite-trust.ts,
 * offline-sqlite.ts, replay-sqlite.ts) with native types: bytea, boolean, bigint ms.
 */
const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "retained secrets and SAS state",
    sql: `
      CREATE TABLE S.retained_secrets (
        seq            bigint  GENERATED ALWAYS AS IDENTITY,
        id             text    NOT NULL PRIMARY KEY,
        account        text    NOT NULL,
        peer           text    NOT NULL,
        secret         bytea   NOT NULL CHECK (octet_length(secret) > 0),
        created_at     bigint  NOT NULL,
        verified_chain boolean NOT NULL DEFAULT false
      );
      CREATE INDEX retained_secrets_by_peer ON S.retained_secrets (account, peer, created_at);
      CREATE INDEX retained_secrets_by_age ON S.retained_secrets (created_at);
      CREATE TABLE S.sas_state (
        account      text   NOT NULL,
        peer         text   NOT NULL,
        confirmed_at bigint NOT NULL,
        PRIMARY KEY (account, peer)
      );
    `,
  },
  {
    version: 2,
    description: "identities, peer keys and the JIDs that presented them",
    sql: `
      CREATE TABLE S.identities (
        seq         bigint GENERATED ALWAYS AS IDENTITY,
        id          text   NOT NULL PRIMARY KEY,
        account     text   NOT NULL,
        alg         text   NOT NULL,
        public_key  bytea  NOT NULL,
        fingerprint text   NOT NULL,
        private_key bytea  NOT NULL,
        protection  text   NOT NULL CHECK (protection IN ('none', 'passphrase')),
        created_at  bigint NOT NULL,
        revoked_at  bigint,
        UNIQUE (account, fingerprint)
      );
      CREATE TABLE S.peer_keys (
        account                text   NOT NULL,
        fingerprint            text   NOT NULL,
        alg                    text   NOT NULL,
        public_key             bytea  NOT NULL,
        first_seen             bigint NOT NULL,
        last_seen              bigint NOT NULL,
        petname                text,
        fingerprint_checked_at bigint,
        sas_confirmed_at       bigint,
        revoked_at             bigint,
        PRIMARY KEY (account, fingerprint)
      );
      CREATE TABLE S.peer_key_jids (
        account     text    NOT NULL,
        fingerprint text    NOT NULL,
        jid         text    NOT NULL,
        first_seen  bigint  NOT NULL,
        last_seen   bigint  NOT NULL,
        accepted    boolean NOT NULL,
        PRIMARY KEY (account, fingerprint, jid),
        FOREIGN KEY (account, fingerprint) REFERENCES S.peer_keys (account, fingerprint) ON DELETE CASCADE
      );
      CREATE INDEX peer_key_jids_by_jid ON S.peer_key_jids (account, jid);
    `,
  },
  {
    version: 3,
    description: "XEP-0187 offline one-time values and the d / N_B replay set",
    sql: `
      CREATE TABLE S.offline_secrets (
        account    text   NOT NULL,
        id         text   NOT NULL,
        nonce      bytea  NOT NULL,
        pairs      jsonb  NOT NULL,
        created_at bigint NOT NULL,
        expires_at bigint NOT NULL,
        stanzas    jsonb  NOT NULL,
        logging    jsonb  NOT NULL,
        PRIMARY KEY (account, id)
      );
      CREATE INDEX offline_secrets_by_expiry ON S.offline_secrets (account, expires_at);
      CREATE TABLE S.offline_seen (
        account text   NOT NULL,
        k       text   NOT NULL,
        seen_at bigint NOT NULL,
        PRIMARY KEY (account, k)
      );
    `,
  },
  {
    version: 4,
    description: "RFC 3923 object replay cache",
    sql: `
      CREATE TABLE S.e2e_replay (
        account text   NOT NULL,
        sender  text   NOT NULL,
        id      text   NOT NULL,
        seen_at bigint NOT NULL,
        PRIMARY KEY (account, sender, id)
      );
      CREATE INDEX e2e_replay_by_age ON S.e2e_replay (seen_at);
    `,
  },
  {
    version: 5,
    // XEP-0187 3.3: a sender's crypt_algs / hash_algs must be among those offered. Rows of
    // earlier versions (and rows a process still running version-4 code inserts) get the
    // default NULL: "not recorded", which the reader takes as what the code accepted when
    // they were written (src/store/offline.ts LEGACY_OFFERED_*).
    description: "XEP-0187 offered crypt_algs / hash_algs of each offline one-time set",
    sql: `
      ALTER TABLE S.offline_secrets
        ADD COLUMN crypt_algs jsonb DEFAULT NULL,
        ADD COLUMN hash_algs  jsonb DEFAULT NULL;
    `,
  },
];

/** The schema version this code writes. */
export const PG_SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

/**
 * An open connection to the store's schema: the pool, the quoted schema name for
 * queries, and the closed flag shared by the store object that owns it.
 */
export class PgDb {
  private closed = false;
  /** `"schema"`: prefix table names with `${db.s}.`. */
  readonly s: string;

  private constructor(
    readonly pool: Pool,
    private readonly owned: boolean,
    readonly schema: string,
  ) {
    this.s = `"${schema}"`;
  }

  /**
   * Connects (creating the pool when given settings), creates the schema if needed and
   * applies missing migrations. Throws StoreError ("io" when the server cannot be
   * reached, "corrupt" when the schema is newer than this code).
   */
  static async open(opts: PgStoreOptions, op: string): Promise<PgDb> {
    const schema = opts.schema ?? DEFAULT_PG_SCHEMA;
    if (!SCHEMA_NAME.test(schema)) throw new RangeError("schema must match /^[a-z_][a-z0-9_]{0,62}$/");
    if ((opts.pool === undefined) === (opts.connection === undefined))
      throw new RangeError("give exactly one of pool and connection");
    let pool: Pool;
    const owned = opts.pool === undefined;
    if (opts.pool !== undefined) pool = opts.pool;
    else {
      const c = opts.connection;
      pool = new pg.Pool(typeof c === "string" ? { connectionString: c } : c);
    }
    // An idle client whose connection drops makes the pool emit 'error'; without a
    // listener that would crash the process. The next query reports the failure.
    if (owned) pool.on("error", () => {});
    const db = new PgDb(pool, owned, schema);
    try {
      await db.migrate(opts.clock ?? { now: () => Date.now() });
    } catch (e) {
      if (owned) await pool.end().catch(() => {});
      throw toPgStoreError(op, e);
    }
    return db;
  }

  private async migrate(clock: Clock): Promise<void> {
    await this.tx("migrate", async (c) => {
      // Two processes opening a fresh database at once: the advisory lock (released at
      // commit) makes the second wait and then see the first one's tables.
      await c.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`xmpp-e2e schema ${this.schema}`]);
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${this.s}`);
      await c.query(
        `CREATE TABLE IF NOT EXISTS ${this.s}.schema_version (version integer NOT NULL PRIMARY KEY, applied_at bigint NOT NULL)`,
      );
      const r = await c.query("SELECT max(version) AS v FROM " + `${this.s}.schema_version`);
      const v = r.rows[0]?.["v"];
      const current = v === null || v === undefined ? 0 : v;
      if (typeof current !== "number" || !Number.isSafeInteger(current) || current < 0) throw pgCorruptSchema();
      if (current > PG_SCHEMA_VERSION)
        throw new StoreError(
          "corrupt",
          `database schema version ${current} is newer than this code supports (${PG_SCHEMA_VERSION})`,
        );
      for (const m of MIGRATIONS) {
        if (m.version <= current) continue;
        await c.query(m.sql.replace(/\bS\./g, `${this.s}.`));
        await c.query(`INSERT INTO ${this.s}.schema_version (version, applied_at) VALUES ($1, $2)`, [
          m.version,
          clock.now(),
        ]);
      }
    });
  }

  /** Throws StoreError("io") once the owner closed the store. */
  live(): void {
    if (this.closed) throw new StoreError("io", "store is closed");
  }

  /** Runs one statement outside a transaction (it is atomic by itself). */
  async query(op: string, text: string, values: unknown[] = []): Promise<pg.QueryResult<Row>> {
    this.live();
    try {
      return await this.pool.query<Row>(text, values);
    } catch (e) {
      throw toPgStoreError(op, e);
    }
  }

  /**
   * Runs `f` in one READ COMMITTED transaction on one pooled connection; rolls back on
   * any throw (a StoreError from `f`, e.g. "not-found", is rethrown as is). Retries the
   * whole transaction a few times on a serialisation failure or deadlock.
   */
  async tx<T>(op: string, f: (c: PoolClient) => Promise<T>): Promise<T> {
    this.live();
    for (let attempt = 1; ; attempt++) {
      let client: PoolClient;
      try {
        client = await this.pool.connect();
      } catch (e) {
        throw toPgStoreError(op, e);
      }
      let broken = false;
      try {
        await client.query("BEGIN");
        const out = await f(client);
        await client.query("COMMIT");
        return out;
      } catch (e) {
        try {
          await client.query("ROLLBACK");
        } catch {
          broken = true; // the connection is unusable: do not return it to the pool
        }
        const code = errorCode(e);
        if (code !== undefined && RETRY_CODES.has(code) && attempt < 4) continue;
        throw toPgStoreError(op, e);
      } finally {
        client.release(broken);
      }
    }
  }

  /** Marks the store closed and ends the pool if the store owns it. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.owned) {
      try {
        await this.pool.end();
      } catch (e) {
        throw toPgStoreError("close", e);
      }
    }
  }
}

function pgCorruptSchema(): StoreError {
  return corrupt("schema_version");
}
