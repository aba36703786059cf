/**
 * Network duplicates of ESession negotiation messages: an exact copy of the peer's message
 * processed last is ignored (no second answer, no failure), while a different message in
 * that slot is still refused as out of order. Two cores are driven directly over a
 * serialize/parse "wire" with a seeded Random and a virtual clock.
 *
 * Spec: XEP-0217 v0.1 / XEP-0116 v0.16 section 4 (the 4-message SIGMA-R and 3-message
 * SIGMA-I sequences: each message answered once), RFC 6120 section 10 (a server may
 * deliver a stanza twice after a stream resumption), XEP-0210 section 3.9 (robustness).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Output } from "../../src/core/machine.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { parseFullJid, type ThreadId } from "../../src/core/types.js";
import { keyVerifier, signingIdentity } from "../../src/client/keys.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { createIdentityKey } from "../../src/identity/keyfile.js";
import { DEFAULT_POLICY, ESession, type ESessionEvent, type Policy } from "../../src/esession/session.js";
import { el, type Element, parseXml, serialize } from "../../src/xml/index.js";

const ALICE = parseFullJid("alice@example.org/desk");
const BOB = parseFullJid("bob@example.com/phone");
const THREAD = "dup-thread" as ThreadId;

type Who = "alice" | "bob";

const ALICE_KEY = signingIdentity(createIdentityKey("ed25519", 0));
const BOB_KEY = signingIdentity(createIdentityKey("ed25519", 0));

/** Two cores; every stanza each side sent is kept as wire text, in order. */
class Pair {
  readonly clock = new VirtualClock();
  alice: ESession;
  bob: ESession | undefined;
  readonly sent: Record<Who, string[]> = { alice: [], bob: [] };
  readonly events: Record<Who, ESessionEvent[]> = { alice: [], bob: [] };

  constructor(
    private readonly policy: Policy,
    seed: string,
  ) {
    this.seed = seed;
    this.alice = ESession.initiate(this.params("alice"));
    this.collect("alice", this.alice.drain());
  }
  private readonly seed: string;

  private params(who: Who) {
    const keys = this.policy.messages === 3 ? { identity: who === "alice" ? ALICE_KEY : BOB_KEY, verifier: keyVerifier() } : {};
    return {
      ...keys,
      crypto: nodeCrypto,
      random: new SeededRandom(nodeCrypto, `${this.seed}-${who}`),
      clock: this.clock,
      local: who === "alice" ? ALICE : BOB,
      peer: who === "alice" ? BOB : ALICE,
      thread: THREAD,
      policy: this.policy,
    };
  }

  private collect(who: Who, outs: readonly Output<ESessionEvent>[]): number {
    let n = 0;
    for (const o of outs) {
      if (o.kind === "send") {
        this.sent[who].push(serialize(o.stanza));
        n++;
      } else this.events[who].push(o.event);
    }
    return n;
  }

  /** Message number `n` (1-based) of the negotiation as received by its addressee (Alice sends the odd ones). */
  message(n: number): Element {
    // Alice sends 1, 3; Bob sends 2, 4.
    const who: Who = n % 2 === 1 ? "alice" : "bob";
    const text = this.sent[who][Math.floor((n - 1) / 2)];
    assert.ok(text, `message ${n} was sent`);
    const s = parseXml(text);
    s.attrs.from = who === "alice" ? ALICE : BOB;
    return s;
  }

  /** Delivers a stanza to `to`; returns how many stanzas that side sent in answer. */
  deliver(to: Who, stanza: Element): number {
    if (to === "bob") {
      if (!this.bob) {
        this.bob = ESession.respond(this.params("bob"), stanza);
        return this.collect("bob", this.bob.drain());
      }
      this.bob.handleStanza(stanza);
      return this.collect("bob", this.bob.drain());
    }
    this.alice.handleStanza(stanza);
    return this.collect("alice", this.alice.drain());
  }

  failures(who: Who): string[] {
    return this.events[who].flatMap((e) => (e.type === "failed" ? [e.error.condition] : []));
  }

  established(who: Who): boolean {
    return this.events[who].some((e) => e.type === "established");
  }

  /** After both are active: one message each way must decrypt. */
  exchange(): void {
    assert.ok(this.bob);
    this.alice.send(el("message", { type: "chat" }, el("body", {}, "hi bob")));
    const toBob = this.alice.drain().flatMap((o) => (o.kind === "send" ? [serialize(o.stanza)] : []));
    assert.equal(toBob.length, 1);
    const s = parseXml(toBob[0] ?? "");
    s.attrs.from = ALICE;
    this.bob.handleStanza(s);
    const got = this.bob.drain().flatMap((o) => (o.kind === "event" && o.event.type === "stanza" ? [o.event.stanza.getChildText("body")] : []));
    assert.deepEqual(got, ["hi bob"]);
  }
}

