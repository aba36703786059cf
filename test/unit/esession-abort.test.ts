/**
 * ESession.abort(): a session discarded without a word to the peer (a device went
 * offline) overwrites every key, block counter and Diffie-Hellman secret it holds with
 * zeros, ends in "terminated" and produces no output.
 *
 * Spec: XEP-0217 v0.1 / XEP-0116 v0.16 "ESession Termination" ("securely destroy all keys
 * associated with the ESession"), XEP-0116 4.7.3 / 4.8.1 (a replaced retained secret is
 * destroyed), XEP-0200 v0.2 sections 5-7 (the channel's keys, counters and value sets).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Output } from "../../src/core/machine.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { parseFullJid, type Random, type ThreadId } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { ESessionError } from "../../src/esession/errors.js";
import { DEFAULT_POLICY, ESession, type ESessionEvent, type Policy, type RetainedSecretRef } from "../../src/esession/session.js";
import { el, type Element, parseXml, serialize } from "../../src/xml/index.js";

const ALICE = parseFullJid("alice@example.org/desk");
const BOB = parseFullJid("bob@example.com/phone");
const THREAD = "abort-thread" as ThreadId;

/** A seeded Random that keeps every array it hands out (the DH private values among them). */
class RecordingRandom implements Random {
  readonly given: Uint8Array[] = [];
  private readonly inner: SeededRandom;
  constructor(seed: string) {
    this.inner = new SeededRandom(nodeCrypto, seed);
  }
  bytes(n: number): Uint8Array {
    const b = this.inner.bytes(n);
    this.given.push(b);
    return b;
  }
}

const zero = (b: Uint8Array): boolean => b.every((x) => x === 0);

/**
 * Every Uint8Array reachable from `root` through own fields, arrays, maps and sets, with its
 * path, except through `skip` (injected services: the Random, the provider, the clock).
 */
function reachableBytes(root: unknown, skip: readonly unknown[]): Array<{ path: string; bytes: Uint8Array }> {
  const out: Array<{ path: string; bytes: Uint8Array }> = [];
  const seen = new Set<unknown>(skip);
  const walk = (v: unknown, path: string): void => {
    if (v === null || typeof v !== "object" || seen.has(v)) return;
    seen.add(v);
    if (v instanceof Uint8Array) {
      out.push({ path, bytes: v });
      return;
    }
    if (v instanceof Map) for (const [k, x] of v) (walk(k, `${path}<k>`), walk(x, `${path}<v>`));
    else if (v instanceof Set) for (const x of v) walk(x, `${path}<e>`);
    else for (const k of Object.keys(v)) walk((v as Record<string, unknown>)[k], `${path}.${k}`);
  };
  walk(root, "session");
  return out;
}

function wire(s: Element, from: string): Element {
  const p = parseXml(serialize(s));
  p.attrs.from = from;
  return p;
}

function sends(outs: readonly Output<ESessionEvent>[]): Element[] {
  return outs.flatMap((o) => (o.kind === "send" ? [o.stanza] : []));
}

const POLICIES: ReadonlyArray<readonly [string, Policy]> = [
  ["modern", DEFAULT_POLICY],
  ["spec", { ...DEFAULT_POLICY, groups: [14], cryptAlgs: ["aes128-ctr"], hashAlgs: ["sha256"] }],
];

for (const [name, policy] of POLICIES) {
  test(`${name}: abort() on an active session zeroes its keys, counters and DH values, without output`, () => {
    const clock = new VirtualClock();
    const ra = new RecordingRandom(`abort-${name}-a`);
    const rb = new RecordingRandom(`abort-${name}-b`);
    const base = { crypto: nodeCrypto, clock, thread: THREAD, policy };
    const alice = ESession.initiate({ ...base, random: ra, local: ALICE, peer: BOB });
    const [m1] = sends(alice.drain());
    assert.ok(m1);
    const bob = ESession.respond({ ...base, random: rb, local: BOB, peer: ALICE }, wire(m1, ALICE));
    const [m2] = sends(bob.drain());
    assert.ok(m2);
    alice.handleStanza(wire(m2, BOB));
    const [m3] = sends(alice.drain());
    assert.ok(m3);
    bob.handleStanza(wire(m3, ALICE));
    const [m4] = sends(bob.drain());
    assert.ok(m4);
    alice.handleStanza(wire(m4, BOB));
    alice.drain();
    assert.equal(alice.stateKind, "active");
    // A message and a re-key, so that the channel holds a second value set.
    alice.send(el("message", { type: "chat" }, el("body", {}, "before the abort")));
    alice.rekey();
    // The peer's public DH value is no secret (it crossed the wire): it is not wiped.
    const held = reachableBytes(alice, [ra, nodeCrypto, clock]).filter((b) => !zero(b.bytes) && !b.path.endsWith(".peerPublic"));
    assert.ok(held.length > 0, "the active session holds secrets");
    const c = alice.channel;
    assert.ok(c);

    alice.abort();
    assert.equal(alice.stateKind, "terminated");
    assert.deepEqual(alice.drain(), [], "no stanza, no event, and the undrained outputs are gone");
    assert.equal(c.active, false);
    for (const b of held) assert.ok(zero(b.bytes), `${b.path} is zero`);
    // Every DH private value drawn for this session (x, the re-key's x) is zero too.
    const privateLen = name === "modern" ? 32 : 64;
    for (const b of ra.given.filter((g) => g.length === privateLen)) assert.ok(zero(b));
    assert.throws(() => alice.send(el("message", {}, el("body", {}, "x"))), (e: unknown) => e instanceof ESessionError && e.condition === "not-protected");
    alice.abort(); // idempotent
    assert.deepEqual(alice.drain(), []);
  });
}

