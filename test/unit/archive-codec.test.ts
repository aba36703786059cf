/**
 * Known answers for the archive codec and crypto: every XEP-0136 v1.3.1 archiving example
 * and the XEP-0241 v0.1 encrypted-collection examples in test/vectors/archive/<case>.xml,
 * paired with the typed object <case>.json (XML -> JSON, JSON -> XML -> JSON, and the
 * built XML has the example's shape); RFC 3394 section 4.6 for the kw-aes256 key wrap;
 * round trips of encrypted items, wrapped data keys and the passphrase export.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { fromHex, toHex } from "../../src/core/bytes.js";
import { SeededRandom } from "../../src/core/testing.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { el, elements, type Element, normalize, parseXml } from "../../src/xml/index.js";
import { type ArchiveIq, archiveIqToXml, chatToXml, NS_XENC, parseArchiveIq, parseChat } from "../../src/archive/codec.js";
import {
  ALG_AES256_GCM,
  decryptItems,
  encryptItems,
  exportArchiveKey,
  importArchiveKey,
  newArchiveKey,
  newDataKey,
  nodeArchiveCrypto,
  openCollection,
  unwrapDataKey,
  wrapDataKey,
} from "../../src/archive/crypto.js";
import { ArchiveError } from "../../src/archive/errors.js";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "vectors", "archive");
const cases = readdirSync(dir)
  .filter((f) => f.endsWith(".xml"))
  .map((f) => f.slice(0, -4))
  .sort();

const readXml = (c: string): Element => parseXml(readFileSync(join(dir, `${c}.xml`), "utf8").replace(/<!--[\s\S]*?-->/g, "").trim());
const readJson = (c: string): unknown => JSON.parse(readFileSync(join(dir, `${c}.json`), "utf8")) as unknown;
const json = (x: unknown): unknown => JSON.parse(JSON.stringify(x)) as unknown;

/** XML Encryption schema order inside EncryptedKey (the XEP-0241 examples put CarriedKeyName first). */
function schemaOrder(e: Element): Element {
  for (const c of elements(e)) schemaOrder(c);
  if (e.name === "EncryptedKey" && e.getNS() === NS_XENC) {
    const rank = (c: unknown): number => (typeof c === "string" ? 0 : (c as Element).name === "CarriedKeyName" ? 2 : 1);
    e.children.sort((a, b) => rank(a) - rank(b));
  }
  return e;
}

test("archive vectors: every fixture has both halves", () => {
  assert.ok(cases.length >= 24, `only ${cases.length} cases`);
  for (const c of cases) assert.doesNotThrow(() => readJson(c), `${c}.json`);
});

for (const c of cases) {
  test(`archive vector ${c}: XML -> JSON`, () => {
    assert.deepEqual(json(parseArchiveIq(readXml(c))), readJson(c));
  });
  test(`archive vector ${c}: JSON -> XML -> JSON`, () => {
    const built = archiveIqToXml(readJson(c) as ArchiveIq);
    assert.deepEqual(json(parseArchiveIq(parseXml(built.toString()))), readJson(c));
  });
  test(`archive vector ${c}: JSON -> XML has the example's shape`, () => {
    const built = archiveIqToXml(readJson(c) as ArchiveIq);
    // Elisions ("." and "[97 more messages]") are character data between elements: normalize drops it.
    assert.equal(normalize([built]), normalize([schemaOrder(readXml(c))]));
  });
}

test("codec: an encrypted collection with plaintext messages is rejected (XEP-0241 section 2)", () => {
  const x = parseXml(
    `<chat xmlns='urn:xmpp:archive' with='a@b/c' start='2024-01-01T00:00:00Z'><to secs='0'><body>x</body></to>` +
      `<EncryptedData xmlns='${NS_XENC}'><EncryptionMethod Algorithm='${ALG_AES256_GCM}'/><CipherData><CipherValue>AAAA</CipherValue></CipherData></EncryptedData></chat>`,
  );
  assert.throws(() => parseChat(x), (e: unknown) => e instanceof ArchiveError && e.condition === "bad-format");
});

