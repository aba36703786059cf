/**
 * XEP-0187 offline ESessions per device through a real Prosody (PEP + mod_offline, no AMP):
 * Bob has two devices (phone, tablet) that each published their own one-time option sets
 * ('match_resource' = their resource) and are both offline; Alice's own PDA did the same.
 * Alice (laptop, many devices mode) sends three messages: each goes out in one offline
 * session per Bob device, and a sent-by-self copy in an offline session with her PDA.
 * Prosody hands every stored stanza to whichever device of the account logs in first
 * (RFC 6121 8.5.3.2.1); that device reads its own and parks the others, still encrypted, on
 * its owner-only relay node; each other device collects its own on login. Every device
 * reads all three; each device's one-time set was used once and replaced; replays are
 * rejected; nothing relayed carries the plaintext.
 *
 * Spec: XEP-0187 v0.5 sections 3.1 (match_resource), 3.3, 3.4, 5, 6.1; XEP-0160;
 * XEP-0163; XEP-0280 (sent-by-self copy shape); docs/offline-and-devices.md.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { keyVerifier, signingIdentity } from "../../src/client/keys.js";
import type { ClientEvent } from "../../src/client/secure-client.js";
import { bareJid } from "../../src/core/types.js";
import { createIdentityKey } from "../../src/identity/keyfile.js";
import { NODE_SUBSCRIBERS, parseOfflineOptions } from "../../src/offline/codec.js";
import { itemsIq, parseItems } from "../../src/offline/pep.js";
import { MemoryStore } from "../../src/store/memory.js";
import { MemoryOfflineStore } from "../../src/store/offline.js";
import { parseXml, type Element } from "../../src/xml/index.js";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";
import { bodies, shut, side, subscribe, waitFor, type Side } from "./offline-helpers.js";

let server: ProsodyInstance;

before(async () => {
  server = await startProsody({ users: [["alice", "alice-pw"], ["bob", "bob-pw"], ["carol", "carol-pw"]] });
});

after(async () => {
  await server?.stop();
});

const ids = {
  laptop: signingIdentity(createIdentityKey("ed25519", 0)),
  pda: signingIdentity(createIdentityKey("ed25519", 0)),
  phone: signingIdentity(createIdentityKey("ed25519", 0)),
  tablet: signingIdentity(createIdentityKey("ed25519", 0)),
};
const verifier = keyVerifier();
const peerKeys = async (jid: string): Promise<Element[]> =>
  jid !== "alice@localhost" ? [ids.phone.keyValue, ids.tablet.keyValue] : [ids.laptop.keyValue, ids.pda.keyValue];

/** The option items on `owner`'s subscribers node: item id -> match_resource. */
async function optionItems(from: Side, owner: string): Promise<Map<string, string | undefined>> {
  const id = `q${Math.random().toString(36).slice(2)}`;
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no items answer")), 10_000);
    const off = from.conn.onStanza((s) => {
      if (s.name === "iq" && s.attrs.id === id) {
        clearTimeout(t);
        off();
        resolve(new Map(parseItems(s).flatMap((i) => (i.payload ? [[i.id, parseOfflineOptions(i.payload).matchResource] as const] : []))));
      }
    });
    void from.conn.send(itemsIq(id, owner, NODE_SUBSCRIBERS));
  });
}

const relayed = (evs: readonly ClientEvent[], action: "parked" | "dropped"): number => evs.filter((e) => e.type === "offline-relay" && e.action === action).length;
const sentCopies = (evs: readonly ClientEvent[]): string[] => evs.flatMap((e) => (e.type === "sent-copy" && e.body !== undefined ? [e.body] : []));

