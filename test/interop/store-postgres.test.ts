/**
 * The state store on a real PostgreSQL server (test/harness/postgres.ts, loopback only):
 * the shared store contracts (test/unit/store-contract.ts; MemoryStore and SQLite run them in
 * test/unit/store.test.ts and test/unit/trust-store.test.ts), PostgreSQL-only properties (migrations under
 * concurrent opens, a borrowed pool, error mapping, corrupt rows), and two Node processes
 * sharing one database racing to consume the same one-time offline values and to rotate
 * the same retained secrets: each is consumed exactly once.
 *
 * Spec: XEP-0116 v0.16 sections 4.7.3 / 4.8.1 and XEP-0217 v0.1 sections 4.5.4 / 4.6.1
 * (destroy the old SRS and store the new one, once), XEP-0187 v0.5 sections 3.4 and 6.1
 * (a one-time value is used once; each d is accepted once), XEP-0116 sections 7.3 / 7.4.
 *
 * This file is also the worker of the multi-process test: started with
 * XMPP_E2E_PG_WORKER set, it registers no tests and serves the race over IPC.
 */
import assert from "node:assert/strict";
import { fork, type ChildProcess } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import pg from "pg";
import type { PoolConfig } from "pg";
import { parseJid } from "../../src/core/types.js";
import type { OfflineStore } from "../../src/store/offline.js";
import { openPgOfflineStore, openPgReplayCache, openPgStore, PG_SCHEMA_VERSION } from "../../src/store/postgres.js";
import type { FullStore } from "../../src/store/trust-types.js";
import { StoreError } from "../../src/store/types.js";
import { startPostgres, type PostgresInstance } from "../harness/postgres.js";
import {
  offlineContract,
  replayContract,
  secret,
  storeContract,
  storeRaceContract,
  T0,
  trustContract,
  type StoreFactory,
} from "../unit/store-contract.js";

const alice = parseJid("alice@example.org");
const bob = parseJid("bob@example.com");

/** What each worker process reports after the race. */
interface WorkerResult {
  name: string;
  taken: string[];
  seen: string[];
  replaced: string[];
  errors: number;
}

if (process.env["XMPP_E2E_PG_WORKER"] !== undefined) await worker();
else suites();

// ---------------------------------------------------------------------------------------

