/**
 * The store contracts as reusable suites: every implementation of the state store
 * (src/store/types.ts `Store`, src/store/trust-types.ts `FullStore`, src/store/offline.ts
 * `OfflineStore`, src/store/replay.ts `ReplayCache`) must pass them unchanged. A factory
 * returns a fresh, empty store (sync or async); `openPair`, when given, returns two
 * handles on ONE backing store (two connections, two pools: what two processes see), for
 * the races that only show across connections.
 *
 * Run against MemoryStore and SQLite by test/unit/store.test.ts (retained secrets, races,
 * offline store, replay cache) and test/unit/trust-store.test.ts (identities and trust),
 * and against PostgreSQL by test/interop/store-postgres.test.ts; the factories are async so
 * a networked database can run them. Backend-specific cases (files, migrations, pools)
 * stay in those files.
 *
 * Spec: XEP-0116 v0.16 sections 4.7.3 / 4.8.1, XEP-0217 v0.1 sections 4.5.4 / 4.6.1
 * (retained secrets: destroy the old SRS, securely store the new one, extended search over
 * other JIDs, expiry), 4.7.2 / 4.5.3 (SAS confirmation), XEP-0116 sections 7.3 / 7.4 / 14
 * (verified chains, peer keys, JIDs, petnames, private keys at rest), XEP-0189 v0.14
 * section 4 (revocation), XEP-0187 v0.5 sections 3.1 / 3.4 / 6.1 (one-time offline
 * values used once, the replay set of d), RFC 2779 section 2.5.2 via draft-ietf-xmpp-e2e-03
 * section 2 (the object replay cache).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inspect } from "node:util";
import { toBase64, toHex } from "../../src/core/bytes.js";
import { parseJid } from "../../src/core/types.js";
import type { OfflineStore, StoredOfflineSecret } from "../../src/store/offline.js";
import type { ReplayCache } from "../../src/store/replay.js";
import type { FullStore } from "../../src/store/trust-types.js";
import { StoreError, type Store } from "../../src/store/types.js";

/** How a contract suite gets stores. */
export interface StoreFactory<S> {
  /** A fresh, empty store. */
  readonly open: () => S | Promise<S>;
  /** Two handles on one fresh backing store (as two processes would hold). */
  readonly openPair?: () => Promise<readonly [S, S]>;
}

const alice = parseJid("alice@example.org");
const aliceFull = parseJid("alice@example.org/pda");
const bob = parseJid("bob@example.com");
const bobFull = parseJid("bob@example.com/laptop");
const carol = parseJid("carol@example.net");
const other = parseJid("mallory@example.org");
const mallory = parseJid("mallory@evil.example");

/** A distinctive 32-byte secret. */
export function secret(tag: number): Uint8Array {
  const s = new Uint8Array(32);
  for (let i = 0; i < 32; i++) s[i] = (0xa5 ^ (tag * 31 + i * 7)) & 0xff;
  s[0] = 0xfe;
  s[1] = tag & 0xff;
  return s;
}

/** Distinctive bytes (keys, nonces) of a given length. */
export const bytes = (tag: number, len = 48): Uint8Array => {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (tag * 37 + i * 11) & 0xff;
  b[0] = 0xc3;
  b[1] = tag;
  return b;
};

/** A predicate for assert.rejects / assert.throws: a StoreError with that condition. */
export function isStoreError(condition: StoreError["condition"]): (e: unknown) => boolean {
  return (e: unknown) => e instanceof StoreError && e.condition === condition;
}

/** The contracts' epoch (any fixed time works; stores take `now` from the caller). */
export const T0 = Date.UTC(2026, 0, 1);