test("two offline devices of Bob and Alice's own offline PDA each read all three messages; one-time sets used once; replays rejected", { timeout: 120_000 }, async () => {
  const stores = { pda: new MemoryOfflineStore(), phone: new MemoryOfflineStore(), tablet: new MemoryOfflineStore() };
  const opts = (who: keyof typeof ids, offline: MemoryOfflineStore) => ({
    store: new MemoryStore(),
    identity: ids[who],
    verifier,
    offline: { store: offline, count: 3, lifetimeMs: 3_600_000, peerKeys },
    devices: {},
  });
  const laptop = await side(server, "alice", "laptop", opts("laptop", new MemoryOfflineStore()));
  const phone = await side(server, "bob", "phone", opts("phone", stores.phone));
  await subscribe(laptop, phone);
  const tablet = await side(server, "bob", "tablet", opts("tablet", stores.tablet));
  const pda = await side(server, "alice", "pda", opts("pda", stores.pda));
  for (const d of [phone, tablet, pda]) assert.equal(await d.client.publishOfflineOptions(), 3);
  // Each device's sets name it (XEP-0187 'match_resource'), next to the others' on one node.
  const bobItems = await optionItems(laptop, "bob@localhost");
  assert.deepEqual([...bobItems.values()].sort(), ["phone", "phone", "phone", "tablet", "tablet", "tablet"]);
  const aliceItems = await optionItems(laptop, "alice@localhost");
  assert.deepEqual([...aliceItems.values()], ["pda", "pda", "pda"]);
  await shut(phone, tablet, pda);
  await new Promise((r) => setTimeout(r, 300));

  // Alice sends three messages: each to every offline device, plus a self copy to her PDA.
  for (let i = 0; i < 3; i++) {
    const report = await laptop.client.fanoutMessage("bob@localhost", `offline #${i}`);
    const settled = await report.settled;
    const sent = settled.filter((d) => d.state === "sent").map((d) => `${d.device}${d.selfCopy ? " (self)" : ""}`).sort();
    assert.deepEqual(sent, ["alice@localhost/pda (self)", "bob@localhost/phone", "bob@localhost/tablet"], JSON.stringify(settled));
  }
  const wire = laptop.sent.filter((s) => s.name === "message" && s.getChild("c"));
  assert.equal(wire.length, 9);
  const inits = wire.filter((s) => s.getChild("init"));
  assert.equal(inits.length, 3, "one offline start per device");
  // Alice's own PDA is offline: its self copies reached the laptop (bare JID delivery), which parked them.
  await waitFor(laptop, (e) => relayed(e, "parked") === 3, "the PDA's copies parked", server);
  await laptop.client.relayed();
  const usedNonce = (to: string): string => {
    const init = inits.find((s) => s.attrs.to === to);
    assert.ok(init, `an init for ${to}`);
    const v = init.getChild("init")?.getChild("x")?.getChildren("field").find((f) => f.attrs.var === "nonce")?.getChildText("value");
    assert.ok(v);
    return Buffer.from(v, "base64").toString("hex");
  };

  // The phone logs in first: Prosody gives it everything stored for Bob; it reads its three
  // and parks the tablet's three.
  const phone2 = await side(server, "bob", "phone", opts("phone", stores.phone), false);
  assert.equal(await phone2.client.collectOfflineRelays(), 0);
  await phone2.client.announce();
  await waitFor(phone2, (e) => bodies(e).length === 3 && relayed(e, "parked") === 3, "phone: three messages, three parked", server);
  assert.deepEqual(bodies(phone2.events), ["offline #0", "offline #1", "offline #2"]);
  await phone2.client.relayed();
  assert.ok(!phone2.events.some((e) => e.type === "undecryptable"), "the tablet's stanzas were not refused");
  await waitFor(phone2, (e) => e.some((x) => x.type === "offline-options" && x.used === 1), "phone replenished", server);
  await shut(phone2);

  // The tablet collects what the phone parked, before its presence (so Alice's termination
  // on seeing it finds the session), then reads all three.
  const tablet2 = await side(server, "bob", "tablet", opts("tablet", stores.tablet), false);
  assert.equal(await tablet2.client.collectOfflineRelays(), 3);
  await tablet2.client.announce();
  await waitFor(tablet2, (e) => bodies(e).length === 3, "tablet: three messages", server);
  assert.deepEqual(bodies(tablet2.events), ["offline #0", "offline #1", "offline #2"]);
  const est = tablet2.events.find((e) => e.type === "established");
  assert.ok(est && est.type === "established" && est.offline === "receiver" && est.peer === "alice@localhost/laptop");
  await waitFor(tablet2, (e) => e.some((x) => x.type === "offline-options" && x.used === 1), "tablet replenished", server);

  // Alice's PDA collects its self copies from its own account's relay node.
  const pda2 = await side(server, "alice", "pda", opts("pda", stores.pda), false);
  assert.equal(await pda2.client.collectOfflineRelays(), 3);
  await pda2.client.announce();
  await waitFor(pda2, (e) => sentCopies(e).length === 3, "pda: three sent copies", server);
  assert.deepEqual(sentCopies(pda2.events), ["offline #0", "offline #1", "offline #2"]);

  // One-time values: each device's used set is gone from its store and from PEP, replaced.
  for (const [name, store, to] of [["phone", stores.phone, "bob@localhost/phone"], ["tablet", stores.tablet, "bob@localhost/tablet"], ["pda", stores.pda, "alice@localhost/pda"]] as const) {
    const used = usedNonce(to);
    const held = await store.list(bareJid(to as never));
    assert.equal(held.length, 3, `${name} topped up`);
    assert.ok(!held.some((h) => h.id === used), `${name}: its used set was destroyed`);
  }
  await waitFor(pda2, (e) => e.some((x) => x.type === "offline-options" && x.used === 1), "pda replenished", server);
  const bobNow = await optionItems(laptop, "bob@localhost");
  assert.equal(bobNow.size, 6);
  assert.ok(!bobNow.has(usedNonce("bob@localhost/phone")) && !bobNow.has(usedNonce("bob@localhost/tablet")), "the used sets left PEP");

  // Replays to the tablet (online): its start again (its set is gone) and a later message.
  const toTablet = wire.filter((s) => s.attrs.to === "bob@localhost/tablet");
  const before = tablet2.events.length;
  await laptop.conn.send(parseXml(toTablet[0]!.toString()));
  await laptop.conn.send(parseXml(toTablet[2]!.toString()));
  await waitFor(tablet2, (e) => e.slice(before).filter((x) => x.type === "undecryptable" || x.type === "failed").length >= 2, "replays rejected", server);
  assert.equal(bodies(tablet2.events).length, 3, "no replay was delivered");
  for (const s of [...laptop.received, ...phone2.received, ...tablet2.received, ...pda2.received]) assert.ok(!s.includes("offline #"), "plaintext relayed");
  await shut(laptop, tablet2, pda2);
});

