/**
 * Unit tests for the in-memory switchboard (src/adapters/switchboard.ts).
 *
 * Spec: RFC 6120 section 8.1.2.1 ('from' stamping), section 10.5.3.1 and 8.3.3.19
 * (<service-unavailable/> for an unknown recipient), section 8.3.1 (no error in reply to
 * an error), RFC 6121 section 4.2/4.5 (presence broadcast, unavailable on session end).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseFullJid, type FullJid } from "../../src/core/types.js";
import { el, NS, serialize, type Element } from "../../src/xml/index.js";
import { AdapterError, attrOf, type StanzaConnection } from "../../src/adapters/connection.js";
import { Switchboard, type InFlight, type Relayed } from "../../src/adapters/switchboard.js";

const ALICE = parseFullJid("alice@example.org/phone");
const ALICE2 = parseFullJid("alice@example.org/laptop");
const BOB = parseFullJid("bob@example.org/desk");

function inbox(c: StanzaConnection): Element[] {
  const got: Element[] = [];
  c.onStanza((s) => got.push(s));
  return got;
}

function msg(to: string, body: string, extra: Record<string, string> = {}): Element {
  return el("message", { to, type: "chat", ...extra }, el("body", {}, body));
}

function errorCondition(s: Element): string | undefined {
  const e = s.getChild("error");
  const c = e?.children.find((x): x is Element => typeof x !== "string" && x.attrs["xmlns"] === NS.stanzas);
  return c?.name;
}

/** Lets the microtask that hands over a pre-subscription backlog run. */
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test("routes by full JID, stamps from, sets jabber:client, delivers copies", () => {
  const sb = new Switchboard({ mode: "manual" });
  const a = sb.connect(ALICE);
  const b = sb.connect(BOB);
  const b1 = inbox(b);
  const b2: Element[] = [];
  b.onStanza((s) => b2.push(s));
  const out = msg(BOB, "hi", { from: "mallory@evil/x" });
  void a.send(out);
  assert.equal(sb.flush(), 1);
  assert.equal(b1.length, 1);
  const got = b1[0]!;
  assert.equal(got.attrs["from"], ALICE, "from is stamped with the sender's full JID");
  assert.equal(got.attrs["xmlns"], NS.client);
  assert.equal(got.getChildText("body"), "hi");
  // the sender's object was not touched and nothing is shared
  assert.equal(out.attrs["from"], "mallory@evil/x");
  assert.notEqual(got, out);
  assert.notEqual(b2[0], got, "each handler gets its own copy");
  got.getChild("body")!.children = ["changed"];
  assert.equal(b2[0]!.getChildText("body"), "hi");
  assert.equal(out.getChildText("body"), "hi");
});

test("a bare JID reaches the first connected resource; a full JID only that resource", () => {
  const sb = new Switchboard({ mode: "manual" });
  const a1 = inbox(sb.connect(ALICE));
  const a2 = inbox(sb.connect(ALICE2));
  const b = sb.connect(BOB);
  void b.send(msg("alice@example.org", "to bare"));
  void b.send(msg(ALICE2, "to laptop"));
  sb.flush();
  assert.deepEqual(a1.map((s) => s.getChildText("body")), ["to bare"]);
  assert.deepEqual(a2.map((s) => s.getChildText("body")), ["to laptop"]);
  assert.equal(a1[0]!.attrs["to"], "alice@example.org", "'to' is kept as addressed");
});

