/**
 * Unit tests for XEP-0047 v2.0.1 In-Band Bytestreams: the codec (strict Base64, section
 * 4), the sans-IO core (open/resource-constraint retry 2.1, seq and wrap-around 2.2,
 * errors 2.2, close 2.3, iq and message modes, flow control, timeouts) and the Duplex
 * wiring over the in-memory switchboard (with an adversary).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { el, NS, parseXml, serialize, type Element } from "../../src/xml/index.js";
import { attrOf } from "../../src/adapters/connection.js";
import { Switchboard } from "../../src/adapters/switchboard.js";
import {
  IbbEndpoint,
  IbbError,
  IbbSession,
  NS_IBB,
  decodeIbbBase64,
  errorCondition,
  ibbChild,
  parseIbb,
  type IbbEvent,
  type IbbSessionOptions,
} from "../../src/ibb/index.js";
import { ALICE, BOB, relay } from "../support/ibb-relay.js";

const A = ALICE;
const B = BOB;

function mk(role: "initiator" | "responder", o: Partial<IbbSessionOptions> = {}, clock = new VirtualClock()): IbbSession {
  const self = role === "initiator" ? A : B;
  const peer = role === "initiator" ? B : A;
  return new IbbSession({
    self,
    peer,
    sid: "s1",
    role,
    blockSize: 4096,
    random: new SeededRandom(nodeCrypto, `${role}`),
    clock,
    ...o,
  });
}

const bytesOf = (evs: IbbEvent[]): Buffer =>
  Buffer.concat(evs.flatMap((e) => (e.type === "data" ? [Buffer.from(e.data)] : [])));

test("codec: strict Base64 per XEP-0047 section 4", () => {
  assert.deepEqual(decodeIbbBase64("AAEC"), new Uint8Array([0, 1, 2]));
  assert.deepEqual(decodeIbbBase64(" AA\nEC "), new Uint8Array([0, 1, 2]));
  assert.deepEqual(decodeIbbBase64("AA=="), new Uint8Array([0]));
  assert.deepEqual(decodeIbbBase64(""), new Uint8Array([]));
  for (const bad of ["=AAA", "BBBB=CCC", "AA*A", "AAA", "A===", "AA==AA==", "AA-_"]) assert.equal(decodeIbbBase64(bad), undefined, bad);
});

test("codec: parses the XEP-0047 examples and rejects bad attributes", () => {
  const open = parseIbb(parseXml(`<open xmlns='${NS_IBB}' block-size='4096' sid='i781hf64' stanza='iq'/>`));
  assert.deepEqual(open, { kind: "open", sid: "i781hf64", blockSize: 4096, stanza: "iq" });
  const dflt = parseIbb(parseXml(`<open xmlns='${NS_IBB}' block-size='4096' sid='x'/>`));
  assert.equal(dflt.kind === "open" && dflt.stanza, "iq");
  const data = parseIbb(parseXml(`<data xmlns='${NS_IBB}' seq='65535' sid='x'>AAEC</data>`));
  assert.equal(data.kind === "data" && data.seq, 65535);
  for (const bad of [
    `<open xmlns='${NS_IBB}' block-size='65536' sid='x'/>`,
    `<open xmlns='${NS_IBB}' block-size='0' sid='x'/>`,
    `<open xmlns='${NS_IBB}' block-size='10' sid='a b'/>`,
    `<open xmlns='${NS_IBB}' block-size='10' sid='x' stanza='presence'/>`,
    `<data xmlns='${NS_IBB}' seq='65536' sid='x'>AAEC</data>`,
    `<data xmlns='${NS_IBB}' seq='-1' sid='x'>AAEC</data>`,
    `<data xmlns='${NS_IBB}' seq='1' sid='x'>=AAA</data>`,
    `<close xmlns='${NS_IBB}'/>`,
  ])
    assert.equal(parseIbb(parseXml(bad)).kind, "malformed", bad);
});

test("core: open, bidirectional data, graceful close (iq mode)", () => {
  const i = mk("initiator");
  const r = mk("responder");
  i.open();
  let ev = relay(i, r);
  assert.deepEqual(ev.a[0], { type: "opened", blockSize: 4096, stanza: "iq" });
  assert.deepEqual(ev.b[0], { type: "opened", blockSize: 4096, stanza: "iq" });
  const msg1 = randomBytes(10_000);
  const msg2 = randomBytes(5_000);
  i.write(msg1);
  r.write(msg2);
  ev = relay(i, r);
  assert.deepEqual(bytesOf(ev.b), msg1);
  assert.deepEqual(bytesOf(ev.a), msg2);
  // 10,000 bytes in 4,096-byte blocks: seq 0,1,2 from each side independently (section 3).
  const seqs = ev.wire.flatMap((s) => {
    const c = ibbChild(s);
    return c?.name === "data" ? [`${attrOf(s, "from")}:${attrOf(c, "seq")}`] : [];
  });
  assert.deepEqual(seqs.sort(), [`${A}:0`, `${A}:1`, `${A}:2`, `${B}:0`, `${B}:1`].sort());
  i.close();
  ev = relay(i, r);
  assert.ok(ev.a.some((e) => e.type === "closed" && e.by === "local"));
  assert.ok(ev.b.some((e) => e.type === "closed" && e.by === "remote"));
  assert.equal(i.stateName, "closed");
  assert.equal(r.stateName, "closed");
});

test("core: seq wraps from 65535 to 0 (section 2.2)", () => {
  const i = mk("initiator", { blockSize: 1 });
  const r = mk("responder", { blockSize: 1 });
  i.open();
  relay(i, r);
  const total = 65536 + 3;
  const payload = randomBytes(total);
  i.write(payload);
  let last: number[] = [];
  const ev = relay(i, r, (_f, s) => {
    const c = ibbChild(s);
    if (c?.name === "data") last = [...last.slice(-4), Number(attrOf(c, "seq"))];
    return s;
  }, false);
  assert.deepEqual(bytesOf(ev.b), payload);
  assert.deepEqual(last, [65534, 65535, 0, 1, 2]);
  assert.ok(!ev.b.some((e) => e.type === "failed"));
});

test("core: out-of-sequence data -> unexpected-request, not delivered, bytestream closed", () => {
  const i = mk("initiator");
  const r = mk("responder");
  i.open();
  relay(i, r);
  i.write(randomBytes(3 * 4096));
  let n = 0;
  const ev = relay(i, r, (_f, s) => {
    const c = ibbChild(s);
    if (c?.name === "data" && n++ === 1) return undefined; // drop seq 1: seq 2 arrives out of order
    return s;
  });
  assert.equal(bytesOf(ev.b).length, 4096, "only seq 0 is processed");
  const errs = ev.wire.filter((s) => attrOf(s, "type") === "error").map(errorCondition);
  assert.ok(errs.includes("unexpected-request"));
  assert.ok(ev.b.some((e) => e.type === "failed" && e.error.condition === "unexpected-request"));
  assert.ok(ev.wire.some((s) => ibbChild(s)?.name === "close"), "the recipient closes the bytestream");
  assert.ok(ev.a.some((e) => e.type === "failed" || e.type === "closed"));
});

test("core: a replayed (already used) seq is refused the same way", () => {
  const i = mk("initiator");
  const r = mk("responder");
  i.open();
  relay(i, r);
  i.write(randomBytes(100));
  const first = relay(i, r);
  const dataIq = first.wire.find((s) => ibbChild(s)?.name === "data");
  assert.ok(dataIq);
  const replay = parseXml(serialize(dataIq));
  replay.attrs.id = "replayed";
  r.handleStanza(replay);
  const out = r.outbox.drain();
  assert.ok(out.some((o) => o.kind === "send" && errorCondition(o.stanza) === "unexpected-request"));
  assert.ok(!out.some((o) => o.kind === "event" && o.event.type === "data"));
});

test("core: bad Base64 -> bad-request; oversize block -> bad-request; unknown sid ignored by core", () => {
  const i = mk("initiator", { blockSize: 8 });
  const r = mk("responder", { blockSize: 8 });
  i.open();
  relay(i, r);
  const bad = el("iq", { xmlns: NS.client, type: "set", id: "x1", from: A, to: B }, el("data", { xmlns: NS_IBB, sid: "s1", seq: 0 }, "=AAA"));
  assert.equal(r.handleStanza(bad), true);
  const out = r.outbox.drain();
  assert.ok(out.some((o) => o.kind === "send" && errorCondition(o.stanza) === "bad-request"));
  assert.ok(out.some((o) => o.kind === "event" && o.event.type === "failed" && o.event.error.condition === "bad-request"));

  const i2 = mk("initiator", { blockSize: 8 });
  const r2 = mk("responder", { blockSize: 8 });
  i2.open();
  relay(i2, r2);
  const big = el("iq", { xmlns: NS.client, type: "set", id: "x2", from: A, to: B }, el("data", { xmlns: NS_IBB, sid: "s1", seq: 0 }, Buffer.alloc(9).toString("base64")));
  r2.handleStanza(big);
  assert.ok(r2.outbox.drain().some((o) => o.kind === "send" && errorCondition(o.stanza) === "bad-request"));

  const other = el("iq", { xmlns: NS.client, type: "set", id: "x3", from: A, to: B }, el("data", { xmlns: NS_IBB, sid: "zz", seq: 0 }, "AAAA"));
  assert.equal(mk("responder").handleStanza(other), false);
  // And stanzas from anyone but the peer are never ours.
  const spoof = el("iq", { xmlns: NS.client, type: "set", id: "x4", from: "mallory@example.org/m", to: B }, el("close", { xmlns: NS_IBB, sid: "s1" }));
  assert.equal(r2.handleStanza(spoof), false);
});

test("core: resource-constraint makes the initiator retry with half the block-size", () => {
  const i = mk("initiator", { blockSize: 16384 });
  const r = mk("responder", { blockSize: 4096 });
  i.open();
  const ev = relay(i, r);
  assert.deepEqual(ev.a.find((e) => e.type === "opened"), { type: "opened", blockSize: 4096, stanza: "iq" });
  const errs = ev.wire.filter((s) => attrOf(s, "type") === "error").map(errorCondition);
  assert.deepEqual(errs, ["resource-constraint", "resource-constraint"]);
});

test("core: exact block-size (XEP-0261) refuses a different size and does not retry", () => {
  const i = mk("initiator", { blockSize: 4096, exactBlockSize: true });
  const r = mk("responder", { blockSize: 2048, exactBlockSize: true });
  i.open();
  const ev = relay(i, r);
  assert.ok(ev.a.some((e) => e.type === "failed" && e.error.condition === "resource-constraint" && e.error.remote));
  const i2 = mk("initiator", { blockSize: 1024, exactBlockSize: true });
  const r2 = mk("responder", { blockSize: 2048, exactBlockSize: true });
  i2.open();
  assert.ok(relay(i2, r2).a.some((e) => e.type === "failed"), "smaller is refused too when exact");
});

test("core: message mode sends without waiting, with ids, and receives in order", () => {
  const i = mk("initiator", { stanza: "message", blockSize: 100 });
  const r = mk("responder");
  i.open();
  relay(i, r);
  const payload = randomBytes(1000);
  i.write(payload);
  const out = i.outbox.drain();
  const msgs = out.filter((o) => o.kind === "send").map((o) => (o.kind === "send" ? o.stanza : el("x")));
  assert.equal(msgs.length, 10, "all ten blocks go out at once");
  assert.ok(msgs.every((m) => m.name === "message" && typeof m.attrs.id === "string"));
  assert.equal(i.bufferedAmount, 0);
  for (const m of msgs) {
    const s = parseXml(serialize(m));
    s.attrs.from = A;
    r.handleStanza(s);
  }
  const got = r.outbox.drain();
  assert.ok(!got.some((o) => o.kind === "send"), "no acknowledgements for messages");
  assert.deepEqual(bytesOf(got.flatMap((o) => (o.kind === "event" ? [o.event] : []))), payload);
  // A message error for one of our ids fails the stream (section 2.2 delivery errors).
  const errMsg = el("message", { xmlns: NS.client, type: "error", id: msgs[3]?.attrs.id, from: B }, el("error", { type: "cancel" }, el("recipient-unavailable", { xmlns: NS.stanzas })));
  assert.equal(i.handleStanza(errMsg), true);
  assert.ok(i.outbox.drain().some((o) => o.kind === "event" && o.event.type === "failed" && o.event.error.condition === "recipient-unavailable"));
});

test("core: flow control: window of unacknowledged iqs, acks held while paused", () => {
  const i = mk("initiator", { blockSize: 10, window: 2 });
  const r = mk("responder", { blockSize: 10 });
  i.open();
  relay(i, r);
  i.write(randomBytes(50));
  const sent = i.outbox.drain().filter((o) => o.kind === "send");
  assert.equal(sent.length, 2, "only `window` data iqs in flight");
  assert.equal(i.bufferedAmount, 50);
  r.pauseReading();
  for (const o of sent) {
    if (o.kind !== "send") continue;
    const s = parseXml(serialize(o.stanza));
    s.attrs.from = A;
    r.handleStanza(s);
  }
  const rOut = r.outbox.drain();
  assert.equal(rOut.filter((o) => o.kind === "send").length, 0, "no ack while paused");
  assert.equal(rOut.filter((o) => o.kind === "event").length, 2);
  r.resumeReading();
  const acks = r.outbox.drain().filter((o) => o.kind === "send");
  assert.equal(acks.length, 2);
  for (const o of acks) {
    if (o.kind !== "send") continue;
    const s = parseXml(serialize(o.stanza));
    s.attrs.from = B;
    i.handleStanza(s);
  }
  assert.equal(i.outbox.drain().filter((o) => o.kind === "send").length, 2, "acks open the window again");
  assert.equal(i.bufferedAmount, 30);
});

test("core: queued writes that do not align with the block-size are packed into full blocks (TLS records over IBB)", () => {
  const i = mk("initiator", { blockSize: 8192, window: 1 });
  const r = mk("responder", { blockSize: 8192 });
  i.open();
  relay(i, r);
  // TLS 1.3 AES-GCM records of 16,406 bytes each; the window is full after the first block.
  const records = [randomBytes(16406), randomBytes(16406), randomBytes(16406)];
  for (const rec of records) i.write(rec);
  assert.equal(i.bufferedAmount, 3 * 16406);
  const ev = relay(i, r);
  const sizes = ev.wire.map((w) => ibbChild(w)).filter((c) => c?.name === "data").map((c) => decodeIbbBase64(c?.getText() ?? "")?.length ?? -1);
  // 49,218 bytes: six full blocks and a 66-byte tail (not 3 x [8192, 8192, 22]).
  assert.deepEqual(sizes, [8192, 8192, 8192, 8192, 8192, 8192, 66]);
  const got = Buffer.concat(ev.b.flatMap((e) => (e.type === "data" ? [Buffer.from(e.data)] : [])));
  assert.ok(got.equals(Buffer.concat(records)), "same bytes, same order");
});

test("core: iq timeout fails the stream and sends close", () => {
  const clock = new VirtualClock();
  const i = mk("initiator", { iqTimeoutMs: 1000 }, clock);
  const r = mk("responder", {}, clock);
  i.open();
  relay(i, r);
  i.write(randomBytes(10));
  i.outbox.drain(); // the data iq is "lost"
  assert.equal(i.nextDeadline(), clock.now() + 1000);
  clock.advance(999);
  i.onTimer(clock.now());
  assert.equal(i.outbox.size, 0);
  clock.advance(1);
  i.onTimer(clock.now());
  const out = i.outbox.drain();
  assert.ok(out.some((o) => o.kind === "send" && ibbChild(o.stanza)?.name === "close"));
  assert.ok(out.some((o) => o.kind === "event" && o.event.type === "failed" && o.event.error.condition === "timeout"));
  assert.equal(i.nextDeadline(), undefined);
});

test("core: data error from the peer makes the sender close (section 2.2)", () => {
  const i = mk("initiator");
  const r = mk("responder");
  i.open();
  relay(i, r);
  i.write(randomBytes(10));
  const out = i.outbox.drain();
  const dataIq = out.find((o) => o.kind === "send");
  assert.ok(dataIq?.kind === "send");
  const err = el("iq", { xmlns: NS.client, type: "error", id: dataIq.stanza.attrs.id, from: B }, el("error", { type: "cancel" }, el("item-not-found", { xmlns: NS.stanzas })));
  i.handleStanza(err);
  const after = i.outbox.drain();
  assert.ok(after.some((o) => o.kind === "send" && ibbChild(o.stanza)?.name === "close"));
  assert.ok(after.some((o) => o.kind === "event" && o.event.type === "failed" && o.event.error.condition === "item-not-found"));
  assert.throws(() => i.write(new Uint8Array(1)), IbbError);
});

test("duplex over the switchboard: 1 MiB both ways with SHA-256, half-close semantics, unknown sid", async () => {
  const sb = new Switchboard();
  const ca = sb.connect(A);
  const cb = sb.connect(B);
  const ea = new IbbEndpoint(ca, { window: 4 });
  const eb = new IbbEndpoint(cb);
  eb.onOffer((o) => o.peer === A);
  const accepted = new Promise<import("../../src/ibb/index.js").IbbStream>((res) => eb.onStream(res));
  const sa = await ea.open(B, { blockSize: 4096 });
  const sbStream = await accepted;
  const payloadA = randomBytes(1 << 20);
  const payloadB = randomBytes(300_000);
  const collect = (s: NodeJS.ReadableStream): Promise<Buffer> =>
    new Promise((res, rej) => {
      const parts: Buffer[] = [];
      s.on("data", (d: Buffer) => parts.push(d));
      s.on("end", () => res(Buffer.concat(parts)));
      s.on("error", rej);
    });
  const gotB = collect(sbStream);
  const gotA = collect(sa);
  sbStream.write(payloadB);
  sa.end(payloadA);
  const rb = await gotB;
  assert.equal(createHash("sha256").update(rb).digest("hex"), createHash("sha256").update(payloadA).digest("hex"));
  const ra = await gotA;
  assert.equal(ra.length, payloadB.length);
  assert.equal(createHash("sha256").update(ra).digest("hex"), createHash("sha256").update(payloadB).digest("hex"));

  // Unknown sid: item-not-found (section 2.2).
  const replies: Element[] = [];
  ca.onStanza((s) => replies.push(s));
  await ca.send(el("iq", { type: "set", id: "u1", to: B }, el("data", { xmlns: NS_IBB, sid: "nope", seq: 0 }, "AAAA")));
  await ca.send(el("iq", { type: "set", id: "u2", to: B }, el("open", { xmlns: NS_IBB, sid: "nope2", "block-size": 16384 })));
  await sb.idle();
  await new Promise((r) => setImmediate(r));
  assert.equal(errorCondition(replies.find((s) => s.attrs.id === "u1") ?? el("x")), "item-not-found");
  assert.equal(errorCondition(replies.find((s) => s.attrs.id === "u2") ?? el("x")), "resource-constraint");
  ea.detach();
  eb.detach();
});

test("duplex: an offer nobody accepts gets not-acceptable; a tampered stream errors", async () => {
  const sb = new Switchboard();
  const ea = new IbbEndpoint(sb.connect(A));
  const eb = new IbbEndpoint(sb.connect(B));
  await assert.rejects(ea.open(B), (e: unknown) => e instanceof IbbError && e.condition === "not-acceptable");
  eb.onOffer(() => true);
  let dropped = false;
  sb.setAdversary((item) => {
    const c = ibbChild(item.stanza);
    if (!dropped && c?.name === "data" && attrOf(c, "seq") === "1") {
      dropped = true;
      return { action: "drop" };
    }
    return { action: "deliver" };
  });
  const incoming = new Promise<import("../../src/ibb/index.js").IbbStream>((res) => eb.onStream(res));
  const s = await ea.open(B, { blockSize: 1024 });
  const r = await incoming;
  const rErr = new Promise<unknown>((res) => r.on("error", res));
  r.resume();
  const sErr = new Promise<unknown>((res) => s.on("error", res));
  s.write(randomBytes(4096));
  const e1 = await rErr;
  assert.ok(e1 instanceof IbbError && e1.condition === "unexpected-request");
  const e2 = await sErr;
  assert.ok(e2 instanceof IbbError);
  ea.detach();
  eb.detach();
});
