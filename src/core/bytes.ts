/**
 * Byte helpers for cores: Base64, hex, UTF-8, concatenation, and the XEP-0116 section 13
 * ("Encoding") rule for multi-precision integers.
 *
 * Spec: XEP-0116 v0.16 section 13 / XEP-0217 "Encoding": an integer that is not of fixed
 * bit-length is serialized big-endian with leading zero octets removed (`mpi`). Hash and
 * HMAC outputs are fixed-length and never stripped. See esession-interpretation.md row 1.
 */

/** Node's Buffer when present (much faster); the portable path otherwise (browsers). */
const NodeBuffer = (globalThis as { Buffer?: typeof Buffer }).Buffer;

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

export function utf8(s: string): Uint8Array {
  return NodeBuffer ? NodeBuffer.from(s, "utf8") : enc.encode(s);
}

/** Decodes UTF-8, throwing on malformed input. */
export function fromUtf8(b: Uint8Array): string {
  return dec.decode(b);
}

export function concat(...parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Removes leading zero octets (keeps one octet for zero). */
export function mpi(b: Uint8Array): Uint8Array {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

/** Left-pads with zeros to `len` octets (for fixed-width counters). */
export function padStart(b: Uint8Array, len: number): Uint8Array {
  const m = mpi(b);
  if (m.length >= len) return m.subarray(m.length - len);
  const out = new Uint8Array(len);
  out.set(m, len - m.length);
  return out;
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function toBase64(b: Uint8Array): string {
  if (NodeBuffer) return NodeBuffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

/** Strict Base64 (RFC 4648 section 4); whitespace is ignored. Returns undefined on bad input. */
export function fromBase64(s: string): Uint8Array | undefined {
  const t = s.replace(/\s+/g, "");
  if (t.length % 4 !== 0) return undefined;
  if (NodeBuffer) {
    // Buffer skips characters outside the alphabet and stops at '=': any such character
    // makes the decoded length differ from what a valid string of this length gives.
    const pad = t.endsWith("==") ? 2 : t.endsWith("=") ? 1 : 0;
    const b = NodeBuffer.from(t, "base64");
    return b.length === (t.length / 4) * 3 - pad ? new Uint8Array(b) : undefined;
  }
  if (!B64.test(t)) return undefined;
  const bin = atob(t);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

export function toHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += HEX[x] ?? "";
  return s;
}

export function fromHex(s: string): Uint8Array {
  let t = s.replace(/^0x/i, "");
  if (t.length % 2) t = `0${t}`;
  if (!/^[0-9a-fA-F]*$/.test(t)) throw new RangeError("not hex");
  const out = new Uint8Array(t.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(t.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Unsigned big-endian bytes -> bigint (comparisons and counters only; no arithmetic crypto). */
export function toBigInt(b: Uint8Array): bigint {
  if (b.length === 16) {
    const v = new DataView(b.buffer, b.byteOffset, 16);
    return (v.getBigUint64(0) << 64n) | v.getBigUint64(8);
  }
  return b.length === 0 ? 0n : BigInt(`0x${toHex(b)}`);
}

/** bigint -> unsigned big-endian bytes of exactly `len` octets (value taken mod 2^(8*len)). */
export function fromBigInt(n: bigint, len: number): Uint8Array {
  const mod = 1n << BigInt(8 * len);
  const v = ((n % mod) + mod) % mod;
  if (len === 16) {
    const out = new Uint8Array(16);
    const dv = new DataView(out.buffer);
    dv.setBigUint64(0, v >> 64n);
    dv.setBigUint64(8, v & 0xffffffffffffffffn);
    return out;
  }
  return fromHex(v.toString(16).padStart(len * 2, "0"));
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return d === 0;
}

/** Overwrites a secret in place (best effort: JS may hold other copies). */
export function wipe(...bs: (Uint8Array | undefined)[]): void {
  for (const b of bs) b?.fill(0);
}
