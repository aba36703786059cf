/**
 * Codec between public keys (SubjectPublicKeyInfo DER) and the XML-DSig `<KeyValue/>`
 * element ESessions exchange, and the XEP-0116 key fingerprint.
 *
 * Spec: XEP-0116 v0.16 section 4.1 (`init_pubkey`/`resp_pubkey` 'key' = "a public
 * signature-verification key wrapped in a <KeyValue/> element as specified in XML
 * Signature"; 'hash' = "a fingerprint of the public key - the result of processing the
 * Normalized <KeyValue/> element with the selected hash algorithm"), section 10.4
 * (RSAKeyValue MUST, DSAKeyValue SHOULD), section 13 "XML Normalization".
 * XML Signature 1.1 (W3C REC 2013) section 4.5.2 DSAKeyValue (P, Q, G, Y, J?, Seed?,
 * PgenCounter?), 4.5.3 RSAKeyValue (Modulus, Exponent), 4.5.4 ECKeyValue (NamedCurve,
 * PublicKey) and 4.0.1 ds:CryptoBinary ("big-endian ... leading zero octets removed",
 * Base64).
 *
 * Ed25519 (our choice, see docs/identity-and-trust.md): XML-DSig 1.1 has no Edwards key
 * type, so an Ed25519 key is an `<ECKeyValue xmlns='http://www.w3.org/2009/xmldsig11#'>`
 * whose `<NamedCurve URI='urn:oid:1.3.101.112'/>` is the RFC 8410 id-Ed25519 OID (XML-DSig
 * 1.1 names curves by `urn:oid:` URIs) and whose `<PublicKey/>` is the 32-octet RFC 8032
 * public key (the RFC 8410 subjectPublicKey bits) instead of an X9.62 point.
 *
 * ECDSA P-256: the XML-DSig 1.1 section 4.5.2.3 form itself, `<ECKeyValue>` with
 * `<NamedCurve URI='urn:oid:1.2.840.10045.3.1.7'/>` (RFC 5480 secp256r1) and `<PublicKey/>`
 * = Base64 of the uncompressed point 0x04 || X || Y (each coordinate 32 octets; "Support
 * for Elliptic-Curve-Point-to-Octet-String conversion without point compression is
 * REQUIRED", and it is the only form we accept or emit). PublicKey is an ECPointType,
 * not a ds:CryptoBinary: its leading octets are kept.
 *
 * Canonical form: we always emit CryptoBinary without leading zero octets and without
 * whitespace, children in schema order, and only the fields an SPKI carries (no J, Seed,
 * PgenCounter). Fingerprints of peers' keys are taken over this canonical form (see
 * {@link keyFingerprint}) so that the same key always has the same fingerprint however
 * the peer formatted it.
 */
import { createPublicKey } from "node:crypto";
import * as asn1js from "asn1js";
import { fromBase64, mpi, toBase64, utf8 } from "../core/bytes.js";
import type { CryptoProvider, HashAlg } from "../crypto/provider.js";
import { el, elements, normalize, parseXml, type Element, type NormalizeStyle } from "../xml/index.js";
import { IdentityError } from "./errors.js";
import { DEFAULT_KEY_POLICY, inspectPublicKey, type KeyPolicy, type SignAlg } from "./keys.js";

export const XMLDSIG_NS = "http://www.w3.org/2000/09/xmldsig#";
export const XMLDSIG11_NS = "http://www.w3.org/2009/xmldsig11#";
/** RFC 8410 id-Ed25519 as an XML-DSig 1.1 NamedCurve URI. */
export const ED25519_CURVE_URI = "urn:oid:1.3.101.112";
/** RFC 5480 secp256r1 (NIST P-256) as an XML-DSig 1.1 NamedCurve URI. */
export const P256_CURVE_URI = "urn:oid:1.2.840.10045.3.1.7";
/** An uncompressed P-256 point: 0x04 || X || Y. */
const P256_POINT_LENGTH = 65;
const DSA_OID = "1.2.840.10040.4.1";