test("codec: malformed input gives bad-format, never another exception", () => {
  for (const s of [
    "<chat xmlns='urn:xmpp:archive' start='x'/>",
    "<chat xmlns='urn:xmpp:archive' with='a@b' start='x' version='-1'/>",
    "<chat xmlns='urn:xmpp:archive' with='a@b' start='x' crypt='maybe'/>",
    `<chat xmlns='urn:xmpp:archive' with='a@b' start='x'><EncryptedData xmlns='${NS_XENC}'><CipherData><CipherValue>AA</CipherValue></CipherData></EncryptedData></chat>`,
    `<chat xmlns='urn:xmpp:archive' with='a@b' start='x'><EncryptedKey xmlns='${NS_XENC}'><EncryptionMethod Algorithm='x'/><CipherData><CipherValue>!!</CipherValue></CipherData></EncryptedKey></chat>`,
  ])
    assert.throws(() => parseChat(parseXml(s)), (e: unknown) => e instanceof ArchiveError && e.condition === "bad-format", s);
});

test("crypto: kw-aes256 is RFC 3394 (section 4.6 known answer)", () => {
  const kek = fromHex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
  const key = fromHex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F");
  const wrapped = nodeArchiveCrypto.wrap(kek, key);
  assert.equal(toHex(wrapped), "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21");
  assert.deepEqual(nodeArchiveCrypto.unwrap(kek, wrapped), key);
  wrapped[3] = (wrapped[3] ?? 0) ^ 1;
  assert.equal(nodeArchiveCrypto.unwrap(kek, wrapped), undefined);
});

test("crypto: items encrypt under a data key wrapped by the archive key, and open", () => {
  const r = new SeededRandom(nodeCrypto, "archive-crypto");
  const ak = newArchiveKey(r);
  const dk = newDataKey(r);
  const items = [
    { kind: "to" as const, utc: "2024-05-01T10:00:00.000Z", bodies: ["hello <b>&amp; bye"] },
    { kind: "from" as const, utc: "2024-05-01T10:00:01.000Z", bodies: ["réponse"] },
  ];
  const data = encryptItems(items, dk, r);
  assert.equal(data.algorithm, ALG_AES256_GCM);
  assert.ok(!data.cipherValue.includes("hello"));
  assert.deepEqual(json(decryptItems(data, dk)), json(items));
  const wrapped = wrapDataKey(dk, ak);
  assert.equal(wrapped.keyName, ak.name);
  assert.deepEqual(unwrapDataKey(wrapped, ak).key, dk.key);
  const chat = parseChat(
    chatToXml({ with: "bob@example.org/phone", start: "2024-05-01T10:00:00.000Z", crypt: true, items: [{ kind: "encrypted-key", key: wrapped }, { kind: "encrypted-data", data }] }),
  );
  assert.deepEqual(json(openCollection(chat, ak).items), json(items));
  // Another archive key cannot open it; a flipped ciphertext bit fails authentication.
  assert.throws(() => openCollection(chat, newArchiveKey(r)), (e: unknown) => e instanceof ArchiveError && e.condition === "no-key");
  const raw = Buffer.from(data.cipherValue, "base64");
  raw[20] = (raw[20] ?? 0) ^ 1;
  assert.throws(() => decryptItems({ ...data, cipherValue: raw.toString("base64") }, dk), (e: unknown) => e instanceof ArchiveError && e.condition === "decrypt-failed");
});

test("crypto: passphrase export round trip (XML Encryption 1.1 PBKDF2), wrong passphrase refused", () => {
  const r = new SeededRandom(nodeCrypto, "archive-export");
  const ak = newArchiveKey(r);
  const exported = exportArchiveKey(ak, "correct horse battery staple", r, { iterations: 10_000 });
  const x = parseXml(exported);
  assert.equal(x.name, "EncryptedKey");
  assert.ok(!exported.includes(Buffer.from(ak.key).toString("base64")));
  const back = importArchiveKey(exported, "correct horse battery staple");
  assert.equal(back.name, ak.name);
  assert.deepEqual(back.key, ak.key);
  assert.throws(() => importArchiveKey(exported, "wrong"), (e: unknown) => e instanceof ArchiveError && e.condition === "bad-passphrase");
  assert.throws(() => exportArchiveKey(ak, "pw", r, { iterations: 10 }), (e: unknown) => e instanceof ArchiveError && e.condition === "unsupported");
  assert.throws(() => importArchiveKey(el("x").toString(), "pw"), (e: unknown) => e instanceof ArchiveError && e.condition === "bad-format");
});
