/**
 * Re-key limits of XEP-0200 stanza encryption (docs/security.md "Limits"): a sender keeps at
 * most maxValueSets unconfirmed value sets, however often it wants to re-key while the peer
 * stays silent; a receiver refuses more than maxSkippedRekeys peer re-keys without a reply
 * (each one costs it a Diffie-Hellman computation) and ends the session, delivering nothing.
 *
 * Spec: XEP-0200 v0.2 section 7 (re-keying, value sets confirmed by <new/>), section 8
 * (publishing old MAC keys), XEP-0210 robustness.
 */
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import type { Output } from "../../src/core/machine.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { parseFullJid, type ThreadId } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { DEFAULT_POLICY, ESession, type ESessionEvent, type Policy } from "../../src/esession/session.js";
import { configureLimits, DEFAULT_LIMITS, getLimits, resetLimits } from "../../src/limits.js";
import { el, type Element, parseXml, serialize } from "../../src/xml/index.js";

const ALICE = parseFullJid("alice@example.org/desk");
const BOB = parseFullJid("bob@example.com/phone");
const THREAD = "limits-thread" as ThreadId;
/** Alice asks for a re-key with every stanza she sends. */
const POLICY: Policy = { ...DEFAULT_POLICY, autoRekeyEvery: 1 };

afterEach(() => resetLimits());

function wire(s: Element, from: string): Element {
  const p = parseXml(serialize(s));
  p.attrs.from = from;
  return p;
}

function sent(outs: readonly Output<ESessionEvent>[]): Element[] {
  return outs.flatMap((o) => (o.kind === "send" ? [o.stanza] : []));
}

function events(outs: readonly Output<ESessionEvent>[]): ESessionEvent[] {
  return outs.flatMap((o) => (o.kind === "event" ? [o.event] : []));
}

function pair(seed: string): { alice: ESession; bob: ESession } {
  const clock = new VirtualClock(1_700_000_000_000);
  const base = { crypto: nodeCrypto, clock, thread: THREAD, policy: POLICY };
  const alice = ESession.initiate({ ...base, random: new SeededRandom(nodeCrypto, `${seed}-a`), local: ALICE, peer: BOB });
  let bob: ESession | undefined;
  let toBob = sent(alice.drain());
  for (let i = 0; i < 10; i++) {
    for (const s of toBob) {
      if (!bob) bob = ESession.respond({ ...base, random: new SeededRandom(nodeCrypto, `${seed}-b`), local: BOB, peer: ALICE }, wire(s, ALICE));
      else bob.handleStanza(wire(s, ALICE));
    }
    toBob = [];
    const toAlice = bob ? sent(bob.drain()) : [];
    for (const s of toAlice) alice.handleStanza(wire(s, BOB));
    toBob = sent(alice.drain());
    if (alice.isActive && bob?.isActive && toBob.length === 0) break;
  }
  assert.ok(bob && alice.isActive && bob.isActive, "negotiated");
  return { alice, bob };
}

/** Alice encrypts one message (re-keying if she can); returns the stanza. */
function aliceSends(alice: ESession, body: string): Element {
  alice.send(el("message", { type: "chat" }, el("body", {}, body)));
  const out = sent(alice.drain());
  assert.equal(out.length, 1);
  return out[0] as Element;
}

test("a sender never holds more than maxValueSets unconfirmed value sets while the peer stays silent", () => {
  const { alice, bob } = pair("sets");
  const max = getLimits().maxValueSets;
  let keys = 0;
  for (let i = 0; i < max * 3; i++) {
    const s = aliceSends(alice, `m${i}`);
    if (s.getChild("c")?.getChild("key")) keys++;
    bob.handleStanza(wire(s, ALICE));
    bob.drain(); // Bob reads but never sends: nothing confirms Alice's re-keys.
    assert.ok((alice.channel?.valueSets ?? 0) <= max, `value sets ${alice.channel?.valueSets} > ${max}`);
  }
  assert.equal(keys, max - 1, "re-keys stop once the sets are full");
  // Bob answers: his <new/> confirms the newest set, the others are destroyed, and Alice re-keys again.
  bob.send(el("message", { type: "chat" }, el("body", {}, "here")));
  for (const s of sent(bob.drain())) alice.handleStanza(wire(s, BOB));
  alice.drain();
  assert.equal(alice.channel?.valueSets, 1);
  assert.ok(aliceSends(alice, "again").getChild("c")?.getChild("key"), "re-keys resume after a confirmation");
});

test("a receiver refuses more than maxSkippedRekeys peer re-keys without a reply: the session ends, nothing more is delivered", () => {
  const { alice, bob } = pair("skipped");
  const skipped = DEFAULT_LIMITS.maxSkippedRekeys;
  // A peer that ignores maxValueSets (only this process's copy of Alice is told so).
  const stanzas: Element[] = [];
  // Until Alice's stanzas hold skipped + 1 re-keys (autoRekeyEvery counts the stanzas sent
  // under a key, so every other stanza carries one).
  let keys = 0;
  let beforeLast = 0;
  while (keys <= skipped) {
    configureLimits({ maxValueSets: 1000 });
    const s = aliceSends(alice, `m${stanzas.length}`);
    resetLimits();
    if (s.getChild("c")?.getChild("key")) {
      keys++;
      if (keys === skipped + 1) beforeLast = stanzas.length;
    }
    stanzas.push(s);
  }
  let delivered = 0;
  let failed: string | undefined;
  for (const s of stanzas) {
    bob.handleStanza(wire(s, ALICE));
    for (const e of events(bob.drain())) {
      if (e.type === "stanza") delivered++;
      if (e.type === "failed") failed = e.error.condition;
    }
  }
  assert.equal(delivered, beforeLast, "everything before the re-key over the limit was read, nothing after it");
  assert.equal(failed, "rekey-limit");
  assert.equal(bob.isActive, false);
});
