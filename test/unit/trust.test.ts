/**
 * Trust decisions and the alerts XEP-0116 v0.16 demands, one test per requirement:
 * section 7.4 "Key Associations" (a JID presents a different key, or no key; another JID
 * presents a known key; petnames shown before JIDs), section 7.3 "Verifying Keys"
 * (fingerprint checked, SAS, verified chain of retained secrets), section 4.7.2 (remind
 * users who never confirmed a SAS), section 4.7.3 'hash' lookup, and XEP-0189 section 4
 * (revoked keys). Run over MemoryStore and SQLite.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { parseJid } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { createIdentityKey, IdentityError, Keyring, normalizedKeyValue } from "../../src/identity/index.js";
import { MemoryStore } from "../../src/store/memory.js";
import { openSqliteStore } from "../../src/store/sqlite.js";
import type { FullStore } from "../../src/store/trust-types.js";
import { describeAlert, displayName, TrustManager, type TrustAlert } from "../../src/trust/index.js";

const alice = parseJid("alice@example.org");
const bob = parseJid("bob@example.com/laptop");
const bobBare = parseJid("bob@example.com");
const mallory = parseJid("mallory@evil.example/x");
const T0 = Date.UTC(2026, 0, 1);
const K1 = createIdentityKey("ed25519", T0).publicKey;
const K2 = createIdentityKey("ed25519", T0).publicKey;
const KR = createIdentityKey("rsa-sha256", T0, { rsaBits: 2048 }).publicKey;

const kinds = (as: readonly TrustAlert[]) => as.map((a) => a.kind).sort();

function suite(kind: string, open: () => FullStore): void {
  describe(`trust manager: ${kind}`, () => {
    const setup = () => {
      const store = open();
      const seen: TrustAlert[] = [];
      const tm = new TrustManager({ store, crypto: nodeCrypto, onAlert: (a) => seen.push(a) });
      return { store, tm, seen };
    };

    it("first contact: the key is accepted for the JID (trust on first use), and the SAS reminder is raised", async () => {
      const { store, tm, seen } = setup();
      const v = await tm.observe({ account: alice, jid: bob, publicKey: K1, now: T0 });
      assert.equal(v.jid, bobBare);
      assert.equal(v.trust, "accepted");
      assert.equal(v.firstContact, true);
      assert.equal(v.fingerprint, tm.fingerprint(K1));
      assert.equal(v.fingerprint, createHash("sha256").update(normalizedKeyValue(K1)).digest("base64"));
      assert.deepEqual(kinds(v.alerts), ["sas-never-confirmed"]);
      assert.deepEqual(seen, v.alerts, "every alert also goes to onAlert");
      const again = await tm.observe({ account: alice, jid: bob, publicKey: K1, now: T0 + 1 });
      assert.equal(again.firstContact, false);
      assert.deepEqual(kinds(again.alerts), ["sas-never-confirmed"]);
      await store.close();
    });

    it("MUST alert when a JID presents a different key; the alert repeats until the user accepts", async () => {
      const { store, tm } = setup();
      await tm.observe({ account: alice, jid: bob, publicKey: K1, now: T0 });
      const v = await tm.observe({ account: alice, jid: bob, publicKey: K2, now: T0 + 1 });
      assert.equal(v.trust, "untrusted");
      const changed = v.alerts.find((a) => a.kind === "key-changed");
      assert.deepEqual(changed, { kind: "key-changed", account: alice, jid: bobBare, presented: tm.fingerprint(K2), previous: [tm.fingerprint(K1)] });
      assert.match(describeAlert(changed), /different public key/);
      const v2 = await tm.observe({ account: alice, jid: bob, publicKey: K2, now: T0 + 2 });
      assert.ok(v2.alerts.some((a) => a.kind === "key-changed"), "not silenced by having been seen once");
      await tm.accept(alice, bob, tm.fingerprint(K2), T0 + 3);
      const v3 = await tm.observe({ account: alice, jid: bob, publicKey: K2, now: T0 + 4 });
      assert.equal(v3.trust, "accepted");
      assert.deepEqual(kinds(v3.alerts), ["sas-never-confirmed"]);
      // Both keys are now accepted for bob (e.g. two devices): neither raises key-changed.
      assert.deepEqual(kinds((await tm.observe({ account: alice, jid: bob, publicKey: K1, now: T0 + 5 })).alerts), ["sas-never-confirmed"]);
      await store.close();
    });

    it("MUST alert when a JID that had a key presents no key at all", async () => {
      const { store, tm } = setup();
      const none = await tm.observe({ account: alice, jid: bob, publicKey: undefined, now: T0 });
      assert.equal(none.trust, "no-key");
      assert.deepEqual(kinds(none.alerts), ["sas-never-confirmed"], "no key before: nothing missing");
      await tm.observe({ account: alice, jid: bob, publicKey: K1, now: T0 + 1 });
      const v = await tm.observe({ account: alice, jid: bob, publicKey: undefined, now: T0 + 2 });
      assert.deepEqual(v.alerts.find((a) => a.kind === "key-missing"), { kind: "key-missing", account: alice, jid: bobBare, previous: [tm.fingerprint(K1)] });
      await store.close();
    });

    it("MUST alert immediately when another JID presents a known key, naming the key's petname", async () => {
      const { store, tm } = setup();
      await tm.observe({ account: alice, jid: bob, publicKey: K1, now: T0 });
      await tm.setPetname(alice, tm.fingerprint(K1), "Bob");
      const v = await tm.observe({ account: alice, jid: mallory, publicKey: K1, now: T0 + 1 });
      assert.equal(v.trust, "untrusted", "not accepted on first use when the key belongs to someone else");
      assert.equal(v.petname, "Bob");
      assert.equal(displayName(v), "Bob (mallory@evil.example)", "the petname comes first");
      assert.deepEqual(v.alerts.find((a) => a.kind === "key-shared"), {
        kind: "key-shared",
        account: alice,
        jid: parseJid("mallory@evil.example"),
        fingerprint: tm.fingerprint(K1),
        otherJids: [bobBare],
        petname: "Bob",
      });
      const stored = await store.getPeerKey(alice, tm.fingerprint(K1));
      assert.deepEqual(stored?.jids.map((l) => [l.jid, l.accepted]), [
        [bobBare, true],
        ["mallory@evil.example", false],
      ]);
      await store.close();
    });

    it("a revoked key raises key-revoked and is never trusted", async () => {
      const { store, tm } = setup();
      await tm.observe({ account: alice, jid: bob, publicKey: K1, now: T0 });
      await tm.revoke(alice, tm.fingerprint(K1), T0 + 1);
      const v = await tm.observe({ account: alice, jid: bob, publicKey: K1, now: T0 + 2 });
      assert.equal(v.trust, "revoked");
      assert.ok(v.alerts.some((a) => a.kind === "key-revoked" && a.revokedAt === T0 + 1));
      // A new key after a revocation is not a "change" from a live key.
      const n = await tm.observe({ account: alice, jid: bob, publicKey: K2, now: T0 + 3 });
      assert.equal(n.trust, "accepted");
      assert.ok(!n.alerts.some((a) => a.kind === "key-changed"));
      await store.close();
    });

    it("SAS confirmation verifies the key and the chain of retained secrets; the reminder stops", async () => {
      const { store, tm } = setup();
      const v0 = await tm.observe({ account: alice, jid: bob, publicKey: KR, now: T0 });
      assert.equal(v0.chainVerified, false);
      const rs = await store.replace({ account: alice, peer: bob, secret: new Uint8Array(32).fill(7), now: T0, verifiedChain: false });
      await tm.confirmSas({ account: alice, jid: bob, now: T0 + 1, fingerprint: v0.fingerprint ?? "", retainedSecretId: rs.id });
      const v = await tm.observe({ account: alice, jid: bob, publicKey: KR, now: T0 + 2 });
      assert.equal(v.trust, "verified");
      assert.equal(v.sasConfirmed, true);
      assert.equal(v.chainVerified, true);
      assert.deepEqual(v.alerts, []);
      const peer = await tm.peer(alice, bob);
      assert.equal(peer.chainVerified, true);
      assert.equal(peer.keys[0]?.sasConfirmedAt, T0 + 1);
      await store.close();
    });

    it("an out-of-band fingerprint check verifies and accepts a changed key", async () => {
      const { store, tm } = setup();
      await tm.observe({ account: alice, jid: bob, publicKey: K1, now: T0 });
      await tm.observe({ account: alice, jid: bob, publicKey: K2, now: T0 + 1 });
      await tm.verifyFingerprint(alice, bob, tm.fingerprint(K2), T0 + 2);
      const v = await tm.observe({ account: alice, jid: bob, publicKey: K2, now: T0 + 3 });
      assert.equal(v.trust, "verified");
      assert.equal(v.fingerprintChecked, true);
      assert.deepEqual(v.alerts, [], "a verified key needs no SAS reminder");
      await store.close();
    });

    it("check() decides without recording", async () => {
      const { store, tm } = setup();
      const v = await tm.check({ account: alice, jid: bob, publicKey: K1, now: T0 });
      assert.equal(v.trust, "accepted");
      assert.deepEqual(await store.listPeerKeys(alice), []);
      await store.close();
    });

    it("'hash' identification: finds our copy of a key by Base64(HASH(Normalized KeyValue)) for any hash", async () => {
      const { store, tm } = setup();
      await tm.observe({ account: alice, jid: bob, publicKey: KR, now: T0 });
      await tm.observe({ account: alice, jid: mallory, publicKey: K1, now: T0 });
      for (const h of ["sha256", "sha384", "sha512"] as const) {
        const fp = createHash(h).update(normalizedKeyValue(KR)).digest("base64");
        assert.equal((await tm.findKeyByFingerprint(alice, h, fp, bob))?.fingerprint, tm.fingerprint(KR), h);
      }
      assert.equal(await tm.findKeyByFingerprint(alice, "sha256", "AAAA"), undefined);
      await store.close();
    });

    it("list: every JID with its keys and verification state", async () => {
      const { store, tm } = setup();
      await tm.observe({ account: alice, jid: bob, publicKey: K1, now: T0 });
      await tm.observe({ account: alice, jid: mallory, publicKey: K2, now: T0 });
      await store.setSasConfirmed(alice, mallory, T0);
      const l = await tm.list(alice);
      assert.deepEqual(l.map((p) => [p.jid, p.keys.map((k) => k.fingerprint), p.sasConfirmed]), [
        [bobBare, [tm.fingerprint(K1)], false],
        ["mallory@evil.example", [tm.fingerprint(K2)], true],
      ]);
      await store.close();
    });

    it("refuses a key below policy with a typed error", async () => {
      const { store, tm } = setup();
      await assert.rejects(tm.observe({ account: alice, jid: bob, publicKey: new Uint8Array([1, 2, 3]), now: T0 }), IdentityError);
      await store.close();
    });

    it("keyring: create (sealed), current, unlock, revoke", async () => {
      const store = open();
      const ring = new Keyring({ store, crypto: nodeCrypto });
      const id = await ring.create(alice, "ed25519", T0, { passphrase: "pw", scrypt: { N: 1 << 10, r: 8, p: 1 } });
      assert.equal(id.protection, "passphrase");
      assert.equal((await ring.current(alice))?.id, id.id);
      assert.throws(() => ring.unlock(id), (e: unknown) => e instanceof IdentityError && e.condition === "passphrase-required");
      assert.throws(() => ring.unlock(id, "bad"), (e: unknown) => e instanceof IdentityError && e.condition === "bad-passphrase");
      const k = ring.unlock(id, "pw");
      assert.equal(k.alg, "ed25519");
      assert.equal((await ring.find(alice, id.fingerprint.slice(0, 10)))?.id, id.id);
      await ring.revoke(id.id, T0 + 1);
      assert.equal(await ring.current(alice), undefined);
      const revoked = await store.getIdentity(id.id);
      assert.ok(revoked);
      assert.throws(() => ring.unlock(revoked, "pw"), (e: unknown) => e instanceof IdentityError && e.condition === "revoked");
      await store.close();
    });
  });
}

suite("MemoryStore", () => new MemoryStore());
suite("SQLite", () => openSqliteStore(":memory:"));
