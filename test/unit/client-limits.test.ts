/**
 * SecureClient resource limits: admission control for ESession negotiations (a flood of
 * requests from one account's many resources and from many accounts is refused with
 * <resource-constraint/> (wait) beyond the limits, with no DH work spent on a refused
 * request; our own startSession counts too; timed-out negotiations give their place back
 * and a normal negotiation then succeeds) and the cap on published offline one-time values.
 *
 * Spec: XEP-0210 v0.3 section 4.4 (expensive work bounded), XEP-0155 v1.2 section 4.3 (a
 * request refused with a stanza error), RFC 6120 section 8.3.3.18 (<resource-constraint/>,
 * type 'wait'), XEP-0187 v0.5 section 3.1; docs/security.md "Limits". The rate of that work
 * (requests per bare JID and in total per minute) is bounded as well.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { Switchboard } from "../../src/adapters/switchboard.js";
import { type ClientEvent, SecureClient } from "../../src/client/secure-client.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { type FullJid, parseFullJid, type ThreadId } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import type { CryptoProvider } from "../../src/crypto/provider.js";
import { ESessionError } from "../../src/esession/errors.js";
import { ESession } from "../../src/esession/session.js";
import { configureLimits, resetLimits } from "../../src/limits.js";
import { MemoryStore } from "../../src/store/memory.js";
import { MemoryOfflineStore } from "../../src/store/offline.js";
import { el, type Element, NS } from "../../src/xml/index.js";
import { settleBoard, VirtualTimers } from "../sim/pair.js";

after(() => resetLimits());

const BOB = parseFullJid("bob@example.com/laptop");

/** nodeCrypto with every DH operation counted. */
function countingCrypto(): { crypto: CryptoProvider; dh: () => number } {
  let n = 0;
  const crypto: CryptoProvider = {
    ...nodeCrypto,
    dhPublic: (g, x) => {
      n++;
      return nodeCrypto.dhPublic(g, x);
    },
    dhShared: (g, x, p) => {
      n++;
      return nodeCrypto.dhShared(g, x, p);
    },
  };
  return { crypto, dh: () => n };
}

interface World {
  readonly board: Switchboard;
  readonly clock: VirtualClock;
  readonly timers: VirtualTimers;
  readonly bob: SecureClient;
  readonly bobEvents: ClientEvent[];
  readonly dh: () => number;
  client(jid: string): { client: SecureClient; events: ClientEvent[] };
  /** A silent party: sends one ESession request to Bob, never answers; returns what it received. */
  attacker(jid: string): { request(): Promise<Element[]>; inbox: Element[] };
  settle(): Promise<void>;
}

function world(seed: string): World {
  const board = new Switchboard();
  const clock = new VirtualClock();
  const timers = new VirtualTimers(clock);
  const counted = countingCrypto();
  const clients: SecureClient[] = [];
  const mk = (jid: FullJid, crypto: CryptoProvider) => {
    const client = new SecureClient({
      connection: board.connect(jid),
      store: new MemoryStore(),
      crypto,
      random: new SeededRandom(nodeCrypto, `${seed}/${jid}`),
      clock,
      timers,
    });
    clients.push(client);
    const events: ClientEvent[] = [];
    client.on((e) => events.push(e));
    return { client, events };
  };
  const bob = mk(BOB, counted.crypto);
  const settle = (): Promise<void> => settleBoard(board, clients);
  let n = 0;
  const attackers = new Map<string, { request(): Promise<Element[]>; inbox: Element[] }>();
  return {
    board,
    clock,
    timers,
    bob: bob.client,
    bobEvents: bob.events,
    dh: counted.dh,
    client: (jid) => mk(parseFullJid(jid), nodeCrypto),
    attacker: (jid) => {
      const known = attackers.get(jid);
      if (known) return known;
      const me = parseFullJid(jid);
      const conn = board.connect(me);
      const inbox: Element[] = [];
      conn.onStanza((s) => inbox.push(s));
      const a = {
        inbox,
        request: async () => {
          // A genuine request (message 1) built by the initiator core, then abandoned.
          const s = ESession.initiate({
            crypto: nodeCrypto,
            random: new SeededRandom(nodeCrypto, `${seed}/${jid}/${n}`),
            clock,
            local: me,
            peer: BOB,
            thread: `flood-${n++}` as ThreadId,
          });
          const out = s.drain().flatMap((o) => (o.kind === "send" ? [o.stanza] : []));
          const before = inbox.length;
          for (const st of out) await conn.send(st);
          await settle();
          return inbox.slice(before);
        },
      };
      attackers.set(jid, a);
      return a;
    },
    settle,
  };
}

