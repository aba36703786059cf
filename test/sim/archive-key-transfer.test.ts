/**
 * The archive key from one device to another over an authenticated Encrypted Session
 * (src/archive/key-transfer.ts), deterministic on the switchboard: two SecureClients of the
 * same bare JID (laptop = holder, phone = new device), a third account, a virtual clock.
 *
 * Spec: XEP-0241 v0.1 section 2 (every client of the user reads the archive), XEP-0200 v0.2
 * section 4 (the payload is encrypted and MACed in the session), XEP-0116 v0.16 section
 * 4.7.2 / 7.3 (the session must be authenticated: SAS confirmed); docs/archive.md
 * "Bringing the key to another device".
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Switchboard, type Relayed } from "../../src/adapters/switchboard.js";
import {
  ArchiveError,
  type ArchiveKey,
  ArchiveKeyRefused,
  newArchiveKey,
  NS_ARCHIVE_KEY,
  type RequestEvent,
  requestArchiveKey,
  type ServeEvent,
  serveArchiveKey,
} from "../../src/archive/index.js";
import { SecureClient } from "../../src/client/secure-client.js";
import { toBase64 } from "../../src/core/bytes.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { type FullJid, parseFullJid } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { MemoryStore } from "../../src/store/memory.js";
import { el } from "../../src/xml/index.js";
import { settleBoard, VirtualTimers } from "./pair.js";

interface Device {
  readonly jid: FullJid;
  readonly client: SecureClient;
  readonly store: MemoryStore;
}

function world(seed: string) {
  const board = new Switchboard();
  const clock = new VirtualClock();
  const timers = new VirtualTimers(clock);
  const relayed: Relayed[] = [];
  board.tap((r) => relayed.push(r));
  const devices: Device[] = [];
  const device = (jid: string): Device => {
    const j = parseFullJid(jid);
    const store = new MemoryStore();
    const client = new SecureClient({ connection: board.connect(j), store, crypto: nodeCrypto, random: new SeededRandom(nodeCrypto, `${seed}/${jid}`), clock, timers });
    const d = { jid: j, client, store };
    devices.push(d);
    return d;
  };
  const settle = (): Promise<void> => settleBoard(board, devices.map((d) => d.client));
  const rnd = new SeededRandom(nodeCrypto, `${seed}/key`);
  const key: ArchiveKey = newArchiveKey(rnd);
  const copy = (): ArchiveKey => ({ name: key.name, key: Uint8Array.from(key.key) });
  return { board, clock, timers, relayed, device, settle, key, copy };
}

/** Both devices compare the SAS and confirm it (XEP-0116 4.7.2). */
async function confirmBoth(a: Device, b: Device): Promise<void> {
  await a.client.confirmSas(b.jid);
  await b.client.confirmSas(a.jid);
}

function noKeyOnWire(relayed: readonly Relayed[], key: ArchiveKey): void {
  const b64 = toBase64(key.key);
  for (const r of relayed) assert.ok(!r.text.includes(b64), "the archive key never crosses the wire in the clear");
}

test("after SAS confirmation the new device obtains the key inside the session; never in the clear", async () => {
  const w = world("ok");
  const laptop = w.device("alice@example.org/laptop");
  const phone = w.device("alice@example.org/phone");
  const served: ServeEvent[] = [];
  const asked: FullJid[] = [];
  const stop = serveArchiveKey(laptop.client, {
    key: async () => w.copy(),
    approve: async (d) => (asked.push(d), true),
    store: laptop.store,
    clock: w.clock,
    onEvent: (e) => served.push(e),
  });
  const est = await phone.client.startSession(laptop.jid);
  await w.settle();
  await confirmBoth(phone, laptop);
  const got = await requestArchiveKey(phone.client, laptop.jid, { established: est, store: phone.store, clock: w.clock, random: new SeededRandom(nodeCrypto, "req") });
  assert.equal(got.name, w.key.name);
  assert.deepEqual([...got.key], [...w.key.key]);
  assert.deepEqual(asked, [phone.jid]);
  assert.deepEqual(
    served.map((e) => e.type),
    ["request", "sent"],
  );
  // The payloads went inside <c/>: no <request/> or <key/> of ours is visible on the wire.
  for (const r of w.relayed) assert.ok(!r.text.includes(NS_ARCHIVE_KEY), "payloads only inside the encrypted content");
  noKeyOnWire(w.relayed, w.key);
  stop();
});

