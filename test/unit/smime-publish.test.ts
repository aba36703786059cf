/**
 * Certificates in XEP-0189 `<pubkey/>` items (src/smime/publish.ts): building the item
 * for RSA and EC certificates and for a certificate with its chain (certs-only PKCS #7,
 * also read by `openssl pkcs7`), the round trip through the XEP-0189 codec's XML, and the
 * checks on what is fetched (key, print, JID, address binding, validity, malformed URIs).
 *
 * Spec: XEP-0189 v0.14 sections 3, 6, 8; RFC 3923 sections 6.2-6.3; RFC 2397; RFC 2585
 * section 4.1; RFC 8551 section 3.2.2.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fromBase64, toBase64 } from "../../src/core/bytes.js";
import { parseJid } from "../../src/core/types.js";
import { VirtualClock } from "../../src/core/testing.js";
import { nodeCrypto, systemClock, systemRandom } from "../../src/crypto/node.js";
import { buildPubkeyPayload, parsePubkeyPayload, type PubKey } from "../../src/pubkey/codec.js";
import { keyFingerprint } from "../../src/identity/keyvalue.js";
import { generateIdentity } from "../../src/smime/certs.js";
import type { SmimeIdentity } from "../../src/smime/cms.js";
import { SmimeError } from "../../src/smime/errors.js";
import {
  CERTS_ONLY_URI_PREFIX,
  certificateFromPubKey,
  certificateItemId,
  certificatePubKey,
  certificateResponder,
  certificatesFromUri,
  PKIX_CERT_URI_PREFIX,
} from "../../src/smime/publish.js";
import { parseXml, serialize } from "../../src/xml/index.js";

const env = { random: systemRandom, clock: systemClock };
const ALICE = parseJid("alice@example.org");
let rsa: SmimeIdentity, ec: SmimeIdentity, ca: SmimeIdentity, issued: SmimeIdentity, other: SmimeIdentity;
let dir: string;

before(async () => {
  rsa = await generateIdentity({ jid: ALICE, keyType: "rsa-2048" }, env);
  ec = await generateIdentity({ jid: ALICE, keyType: "ec-p256" }, env);
  ca = await generateIdentity({ jid: parseJid("ca@example.org"), keyType: "ec-p256", ca: true, commonName: "Test CA" }, env);
  issued = await generateIdentity({ jid: ALICE, keyType: "ec-p256", issuer: ca }, env);
  other = await generateIdentity({ jid: parseJid("mallory@example.org"), keyType: "ec-p256" }, env);
  dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-smime-publish-"));
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const cwc = (id: SmimeIdentity) => ({ certificate: id.certificate, chain: id.chain ?? [] });

/** What a peer receives: the payload serialized, parsed by the XEP-0189 codec. */
function overTheWire(pk: PubKey): PubKey {
  const parsed = parsePubkeyPayload(parseXml(serialize(buildPubkeyPayload(pk))));
  assert.equal(parsed.type, "pubkey");
  return parsed as PubKey;
}

function rejects(f: () => unknown, condition: string): void {
  assert.throws(f, (e: unknown) => e instanceof SmimeError && e.condition === condition);
}

