/**
 * Asynchronous signing in the ESession core: an AsyncSigningIdentity (a WebCrypto key kept
 * non-extractable, whose sign() returns a Promise) is never called by the core; the SIGMA
 * mac leaves as a sign request, the session waits in "awaiting-signature", and the
 * negotiation continues when the driver feeds the signature back. Two cores are driven
 * directly (no SecureClient), over a serialize/parse "wire", with a seeded Random and a
 * virtual clock.
 *
 * Spec: XEP-0116 v0.16 sections 4.3.3 "Hiding Bob's Identity" and 4.4.3 "Hiding Alice's
 * Identity" (sign = SIGN(signKey, mac) inside ID), 4.4.2 / 4.5.1 (the peer verifies that
 * signature), 4.2 (3-message SIGMA-I); XEP-0217 v0.1 (the 4-message flow and its SAS).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { keyVerifier, signingIdentity } from "../../src/client/keys.js";
import { toHex } from "../../src/core/bytes.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { parseFullJid, type ThreadId } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { type AnySigningIdentity, type AsyncSigningIdentity, normalizedKey, type SigningIdentity } from "../../src/esession/identity.js";
import { DEFAULT_POLICY, ESession, type ESessionEvent, type Policy, type SignRequest } from "../../src/esession/session.js";
import { createIdentityKey } from "../../src/identity/keyfile.js";
import { type Element, el, parseXml, serialize } from "../../src/xml/index.js";

const ALICE = parseFullJid("alice@example.org/desk");
const BOB = parseFullJid("bob@example.com/browser");
const THREAD = "async-sign-thread" as ThreadId;

const aliceKey = signingIdentity(createIdentityKey("ed25519", 0));
const bobKey = signingIdentity(createIdentityKey("ed25519", 0));
const otherKey = signingIdentity(createIdentityKey("ed25519", 0));

/** The same key behind a Promise, as WebCrypto's crypto.subtle.sign gives it. */
function asAsync(k: SigningIdentity): AsyncSigningIdentity & { readonly calls: Uint8Array[] } {
  const calls: Uint8Array[] = [];
  return {
    signAlg: k.signAlg,
    keyValue: k.keyValue,
    async: true,
    calls,
    sign: async (data) => {
      calls.push(data);
      await new Promise((r) => setImmediate(r));
      return k.sign(data);
    },
  };
}

type Who = "alice" | "bob";

interface Side {
  session: ESession | undefined;
  readonly identity: AnySigningIdentity;
  readonly inbox: Element[];
  readonly events: ESessionEvent[];
  /** Sign requests taken from the core, not answered yet. */
  readonly requests: SignRequest[];
  /** Every request ever taken (for counting). */
  readonly allRequests: SignRequest[];
  /** Serialized stanzas this side sent, in order. */
  readonly wire: string[];
}

interface DuoOptions {
  readonly messages: 3 | 4;
  readonly alice?: AnySigningIdentity;
  readonly bob?: AnySigningIdentity;
  readonly seed?: string;
}

/** Two ESession cores and the wire between them; the test decides when signatures arrive. */
class Duo {
  readonly clock = new VirtualClock();
  readonly alice: Side;
  readonly bob: Side;
  private readonly policy: Policy;
  private readonly seed: string;

  constructor(o: DuoOptions) {
    this.seed = o.seed ?? "async-sign";
    this.policy = { ...DEFAULT_POLICY, messages: o.messages, offerPubkey: ["key"], acceptPubkey: ["key"] };
    const side = (identity: AnySigningIdentity): Side => ({ session: undefined, identity, inbox: [], events: [], requests: [], allRequests: [], wire: [] });
    this.alice = side(o.alice ?? aliceKey);
    this.bob = side(o.bob ?? bobKey);
  }

  private params(who: Who) {
    const me = who === "alice" ? this.alice : this.bob;
    return {
      crypto: nodeCrypto,
      random: new SeededRandom(nodeCrypto, `${this.seed}-${who}`),
      clock: this.clock,
      local: who === "alice" ? ALICE : BOB,
      peer: who === "alice" ? BOB : ALICE,
      thread: THREAD,
      policy: this.policy,
      identity: me.identity,
      verifier: keyVerifier(),
    };
  }

  start(): this {
    this.alice.session = ESession.initiate(this.params("alice"));
    this.pump();
    return this;
  }

  side(who: Who): Side {
    return who === "alice" ? this.alice : this.bob;
  }

  session(who: Who): ESession {
    const s = this.side(who).session;
    assert.ok(s, `${who} has a session`);
    return s;
  }