test("service-unavailable for message and iq to an unknown JID; presence and errors are dropped", () => {
  const sb = new Switchboard({ mode: "manual" });
  const a = sb.connect(ALICE);
  const got = inbox(a);
  void a.send(msg("nobody@example.org/x", "lost", { id: "m1" }));
  void a.send(el("iq", { to: "nobody@example.org", type: "get", id: "q1" }, el("query", { xmlns: NS.disco })));
  void a.send(el("presence", { to: "nobody@example.org" }));
  void a.send(el("message", { to: "nobody@example.org", type: "error", id: "e1" }));
  void a.send(el("iq", { to: "nobody@example.org", type: "result", id: "r1" }));
  void a.send(el("iq", { type: "get", id: "q2" }, el("query", { xmlns: NS.disco })));
  void a.send(msg("not a jid@@", "bad", { id: "m2" }));
  sb.flush();
  assert.equal(got.length, 4);
  const [m1, q1, q2, m2] = got as [Element, Element, Element, Element];
  assert.equal(m1.name, "message");
  assert.equal(m1.attrs["type"], "error");
  assert.equal(m1.attrs["id"], "m1");
  assert.equal(m1.attrs["from"], "nobody@example.org/x");
  assert.equal(m1.attrs["to"], ALICE);
  assert.equal(m1.getChild("error")!.attrs["type"], "cancel");
  assert.equal(errorCondition(m1), "service-unavailable");
  assert.equal(q1.name, "iq");
  assert.equal(q1.attrs["id"], "q1");
  assert.equal(q1.attrs["from"], "nobody@example.org");
  assert.equal(errorCondition(q1), "service-unavailable");
  assert.equal(q2.attrs["id"], "q2", "an iq without 'to' is the server's: it has no services");
  assert.equal(q2.attrs["from"], "alice@example.org");
  assert.equal(errorCondition(q2), "service-unavailable");
  assert.equal(m2.attrs["id"], "m2");
  assert.equal(errorCondition(m2), "jid-malformed");
  assert.equal(m2.attrs["from"], "example.org");
});

test("a stanza whose recipient leaves while it is in flight bounces", async () => {
  const sb = new Switchboard({ mode: "manual" });
  const a = sb.connect(ALICE);
  const b = sb.connect(BOB);
  const got = inbox(a);
  void a.send(el("iq", { to: BOB, type: "set", id: "x" }, el("ping", { xmlns: "urn:xmpp:ping" })));
  await b.close();
  sb.flush();
  assert.equal(got.length, 1);
  assert.equal(errorCondition(got[0]!), "service-unavailable");
  assert.equal(got[0]!.attrs["from"], BOB);
  await assert.rejects(b.send(msg(ALICE, "late")), (e: unknown) => e instanceof AdapterError && e.condition === "closed");
});

test("manual mode: nothing moves until step(); pending() lists in-flight stanzas in order", () => {
  const sb = new Switchboard({ mode: "manual" });
  const a = sb.connect(ALICE);
  const b = sb.connect(BOB);
  const got = inbox(b);
  void a.send(msg(BOB, "1"));
  void a.send(msg(BOB, "2"));
  assert.equal(got.length, 0);
  const p = sb.pending();
  assert.deepEqual(p.map((x) => [x.seq, x.from, x.to, x.stanza.getChildText("body")]), [
    [1, ALICE, BOB, "1"],
    [2, ALICE, BOB, "2"],
  ]);
  p[0]!.stanza.attrs["id"] = "tampered";
  assert.equal(sb.pending()[0]!.stanza.attrs["id"], undefined, "pending() returns copies");
  const first = sb.step();
  assert.equal(first?.seq, 1);
  assert.deepEqual(got.map((s) => s.getChildText("body")), ["1"]);
  assert.equal(sb.step()?.seq, 2);
  assert.equal(sb.step(), undefined);
});

test("flush() delivers replies too and is bounded against stanza loops", () => {
  const sb = new Switchboard({ mode: "manual", maxFlush: 50 });
  const a = sb.connect(ALICE);
  const b = sb.connect(BOB);
  // b answers every iq get; a answers every result with a new get: an endless loop
  b.onStanza((s) => {
    if (s.attrs["type"] === "get") void b.send(el("iq", { to: attrOf(s, "from"), type: "result", id: attrOf(s, "id") }));
  });
  let n = 0;
  a.onStanza(() => void a.send(el("iq", { to: BOB, type: "get", id: `q${++n}` }, el("ping", { xmlns: "urn:xmpp:ping" }))));
  void a.send(el("iq", { to: BOB, type: "get", id: "q0" }, el("ping", { xmlns: "urn:xmpp:ping" })));
  assert.throws(() => sb.flush(), RangeError);
  const sb2 = new Switchboard({ mode: "manual" });
  const c = sb2.connect(ALICE);
  const d = sb2.connect(BOB);
  const replies = inbox(c);
  d.onStanza((s) => void d.send(el("iq", { to: attrOf(s, "from"), type: "result", id: attrOf(s, "id") })));
  void c.send(el("iq", { to: BOB, type: "get", id: "only" }, el("ping", { xmlns: "urn:xmpp:ping" })));
  assert.equal(sb2.flush(), 2);
  assert.equal(replies[0]?.attrs["id"], "only");
});

