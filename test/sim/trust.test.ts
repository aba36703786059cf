/**
 * Trust through SecureClient: keys are recorded on first use, a JID that presents a
 * different key or no key, and a key seen with another JID, raise the XEP-0116 7.4
 * alerts; untrusted and revoked keys end the session; confirming a SAS verifies the key.
 *
 * Spec: XEP-0116 v0.16 sections 7.3 (SAS, verified chains) and 7.4 (key associations).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ClientEvent } from "../../src/client/secure-client.js";
import { keyVerifier, signingIdentity } from "../../src/client/keys.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { createIdentityKey } from "../../src/identity/keyfile.js";
import { MemoryStore } from "../../src/store/memory.js";
import { TrustManager } from "../../src/trust/index.js";
import { makePair, type Pair } from "./pair.js";

const aliceKey = createIdentityKey("ed25519", 0);
const bobKey = createIdentityKey("ed25519", 0);
const malloryKey = createIdentityKey("ed25519", 0);

function pair(seed: string, bobIdentity = bobKey, aliceStore = new MemoryStore()): Pair {
  const p = makePair({
    seed,
    aliceStore,
    alice: { identity: signingIdentity(aliceKey), verifier: keyVerifier(), policy: { offerPubkey: ["key"], acceptPubkey: ["key", "none"] } },
    bob: { identity: signingIdentity(bobIdentity), verifier: keyVerifier(), policy: { acceptPubkey: ["key"] } },
  });
  (p.alice as unknown as { o: { trust: TrustManager } }).o.trust = new TrustManager({ store: aliceStore, crypto: nodeCrypto });
  return p;
}

async function session(p: Pair): Promise<"ok" | "failed"> {
  const outcome = p.alice.startSession(p.bobJid).then(
    () => "ok" as const,
    () => "failed" as const,
  );
  await p.settle();
  return outcome;
}

const trustAlerts = (evs: readonly ClientEvent[]) => evs.flatMap((e) => (e.type === "trust-alert" ? [e.alert.kind] : []));
const verdicts = (evs: readonly ClientEvent[]) => evs.flatMap((e) => (e.type === "trust" ? [e.verdict.trust] : []));

test("first contact: the key is accepted on first use; confirming the SAS verifies it", async () => {
  const store = new MemoryStore();
  const p = pair("t1", bobKey, store);
  assert.equal(await session(p), "ok");
  assert.deepEqual(verdicts(p.aliceEvents), ["accepted"]);
  await p.alice.confirmSas(p.bobJid);
  await Promise.all([p.alice.terminate(p.bobJid), p.settle()]);
  await p.settle();
  assert.equal(await session(p), "ok");
  assert.deepEqual(verdicts(p.aliceEvents), ["accepted", "verified"]);
  const reminders = p.aliceEvents.filter((e) => e.type === "alert" && e.alert === "sas-never-confirmed").length;
  assert.equal(reminders, 1, "reminded again after the SAS was confirmed");
});

test("a JID that presents a different key raises key-changed and the session is ended", async () => {
  const store = new MemoryStore();
  const p = pair("t2a", bobKey, store);
  assert.equal(await session(p), "ok");
  // Later "Bob" (same JID) presents Mallory's key.
  const q = pair("t2b", malloryKey, store);
  assert.equal(await session(q), "failed");
  assert.ok(trustAlerts(q.aliceEvents).includes("key-changed"));
  assert.deepEqual(verdicts(q.aliceEvents), ["untrusted"]);
  assert.equal(q.alice.session(q.bobJid)?.isActive ?? false, false);
});

test("a revoked key is refused", async () => {
  const store = new MemoryStore();
  const p = pair("t3", bobKey, store);
  assert.equal(await session(p), "ok");
  const fp = p.aliceEvents.flatMap((e) => (e.type === "trust" ? [e.verdict.fingerprint] : []))[0];
  assert.ok(fp);
  await new TrustManager({ store, crypto: nodeCrypto }).revoke("alice@example.org" as never, fp, 1);
  const q = pair("t3b", bobKey, store);
  assert.equal(await session(q), "failed");
  assert.ok(trustAlerts(q.aliceEvents).includes("key-revoked"));
});
