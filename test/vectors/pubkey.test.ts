/**
 * Known-answer round trips for the XEP-0189 codec: each XEP-0189 v0.14 example (sections
 * 3, 4, 5, 8, 9, 10), the XTLS draft's `urn:xmpp:pubkey:0` request and response
 * (draft-meyer-xmpp-e2e-encryption-02 section 5.1) and our `<KeyValue/>` extension, in
 * test/vectors/pubkey/<case>.xml, paired with the typed object <case>.json:
 * - parse(XML) equals the JSON;
 * - build(JSON) parses back to the same JSON;
 * - build(JSON), normalized, equals the example normalized with the whitespace inside
 *   text removed (the examples wrap Base64 and decimal values over lines).
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { buildPubkeyPayload, buildPubkeyStanza, parsePubkeyPayload, parsePubkeyStanza, type PubkeyPayload, type PubkeyStanza } from "../../src/pubkey/codec.js";
import { normalize, parseXml, type Element } from "../../src/xml/index.js";

const dir = join(dirname(fileURLToPath(import.meta.url)), "pubkey");
const cases = readdirSync(dir)
  .filter((f) => f.endsWith(".xml"))
  .map((f) => f.slice(0, -4))
  .sort();

const readXml = (c: string) => parseXml(readFileSync(join(dir, `${c}.xml`), "utf8").replace(/<!--[\s\S]*?-->/g, "").trim());
const readJson = (c: string): unknown => JSON.parse(readFileSync(join(dir, `${c}.json`), "utf8")) as unknown;
const json = (x: unknown): unknown => JSON.parse(JSON.stringify(x)) as unknown;
const isStanza = (e: Element) => ["iq", "message", "presence"].includes(e.name);

function parse(e: Element): unknown {
  return isStanza(e) ? parsePubkeyStanza(e) : parsePubkeyPayload(e);
}
function build(x: unknown, stanza: boolean): Element {
  return stanza ? buildPubkeyStanza(x as PubkeyStanza) : buildPubkeyPayload(x as PubkeyPayload);
}
function squeeze(e: Element): Element {
  for (let i = 0; i < e.children.length; i++) {
    const c = e.children[i];
    if (typeof c === "string") e.children[i] = c.replace(/\s+/g, "");
    else if (c !== undefined) squeeze(c);
  }
  e.children = e.children.filter((c) => c !== "");
  return e;
}

test("every fixture has both halves; all XEP-0189 examples are covered", () => {
  for (const c of cases) assert.doesNotThrow(() => readJson(c), `${c}.json`);
  for (const c of ["pubkey-rsakey", "revocation", "attest", "request", "response", "message", "generating", "generated", "xtls-request", "xtls-response"])
    assert.ok(cases.includes(c), c);
});

for (const c of cases) {
  test(`vector ${c}: XML -> JSON`, () => {
    assert.deepEqual(json(parse(readXml(c))), readJson(c));
  });
  test(`vector ${c}: JSON -> XML -> JSON`, () => {
    const stanza = isStanza(readXml(c));
    assert.deepEqual(json(parse(parseXml(build(readJson(c), stanza).toString()))), readJson(c));
  });
  test(`vector ${c}: JSON -> XML has the example's shape`, () => {
    const x = readXml(c);
    assert.equal(normalize([build(readJson(c), isStanza(x))]), normalize([squeeze(x)]));
  });
}