test("the requester lets requestArchiveKey start the session, then is refused until the SAS is confirmed", async () => {
  const w = world("unauth");
  const laptop = w.device("alice@example.org/laptop");
  const phone = w.device("alice@example.org/phone");
  const served: ServeEvent[] = [];
  let approvals = 0;
  serveArchiveKey(laptop.client, { key: async () => w.copy(), approve: async () => (approvals++, true), store: laptop.store, clock: w.clock, onEvent: (e) => served.push(e) });
  // Default rule on the requester: a fresh session whose SAS nobody compared is refused locally.
  await assert.rejects(
    requestArchiveKey(phone.client, laptop.jid, { store: phone.store, clock: w.clock }),
    (e: unknown) => e instanceof ArchiveError && e.condition === "not-authenticated" && !e.message.includes(toBase64(w.key.key)),
  );
  await w.settle();
  assert.equal(served.length, 0, "nothing was asked in an unauthenticated session");
  // A requester that skips its own check still gets no key: the holder refuses.
  await assert.rejects(
    requestArchiveKey(phone.client, laptop.jid, { isAuthenticated: () => true, clock: w.clock }),
    (e: unknown) => e instanceof ArchiveKeyRefused && e.reason === "not-authenticated" && e.condition === "refused",
  );
  assert.equal(approvals, 0, "the user is not even asked");
  assert.deepEqual(
    served.map((e) => (e.type === "refused" ? e.reason : e.type)),
    ["request", "not-authenticated"],
  );
  noKeyOnWire(w.relayed, w.key);
});

test("refused when the user declines, and when the holder has no key", async () => {
  const w = world("declined");
  const laptop = w.device("alice@example.org/laptop");
  const phone = w.device("alice@example.org/phone");
  let answer = false;
  let have = true;
  serveArchiveKey(laptop.client, { key: async () => (have ? w.copy() : undefined), approve: async () => answer, store: laptop.store, clock: w.clock });
  const est = await phone.client.startSession(laptop.jid);
  await w.settle();
  await confirmBoth(phone, laptop);
  const o = { established: est, store: phone.store, clock: w.clock };
  await assert.rejects(requestArchiveKey(phone.client, laptop.jid, o), (e: unknown) => e instanceof ArchiveKeyRefused && e.reason === "declined");
  answer = true;
  have = false;
  await assert.rejects(requestArchiveKey(phone.client, laptop.jid, o), (e: unknown) => e instanceof ArchiveKeyRefused && e.reason === "no-key");
  have = true;
  assert.equal((await requestArchiveKey(phone.client, laptop.jid, o)).name, w.key.name);
  noKeyOnWire(w.relayed, w.key);
});

test("another account never gets the key, even in an authenticated session", async () => {
  const w = world("other");
  const laptop = w.device("alice@example.org/laptop");
  const mallory = w.device("mallory@example.org/laptop");
  let approvals = 0;
  serveArchiveKey(laptop.client, { key: async () => w.copy(), approve: async () => (approvals++, true), isAuthenticated: () => true, clock: w.clock });
  // requestArchiveKey itself only asks devices of its own account.
  await assert.rejects(requestArchiveKey(mallory.client, laptop.jid, { isAuthenticated: () => true }), (e: unknown) => e instanceof ArchiveError && e.condition === "not-authenticated");
  await mallory.client.startSession(laptop.jid);
  await w.settle();
  await confirmBoth(mallory, laptop);
  const answers: string[] = [];
  mallory.client.on((e) => {
    if (e.type !== "message") return;
    for (const c of e.stanza.getChildren("key", NS_ARCHIVE_KEY)) answers.push(`key:${c.getText()}`);
    for (const c of e.stanza.getChildren("refused", NS_ARCHIVE_KEY)) answers.push(`refused:${String(c.attrs.reason)}`);
  });
  await mallory.client.send(laptop.jid, el("message", { type: "normal" }, el("request", { xmlns: NS_ARCHIVE_KEY, id: "m1" })));
  await w.settle();
  assert.deepEqual(answers, ["refused:not-own-account"]);
  assert.equal(approvals, 0);
  noKeyOnWire(w.relayed, w.key);
});

test("unsolicited keys (wrong id, another device, outside the session) are ignored and reported", async () => {
  const w = world("unsolicited");
  const laptop = w.device("alice@example.org/laptop");
  const phone = w.device("alice@example.org/phone");
  const tablet = w.device("alice@example.org/tablet");
  const evil = w.board.connect(parseFullJid("alice@example.org/evil"));
  const planted = newArchiveKey(new SeededRandom(nodeCrypto, "planted"));
  const plantedKey = (id: string) => el("message", { type: "normal" }, el("key", { xmlns: NS_ARCHIVE_KEY, id, name: planted.name }, toBase64(planted.key)));
  let release: (ok: boolean) => void = () => undefined;
  const approved = new Promise<boolean>((r) => (release = r));
  serveArchiveKey(laptop.client, { key: async () => w.copy(), approve: () => approved, store: laptop.store, clock: w.clock });
  const est = await phone.client.startSession(laptop.jid);
  await w.settle();
  await confirmBoth(phone, laptop);
  await tablet.client.startSession(phone.jid);
  await w.settle();
  const events: RequestEvent[] = [];
  // An unsolicited key before any request is simply a message nobody asked for.
  await laptop.client.send(phone.jid, plantedKey("early"));
  await w.settle();
  const pending = requestArchiveKey(phone.client, laptop.jid, {
    established: est,
    store: phone.store,
    clock: w.clock,
    random: new SeededRandom(nodeCrypto, "req"),
    onEvent: (e) => events.push(e),
  });
  await w.settle();
  // While the holder's user is asked: a key with another id from the holder, a key with a
  // guessed id from another device, and one in a plain message.
  await laptop.client.send(phone.jid, plantedKey("0123456789abcdef"));
  await tablet.client.send(phone.jid, plantedKey("0123456789abcdef"));
  await evil.send(plantedKey("0123456789abcdef").attr("to", phone.jid));
  await w.settle();
  assert.deepEqual(
    events.map((e) => `${e.kind}:${e.reason}`),
    ["key:wrong-id", "key:other-device", "key:not-encrypted"],
  );
  release(true);
  const got = await pending;
  assert.equal(got.name, w.key.name, "only the holder's answer to our own request is taken");
  assert.notEqual(got.name, planted.name);
});