export function storeContract(kind: string, factory: StoreFactory<Store>): void {
  const open = factory.open;
  describe(`store contract: ${kind}`, () => {
    it("starts empty", async () => {
      const s = await open();
      assert.deepEqual(await s.list(alice, bob), []);
      assert.deepEqual(await s.listAll(alice), []);
      assert.deepEqual(await s.getSasState(alice, bob), { confirmed: false });
      await s.close();
    });

    it("replace without an old secret starts a new chain (a new peer client)", async () => {
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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

export function trustContract(kind: string, factory: StoreFactory<FullStore>): void {
  const open = factory.open;
  describe(`identity store contract: ${kind}`, () => {
    it("put, get, list (newest first), bare account", async () => {
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
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
      const s = await open();
      await s.recordKeySeen({ account: alice, jid: bob, alg: "rsa-sha256", publicKey: bytes(1), fingerprint: "K1", now: T0, accepted: true });
      await s.recordKeySeen({ account: alice, jid: bob, alg: "ed25519", publicKey: bytes(2), fingerprint: "K2", now: T0 + 1, accepted: false });
      await s.recordKeySeen({ account: alice, jid: mallory, alg: "ed25519", publicKey: bytes(3), fingerprint: "K3", now: T0 + 2, accepted: true });
      assert.deepEqual((await s.keysForJid(alice, bobFull)).map((k) => k.fingerprint), ["K2", "K1"]);
      assert.deepEqual((await s.listPeerKeys(alice)).map((k) => k.fingerprint), ["K3", "K2", "K1"]);
      assert.deepEqual(await s.keysForJid(mallory, bob), []);
      await s.close();
    });

    it("petname, fingerprint check, SAS confirmation, acceptance and revocation", async () => {
      const s = await open();
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
      // Each call made when awaited: a networked store rejects later, and a rejection
      // created before its handler is attached would be reported as unhandled.
      for (const f of [
        () => s.setPetname(alice, "nope", "x"),
        () => s.markFingerprintChecked(alice, "nope", T0),
        () => s.markKeySasConfirmed(alice, "nope", T0),
        () => s.acceptKeyForJid(alice, "nope", bob, T0),
        () => s.revokePeerKey(alice, "nope", T0),
      ])
        await assert.rejects(f(), isStoreError("not-found"));
      assert.equal(await s.removePeerKey(alice, "K1"), true);
      assert.equal(await s.removePeerKey(alice, "K1"), false);
      assert.deepEqual(await s.keysForJid(alice, bob), [], "links go with the key");
      await s.close();
    });

    it("close: later calls reject with io", async () => {
      const s = await open();
      await s.close();
      await assert.rejects(s.listPeerKeys(alice), isStoreError("io"));
      await assert.rejects(s.listIdentities(alice), isStoreError("io"));
    });
  });
}

/** Races: many concurrent calls on one handle, and calls on two handles of one store. */
export function storeRaceContract(kind: string, factory: StoreFactory<FullStore>): void {
  describe(`store races: ${kind}`, () => {
    it("eight concurrent replaces of one SRS: exactly one wins, one entry per peer client", async () => {
      const s = await factory.open();
      const r0 = await s.replace({ account: alice, peer: bob, secret: secret(1), now: T0, verifiedChain: true });
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) =>
          s.replace({ account: alice, peer: bob, oldSecretId: r0.id, secret: secret(10 + i), now: T0 + 1 + i, verifiedChain: false }),
        ),
      );
      const won = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
      const lost = results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
      assert.equal(won.length, 1);
      assert.equal(lost.length, 7);
      assert.ok(lost.every(isStoreError("not-found")));
      const list = await s.list(alice, bob);
      assert.deepEqual(list.map((r) => r.id), [won[0]?.id]);
      assert.equal(list[0]?.verifiedChain, true, "the winner inherited the verified flag");
      await s.close();
    });

    it("concurrent putIdentity / recordKeySeen / setSasConfirmed of the same rows converge", async () => {
      const s = await factory.open();
      const puts = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          s.putIdentity({ account: alice, alg: "ed25519", publicKey: bytes(1), fingerprint: "fp-a", privateKey: bytes(20 + i), protection: "none", createdAt: T0 + i }),
        ),
      );
      assert.equal(new Set(puts.map((p) => p.id)).size, 1, "one identity row");
      assert.equal((await s.listIdentities(alice)).length, 1);
      const jids = Array.from({ length: 6 }, (_, i) => parseJid(`bob${i}@example.com`));
      await Promise.all(
        jids.map((j, i) => s.recordKeySeen({ account: alice, jid: j, alg: "ed25519", publicKey: bytes(3), fingerprint: "K", now: T0 + i, accepted: i === 0 })),
      );
      const k = await s.getPeerKey(alice, "K");
      assert.ok(k);
      // Which concurrent sighting inserted the key is not defined; lastSeen is the latest.
      assert.ok(k.firstSeen >= T0 && k.firstSeen <= T0 + 5);
      assert.equal(k.lastSeen, T0 + 5);
      assert.deepEqual(k.jids.map((l) => [l.jid, l.accepted]), jids.map((j, i) => [j, i === 0]));
      await Promise.all([3, 9, 1, 7].map((d) => s.setSasConfirmed(alice, bob, T0 + d)));
      assert.deepEqual(await s.getSasState(alice, bob), { confirmed: true, confirmedAt: T0 + 9 });
      await s.close();
    });

    if (factory.openPair !== undefined) {
      const openPair = factory.openPair;
      it("two handles on one store: a replace through one is seen and refused through the other", async () => {
        const [a, b] = await openPair();
        const r0 = await a.replace({ account: alice, peer: bob, secret: secret(1), now: T0, verifiedChain: false });
        assert.deepEqual((await b.list(alice, bob)).map((r) => r.id), [r0.id]);
        const results = await Promise.allSettled([
          a.replace({ account: alice, peer: bob, oldSecretId: r0.id, secret: secret(2), now: T0 + 1, verifiedChain: false }),
          b.replace({ account: alice, peer: bob, oldSecretId: r0.id, secret: secret(3), now: T0 + 2, verifiedChain: false }),
        ]);
        assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
        const lost = results.find((r) => r.status === "rejected");
        assert.ok(isStoreError("not-found")(lost?.status === "rejected" ? lost.reason : undefined));
        assert.equal((await a.list(alice, bob)).length, 1);
        assert.deepEqual((await a.list(alice, bob)).map((r) => r.id), (await b.list(alice, bob)).map((r) => r.id));
        await a.close();
        await b.close();
      });
    }
  });
}

