/**
 * Known-answer round trips for the negotiation codec: each XEP-0155 v1.2 example (and the
 * two XEP-0116 v0.16 section 4.4 error examples) in test/vectors/negotiation/<case>.xml,
 * paired with the typed object <case>.json.
 * - parse(XML) equals the JSON;
 * - build(JSON) parses back to the same JSON;
 * - build(JSON), normalized (XEP-0116 section 13 "spec" style: attribute order, quoting
 *   and inter-element whitespace/text removed), equals the example normalized: the same
 *   elements, attributes and values as the spec shows ("..." elisions aside).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { normalize, parseXml } from "../../src/xml/index.js";
import { buildNegotiationStanza, parseNegotiationStanza, type NegotiationStanza } from "../../src/negotiation/codec.js";

const dir = join(dirname(fileURLToPath(import.meta.url)), "negotiation");
const cases = readdirSync(dir)
  .filter((f) => f.endsWith(".xml"))
  .map((f) => f.slice(0, -4))
  .sort();

function readXml(name: string) {
  return parseXml(readFileSync(join(dir, `${name}.xml`), "utf8").replace(/<!--[\s\S]*?-->/g, "").trim());
}

function readJson(name: string): unknown {
  return JSON.parse(readFileSync(join(dir, `${name}.json`), "utf8")) as unknown;
}

/** The typed object as plain JSON data (drops undefined, brands are just strings). */
function json(x: NegotiationStanza): unknown {
  return JSON.parse(JSON.stringify(x)) as unknown;
}

test("every fixture has both halves", () => {
  assert.ok(cases.length >= 17, `only ${cases.length} cases`);
  for (const c of cases) assert.doesNotThrow(() => readJson(c), `${c}.json`);
});

for (const c of cases) {
  test(`vector ${c}: XML -> JSON`, () => {
    assert.deepEqual(json(parseNegotiationStanza(readXml(c))), readJson(c));
  });

  test(`vector ${c}: JSON -> XML -> JSON`, () => {
    const fixture = readJson(c) as NegotiationStanza;
    const built = buildNegotiationStanza(fixture);
    const reparsed = parseNegotiationStanza(parseXml(built.toString()));
    assert.deepEqual(json(reparsed), readJson(c));
  });

  test(`vector ${c}: JSON -> XML has the spec example's shape`, () => {
    const built = buildNegotiationStanza(readJson(c) as NegotiationStanza);
    // The examples elide content with "..."; an elision is no content.
    const example = parseXml(readXml(c).toString().replace(/>\s*\.\.\.\s*</g, "><"));
    assert.equal(normalize([built]), normalize([example]));
  });
}
