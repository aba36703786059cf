/**
 * The part of Node's `Buffer` that the library's shared modules use, for the browser
 * bundle only (injected by ./build.ts in place of the free identifier `Buffer`): copying
 * bytes, Base64 / Base64url / hex / UTF-8 conversions, alloc and concat. The key codec
 * (src/identity/keyvalue.ts) converts key octets this way on the path the web client uses
 * to record peers' keys (./shim-crypto.ts). Conversions go through src/core/bytes.ts.
 *
 * Spec: RFC 4648 sections 4 and 5 (Base64, Base64url), Node.js Buffer API (the subset).
 */
import { fromBase64, fromHex, fromUtf8, toBase64, toHex, utf8 } from "../core/bytes.js";

export type BufferEncoding = "utf8" | "utf-8" | "base64" | "base64url" | "hex";

function fromB64url(s: string): Uint8Array {
  const std = s.replace(/-/g, "+").replace(/_/g, "/");
  const b = fromBase64(std + "=".repeat((4 - (std.length % 4)) % 4));
  if (b === undefined) throw new TypeError("invalid base64url");
  return b;
}

/** Bytes that print themselves in an encoding, as a Node Buffer does. */
export class BufferBytes extends Uint8Array {
  override toString(enc: BufferEncoding = "utf8"): string {
    const plain = new Uint8Array(this.buffer, this.byteOffset, this.byteLength);
    switch (enc) {
      case "base64":
        return toBase64(plain);
      case "base64url":
        return toBase64(plain).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
      case "hex":
        return toHex(plain);
      case "utf8":
      case "utf-8":
        return fromUtf8(plain);
    }
  }
}

function copyOf(b: Uint8Array): BufferBytes {
  const out = new BufferBytes(b.length);
  out.set(b);
  return out;
}

export const Buffer = {
  from(v: string | ArrayBuffer | ArrayLike<number>, encOrOffset?: BufferEncoding | number, length?: number): BufferBytes {
    if (typeof v === "string") {
      const enc = typeof encOrOffset === "string" ? encOrOffset : "utf8";
      const bytes = enc === "base64" ? fromBase64(v) : enc === "base64url" ? fromB64url(v) : enc === "hex" ? fromHex(v) : utf8(v);
      if (bytes === undefined) throw new TypeError(`invalid ${enc}`);
      return copyOf(bytes);
    }
    if (v instanceof ArrayBuffer) {
      const offset = typeof encOrOffset === "number" ? encOrOffset : 0;
      return copyOf(new Uint8Array(v, offset, length ?? v.byteLength - offset));
    }
    return copyOf(Uint8Array.from(v));
  },
  alloc(n: number): BufferBytes {
    return new BufferBytes(n);
  },
  concat(list: readonly Uint8Array[]): BufferBytes {
    const out = new BufferBytes(list.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const b of list) {
      out.set(b, at);
      at += b.length;
    }
    return out;
  },
};