  /** Drains both cores and delivers stanzas until nothing moves (signatures are not provided). */
  pump(): void {
    for (let moved = true; moved; ) {
      moved = false;
      for (const who of ["alice", "bob"] as const) {
        const me = this.side(who);
        const peer = this.side(who === "alice" ? "bob" : "alice");
        const s = me.session;
        if (s) {
          for (const o of s.drain()) {
            moved = true;
            if (o.kind === "send") {
              const text = serialize(o.stanza);
              me.wire.push(text);
              const parsed = parseXml(text);
              parsed.attrs.from = who === "alice" ? ALICE : BOB;
              peer.inbox.push(parsed);
            } else me.events.push(o.event);
          }
          const r = s.takeSignRequest();
          if (r) {
            me.requests.push(r);
            me.allRequests.push(r);
            moved = true;
          }
        }
        const next = me.inbox.shift();
        if (next) {
          moved = true;
          if (me.session) me.session.handleStanza(next);
          else me.session = ESession.respond(this.params(who), next);
        }
      }
    }
  }

  /** Signs every pending request of `who` with its identity (or `override`), then pumps. */
  async sign(who: Who, override?: (data: Uint8Array) => Uint8Array): Promise<void> {
    const me = this.side(who);
    for (const r of me.requests.splice(0)) {
      const sig = override ? override(r.data) : await me.identity.sign(r.data);
      assert.equal(this.session(who).provideSignature(r.id, sig), true, "the session accepted the signature");
    }
    this.pump();
  }

  /** Signs whatever is pending on either side until both are established or nothing moves. */
  async run(): Promise<void> {
    for (let i = 0; i < 8 && (this.alice.requests.length || this.bob.requests.length); i++) {
      await this.sign("alice");
      await this.sign("bob");
    }
  }

  established(who: Who): Extract<ESessionEvent, { type: "established" }> | undefined {
    return this.side(who).events.find((e): e is Extract<ESessionEvent, { type: "established" }> => e.type === "established");
  }

  failures(who: Who): string[] {
    return this.side(who).events.flatMap((e) => (e.type === "failed" ? [e.error.condition] : []));
  }

  /** Alice sends one encrypted message; returns the body Bob read. */
  exchange(text: string): string | undefined {
    this.session("alice").send(el("message", { type: "chat" }, el("body", {}, text)));
    this.pump();
    const got = this.bob.events.find((e): e is Extract<ESessionEvent, { type: "stanza" }> => e.type === "stanza");
    return got?.stanza.getChildText("body") ?? undefined;
  }
}

function keyXml(k: Element | undefined): string {
  return k ? normalizedKey(k) : "";
}

for (const messages of [4, 3] as const) {
  test(`${messages}-message: synchronous identities never produce a sign request`, () => {
    const d = new Duo({ messages }).start();
    assert.equal(d.alice.allRequests.length + d.bob.allRequests.length, 0);
    assert.ok(d.established("alice") && d.established("bob"));
    assert.equal(d.exchange("sync"), "sync");
  });

  for (const asyncSide of ["alice", "bob", "both"] as const) {
    test(`${messages}-message, ${asyncSide === "both" ? "both sides sign" : `${asyncSide} signs`} asynchronously: same negotiation, same wire`, async () => {
      // The reference run: the same seeds and keys, both signing synchronously.
      const ref = new Duo({ messages }).start();
      const alice = asyncSide !== "bob" ? asAsync(aliceKey) : aliceKey;
      const bob = asyncSide !== "alice" ? asAsync(bobKey) : bobKey;
      const d = new Duo({ messages, alice, bob }).start();

      // Who stops first: Bob before his response in a 3-message negotiation (message 2
      // carries his identity); otherwise Alice before her identity (message 3), or Bob
      // before his (4-message, message 4).
      const first: Who = messages === 3 && asyncSide !== "alice" ? "bob" : asyncSide === "bob" ? "bob" : "alice";
      const waiter = d.side(first);
      assert.equal(d.session(first).stateKind, "awaiting-signature");
      assert.equal(waiter.requests.length, 1);
      if (first === "alice") assert.equal(d.alice.wire.length, 1, "Alice sent only her request");
      else if (messages === 3) assert.equal(d.bob.wire.length, 0, "Bob's response waits for his signature");
      else assert.equal(d.bob.wire.length, 1, "Bob sent only his response");
      assert.equal(d.established(first), undefined);
      const req = waiter.requests[0];
      assert.ok(req, "a sign request is pending");
      assert.equal(req.id.length > 0, true);
      assert.equal(req.signAlg, aliceKey.signAlg);
      assert.equal(req.data.length, 64, "the SIGMA mac with SHA-512 (modern suite preferred)");
      assert.equal(d.session(first).takeSignRequest(), undefined, "a request is handed out once");
      assert.ok(d.session(first).nextDeadline() !== undefined, "the negotiation deadline still applies");

      await d.run();
      const a = d.established("alice");
      const b = d.established("bob");
      assert.ok(a && b, "both established");
      assert.deepEqual(d.failures("alice"), []);
      assert.deepEqual(d.failures("bob"), []);
      assert.equal(keyXml(a.peerKey?.keyValue), keyXml(bobKey.keyValue));
      assert.equal(keyXml(b.peerKey?.keyValue), keyXml(aliceKey.keyValue));
      if (messages === 4) assert.equal(a.sas, b.sas);
      // Exactly the negotiation a synchronous signer makes (Ed25519 is deterministic).
      assert.deepEqual(d.alice.wire, ref.alice.wire);
      assert.deepEqual(d.bob.wire, ref.bob.wire);
      assert.equal(a.sas, ref.established("alice")?.sas);
      const expectAlice = asyncSide !== "bob" ? 1 : 0;
      const expectBob = asyncSide !== "alice" ? 1 : 0;
      assert.equal(d.alice.allRequests.length, expectAlice);
      assert.equal(d.bob.allRequests.length, expectBob);
      assert.equal(d.exchange("signed later, sealed now"), "signed later, sealed now");
    });
  }
}

