/**
 * Many devices on the switchboard, with deterministic timing (virtual clock and timers):
 * Alice with two devices, Bob with two devices and a fifth, stale Bob device (connected,
 * advertises ESessions, answers disco#info, never answers a negotiation). Every fan-out
 * reaches all four live devices decryptably (Alice's second device through Alice's own
 * session with it, as a sent-by-self copy); the stale device delays nothing, times out on
 * its own deadline, is then skipped and finally expires. A carbons emulation (XEP-0280
 * rules as Prosody applies them) shows that no encrypted stanza is ever carbon-copied;
 * plaintext, encrypted and spoofed carbons produce their typed events.
 *
 * Spec: XEP-0280 v1.0 sections 6, 7, 11; XEP-0334 v0.3 section 4; XEP-0115 v1.6.0 6.2;
 * XEP-0201/XEP-0217 (one session per device pair); RFC 6121 section 4 (presence);
 * docs/offline-and-devices.md "Many devices".
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Switchboard, type Relayed } from "../../src/adapters/switchboard.js";
import type { StanzaConnection } from "../../src/adapters/connection.js";
import { CAPS_NODE, type ClientEvent, SecureClient, type SecureClientOptions } from "../../src/client/secure-client.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { bareJid, type FullJid, type Jid, parseFullJid } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { NS_CARBONS, NS_FORWARD } from "../../src/devices/codec.js";
import { DeviceRegistry } from "../../src/devices/registry.js";
import { DiscoResponder } from "../../src/disco/responder.js";
import { MemoryStore } from "../../src/store/memory.js";
import { el, NS, type Element } from "../../src/xml/index.js";
import { VirtualTimers } from "./pair.js";

interface Device {
  readonly jid: FullJid;
  readonly c: SecureClient;
  readonly conn: StanzaConnection;
  readonly events: ClientEvent[];
}

const bodies = (d: Device): string[] => d.events.flatMap((e) => (e.type === "message" && e.body !== undefined ? [e.body] : []));
const copies = (d: Device): string[] => d.events.flatMap((e) => (e.type === "sent-copy" && e.body !== undefined ? [`${e.to}:${e.body}`] : []));

/**
 * XEP-0280 as a server applies it (Prosody's mod_carbons rules): a chat message (or a
 * normal one with a body) without <private/> or <no-copy/> is copied, wrapped in
 * <sent/> to the sender's other resources and in <received/> to the recipient's other
 * resources, from the account's bare JID.
 */
function emulateCarbons(board: Switchboard): { carbons: Element[] } {
  const carbons: Element[] = [];
  board.tap((r: Relayed) => {
    const s = r.stanza;
    if (r.injected || s.name !== "message") return;
    const type = s.attrs.type ?? "normal";
    if (!(type === "chat" || (type === "normal" && s.getChild("body")))) return;
    if (s.getChild("private", NS_CARBONS) || s.getChild("no-copy", NS.hints)) return;
    const wrap = (direction: "sent" | "received", to: FullJid): Element => {
      const copy = el("message", { xmlns: NS.client, ...(s.attrs as Record<string, string>) }, ...s.children);
      return el("message", { type: String(type), to }, el(direction, { xmlns: NS_CARBONS }, el("forwarded", { xmlns: NS_FORWARD }, copy)));
    };
    const from = String(s.attrs.from);
    for (const party of board.connected()) {
      if (party === from || party === r.to) continue;
      if (bareJid(party) === bareJid(from as Jid)) {
        const c = wrap("sent", party);
        carbons.push(c);
        board.inject(bareJid(from as Jid), c);
      } else if (bareJid(party) === bareJid(r.to)) {
        const c = wrap("received", party);
        carbons.push(c);
        board.inject(bareJid(r.to), c);
      }
    }
  });
  return { carbons };
}