describe("certificatePubKey / certificateFromPubKey", () => {
  it("RSA: <key/> is the SPKI, <print/> the XEP-0116 fingerprint, <uri/> the certificate; round trip", () => {
    const pk = certificatePubKey(nodeCrypto, cwc(rsa));
    assert.equal(pk.jid, "alice@example.org");
    assert.ok(pk.uri?.startsWith(PKIX_CERT_URI_PREFIX));
    assert.equal(pk.material.kind, "key");
    const xml = serialize(buildPubkeyPayload(pk));
    assert.match(xml, /^<pubkey xmlns="urn:xmpp:pubkey:2"><begin>[0-9T:-]+Z<\/begin><end>/);
    const got = overTheWire(pk);
    assert.deepEqual(got, pk);
    assert.equal(got.print?.value, keyFingerprint(nodeCrypto, fromBase64(pk.material.kind === "key" ? pk.material.key : "") ?? new Uint8Array()));
    const f = certificateFromPubKey(nodeCrypto, got, ALICE, Date.now(), "x");
    assert.deepEqual(f.certificate, rsa.certificate);
    assert.deepEqual(f.chain, []);
    assert.equal(f.itemId, "x");
  });

  it("EC: no <print/> (no XEP-0116 fingerprint exists), same checks", () => {
    const pk = certificatePubKey(nodeCrypto, cwc(ec));
    assert.equal(pk.print, undefined);
    const f = certificateFromPubKey(nodeCrypto, overTheWire(pk), parseJid("Alice@Example.org/phone"), Date.now());
    assert.deepEqual(f.certificate, ec.certificate);
  });

  it("a CA-issued certificate travels with its chain as certs-only PKCS #7, which OpenSSL reads", () => {
    const pk = certificatePubKey(nodeCrypto, cwc(issued));
    assert.ok(pk.uri?.startsWith(CERTS_ONLY_URI_PREFIX));
    const f = certificateFromPubKey(nodeCrypto, overTheWire(pk), ALICE, Date.now());
    assert.deepEqual(f.certificate, issued.certificate);
    assert.deepEqual(f.chain, [ca.certificate]);
    const p7 = join(dir, "chain.p7c");
    writeFileSync(p7, fromBase64(pk.uri?.slice(CERTS_ONLY_URI_PREFIX.length) ?? "") ?? new Uint8Array());
    const out = execFileSync("openssl", ["pkcs7", "-inform", "DER", "-in", p7, "-print_certs", "-noout"], { encoding: "utf8" });
    assert.match(out, /subject=CN ?= ?alice@example\.org/);
    assert.match(out, /subject=CN ?= ?Test CA/);
  });

  it("the ItemID depends on the key only", () => {
    assert.equal(certificateItemId(rsa.certificate), certificateItemId(rsa.certificate));
    assert.notEqual(certificateItemId(rsa.certificate), certificateItemId(ec.certificate));
    assert.match(certificateItemId(ec.certificate), /^x509-[0-9a-f]{40}$/);
  });

  it("rejects a certificate for another address, a foreign <key/>, a wrong <print/> or <jid/>", () => {
    const now = Date.now();
    // Mallory's certificate published as Alice's: the binding fails.
    rejects(() => certificateFromPubKey(nodeCrypto, certificatePubKey(nodeCrypto, cwc(other)), ALICE, now), "address-mismatch");
    const pk = certificatePubKey(nodeCrypto, cwc(rsa));
    const ecPk = certificatePubKey(nodeCrypto, cwc(ec));
    rejects(() => certificateFromPubKey(nodeCrypto, { ...pk, material: ecPk.material }, ALICE, now), "signature-unverified");
    rejects(() => certificateFromPubKey(nodeCrypto, { ...pk, print: { value: "AAAA" } }, ALICE, now), "signature-unverified");
    rejects(() => certificateFromPubKey(nodeCrypto, { ...pk, print: { algo: "md5", value: "AAAA" } }, ALICE, now), "signature-unverified");
    rejects(() => certificateFromPubKey(nodeCrypto, { ...pk, jid: "bob@example.org" }, ALICE, now), "address-mismatch");
    rejects(() => certificateFromPubKey(nodeCrypto, { ...pk, material: { kind: "rsakey", modulus: "3", publicExponent: "3" } }, ALICE, now), "signature-unverified");
  });

  it("rejects a certificate outside its validity", async () => {
    const clock = new VirtualClock(Date.UTC(2020, 0, 1));
    const old = await generateIdentity({ jid: ALICE, keyType: "ec-p256", days: 1 }, { random: systemRandom, clock });
    rejects(() => certificateFromPubKey(nodeCrypto, certificatePubKey(nodeCrypto, cwc(old)), ALICE, Date.now()), "untrusted-certificate");
  });

  it("rejects missing, foreign and malformed URIs with 'malformed'", () => {
    const pk = certificatePubKey(nodeCrypto, cwc(ec));
    const { uri: _uri, ...noUri } = pk;
    rejects(() => certificateFromPubKey(nodeCrypto, noUri, ALICE, Date.now()), "malformed");
    for (const uri of [
      "https://example.org/alice.crt",
      `${PKIX_CERT_URI_PREFIX}not base64!`,
      `${PKIX_CERT_URI_PREFIX}${toBase64(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01]))}`,
      `${CERTS_ONLY_URI_PREFIX}${toBase64(new Uint8Array([0x30, 0x80]))}`,
      `${CERTS_ONLY_URI_PREFIX}${toBase64(ec.certificate)}`,
      PKIX_CERT_URI_PREFIX,
    ]) {
      rejects(() => certificatesFromUri(uri), "malformed");
      rejects(() => certificateFromPubKey(nodeCrypto, { ...pk, uri }, ALICE, Date.now()), "malformed");
    }
  });
});

describe("certificateResponder", () => {
  it("answers section 8 requests with the certificate <pubkey/> and urn:xmpp:pubkey:0 with <x509cert/>s", () => {
    let current: SmimeIdentity | undefined = issued;
    const r = certificateResponder(nodeCrypto, () => (current === undefined ? undefined : cwc(current)));
    const pk = r.pubkey?.(ALICE);
    assert.ok(pk !== undefined);
    assert.deepEqual(certificateFromPubKey(nodeCrypto, pk, ALICE, Date.now()).chain, [ca.certificate]);
    const legacy = r.legacy?.(ALICE);
    assert.deepEqual(legacy?.keyinfos[0]?.x509certs, [toBase64(issued.certificate), toBase64(ca.certificate)]);
    current = undefined;
    assert.equal(r.pubkey?.(ALICE), undefined);
    assert.equal(r.legacy?.(ALICE), undefined);
  });
});