/** A `<KeyValue/>` as typed data; every value is Base64 (ds:CryptoBinary) as on the wire. */
export type KeyValueData =
  | { readonly type: "rsa"; readonly modulus: string; readonly exponent: string }
  | {
      readonly type: "dsa";
      readonly p: string;
      readonly q: string;
      readonly g: string;
      readonly y: string;
      readonly j?: string;
      readonly seed?: string;
      readonly pgenCounter?: string;
    }
  | { readonly type: "ed25519"; readonly publicKey: string }
  /** `publicKey`: Base64 of the uncompressed X9.62 point (65 octets). */
  | { readonly type: "ec-p256"; readonly publicKey: string };

export function signAlgOfKeyValue(k: KeyValueData): SignAlg {
  switch (k.type) {
    case "rsa":
      return "rsa-sha256";
    case "dsa":
      return "dsa-sha256";
    case "ed25519":
      return "ed25519";
    case "ec-p256":
      return "ecdsa-p256-sha256";
  }
}

function bad(why: string): IdentityError {
  return new IdentityError("malformed-key", why);
}

/** The element's namespace must be `ns` or absent (a Normalized KeyValue has no xmlns). */
function nsOk(e: Element, ns: string): boolean {
  const actual = e.getNS();
  return actual === undefined || actual === null || actual === "" || actual === ns;
}

function textOf(e: Element): string {
  return e.getText().replace(/\s+/g, "");
}

function cryptoBinary(parent: Element, name: string, required: true): string;
function cryptoBinary(parent: Element, name: string, required: false): string | undefined;
function cryptoBinary(parent: Element, name: string, required: boolean): string | undefined {
  const found = elements(parent).filter((c) => c.name === name);
  if (found.length > 1) throw bad(`more than one <${name}/>`);
  const c = found[0];
  if (c === undefined) {
    if (required) throw bad(`<${parent.name}/> lacks <${name}/>`);
    return undefined;
  }
  const t = textOf(c);
  const b = fromBase64(t);
  if (b === undefined || b.length === 0) throw bad(`<${name}/> is not Base64`);
  return t;
}

/**
 * Parses a `<KeyValue/>` element (with or without its namespace, since the Normalized
 * form XEP-0116 puts inside the encrypted identity has none). Throws IdentityError
 * "malformed-key" or "unsupported-algorithm" (another key type, e.g. DEREncodedKeyValue).
 */
export function parseKeyValue(e: Element): KeyValueData {
  if (e.name !== "KeyValue" || !nsOk(e, XMLDSIG_NS)) throw bad("not a <KeyValue/> element");
  const kids = elements(e);
  if (kids.length !== 1) throw bad("<KeyValue/> must hold exactly one key");
  const k = kids[0] as Element;
  if (k.name === "RSAKeyValue" && nsOk(k, XMLDSIG_NS)) {
    return { type: "rsa", modulus: cryptoBinary(k, "Modulus", true), exponent: cryptoBinary(k, "Exponent", true) };
  }
  if (k.name === "DSAKeyValue" && nsOk(k, XMLDSIG_NS)) {
    const seed = cryptoBinary(k, "Seed", false);
    const pgenCounter = cryptoBinary(k, "PgenCounter", false);
    if ((seed === undefined) !== (pgenCounter === undefined)) throw bad("Seed and PgenCounter go together");
    const j = cryptoBinary(k, "J", false);
    return {
      type: "dsa",
      // XML-DSig lets P, Q and G be omitted when "known from the application context";
      // ESessions have no such context, so they are required here.
      p: cryptoBinary(k, "P", true),
      q: cryptoBinary(k, "Q", true),
      g: cryptoBinary(k, "G", true),
      y: cryptoBinary(k, "Y", true),
      ...(j === undefined ? {} : { j }),
      ...(seed === undefined || pgenCounter === undefined ? {} : { seed, pgenCounter }),
    };
  }
  if (k.name === "ECKeyValue" && nsOk(k, XMLDSIG11_NS)) {
    const curve = elements(k).find((c) => c.name === "NamedCurve");
    if (curve === undefined) throw new IdentityError("unsupported-algorithm", "explicit EC parameters");
    const uri = curve.attrs["URI"];
    if (uri === ED25519_CURVE_URI) {
      const publicKey = cryptoBinary(k, "PublicKey", true);
      if (fromBase64(publicKey)?.length !== 32) throw bad("an Ed25519 public key is 32 octets");
      return { type: "ed25519", publicKey };
    }
    if (uri === P256_CURVE_URI) {
      const publicKey = cryptoBinary(k, "PublicKey", true);
      const point = fromBase64(publicKey);
      // XML-DSig 1.1 section 4.5.2.3.1: 0x04 || X || Y; compressed points are not accepted.
      if (point?.length !== P256_POINT_LENGTH || point[0] !== 0x04) throw bad("a P-256 public key is an uncompressed 65-octet point");
      return { type: "ec-p256", publicKey };
    }
    throw new IdentityError("unsupported-algorithm", "EC curve other than Ed25519 and P-256");
  }
  throw new IdentityError("unsupported-algorithm", `key type <${k.name}/>`);
}

