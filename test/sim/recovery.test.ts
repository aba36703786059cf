/**
 * Session recovery on the switchboard: a peer that lost its state (restart without its
 * sessions) answers every stanza it cannot decrypt with an error naming it; the sender's
 * client reports each as undelivered, renegotiates on its own, and (when the app opted in)
 * resends exactly those stanzas in the new session: nothing lost, nothing twice.
 *
 * Spec: XEP-0200 v0.2 section 6 (a stanza that cannot be verified is never delivered);
 * RFC 6120 section 8.3 (error replies keep the id); docs/offline-and-devices.md "Recovery".
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { type ClientEvent, SecureClient } from "../../src/client/secure-client.js";
import { SeededRandom } from "../../src/core/testing.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { MemoryStore } from "../../src/store/memory.js";
import { Switchboard } from "../../src/adapters/switchboard.js";
import type { SecureClientOptions } from "../../src/client/secure-client.js";
import { VirtualClock } from "../../src/core/testing.js";
import { type FullJid, parseFullJid } from "../../src/core/types.js";
import { VirtualTimers } from "./pair.js";

function client(board: Switchboard, jid: FullJid, seed: string, clock: VirtualClock, timers: VirtualTimers, extra: Partial<SecureClientOptions> = {}) {
  const connection = board.connect(jid);
  const c = new SecureClient({ connection, store: new MemoryStore(), crypto: nodeCrypto, random: new SeededRandom(nodeCrypto, seed), clock, timers, ...extra });
  const events: ClientEvent[] = [];
  c.on((e) => events.push(e));
  return { c, connection, events, bodies: () => events.flatMap((e) => (e.type === "message" && e.body ? [e.body] : [])) };
}

test("the receiver restarts: undelivered stanzas are reported, the session is renegotiated and they are resent once", async () => {
  const board = new Switchboard();
  const clock = new VirtualClock();
  const timers = new VirtualTimers(clock);
  const aliceJid = parseFullJid("alice@example.org/pda");
  const bobJid = parseFullJid("bob@example.com/laptop");
  const alice = client(board, aliceJid, "a", clock, timers, { recovery: { resend: true } });
  let bob = client(board, bobJid, "b", clock, timers);
  const settle = async () => {
    for (let i = 0; i < 60; i++) {
      await board.idle();
      await alice.c.settled();
      await bob.c.settled();
      await new Promise((r) => setImmediate(r));
    }
  };
  const est = alice.c.startSession(bobJid);
  await settle();
  await est;
  await alice.c.sendMessage(bobJid, "m0");
  await alice.c.sendMessage(bobJid, "m1");
  await settle();
  assert.deepEqual(bob.bodies(), ["m0", "m1"]);

  // Bob's process dies (no termination sent) and comes back with no sessions.
  await bob.connection.close();
  await settle();
  bob = client(board, bobJid, "b2", clock, timers);
  // Alice's session still looks active to her; her next stanzas cannot be decrypted.
  assert.ok(alice.c.session(bobJid)?.isActive);
  await alice.c.sendMessage(bobJid, "m2");
  await alice.c.sendMessage(bobJid, "m3");
  await settle();
  const und = bob.events.filter((e) => e.type === "undecryptable");
  assert.equal(und.length, 2, "each undecryptable stanza is reported to Bob's user");
  assert.ok(und.every((e) => e.type === "undecryptable" && e.replied && e.id !== undefined));
  assert.equal(alice.events.filter((e) => e.type === "undelivered").length, 2);
  assert.ok(alice.events.some((e) => e.type === "recovery" && e.state === "renegotiated"));
  assert.deepEqual(bob.bodies(), ["m2", "m3"], "resent once, in order, in the new session");
  assert.equal(alice.events.filter((e) => e.type === "resent").length, 2);
  // The next messages flow in the new session.
  await alice.c.sendMessage(bobJid, "m4");
  await settle();
  assert.deepEqual(bob.bodies(), ["m2", "m3", "m4"]);
});

test("without resend: the app is told which stanzas were undelivered and the session is renegotiated", async () => {
  const board = new Switchboard();
  const clock = new VirtualClock();
  const timers = new VirtualTimers(clock);
  const aliceJid = parseFullJid("alice@example.org/pda");
  const bobJid = parseFullJid("bob@example.com/laptop");
  let alice = client(board, aliceJid, "a", clock, timers);
  const bob = client(board, bobJid, "b", clock, timers);
  const settle = async () => {
    for (let i = 0; i < 60; i++) {
      await board.idle();
      await alice.c.settled();
      await bob.c.settled();
      await new Promise((r) => setImmediate(r));
    }
  };
  const est = bob.c.startSession(aliceJid);
  await settle();
  await est;
  // Alice (the receiver this time) restarts; Bob's next message is reported, not resent.
  await alice.connection.close();
  await settle();
  alice = client(board, aliceJid, "a2", clock, timers);
  await bob.c.sendMessage(aliceJid, "lost?");
  await settle();
  const und = bob.events.find((e) => e.type === "undelivered");
  assert.ok(und && und.type === "undelivered" && !und.willResend);
  assert.ok(bob.events.some((e) => e.type === "recovery" && e.state === "renegotiated"));
  assert.deepEqual(alice.bodies(), []);
  await bob.c.sendMessage(aliceJid, "after");
  await settle();
  assert.deepEqual(alice.bodies(), ["after"]);
});

test("hints (opt-in): carbons-private, no-copy and, with logging 'mustnot', no-permanent-store travel in the clear and are not reported as unauthenticated", async () => {
  const board = new Switchboard();
  const clock = new VirtualClock();
  const timers = new VirtualTimers(clock);
  const aliceJid = parseFullJid("alice@example.org/pda");
  const bobJid = parseFullJid("bob@example.com/laptop");
  const alice = client(board, aliceJid, "h-a", clock, timers, { policy: { hints: true, logging: ["mustnot"] } });
  const bob = client(board, bobJid, "h-b", clock, timers);
  const relayed: string[] = [];
  board.tap((r) => relayed.push(r.text));
  const settle = async () => {
    for (let i = 0; i < 40; i++) {
      await board.idle();
      await alice.c.settled();
      await bob.c.settled();
      await new Promise((r) => setImmediate(r));
    }
  };
  const est = alice.c.startSession(bobJid);
  await settle();
  await est;
  await alice.c.sendMessage(bobJid, "hinted");
  await settle();
  const msg = relayed.find((t) => t.includes("xep-0200.html#ns") && t.includes("no-copy"));
  assert.ok(msg && msg.includes("urn:xmpp:carbons:2") && msg.includes("no-permanent-store"));
  const m = bob.events.find((e) => e.type === "message");
  assert.ok(m && m.type === "message" && m.body === "hinted" && m.unauthenticated.length === 0);
});