test("a signature that arrives late but within the deadline completes the negotiation", async () => {
  const d = new Duo({ messages: 4, bob: asAsync(bobKey) }).start();
  assert.equal(d.session("bob").stateKind, "awaiting-signature");
  d.clock.advance(DEFAULT_POLICY.timeoutMs - 1_000);
  d.session("bob").onTimer(d.clock.now());
  d.session("alice").onTimer(d.clock.now());
  d.pump();
  assert.equal(d.session("bob").stateKind, "awaiting-signature");
  await d.run();
  assert.ok(d.established("alice") && d.established("bob"));
});

test("a signature that arrives after the deadline is ignored: the negotiation timed out", async () => {
  const d = new Duo({ messages: 4, alice: asAsync(aliceKey) }).start();
  const alice = d.session("alice");
  const deadline = alice.nextDeadline();
  assert.ok(deadline !== undefined);
  d.clock.advance(DEFAULT_POLICY.timeoutMs + 1);
  alice.onTimer(d.clock.now());
  d.pump();
  assert.equal(alice.stateKind, "terminated");
  assert.deepEqual(d.failures("alice"), ["unexpected-request"]);
  const [req] = d.alice.requests.splice(0);
  assert.ok(req);
  const sig = await d.alice.identity.sign(req.data);
  assert.equal(alice.provideSignature(req.id, sig), false, "too late");
  assert.equal(alice.drain().length, 0, "nothing is sent after the end");
  assert.equal(d.established("alice"), undefined);
  assert.equal(d.established("bob"), undefined);
});

test("the session is terminated by us while waiting for the signature", async () => {
  const d = new Duo({ messages: 3, alice: asAsync(aliceKey) }).start();
  const alice = d.session("alice");
  assert.equal(alice.stateKind, "awaiting-signature");
  alice.terminate();
  d.pump();
  assert.equal(alice.stateKind, "terminated");
  assert.equal(alice.nextDeadline(), undefined);
  assert.ok(d.alice.events.some((e) => e.type === "terminated" && e.by === "us"));
  // Bob, waiting for Alice's identity, saw the termination.
  assert.equal(d.session("bob").stateKind, "terminated");
  const [req] = d.alice.requests.splice(0);
  assert.ok(req);
  assert.equal(alice.provideSignature(req.id, await d.alice.identity.sign(req.data)), false);
  assert.equal(alice.drain().length, 0);
});

test("the peer terminates while we wait for the signature", async () => {
  const d = new Duo({ messages: 4, bob: asAsync(bobKey) }).start();
  assert.equal(d.session("bob").stateKind, "awaiting-signature");
  d.session("alice").terminate();
  d.pump();
  assert.equal(d.session("bob").stateKind, "terminated");
  assert.ok(d.bob.events.some((e) => e.type === "terminated" && e.by === "peer"));
  const [req] = d.bob.requests.splice(0);
  assert.ok(req);
  assert.equal(d.session("bob").provideSignature(req.id, await d.bob.identity.sign(req.data)), false);
});

