/**
 * TLS 1.2 handshake message codecs for the SRP key exchange: ClientHello, ServerHello,
 * Certificate, ServerKeyExchange (ServerSRPParams, optionally signed), ServerHelloDone,
 * ClientKeyExchange (ClientSRPPublic) and Finished; the cipher suites and extensions we
 * speak. Pure functions over bytes; no state.
 *
 * Spec: RFC 5246 (TLS 1.2) sections 7.4.1.2-7.4.9 and 7.4.1.4 (extensions, including
 * 7.4.1.4.1 signature_algorithms); RFC 5054 sections 2.7 (cipher suite values) and 2.8
 * (SRP extension type 12, ServerSRPParams, ClientSRPPublic); RFC 5746 (renegotiation_info
 * 0xff01 and TLS_EMPTY_RENEGOTIATION_INFO_SCSV 0x00ff); RFC 7627 (extended_master_secret 23).
 */
import { concat } from "../core/bytes.js";
import { Reader, u16, u24, u8, vec } from "./codec.js";
import { TlsAbort } from "./errors.js";

export const TLS12 = 0x0303;

/** RFC 5054 section 2.7; AES suites per RFC 3268 naming. The DSS suites are not offered. */
export const SRP_SUITES = {
  TLS_SRP_SHA_WITH_AES_128_CBC_SHA: { code: 0xc01d, keyLength: 16, rsa: false },
  TLS_SRP_SHA_RSA_WITH_AES_128_CBC_SHA: { code: 0xc01e, keyLength: 16, rsa: true },
  TLS_SRP_SHA_WITH_AES_256_CBC_SHA: { code: 0xc020, keyLength: 32, rsa: false },
  TLS_SRP_SHA_RSA_WITH_AES_256_CBC_SHA: { code: 0xc021, keyLength: 32, rsa: true },
} as const;

export type SrpSuiteName = keyof typeof SRP_SUITES;
export const SRP_SUITE_NAMES = Object.keys(SRP_SUITES) as SrpSuiteName[];

export function isSrpSuiteName(s: string): s is SrpSuiteName {
  return Object.hasOwn(SRP_SUITES, s);
}
export function suiteByCode(code: number): SrpSuiteName | undefined {
  return SRP_SUITE_NAMES.find((n) => SRP_SUITES[n].code === code);
}

export const EMPTY_RENEGOTIATION_INFO_SCSV = 0x00ff;

export const HandshakeType = {
  hello_request: 0,
  client_hello: 1,
  server_hello: 2,
  certificate: 11,
  server_key_exchange: 12,
  certificate_request: 13,
  server_hello_done: 14,
  certificate_verify: 15,
  client_key_exchange: 16,
  finished: 20,
} as const;

export const ExtensionType = {
  signature_algorithms: 13,
  srp: 12,
  extended_master_secret: 23,
  renegotiation_info: 0xff01,
} as const;

export const ContentType = { change_cipher_spec: 20, alert: 21, handshake: 22, application_data: 23 } as const;

export interface Extension {
  readonly type: number;
  readonly data: Uint8Array;
}

/** Wraps a handshake body in its header: msg_type(1) length(3) (RFC 5246 section 7.4). */
export function handshake(type: number, body: Uint8Array): Uint8Array {
  return concat(u8(type), u24(body.length), body);
}

function encodeExtensions(exts: readonly Extension[]): Uint8Array {
  return vec(2, ...exts.map((e) => concat(u16(e.type), vec(2, e.data))));
}

function decodeExtensions(r: Reader): Extension[] {
  if (r.remaining === 0) return [];
  const block = new Reader(r.vector(2, 0, 0xffff));
  const out: Extension[] = [];
  const seen = new Set<number>();
  while (block.remaining > 0) {
    const type = block.u16();
    const data = block.vector(2, 0, 0xffff);
    // RFC 5246 section 7.4.1.4: "There MUST NOT be more than one extension of the same type."
    if (seen.has(type)) throw new TlsAbort("decode_error", "duplicate extension");
    seen.add(type);
    out.push({ type, data });
  }
  return out;
}

export interface ClientHello {
  readonly version: number;
  readonly random: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly cipherSuites: readonly number[];
  readonly compressionMethods: Uint8Array;
  readonly extensions: readonly Extension[];
}

export function encodeClientHello(h: ClientHello): Uint8Array {
  return handshake(
    HandshakeType.client_hello,
    concat(
      u16(h.version),
      h.random,
      vec(1, h.sessionId),
      vec(2, ...h.cipherSuites.map(u16)),
      vec(1, h.compressionMethods),
      encodeExtensions(h.extensions),
    ),
  );
}

export function decodeClientHello(body: Uint8Array): ClientHello {
  const r = new Reader(body);
  const version = r.u16();
  const random = r.bytes(32);
  const sessionId = r.vector(1, 0, 32);
  const suites = new Reader(r.vector(2, 2, 0xfffe));
  const cipherSuites: number[] = [];
  while (suites.remaining > 0) cipherSuites.push(suites.u16());
  const compressionMethods = r.vector(1, 1, 0xff);
  const extensions = decodeExtensions(r);
  r.end();
  return { version, random, sessionId, cipherSuites, compressionMethods, extensions };
}

