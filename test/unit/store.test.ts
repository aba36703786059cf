/**
 * The store contract (src/store/types.ts), run against MemoryStore and the SQLite store,
 * plus what only a file can show: persistence across reopen, permissions, migrations,
 * corruption, secure deletion, two connections racing.
 *
 * Spec: XEP-0116 v0.16 sections 4.7.3 / 4.8.1, XEP-0217 v0.1 sections 4.5.4 / 4.6.1
 * (retained secrets: destroy the old SRS, securely store the new one, extended search
 * over other JIDs, expiry), 4.7.2 / 4.5.3 (SAS confirmation) and XEP-0116 section 7.3
 * (whether the whole chain was validated by a SAS).
 */
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { toBase64, toHex } from "../../src/core/bytes.js";
import { parseJid, type Jid } from "../../src/core/types.js";
import { MemoryStore } from "../../src/store/memory.js";
import { openSqliteStore, SCHEMA_VERSION } from "../../src/store/sqlite.js";
import { StoreError, type Store } from "../../src/store/types.js";

const alice = parseJid("alice@example.org");
const aliceFull = parseJid("alice@example.org/pda");
const bob = parseJid("bob@example.com");
const bobFull = parseJid("bob@example.com/laptop");
const carol = parseJid("carol@example.net");
const other = parseJid("mallory@example.org");

const tmpRoot = mkdtempSync(join(tmpdir(), "xmpp-e2e-store-"));
after(() => rmSync(tmpRoot, { recursive: true, force: true }));
let tmpN = 0;
function tmpPath(name = "store.db"): string {
  return join(tmpRoot, `t${tmpN++}`, name);
}

/** A distinctive 32-byte secret (searchable in raw database bytes). */
function secret(tag: number): Uint8Array {
  const s = new Uint8Array(32);
  for (let i = 0; i < 32; i++) s[i] = (0xa5 ^ (tag * 31 + i * 7)) & 0xff;
  s[0] = 0xfe;
  s[1] = tag & 0xff;
  return s;
}

function isStoreError(condition: StoreError["condition"]) {
  return (e: unknown) => e instanceof StoreError && e.condition === condition;
}

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength).indexOf(Buffer.from(needle)) !== -1;
}

const T0 = Date.UTC(2026, 0, 1);

