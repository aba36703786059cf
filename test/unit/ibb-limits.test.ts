/**
 * In-band bytestream limits on the receiving side: while the application is not reading
 * (pauseReading), what the peer makes us hold (data not read, acknowledgements held back)
 * is bounded by ibbWindowBytes: beyond it the packet is refused with <resource-constraint/>
 * (type 'wait') and the bytestream fails with IbbError("resource-constraint"), in iq and in
 * message mode, and for a flood of empty packets too; an <open/> with a block-size over
 * maxIbbBlockSize is refused with <resource-constraint/> (the initiator retries smaller).
 *
 * Spec: XEP-0047 v2.0.1 section 2.1 (resource-constraint: "would prefer a smaller
 * block-size"), section 2.2 (data errors; "the sender MUST close the bytestream"); RFC 6120
 * section 8.3.3.18 (<resource-constraint/>, 'wait'); XEP-0210 v0.3 section 4.4;
 * docs/security.md "Limits" (ibbWindowBytes, maxIbbBlockSize).
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { errorCondition, ibbChild, IbbError, type IbbEvent, IbbSession, type IbbSessionOptions } from "../../src/ibb/index.js";
import { configureLimits, resetLimits } from "../../src/limits.js";
import { type Element, parseXml } from "../../src/xml/index.js";
import { ALICE, BOB, relay } from "../support/ibb-relay.js";

after(() => resetLimits());

const A = ALICE;
const B = BOB;

function mk(role: "initiator" | "responder", o: Partial<IbbSessionOptions> = {}): IbbSession {
  return new IbbSession({
    self: role === "initiator" ? A : B,
    peer: role === "initiator" ? B : A,
    sid: "s1",
    role,
    blockSize: 1024,
    random: new SeededRandom(nodeCrypto, `limits-${role}`),
    clock: new VirtualClock(),
    ...o,
  });
}

function opened(o: Partial<IbbSessionOptions> = {}): { i: IbbSession; r: IbbSession } {
  const i = mk("initiator", o);
  const r = mk("responder", o);
  i.open();
  const ev = relay(i, r);
  assert.ok(ev.a.some((e) => e.type === "opened"));
  return { i, r };
}

const received = (evs: readonly IbbEvent[]): number => evs.reduce((n, e) => n + (e.type === "data" ? e.data.length : 0), 0);
const failure = (evs: readonly IbbEvent[]): IbbError | undefined => {
  const f = evs.find((e) => e.type === "failed");
  return f?.type === "failed" ? f.error : undefined;
};
/** The error replies on the wire: [stanza name, condition, error type]. */
const errors = (wire: readonly Element[]): [string, string | undefined, unknown][] =>
  wire.filter((s) => s.attrs.type === "error").map((s) => [s.name, errorCondition(s), s.getChild("error")?.attrs.type]);

for (const stanza of ["iq", "message"] as const) {
  test(`${stanza} mode: a sender that ignores a paused reader is stopped at ibbWindowBytes with resource-constraint (wait)`, () => {
    const previous = configureLimits({ ibbWindowBytes: 4096 });
    try {
      // The window of unacknowledged iqs (default 8 x 1024) is larger than what we hold.
      const { i, r } = opened({ stanza, window: 64 });
      r.pauseReading();
      i.write(new Uint8Array(20 * 1024));
      const ev = relay(i, r);
      const err = failure(ev.b);
      assert.ok(err instanceof IbbError && err.condition === "resource-constraint", `receiver failed with ${err?.condition}`);
      assert.ok(received(ev.b) <= 4096, `held at most the window (${received(ev.b)} bytes)`);
      assert.ok(received(ev.b) >= 3072, "what fits is delivered");
      const refused = errors(ev.wire).filter(([, c]) => c === "resource-constraint");
      assert.deepEqual(refused, [[stanza, "resource-constraint", "wait"]]);
      assert.equal(r.stateName, "closed");
      // XEP-0047 2.2: the sender, told of the error, closes too.
      assert.equal(i.stateName, "closed");
      assert.equal(failure(ev.a)?.condition, "resource-constraint");
    } finally {
      configureLimits(previous);
    }
  });
}

test("a reader that resumes in time is never refused; not pausing at all holds nothing", () => {
  const previous = configureLimits({ ibbWindowBytes: 4096 });
  try {
    const { i, r } = opened({ window: 2 });
    let total = 0;
    for (let round = 0; round < 10; round++) {
      r.pauseReading();
      i.write(new Uint8Array(3 * 1024));
      const ev = relay(i, r);
      total += received(ev.b);
      assert.equal(failure(ev.b), undefined);
      r.resumeReading();
      total += received(relay(i, r).b);
    }
    assert.equal(total, 30 * 1024);
    // Not paused: 64 KiB through a 4 KiB receive limit.
    i.write(new Uint8Array(64 * 1024));
    const ev = relay(i, r);
    assert.equal(received(ev.b), 64 * 1024);
    assert.equal(failure(ev.b), undefined);
    assert.equal(r.stateName, "open");
  } finally {
    configureLimits(previous);
  }
});

test("empty data packets while paused are bounded too (each holds an acknowledgement)", () => {
  const previous = configureLimits({ ibbWindowBytes: 4096 });
  try {
    const { r } = opened();
    r.pauseReading();
    r.outbox.drain();
    let refusedAt = -1;
    for (let seq = 0; seq < 10_000 && refusedAt < 0; seq++) {
      const st = parseXml(`<iq xmlns="jabber:client" type="set" id="e${seq}" from="${A}" to="${B}"><data xmlns="http://jabber.org/protocol/ibb" sid="s1" seq="${seq}"></data></iq>`);
      r.handleStanza(st);
      for (const o of r.outbox.drain()) {
        if (o.kind === "send" && o.stanza.attrs.type === "error" && errorCondition(o.stanza) === "resource-constraint") refusedAt = seq;
      }
    }
    assert.ok(refusedAt > 0 && refusedAt < 4096, `refused after ${refusedAt} empty packets`);
    assert.equal(r.stateName, "closed");
  } finally {
    configureLimits(previous);
  }
});

test("open: a block-size over maxIbbBlockSize is refused with resource-constraint; the initiator retries smaller", () => {
  const previous = configureLimits({ maxIbbBlockSize: 4096 });
  try {
    // The application would take 65535; the limit says 4096.
    const i = mk("initiator", { blockSize: 16384, minBlockSize: 1024 });
    const r = mk("responder", { blockSize: 65535 });
    i.open();
    const ev = relay(i, r);
    const opens = ev.wire.filter((s) => s.name === "iq" && ibbChild(s)?.name === "open").map((s) => Number(ibbChild(s)?.attrs["block-size"]));
    assert.deepEqual(opens, [16384, 8192, 4096]);
    assert.deepEqual(
      errors(ev.wire).map(([, c, t]) => [c, t]),
      [
        ["resource-constraint", "modify"],
        ["resource-constraint", "modify"],
      ],
    );
    assert.ok(ev.b.some((e) => e.type === "opened" && e.blockSize === 4096));
    assert.equal(r.blockSize, 4096);

    // Jingle fixed the size (exactBlockSize): refused, no retry.
    const fi = mk("initiator", { blockSize: 8192, exactBlockSize: true });
    const fr = mk("responder", { blockSize: 8192, exactBlockSize: true });
    fi.open();
    const fev = relay(fi, fr);
    assert.equal(failure(fev.a)?.condition, "resource-constraint");
    assert.equal(fr.stateName, "awaiting-open");
  } finally {
    configureLimits(previous);
  }
});
