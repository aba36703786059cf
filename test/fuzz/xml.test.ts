/**
 * src/xml and the streaming parsers of src/adapters under attack: entity expansion,
 * external entities, deep nesting, huge and many attributes, too many elements, oversized
 * input; each rejected with a typed error after bounded work. Work is counted (elements
 * created, characters tokenized), never timed. Plus the fuzz targets of ./targets/xml.ts.
 *
 * Spec: RFC 6120 section 11.1 (no DTDs, no entity declarations: restricted-xml), 4.9.3.14
 * (policy-violation), 4.9.3.13 (not-well-formed); ../../src/limits.ts for the limits.
 */
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { limitedParser, limitedStreamParser, SLICE, StreamLimitError } from "../../src/adapters/stream-limits.js";
import { configureLimits, DEFAULT_LIMITS, LimitsError, resetLimits } from "../../src/limits.js";
import { parseXml, XmlError, type XmlParseStats, type Element } from "../../src/xml/index.js";
import FramedParser from "@xmpp/websocket/lib/FramedParser.js";
import { xmlTargets } from "./targets/xml.js";
import { registerTargets } from "./run.js";

registerTargets(xmlTargets);

afterEach(() => resetLimits());

function stats(): XmlParseStats {
  return { elements: 0, attributes: 0, scanned: 0 };
}

function rejects(s: string, condition: XmlError["condition"], st = stats()): XmlParseStats {
  assert.throws(
    () => parseXml(s, { stats: st }),
    (e: unknown) => e instanceof XmlError && e.condition === condition,
  );
  return st;
}

const LOL = `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<message><body>&lol9;</body></message>`;

test("billion laughs: refused as restricted-xml before any element is built", () => {
  const st = rejects(LOL, "restricted-xml");
  assert.equal(st.elements, 0);
  assert.equal(st.scanned, 0);
});

test("external entities and any DTD declaration are refused before tokenizing", () => {
  for (const s of [
    `<!DOCTYPE m [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><message><body>&xxe;</body></message>`,
    `<!DOCTYPE message SYSTEM "http://127.0.0.1:1/evil.dtd"><message/>`,
    `<message><!ELEMENT a ANY><body/></message>`,
    `<message><!ATTLIST body x CDATA "y"><body/></message>`,
    `<message><!doctype x><body/></message>`,
  ]) {
    const st = rejects(s, "restricted-xml");
    assert.equal(st.scanned, 0, s);
  }
});

test("an undeclared entity reference is not expanded: not-well-formed", () => {
  rejects("<message><body>&lol9;</body></message>", "not-well-formed");
  rejects("<message><body>&#0;</body></message>", "not-well-formed");
  // The predefined entities and character references still work.
  assert.equal(parseXml("<a>&lt;&amp;&#x41;&#66;</a>").getText(), "<&AB");
});

test("deep nesting: stopped at the first element past maxXmlDepth", () => {
  const n = 80_000; // 240 KB: under the size limit, so depth is what stops it
  const s = "<a>".repeat(n) + "</a>".repeat(n);
  const st = rejects(s.slice(0, DEFAULT_LIMITS.maxStanzaBytes), "policy-violation");
  assert.equal(st.elements, DEFAULT_LIMITS.maxXmlDepth + 1);
  // Exactly at the limit is fine.
  const d = DEFAULT_LIMITS.maxXmlDepth;
  assert.equal(parseXml("<a>".repeat(d) + "</a>".repeat(d)).name, "a");
});

test("many attributes: stopped at the first attribute past maxXmlAttributes", () => {
  const attrs = Array.from({ length: 5000 }, (_, i) => `a${i}="x"`).join(" ");
  const st = rejects(`<message ${attrs}/>`, "policy-violation");
  assert.equal(st.elements, 1);
  assert.equal(st.attributes, DEFAULT_LIMITS.maxXmlAttributes + 1);
});

test("a huge attribute value: refused at its element", () => {
  const st = rejects(`<message id="${"A".repeat(DEFAULT_LIMITS.maxXmlAttributeBytes + 1)}"><body/></message>`, "policy-violation");
  assert.equal(st.elements, 1);
});

test("too many elements: stopped at maxXmlElements + 1", () => {
  const st = rejects(`<m>${"<a/>".repeat(DEFAULT_LIMITS.maxXmlElements + 500)}</m>`, "policy-violation");
  assert.equal(st.elements, DEFAULT_LIMITS.maxXmlElements + 1);
});

test("oversized input (a 1 MB Base64 body): refused by size before tokenizing", () => {
  const st = rejects(`<message><body>${"QUFB".repeat(256 * 1024)}</body></message>`, "policy-violation");
  assert.equal(st.scanned, 0);
  assert.equal(st.elements, 0);
});

test("content after the root, text outside it and mismatched tags are not-well-formed", () => {
  rejects("<a/><b/>", "not-well-formed");
  rejects("<a/>junk", "not-well-formed");
  rejects("<a><b></a></b>", "not-well-formed");
  rejects("<a>", "not-well-formed");
  rejects("", "not-well-formed");
  assert.equal(parseXml("<?xml version='1.0'?>\n<a/>\n").name, "a");
});

