/**
 * SecureClient never fails silently inside: when handling an inbound stanza, or finishing a
 * negotiation after an asynchronous signature, throws (here: a store that fails), the
 * client emits a typed "internal-error" event naming the stage and the stanza, instead of
 * dropping it without a word; the failing store's message carries no key material.
 *
 * Spec: docs/api-guide.md "Events" (internal-error); the project rule that no stanza is
 * lost silently (XEP-0210 v0.3 section 3.9 robustness).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ClientEvent } from "../../src/client/secure-client.js";
import type { AsyncSigningIdentity } from "../../src/esession/identity.js";
import { MemoryStore } from "../../src/store/memory.js";
import { rsaIdentity, rsaVerifier } from "../support/rsa-identity.js";
import { makePair } from "./pair.js";

type InternalError = Extract<ClientEvent, { type: "internal-error" }>;

class FailingStore extends MemoryStore {
  failing = false;
  failSas = false;
  override async list(...args: Parameters<MemoryStore["list"]>): ReturnType<MemoryStore["list"]> {
    if (this.failing) throw new Error("disk I/O error");
    return super.list(...args);
  }
  override async getSasState(...args: Parameters<MemoryStore["getSasState"]>): ReturnType<MemoryStore["getSasState"]> {
    if (this.failing || this.failSas) throw new Error("disk I/O error");
    return super.getSasState(...args);
  }
}

async function until(settle: () => Promise<void>, done: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !done(); i++) {
    await settle();
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("inbound: a store that throws while Bob answers a request is an internal-error event (stage inbound, the sender and stanza id), not silence", async () => {
  const bobStore = new FailingStore();
  const p = makePair({ seed: "internal-inbound", bobStore });
  bobStore.failing = true;
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await p.settle();
  const errs = p.bobEvents.filter((e): e is InternalError => e.type === "internal-error");
  assert.equal(errs.length, 1);
  assert.equal(errs[0]?.stage, "inbound");
  assert.equal(errs[0]?.peer, "alice@example.org/pda");
  assert.equal(errs[0]?.error.message, "disk I/O error");
  assert.ok(!p.bobEvents.some((e) => e.type === "established"));
  // Once the store works again, the next negotiation succeeds.
  bobStore.failing = false;
  const again = p.alice.startSession(p.bobJid);
  await p.settle();
  assert.ok((await again).sas);
});

test("signing: a store that throws in the pump after an asynchronous signature is an internal-error event (stage signing)", async () => {
  const aliceKey = rsaIdentity();
  const bobKey = rsaIdentity();
  const later = (k: ReturnType<typeof rsaIdentity>): AsyncSigningIdentity => ({
    async: true,
    signAlg: k.signAlg,
    keyValue: k.keyValue,
    sign: (data) => new Promise((resolve) => setTimeout(() => resolve(k.sign(data)), 5)),
  });
  // In the 4-message exchange Bob signs after Alice's identity (message 3); the pump that
  // follows his signature establishes the session, and his store fails to read SAS state.
  const bobStore = new FailingStore();
  bobStore.failSas = true;
  const p = makePair({
    seed: "internal-signing",
    bobStore,
    policy: { messages: 4, offerPubkey: ["key"], acceptPubkey: ["key"] },
    alice: { identity: later(aliceKey), verifier: rsaVerifier([bobKey.keyValue]) },
    bob: { identity: later(bobKey), verifier: rsaVerifier([aliceKey.keyValue]) },
  });
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await until(p.settle, () => p.bobEvents.some((e) => e.type === "internal-error"));
  const errs = p.bobEvents.filter((e): e is InternalError => e.type === "internal-error");
  assert.equal(errs.length, 1);
  assert.equal(errs[0]?.stage, "signing");
  assert.equal(errs[0]?.peer, "alice@example.org/pda");
  assert.equal(errs[0]?.error.message, "disk I/O error");
});
