/**
 * Property tests: garbage, truncated, reordered or bit-flipped input never makes the
 * TLS-SRP core throw or misbehave; at worst it ends with one typed fatal alert. Also the
 * SRP base64 and tpasswd parsers on arbitrary text.
 *
 * Spec: RFC 5246 (TLS 1.2) section 7.2.2 (errors are fatal alerts), 6.2.3.2 (every
 * record error is bad_record_mac).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { SeededRandom } from "../../src/core/testing.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { SrpTlsConnection, type SrpTlsOutput } from "../../src/tls-srp/connection.js";
import { ALERTS } from "../../src/tls-srp/errors.js";
import { nodeTlsCrypto } from "../../src/tls-srp/node-crypto.js";
import { decodeSrpBase64 } from "../../src/tls-srp/srp-base64.js";
import { MemoryVerifierStore, TpasswdError, createVerifier, parseTpasswd } from "../../src/tls-srp/verifiers.js";

const sha1 = (...p: readonly Uint8Array[]) => nodeTlsCrypto.hash("sha1", ...p);
const random = new SeededRandom(nodeCrypto, "fuzz");
const store = new MemoryVerifierStore().set("alice", createVerifier(sha1, random, "alice", "pw", 1024));

function client(): SrpTlsConnection {
  const c = new SrpTlsConnection({ role: "client", crypto: nodeTlsCrypto, random, username: "alice", password: "pw", minGroupBits: 1024 });
  c.start();
  return c;
}
function server(): SrpTlsConnection {
  return new SrpTlsConnection({ role: "server", crypto: nodeTlsCrypto, random });
}

function drain(c: SrpTlsConnection): SrpTlsOutput[] {
  const out: SrpTlsOutput[] = [];
  for (let o = c.poll(); o; o = c.poll()) {
    out.push(o);
    if (o.kind === "event" && o.event.type === "verifier-needed") c.provideVerifier(store.lookupSync(o.event.username));
  }
  return out;
}

/** At most one error event, never data or handshake-done from garbage. */
function checkOutputs(outs: readonly SrpTlsOutput[]): void {
  const events = outs.flatMap((o) => (o.kind === "event" ? [o.event] : []));
  assert.ok(events.filter((e) => e.type === "error").length <= 1);
  assert.ok(!events.some((e) => e.type === "data" || e.type === "handshake-done"));
}

const record = fc
  .record({
    type: fc.constantFrom(20, 21, 22, 23, 0, 99),
    version: fc.constantFrom(0x0301, 0x0303, 0x0300, 0x0200),
    body: fc.uint8Array({ maxLength: 300 }),
  })
  .map(({ type, version, body }) => Uint8Array.of(type, version >> 8, version & 0xff, body.length >> 8, body.length & 0xff, ...body));

test("arbitrary bytes never throw, at either role", () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 400 }), { maxLength: 6 }), fc.boolean(), (chunks, asClient) => {
      const c = asClient ? client() : server();
      drain(c);
      const outs: SrpTlsOutput[] = [];
      for (const chunk of chunks) {
        c.receive(chunk);
        outs.push(...drain(c));
      }
      checkOutputs(outs);
    }),
    { numRuns: 300 },
  );
});

test("record-shaped garbage never throws and fails with a known alert", () => {
  fc.assert(
    fc.property(fc.array(record, { minLength: 1, maxLength: 5 }), fc.boolean(), (recs, asClient) => {
      const c = asClient ? client() : server();
      drain(c);
      const outs: SrpTlsOutput[] = [];
      for (const r of recs) {
        c.receive(r);
        outs.push(...drain(c));
      }
      checkOutputs(outs);
      for (const o of outs)
        if (o.kind === "event" && o.event.type === "error" && o.event.error.origin === "sent")
          assert.ok(Object.hasOwn(ALERTS, o.event.error.condition));
    }),
    { numRuns: 300 },
  );
});

test("a recorded client flight replayed (with a flipped bit or cut) never establishes a new server", () => {
  // Record a genuine exchange once, then replay it with one mutation.
  const flights: { to: "client" | "server"; bytes: Uint8Array }[] = [];
  {
    const c = client();
    const s = server();
    for (let moved = true; moved; ) {
      moved = false;
      for (const [from, to, name] of [
        [c, s, "server"],
        [s, c, "client"],
      ] as const)
        for (const o of drain(from))
          if (o.kind === "send") {
            moved = true;
            flights.push({ to: name, bytes: o.bytes });
            to.receive(o.bytes);
          }
    }
    assert.ok(c.established && s.established);
  }
  const serverBound = flights.filter((f) => f.to === "server");
  fc.assert(
    fc.property(fc.nat(), fc.nat(7), fc.boolean(), (pos, bit, cut) => {
      const all = serverBound.map((f) => f.bytes);
      const total = all.reduce((n, b) => n + b.length, 0);
      const at = pos % total;
      const s = server();
      const outs: SrpTlsOutput[] = [];
      let offset = 0;
      for (const b of all) {
        let chunk = b;
        if (at >= offset && at < offset + b.length) {
          chunk = b.slice();
          if (cut) chunk = chunk.subarray(0, at - offset);
          else chunk[at - offset] = (chunk[at - offset] ?? 0) ^ (1 << bit);
        }
        offset += b.length;
        s.receive(chunk);
        outs.push(...drain(s));
        if (cut && chunk !== b) break;
      }
      // A fresh server picks a fresh random and b, so the replayed key exchange and
      // Finished cannot verify, mutated or not: the replay ends in one alert (or waits,
      // when cut short or when a length field grew), never in an established connection.
      const events = outs.flatMap((o) => (o.kind === "event" ? [o.event] : []));
      assert.equal(s.established, false);
      assert.ok(!events.some((e) => e.type === "handshake-done" || e.type === "data"));
      assert.ok(events.filter((e) => e.type === "error").length <= 1);
    }),
    { numRuns: 150 },
  );
});

test("SRP base64 and tpasswd parsers take any text without crashing", () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), fc.string({ maxLength: 200 }), (a, b) => {
      decodeSrpBase64(a);
      try {
        parseTpasswd(a, b);
      } catch (e) {
        assert.ok(e instanceof TpasswdError);
      }
    }),
    { numRuns: 500 },
  );
});