/** Parses the serialized (e.g. Normalized) XML of a `<KeyValue/>`. */
export function parseKeyValueXml(xml: string): KeyValueData {
  let e: Element;
  try {
    e = parseXml(xml);
  } catch {
    throw bad("not well-formed XML");
  }
  return parseKeyValue(e);
}

/** Builds the `<KeyValue xmlns='http://www.w3.org/2000/09/xmldsig#'/>` element. */
export function buildKeyValue(k: KeyValueData): Element {
  switch (k.type) {
    case "rsa":
      return el(
        "KeyValue",
        { xmlns: XMLDSIG_NS },
        el("RSAKeyValue", {}, el("Modulus", {}, k.modulus), el("Exponent", {}, k.exponent)),
      );
    case "dsa":
      return el(
        "KeyValue",
        { xmlns: XMLDSIG_NS },
        el(
          "DSAKeyValue",
          {},
          el("P", {}, k.p),
          el("Q", {}, k.q),
          el("G", {}, k.g),
          el("Y", {}, k.y),
          k.j !== undefined && el("J", {}, k.j),
          k.seed !== undefined && el("Seed", {}, k.seed),
          k.pgenCounter !== undefined && el("PgenCounter", {}, k.pgenCounter),
        ),
      );
    case "ed25519":
    case "ec-p256":
      return el(
        "KeyValue",
        { xmlns: XMLDSIG_NS },
        el(
          "ECKeyValue",
          { xmlns: XMLDSIG11_NS },
          el("NamedCurve", { URI: k.type === "ed25519" ? ED25519_CURVE_URI : P256_CURVE_URI }),
          el("PublicKey", {}, k.publicKey),
        ),
      );
  }
}

/** ds:CryptoBinary: Base64 of the big-endian integer without leading zero octets. */
function cb(b: Uint8Array): string {
  return toBase64(mpi(b));
}

function b64urlToBytes(s: string | undefined): Uint8Array {
  if (s === undefined) throw bad("incomplete key");
  return new Uint8Array(Buffer.from(s, "base64url"));
}

function unsignedOf(i: asn1js.Integer): Uint8Array {
  return mpi(new Uint8Array(i.valueBlock.valueHexView));
}

/** A positive ASN.1 INTEGER from unsigned big-endian bytes. */
function positiveInteger(b: Uint8Array): asn1js.Integer {
  const m = mpi(b);
  const bytes = (m[0] ?? 0) & 0x80 ? Uint8Array.from([0, ...m]) : m;
  return new asn1js.Integer({ valueHex: bytes });
}

/**
 * The canonical `<KeyValue/>` data of a public key. Throws IdentityError
 * "malformed-key" / "unsupported-algorithm" / "weak-key" (policy).
 */