function setup(extra: Partial<SecureClientOptions> = {}) {
  const board = new Switchboard();
  const clock = new VirtualClock();
  const timers = new VirtualTimers(clock);
  const carbons = emulateCarbons(board);
  const relayed: Relayed[] = [];
  board.tap((r) => relayed.push(r));
  const devices: Device[] = [];
  const mk = (jid: string): Device => {
    const full = parseFullJid(jid);
    const conn = board.connect(full);
    const c = new SecureClient({
      connection: conn,
      store: new MemoryStore(),
      crypto: nodeCrypto,
      random: new SeededRandom(nodeCrypto, jid),
      clock,
      timers,
      devices: { negotiationTimeoutMs: 10_000, staleAfterMs: 3_600_000, retryAfterMs: 600_000 },
      ...extra,
    });
    const d: Device = { jid: full, c, conn, events: [] };
    c.on((e) => d.events.push(e));
    devices.push(d);
    return d;
  };
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 400; i++) {
      await board.idle();
      for (const d of devices) await d.c.settled();
      await new Promise((r) => setImmediate(r));
      if (board.pending().length === 0) {
        for (const d of devices) await d.c.settled();
        await new Promise((r) => setImmediate(r));
        if (board.pending().length === 0) return;
      }
    }
    throw new Error("no quiescence");
  };
  /** Moves virtual time on and runs every timer that is due. */
  const advance = async (ms: number): Promise<void> => {
    clock.advance(ms);
    timers.fire();
    await settle();
  };
  return { board, clock, timers, carbons, relayed, mk, settle, advance };
}

/** A device that is connected, advertises ESessions and answers disco#info, but never answers a negotiation. */
function zombie(board: Switchboard, jid: string): { conn: StanzaConnection; got: Element[] } {
  const full = parseFullJid(jid);
  const conn = board.connect(full);
  const disco = new DiscoResponder({ jid: full, crypto: nodeCrypto, capsNode: CAPS_NODE });
  const got: Element[] = [];
  conn.onStanza((s) => {
    got.push(s);
    if (disco.handleStanza(s) === "handled") for (const o of disco.drain()) if (o.kind === "send") void conn.send(o.stanza);
  });
  void conn.send(el("presence", {}, disco.caps()));
  return { conn, got };
}