test("a request outside an Encrypted Session (plain message) is never answered", async () => {
  const w = world("plain");
  const laptop = w.device("alice@example.org/laptop");
  const served: ServeEvent[] = [];
  let approvals = 0;
  serveArchiveKey(laptop.client, { key: async () => w.copy(), approve: async () => (approvals++, true), isAuthenticated: () => true, clock: w.clock, onEvent: (e) => served.push(e) });
  const evilJid = parseFullJid("alice@example.org/evil");
  const evil = w.board.connect(evilJid);
  const got: string[] = [];
  evil.onStanza((s) => got.push(s.toString()));
  await evil.send(el("message", { to: laptop.jid, type: "normal" }, el("request", { xmlns: NS_ARCHIVE_KEY, id: "p1" })));
  await w.settle();
  assert.deepEqual(served, [{ type: "ignored", peer: evilJid, reason: "not-encrypted" }]);
  assert.equal(approvals, 0);
  assert.ok(!got.some((t) => t.includes(NS_ARCHIVE_KEY)), "no answer at all");
  noKeyOnWire(w.relayed, w.key);
});

test("no answer: the request times out (virtual timers)", async () => {
  const w = world("timeout");
  const laptop = w.device("alice@example.org/laptop");
  const phone = w.device("alice@example.org/phone");
  const est = await phone.client.startSession(laptop.jid);
  await w.settle();
  await confirmBoth(phone, laptop);
  const timers = new VirtualTimers(w.clock);
  const pending = requestArchiveKey(phone.client, laptop.jid, { established: est, store: phone.store, clock: w.clock, timers, timeoutMs: 30_000 });
  let settled = false;
  const outcome = pending.then(
    () => "resolved",
    (e: unknown) => (e instanceof ArchiveError ? e.condition : "other"),
  ).finally(() => (settled = true));
  await w.settle();
  w.clock.advance(29_999);
  timers.fire();
  await w.settle();
  assert.equal(settled, false, "still waiting before the timeout");
  w.clock.advance(1);
  timers.fire();
  assert.equal(await outcome, "timeout");
});

test("a SAS confirmed in an earlier session is not enough, even when this session continues its retained-secret chain: this session's SAS must be compared", async () => {
  const w = world("chain");
  const laptop = w.device("alice@example.org/laptop");
  const phone = w.device("alice@example.org/phone");
  const served: ServeEvent[] = [];
  serveArchiveKey(laptop.client, { key: async () => w.copy(), approve: async () => true, store: laptop.store, clock: w.clock, onEvent: (e) => served.push(e) });
  // First session: SAS compared and confirmed, then ended.
  await phone.client.startSession(laptop.jid);
  await w.settle();
  await confirmBoth(phone, laptop);
  await phone.client.terminate(laptop.jid);
  await w.settle();
  // Second session: continues the chain (retained secret matched, SAS confirmed before),
  // which is enough to chat but not to hand over the archive key.
  w.clock.advance(1_000);
  const est = await phone.client.startSession(laptop.jid);
  await w.settle();
  assert.ok(est.retainedSecretMatched && est.sasConfirmedBefore, "the second session continues the confirmed chain");
  await assert.rejects(
    requestArchiveKey(phone.client, laptop.jid, { established: est, store: phone.store, clock: w.clock }),
    (e: unknown) => e instanceof ArchiveError && e.condition === "not-authenticated",
  );
  await assert.rejects(
    requestArchiveKey(phone.client, laptop.jid, { established: est, isAuthenticated: () => true, clock: w.clock }),
    (e: unknown) => e instanceof ArchiveKeyRefused && e.reason === "not-authenticated",
  );
  // Comparing this session's SAS now is enough.
  w.clock.advance(1_000);
  await confirmBoth(phone, laptop);
  const got = await requestArchiveKey(phone.client, laptop.jid, { established: est, store: phone.store, clock: w.clock, random: new SeededRandom(nodeCrypto, "chain-req") });
  assert.deepEqual([...got.key], [...w.key.key]);
  noKeyOnWire(w.relayed, w.key);
});
