/**
 * The identity and trust store contract (test/unit/store-contract.ts, src/store/trust-types.ts)
 * run against MemoryStore and the SQLite store (schema v2), plus what only the SQLite file
 * shows: the v1 -> v2 migration, scrubbing of removed private keys, corrupt rows.
 *
 * Spec: XEP-0116 v0.16 sections 7.3 / 7.4 (remember every received key's fingerprint,
 * the JIDs associated with it, whether the user validated it, its petname), section 14
 * (private keys at rest), XEP-0189 v0.14 section 4 (revocation).
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { parseJid } from "../../src/core/types.js";
import { MemoryStore } from "../../src/store/memory.js";
import { openSqliteStore, SCHEMA_VERSION } from "../../src/store/sqlite.js";
import { bytes, isStoreError, T0, trustContract } from "./store-contract.js";

const alice = parseJid("alice@example.org");
const bob = parseJid("bob@example.com");

const tmpRoot = mkdtempSync(join(tmpdir(), "xmpp-e2e-trust-store-"));
after(() => rmSync(tmpRoot, { recursive: true, force: true }));
let n = 0;
const tmpPath = (): string => join(tmpRoot, `t${n++}`, "store.db");

trustContract("MemoryStore", { open: () => new MemoryStore() });
trustContract("SQLite (temp file)", { open: () => openSqliteStore(tmpPath()) });
trustContract("SQLite (:memory:)", { open: () => openSqliteStore(":memory:") });

describe("SQLite schema v2", () => {
  it("migrates a v1 file (retained secrets kept) and persists identities and trust across reopen", async () => {
    const path = tmpPath();
    // A v1 database exactly as the v1 code created it.
    mkdirSync(join(path, ".."), { recursive: true });
    const v1 = new Database(path);
    v1.exec(`
      CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY, applied_at INTEGER NOT NULL);
      CREATE TABLE retained_secrets (id TEXT NOT NULL PRIMARY KEY, account TEXT NOT NULL, peer TEXT NOT NULL, secret BLOB NOT NULL,
        created_at INTEGER NOT NULL, verified_chain INTEGER NOT NULL DEFAULT 0 CHECK (verified_chain IN (0, 1)));
      CREATE TABLE sas_state (account TEXT NOT NULL, peer TEXT NOT NULL, confirmed_at INTEGER NOT NULL, PRIMARY KEY (account, peer)) WITHOUT ROWID;
    `);
    v1.prepare("INSERT INTO schema_version VALUES (1, 1)").run();
    v1.prepare("INSERT INTO retained_secrets VALUES ('r1', ?, ?, ?, ?, 1)").run(alice, bob, Buffer.from(bytes(5, 32)), T0);
    v1.close();

    const s = openSqliteStore(path, { clock: { now: () => 4242 } });
    assert.equal((await s.list(alice, bob))[0]?.verifiedChain, true);
    await s.putIdentity({ account: alice, alg: "ed25519", publicKey: bytes(1), fingerprint: "fp-a", privateKey: bytes(2), protection: "none", createdAt: T0 });
    await s.recordKeySeen({ account: alice, jid: bob, alg: "rsa-sha256", publicKey: bytes(3), fingerprint: "K1", now: T0, accepted: true });
    await s.setPetname(alice, "K1", "Bob");
    await s.close();
    const db = new Database(path, { readonly: true });
    assert.deepEqual(db.prepare("SELECT version, applied_at FROM schema_version ORDER BY version").all(), [
      { version: 1, applied_at: 1 },
      { version: SCHEMA_VERSION, applied_at: 4242 },
    ]);
    db.close();
    const s2 = openSqliteStore(path);
    assert.equal((await s2.listIdentities(alice))[0]?.fingerprint, "fp-a");
    assert.equal((await s2.getPeerKey(alice, "K1"))?.petname, "Bob");
    await s2.close();
  });

  it("a removed identity's private key does not stay in the file or WAL", async () => {
    const path = tmpPath();
    const s = openSqliteStore(path);
    const pk = bytes(77, 64);
    const id = await s.putIdentity({ account: alice, alg: "ed25519", publicKey: bytes(1), fingerprint: "fp-a", privateKey: pk, protection: "none", createdAt: T0 });
    const raw = () => [path, `${path}-wal`].filter(existsSync).map((f) => readFileSync(f));
    assert.ok(raw().some((b) => b.includes(Buffer.from(pk))), "sanity: on disk before");
    await s.removeIdentity(id.id);
    for (const b of raw()) assert.ok(!b.includes(Buffer.from(pk)), "scrubbed");
    await s.close();
  });

  it("a malformed peer key row is reported as corrupt", async () => {
    const path = tmpPath();
    const s = openSqliteStore(path);
    await s.close();
    const db = new Database(path);
    db.prepare("INSERT INTO peer_keys (account, fingerprint, alg, public_key, first_seen, last_seen) VALUES (?, 'K', 'rot13', x'01', 1, 1)").run(alice);
    db.close();
    const s2 = openSqliteStore(path);
    await assert.rejects(s2.getPeerKey(alice, "K"), isStoreError("corrupt"));
    await s2.close();
  });
});
