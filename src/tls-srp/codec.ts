/**
 * Byte-level reader and writer for the TLS presentation language: fixed-width integers
 * and length-prefixed vectors (`opaque x<lo..hi>`), with bounds checks that turn any
 * malformed input into a decode_error abort.
 *
 * Spec: RFC 5246 (TLS 1.2) section 4 "Presentation Language" (4.3 vectors, 4.4 numbers).
 */
import { concat } from "../core/bytes.js";
import { TlsAbort } from "./errors.js";

export class Reader {
  private off = 0;
  constructor(private readonly buf: Uint8Array) {}
  get remaining(): number {
    return this.buf.length - this.off;
  }
  private need(n: number): void {
    if (this.off + n > this.buf.length) throw new TlsAbort("decode_error", "truncated message");
  }
  u8(): number {
    this.need(1);
    return this.buf[this.off++] ?? 0;
  }
  u16(): number {
    return (this.u8() << 8) | this.u8();
  }
  u24(): number {
    return (this.u8() << 16) | (this.u8() << 8) | this.u8();
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const b = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return b;
  }
  /** `opaque x<lo..hi>` with a length prefix of `prefix` octets. */
  vector(prefix: 1 | 2 | 3, lo: number, hi: number): Uint8Array {
    const n = prefix === 1 ? this.u8() : prefix === 2 ? this.u16() : this.u24();
    if (n < lo || n > hi) throw new TlsAbort("decode_error", "vector length out of range");
    return this.bytes(n);
  }
  end(): void {
    if (this.off !== this.buf.length) throw new TlsAbort("decode_error", "trailing octets");
  }
}

export function u8(n: number): Uint8Array {
  return Uint8Array.of(n & 0xff);
}
export function u16(n: number): Uint8Array {
  return Uint8Array.of((n >> 8) & 0xff, n & 0xff);
}
export function u24(n: number): Uint8Array {
  return Uint8Array.of((n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
}

/** A length-prefixed vector; throws RangeError when our own value does not fit (a bug). */
export function vec(prefix: 1 | 2 | 3, ...parts: readonly Uint8Array[]): Uint8Array {
  const body = concat(...parts);
  if (body.length >= 2 ** (8 * prefix)) throw new RangeError("vector too long");
  return concat(prefix === 1 ? u8(body.length) : prefix === 2 ? u16(body.length) : u24(body.length), body);
}

/** Big-endian 64-bit sequence number (RFC 5246 section 6.1, seq_num uint64). */
export function u64(n: bigint): Uint8Array {
  const out = new Uint8Array(8);
  let v = n;
  for (let i = 7; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}
