/**
 * The identity layer: signing keys (XEP-0116 v0.16 section 10.3: rsa-sha256 MUST,
 * dsa-sha256 SHOULD; Ed25519 for the modern suite), the XML-DSig <KeyValue/> codec
 * (section 10.4; XML Signature 1.1 section 4.5) and fingerprints (section 4.1 'hash'),
 * and keys at rest (section 14). OpenSSL's command line is the independent peer for
 * signatures and PEM files.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, createPrivateKey, createPublicKey, sign as nodeSign } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { after, describe, it } from "node:test";
import { fromBase64, toBase64, toHex } from "../../src/core/bytes.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import {
  buildKeyValue,
  createIdentityKey,
  displayFingerprint,
  exportIdentityJson,
  exportPrivatePem,
  exportPublicPem,
  fingerprint,
  IdentityError,
  importIdentity,
  importPublicKey,
  inspectPublicKey,
  keyFingerprint,
  keyValueElement,
  keyValueFromSpki,
  nodeSigner,
  normalizedKeyValue,
  parseKeyValue,
  parseKeyValueXml,
  readIdentityFile,
  readPrivateFile,
  SIGN_ALG_URI,
  signAlgFromUri,
  spkiFromKeyValue,
  writeIdentityFile,
  type IdentityKey,
  type SignAlg,
} from "../../src/identity/index.js";
import { normalize, parseXml } from "../../src/xml/index.js";

const tmp = mkdtempSync(join(tmpdir(), "xmpp-e2e-identity-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const tmpFile = (name = "key.json") => join(tmp, `d${n++}`, name);

const T0 = Date.UTC(2026, 0, 1);
const ALGS: readonly SignAlg[] = ["rsa-sha256", "dsa-sha256", "ed25519", "ecdsa-p256-sha256"];
const keys = new Map<SignAlg, IdentityKey>(ALGS.map((a) => [a, createIdentityKey(a, T0, { rsaBits: 2048 })]));
function key(a: SignAlg): IdentityKey {
  const k = keys.get(a);
  assert.ok(k);
  return k;
}
const isErr = (condition: IdentityError["condition"]) => (e: unknown) => e instanceof IdentityError && e.condition === condition;
const data = new TextEncoder().encode("HMAC result to sign");
const FAST = { N: 1 << 10, r: 8, p: 1 };

function openssl(args: string[], input?: Uint8Array): Buffer {
  return execFileSync("openssl", args, { input, stdio: ["pipe", "pipe", "pipe"] });
}

describe("signatures", () => {
  for (const alg of ALGS) {
    it(`${alg}: sign/verify, and verify is false (never a throw) on anything wrong`, () => {
      const k = key(alg);
      const sig = nodeSigner.sign(alg, k.privateKey, data);
      assert.equal(nodeSigner.verify(alg, k.publicKey, data, sig), true);
      const bad = sig.slice();
      bad[bad.length - 1] = (bad[bad.length - 1] ?? 0) ^ 1;
      assert.equal(nodeSigner.verify(alg, k.publicKey, data, bad), false);
      assert.equal(nodeSigner.verify(alg, k.publicKey, new TextEncoder().encode("other"), sig), false);
      assert.equal(nodeSigner.verify(alg, new Uint8Array([1, 2, 3]), data, sig), false);
      assert.equal(nodeSigner.verify(alg, k.publicKey, data, new Uint8Array(0)), false);
      for (const other of ALGS.filter((a) => a !== alg)) assert.equal(nodeSigner.verify(other, k.publicKey, data, sig), false);
      assert.throws(() => nodeSigner.sign(ALGS.find((a) => a !== alg) ?? alg, k.privateKey, data), isErr("unsupported-algorithm"));
    });
  }

  it("rsa-sha256 is RSASSA-PKCS1-v1_5 with SHA-256: byte-identical to `openssl dgst -sha256 -sign`", () => {
    const k = key("rsa-sha256");
    const pem = join(tmp, "rsa.pem");
    writeFileSync(pem, exportPrivatePem(k), { mode: 0o600 });
    const theirs = openssl(["dgst", "-sha256", "-sign", pem], data);
    assert.equal(toHex(nodeSigner.sign("rsa-sha256", k.privateKey, data)), toHex(theirs));
  });

  it("ed25519 is RFC 8032 pure Ed25519: byte-identical to `openssl pkeyutl -sign -rawin`", () => {
    const k = key("ed25519");
    const pem = join(tmp, "ed.pem");
    const msg = join(tmp, "msg.bin");
    writeFileSync(pem, exportPrivatePem(k), { mode: 0o600 });
    writeFileSync(msg, data);
    const theirs = openssl(["pkeyutl", "-sign", "-rawin", "-inkey", pem, "-in", msg]);
    assert.equal(toHex(nodeSigner.sign("ed25519", k.privateKey, data)), toHex(theirs));
  });

  it("dsa-sha256 SignatureValue is r || s (XML-DSig 1.1 section 6.4.1), each |q| = 32 octets, and OpenSSL verifies it", () => {
    const k = key("dsa-sha256");
    const sig = nodeSigner.sign("dsa-sha256", k.privateKey, data);
    assert.equal(sig.length, 64);
    // Re-encode r||s as the DER Dss-Sig-Value OpenSSL expects and let it verify.
    const der = nodeSign("sha256", data, { key: createPrivateKey({ key: Buffer.from(k.privateKey), format: "der", type: "pkcs8" }) });
    assert.notEqual(der.length, 64);
    const pub = join(tmp, "dsa-pub.pem");
    const msg = join(tmp, "dsa-msg.bin");
    const sigFile = join(tmp, "dsa.sig");
    writeFileSync(pub, exportPublicPem(k.publicKey));
    writeFileSync(msg, data);
    const r = sig.subarray(0, 32);
    const s = sig.subarray(32);
    const int = (b: Uint8Array) => {
      let v = Array.from(b);
      while (v.length > 1 && v[0] === 0 && ((v[1] ?? 0) & 0x80) === 0) v = v.slice(1);
      if (((v[0] ?? 0) & 0x80) !== 0) v = [0, ...v];
      return [0x02, v.length, ...v];
    };
    const body = [...int(r), ...int(s)];
    writeFileSync(sigFile, Uint8Array.from([0x30, body.length, ...body]));
    const out = openssl(["dgst", "-sha256", "-verify", pub, "-signature", sigFile, msg]).toString();
    assert.match(out, /Verified OK/);
  });

  it("refuses to generate RSA below 2048 bits; policy rejects weak peer keys", () => {
    assert.throws(() => nodeSigner.generate("rsa-sha256", { rsaBits: 1024 }), isErr("weak-key"));
    const weak = nodeSigner.generate("rsa-sha256", { rsaBits: 2048 });
    assert.deepEqual(inspectPublicKey(weak.publicKey), { alg: "rsa-sha256", bits: 2048 });
    assert.throws(() => inspectPublicKey(weak.publicKey, { minRsaBits: 3072, minDsaBits: 2048, minDsaQBits: 224 }), isErr("weak-key"));
    assert.throws(() => inspectPublicKey(new Uint8Array([0x30, 0])), isErr("malformed-key"));
  });

  it("sign_algs URIs: XEP-0116's names, and XML-DSig 1.1 / RFC 9231 aliases on input", () => {
    assert.equal(SIGN_ALG_URI["rsa-sha256"], "http://www.w3.org/2000/09/xmldsig#rsa-sha256");
    assert.equal(SIGN_ALG_URI["dsa-sha256"], "http://www.w3.org/2000/09/xmldsig#dsa-sha256");
    assert.equal(signAlgFromUri("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"), "rsa-sha256");
    assert.equal(signAlgFromUri("http://www.w3.org/2009/xmldsig11#dsa-sha256"), "dsa-sha256");
    assert.equal(signAlgFromUri("http://www.w3.org/2021/04/xmldsig-more#eddsa-ed25519"), "ed25519");
    assert.equal(signAlgFromUri("http://www.w3.org/2000/09/xmldsig#rsa-sha1"), undefined);
  });
});

describe("<KeyValue/> codec", () => {
  for (const alg of ALGS) {
    it(`${alg}: SPKI -> KeyValue -> XML -> KeyValue -> SPKI is the identity`, () => {
      const k = key(alg);
      const e = keyValueElement(k.publicKey);
      const back = spkiFromKeyValue(parseKeyValue(parseXml(e.toString())));
      assert.equal(toHex(back), toHex(k.publicKey));
      // The Normalized form (no xmlns) parses too: it is what travels inside ID_A / ID_B.
      assert.equal(toHex(spkiFromKeyValue(parseKeyValueXml(normalizedKeyValue(k.publicKey)))), toHex(k.publicKey));
    });
  }

  it("RSAKeyValue: Modulus and Exponent are ds:CryptoBinary (Base64, no leading zero octet)", () => {
    const kv = keyValueFromSpki(key("rsa-sha256").publicKey);
    assert.equal(kv.type, "rsa");
    if (kv.type !== "rsa") return;
    assert.equal(kv.exponent, "AQAB");
    const m = fromBase64(kv.modulus);
    assert.equal(m?.length, 256);
    assert.ok((m?.[0] ?? 0) >= 0x80);
    assert.equal(
      normalizedKeyValue(key("rsa-sha256").publicKey),
      `<KeyValue><RSAKeyValue><Modulus>${kv.modulus}</Modulus><Exponent>AQAB</Exponent></RSAKeyValue></KeyValue>`,
    );
  });

  it("DSAKeyValue: P, Q, G, Y in schema order; J, Seed and PgenCounter accepted and ignored", () => {
    const k = key("dsa-sha256");
    const kv = keyValueFromSpki(k.publicKey);
    assert.equal(kv.type, "dsa");
    if (kv.type !== "dsa") return;
    assert.equal(fromBase64(kv.p)?.length, 256);
    assert.equal(fromBase64(kv.q)?.length, 32);
    const xml = `<KeyValue xmlns="http://www.w3.org/2000/09/xmldsig#"><DSAKeyValue><P>${kv.p}</P><Q>${kv.q}</Q><G>${kv.g}</G><Y>${kv.y}</Y><J>AQ==</J><Seed>AQID</Seed><PgenCounter>AQ==</PgenCounter></DSAKeyValue></KeyValue>`;
    const parsed = parseKeyValueXml(xml);
    assert.deepEqual(parsed, { ...kv, j: "AQ==", seed: "AQID", pgenCounter: "AQ==" });
    assert.equal(toHex(spkiFromKeyValue(parsed)), toHex(k.publicKey));
    assert.equal(normalize([buildKeyValue(parsed)]).includes("<PgenCounter>AQ==</PgenCounter>"), true);
  });

  it("Ed25519: ECKeyValue (xmldsig11) with NamedCurve urn:oid:1.3.101.112 and the 32-octet key", () => {
    const e = keyValueElement(key("ed25519").publicKey);
    const ec = e.getChild("ECKeyValue", "http://www.w3.org/2009/xmldsig11#");
    assert.ok(ec);
    assert.equal(ec.getChild("NamedCurve")?.attrs["URI"], "urn:oid:1.3.101.112");
    assert.equal(fromBase64(ec.getChildText("PublicKey") ?? "")?.length, 32);
    assert.equal(toHex(key("ed25519").publicKey).endsWith(toHex(fromBase64(ec.getChildText("PublicKey") ?? "") ?? new Uint8Array())), true);
  });

  it("ECDSA P-256: ECKeyValue with NamedCurve urn:oid:1.2.840.10045.3.1.7 and the uncompressed point; off-curve and compressed points refused", () => {
    const k = key("ecdsa-p256-sha256");
    const e = keyValueElement(k.publicKey);
    const ec = e.getChild("ECKeyValue", "http://www.w3.org/2009/xmldsig11#");
    assert.ok(ec);
    assert.equal(ec.getChild("NamedCurve")?.attrs["URI"], "urn:oid:1.2.840.10045.3.1.7");
    const point = fromBase64(ec.getChildText("PublicKey") ?? "") ?? new Uint8Array();
    assert.equal(point.length, 65);
    assert.equal(point[0], 4);
    // The SPKI's subjectPublicKey is the same X9.62 uncompressed point (RFC 5480 section 2.2).
    assert.equal(toHex(k.publicKey).endsWith(toHex(point)), true);
    assert.equal(inspectPublicKey(k.publicKey).alg, "ecdsa-p256-sha256");
    const kv = keyValueFromSpki(k.publicKey);
    assert.equal(toHex(spkiFromKeyValue(parseKeyValueXml(normalizedKeyValue(k.publicKey)))), toHex(k.publicKey));
    const offCurve = point.slice();
    offCurve[64] = (offCurve[64] ?? 0) ^ 1;
    assert.equal(kv.type, "ec-p256");
    assert.throws(() => spkiFromKeyValue({ type: "ec-p256", publicKey: toBase64(offCurve) }), isErr("malformed-key"));
    const compressed = Uint8Array.from([2 + ((point[64] ?? 0) & 1), ...point.subarray(1, 33)]);
    assert.throws(() => spkiFromKeyValue(parseKeyValueXml(normalize([buildKeyValue({ type: "ec-p256", publicKey: toBase64(compressed) })]))), isErr("malformed-key"));
    // Other curves are not a key type we take (P-384 generated by OpenSSL).
    const p384 = createPublicKey(createPrivateKey(openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]))).export({ format: "der", type: "spki" });
    assert.throws(() => inspectPublicKey(new Uint8Array(p384)), isErr("unsupported-algorithm"));
  });

  it("ecdsa-p256-sha256 SignatureValue is r || s (XML-DSig 1.1 section 6.4.3), 64 octets, and OpenSSL verifies it", () => {
    const k = key("ecdsa-p256-sha256");
    const sig = nodeSigner.sign("ecdsa-p256-sha256", k.privateKey, data);
    assert.equal(sig.length, 64);
    const int = (b: Uint8Array) => {
      let v = Array.from(b);
      while (v.length > 1 && v[0] === 0 && ((v[1] ?? 0) & 0x80) === 0) v = v.slice(1);
      if (((v[0] ?? 0) & 0x80) !== 0) v = [0, ...v];
      return [0x02, v.length, ...v];
    };
    const body = [...int(sig.subarray(0, 32)), ...int(sig.subarray(32))];
    const pub = join(tmp, "ec-pub.pem");
    const msg = join(tmp, "ec-msg.bin");
    const sigFile = join(tmp, "ec.sig");
    writeFileSync(pub, exportPublicPem(k.publicKey));
    writeFileSync(msg, data);
    writeFileSync(sigFile, Uint8Array.from([0x30, body.length, ...body]));
    assert.match(openssl(["dgst", "-sha256", "-verify", pub, "-signature", sigFile, msg]).toString(), /Verified OK/);
    assert.equal(signAlgFromUri("http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"), "ecdsa-p256-sha256");
    assert.equal(SIGN_ALG_URI["ecdsa-p256-sha256"], "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256");
  });

  it("a non-canonical KeyValue (line-wrapped Base64, leading zero octet) is the same key with the same keyFingerprint", () => {
    const k = key("rsa-sha256");
    const kv = keyValueFromSpki(k.publicKey);
    if (kv.type !== "rsa") throw new Error("rsa");
    const padded = toBase64(Uint8Array.from([0, ...(fromBase64(kv.modulus) ?? [])]));
    const wrapped = padded.replace(/(.{64})/g, "$1\n");
    const xml = `<KeyValue xmlns='http://www.w3.org/2000/09/xmldsig#'>\n  <RSAKeyValue>\n    <Modulus>${wrapped}</Modulus>\n    <Exponent>AQAB</Exponent>\n  </RSAKeyValue>\n</KeyValue>`;
    const spki = spkiFromKeyValue(parseKeyValueXml(xml));
    assert.equal(toHex(spki), toHex(k.publicKey));
    assert.equal(keyFingerprint(nodeCrypto, spki), keyFingerprint(nodeCrypto, k.publicKey));
    // `fingerprint` hashes the element exactly as given (Normalized), as XEP-0116 4.1 says.
    assert.notEqual(fingerprint(nodeCrypto, "sha256", parseXml(xml)), keyFingerprint(nodeCrypto, k.publicKey));
  });

  it("fingerprint = Base64(HASH(Normalized KeyValue)), computed independently", () => {
    for (const alg of ALGS) {
      const k = key(alg);
      const norm = normalizedKeyValue(k.publicKey);
      assert.ok(!norm.includes("xmlns"));
      for (const h of ["sha256", "sha512"] as const) {
        const want = createHash(h).update(norm, "utf8").digest("base64");
        assert.equal(fingerprint(nodeCrypto, h, keyValueElement(k.publicKey)), want);
      }
      assert.equal(keyFingerprint(nodeCrypto, k.publicKey), createHash("sha256").update(norm).digest("base64"));
    }
    assert.match(displayFingerprint(keyFingerprint(nodeCrypto, key("ed25519").publicKey)), /^([0-9A-F]{4} ){15}[0-9A-F]{4}$/);
  });

  it("rejects malformed and unsupported KeyValues with typed errors", () => {
    const ns = "http://www.w3.org/2000/09/xmldsig#";
    const cases: Array<[string, IdentityError["condition"]]> = [
      [`<KeyValue xmlns="${ns}"/>`, "malformed-key"],
      [`<KeyValue xmlns="${ns}"><RSAKeyValue><Modulus>AQAB</Modulus></RSAKeyValue></KeyValue>`, "malformed-key"],
      [`<KeyValue xmlns="${ns}"><RSAKeyValue><Modulus>!!</Modulus><Exponent>AQAB</Exponent></RSAKeyValue></KeyValue>`, "malformed-key"],
      [`<KeyValue xmlns="${ns}"><RSAKeyValue><Modulus>AQAB</Modulus><Exponent>AQAB</Exponent><Exponent>AQAB</Exponent></RSAKeyValue></KeyValue>`, "malformed-key"],
      [`<KeyValue xmlns="urn:other"><RSAKeyValue/></KeyValue>`, "malformed-key"],
      [`<KeyValue xmlns="${ns}"><DEREncodedKeyValue xmlns="http://www.w3.org/2009/xmldsig11#">AQAB</DEREncodedKeyValue></KeyValue>`, "unsupported-algorithm"],
      // P-384 (secp384r1) is not a key type we implement; a truncated P-256 point is malformed.
      [`<KeyValue xmlns="${ns}"><ECKeyValue xmlns="http://www.w3.org/2009/xmldsig11#"><NamedCurve URI="urn:oid:1.3.132.0.34"/><PublicKey>AQAB</PublicKey></ECKeyValue></KeyValue>`, "unsupported-algorithm"],
      [`<KeyValue xmlns="${ns}"><ECKeyValue xmlns="http://www.w3.org/2009/xmldsig11#"><NamedCurve URI="urn:oid:1.2.840.10045.3.1.7"/><PublicKey>AQAB</PublicKey></ECKeyValue></KeyValue>`, "malformed-key"],
      [`<KeyValue xmlns="${ns}"><ECKeyValue xmlns="http://www.w3.org/2009/xmldsig11#"><NamedCurve URI="urn:oid:1.3.101.112"/><PublicKey>AQAB</PublicKey></ECKeyValue></KeyValue>`, "malformed-key"],
      [`<KeyValue xmlns="${ns}"><DSAKeyValue><P>AQAB</P><Q>AQAB</Q><G>AQAB</G><Y>AQAB</Y><Seed>AQ==</Seed></DSAKeyValue></KeyValue>`, "malformed-key"],
      [`not xml`, "malformed-key"],
    ];
    for (const [xml, cond] of cases) assert.throws(() => spkiFromKeyValue(parseKeyValueXml(xml)), isErr(cond), xml);
    // A 1024-bit RSA key parses but fails the policy; a tiny modulus is refused by OpenSSL or policy.
    const small = nodeSigner.generate("rsa-sha256", { rsaBits: 2048 });
    const kv = keyValueFromSpki(small.publicKey);
    if (kv.type !== "rsa") throw new Error("rsa");
    const half = toBase64((fromBase64(kv.modulus) ?? new Uint8Array()).subarray(0, 128));
    assert.throws(() => spkiFromKeyValue({ ...kv, modulus: half }), isErr("weak-key"));
    assert.throws(() => spkiFromKeyValue({ ...kv, exponent: "Ag==" }), (e: unknown) => e instanceof IdentityError);
    // DSA with G or Y out of range.
    const d = keyValueFromSpki(key("dsa-sha256").publicKey);
    if (d.type !== "dsa") throw new Error("dsa");
    assert.throws(() => spkiFromKeyValue({ ...d, y: "AQ==" }), (e: unknown) => e instanceof IdentityError);
    assert.throws(() => spkiFromKeyValue({ ...d, g: d.p }), (e: unknown) => e instanceof IdentityError);
  });
});

describe("keys at rest", () => {
  it("an IdentityKey never shows its private key in inspect or JSON", () => {
    const k = key("ed25519");
    const shown = `${inspect(k, { depth: 4 })}${JSON.stringify(k)}`;
    assert.ok(!shown.includes(toBase64(k.privateKey)));
    assert.match(shown, /redacted/);
  });

  for (const alg of ALGS) {
    it(`${alg}: JSON key file round trip, plain and sealed; file mode 0600`, () => {
      const k = key(alg);
      const plain = tmpFile();
      writeIdentityFile(plain, k);
      assert.equal(statSync(plain).mode & 0o777, 0o600);
      assert.equal(statSync(join(plain, "..")).mode & 0o777, 0o700);
      const back = readIdentityFile(plain);
      assert.equal(back.alg, alg);
      assert.equal(toHex(back.privateKey), toHex(k.privateKey));
      assert.equal(back.createdAt, T0);

      const sealed = tmpFile();
      writeIdentityFile(sealed, k, { passphrase: "correct horse", scrypt: FAST });
      const text = readFileSync(sealed, "utf8");
      assert.ok(!text.includes(toBase64(k.privateKey)));
      assert.equal(toHex(readIdentityFile(sealed, { passphrase: "correct horse" }).privateKey), toHex(k.privateKey));
      assert.throws(() => readIdentityFile(sealed), isErr("passphrase-required"));
      assert.throws(() => readIdentityFile(sealed, { passphrase: "wrong" }), isErr("bad-passphrase"));
    });
  }

  it("default scrypt parameters (N = 2^15) seal and open", () => {
    const k = key("ed25519");
    const json = exportIdentityJson(k, { passphrase: "pw" });
    assert.equal((JSON.parse(json) as { sealed: { N: number } }).sealed.N, 32768);
    assert.equal(toHex(importIdentity(json, { passphrase: "pw" }).privateKey), toHex(k.privateKey));
  });

  it("swapping the public key or altering the ciphertext of a sealed file is detected", () => {
    const k = key("ed25519");
    const other = key("rsa-sha256");
    const j = JSON.parse(exportIdentityJson(k, { passphrase: "pw", scrypt: FAST })) as Record<string, unknown>;
    const swapped = JSON.stringify({ ...j, publicKey: toBase64(createIdentityKey("ed25519", T0).publicKey) });
    assert.throws(() => importIdentity(swapped, { passphrase: "pw" }), isErr("bad-passphrase"));
    const sealed = j["sealed"] as Record<string, string>;
    const ct = fromBase64(sealed["ciphertext"] ?? "") ?? new Uint8Array();
    ct[0] = (ct[0] ?? 0) ^ 1;
    assert.throws(() => importIdentity(JSON.stringify({ ...j, sealed: { ...sealed, ciphertext: toBase64(ct) } }), { passphrase: "pw" }), isErr("bad-passphrase"));
    // A plain file whose private key is another key's.
    const plain = JSON.parse(exportIdentityJson(k)) as Record<string, unknown>;
    assert.throws(() => importIdentity(JSON.stringify({ ...plain, privateKey: toBase64(other.privateKey) })), isErr("malformed-key"));
    // Hostile scrypt parameters are refused before any work.
    assert.throws(() => importIdentity(JSON.stringify({ ...j, sealed: { ...sealed, N: 1 << 30 } }), { passphrase: "pw" }), isErr("malformed-key"));
  });

  it("refuses a key file that group or others can read", () => {
    const f = tmpFile();
    writeIdentityFile(f, key("ed25519"));
    chmodSync(f, 0o644);
    assert.throws(() => readIdentityFile(f), isErr("insecure-permissions"));
    assert.equal(readIdentityFile(f, { allowInsecurePermissions: true }).alg, "ed25519");
    assert.throws(() => readPrivateFile(join(tmp, "missing")), isErr("io"));
  });

  it("PEM: OpenSSL reads our PKCS#8 (plain and encrypted) and we read OpenSSL's", () => {
    for (const alg of ALGS) {
      const k = key(alg);
      const f = join(tmp, `${alg}-enc.pem`);
      writeFileSync(f, exportPrivatePem(k, { passphrase: "s3cret" }), { mode: 0o600 });
      const pub = openssl(["pkey", "-in", f, "-passin", "pass:s3cret", "-pubout"]).toString();
      assert.equal(toHex(importPublicKey(pub)), toHex(k.publicKey));
      assert.equal(toHex(importIdentity(readFileSync(f, "utf8"), { passphrase: "s3cret" }).privateKey), toHex(k.privateKey));
      assert.throws(() => importIdentity(readFileSync(f, "utf8")), isErr("passphrase-required"));
      assert.throws(() => importIdentity(readFileSync(f, "utf8"), { passphrase: "nope" }), isErr("bad-passphrase"));
    }
    const theirs = openssl(["genpkey", "-algorithm", "ed25519", "-aes-256-cbc", "-pass", "pass:pw"]).toString();
    const k = importIdentity(theirs, { passphrase: "pw", now: T0 });
    assert.equal(k.alg, "ed25519");
    assert.equal(k.createdAt, T0);
    const rsa = openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]).toString();
    assert.throws(() => importIdentity(rsa), isErr("weak-key"));
  });

  it("importPublicKey accepts PEM, <KeyValue/> and Base64 SPKI and returns canonical SPKI", () => {
    const k = key("dsa-sha256");
    assert.equal(toHex(importPublicKey(exportPublicPem(k.publicKey))), toHex(k.publicKey));
    assert.equal(toHex(importPublicKey(keyValueElement(k.publicKey).toString())), toHex(k.publicKey));
    assert.equal(toHex(importPublicKey(toBase64(k.publicKey))), toHex(k.publicKey));
    assert.throws(() => importPublicKey("garbage"), isErr("malformed-key"));
  });
});