function isBusy(replies: readonly Element[]): boolean {
  return replies.some((r) => {
    const err = r.attrs.type === "error" ? r.getChild("error") : undefined;
    return err?.attrs.type === "wait" && err.getChild("resource-constraint", NS.stanzas) !== undefined;
  });
}

function isResponse(replies: readonly Element[]): boolean {
  return replies.some((r) => r.attrs.type !== "error" && r.getChild("feature", NS.featureNeg) !== undefined);
}

test("admission: a flood from one account's resources and from many accounts is refused beyond the limits, with no DH work", async () => {
  const previous = configureLimits({ maxPendingNegotiationsPerPeer: 3, maxPendingNegotiations: 6 });
  try {
    const w = world("flood");
    const outcomes: string[] = [];
    const dhPerRequest: number[] = [];
    // One account, ten resources: three are answered (each costs Bob a DH key), seven are busy.
    for (let i = 0; i < 10; i++) {
      const before = w.dh();
      const replies = await w.attacker(`mallory@evil.example/r${i}`).request();
      dhPerRequest.push(w.dh() - before);
      outcomes.push(isResponse(replies) ? "answered" : isBusy(replies) ? "busy" : "other");
    }
    assert.deepEqual(outcomes, [...Array(3).fill("answered"), ...Array(7).fill("busy")]);
    assert.ok(dhPerRequest.slice(0, 3).every((n) => n >= 1), "an answered request costs a DH key generation");
    assert.deepEqual(dhPerRequest.slice(3), Array(7).fill(0), "a refused request costs no DH work");

    // A re-request from a resource already negotiating replaces its negotiation: still answered.
    const again = await w.attacker("mallory@evil.example/r0").request();
    assert.ok(isResponse(again), "a re-request keeps its admission");

    // Many accounts: three more fit under the total of 6, the rest are busy, at no DH cost.
    const many: string[] = [];
    const dhBefore = w.dh();
    let answered = 0;
    for (let i = 0; i < 8; i++) {
      const replies = await w.attacker(`m${i}@evil.example/x`).request();
      many.push(isResponse(replies) ? "answered" : isBusy(replies) ? "busy" : "other");
      if (isResponse(replies)) answered++;
    }
    assert.deepEqual(many, [...Array(3).fill("answered"), ...Array(5).fill("busy")]);
    assert.equal(w.dh() - dhBefore, answered * (dhPerRequest[0] ?? 1), "DH work only for the admitted");

    // Our own negotiations count too: refused locally, before any DH.
    const dhOwn = w.dh();
    await assert.rejects(w.bob.startSession("carol@example.org/home"), (e: unknown) => e instanceof ESessionError && e.condition === "not-acceptable");
    assert.equal(w.dh(), dhOwn);

    // A legitimate peer during the flood is refused too (the total is full)...
    const alice = w.client("alice@example.org/pda");
    const refused = alice.client.startSession(BOB).then(
      () => "established",
      (e: unknown) => (e instanceof ESessionError ? e.condition : "other"),
    );
    await w.settle();
    assert.equal(await refused, "not-acceptable", "the busy refusal ends Alice's negotiation");
    assert.ok(!w.bobEvents.some((e) => e.type === "established"));

    // ...and once the flood's negotiations time out (XEP-0116: the responder gives up),
    // their places are free again and a normal negotiation succeeds both ways.
    w.clock.advance(61_000);
    w.timers.fire();
    await w.settle();
    const est = alice.client.startSession(BOB);
    await w.settle();
    const a = await est;
    assert.ok(a.sas);
    await alice.client.sendMessage(BOB, "after the flood");
    await w.settle();
    assert.ok(w.bobEvents.some((e) => e.type === "message" && e.body === "after the flood"));
    // Bob can start a session of his own again as well.
    const carol = w.client("carol@example.org/home");
    const own = w.bob.startSession("carol@example.org/home");
    await w.settle();
    assert.ok((await own).sas);
    assert.ok(carol.events.some((e) => e.type === "established"));
  } finally {
    configureLimits(previous);
  }
});

test("admission: established, failed and terminated negotiations release their place", async () => {
  const previous = configureLimits({ maxPendingNegotiationsPerPeer: 1, maxPendingNegotiations: 2 });
  try {
    const w = world("release");
    const alice = w.client("alice@example.org/pda");
    // Five sessions in a row with the same account, each established then terminated: a
    // leaked admission would refuse the second one already (one place per account).
    for (let i = 0; i < 5; i++) {
      const est = alice.client.startSession(BOB);
      await w.settle();
      await est;
      await alice.client.terminate(BOB);
      await w.settle();
    }
    // A request that fails at once (a malformed form) does not hold its place either.
    const conn = w.board.connect(parseFullJid("alice@example.org/other"));
    const inbox: Element[] = [];
    conn.onStanza((s) => inbox.push(s));
    const bad = el(
      "message",
      { to: BOB, id: "junk" },
      el("thread", {}, "junk-thread"),
      el("feature", { xmlns: NS.featureNeg }, el("x", { xmlns: NS.data, type: "form" }, el("field", { var: "FORM_TYPE" }, el("value", {}, NS.ssn)), el("field", { var: "dhhashes" }, el("value", {}, "!!")))),
    );
    await conn.send(bad);
    await w.settle();
    assert.ok(inbox.some((s) => s.attrs.type === "error"), "the malformed request got an error");
    const est = alice.client.startSession(BOB);
    await w.settle();
    assert.ok((await est).sas, "the account's place is free again");
  } finally {
    configureLimits(previous);
  }
});