test("limits are overridable in one place (configureLimits) and per call", () => {
  configureLimits({ maxXmlDepth: 3 });
  rejects("<a><b><c><d/></c></b></a>", "policy-violation");
  resetLimits();
  assert.equal(parseXml("<a><b><c><d/></c></b></a>").name, "a");
  assert.throws(() => parseXml("<a><b/></a>", { limits: { maxXmlDepth: 1 } }), XmlError);
  assert.throws(() => configureLimits({ maxXmlDepth: 0 }), LimitsError);
  assert.throws(() => configureLimits({ maxStanzaBytes: 1.5 }), LimitsError);
});

// ---- the streaming parsers of the @xmpp/client adapter ----------------------------------------

interface StreamRun {
  readonly stanzas: Element[];
  readonly errors: unknown[];
  readonly scanned: number;
  readonly elements: number;
}

type AnyParser = {
  write(s: string): void;
  on(ev: string, h: (x: unknown) => void): void;
  limitsStats: { scanned: number; elements: number };
};

function feed(framed: boolean, chunks: readonly string[], overrides?: Parameters<typeof limitedStreamParser>[0]): StreamRun {
  const P = framed ? limitedParser(FramedParser, true, overrides) : limitedStreamParser(overrides);
  const p = new P() as unknown as AnyParser;
  const stanzas: Element[] = [];
  const errors: unknown[] = [];
  p.on("element", (e) => stanzas.push(e as Element));
  p.on("error", (e) => errors.push(e));
  for (const c of chunks) p.write(c);
  return { stanzas, errors, scanned: p.limitsStats.scanned, elements: p.limitsStats.elements };
}

const HEADER = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;

function cond(r: StreamRun): string | undefined {
  const e = r.errors[0];
  return e instanceof StreamLimitError ? e.condition : e === undefined ? undefined : "other";
}

test("stream parser: ordinary stanzas pass, whitespace keepalives are not kept", () => {
  const r = feed(false, [HEADER, "<message><body>hi</body></message>", " \n ", "<iq type='get' id='1'/>"]);
  assert.deepEqual(r.errors, []);
  assert.equal(r.stanzas.length, 2);
});

test("stream parser: an endless stanza is cut after maxStanzaBytes + one slice", () => {
  const chunk = "A".repeat(64 * 1024);
  const chunks = [HEADER, "<message><body>", ...Array.from({ length: 64 }, () => chunk)]; // 4 MiB offered
  const r = feed(false, chunks);
  assert.equal(cond(r), "policy-violation");
  assert.ok(r.scanned <= HEADER.length + 15 + DEFAULT_LIMITS.maxStanzaBytes + SLICE, `scanned ${r.scanned}`);
});

test("stream parser: many small stanzas in one large chunk are fine (the budget is per stanza)", () => {
  const many = "<message><body>x</body></message>".repeat(20_000); // 660 KB in one write
  const r = feed(false, [HEADER, many]);
  assert.deepEqual(r.errors, []);
  assert.equal(r.stanzas.length, 20_000);
});

test("stream parser: deep nesting, many attributes, DTDs and unknown entities are refused", () => {
  const deep = feed(false, [HEADER, "<message>" + "<a>".repeat(10_000)]);
  assert.equal(cond(deep), "policy-violation");
  assert.equal(deep.elements, 1 + DEFAULT_LIMITS.maxXmlDepth + 1);
  const attrs = feed(false, [HEADER, `<message ${Array.from({ length: 500 }, (_, i) => `a${i}='x'`).join(" ")}/>`]);
  assert.equal(cond(attrs), "policy-violation");
  const dtd = feed(false, [HEADER, "<", "!DOCTYPE x [<!ENTITY a 'b'>]>"]);
  assert.equal(cond(dtd), "restricted-xml");
  const ent = feed(false, [HEADER, "<message><body>&lol;</body></message>"]);
  assert.equal(cond(ent), "not-well-formed");
  const cdata = feed(false, [HEADER, "<message><body><!", "[CDATA[x]]></body></message>"]);
  assert.deepEqual(cdata.errors, []);
  assert.equal(cdata.stanzas.length, 1);
});

test("framed (WebSocket) parser: the same limits per frame", () => {
  const ok = feed(true, ["<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='x' version='1.0'/>", "<message xmlns='jabber:client'><body>hi</body></message>"]);
  assert.deepEqual(ok.errors, []);
  const deep = feed(true, ["<message>" + "<a>".repeat(200)]);
  assert.equal(cond(deep), "policy-violation");
  assert.equal(deep.elements, DEFAULT_LIMITS.maxXmlDepth + 1);
  const big = feed(true, [`<message><body>${"x".repeat(DEFAULT_LIMITS.maxStanzaBytes + 10)}</body></message>`]);
  assert.equal(cond(big), "policy-violation");
  const small = feed(true, ["<message><body>" + "x".repeat(100) + "</body></message>"], { maxStanzaBytes: 50 });
  assert.equal(cond(small), "policy-violation");
});