function suites(): void {
  let server: PostgresInstance | undefined;
  let n = 0;

  before(async () => {
    server = await startPostgres();
  });
  after(async () => {
    await server?.stop();
  });

  const pgConfig = (): PoolConfig => {
    if (server === undefined) throw new Error("PostgreSQL did not start");
    return server.config({ max: 4 });
  };
  /** Each PostgreSQL store gets a fresh schema in the one server: empty, isolated. */
  const freshSchema = (): string => `t${n++}`;

  const postgres: StoreFactory<FullStore> = {
    open: () => openPgStore({ connection: pgConfig(), schema: freshSchema() }),
    openPair: async () => {
      const schema = freshSchema();
      return [await openPgStore({ connection: pgConfig(), schema }), await openPgStore({ connection: pgConfig(), schema })] as const;
    },
  };
  storeContract("PostgreSQL", postgres);
  trustContract("PostgreSQL", postgres);
  storeRaceContract("PostgreSQL", postgres);
  offlineContract("PostgreSQL", {
    open: () => openPgOfflineStore({ connection: pgConfig(), schema: freshSchema() }),
    openPair: async () => {
      const schema = freshSchema();
      return [await openPgOfflineStore({ connection: pgConfig(), schema }), await openPgOfflineStore({ connection: pgConfig(), schema })] as const;
    },
  });
  replayContract("PostgreSQL", { open: () => openPgReplayCache({ connection: pgConfig(), schema: freshSchema() }) });

  describe("PostgreSQL store: the database", () => {
    it("migrates once (schema_version 1..N with the injected clock), even with concurrent openers", async () => {
      const schema = freshSchema();
      const stores = await Promise.all(
        Array.from({ length: 4 }, (_, i) => openPgStore({ connection: pgConfig(), schema, clock: { now: () => 1000 + i } })),
      );
      const again = await openPgOfflineStore({ connection: pgConfig(), schema, clock: { now: () => 9999 } });
      const c = new pg.Client(pgConfig());
      await c.connect();
      try {
        const r = await c.query<{ version: number; applied_at: string }>(`SELECT version, applied_at FROM "${schema}".schema_version ORDER BY version`);
        assert.deepEqual(
          r.rows.map((x) => x.version),
          Array.from({ length: PG_SCHEMA_VERSION }, (_, i) => i + 1),
        );
        assert.equal(new Set(r.rows.map((x) => x.applied_at)).size, 1, "one opener applied them all");
        assert.notEqual(r.rows[0]?.applied_at, "9999");
        await c.query(`INSERT INTO "${schema}".schema_version VALUES ($1, 0)`, [PG_SCHEMA_VERSION + 1]);
      } finally {
        await c.end();
      }
      await assert.rejects(openPgStore({ connection: pgConfig(), schema }), (e: unknown) => e instanceof StoreError && e.condition === "corrupt");
      for (const s of stores) await s.close();
      await again.close();
    });

    it("a borrowed pool is shared by several stores and not ended by close", async () => {
      const pool = new pg.Pool(pgConfig());
      const schema = freshSchema();
      const s = await openPgStore({ pool, schema });
      const o = await openPgOfflineStore({ pool, schema });
      await s.replace({ account: alice, peer: bob, secret: secret(1), now: T0, verifiedChain: false });
      await s.close();
      await o.close();
      await assert.rejects(s.list(alice, bob), (e: unknown) => e instanceof StoreError && e.condition === "io");
      const r = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".retained_secrets`);
      assert.equal(r.rows[0]?.n, "1");
      await pool.end();
    });

    it("an unreachable server is io with the driver's code and no password in the message", async () => {
      const cfg = { ...pgConfig(), port: 1, connectionTimeoutMillis: 2000 };
      const err = await openPgStore({ connection: cfg, schema: freshSchema() }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof StoreError && err.condition === "io", String(err));
      assert.equal(err.code, "ECONNREFUSED");
      assert.ok(!String(err).includes(String(cfg.password)));
      await assert.rejects(openPgStore({ connection: pgConfig(), schema: "Bad-Name" }), RangeError);
      await assert.rejects(openPgStore({ schema: "x" }), RangeError);
    });

    it("a malformed row is corrupt, without its contents", async () => {
      const schema = freshSchema();
      const s = await openPgStore({ connection: pgConfig(), schema });
      const c = new pg.Client(pgConfig());
      await c.connect();
      await c.query(
        `INSERT INTO "${schema}".peer_keys (account, fingerprint, alg, public_key, first_seen, last_seen) VALUES ($1, 'K', 'rot13-secret-alg', '\\x01', 1, 1)`,
        [alice],
      );
      await c.end();
      const err = await s.getPeerKey(alice, "K").then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof StoreError && err.condition === "corrupt");
      assert.ok(!String(err).includes("rot13-secret-alg"));
      await s.close();
    });
  });

  describe("PostgreSQL store: two processes", () => {
    it("race to consume the same one-time offline values and rotate the same SRS: each exactly once", { timeout: 120_000 }, async () => {
      const schema = freshSchema();
      const ROUNDS = 40;
      const offline = await openPgOfflineStore({ connection: pgConfig(), schema });
      const store = await openPgStore({ connection: pgConfig(), schema });
      const srs: string[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        await offline.put(alice, {
          id: `set-${i}`,
          nonce: secret(i),
          pairs: [{ group: "x25519", x: secret(100 + i) }],
          createdAt: T0,
          expiresAt: T0 + 60_000,
          stanzas: ["message"],
          logging: ["mustnot"],
        });
        srs.push((await store.replace({ account: alice, peer: parseJid(`bob${i}@example.com`), secret: secret(i), now: T0, verifiedChain: false })).id);
      }
      const workers = [startWorker("A", schema), startWorker("B", schema)];
      try {
        await Promise.all(workers.map((w) => w.ready));
        // Both start together; each walks the same ids in the same order.
        for (const w of workers) w.proc.send({ go: true, rounds: ROUNDS, srs });
        const results = await Promise.all(workers.map((w) => w.done));
        const taken = results.flatMap((r) => r.taken);
        const seen = results.flatMap((r) => r.seen);
        const replaced = results.flatMap((r) => r.replaced);
        assert.equal(taken.length, ROUNDS, "every set taken once in total");
        assert.equal(new Set(taken).size, ROUNDS, "no set taken twice");
        assert.equal(seen.length, ROUNDS, "every d accepted once in total");
        assert.equal(new Set(seen).size, ROUNDS);
        assert.equal(replaced.length, ROUNDS, "every SRS rotated once in total");
        assert.equal(new Set(replaced).size, ROUNDS);
        for (const r of results) assert.equal(r.errors, 0, `worker ${r.name}: only not-found losses`);
        assert.deepEqual(await offline.list(alice), []);
        const all = await store.listAll(alice);
        assert.equal(all.length, ROUNDS, "one secret per peer client after the race");
        assert.ok(all.every((r) => !srs.includes(r.id)));
        // The race really was contested: report how the work split.
        console.log(`# two processes: sets taken ${results.map((r) => `${r.name}=${r.taken.length}`).join(" ")}; SRS rotated ${results.map((r) => `${r.name}=${r.replaced.length}`).join(" ")}`);
      } finally {
        for (const w of workers) w.proc.kill("SIGKILL");
        await offline.close();
        await store.close();
      }
    });
  });

  function startWorker(name: string, schema: string): { proc: ChildProcess; ready: Promise<void>; done: Promise<WorkerResult> } {
    const proc = fork(fileURLToPath(import.meta.url), [], {
      execArgv: ["--import", "tsx"],
      env: { ...process.env, XMPP_E2E_PG_WORKER: JSON.stringify({ name, schema, config: pgConfig() }) },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    let onReady: () => void = () => {};
    let onDone: (r: WorkerResult) => void = () => {};
    let onFail: (e: Error) => void = () => {};
    const ready = new Promise<void>((r) => (onReady = r));
    const done = new Promise<WorkerResult>((res, rej) => {
      onDone = res;
      onFail = rej;
    });
    proc.on("message", (m: unknown) => {
      const msg = m as { ready?: boolean; result?: WorkerResult };
      if (msg.ready === true) onReady();
      if (msg.result !== undefined) onDone(msg.result);
    });
    proc.on("exit", (code) => onFail(new Error(`worker ${name} exited with ${String(code)}`)));
    return { proc, ready, done };
  }
}

// ---------------------------------------------------------------------------------------

/** The child process: opens its own pools on the shared schema and races when told. */
async function worker(): Promise<void> {
  const { name, schema, config } = JSON.parse(process.env["XMPP_E2E_PG_WORKER"] ?? "{}") as { name: string; schema: string; config: PoolConfig };
  const offline: OfflineStore = await openPgOfflineStore({ connection: config, schema });
  const store = await openPgStore({ connection: config, schema });
  const send = (m: unknown): void => {
    process.send?.(m);
  };
  process.on("message", (m: unknown) => {
    const msg = m as { go?: boolean; rounds: number; srs: string[] };
    if (msg.go !== true) return;
    void (async () => {
      const result: WorkerResult = { name, taken: [], seen: [], replaced: [], errors: 0 };
      for (let i = 0; i < msg.rounds; i++) {
        const [set, fresh, rotated] = await Promise.all([
          offline.take(alice, `set-${i}`),
          offline.markSeen(alice, `d-${i}`, T0),
          store
            .replace({ account: alice, peer: parseJid(`bob${i}@example.com`), oldSecretId: msg.srs[i] ?? "", secret: secret(200 + i), now: T0 + 1, verifiedChain: false })
            .then(
              () => true,
              (e: unknown) => {
                if (!(e instanceof StoreError && e.condition === "not-found")) result.errors++;
                return false;
              },
            ),
        ]);
        if (set !== undefined) result.taken.push(set.id);
        if (fresh) result.seen.push(`d-${i}`);
        if (rotated) result.replaced.push(msg.srs[i] ?? "");
      }
      await offline.close();
      await store.close();
      send({ result });
      process.disconnect?.();
    })();
  });
  send({ ready: true });
}
