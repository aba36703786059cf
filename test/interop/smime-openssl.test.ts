/**
 * Interop with OpenSSL's `openssl cms` (an independent S/MIME implementation), both ways:
 * what we sign / encrypt, OpenSSL verifies / decrypts, and the reverse; RSA-2048 and EC
 * P-256; AES-128/256-CBC (EnvelopedData) and AES-128/256-GCM (AuthEnvelopedData);
 * sign-then-encrypt (RFC 3923 section 6.5 order); several recipients; certificates with
 * id-on-xmppAddr made by either side, and a CA-issued certificate.
 *
 * Spec: draft-ietf-xmpp-e2e-03 section 2 requirement 3 (S/MIME, CMS SignedData and
 * EnvelopedData, AES), RFC 5652, RFC 5083/5084, RFC 5751, RFC 3923 section 6.3.
 * OpenSSL is /usr/bin/openssl (3.0), run on files in a temporary directory. Its
 * `-verify` reads multipart/signed in its default (text) mode: our signed part is already
 * CRLF-canonical, and with `-binary` OpenSSL 3.0 hashes the part differently when it
 * reads S/MIME input. RSA encryption from OpenSSL uses `-keyopt rsa_padding_mode:oaep`
 * (RFC 3560 RSAES-OAEP); its PKCS #1 v1.5 default is refused on purpose (last tests).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { parseJid } from "../../src/core/types.js";
import { systemClock, systemRandom } from "../../src/crypto/node.js";
import {
  checkAddressBinding,
  fromPem,
  generateIdentity,
  importPrivateKey,
  toPem,
  validateChain,
  xmppAddrs,
} from "../../src/smime/certs.js";
import { CONTENT_CIPHERS, type SmimeIdentity } from "../../src/smime/cms.js";
import { SmimeError } from "../../src/smime/errors.js";
import { protectEntity, unprotectEntity } from "../../src/smime/protect.js";

const OPENSSL = "/usr/bin/openssl";
const env = { random: systemRandom, clock: systemClock };
let dir: string;
const ids: Record<"rsa" | "ec" | "ca" | "issued", SmimeIdentity> = {} as never;

const CPIM =
  "Content-type: Message/CPIM\r\n\r\nFrom: <im:alice@localhost>\r\nTo: <im:bob@localhost>\r\nDateTime: 2026-01-01T00:00:00.000Z\r\n\r\n" +
  "Content-type: text/plain; charset=utf-8\r\nContent-ID: <x1@localhost>\r\n\r\nWherefore art thou, Romeo?\r\nsecond line";

function ossl(args: string[], input?: string | Uint8Array): Buffer {
  try {
    return execFileSync(OPENSSL, args, { input: input ?? "", stdio: ["pipe", "pipe", "pipe"] });
  } catch (e) {
    const err = e as { stderr?: Buffer };
    throw new Error(`openssl ${args[0]} ${args[1]} failed: ${err.stderr?.toString() ?? String(e)}`);
  }
}

const f = (name: string) => join(dir, name);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-smime-"));
  ids.rsa = await generateIdentity({ jid: parseJid("alice@localhost"), keyType: "rsa-2048" }, env);
  ids.ec = await generateIdentity({ jid: parseJid("bob@localhost"), keyType: "ec-p256" }, env);
  ids.ca = await generateIdentity({ jid: parseJid("localhost"), keyType: "ec-p256", ca: true, commonName: "Test CA" }, env);
  ids.issued = await generateIdentity({ jid: parseJid("carol@localhost"), keyType: "ec-p256", issuer: ids.ca }, env);
  for (const [k, id] of Object.entries(ids)) {
    writeFileSync(f(`${k}.crt`), toPem(id.certificate, "CERTIFICATE"));
    writeFileSync(f(`${k}.key`), toPem(id.privateKey, "PRIVATE KEY"), { mode: 0o600 });
  }
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

for (const kind of ["rsa", "ec"] as const) {
  test(`${kind}: we sign (multipart/signed), openssl cms -verify accepts it`, async () => {
    const smime = await protectEntity(CPIM, { signer: ids[kind] }, env);
    writeFileSync(f("signed.eml"), smime);
    const out = ossl(["cms", "-verify", "-in", f("signed.eml"), "-CAfile", f(`${kind}.crt`), "-purpose", "any"]);
    assert.equal(out.toString(), CPIM);
  });

  test(`${kind}: openssl cms -sign, we verify`, async () => {
    writeFileSync(f("content.txt"), CPIM);
    const smime = ossl(["cms", "-sign", "-binary", "-in", f("content.txt"), "-signer", f(`${kind}.crt`), "-inkey", f(`${kind}.key`), "-md", "sha256"]);
    const r = await unprotectEntity(smime.toString(), { identities: [] });
    assert.equal(r.entity, CPIM);
    assert.deepEqual(r.layers, ["signed"]);
    assert.deepEqual(r.signature?.signer, ids[kind].certificate);
  });

  for (const cipher of CONTENT_CIPHERS) {
    test(`${kind} ${cipher}: we encrypt, openssl cms -decrypt reads it`, async () => {
      const smime = await protectEntity(CPIM, { recipients: [ids[kind].certificate], cipher }, env);
      assert.match(smime, cipher.endsWith("gcm") ? /smime-type=authEnveloped-data/ : /smime-type=enveloped-data/);
      writeFileSync(f("enc.eml"), smime);
      const out = ossl(["cms", "-decrypt", "-in", f("enc.eml"), "-recip", f(`${kind}.crt`), "-inkey", f(`${kind}.key`)]);
      assert.equal(out.toString(), CPIM);
    });

    test(`${kind} ${cipher}: openssl cms -encrypt, we decrypt`, async () => {
      writeFileSync(f("content.txt"), CPIM);
      const args = ["cms", "-encrypt", "-binary", "-in", f("content.txt"), `-${cipher}`, "-recip", f(`${kind}.crt`)];
      if (kind === "rsa") args.push("-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256");
      const smime = ossl(args).toString();
      const r = await unprotectEntity(smime, { identities: [ids[kind]] });
      assert.equal(r.entity, CPIM);
      assert.equal(r.encryption?.cipher, cipher);
    });
  }

  test(`${kind}: sign-then-encrypt both ways`, async () => {
    // Ours -> OpenSSL: decrypt, then verify the multipart/signed inside.
    const smime = await protectEntity(CPIM, { signer: ids[kind], recipients: [ids[kind].certificate], cipher: "aes-256-gcm" }, env);
    writeFileSync(f("se.eml"), smime);
    const inner = ossl(["cms", "-decrypt", "-in", f("se.eml"), "-recip", f(`${kind}.crt`), "-inkey", f(`${kind}.key`)]);
    assert.match(inner.toString(), /^Content-Type: multipart\/signed/);
    writeFileSync(f("inner.eml"), inner);
    const out = ossl(["cms", "-verify", "-in", f("inner.eml"), "-CAfile", f(`${kind}.crt`), "-purpose", "any"]);
    assert.equal(out.toString(), CPIM);
    // OpenSSL -> ours: sign, then encrypt the S/MIME output.
    writeFileSync(f("content.txt"), CPIM);
    const signed = ossl(["cms", "-sign", "-binary", "-in", f("content.txt"), "-signer", f(`${kind}.crt`), "-inkey", f(`${kind}.key`)]);
    writeFileSync(f("signed.eml"), signed);
    const args = ["cms", "-encrypt", "-binary", "-in", f("signed.eml"), "-aes-128-cbc", "-recip", f(`${kind}.crt`)];
    if (kind === "rsa") args.push("-keyopt", "rsa_padding_mode:oaep");
    const r = await unprotectEntity(ossl(args).toString(), { identities: [ids[kind]] });
    assert.deepEqual(r.layers, ["enveloped", "signed"]);
    assert.equal(r.entity, CPIM);
  });
}

test("several recipients (RSA and EC): each decrypts ours with openssl; we decrypt openssl's as each", async () => {
  const smime = await protectEntity(CPIM, { recipients: [ids.rsa.certificate, ids.ec.certificate], cipher: "aes-256-cbc" }, env);
  writeFileSync(f("multi.eml"), smime);
  for (const k of ["rsa", "ec"] as const)
    assert.equal(ossl(["cms", "-decrypt", "-in", f("multi.eml"), "-recip", f(`${k}.crt`), "-inkey", f(`${k}.key`)]).toString(), CPIM);
  writeFileSync(f("content.txt"), CPIM);
  const theirs = ossl([
    "cms", "-encrypt", "-binary", "-in", f("content.txt"), "-aes-128-gcm",
    "-recip", f("rsa.crt"), "-keyopt", "rsa_padding_mode:oaep", "-recip", f("ec.crt"),
  ]).toString();
  for (const k of ["rsa", "ec"] as const) assert.equal((await unprotectEntity(theirs, { identities: [ids[k]] })).entity, CPIM);
  // Someone else (the CA's key) is not a recipient: a typed error.
  await assert.rejects(unprotectEntity(theirs, { identities: [ids.issued] }), (e: unknown) => e instanceof SmimeError && e.condition === "decryption-failed");
});

test("RSAES-PKCS1-v1_5 key transport (openssl's RSA default) is refused with a typed error", async () => {
  writeFileSync(f("content.txt"), CPIM);
  const smime = ossl(["cms", "-encrypt", "-binary", "-in", f("content.txt"), "-aes-128-cbc", "-recip", f("rsa.crt")]).toString();
  await assert.rejects(unprotectEntity(smime, { identities: [ids.rsa] }), (e: unknown) => e instanceof SmimeError && e.condition === "unsupported-algorithm");
});

test("certificates: openssl-made id-on-xmppAddr SAN is read; our CA-issued certificate verifies in openssl and in our path validation", async () => {
  ossl([
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("o.key"), "-out", f("o.crt"),
    "-days", "2", "-subj", "/CN=romeo@localhost", "-addext", "subjectAltName=otherName:1.3.6.1.5.5.7.8.5;UTF8:romeo@localhost",
  ]);
  const [cert] = fromPem(readFileSync(f("o.crt"), "utf8"), "CERTIFICATE");
  assert.ok(cert);
  assert.deepEqual(xmppAddrs(cert), ["romeo@localhost"]);
  checkAddressBinding(cert, parseJid("romeo@localhost/balcony"));
  assert.throws(() => checkAddressBinding(cert, parseJid("juliet@localhost")), (e: unknown) => e instanceof SmimeError && e.condition === "address-mismatch");
  // The imported openssl identity signs; openssl verifies ours and we verify theirs.
  const romeo: SmimeIdentity = { certificate: cert, privateKey: importPrivateKey(readFileSync(f("o.key"))) };
  const signed = await protectEntity(CPIM, { signer: romeo, recipients: [cert] }, env);
  const r = await unprotectEntity(signed, { identities: [romeo] });
  assert.equal(r.entity, CPIM);
  // CA-issued: OpenSSL builds the chain from the CA file; so do we.
  const smime = await protectEntity(CPIM, { signer: ids.issued }, env);
  writeFileSync(f("issued.eml"), smime);
  assert.equal(ossl(["cms", "-verify", "-in", f("issued.eml"), "-CAfile", f("ca.crt"), "-purpose", "any"]).toString(), CPIM);
  const v = await unprotectEntity(smime, { identities: [] });
  assert.ok(v.signature);
  await validateChain(v.signature.signer, { anchors: [ids.ca.certificate], intermediates: v.signature.certificates, at: Date.now() });
  await assert.rejects(
    validateChain(v.signature.signer, { anchors: [ids.rsa.certificate], intermediates: v.signature.certificates, at: Date.now() }),
    (e: unknown) => e instanceof SmimeError && e.condition === "untrusted-certificate",
  );
  assert.deepEqual(xmppAddrs(ids.issued.certificate), ["carol@localhost"]);
});