test("2 + 2 devices and a silent fifth: every message reaches the four live devices at once, the fifth times out alone, then is skipped and expires", async () => {
  const w = setup();
  const alicePda = w.mk("alice@example.org/pda");
  const alicePhone = w.mk("alice@example.org/phone");
  const bobLaptop = w.mk("bob@example.com/laptop");
  const bobPhone = w.mk("bob@example.com/phone");
  const stale = zombie(w.board, "bob@example.com/zombie");
  for (const d of [alicePda, alicePhone, bobLaptop, bobPhone]) await d.c.announce();
  await w.settle();

  // Discovery: presence + caps (verified once per 'ver') + XEP-0116 feature.
  const seen = alicePda.c.devices("bob@example.com").map((d) => `${d.jid}:${d.online}:${d.esession}`).sort();
  assert.deepEqual(seen, ["bob@example.com/laptop:true:yes", "bob@example.com/phone:true:yes", "bob@example.com/zombie:true:yes"]);
  assert.deepEqual(
    alicePda.c.devices("alice@example.org").map((d) => [d.jid, d.own]),
    [["alice@example.org/phone", true]],
  );
  // The switchboard answers the carbons enable with an error: reported, not fatal.
  assert.ok(alicePda.events.some((e) => e.type === "carbons" && !e.enabled));

  const r1 = await alicePda.c.fanoutMessage("bob@example.com", "m1");
  assert.deepEqual([...r1.queued].sort(), ["alice@example.org/phone", "bob@example.com/laptop", "bob@example.com/phone", "bob@example.com/zombie"]);
  let settled1: readonly unknown[] | undefined;
  void r1.settled.then((x) => (settled1 = x));
  await w.settle();
  // The live devices have it, without any time passing; the zombie is still pending.
  assert.deepEqual(bodies(bobLaptop), ["m1"]);
  assert.deepEqual(bodies(bobPhone), ["m1"]);
  assert.deepEqual(copies(alicePhone), ["bob@example.com:m1"]);
  assert.deepEqual(bodies(alicePhone), [], "Alice's own message is a sent-by-self copy, not a message from a peer");
  assert.equal(settled1, undefined, "the zombie's copy is still waiting for its negotiation");

  // A second message while the zombie still negotiates: the live copies leave at once.
  const r2 = await alicePda.c.fanoutMessage("bob@example.com", "m2");
  assert.deepEqual([...r2.sent].sort(), ["alice@example.org/phone", "bob@example.com/laptop", "bob@example.com/phone"]);
  assert.deepEqual(r2.queued, ["bob@example.com/zombie"]);
  await w.settle();
  assert.deepEqual(bodies(bobLaptop), ["m1", "m2"]);
  assert.deepEqual(bodies(bobPhone), ["m1", "m2"]);
  assert.deepEqual(copies(alicePhone), ["bob@example.com:m1", "bob@example.com:m2"]);

  // The zombie's own deadline passes: only its copies are reported.
  await w.advance(10_000);
  const d1 = await r1.settled;
  const d2 = await r2.settled;
  for (const all of [d1, d2]) {
    assert.equal(all.length, 4);
    assert.deepEqual(
      all.filter((d) => d.state === "undelivered").map((d) => [d.device, d.reason]),
      [["bob@example.com/zombie", "timeout"]],
    );
  }
  assert.ok(alicePda.events.some((e) => e.type === "device" && e.change === "unresponsive" && e.device.jid === "bob@example.com/zombie"));
  // Then it is skipped while unresponsive: nothing waits for it.
  const r3 = await alicePda.c.fanoutMessage("bob@example.com", "m3");
  assert.deepEqual(r3.queued, []);
  assert.deepEqual(r3.skipped, [{ device: "bob@example.com/zombie", reason: "unresponsive" }]);
  assert.equal((await r3.settled).filter((d) => d.state === "sent").length, 3);
  await w.settle();

  // Bob answers from his phone: Alice's two devices get it, his laptop gets a sent-by-self copy.
  // (The zombie is one of Bob's own devices: his sent-by-self copy for it waits on its own deadline.)
  const r4 = await bobPhone.c.fanoutMessage("alice@example.org", "reply");
  await w.settle();
  assert.deepEqual(bodies(alicePda), ["reply"]);
  assert.deepEqual(bodies(alicePhone), ["reply"]);
  assert.deepEqual(copies(bobLaptop), ["alice@example.org:reply"]);
  assert.deepEqual(bodies(bobLaptop), ["m1", "m2", "m3"]);
  assert.deepEqual(bodies(bobPhone), ["m1", "m2", "m3"]);
  await w.advance(10_000);
  assert.deepEqual(
    (await r4.settled).map((d) => [d.device, d.state, d.selfCopy]).sort(),
    [
      ["alice@example.org/pda", "sent", false],
      ["alice@example.org/phone", "sent", false],
      ["bob@example.com/laptop", "sent", true],
      ["bob@example.com/zombie", "undelivered", true],
    ],
  );

  // No encrypted stanza was ever carbon-copied; every one carried the hints.
  assert.equal(w.carbons.carbons.filter((c) => c.toString().includes(NS.c)).length, 0);
  const encrypted = w.relayed.filter((r) => r.stanza.name === "message" && r.stanza.getChild("c", NS.c));
  assert.ok(encrypted.length >= 12, `${encrypted.length} encrypted messages`);
  for (const r of encrypted) {
    assert.ok(r.stanza.getChild("private", NS_CARBONS) && r.stanza.getChild("no-copy", NS.hints), "hints on every encrypted message");
    // Logging negotiated 'mustnot' (the default): no storage at all for live sessions.
    assert.ok(r.stanza.getChild("no-store", NS.hints) && r.stanza.getChild("no-permanent-store", NS.hints));
  }
  for (const r of w.relayed) assert.ok(!/>(m\d|reply)</.test(r.text) || !r.text.includes(NS.c), "no plaintext next to <c/>");
  assert.ok(!w.relayed.some((r) => />(m\d|reply)</.test(r.text)), "no plaintext on the wire");
  assert.equal(stale.got.filter((s) => s.getChild("c", NS.c)).length, 0, "the zombie got requests only");

  // Bob's laptop leaves: Alice's devices drop its live session at once.
  await bobLaptop.c.close();
  await bobLaptop.conn.close();
  await w.settle();
  assert.ok(alicePda.events.some((e) => e.type === "device" && e.change === "offline" && e.device.jid === "bob@example.com/laptop"));
  assert.equal(alicePda.c.session("bob@example.com/laptop"), undefined);
  const r5 = await alicePda.c.fanoutMessage("bob@example.com", "m5");
  assert.deepEqual([...r5.sent].sort(), ["alice@example.org/phone", "bob@example.com/phone"]);
  await w.settle();
  assert.deepEqual(bodies(bobPhone), ["m1", "m2", "m3", "m5"]);

  // An hour later the offline laptop and the unresponsive zombie expire; live devices stay.
  await w.advance(3_600_000);
  const expired = alicePda.events.flatMap((e) => (e.type === "device" && e.change === "expired" ? [e.device.jid] : [])).sort();
  assert.deepEqual(expired, ["bob@example.com/laptop", "bob@example.com/zombie"]);
  assert.deepEqual(alicePda.c.devices("bob@example.com").map((d) => d.jid), ["bob@example.com/phone"]);
  for (const d of [alicePda, alicePhone, bobPhone]) await d.c.close();
});