export interface ServerHello {
  readonly version: number;
  readonly random: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly cipherSuite: number;
  readonly compressionMethod: number;
  readonly extensions: readonly Extension[];
}

export function encodeServerHello(h: ServerHello): Uint8Array {
  return handshake(
    HandshakeType.server_hello,
    concat(
      u16(h.version),
      h.random,
      vec(1, h.sessionId),
      u16(h.cipherSuite),
      u8(h.compressionMethod),
      h.extensions.length > 0 ? encodeExtensions(h.extensions) : new Uint8Array(0),
    ),
  );
}

export function decodeServerHello(body: Uint8Array): ServerHello {
  const r = new Reader(body);
  const version = r.u16();
  const random = r.bytes(32);
  const sessionId = r.vector(1, 0, 32);
  const cipherSuite = r.u16();
  const compressionMethod = r.u8();
  const extensions = decodeExtensions(r);
  r.end();
  return { version, random, sessionId, cipherSuite, compressionMethod, extensions };
}

/** Certificate: certificate_list<0..2^24-1> of ASN.1Cert<1..2^24-1> (RFC 5246 section 7.4.2). */
export function encodeCertificate(chain: readonly Uint8Array[]): Uint8Array {
  return handshake(HandshakeType.certificate, vec(3, ...chain.map((c) => vec(3, c))));
}

export function decodeCertificate(body: Uint8Array): Uint8Array[] {
  const r = new Reader(body);
  const list = new Reader(r.vector(3, 0, 0xffffff));
  r.end();
  const out: Uint8Array[] = [];
  while (list.remaining > 0) out.push(list.vector(3, 1, 0xffffff));
  return out;
}

/** ServerSRPParams (RFC 5054 section 2.8.2), kept with its exact encoding for the signature. */
export interface ServerSrpParams {
  readonly N: Uint8Array;
  readonly g: Uint8Array;
  readonly s: Uint8Array;
  readonly B: Uint8Array;
  readonly encoded: Uint8Array;
}

export function encodeSrpParams(N: Uint8Array, g: Uint8Array, s: Uint8Array, B: Uint8Array): Uint8Array {
  return concat(vec(2, N), vec(2, g), vec(1, s), vec(2, B));
}

export interface ServerKeyExchange {
  readonly params: ServerSrpParams;
  /** Present for the *_RSA_* suites: digitally-signed (RFC 5246 section 4.7). */
  readonly signature?: { readonly scheme: number; readonly value: Uint8Array };
}

export function encodeServerKeyExchange(params: Uint8Array, signature?: { scheme: number; value: Uint8Array }): Uint8Array {
  return handshake(
    HandshakeType.server_key_exchange,
    signature ? concat(params, u16(signature.scheme), vec(2, signature.value)) : params,
  );
}

export function decodeServerKeyExchange(body: Uint8Array, signed: boolean): ServerKeyExchange {
  const r = new Reader(body);
  const N = r.vector(2, 1, 0xffff);
  const g = r.vector(2, 1, 0xffff);
  const s = r.vector(1, 1, 0xff);
  const B = r.vector(2, 1, 0xffff);
  const encoded = body.subarray(0, body.length - r.remaining);
  const params = { N, g, s, B, encoded };
  if (!signed) {
    r.end();
    return { params };
  }
  const scheme = r.u16();
  const value = r.vector(2, 0, 0xffff);
  r.end();
  return { params, signature: { scheme, value } };
}

/** ClientSRPPublic: opaque srp_A<1..2^16-1> (RFC 5054 section 2.8.3). */
export function encodeClientKeyExchange(A: Uint8Array): Uint8Array {
  return handshake(HandshakeType.client_key_exchange, vec(2, A));
}

export function decodeClientKeyExchange(body: Uint8Array): Uint8Array {
  const r = new Reader(body);
  const A = r.vector(2, 1, 0xffff);
  r.end();
  return A;
}

/** The SRP extension: opaque srp_I<1..2^8-1> (RFC 5054 section 2.8.1). */
export function encodeSrpExtension(username: Uint8Array): Uint8Array {
  return vec(1, username);
}
export function decodeSrpExtension(data: Uint8Array): Uint8Array {
  const r = new Reader(data);
  const I = r.vector(1, 1, 0xff);
  r.end();
  return I;
}

/** signature_algorithms: supported_signature_algorithms<2..2^16-2> (RFC 5246 7.4.1.4.1). */
export function encodeSignatureAlgorithms(schemes: readonly number[]): Uint8Array {
  return vec(2, ...schemes.map(u16));
}
export function decodeSignatureAlgorithms(data: Uint8Array): number[] {
  const r = new Reader(data);
  const list = new Reader(r.vector(2, 2, 0xfffe));
  r.end();
  const out: number[] = [];
  while (list.remaining > 0) out.push(list.u16());
  return out;
}