test("rate: a resource that keeps re-requesting, and many accounts at once, get <resource-constraint/> beyond the per-minute rate, with no DH work; the rate refills", async () => {
  const previous = configureLimits({ negotiationRequestsPerMinutePerPeer: 5, negotiationRequestsPerMinute: 8 });
  try {
    const w = world("rate");
    // One resource re-requesting: its pending negotiation is replaced each time (state stays
    // bounded), but each answer costs a DH key: five are answered, then it is refused.
    const outcomes: string[] = [];
    const dh: number[] = [];
    for (let i = 0; i < 7; i++) {
      const before = w.dh();
      const replies = await w.attacker("mallory@evil.example/r0").request();
      dh.push(w.dh() - before);
      outcomes.push(isResponse(replies) ? "answered" : isBusy(replies) ? "busy" : "other");
    }
    assert.deepEqual(outcomes, [...Array(5).fill("answered"), "busy", "busy"]);
    assert.deepEqual(dh.slice(5), [0, 0], "a request over the rate costs no DH work");
    // Other accounts share the total of 8 per minute: 3 more, then busy.
    const many: string[] = [];
    for (let i = 0; i < 5; i++) {
      const replies = await w.attacker(`m${i}@evil.example/x`).request();
      many.push(isResponse(replies) ? "answered" : isBusy(replies) ? "busy" : "other");
    }
    assert.deepEqual(many, ["answered", "answered", "answered", "busy", "busy"]);
    // A minute later both buckets are full again: an honest peer negotiates normally.
    w.clock.advance(61_000);
    w.timers.fire();
    await w.settle();
    const alice = w.client("alice@example.org/pda");
    const est = alice.client.startSession(BOB);
    await w.settle();
    assert.ok((await est).sas);
    assert.ok(isResponse(await w.attacker("mallory@evil.example/r0").request()), "Mallory's bucket refilled too");
  } finally {
    configureLimits(previous);
  }
});

test("offline one-time values: a count over maxOfflineOneTimeValues is refused at configuration; top-up is clamped", async () => {
  const board = new Switchboard();
  const conn = board.connect(parseFullJid("bob@example.com/laptop"));
  assert.throws(
    () => new SecureClient({ connection: conn, store: new MemoryStore(), offline: { store: new MemoryOfflineStore(), count: 33 } }),
    (e: unknown) => e instanceof RangeError && e.message.includes("offline.count") && e.message.includes("maxOfflineOneTimeValues"),
  );
  assert.throws(() => new SecureClient({ connection: conn, store: new MemoryStore(), offline: { store: new MemoryOfflineStore(), count: 0 } }), RangeError);

  // A PEP service that accepts every publish: count how many sets are published and stored.
  const clock = new VirtualClock();
  const published: string[] = [];
  let handler: ((s: Element) => void) | undefined;
  const fake = {
    jid: parseFullJid("bob@example.com/laptop"),
    send: async (s: Element) => {
      if (s.name !== "iq") return;
      const item = s.getChild("pubsub")?.getChild("publish")?.getChild("item");
      if (item) published.push(String(item.attrs.id));
      const reply = el("iq", { type: "result", id: s.attrs.id, from: "bob@example.com" });
      setImmediate(() => handler?.(reply));
    },
    onStanza: (h: (s: Element) => void) => {
      handler = h;
      return () => undefined;
    },
    close: async () => undefined,
  };
  const store = new MemoryOfflineStore();
  const client = new SecureClient({
    connection: fake,
    store: new MemoryStore(),
    random: new SeededRandom(nodeCrypto, "offline-count"),
    clock,
    offline: { store, count: 10 },
  });
  const previous = configureLimits({ maxOfflineOneTimeValues: 4 });
  try {
    assert.equal(await client.publishOfflineOptions(), 4, "clamped to the limit lowered after configuration");
    assert.equal((await store.list("bob@example.com" as never)).length, 4);
    assert.equal(published.length, 4);
    assert.equal(await client.publishOfflineOptions(), 0, "already at the limit");
  } finally {
    configureLimits(previous);
  }
  assert.equal(await client.publishOfflineOptions(), 6, "back to the configured count");
});