test("a device still listed after it vanished (its unavailable presence was lost) fails alone; the others get the message", async () => {
  const w = setup();
  const alice = w.mk("alice@example.org/pda");
  const bob = w.mk("bob@example.com/laptop");
  const gone = w.mk("bob@example.com/old");
  for (const d of [alice, bob, gone]) await d.c.announce();
  await w.settle();
  // bob/old disappears; the server's unavailable presence never reaches Alice.
  w.board.setAdversary((i) => (i.stanza.name === "presence" && i.stanza.attrs.type === "unavailable" ? { action: "drop" } : { action: "deliver" }));
  await gone.conn.close();
  await w.settle();
  assert.ok(alice.c.devices("bob@example.com").find((d) => d.jid === "bob@example.com/old")?.online);
  const r = await alice.c.fanoutMessage("bob@example.com", "hello");
  await w.settle();
  const all = await r.settled;
  assert.deepEqual(bodies(bob), ["hello"]);
  assert.deepEqual(
    all.map((d) => [d.device, d.state]).sort(),
    [
      ["bob@example.com/laptop", "sent"],
      ["bob@example.com/old", "undelivered"],
    ],
  );
  for (const d of [alice, bob]) await d.c.close();
});

test("server carbons: plaintext ones are shown as unprotected, encrypted ones are reported, spoofed ones are refused", async () => {
  const w = setup();
  const pda = w.mk("alice@example.org/pda");
  const phone = w.mk("alice@example.org/phone");
  const bob = w.mk("bob@example.com/laptop");
  for (const d of [pda, phone, bob]) await d.c.announce();
  await w.settle();
  // A plaintext message from Alice's pda (not through an ESession): the phone sees a sent carbon.
  await pda.conn.send(el("message", { to: "bob@example.com/laptop", type: "chat" }, el("body", {}, "in the clear")));
  await w.settle();
  const carbon = phone.events.find((e) => e.type === "carbon");
  assert.ok(carbon && carbon.type === "carbon");
  assert.equal(carbon.direction, "sent");
  assert.equal(carbon.peer, "bob@example.com/laptop");
  assert.equal(carbon.body, "in the clear");
  assert.equal(carbon.protected, false);
  assert.ok(bob.events.some((e) => e.type === "unprotected"));

  // An encrypted stanza copied by a server that ignored the hints: reported, never silent.
  const legacy = el("message", { from: "bob@example.com/laptop", to: "alice@example.org/pda", type: "chat", id: "x1" }, el("c", { xmlns: NS.c }, el("data", {}, "AAAA")));
  w.board.inject(
    "alice@example.org" as Jid,
    el("message", { to: "alice@example.org/phone", type: "chat" }, el("received", { xmlns: NS_CARBONS }, el("forwarded", { xmlns: NS_FORWARD }, legacy))),
  );
  // Spoofed: a carbon from someone else's account (XEP-0280 section 11).
  w.board.inject(
    "mallory@evil.example/x" as Jid,
    el("message", { to: "alice@example.org/phone", type: "chat" }, el("sent", { xmlns: NS_CARBONS }, el("forwarded", { xmlns: NS_FORWARD }, el("message", { to: "bob@example.com", type: "chat" }, el("body", {}, "fake"))))),
  );
  w.board.inject(
    "bob@example.com" as Jid,
    el("message", { to: "alice@example.org/phone", type: "chat" }, el("received", { xmlns: NS_CARBONS }, el("forwarded", { xmlns: NS_FORWARD }, el("message", { type: "chat" }, el("body", {}, "fake2"))))),
  );
  await w.settle();
  const und = phone.events.find((e) => e.type === "carbon-undecryptable");
  assert.ok(und && und.type === "carbon-undecryptable" && und.id === "x1" && und.direction === "received" && und.peer === "bob@example.com/laptop");
  const rejected = phone.events.flatMap((e) => (e.type === "carbon-rejected" ? [`${e.from}:${e.reason}`] : []));
  assert.deepEqual(rejected, ["mallory@evil.example/x:not-own-account", "bob@example.com:not-own-account"]);
  assert.ok(!phone.events.some((e) => (e.type === "carbon" && e.body?.startsWith("fake")) || (e.type === "message" && e.body?.startsWith("fake"))));

  // A carbon wrapper inside a session with someone else's device is refused too.
  await bob.c.startSession("alice@example.org/phone");
  await w.settle();
  await bob.c.send("alice@example.org/phone", el("message", { type: "chat" }, el("sent", { xmlns: NS_CARBONS }, el("forwarded", { xmlns: NS_FORWARD }, el("message", { to: "carol@example.net" }, el("body", {}, "forged"))))));
  await w.settle();
  assert.ok(phone.events.some((e) => e.type === "carbon-rejected" && e.reason === "inside-foreign-session" && e.from === "bob@example.com/laptop"));
  assert.ok(!phone.events.some((e) => e.type === "sent-copy"));
  for (const d of [pda, phone, bob]) await d.c.close();
});

