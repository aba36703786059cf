/**
 * The store contracts (test/unit/store-contract.ts: retained secrets and SAS state, races,
 * the XEP-0187 offline store, the object replay cache) run against MemoryStore and the
 * SQLite stores, plus what only a file can show: persistence across reopen, permissions,
 * migrations, corruption, secure deletion, two connections in turn. The identity and trust
 * contract runs in test/unit/trust-store.test.ts, PostgreSQL in
 * test/interop/store-postgres.test.ts.
 *
 * Spec: XEP-0116 v0.16 sections 4.7.3 / 4.8.1, XEP-0217 v0.1 sections 4.5.4 / 4.6.1
 * (retained secrets: destroy the old SRS, securely store the new one, extended search
 * over other JIDs, expiry), 4.7.2 / 4.5.3 (SAS confirmation) and XEP-0116 section 7.3
 * (whether the whole chain was validated by a SAS), XEP-0187 v0.5 sections 3.4 / 6.1
 * (one-time offline values used once, the replay set of d).
 */
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { toHex } from "../../src/core/bytes.js";
import { parseJid } from "../../src/core/types.js";
import { MemoryStore } from "../../src/store/memory.js";
import { MemoryOfflineStore } from "../../src/store/offline.js";
import { openSqliteOfflineStore } from "../../src/store/offline-sqlite.js";
import { MemoryReplayCache } from "../../src/store/replay.js";
import { openSqliteReplayCache } from "../../src/store/replay-sqlite.js";
import { openSqliteStore, SCHEMA_VERSION } from "../../src/store/sqlite.js";
import type { FullStore } from "../../src/store/trust-types.js";
import {
  isStoreError,
  offlineContract,
  replayContract,
  secret,
  storeContract,
  storeRaceContract,
  T0,
  type StoreFactory,
} from "./store-contract.js";

const alice = parseJid("alice@example.org");
const bob = parseJid("bob@example.com");
const carol = parseJid("carol@example.net");

const tmpRoot = mkdtempSync(join(tmpdir(), "xmpp-e2e-store-"));
after(() => rmSync(tmpRoot, { recursive: true, force: true }));
let tmpN = 0;
function tmpPath(name = "store.db"): string {
  return join(tmpRoot, `t${tmpN++}`, name);
}

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength).indexOf(Buffer.from(needle)) !== -1;
}

// One MemoryStore serves both "handles" of a pair: it is one process. Two connections to
// ":memory:" would be two databases: no pair there.
const memoryStore: StoreFactory<FullStore> = {
  open: () => new MemoryStore(),
  openPair: async () => {
    const s = new MemoryStore();
    return [s, s] as const;
  },
};
const sqliteFile: StoreFactory<FullStore> = {
  open: () => openSqliteStore(tmpPath()),
  openPair: async () => {
    const p = tmpPath();
    return [openSqliteStore(p), openSqliteStore(p)] as const;
  },
};
const sqliteMemory: StoreFactory<FullStore> = { open: () => openSqliteStore(":memory:") };
for (const [kind, f] of [
  ["MemoryStore", memoryStore],
  ["SQLite (temp file)", sqliteFile],
  ["SQLite (:memory:)", sqliteMemory],
] as const) {
  storeContract(kind, f);
  storeRaceContract(kind, f);
}

offlineContract("MemoryOfflineStore", {
  open: () => new MemoryOfflineStore(),
  openPair: async () => {
    const s = new MemoryOfflineStore();
    return [s, s] as const;
  },
});
offlineContract("SQLite", {
  open: () => openSqliteOfflineStore(tmpPath()),
  openPair: async () => {
    const p = tmpPath();
    return [openSqliteOfflineStore(p), openSqliteOfflineStore(p)] as const;
  },
});
replayContract("MemoryReplayCache", { open: () => new MemoryReplayCache() });
replayContract("SQLite", { open: () => openSqliteReplayCache(tmpPath()) });