export function keyValueFromSpki(spki: Uint8Array, policy: KeyPolicy = DEFAULT_KEY_POLICY): KeyValueData {
  const info = inspectPublicKey(spki, policy);
  const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  switch (info.alg) {
    case "rsa-sha256": {
      const jwk = key.export({ format: "jwk" });
      return { type: "rsa", modulus: cb(b64urlToBytes(jwk.n)), exponent: cb(b64urlToBytes(jwk.e)) };
    }
    case "ed25519": {
      const jwk = key.export({ format: "jwk" });
      return { type: "ed25519", publicKey: toBase64(b64urlToBytes(jwk.x)) };
    }
    case "ecdsa-p256-sha256": {
      const jwk = key.export({ format: "jwk" });
      const x = b64urlToBytes(jwk.x);
      const y = b64urlToBytes(jwk.y);
      if (x.length !== 32 || y.length !== 32) throw bad("P-256 coordinates");
      const point = new Uint8Array(P256_POINT_LENGTH);
      point[0] = 0x04;
      point.set(x, 1);
      point.set(y, 33);
      return { type: "ec-p256", publicKey: toBase64(point) };
    }
    case "dsa-sha256": {
      // node cannot export DSA as JWK: read the RFC 3279 section 2.3.2 structure.
      const der = key.export({ format: "der", type: "spki" });
      const parsed = asn1js.fromBER(new Uint8Array(der));
      const root = parsed.result;
      if (parsed.offset === -1 || !(root instanceof asn1js.Sequence)) throw bad("DSA SPKI");
      const [algId, bits] = root.valueBlock.value;
      if (!(algId instanceof asn1js.Sequence) || !(bits instanceof asn1js.BitString)) throw bad("DSA SPKI");
      const params = algId.valueBlock.value[1];
      if (!(params instanceof asn1js.Sequence)) throw bad("DSA SPKI without parameters");
      const [p, q, g] = params.valueBlock.value;
      if (!(p instanceof asn1js.Integer) || !(q instanceof asn1js.Integer) || !(g instanceof asn1js.Integer)) throw bad("DSA parameters");
      const yParsed = asn1js.fromBER(bits.valueBlock.valueHexView);
      if (yParsed.offset === -1 || !(yParsed.result instanceof asn1js.Integer)) throw bad("DSA public value");
      return {
        type: "dsa",
        p: cb(unsignedOf(p)),
        q: cb(unsignedOf(q)),
        g: cb(unsignedOf(g)),
        y: cb(unsignedOf(yParsed.result)),
      };
    }
  }
}

function bytesOf(b64: string): Uint8Array {
  const b = fromBase64(b64);
  if (b === undefined || b.length === 0) throw bad("not Base64");
  return b;
}

/**
 * The SubjectPublicKeyInfo DER of a `<KeyValue/>`, validated by OpenSSL and checked
 * against `policy`. Throws IdentityError "malformed-key" / "weak-key".
 */