test("account-wide sets published the old way are one more device next to per-device sets", { timeout: 90_000 }, async () => {
  const stores = { phone: new MemoryOfflineStore(), legacy: new MemoryOfflineStore() };
  const carolOpts = (who: "phone" | "tablet", store: MemoryOfflineStore, perDevice: boolean) => ({
    store: new MemoryStore(),
    identity: ids[who],
    verifier,
    offline: { store, count: 2, lifetimeMs: 3_600_000, peerKeys, perDevice },
  });
  const alice = await side(server, "alice", "desk", { store: new MemoryStore(), identity: ids.laptop, verifier, offline: { store: new MemoryOfflineStore(), peerKeys } });
  const phone = await side(server, "carol", "phone", carolOpts("phone", stores.phone, true));
  const legacy = await side(server, "carol", "old", carolOpts("tablet", stores.legacy, false));
  await subscribe(alice, phone);
  for (const d of [phone, legacy]) assert.equal(await d.client.publishOfflineOptions(), 2);
  await shut(phone, legacy);
  await new Promise((r) => setTimeout(r, 300));

  const r = await alice.client.startOfflineSessions("carol@localhost", {});
  const peers = r.started.map((e) => e.peer).sort();
  assert.deepEqual(peers, ["carol@localhost", "carol@localhost/phone"], JSON.stringify(r.failed.map((f) => f.device)));
  for (const p of peers) await alice.client.sendMessage(p, `to ${p}`);

  // The old-style device logs in first: it reads the account-wide session and parks the phone's.
  const legacy2 = await side(server, "carol", "old", carolOpts("tablet", stores.legacy, false), false);
  await legacy2.client.announce();
  await waitFor(legacy2, (e) => bodies(e).length === 1 && relayed(e, "parked") === 1, "legacy: one message, one parked", server);
  assert.deepEqual(bodies(legacy2.events), ["to carol@localhost"]);
  await legacy2.client.relayed();
  const phone2 = await side(server, "carol", "phone", carolOpts("phone", stores.phone, true), false);
  assert.equal(await phone2.client.collectOfflineRelays(), 1);
  await phone2.client.announce();
  await waitFor(phone2, (e) => bodies(e).length === 1, "phone: its message", server);
  assert.deepEqual(bodies(phone2.events), ["to carol@localhost/phone"]);
  await shut(alice, legacy2, phone2);
});
