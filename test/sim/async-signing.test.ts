/**
 * SecureClient with asynchronous identity keys (the web client's non-extractable
 * WebCrypto key, a token): the core waits in 'awaiting-signature', the client signs
 * between drains and feeds the signature back; the negotiation is the same XEP-0116
 * exchange as with a synchronous key.
 *
 * Spec: XEP-0116 v0.16 sections 4.3.3 / 4.4.3 (SIGN(signKey, mac) over the SIGMA mac),
 * 4.5 (verification); docs/esession.md "Asynchronous signing".
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ClientEvent } from "../../src/client/secure-client.js";
import { normalizedKey, type AsyncSigningIdentity, type SigningIdentity } from "../../src/esession/identity.js";
import { rsaIdentity, rsaVerifier } from "../support/rsa-identity.js";
import { makePair, type Pair } from "./pair.js";

const aliceKey = rsaIdentity();
const bobKey = rsaIdentity();

/** The synchronous key behind a Promise that settles later (a real macrotask later). */
function later(key: SigningIdentity, calls: { n: number }, refuse = false): AsyncSigningIdentity {
  return {
    async: true,
    signAlg: key.signAlg,
    keyValue: key.keyValue,
    sign: (data) =>
      new Promise((resolve, reject) =>
        setTimeout(() => {
          calls.n++;
          if (refuse) reject(new Error("the user cancelled"));
          else resolve(key.sign(data));
        }, 5),
      ),
  };
}

type Est = Extract<ClientEvent, { type: "established" }>;

async function until(p: Pair, done: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !done(); i++) {
    await p.settle();
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const messages of [4, 3] as const) {
  test(`${messages}-message negotiation with both identity keys signing asynchronously`, async () => {
    const calls = { n: 0 };
    const p = makePair({
      seed: `async-${messages}`,
      policy: { messages, offerPubkey: ["key"], acceptPubkey: ["key"] },
      alice: { identity: later(aliceKey, calls), verifier: rsaVerifier([bobKey.keyValue]) },
      bob: { identity: later(bobKey, calls), verifier: rsaVerifier([aliceKey.keyValue]) },
    });
    const est = p.alice.startSession(p.bobJid);
    est.catch(() => undefined);
    await until(p, () => p.bobEvents.some((e) => e.type === "established") && p.aliceEvents.some((e) => e.type === "established"));
    await est;
    const a = p.aliceEvents.find((e): e is Est => e.type === "established");
    const b = p.bobEvents.find((e): e is Est => e.type === "established");
    assert.ok(a && b, "both established");
    assert.equal(calls.n, 2, "each side signed once, outside the core");
    assert.equal(a.options.messages, messages);
    assert.equal(a.peerKey && normalizedKey(a.peerKey.keyValue), normalizedKey(bobKey.keyValue));
    assert.equal(b.peerKey && normalizedKey(b.peerKey.keyValue), normalizedKey(aliceKey.keyValue));
    await p.alice.sendMessage(p.bobJid, "signed later, sealed now");
    await p.settle();
    assert.deepEqual(p.bodies("bob"), ["signed later, sealed now"]);
  });
}

test("a key that refuses to sign fails the negotiation on our side; nothing is established", async () => {
  const calls = { n: 0 };
  const p = makePair({
    seed: "async-refuse",
    policy: { offerPubkey: ["key"], acceptPubkey: ["key"] },
    alice: { identity: later(aliceKey, calls, true), verifier: rsaVerifier([bobKey.keyValue]) },
    bob: { identity: bobKey, verifier: rsaVerifier([aliceKey.keyValue]) },
  });
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await until(p, () => p.aliceEvents.some((e) => e.type === "failed"));
  await assert.rejects(est);
  assert.equal(calls.n, 1);
  assert.ok(!p.aliceEvents.some((e) => e.type === "established"));
  await assert.rejects(p.alice.sendMessage(p.bobJid, "never in the clear"), /not-protected|no encrypted session/);
  assert.ok(!p.relayed.some((r) => r.text.includes("never in the clear")));
});