export function spkiFromKeyValue(k: KeyValueData, policy: KeyPolicy = DEFAULT_KEY_POLICY): Uint8Array {
  let der: Uint8Array;
  try {
    switch (k.type) {
      case "rsa": {
        const key = createPublicKey({
          key: { kty: "RSA", n: Buffer.from(mpi(bytesOf(k.modulus))).toString("base64url"), e: Buffer.from(mpi(bytesOf(k.exponent))).toString("base64url") },
          format: "jwk",
        });
        der = new Uint8Array(key.export({ format: "der", type: "spki" }));
        break;
      }
      case "ed25519": {
        const x = bytesOf(k.publicKey);
        if (x.length !== 32) throw bad("an Ed25519 public key is 32 octets");
        const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(x).toString("base64url") }, format: "jwk" });
        der = new Uint8Array(key.export({ format: "der", type: "spki" }));
        break;
      }
      case "ec-p256": {
        const point = bytesOf(k.publicKey);
        if (point.length !== P256_POINT_LENGTH || point[0] !== 0x04) throw bad("a P-256 public key is an uncompressed 65-octet point");
        // OpenSSL checks that the point is on the curve when importing the coordinates.
        const key = createPublicKey({
          key: {
            kty: "EC",
            crv: "P-256",
            x: Buffer.from(point.subarray(1, 33)).toString("base64url"),
            y: Buffer.from(point.subarray(33)).toString("base64url"),
          },
          format: "jwk",
        });
        der = new Uint8Array(key.export({ format: "der", type: "spki" }));
        break;
      }
      case "dsa": {
        const spki = new asn1js.Sequence({
          value: [
            new asn1js.Sequence({
              value: [
                new asn1js.ObjectIdentifier({ value: DSA_OID }),
                new asn1js.Sequence({ value: [positiveInteger(bytesOf(k.p)), positiveInteger(bytesOf(k.q)), positiveInteger(bytesOf(k.g))] }),
              ],
            }),
            new asn1js.BitString({ valueHex: positiveInteger(bytesOf(k.y)).toBER() }),
          ],
        });
        // Round-trip through OpenSSL so that a malformed key fails here, not at verify time.
        const key = createPublicKey({ key: Buffer.from(spki.toBER()), format: "der", type: "spki" });
        der = new Uint8Array(key.export({ format: "der", type: "spki" }));
        break;
      }
    }
  } catch (e) {
    if (e instanceof IdentityError) throw e;
    throw bad(`${k.type} key rejected`);
  }
  inspectPublicKey(der, policy);
  if (k.type === "dsa") checkDsaRanges(k);
  return der;
}

/** FIPS 186-4 section 4.1 / SP 800-89: 1 < g < p and 1 < y < p (comparisons only). */
function checkDsaRanges(k: Extract<KeyValueData, { type: "dsa" }>): void {
  const big = (s: string) => BigInt(`0x${Buffer.from(bytesOf(s)).toString("hex")}`);
  const p = big(k.p);
  for (const [n, v] of [["G", big(k.g)], ["Y", big(k.y)]] as const)
    if (v <= 1n || v >= p) throw bad(`DSA ${n} out of range`);
}

/** The canonical `<KeyValue/>` element of a public key. */
export function keyValueElement(spki: Uint8Array, policy: KeyPolicy = DEFAULT_KEY_POLICY): Element {
  return buildKeyValue(keyValueFromSpki(spki, policy));
}

/**
 * The Normalized (XEP-0116 section 13) canonical `<KeyValue/>` of a public key: the
 * `pubKey` string that goes into the SIGMA MAC and the identity.
 */
export function normalizedKeyValue(spki: Uint8Array, style: NormalizeStyle = "spec"): string {
  return normalize([keyValueElement(spki)], style);
}

/**
 * XEP-0116 section 4.1 'hash': Base64(HASH(Normalized <KeyValue/>)), over the element
 * exactly as given. Use {@link keyFingerprint} to fingerprint a key independently of
 * how a peer formatted it.
 */
export function fingerprint(crypto: CryptoProvider, hashAlg: HashAlg, keyValue: Element, style: NormalizeStyle = "spec"): string {
  return toBase64(crypto.hash(hashAlg, utf8(normalize([keyValue], style))));
}

/** The fingerprint of the canonical `<KeyValue/>` of `spki` (default SHA-256). */
export function keyFingerprint(crypto: CryptoProvider, spki: Uint8Array, hashAlg: HashAlg = "sha256"): string {
  return fingerprint(crypto, hashAlg, keyValueElement(spki));
}

/**
 * A fingerprint for people to compare (XEP-0116 section 7.3: "the full SHA-256
 * fingerprint"): the hex of the Base64-decoded fingerprint in groups of four.
 */
export function displayFingerprint(fp: string): string {
  const b = fromBase64(fp);
  if (b === undefined) return fp;
  const hex = Buffer.from(b).toString("hex").toUpperCase();
  return hex.match(/.{1,4}/g)?.join(" ") ?? hex;
}
