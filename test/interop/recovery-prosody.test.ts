/**
 * Session recovery through a real Prosody: Bob's client disappears without ending its
 * session (its state is lost) while Alice keeps sending, mid-re-key included; Prosody keeps
 * what arrives meanwhile (XEP-0160); Bob comes back with no sessions, reports every stanza
 * he cannot decrypt (typed event + error reply naming it); Alice's client reports them
 * undelivered, renegotiates on its own and resends exactly those: Bob ends with every
 * message once, in order.
 *
 * Spec: XEP-0200 v0.2 section 6; RFC 6120 section 8.3 (error replies keep the id);
 * XEP-0160 (offline storage); docs/offline-and-devices.md "Recovery".
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { MemoryStore } from "../../src/store/memory.js";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";
import { bodies, shut, side, waitFor } from "./offline-helpers.js";

let server: ProsodyInstance;

before(async () => {
  server = await startProsody({ users: [["alice", "alice-pw"], ["bob", "bob-pw"]] });
});

after(async () => {
  await server?.stop();
});

test("Bob loses his session mid-stream and mid-re-key: undelivered reported, renegotiated, resent once, nothing lost or doubled", { timeout: 60_000 }, async () => {
  const alice = await side(server, "alice", "laptop", { store: new MemoryStore(), recovery: { resend: true } });
  const bob1 = await side(server, "bob", "phone", { store: new MemoryStore() });
  await alice.client.startSession(bob1.conn.jid);
  await waitFor(bob1, (e) => e.some((x) => x.type === "established"), "bob established");
  for (let i = 0; i < 5; i++) await alice.client.sendMessage(bob1.conn.jid, `m${i}`);
  await waitFor(bob1, (e) => bodies(e).length === 5, "first five");
  // Bob's process is gone: no termination, its keys are lost. Alice re-keys and sends on.
  await bob1.conn.close();
  await new Promise((r) => setTimeout(r, 200));
  await alice.client.rekey(bob1.conn.jid);
  for (let i = 5; i < 10; i++) await alice.client.sendMessage(bob1.conn.jid, `m${i}`);
  const bob2 = await side(server, "bob", "phone", { store: new MemoryStore() });
  await waitFor(bob2, (e) => bodies(e).length === 5, "the five resent messages", server);
  assert.deepEqual([...bodies(bob1.events), ...bodies(bob2.events)], Array.from({ length: 10 }, (_, i) => `m${i}`));
  assert.ok(bob2.events.filter((e) => e.type === "undecryptable").length >= 5, "every undecryptable stanza was reported");
  assert.equal(alice.events.filter((e) => e.type === "undelivered").length, 5);
  assert.equal(alice.events.filter((e) => e.type === "resent").length, 5);
  assert.ok(alice.events.some((e) => e.type === "recovery" && e.state === "renegotiated"));
  // And the next messages flow in the renegotiated session.
  await alice.client.sendMessage(bob2.conn.jid, "after");
  await waitFor(bob2, (e) => bodies(e).includes("after"), "next message");
  for (const s of [...bob2.received, ...alice.received]) assert.ok(!/>m\d</.test(s));
  await shut(alice, bob2);
});
