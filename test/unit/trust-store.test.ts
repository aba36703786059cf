/**
 * The identity and trust store contract (src/store/trust-types.ts), run against
 * MemoryStore and the SQLite store (schema v2), plus the v1 -> v2 migration.
 *
 * Spec: XEP-0116 v0.16 sections 7.3 / 7.4 (remember every received key's fingerprint,
 * the JIDs associated with it, whether the user validated it, its petname), section 14
 * (private keys at rest), XEP-0189 v0.14 section 4 (revocation).
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { toBase64, toHex } from "../../src/core/bytes.js";
import { parseJid } from "../../src/core/types.js";
import { MemoryStore } from "../../src/store/memory.js";
import { openSqliteStore, SCHEMA_VERSION } from "../../src/store/sqlite.js";
import type { FullStore } from "../../src/store/trust-types.js";
import { StoreError } from "../../src/store/types.js";

const alice = parseJid("alice@example.org");
const aliceFull = parseJid("alice@example.org/pda");
const bob = parseJid("bob@example.com");
const bobFull = parseJid("bob@example.com/laptop");
const mallory = parseJid("mallory@evil.example");
const T0 = Date.UTC(2026, 0, 1);

const tmpRoot = mkdtempSync(join(tmpdir(), "xmpp-e2e-trust-store-"));
after(() => rmSync(tmpRoot, { recursive: true, force: true }));
let n = 0;
const tmpPath = () => join(tmpRoot, `t${n++}`, "store.db");

const bytes = (tag: number, len = 48) => {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (tag * 37 + i * 11) & 0xff;
  b[0] = 0xc3;
  b[1] = tag;
  return b;
};
const isStoreError = (c: StoreError["condition"]) => (e: unknown) => e instanceof StoreError && e.condition === c;

function contract(kind: string, open: () => FullStore): void {
  describe(`identity store contract: ${kind}`, () => {
    it("put, get, list (newest first), bare account", async () => {
      const s = open();
      const a = await s.putIdentity({ account: aliceFull, alg: "ed25519", publicKey: bytes(1), fingerprint: "fp-a", privateKey: bytes(2), protection: "none", createdAt: T0 });
      const b = await s.putIdentity({ account: alice, alg: "rsa-sha256", publicKey: bytes(3), fingerprint: "fp-b", privateKey: bytes(4), protection: "passphrase", createdAt: T0 + 5 });
      assert.equal(a.account, alice);
      assert.deepEqual((await s.listIdentities(aliceFull)).map((x) => x.id), [b.id, a.id]);
      const got = await s.getIdentity(a.id);
      assert.ok(got);
      assert.deepEqual([got.alg, toHex(got.publicKey), toHex(got.privateKey), got.protection, got.createdAt, got.fingerprint], ["ed25519", toHex(bytes(1)), toHex(bytes(2)), "none", T0, "fp-a"]);
      assert.equal("revokedAt" in got, false);
      assert.equal(await s.getIdentity("nope"), undefined);
      assert.deepEqual(await s.listIdentities(bob), []);
      await s.close();
    });

    it("putting the same key again updates its private key and protection, keeping id and createdAt", async () => {
      const s = open();
      const a = await s.putIdentity({ account: alice, alg: "ed25519", publicKey: bytes(1), fingerprint: "fp-a", privateKey: bytes(2), protection: "none", createdAt: T0 });
      const a2 = await s.putIdentity({ account: alice, alg: "ed25519", publicKey: bytes(1), fingerprint: "fp-a", privateKey: bytes(9), protection: "passphrase", createdAt: T0 + 99 });
      assert.equal(a2.id, a.id);
      assert.equal(a2.createdAt, T0);
      assert.equal(a2.protection, "passphrase");
      assert.equal(toHex(a2.privateKey), toHex(bytes(9)));
      assert.equal((await s.listIdentities(alice)).length, 1);
      await s.close();
    });

    it("revoke keeps the earliest time; remove destroys; unknown ids are not-found / false", async () => {
      const s = open();
      const a = await s.putIdentity({ account: alice, alg: "ed25519", publicKey: bytes(1), fingerprint: "fp-a", privateKey: bytes(2), protection: "none", createdAt: T0 });
      await s.revokeIdentity(a.id, T0 + 10);
      await s.revokeIdentity(a.id, T0 + 20);
      assert.equal((await s.getIdentity(a.id))?.revokedAt, T0 + 10);
      await assert.rejects(s.revokeIdentity("nope", T0), isStoreError("not-found"));
      assert.equal(await s.removeIdentity(a.id), true);
      assert.equal(await s.removeIdentity(a.id), false);
      await s.close();
    });

    it("private keys are copies and never shown by inspect or JSON", async () => {
      const s = open();
      const pk = bytes(7);
      const a = await s.putIdentity({ account: alice, alg: "ed25519", publicKey: bytes(1), fingerprint: "fp-a", privateKey: pk, protection: "none", createdAt: T0 });
      pk.fill(0);
      a.privateKey.fill(0);
      const again = await s.getIdentity(a.id);
      assert.equal(toHex(again?.privateKey ?? new Uint8Array()), toHex(bytes(7)));
      const shown = `${inspect(again)}${JSON.stringify(again)}`;
      assert.ok(!shown.includes(toHex(bytes(7))) && !shown.includes(toBase64(bytes(7))));
      assert.match(shown, /redacted/);
      await s.close();
    });

    it("rejects malformed arguments", async () => {
      const s = open();
      await assert.rejects(s.putIdentity({ account: alice, alg: "ed25519", publicKey: new Uint8Array(), fingerprint: "f", privateKey: bytes(1), protection: "none", createdAt: T0 }), RangeError);
      await assert.rejects(s.putIdentity({ account: alice, alg: "ed25519", publicKey: bytes(1), fingerprint: "", privateKey: bytes(1), protection: "none", createdAt: T0 }), RangeError);
      await assert.rejects(s.recordKeySeen({ account: alice, jid: bob, alg: "ed25519", publicKey: bytes(1), fingerprint: "f", now: 1.5, accepted: true }), RangeError);
      await s.recordKeySeen({ account: alice, jid: bob, alg: "ed25519", publicKey: bytes(1), fingerprint: "f", now: T0, accepted: true });
      await assert.rejects(s.setPetname(alice, "f", "bad\nname"), RangeError);
      await assert.rejects(s.setPetname(alice, "f", "  "), RangeError);
      await s.close();
    });
  });

  describe(`trust store contract: ${kind}`, () => {
    it("records a key with the JIDs that presented it (bare), first/last seen, accepted flag", async () => {
      const s = open();
      const k1 = await s.recordKeySeen({ account: aliceFull, jid: bobFull, alg: "rsa-sha256", publicKey: bytes(1), fingerprint: "K1", now: T0, accepted: true });
      assert.equal(k1.account, alice);
      assert.deepEqual(k1.jids, [{ jid: bob, firstSeen: T0, lastSeen: T0, accepted: true }]);
      const k1b = await s.recordKeySeen({ account: alice, jid: mallory, alg: "rsa-sha256", publicKey: bytes(1), fingerprint: "K1", now: T0 + 10, accepted: false });
      assert.equal(k1b.firstSeen, T0);
      assert.equal(k1b.lastSeen, T0 + 10);
      assert.deepEqual(k1b.jids, [
        { jid: bob, firstSeen: T0, lastSeen: T0, accepted: true },
        { jid: mallory, firstSeen: T0 + 10, lastSeen: T0 + 10, accepted: false },
      ]);
      // accepted is never un-set by a later sighting; lastSeen never goes back.
      const k1c = await s.recordKeySeen({ account: alice, jid: bob, alg: "rsa-sha256", publicKey: bytes(1), fingerprint: "K1", now: T0 + 5, accepted: false });
      assert.deepEqual(k1c.jids[0], { jid: bob, firstSeen: T0, lastSeen: T0 + 5, accepted: true });
      assert.equal(k1c.lastSeen, T0 + 10);
      assert.equal(toHex((await s.getPeerKey(alice, "K1"))?.publicKey ?? new Uint8Array()), toHex(bytes(1)));
      assert.equal(await s.getPeerKey(bob, "K1"), undefined, "scoped by account");
      await s.close();
    });

    it("keysForJid and listPeerKeys: most recently seen first", async () => {
      const s = open();
      await s.recordKeySeen({ account: alice, jid: bob, alg: "rsa-sha256", publicKey: bytes(1), fingerprint: "K1", now: T0, accepted: true });
      await s.recordKeySeen({ account: alice, jid: bob, alg: "ed25519", publicKey: bytes(2), fingerprint: "K2", now: T0 + 1, accepted: false });
      await s.recordKeySeen({ account: alice, jid: mallory, alg: "ed25519", publicKey: bytes(3), fingerprint: "K3", now: T0 + 2, accepted: true });
      assert.deepEqual((await s.keysForJid(alice, bobFull)).map((k) => k.fingerprint), ["K2", "K1"]);
      assert.deepEqual((await s.listPeerKeys(alice)).map((k) => k.fingerprint), ["K3", "K2", "K1"]);
      assert.deepEqual(await s.keysForJid(mallory, bob), []);
      await s.close();
    });

    it("petname, fingerprint check, SAS confirmation, acceptance and revocation", async () => {
      const s = open();
      await s.recordKeySeen({ account: alice, jid: bob, alg: "rsa-sha256", publicKey: bytes(1), fingerprint: "K1", now: T0, accepted: false });
      await s.setPetname(alice, "K1", "Bob (work laptop)");
      await s.markFingerprintChecked(alice, "K1", T0 + 5);
      await s.markFingerprintChecked(alice, "K1", T0 + 3);
      await s.markKeySasConfirmed(alice, "K1", T0 + 7);
      await s.acceptKeyForJid(alice, "K1", bob, T0 + 8);
      await s.acceptKeyForJid(alice, "K1", parseJid("bob@other.example"), T0 + 9);
      await s.revokePeerKey(alice, "K1", T0 + 20);
      await s.revokePeerKey(alice, "K1", T0 + 30);
      const k = await s.getPeerKey(alice, "K1");
      assert.ok(k);
      assert.equal(k.petname, "Bob (work laptop)");
      assert.equal(k.fingerprintCheckedAt, T0 + 5);
      assert.equal(k.sasConfirmedAt, T0 + 7);
      assert.equal(k.revokedAt, T0 + 20);
      assert.deepEqual(
        k.jids.map((l) => [l.jid, l.accepted]),
        [
          [bob, true],
          ["bob@other.example", true],
        ],
      );
      await s.setPetname(alice, "K1", undefined);
      assert.equal("petname" in ((await s.getPeerKey(alice, "K1")) ?? {}), false);
      for (const p of [
        s.setPetname(alice, "nope", "x"),
        s.markFingerprintChecked(alice, "nope", T0),
        s.markKeySasConfirmed(alice, "nope", T0),
        s.acceptKeyForJid(alice, "nope", bob, T0),
        s.revokePeerKey(alice, "nope", T0),
      ])
        await assert.rejects(p, isStoreError("not-found"));
      assert.equal(await s.removePeerKey(alice, "K1"), true);
      assert.equal(await s.removePeerKey(alice, "K1"), false);
      assert.deepEqual(await s.keysForJid(alice, bob), [], "links go with the key");
      await s.close();
    });

    it("close: later calls reject with io", async () => {
      const s = open();
      await s.close();
      await assert.rejects(s.listPeerKeys(alice), isStoreError("io"));
      await assert.rejects(s.listIdentities(alice), isStoreError("io"));
    });
  });
}

contract("MemoryStore", () => new MemoryStore());
contract("SQLite (temp file)", () => openSqliteStore(tmpPath()));
contract("SQLite (:memory:)", () => openSqliteStore(":memory:"));

describe("SQLite schema v2", () => {
  it("migrates a v1 file (retained secrets kept) and persists identities and trust across reopen", async () => {
    const path = tmpPath();
    // A v1 database exactly as the v1 code created it.
    const fs = await import("node:fs");
    fs.mkdirSync(join(path, ".."), { recursive: true });
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
