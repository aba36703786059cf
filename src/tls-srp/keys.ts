/**
 * The TLS 1.2 key schedule for the SRP suites: PRF (P_SHA256), master secret (plain and
 * RFC 7627 extended), key block, Finished verify_data.
 *
 * Spec: RFC 5246 (TLS 1.2) section 5 (HMAC and the Pseudorandom Function; every suite we
 * speak uses the SHA-256 PRF), 6.3 (key calculation: MAC keys then encryption keys; CBC
 * suites take no IV from the key block in TLS 1.2 because the IV is explicit), 7.4.9
 * (Finished, verify_data_length 12), 8.1 (master secret); RFC 7627 section 4.
 */
import { concat } from "../core/bytes.js";
import type { TlsCrypto } from "./crypto.js";

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** PRF(secret, label, seed) = P_SHA256(secret, label + seed), truncated to `length`. */
export function prf(crypto: TlsCrypto, secret: Uint8Array, label: string, seed: Uint8Array, length: number): Uint8Array {
  const labelSeed = concat(ascii(label), seed);
  const out = new Uint8Array(length);
  let a = labelSeed; // A(0)
  let off = 0;
  while (off < length) {
    a = crypto.hmac("sha256", secret, a); // A(i) = HMAC(secret, A(i-1))
    const block = crypto.hmac("sha256", secret, a, labelSeed);
    out.set(block.subarray(0, Math.min(block.length, length - off)), off);
    off += block.length;
  }
  return out;
}

export function masterSecret(
  crypto: TlsCrypto,
  premaster: Uint8Array,
  clientRandom: Uint8Array,
  serverRandom: Uint8Array,
  sessionHash: Uint8Array | undefined,
): Uint8Array {
  // RFC 7627 section 4: with the extension, the seed is the session hash of the
  // transcript up to and including ClientKeyExchange.
  return sessionHash
    ? prf(crypto, premaster, "extended master secret", sessionHash, 48)
    : prf(crypto, premaster, "master secret", concat(clientRandom, serverRandom), 48);
}

export interface DirectionKeys {
  readonly macKey: Uint8Array;
  readonly encKey: Uint8Array;
}

export function keyBlock(
  crypto: TlsCrypto,
  master: Uint8Array,
  clientRandom: Uint8Array,
  serverRandom: Uint8Array,
  keyLength: number,
): { client: DirectionKeys; server: DirectionKeys } {
  const macLength = 20; // HMAC-SHA1 for every *_CBC_SHA suite
  const kb = prf(crypto, master, "key expansion", concat(serverRandom, clientRandom), 2 * macLength + 2 * keyLength);
  let o = 0;
  const take = (n: number) => kb.slice(o, (o += n));
  const clientMac = take(macLength);
  const serverMac = take(macLength);
  const clientKey = take(keyLength);
  const serverKey = take(keyLength);
  return { client: { macKey: clientMac, encKey: clientKey }, server: { macKey: serverMac, encKey: serverKey } };
}

export function verifyData(crypto: TlsCrypto, master: Uint8Array, label: "client finished" | "server finished", transcriptHash: Uint8Array): Uint8Array {
  return prf(crypto, master, label, transcriptHash, 12);
}