function contract(kind: string, open: () => Store): void {
  describe(`store contract: ${kind}`, () => {
    it("starts empty", async () => {
      const s = open();
      assert.deepEqual(await s.list(alice, bob), []);
      assert.deepEqual(await s.listAll(alice), []);
      assert.deepEqual(await s.getSasState(alice, bob), { confirmed: false });
      await s.close();
    });

    it("replace without an old secret starts a new chain (a new peer client)", async () => {
      const s = open();
      const input = secret(1);
      const r = await s.replace({ account: alice, peer: bob, secret: input, now: T0, verifiedChain: false });
      assert.equal(typeof r.id, "string");
      assert.ok(r.id.length > 0);
      assert.equal(r.account, alice);
      assert.equal(r.peer, bob);
      assert.deepEqual(r.secret, secret(1));
      assert.equal(r.createdAt, T0);
      assert.equal(r.verifiedChain, false);
      // The store keeps its own copy: wiping the caller's or a returned array changes nothing.
      input.fill(0);
      r.secret.fill(0);
      const [got, ...rest] = await s.list(alice, bob);
      assert.equal(rest.length, 0);
      assert.ok(got);
      assert.deepEqual(got.secret, secret(1));
      assert.equal(got.id, r.id);
      got.secret.fill(0);
      assert.deepEqual((await s.list(alice, bob))[0]?.secret, secret(1));
      await s.close();
    });

    it("replace destroys the old secret and stores the new one", async () => {
      const s = open();
      const r0 = await s.replace({ account: alice, peer: bob, secret: secret(1), now: T0, verifiedChain: false });
      const r1 = await s.replace({
        account: alice,
        peer: bob,
        oldSecretId: r0.id,
        secret: secret(2),
        now: T0 + 1000,
        verifiedChain: false,
      });
      assert.notEqual(r1.id, r0.id);
      const list = await s.list(alice, bob);
      assert.deepEqual(
        list.map((r) => [r.id, toHex(r.secret)]),
        [[r1.id, toHex(secret(2))]],
      );
      assert.equal(await s.remove(r0.id), false, "the old secret is gone");
      await assert.rejects(s.markChainVerified(r0.id), isStoreError("not-found"));
      await s.close();
    });

    it("keeps one entry per peer client, most recent first", async () => {
      const s = open();
      const c1 = await s.replace({ account: alice, peer: bob, secret: secret(1), now: T0, verifiedChain: false });
      const c2 = await s.replace({ account: alice, peer: bob, secret: secret(2), now: T0 + 10, verifiedChain: false });
      const c1b = await s.replace({
        account: alice,
        peer: bob,
        oldSecretId: c1.id,
        secret: secret(3),
        now: T0 + 20,
        verifiedChain: false,
      });
      assert.deepEqual(
        (await s.list(alice, bob)).map((r) => r.id),
        [c1b.id, c2.id],
      );
      // Same createdAt: insertion order decides (newest first).
      const c3 = await s.replace({ account: alice, peer: bob, secret: secret(4), now: T0 + 20, verifiedChain: false });
      assert.deepEqual(
        (await s.list(alice, bob)).map((r) => r.id),
        [c3.id, c1b.id, c2.id],
      );
      await s.close();
    });

    it("stores bare JIDs and scopes list by account and peer", async () => {
      const s = open();
      const r = await s.replace({ account: aliceFull, peer: bobFull, secret: secret(1), now: T0, verifiedChain: false });
      assert.equal(r.account, alice);
      assert.equal(r.peer, bob);
      await s.replace({ account: alice, peer: carol, secret: secret(2), now: T0 + 1, verifiedChain: false });
      await s.replace({ account: other, peer: bob, secret: secret(3), now: T0 + 2, verifiedChain: false });
      assert.deepEqual(
        (await s.list(aliceFull, bobFull)).map((x) => x.id),
        [r.id],
      );
      assert.deepEqual(
        (await s.list(alice, bob)).map((x) => toHex(x.secret)),
        [toHex(secret(1))],
      );
      assert.deepEqual(
        (await s.list(bob, alice)).map((x) => x.id),
        [],
      );
      await s.close();
    });

    it("listAll returns every peer of the account (extended search), newest first", async () => {
      const s = open();
      const a = await s.replace({ account: alice, peer: bob, secret: secret(1), now: T0, verifiedChain: false });
      const b = await s.replace({ account: alice, peer: carol, secret: secret(2), now: T0 + 5, verifiedChain: true });
      await s.replace({ account: other, peer: bob, secret: secret(3), now: T0 + 9, verifiedChain: false });
      const all = await s.listAll(aliceFull);
      assert.deepEqual(
        all.map((r) => [r.id, r.peer, r.verifiedChain]),
        [
          [b.id, carol, true],
          [a.id, bob, false],
        ],
      );
      await s.close();
    });

    it("an SRS found under another JID is replaced by a secret stored under the current JID", async () => {
      const s = open();
      const old = await s.replace({ account: alice, peer: carol, secret: secret(1), now: T0, verifiedChain: true });
      const n = await s.replace({
        account: alice,
        peer: bob,
        oldSecretId: old.id,
        secret: secret(2),
        now: T0 + 1,
        verifiedChain: false,
      });
      assert.deepEqual(await s.list(alice, carol), []);
      assert.deepEqual(
        (await s.list(alice, bob)).map((r) => r.id),
        [n.id],
      );
      assert.equal(n.verifiedChain, true, "the chain stays verified");
      await s.close();
    });

    it("refuses an old secret of another account and stores nothing", async () => {
      const s = open();
      const theirs = await s.replace({ account: other, peer: bob, secret: secret(1), now: T0, verifiedChain: false });
      await assert.rejects(
        s.replace({ account: alice, peer: bob, oldSecretId: theirs.id, secret: secret(2), now: T0, verifiedChain: false }),
        isStoreError("not-found"),
      );
      await assert.rejects(
        s.replace({ account: alice, peer: bob, oldSecretId: "no-such-id", secret: secret(2), now: T0, verifiedChain: false }),
        isStoreError("not-found"),
      );
      assert.deepEqual(await s.listAll(alice), []);
      assert.equal((await s.listAll(other)).length, 1);
      await s.close();
    });

    it("verifiedChain: inherited along the chain, set by markChainVerified", async () => {
      const s = open();
      const r0 = await s.replace({ account: alice, peer: bob, secret: secret(1), now: T0, verifiedChain: false });
      const r1 = await s.replace({
        account: alice,
        peer: bob,
        oldSecretId: r0.id,
        secret: secret(2),
        now: T0 + 1,
        verifiedChain: false,
      });
      assert.equal(r1.verifiedChain, false);
      await s.markChainVerified(r1.id);
      assert.equal((await s.list(alice, bob))[0]?.verifiedChain, true);
      const r2 = await s.replace({
        account: alice,
        peer: bob,
        oldSecretId: r1.id,
        secret: secret(3),
        now: T0 + 2,
        verifiedChain: false,
      });
      assert.equal(r2.verifiedChain, true);
      assert.equal((await s.list(alice, bob))[0]?.verifiedChain, true);
      const fresh = await s.replace({ account: alice, peer: bob, secret: secret(4), now: T0 + 3, verifiedChain: true });
      assert.equal(fresh.verifiedChain, true);
      await assert.rejects(s.markChainVerified("no-such-id"), isStoreError("not-found"));
      await s.close();
    });

    it("remove destroys one secret and says whether it existed", async () => {
      const s = open();
      const a = await s.replace({ account: alice, peer: bob, secret: secret(1), now: T0, verifiedChain: false });
      const b = await s.replace({ account: alice, peer: bob, secret: secret(2), now: T0, verifiedChain: false });
      assert.equal(await s.remove(a.id), true);
      assert.equal(await s.remove(a.id), false);
      assert.deepEqual(
        (await s.list(alice, bob)).map((r) => r.id),
        [b.id],
      );
      await s.close();
    });

    it("expire destroys secrets created strictly before the cut-off, for every account", async () => {
      const s = open();
      await s.replace({ account: alice, peer: bob, secret: secret(1), now: T0, verifiedChain: false });
      await s.replace({ account: other, peer: carol, secret: secret(2), now: T0 + 10, verifiedChain: false });
      const keep = await s.replace({ account: alice, peer: carol, secret: secret(3), now: T0 + 20, verifiedChain: false });
      assert.equal(await s.expire(T0), 0);
      assert.equal(await s.expire(T0 + 20), 2);
      assert.deepEqual(
        (await s.listAll(alice)).map((r) => r.id),
        [keep.id],
      );
      assert.deepEqual(await s.listAll(other), []);
      assert.equal(await s.expire(T0 + 20), 0);
      await s.close();
    });

    it("two replaces of the same SRS in a row: the first wins, the second is refused", async () => {
      const s = open();
      const r0 = await s.replace({ account: alice, peer: bob, secret: secret(1), now: T0, verifiedChain: false });
      const results = await Promise.allSettled([
        s.replace({ account: alice, peer: bob, oldSecretId: r0.id, secret: secret(2), now: T0 + 1, verifiedChain: false }),
        s.replace({ account: alice, peer: bob, oldSecretId: r0.id, secret: secret(3), now: T0 + 2, verifiedChain: false }),
      ]);
      const ok = results.filter((r) => r.status === "fulfilled");
      const bad = results.filter((r) => r.status === "rejected");
      assert.equal(ok.length, 1);
      assert.equal(bad.length, 1);
      assert.ok(isStoreError("not-found")(bad[0]?.status === "rejected" ? bad[0].reason : undefined));
      const winner = ok[0]?.status === "fulfilled" ? ok[0].value : undefined;
      const list = await s.list(alice, bob);
      assert.equal(list.length, 1, "still one entry for that peer client");
      assert.equal(list[0]?.id, winner?.id);
      assert.deepEqual(list[0]?.secret, secret(2));
      await s.close();
    });

    it("replaces of different chains in a row all land; a chain replaced in a row keeps only its newest", async () => {
      const s = open();
      const a = await s.replace({ account: alice, peer: bob, secret: secret(1), now: T0, verifiedChain: false });
      const b = await s.replace({ account: alice, peer: bob, secret: secret(2), now: T0, verifiedChain: false });
      const [a1, b1] = await Promise.all([
        s.replace({ account: alice, peer: bob, oldSecretId: a.id, secret: secret(3), now: T0 + 1, verifiedChain: false }),
        s.replace({ account: alice, peer: bob, oldSecretId: b.id, secret: secret(4), now: T0 + 1, verifiedChain: false }),
      ]);
      const a2 = await s.replace({
        account: alice,
        peer: bob,
        oldSecretId: a1.id,
        secret: secret(5),
        now: T0 + 2,
        verifiedChain: false,
      });
      assert.deepEqual(
        (await s.list(alice, bob)).map((r) => [r.id, toHex(r.secret)]),
        [
          [a2.id, toHex(secret(5))],
          [b1.id, toHex(secret(4))],
        ],
      );
      await s.close();
    });

    it("rejects malformed arguments (as a rejection, not a synchronous throw)", async () => {
      const s = open();
      const p = s.replace({ account: alice, peer: bob, secret: new Uint8Array(0), now: T0, verifiedChain: false });
      await assert.rejects(p, RangeError);
      await assert.rejects(
        s.replace({ account: alice, peer: bob, secret: secret(1), now: Number.NaN, verifiedChain: false }),
        RangeError,
      );
      await assert.rejects(s.setSasConfirmed(alice, bob, 1.5), RangeError);
      assert.deepEqual(await s.listAll(alice), []);
      await s.close();
    });

    it("remembers SAS confirmation per bare JID pair, keeping the latest time", async () => {
      const s = open();
      await s.setSasConfirmed(aliceFull, bobFull, T0 + 100);
      assert.deepEqual(await s.getSasState(alice, bob), { confirmed: true, confirmedAt: T0 + 100 });
      assert.deepEqual(await s.getSasState(bob, alice), { confirmed: false });
      assert.deepEqual(await s.getSasState(alice, carol), { confirmed: false });
      await s.setSasConfirmed(alice, bob, T0 + 50);
      assert.deepEqual(await s.getSasState(alice, bob), { confirmed: true, confirmedAt: T0 + 100 });
      await s.setSasConfirmed(alice, bob, T0 + 200);
      assert.deepEqual(await s.getSasState(aliceFull, bob), { confirmed: true, confirmedAt: T0 + 200 });
      const st = await s.getSasState(alice, carol);
      assert.equal("confirmedAt" in st, false);
      await s.close();
    });

    it("close is idempotent and later calls reject with io", async () => {
      const s = open();
      await s.close();
      await s.close();
      await assert.rejects(s.list(alice, bob), isStoreError("io"));
      await assert.rejects(
        s.replace({ account: alice, peer: bob, secret: secret(1), now: T0, verifiedChain: false }),
        isStoreError("io"),
      );
      await assert.rejects(s.getSasState(alice, bob), isStoreError("io"));
    });

    it("secrets do not leak through inspect, JSON or errors", async () => {
      const s = open();
      const r = await s.replace({ account: alice, peer: bob, secret: secret(7), now: T0, verifiedChain: false });
      const [listed] = await s.list(alice, bob);
      const hex = toHex(secret(7));
      const b64 = toBase64(secret(7));
      for (const x of [r, listed]) {
        const shown = `${inspect(x, { depth: 5 })}\n${JSON.stringify(x)}`;
        assert.ok(!shown.includes(hex) && !shown.includes(b64), shown);
        assert.ok(!/\b254, 7\b/.test(shown), "no byte list");
        assert.match(shown, /redacted/);
      }
      const err = await s
        .replace({ account: alice, peer: bob, oldSecretId: "gone", secret: secret(8), now: T0, verifiedChain: false })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(err instanceof StoreError);
      assert.ok(!inspect(err).includes(toHex(secret(8))));
      await s.close();
    });
  });
}

contract("MemoryStore", () => new MemoryStore());
contract("SQLite (temp file)", () => openSqliteStore(tmpPath()));
contract("SQLite (:memory:)", () => openSqliteStore(":memory:"));

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