function offlineSet(id: string, expiresAt: number, tag = 1): StoredOfflineSecret {
  return {
    id,
    nonce: bytes(tag, 16),
    pairs: [
      { group: "x25519", x: bytes(tag + 1, 32) },
      { group: 14, x: bytes(tag + 2, 64) },
    ],
    createdAt: T0,
    expiresAt,
    stanzas: ["message", "iq"],
    logging: ["mustnot"],
  };
}

export function offlineContract(kind: string, factory: StoreFactory<OfflineStore>): void {
  describe(`offline store contract: ${kind}`, () => {
    it("put, list (no secrets), take once, scoped by account", async () => {
      const s = await factory.open();
      const set = offlineSet("o1", T0 + 1000);
      await s.put(alice, set);
      await s.put(alice, offlineSet("o2", T0 + 2000, 5));
      await s.put(bob, offlineSet("o1", T0 + 3000, 9));
      set.pairs[0]?.x.fill(0); // the store holds its own copy
      const listed = [...(await s.list(alice))].sort((x, y) => x.id.localeCompare(y.id));
      assert.deepEqual(listed, [
        { id: "o1", expiresAt: T0 + 1000 },
        { id: "o2", expiresAt: T0 + 2000 },
      ]);
      const got = await s.take(alice, "o1");
      assert.ok(got);
      const want = offlineSet("o1", T0 + 1000);
      assert.deepEqual(
        { ...got, nonce: toHex(got.nonce), pairs: got.pairs.map((p) => [p.group, toHex(p.x)]) },
        { ...want, nonce: toHex(want.nonce), pairs: want.pairs.map((p) => [p.group, toHex(p.x)]) },
      );
      assert.equal(await s.take(alice, "o1"), undefined, "used once");
      assert.equal(await s.take(alice, "nope"), undefined);
      assert.ok(await s.take(bob, "o1"), "another account's set of the same id is separate");
      assert.deepEqual((await s.list(alice)).map((x) => x.id), ["o2"]);
      await s.close();
    });

    it("put of an existing id replaces the set", async () => {
      const s = await factory.open();
      await s.put(alice, offlineSet("o1", T0 + 1000, 1));
      await s.put(alice, offlineSet("o1", T0 + 5000, 7));
      assert.deepEqual(await s.list(alice), [{ id: "o1", expiresAt: T0 + 5000 }]);
      assert.equal(toHex((await s.take(alice, "o1"))?.nonce ?? new Uint8Array()), toHex(bytes(7, 16)));
      await s.close();
    });

    it("markSeen records a d / N_B once per account", async () => {
      const s = await factory.open();
      assert.equal(await s.markSeen(alice, "d1", T0), true);
      assert.equal(await s.markSeen(alice, "d1", T0 + 1), false);
      assert.equal(await s.markSeen(bob, "d1", T0), true);
      assert.equal(await s.markSeen(alice, "d2", T0), true);
      await s.close();
    });

    it("expire destroys sets with expiresAt <= now and returns their ids", async () => {
      const s = await factory.open();
      await s.put(alice, offlineSet("a", T0 + 10));
      await s.put(alice, offlineSet("b", T0 + 20));
      await s.put(alice, offlineSet("c", T0 + 30));
      await s.put(bob, offlineSet("d", T0 + 10));
      assert.deepEqual([...(await s.expire(alice, T0 + 20))].sort(), ["a", "b"]);
      assert.deepEqual((await s.list(alice)).map((x) => x.id), ["c"]);
      assert.deepEqual((await s.list(bob)).map((x) => x.id), ["d"], "other accounts untouched");
      assert.deepEqual(await s.expire(alice, T0 + 20), []);
      await s.close();
    });

    it("concurrent takes of one set: exactly one gets it; concurrent markSeen: exactly one true", async () => {
      const s = await factory.open();
      await s.put(alice, offlineSet("race", T0 + 1000));
      const got = await Promise.all(Array.from({ length: 8 }, () => s.take(alice, "race")));
      assert.equal(got.filter((g) => g !== undefined).length, 1);
      const seen = await Promise.all(Array.from({ length: 8 }, (_, i) => s.markSeen(alice, "d-race", T0 + i)));
      assert.equal(seen.filter(Boolean).length, 1);
      await s.close();
    });

    if (factory.openPair !== undefined) {
      const openPair = factory.openPair;
      it("two handles: a set put through one is taken once across both", async () => {
        const [a, b] = await openPair();
        for (let i = 0; i < 10; i++) await a.put(alice, offlineSet(`p${i}`, T0 + 1000, i));
        const got = await Promise.all(Array.from({ length: 10 }, (_, i) => Promise.all([a.take(alice, `p${i}`), b.take(alice, `p${i}`)])));
        for (const [x, y] of got) assert.equal(Number(x !== undefined) + Number(y !== undefined), 1);
        assert.deepEqual(await b.list(alice), []);
        await a.close();
        await b.close();
      });
    }
  });
}