test("glare: two of Alice's devices fan out at the same moment; one self-session results and both copies arrive", async () => {
  const w = setup();
  const pda = w.mk("alice@example.org/pda");
  const phone = w.mk("alice@example.org/phone");
  const bob = w.mk("bob@example.com/laptop");
  for (const d of [pda, phone, bob]) await d.c.announce();
  await w.settle();
  const [a, b] = await Promise.all([pda.c.fanoutMessage("bob@example.com", "from pda"), phone.c.fanoutMessage("bob@example.com", "from phone")]);
  await w.settle();
  assert.ok((await a.settled).every((d) => d.state === "sent"));
  assert.ok((await b.settled).every((d) => d.state === "sent"));
  assert.deepEqual(copies(phone), ["bob@example.com:from pda"]);
  assert.deepEqual(copies(pda), ["bob@example.com:from phone"]);
  assert.deepEqual(bodies(bob).sort(), ["from pda", "from phone"]);
  assert.equal(pda.c.session("alice@example.org/phone")?.thread, phone.c.session("alice@example.org/pda")?.thread, "one session between the two devices");
  for (const d of [pda, phone, bob]) await d.c.close();
});

test("registry: caps cached only when 'ver' verifies; offline options name devices; entries expire only when dormant", () => {
  const clock = new VirtualClock();
  const self = parseFullJid("alice@example.org/pda");
  const reg = new DeviceRegistry({ self, clock, crypto: nodeCrypto, staleAfterMs: 1000, retryAfterMs: 500 });
  const real = new DiscoResponder({ jid: parseFullJid("bob@example.com/a"), crypto: nodeCrypto, capsNode: CAPS_NODE });
  const presence = (from: string, caps?: Element, type?: string) => el("presence", { from, ...(type ? { type } : {}) }, caps);
  const queries = () => reg.drain().flatMap((o) => (o.kind === "event" && o.event.type === "query" ? [`${o.event.jid} ${o.event.node ?? "-"}`] : []));

  reg.presence(presence("bob@example.com/a", real.caps()));
  assert.deepEqual(queries(), [`bob@example.com/a ${real.node}`]);
  // A lying answer (features that do not hash to 'ver'): used for this device, not cached.
  reg.discoResult("bob@example.com/a", real.node, { identities: real.info.identities, features: [NS.esession], forms: [] });
  assert.equal(reg.get("bob@example.com/a")?.esession, "yes");
  reg.presence(presence("bob@example.com/b", real.caps()));
  assert.deepEqual(queries(), [`bob@example.com/b ${real.node}`], "not cached: asked again");
  reg.discoResult("bob@example.com/b", real.node, real.info);
  reg.presence(presence("bob@example.com/c", real.caps()));
  assert.deepEqual(queries(), [], "verified 'ver' cached");
  assert.equal(reg.get("bob@example.com/c")?.esession, "yes");
  // No caps: plain disco#info; an error answer means no ESessions.
  reg.presence(presence("bob@example.com/plain"));
  assert.deepEqual(queries(), ["bob@example.com/plain -"]);
  reg.discoResult("bob@example.com/plain", undefined, undefined);
  assert.equal(reg.get("bob@example.com/plain")?.esession, "no");
  assert.deepEqual(reg.targets("bob@example.com").map((d) => d.jid).sort(), ["bob@example.com/a", "bob@example.com/b", "bob@example.com/c"]);
  // Our own presence and bare-JID presence are not devices.
  reg.presence(presence(self));
  reg.presence(presence("bob@example.com"));
  assert.equal(reg.list().length, 4);

  // XEP-0187 options naming a resource add that device, offline.
  reg.offlineOptions("bob@example.com", ["tablet", undefined]);
  assert.ok(reg.hasOfflineOptions("bob@example.com"));
  assert.deepEqual(reg.get("bob@example.com/tablet") && [reg.get("bob@example.com/tablet")?.online, reg.get("bob@example.com/tablet")?.offlineOptions], [false, true]);

  // Expiry: offline (tablet, and b after it leaves) and failed (c) entries go; online ones stay.
  reg.presence(presence("bob@example.com/b", undefined, "unavailable"));
  reg.unresponsive("bob@example.com/c");
  assert.ok(!reg.targets("bob@example.com").some((d) => d.jid === "bob@example.com/c"), "skipped while unresponsive");
  reg.drain();
  clock.advance(600);
  reg.onTimer(clock.now());
  assert.ok(reg.targets("bob@example.com").some((d) => d.jid === "bob@example.com/c"), "tried again after retryAfterMs");
  clock.advance(400);
  assert.equal(reg.nextDeadline(), clock.now());
  reg.onTimer(clock.now());
  const expired = reg.drain().flatMap((o) => (o.kind === "event" && o.event.type === "device" && o.event.change === "expired" ? [o.event.device.jid] : []));
  assert.deepEqual(expired.sort(), ["bob@example.com/b", "bob@example.com/c", "bob@example.com/tablet"]);
  assert.deepEqual(reg.list().map((d) => d.jid).sort(), ["bob@example.com/a", "bob@example.com/plain"]);
});
