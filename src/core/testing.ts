/**
 * Deterministic effects for tests and simulations: a seeded Random and a virtual Clock.
 * Never use these outside tests: the seeded generator is predictable by design.
 *
 * The generator is SHA-256 in counter mode over the seed (through the injected hash),
 * which is enough for reproducible test streams.
 */
import { concat, utf8 } from "./bytes.js";
import type { Clock, Random } from "./types.js";
import type { CryptoProvider } from "../crypto/provider.js";

export class SeededRandom implements Random {
  private counter = 0;
  private readonly seed: Uint8Array;
  constructor(
    private readonly crypto: CryptoProvider,
    seed: string,
  ) {
    this.seed = utf8(seed);
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let o = 0;
    while (o < n) {
      const c = new Uint8Array(4);
      new DataView(c.buffer).setUint32(0, this.counter++);
      const block = this.crypto.hash("sha256", concat(this.seed, c));
      out.set(block.subarray(0, Math.min(32, n - o)), o);
      o += 32;
    }
    return out;
  }
}

/** Replays fixed byte strings in order (known-answer tests inject x, nonces, counters). */
export class ScriptedRandom implements Random {
  private readonly queue: Uint8Array[];
  constructor(values: readonly Uint8Array[], private readonly fallback?: Random) {
    this.queue = [...values];
  }
  bytes(n: number): Uint8Array {
    const v = this.queue.shift();
    if (v === undefined) {
      if (this.fallback) return this.fallback.bytes(n);
      throw new Error("ScriptedRandom exhausted");
    }
    if (v.length > n) throw new Error(`ScriptedRandom: wanted ${n} bytes, script has ${v.length}`);
    // A shorter scripted value is an integer: left-pad it with zero octets.
    const out = new Uint8Array(n);
    out.set(v, n - v.length);
    return out;
  }
}

export class VirtualClock implements Clock {
  constructor(private t = Date.UTC(2026, 0, 1)) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}