const SPEC: Policy = { ...DEFAULT_POLICY, groups: [14], cryptAlgs: ["aes128-ctr"], hashAlgs: ["sha256"] };
const MODERN: Policy = DEFAULT_POLICY;
const THREE: Policy = { ...DEFAULT_POLICY, messages: 3 };

/** Changes the value of form field `name` in a negotiation message. */
function alterField(s: Element, name: string, v: string): Element {
  const wrapper = s.getChild("feature") ?? s.getChild("init");
  const value = wrapper?.getChild("x")?.getChildren("field").find((f) => f.attrs.var === name)?.getChild("value");
  assert.ok(value, `field ${name}`);
  value.children = [v];
  return s;
}

for (const [name, policy] of [["spec", SPEC], ["modern", MODERN]] as const) {
  test(`${name}, 4 messages: an exact duplicate of every message is ignored and the session works`, () => {
    const p = new Pair(policy, `dup4-${name}`);
    assert.equal(p.deliver("bob", p.message(1)), 1, "Bob answers message 1");
    assert.equal(p.deliver("bob", p.message(1)), 0, "no second answer to a duplicate of message 1");
    assert.equal(p.deliver("alice", p.message(2)), 1, "Alice answers message 2");
    assert.equal(p.deliver("alice", p.message(2)), 0, "no second answer to a duplicate of message 2");
    assert.equal(p.deliver("bob", p.message(3)), 1, "Bob answers message 3");
    assert.equal(p.deliver("bob", p.message(3)), 0, "a duplicate of message 3 once active");
    assert.equal(p.deliver("alice", p.message(4)), 0);
    assert.equal(p.deliver("alice", p.message(4)), 0, "a duplicate of message 4 once active");
    assert.deepEqual(p.failures("alice"), []);
    assert.deepEqual(p.failures("bob"), []);
    assert.ok(p.established("alice") && p.established("bob"));
    assert.equal(p.events.bob.filter((e) => e.type === "progress" && e.step === "request-received").length, 1);
    p.exchange();
  });
}

test("4 messages: a different request in the slot of message 1 still fails with unexpected-request", () => {
  const p = new Pair(SPEC, "dup4-other1");
  p.deliver("bob", p.message(1));
  const other = alterField(p.message(1), "my_nonce", "AAAAAAAAAAAAAAAAAAAAAA==");
  assert.equal(p.deliver("bob", other), 1, "Bob answers with an error");
  assert.deepEqual(p.failures("bob"), ["unexpected-request"]);
  assert.equal(p.bob?.stateKind, "terminated");
});

test("4 messages: a different response in the slot of message 2 still fails with unexpected-request", () => {
  const p = new Pair(MODERN, "dup4-other2");
  p.deliver("bob", p.message(1));
  p.deliver("alice", p.message(2));
  const other = alterField(p.message(2), "my_nonce", "AAAAAAAAAAAAAAAAAAAAAA==");
  p.deliver("alice", other);
  assert.deepEqual(p.failures("alice"), ["unexpected-request"]);
  assert.equal(p.alice.stateKind, "terminated");
});

test("4 messages: the same message with another stanza id is not a duplicate", () => {
  const p = new Pair(SPEC, "dup4-id");
  p.deliver("bob", p.message(1));
  const again = p.message(1);
  again.attrs.id = "another-id";
  p.deliver("bob", again);
  assert.deepEqual(p.failures("bob"), ["unexpected-request"]);
});

test("4 messages: once active, a different message 3 in the clear is still reported", () => {
  const p = new Pair(SPEC, "dup4-other3");
  p.deliver("bob", p.message(1));
  p.deliver("alice", p.message(2));
  p.deliver("bob", p.message(3));
  p.deliver("bob", alterField(p.message(3), "nonce", "AAAAAAAAAAAAAAAAAAAAAA=="));
  assert.deepEqual(p.failures("bob"), ["not-protected"]);
});

test("3 messages: exact duplicates of messages 1, 2 and 3 are ignored", () => {
  const p = new Pair(THREE, "dup3");
  assert.equal(p.deliver("bob", p.message(1)), 1);
  assert.equal(p.deliver("bob", p.message(1)), 0, "no second response");
  assert.equal(p.deliver("alice", p.message(2)), 1, "Alice's identity (message 3)");
  assert.equal(p.deliver("alice", p.message(2)), 0, "a duplicate of message 2 once Alice is active");
  assert.equal(p.deliver("bob", p.message(3)), 0);
  assert.equal(p.deliver("bob", p.message(3)), 0, "a duplicate of message 3 once Bob is active");
  assert.deepEqual(p.failures("alice"), []);
  assert.deepEqual(p.failures("bob"), []);
  assert.ok(p.established("alice") && p.established("bob"));
  p.exchange();
});

test("an error stanza is never taken for a duplicate", () => {
  const p = new Pair(SPEC, "dup-error");
  p.deliver("bob", p.message(1));
  const err = p.message(1);
  err.attrs.type = "error";
  p.deliver("bob", err);
  assert.deepEqual(p.failures("bob"), ["not-acceptable"]);
});