test("auto mode delivers asynchronously, in order, never re-entering the sender", async () => {
  const sb = new Switchboard();
  assert.equal(sb.mode, "auto");
  const a = sb.connect(ALICE);
  const b = sb.connect(BOB);
  const got = inbox(b);
  for (let i = 0; i < 20; i++) await a.send(msg(BOB, String(i)));
  assert.equal(got.length, 0, "send() returned before delivery");
  await sb.idle();
  assert.deepEqual(
    got.map((s) => s.getChildText("body")),
    Array.from({ length: 20 }, (_, i) => String(i)),
  );
  // replies also flow
  b.onStanza((s) => void b.send(msg(attrOf(s, "from") ?? "", `re:${s.getChildText("body") ?? ""}`)));
  const back = inbox(a);
  await a.send(msg(BOB, "ping"));
  await sb.idle();
  await sb.idle();
  assert.deepEqual(back.map((s) => s.getChildText("body")), ["re:ping"]);
});

test("adversary verdicts: deliver, drop, duplicate, replace", () => {
  const sb = new Switchboard({ mode: "manual" });
  const a = sb.connect(ALICE);
  const got = inbox(sb.connect(BOB));
  const seen: InFlight[] = [];
  sb.setAdversary((item) => {
    seen.push(item);
    const body = item.stanza.getChildText("body");
    if (body === "drop") return { action: "drop" };
    if (body === "dup") return { action: "duplicate" };
    if (body === "swap") return { action: "replace", stanza: msg(BOB, "swapped", { from: "forged@example.org/x" }) };
    return { action: "deliver" };
  });
  for (const b of ["keep", "drop", "dup", "swap"]) void a.send(msg(BOB, b));
  sb.flush();
  assert.deepEqual(got.map((s) => s.getChildText("body")), ["keep", "dup", "dup", "swapped"]);
  assert.equal(got[3]!.attrs["from"], "forged@example.org/x", "a replacement is relayed exactly as given");
  assert.deepEqual(seen.map((s) => s.seq), [1, 2, 3, 5], "the duplicate got its own seq");
  assert.ok(seen.every((s) => s.from === ALICE && s.to === BOB));
});

test("adversary hold + release reorders stanzas", () => {
  const sb = new Switchboard({ mode: "manual" });
  const a = sb.connect(ALICE);
  const got = inbox(sb.connect(BOB));
  sb.setAdversary((item) => (item.seq === 1 ? { action: "hold" } : { action: "deliver" }));
  void a.send(msg(BOB, "first"));
  void a.send(msg(BOB, "second"));
  sb.flush();
  assert.deepEqual(got.map((s) => s.getChildText("body")), ["second"]);
  assert.deepEqual(sb.held().map((h) => h.seq), [1]);
  sb.release(1);
  assert.deepEqual(sb.held(), []);
  sb.flush();
  assert.deepEqual(got.map((s) => s.getChildText("body")), ["second", "first"]);
  assert.throws(() => sb.release(1), RangeError);
});

test("inject forges a stanza past the adversary; taps see it flagged", () => {
  const sb = new Switchboard({ mode: "manual" });
  sb.connect(ALICE);
  const got = inbox(sb.connect(BOB));
  let consulted = 0;
  sb.setAdversary(() => {
    consulted++;
    return { action: "drop" };
  });
  const relayed: Relayed[] = [];
  sb.tap((r) => relayed.push(r));
  sb.inject(ALICE, msg(BOB, "forged", { from: "whatever@x/y" }));
  sb.flush();
  assert.equal(consulted, 0);
  assert.equal(got.length, 1);
  assert.equal(got[0]!.attrs["from"], ALICE);
  assert.equal(relayed.length, 1);
  assert.equal(relayed[0]!.injected, true);
  assert.equal(relayed[0]!.from, ALICE);
});

test("tap observes every relayed stanza after the adversary, as text", () => {
  const sb = new Switchboard({ mode: "manual" });
  const a = sb.connect(ALICE);
  inbox(sb.connect(BOB));
  sb.setAdversary((item) => (item.stanza.getChildText("body") === "secret" ? { action: "drop" } : { action: "deliver" }));
  const relayed: Relayed[] = [];
  const off = sb.tap((r) => relayed.push(r));
  void a.send(msg(BOB, "secret"));
  void a.send(msg(BOB, "ciphertext"));
  sb.flush();
  assert.equal(relayed.length, 1);
  assert.ok(!relayed.some((r) => r.text.includes("secret")));
  assert.equal(relayed[0]!.text, serialize(relayed[0]!.stanza));
  assert.equal(relayed[0]!.injected, false);
  off();
  void a.send(msg(BOB, "after"));
  sb.flush();
  assert.equal(relayed.length, 1);
});

