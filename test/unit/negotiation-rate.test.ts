/**
 * NegotiationRate (src/negotiation/admission.ts): the token buckets that bound the rate of
 * inbound DH work per peer bare JID and in total (XEP-0210 v0.3 section 4.4; docs/security.md
 * "Limits"). Unit cases and a property: over any run of requests at any times, no peer is
 * granted more than its burst plus the refill of the elapsed time, nor all peers together
 * more than the total's.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { NegotiationRate } from "../../src/negotiation/admission.js";

test("rate: a burst up to the per-peer limit, refilled evenly over a minute; resources of one account share it", () => {
  const r = new NegotiationRate(0, { negotiationRequestsPerMinutePerPeer: 3, negotiationRequestsPerMinute: 100 });
  assert.equal(r.take("m@x/a", 0), "allowed");
  assert.equal(r.take("m@x/b", 0), "allowed");
  assert.equal(r.take("m@x/c", 0), "allowed");
  assert.equal(r.take("m@x/d", 0), "peer-rate");
  assert.equal(r.take("other@x/a", 0), "allowed", "another account has its own bucket");
  assert.equal(r.take("m@x/a", 19_999), "peer-rate", "one token comes back every 20 s");
  assert.equal(r.take("m@x/a", 20_000), "allowed");
  assert.equal(r.take("m@x/a", 20_000), "peer-rate");
  assert.equal(r.take("m@x/a", 10 * 60_000), "allowed");
  assert.equal(r.take("m@x/a", 10 * 60_000), "allowed");
  assert.equal(r.take("m@x/a", 10 * 60_000), "allowed");
  assert.equal(r.take("m@x/a", 10 * 60_000), "peer-rate", "a long pause refills only up to the burst");
});

test("rate: the total bucket bounds many accounts together; a refused request takes no token", () => {
  const r = new NegotiationRate(0, { negotiationRequestsPerMinutePerPeer: 5, negotiationRequestsPerMinute: 4 });
  for (let i = 0; i < 4; i++) assert.equal(r.take(`a${i}@x/r`, 0), "allowed");
  assert.equal(r.take("late@x/r", 0), "total-rate");
  assert.equal(r.take("late@x/r", 15_000), "allowed", "one total token per 15 s");
  // A peer refused by its own bucket does not use up the total.
  const q = new NegotiationRate(0, { negotiationRequestsPerMinutePerPeer: 1, negotiationRequestsPerMinute: 2 });
  assert.equal(q.take("m@x/1", 0), "allowed");
  for (let i = 0; i < 10; i++) assert.equal(q.take("m@x/1", 0), "peer-rate");
  assert.equal(q.take("honest@x/1", 0), "allowed");
});

test("rate: clock going backwards grants nothing extra; many peers keep a bounded table", () => {
  const r = new NegotiationRate(60_000, { negotiationRequestsPerMinutePerPeer: 1, negotiationRequestsPerMinute: 100_000 });
  assert.equal(r.take("m@x/1", 60_000), "allowed");
  assert.equal(r.take("m@x/1", 0), "peer-rate");
  assert.equal(r.take("m@x/1", 60_000), "peer-rate");
  for (let i = 0; i < 10_000; i++) r.take(`p${i}@x/r`, 60_000 + i);
  assert.ok(r.tracked <= 4096, `tracked ${r.tracked}`);
});

test("property: no peer ever gets more than burst + refill, nor all peers more than the total's", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 10 }),
      fc.integer({ min: 1, max: 20 }),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 30_000 })), { maxLength: 300 }),
      (perPeer, total, steps) => {
        const r = new NegotiationRate(0, { negotiationRequestsPerMinutePerPeer: perPeer, negotiationRequestsPerMinute: total });
        let now = 0;
        const granted = new Map<number, number>();
        let all = 0;
        for (const [peer, dt] of steps) {
          now += dt;
          if (r.take(`p${peer}@x/r`, now) === "allowed") {
            granted.set(peer, (granted.get(peer) ?? 0) + 1);
            all++;
          }
        }
        const refill = (cap: number): number => cap + Math.floor((now * cap) / 60_000);
        for (const n of granted.values()) assert.ok(n <= refill(perPeer));
        assert.ok(all <= refill(total));
      },
    ),
    { numRuns: 300 },
  );
});
