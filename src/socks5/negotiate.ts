/**
 * The SOCKS5 handshake subset XEP-0065 uses, as two sans-IO negotiators (bytes in, bytes
 * out, a result when done). No sockets here.
 *
 * Spec: RFC 1928 (SOCKS5) sections 3-6 as profiled by XEP-0065 v1.8.2 (SOCKS5
 * Bytestreams) sections 5.3.2 and 6.3.2: the client offers "no authentication" (method
 * 0x00), sends CONNECT (CMD 0x01) with ATYP 0x03 (domain name) whose value is the
 * DST.ADDR hash (SHA1(SID + Requester JID + Target JID), 40 hex characters) and DST.PORT
 * 0; the server answers REP 0x00 echoing the address. XEP-0260 v1.0.3 section 2.3 for the
 * direction-dependent hash (see ./index.ts dstAddr()).
 */
import { createHash } from "node:crypto";

/** SHA1(sid + requester + target) in lower-case hex (XEP-0065 section 5.3.2). */
export function dstAddr(sid: string, requester: string, target: string): string {
  return createHash("sha1").update(`${sid}${requester}${target}`, "utf8").digest("hex");
}

export type Socks5Result =
  | { readonly kind: "pending" }
  | { readonly kind: "done"; readonly addr: string; readonly rest: Uint8Array }
  | { readonly kind: "failed"; readonly reason: string };

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const o = new Uint8Array(a.length + b.length);
  o.set(a);
  o.set(b, a.length);
  return o;
}

/** Client side: greeting, then CONNECT to `addr`, then the reply. */
export class Socks5ClientNegotiator {
  private buf: Uint8Array = new Uint8Array(0);
  private stage: "greeting" | "connect" | "done" | "failed" = "greeting";
  readonly out: Uint8Array[] = [];

  constructor(private readonly addr: string) {
    if (addr.length === 0 || addr.length > 255) throw new RangeError("DST.ADDR must be 1..255 bytes");
    this.out.push(new Uint8Array([5, 1, 0]));
  }

  feed(bytes: Uint8Array): Socks5Result {
    // Once done or failed the negotiator holds nothing more: later bytes belong to the
    // bytestream (handed over as `rest`) or to a connection being torn down.
    if (this.stage === "done") return { kind: "done", addr: this.addr, rest: new Uint8Array(0) };
    if (this.stage === "failed") return { kind: "failed", reason: "failed" };
    this.buf = concat(this.buf, bytes);
    if (this.stage === "greeting") {
      if (this.buf.length < 2) return { kind: "pending" };
      if (this.buf[0] !== 5 || this.buf[1] !== 0) return this.fail("server refused method 0x00");
      this.buf = this.buf.subarray(2);
      const a = Buffer.from(this.addr, "latin1");
      this.out.push(new Uint8Array([5, 1, 0, 3, a.length, ...a, 0, 0]));
      this.stage = "connect";
    }
    if (this.stage === "connect") {
      if (this.buf.length < 5) return { kind: "pending" };
      if (this.buf[0] !== 5 || this.buf[1] !== 0) return this.fail(`CONNECT failed (REP ${this.buf[1] ?? "?"})`);
      const atyp = this.buf[3];
      const addrLen = atyp === 1 ? 4 : atyp === 4 ? 16 : atyp === 3 ? 1 + (this.buf[4] ?? 0) : -1;
      if (addrLen < 0) return this.fail("bad ATYP in reply");
      const total = 4 + addrLen + 2;
      if (this.buf.length < total) return { kind: "pending" };
      const rest = this.buf.subarray(total);
      this.stage = "done";
      return { kind: "done", addr: this.addr, rest };
    }
    return this.stage === "done" ? { kind: "done", addr: this.addr, rest: new Uint8Array(0) } : { kind: "failed", reason: "failed" };
  }

  private fail(reason: string): Socks5Result {
    this.stage = "failed";
    return { kind: "failed", reason };
  }
}

/** Server side (a direct candidate): accepts only DST.ADDR values `accept` knows. */
export class Socks5ServerNegotiator {
  private buf: Uint8Array = new Uint8Array(0);
  private stage: "greeting" | "request" | "done" | "failed" = "greeting";
  readonly out: Uint8Array[] = [];

  constructor(private readonly accept: (addr: string) => boolean) {}

  feed(bytes: Uint8Array): Socks5Result {
    if (this.stage === "done" || this.stage === "failed") return { kind: "failed", reason: "negotiation already over" };
    this.buf = concat(this.buf, bytes);
    if (this.stage === "greeting") {
      if (this.buf.length < 2) return { kind: "pending" };
      const n = this.buf[1] ?? 0;
      if (this.buf.length < 2 + n) return { kind: "pending" };
      const methods = this.buf.subarray(2, 2 + n);
      if (this.buf[0] !== 5 || !methods.includes(0)) {
        this.out.push(new Uint8Array([5, 0xff]));
        return this.fail("no acceptable method");
      }
      this.out.push(new Uint8Array([5, 0]));
      this.buf = this.buf.subarray(2 + n);
      this.stage = "request";
    }
    if (this.stage === "request") {
      if (this.buf.length < 5) return { kind: "pending" };
      const len = this.buf[4] ?? 0;
      if (this.buf.length < 5 + len + 2) return { kind: "pending" };
      const ok = this.buf[0] === 5 && this.buf[1] === 1 && this.buf[3] === 3;
      const addr = Buffer.from(this.buf.subarray(5, 5 + len)).toString("latin1");
      const reply = (rep: number): Uint8Array => new Uint8Array([5, rep, 0, 3, len, ...this.buf.subarray(5, 5 + len), 0, 0]);
      if (!ok) {
        this.out.push(reply(7)); // command not supported
        return this.fail("not a CONNECT with a domain name");
      }
      if (!this.accept(addr)) {
        this.out.push(reply(2)); // connection not allowed by ruleset
        return this.fail("unknown DST.ADDR");
      }
      this.out.push(reply(0));
      const rest = this.buf.subarray(5 + len + 2);
      this.stage = "done";
      return { kind: "done", addr, rest };
    }
    return { kind: "failed", reason: "failed" };
  }

  private fail(reason: string): Socks5Result {
    this.stage = "failed";
    return { kind: "failed", reason };
  }
}