test("abort() during the negotiation zeroes the DH values and the retained secrets it was given", () => {
  const random = new RecordingRandom("abort-neg");
  const retained: RetainedSecretRef[] = [{ id: "rs-1", secret: new Uint8Array(32).fill(7), peer: "bob@example.com" }];
  const alice = ESession.initiate({
    crypto: nodeCrypto,
    random,
    clock: new VirtualClock(),
    local: ALICE,
    peer: BOB,
    thread: THREAD,
    policy: DEFAULT_POLICY,
    retained,
  });
  assert.equal(alice.stateKind, "awaiting-response");
  const privates = random.given.filter((g) => g.length === 32 || g.length === 64);
  assert.ok(privates.some((b) => !zero(b)));
  alice.abort();
  assert.equal(alice.stateKind, "terminated");
  assert.deepEqual(alice.drain(), [], "the queued request is not sent");
  for (const b of privates) assert.ok(zero(b));
  assert.ok(zero(retained[0]?.secret ?? new Uint8Array(1).fill(1)), "the retained secret is wiped");
});

test("the retained secrets a session was given are wiped once it is established, the matched one included", () => {
  const clock = new VirtualClock();
  const policy: Policy = DEFAULT_POLICY;
  // Both sides retained the same secret in an earlier session (each its own copy, as stores give).
  const rs = new Uint8Array(64).fill(9);
  const aliceRs: RetainedSecretRef[] = [{ id: "a-1", secret: rs.slice(), peer: "bob@example.com" }];
  const bobRs: RetainedSecretRef[] = [{ id: "b-1", secret: rs.slice(), peer: "alice@example.org" }];
  const bobOther: RetainedSecretRef[] = [{ id: "b-2", secret: new Uint8Array(64).fill(5), peer: "carol@example.net" }];
  const base = { crypto: nodeCrypto, clock, thread: THREAD, policy };
  const alice = ESession.initiate({ ...base, random: new SeededRandom(nodeCrypto, "rs-a"), local: ALICE, peer: BOB, retained: aliceRs });
  const [m1] = sends(alice.drain());
  assert.ok(m1);
  const bob = ESession.respond({ ...base, random: new SeededRandom(nodeCrypto, "rs-b"), local: BOB, peer: ALICE, retained: bobRs, retainedOther: bobOther }, wire(m1, ALICE));
  const [m2] = sends(bob.drain());
  assert.ok(m2);
  alice.handleStanza(wire(m2, BOB));
  const [m3] = sends(alice.drain());
  assert.ok(m3);
  bob.handleStanza(wire(m3, ALICE));
  const bobOut = bob.drain();
  const bobEst = bobOut.find((o) => o.kind === "event" && o.event.type === "established");
  assert.ok(bobEst?.kind === "event" && bobEst.event.type === "established");
  assert.equal(bobEst.event.retainedSecretMatched, true);
  assert.equal(bobEst.event.replaces, "b-1");
  for (const r of [...bobRs, ...bobOther]) assert.ok(zero(r.secret), `bob's ${r.id} wiped`);
  const [m4] = sends(bobOut);
  assert.ok(m4);
  alice.handleStanza(wire(m4, BOB));
  const est = alice.drain().find((o) => o.kind === "event" && o.event.type === "established");
  assert.ok(est?.kind === "event" && est.event.type === "established");
  assert.equal(est.event.retainedSecretMatched, true);
  assert.ok(zero(aliceRs[0]?.secret ?? new Uint8Array(1).fill(1)), "alice's SRS wiped");
});
