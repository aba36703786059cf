/**
 * XEP-0187 offline ESessions through a real Prosody (PEP + mod_offline): Bob publishes ten
 * signed one-time option sets and goes offline; Alice fetches them, starts an offline
 * session and sends ten messages; Bob logs in, reads all ten (in order, from offline
 * storage); the used set is gone from his store and from PEP and was replaced; replays of
 * the start and of a later message are rejected with visible events; Bob's presence ends
 * Alice's offline session (XEP-0187 section 5). Nothing relayed contains the plaintext.
 *
 * Spec: XEP-0187 v0.5 sections 3.1-3.4, 5, 6.1; XEP-0160 (offline storage); XEP-0163 (PEP).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { keyVerifier, signingIdentity } from "../../src/client/keys.js";
import { bareJid } from "../../src/core/types.js";
import { createIdentityKey } from "../../src/identity/keyfile.js";
import { NODE_SUBSCRIBERS } from "../../src/offline/codec.js";
import { itemsIq, parseItems } from "../../src/offline/pep.js";
import { MemoryStore } from "../../src/store/memory.js";
import { MemoryOfflineStore } from "../../src/store/offline.js";
import { openSqliteOfflineStore } from "../../src/store/offline-sqlite.js";
import { parseXml, type Element } from "../../src/xml/index.js";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";
import { bodies, shut, side, subscribe, waitFor } from "./offline-helpers.js";

let server: ProsodyInstance;
let dir: string;

before(async () => {
  server = await startProsody({ users: [["alice", "alice-pw"], ["bob", "bob-pw"]] });
  dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-offline-"));
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const aliceId = signingIdentity(createIdentityKey("ed25519", 0));
const bobId = signingIdentity(createIdentityKey("ed25519", 0));

async function pepItems(from: { conn: { send(e: Element): Promise<void>; onStanza(h: (s: Element) => void): () => void } }, owner: string): Promise<string[]> {
  const id = `q${Math.random().toString(36).slice(2)}`;
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no items answer")), 5000);
    const off = from.conn.onStanza((s) => {
      if (s.name === "iq" && s.attrs.id === id) {
        clearTimeout(t);
        off();
        resolve(parseItems(s).map((i) => i.id));
      }
    });
    void from.conn.send(itemsIq(id, owner, NODE_SUBSCRIBERS));
  });
}

test("Bob offline: ten messages in one offline session, read on login; one-time values used once and replaced; replays rejected", { timeout: 90_000 }, async () => {
  const bobOffline = openSqliteOfflineStore(join(dir, "bob-offline.db"));
  const verifier = keyVerifier();
  const bobOpts = {
    store: new MemoryStore(),
    identity: bobId,
    verifier,
    offline: { store: bobOffline, count: 10, lifetimeMs: 3_600_000 },
  };
  const bob1 = await side(server, "bob", "phone", bobOpts);
  const alice = await side(server, "alice", "laptop", {
    store: new MemoryStore(),
    identity: aliceId,
    verifier,
    offline: { store: new MemoryOfflineStore(), peerKeys: async () => [bobId.keyValue] },
  });
  await subscribe(alice, bob1);
  assert.equal(await bob1.client.publishOfflineOptions(), 10);
  assert.equal(await bob1.client.publishOfflineOptions(), 0, "already topped up");
  const published = await pepItems(alice, "bob@localhost");
  assert.equal(published.length, 10);
  await shut(bob1);
  await new Promise((r) => setTimeout(r, 200));

  const est = await alice.client.startOfflineSession("bob@localhost");
  assert.equal(est.offline, "sender");
  assert.ok(est.peerKey, "the options were signed by Bob's key");
  for (let i = 0; i < 10; i++) await alice.client.sendMessage(est.peer, `offline secret #${i}`);
  const wire = alice.sent.filter((s) => s.name === "message" && s.getChild("c"));
  assert.equal(wire.length, 10);
  const usedItem = published.find((id) => wire[0]?.toString().includes(Buffer.from(id, "hex").toString("base64")));
  assert.ok(usedItem, "the start names one published set");

  // Bob logs in again (same offline store: a restart of his client).
  const bob2 = await side(server, "bob", "phone", bobOpts);
  await waitFor(bob2, (e) => bodies(e).length === 10, "ten offline messages", server);
  assert.deepEqual(bodies(bob2.events), Array.from({ length: 10 }, (_, i) => `offline secret #${i}`));
  const est2 = bob2.events.find((e) => e.type === "established");
  assert.ok(est2 && est2.type === "established" && est2.offline === "receiver" && est2.peerKey);
  // Bob's presence ends Alice's offline session; Bob sees it end.
  await waitFor(alice, (e) => e.some((x) => x.type === "terminated"), "alice ends the offline session");
  await waitFor(bob2, (e) => e.some((x) => x.type === "terminated"), "bob sees the end");
  // The used set was destroyed, retracted and replaced.
  await waitFor(bob2, (e) => e.some((x) => x.type === "offline-options" && x.used === 1), "replenished", server);
  const held = await bobOffline.list(bareJid(bob2.conn.jid));
  assert.equal(held.length, 10);
  assert.ok(!held.some((h) => h.id === usedItem));
  const now = await pepItems(alice, "bob@localhost");
  assert.equal(now.length, 10);
  assert.ok(!now.includes(usedItem), "the used set left PEP");

  // Replays: the start again (its one-time set is gone) and a later message (its session is over).
  const before = bob2.events.length;
  await alice.conn.send(parseXml(wire[0]!.toString()));
  await alice.conn.send(parseXml(wire[5]!.toString()));
  await waitFor(bob2, (e) => e.slice(before).filter((x) => x.type === "undecryptable" || x.type === "failed").length >= 2, "replays rejected", server);
  const rejected = bob2.events.slice(before).filter((x) => x.type === "undecryptable" || x.type === "failed");
  assert.ok(rejected.length >= 2);
  assert.equal(bodies(bob2.events).length, 10, "no replay was delivered");
  // Alice's client is told (error replies to the replayed ids).
  for (const s of [...alice.received, ...bob2.received]) assert.ok(!s.includes("offline secret"), "plaintext relayed");
  await shut(alice, bob2);
  await bobOffline.close();
});