describe("SQLite store: the file", () => {
  it("persists secrets, chain flags and SAS state across reopen", async () => {
    const path = tmpPath();
    const s1 = openSqliteStore(path);
    const a = await s1.replace({ account: alice, peer: bob, secret: secret(1), now: T0, verifiedChain: false });
    const b = await s1.replace({ account: alice, peer: carol, secret: secret(2), now: T0 + 1, verifiedChain: false });
    await s1.markChainVerified(b.id);
    await s1.setSasConfirmed(alice, carol, T0 + 5);
    await s1.close();

    const s2 = openSqliteStore(path);
    assert.deepEqual(
      (await s2.listAll(alice)).map((r) => ({ ...r, secret: toHex(r.secret) })),
      [
        { id: b.id, account: alice, peer: carol, secret: toHex(secret(2)), createdAt: T0 + 1, verifiedChain: true },
        { id: a.id, account: alice, peer: bob, secret: toHex(secret(1)), createdAt: T0, verifiedChain: false },
      ],
    );
    assert.deepEqual(await s2.getSasState(alice, carol), { confirmed: true, confirmedAt: T0 + 5 });
    const a1 = await s2.replace({ account: alice, peer: bob, oldSecretId: a.id, secret: secret(3), now: T0 + 9, verifiedChain: false });
    await s2.close();

    const s3 = openSqliteStore(path);
    assert.deepEqual(
      (await s3.list(alice, bob)).map((r) => [r.id, toHex(r.secret)]),
      [[a1.id, toHex(secret(3))]],
    );
    await s3.close();
  });

  it("creates the file 0600 (and -wal/-shm) and a missing directory 0700", async () => {
    const path = join(tmpRoot, `perm${tmpN++}`, "nested", "store.db");
    const s = openSqliteStore(path);
    await s.replace({ account: alice, peer: bob, secret: secret(1), now: T0, verifiedChain: false });
    assert.equal(statSync(path).mode & 0o777, 0o600);
    for (const side of [`${path}-wal`, `${path}-shm`])
      if (existsSync(side)) assert.equal(statSync(side).mode & 0o777, 0o600, side);
    assert.equal(statSync(join(path, "..")).mode & 0o777, 0o700);
    assert.equal(statSync(join(path, "..", "..")).mode & 0o777, 0o700);
    await s.close();
  });

  it("tightens an existing file that is readable by others", async () => {
    const path = tmpPath();
    const s1 = openSqliteStore(path);
    await s1.close();
    chmodSync(path, 0o644);
    const s2 = openSqliteStore(path);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    await s2.close();
  });

  it("records the schema version with the injected clock, once", async () => {
    const path = tmpPath();
    const s = openSqliteStore(path, { clock: { now: () => 1234 } });
    await s.close();
    const s2 = openSqliteStore(path, { clock: { now: () => 9999 } });
    await s2.close();
    const db = new Database(path, { readonly: true });
    // v1: retained secrets and SAS state; v2: identities and trust (src/store/sqlite-trust.ts).
    assert.deepEqual(db.prepare("SELECT version, applied_at FROM schema_version ORDER BY version").all(), [
      { version: 1, applied_at: 1234 },
      { version: SCHEMA_VERSION, applied_at: 1234 },
    ]);
    assert.equal(SCHEMA_VERSION, 2);
    assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
    db.close();
  });

  it("refuses a database from a newer schema as corrupt", async () => {
    const path = tmpPath();
    await openSqliteStore(path).close();
    const db = new Database(path);
    db.prepare("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)").run(SCHEMA_VERSION + 1, 0);
    db.close();
    assert.throws(() => openSqliteStore(path), isStoreError("corrupt"));
  });

  it("reports a file that is not a database as corrupt", async () => {
    const path = tmpPath();
    await openSqliteStore(path).close();
    writeFileSync(path, Buffer.alloc(4096, 0x5a));
    rmSync(`${path}-wal`, { force: true });
    rmSync(`${path}-shm`, { force: true });
    assert.throws(() => openSqliteStore(path), isStoreError("corrupt"));
  });

  it("reports a malformed row as corrupt, without its contents", async () => {
    const path = tmpPath();
    await openSqliteStore(path).close();
    const db = new Database(path);
    db.prepare(
      "INSERT INTO retained_secrets (id, account, peer, secret, created_at, verified_chain) VALUES (?, ?, ?, ?, ?, ?)",
    ).run("x", alice, bob, "not-a-blob-secret-text", T0, 0);
    db.close();
    const s = openSqliteStore(path);
    const err = await s.list(alice, bob).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(isStoreError("corrupt")(err));
    assert.ok(!String(err).includes("not-a-blob-secret-text"));
    await s.close();
  });

  it("reports an unusable path as io", async () => {
    const blocker = tmpPath("file");
    await openSqliteStore(blocker).close();
    // A regular file cannot be a directory.
    assert.throws(() => openSqliteStore(join(blocker, "store.db")), isStoreError("io"));
  });

  it("leaves no copy of a destroyed secret in the database or WAL files", async () => {
    const path = tmpPath();
    const s = openSqliteStore(path);
    const r0 = await s.replace({ account: alice, peer: bob, secret: secret(11), now: T0, verifiedChain: false });
    const r1 = await s.replace({ account: alice, peer: carol, secret: secret(12), now: T0, verifiedChain: false });
    const raw = () =>
      [path, `${path}-wal`].filter(existsSync).map((f) => new Uint8Array(readFileSync(f)));
    assert.ok(raw().some((b) => contains(b, secret(11))), "sanity: the secret is on disk before");
    await s.replace({ account: alice, peer: bob, oldSecretId: r0.id, secret: secret(13), now: T0 + 1, verifiedChain: false });
    await s.remove(r1.id);
    await s.expire(T0 + 1); // nothing left before T0 + 1 besides what is already gone
    for (const b of raw()) {
      assert.ok(!contains(b, secret(11)), "replaced secret scrubbed");
      assert.ok(!contains(b, secret(12)), "removed secret scrubbed");
    }
    await s.close();
  });

  it("two connections to one file: replacing the same SRS succeeds once", async () => {
    const path = tmpPath();
    const s1 = openSqliteStore(path);
    const s2 = openSqliteStore(path);
    const r0 = await s1.replace({ account: alice, peer: bob, secret: secret(1), now: T0, verifiedChain: false });
    const r1 = await s2.replace({ account: alice, peer: bob, oldSecretId: r0.id, secret: secret(2), now: T0 + 1, verifiedChain: false });
    await assert.rejects(
      s1.replace({ account: alice, peer: bob, oldSecretId: r0.id, secret: secret(3), now: T0 + 2, verifiedChain: false }),
      isStoreError("not-found"),
    );
    assert.deepEqual(
      (await s1.list(alice, bob)).map((r) => r.id),
      [r1.id],
    );
    await s1.close();
    await s2.close();
  });
});