export function replayContract(kind: string, factory: StoreFactory<ReplayCache>): void {
  describe(`replay cache contract: ${kind}`, () => {
    it("checkAndRecord: first true, replay false; scoped by account and sender; expire", async () => {
      const c = await factory.open();
      assert.equal(await c.checkAndRecord(alice, bob, "cid-1", T0), true);
      assert.equal(await c.checkAndRecord(alice, bob, "cid-1", T0 + 5), false);
      assert.equal(await c.checkAndRecord(alice, carol, "cid-1", T0), true);
      assert.equal(await c.checkAndRecord(bob, bob, "cid-1", T0), true);
      assert.equal(await c.checkAndRecord(alice, bob, "cid-2", T0 + 10), true);
      assert.equal(await c.expire(T0 + 1), 3);
      assert.equal(await c.checkAndRecord(alice, bob, "cid-1", T0 + 20), true, "forgotten after expiry");
      assert.equal(await c.checkAndRecord(alice, bob, "cid-2", T0 + 20), false);
      await c.close();
    });

    it("concurrent checkAndRecord of one object: exactly one true", async () => {
      const c = await factory.open();
      const r = await Promise.all(Array.from({ length: 8 }, (_, i) => c.checkAndRecord(alice, bob, "same", T0 + i)));
      assert.equal(r.filter(Boolean).length, 1);
      await c.close();
    });
  });
}