test("presence without 'to' is broadcast; closing an available session broadcasts unavailable", async () => {
  const sb = new Switchboard({ mode: "manual" });
  const a = sb.connect(ALICE);
  const a2got = inbox(sb.connect(ALICE2));
  const bgot = inbox(sb.connect(BOB));
  const agot = inbox(a);
  void a.send(el("presence", {}));
  sb.flush();
  assert.equal(agot.length, 0, "not reflected to the sender");
  assert.equal(a2got.length, 1);
  assert.equal(bgot.length, 1);
  assert.equal(bgot[0]!.attrs["from"], ALICE);
  await a.close();
  await a.close(); // idempotent
  sb.flush();
  assert.equal(bgot.length, 2);
  assert.equal(bgot[1]!.attrs["type"], "unavailable");
  assert.deepEqual(sb.connected(), [ALICE2, BOB]);
});

test("connect refuses a JID already connected; a closed JID can reconnect", async () => {
  const sb = new Switchboard({ mode: "manual" });
  const a = sb.connect(ALICE);
  assert.throws(() => sb.connect(ALICE), (e: unknown) => e instanceof AdapterError && e.condition === "connection-failed");
  await a.close();
  const again = sb.connect(ALICE);
  assert.equal(again.jid, ALICE);
});

test("stanzas before the first handler are kept for it; unsubscribe stops delivery", async () => {
  const sb = new Switchboard({ mode: "manual" });
  const a = sb.connect(ALICE);
  const b = sb.connect(BOB);
  void a.send(msg(BOB, "early"));
  sb.flush();
  const got: Element[] = [];
  const off = b.onStanza((s) => got.push(s));
  assert.equal(got.length, 0, "not delivered inside onStanza()");
  await tick();
  assert.deepEqual(got.map((s) => s.getChildText("body")), ["early"]);
  off();
  void a.send(msg(BOB, "late"));
  sb.flush();
  assert.equal(got.length, 1);
});

test("a handler's exception surfaces from step() after every handler ran", () => {
  const sb = new Switchboard({ mode: "manual" });
  const a = sb.connect(ALICE);
  const b = sb.connect(BOB);
  b.onStanza(() => {
    throw new Error("boom");
  });
  const got = inbox(b);
  void a.send(msg(BOB, "x"));
  assert.throws(() => sb.step(), /boom/);
  assert.equal(got.length, 1);
});

test("send() rejects non-stanzas and oversized stanzas (the latter ends the session)", async () => {
  const sb = new Switchboard({ mode: "manual" });
  const a = sb.connect(ALICE);
  sb.connect(BOB);
  await assert.rejects(a.send(el("foo", {})), TypeError);
  await assert.rejects(
    a.send(msg(BOB, "x".repeat(300 * 1024))),
    (e: unknown) => e instanceof AdapterError && e.condition === "closed",
  );
  assert.deepEqual(sb.connected(), [BOB]);
});

test("manual runs are deterministic", () => {
  const run = (): string[] => {
    const sb = new Switchboard({ mode: "manual" });
    const log: string[] = [];
    sb.tap((r) => log.push(`${r.seq}:${r.from}>${r.to}:${r.text}`));
    const parties: StanzaConnection[] = [ALICE, ALICE2, BOB].map((j: FullJid) => sb.connect(j));
    sb.setAdversary((i) => (i.seq % 3 === 0 ? { action: "duplicate" } : i.seq % 5 === 0 ? { action: "drop" } : { action: "deliver" }));
    for (const p of parties) p.onStanza((s) => {
      if (s.name === "message" && s.attrs["type"] === "chat") void p.send(el("message", { to: attrOf(s, "from"), type: "normal" }, "ack"));
    });
    for (const p of parties) void p.send(el("presence", {}));
    for (let i = 0; i < 5; i++) void parties[i % 3]!.send(msg(BOB, String(i)));
    sb.flush();
    return log;
  };
  assert.deepEqual(run(), run());
});