for (const messages of [4, 3] as const) {
  for (const who of ["alice", "bob"] as const) {
    test(`${messages}-message: a garbage signature from ${who} fails the peer's verification`, async () => {
      const d = new Duo(who === "alice" ? { messages, alice: asAsync(aliceKey) } : { messages, bob: asAsync(bobKey) }).start();
      const garbage = new Uint8Array(64).fill(0x5a);
      await d.sign(who, () => garbage);
      await d.run();
      const peer = who === "alice" ? "bob" : "alice";
      assert.ok(d.failures(peer).includes("identity-mismatch"), `${peer} refused the signature: ${d.failures(peer).join(",")}`);
      assert.equal(d.established(peer), undefined);
      assert.equal(d.session(peer).stateKind, "terminated");
    });
  }
}

test("a valid signature by another key fails the peer's verification", async () => {
  const d = new Duo({ messages: 4, alice: asAsync(aliceKey) }).start();
  await d.sign("alice", (data) => otherKey.sign(data));
  await d.run();
  assert.ok(d.failures("bob").includes("identity-mismatch"));
  assert.equal(d.established("bob"), undefined);
});

test("signatureFailed ends the negotiation with not-acceptable and tells the peer", () => {
  const d = new Duo({ messages: 4, bob: asAsync(bobKey) }).start();
  const [req] = d.bob.requests.splice(0);
  assert.ok(req);
  assert.equal(d.session("bob").signatureFailed("sig-unknown"), false);
  assert.equal(d.session("bob").signatureFailed(req.id), true);
  d.pump();
  assert.deepEqual(d.failures("bob"), ["not-acceptable"]);
  assert.equal(d.session("bob").stateKind, "terminated");
  assert.equal(d.session("alice").stateKind, "terminated", "Alice got the error");
  assert.equal(d.established("alice"), undefined);
});

test("a signature for another request id is refused and the session keeps waiting", async () => {
  const d = new Duo({ messages: 4, alice: asAsync(aliceKey) }).start();
  const alice = d.session("alice");
  const [req] = d.alice.requests.splice(0);
  assert.ok(req);
  const sig = await d.alice.identity.sign(req.data);
  assert.equal(alice.provideSignature(`${req.id}-other`, sig), false);
  assert.equal(alice.stateKind, "awaiting-signature");
  assert.equal(alice.provideSignature(req.id, sig), true);
  assert.equal(alice.provideSignature(req.id, sig), false, "a request is answered once");
  d.pump();
  await d.run();
  assert.ok(d.established("alice") && d.established("bob"));
});

test("while we wait for the signature, an exact duplicate of the response is ignored and a different one fails the session", () => {
  const d = new Duo({ messages: 4, alice: asAsync(aliceKey) }).start();
  const response = d.bob.wire[0];
  assert.ok(response);
  // A network duplicate (same content, same from): ignored, no answer, no failure.
  const duplicate = parseXml(response);
  duplicate.attrs.from = BOB;
  d.session("alice").handleStanza(duplicate);
  d.pump();
  assert.deepEqual(d.failures("alice"), []);
  assert.equal(d.session("alice").stateKind, "awaiting-signature");
  // Another message in that slot (one value changed) is still out of order.
  const other = parseXml(response);
  other.attrs.from = BOB;
  const nonce = other.getChild("feature")?.getChild("x")?.getChildren("field").find((f) => f.attrs.var === "my_nonce")?.getChild("value");
  assert.ok(nonce);
  nonce.children = ["AAAAAAAAAAAAAAAAAAAAAA=="];
  d.session("alice").handleStanza(other);
  d.pump();
  assert.deepEqual(d.failures("alice"), ["unexpected-request"]);
  assert.equal(d.session("alice").stateKind, "terminated");
});

test("a synchronous identity whose sign() returns a Promise is refused with a clear error", () => {
  const wrong = {
    signAlg: aliceKey.signAlg,
    keyValue: aliceKey.keyValue,
    sign: (data: Uint8Array) => Promise.resolve(aliceKey.sign(data)),
  } as unknown as SigningIdentity;
  const d = new Duo({ messages: 4, alice: wrong }).start();
  assert.deepEqual(d.failures("alice"), ["not-acceptable"]);
  const failed = d.alice.events.find((e): e is Extract<ESessionEvent, { type: "failed" }> => e.type === "failed");
  assert.match(failed?.error.message ?? "", /async: true/);
  assert.equal(d.alice.allRequests.length, 0);
});

test("the core never calls an asynchronous identity itself", async () => {
  const alice = asAsync(aliceKey);
  const d = new Duo({ messages: 4, alice }).start();
  assert.equal(alice.calls.length, 0, "the driver signs, not the core");
  await d.run();
  assert.equal(alice.calls.length, 1);
  assert.equal(toHex(alice.calls[0] ?? new Uint8Array(0)), toHex(d.alice.allRequests[0]?.data ?? new Uint8Array(1)));
});
