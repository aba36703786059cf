/**
 * Paired fixtures for the object formats, round-tripped both ways: Message/CPIM (RFC 3862,
 * draft-ietf-xmpp-e2e-03 examples 1 and 3), PIDF (RFC 3863), stanza <-> object mapping
 * (draft sections 3/4 step 1, RFC 3923 section 5 application/xmpp+xml) and the <e2e/>
 * wrapper (draft example 2, section 5 gateway strip/wrap).
 *
 * Fixture files are stored with LF line ends; the objects are CRLF-canonical, and the
 * file's final line break is not part of the object.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { parseJid } from "../../src/core/types.js";
import { type CpimMessage, parseCpim, serializeCpim } from "../../src/cpim/codec.js";
import { cpimToMessagePayload, messageToCpim, type ObjectHeaders } from "../../src/cpim/xmpp.js";
import { parsePidf, serializePidf, type PidfDocument } from "../../src/pidf/codec.js";
import { cpimToPresencePayload, presenceToCpim } from "../../src/pidf/xmpp.js";
import { stripWrapper, wrapObject } from "../../src/smime/e2e.js";
import { canonicalize, contentTypeOf, parseContentType, parseEntity, splitMultipart } from "../../src/smime/mime.js";
import { el, elements, normalize, parseXml } from "../../src/xml/index.js";

const DIR = join(import.meta.dirname, "../vectors/smime");
const read = (f: string) => readFileSync(join(DIR, f), "utf8");
const object = (f: string) => canonicalize(read(f)).replace(/\r\n$/, "");
const json = <T>(f: string): T => {
  const { source: _source, ...rest } = JSON.parse(read(f)) as Record<string, unknown>;
  return rest as T;
};

for (const name of ["cpim-message", "cpim-presence", "cpim-headers"]) {
  test(`CPIM fixture ${name}: parse matches the JSON, serialize gives the bytes back`, () => {
    const text = object(`${name}.cpim`);
    const expected = json<CpimMessage>(`${name}.json`);
    const parsed = parseCpim(text);
    assert.deepEqual(JSON.parse(JSON.stringify(parsed)), expected);
    assert.equal(serializeCpim(expected), text);
    // LF-only input (what comes out of XML) parses to the same object.
    assert.deepEqual(parseCpim(text.replace(/\r\n/g, "\n")), parsed);
  });
}

test("PIDF fixture: parse matches the JSON, serialize gives the document back", () => {
  const xml = object("pidf-juliet.xml");
  const expected = json<PidfDocument>("pidf-juliet.json");
  assert.deepEqual(JSON.parse(JSON.stringify(parsePidf(xml))), expected);
  assert.equal(serializePidf(expected), xml);
});

test("PIDF inside the draft's presence object (example 3) parses", () => {
  const m = parseCpim(object("cpim-presence.cpim"));
  const doc = parsePidf(m.content.body);
  assert.equal(doc.entity, "pres:juliet@capulet.com");
  assert.deepEqual(doc.tuples[0]?.im, "away");
  const p = cpimToPresencePayload(m);
  assert.equal(normalize(p.children), "<show>away</show><status xml:lang=\"en\">retired to the chamber</status>");
});

const HEADERS: ObjectHeaders = {
  from: parseJid("juliet@capulet.com/balcony"),
  to: parseJid("romeo@montague.net/orchard"),
  dateTime: "2003-05-14T11:45:36.000Z",
  contentId: "1234567890@capulet.com",
};

function payloadChildren(stanza: ReturnType<typeof parseXml>): string {
  return normalize(elements(stanza).map((c) => parseXml(c.toString())));
}

for (const name of ["map-message-plain", "map-message-extension"]) {
  test(`stanza mapping ${name}: message -> CPIM bytes -> same payload`, () => {
    const stanza = parseXml(read(`${name}.xml`).trim());
    const text = object(`${name}.cpim`);
    assert.equal(serializeCpim(messageToCpim(stanza, HEADERS)), text);
    const back = cpimToMessagePayload(parseCpim(text));
    assert.equal(normalize(back.children), payloadChildren(stanza));
  });
}

for (const name of ["map-presence-away", "map-presence-caps"]) {
  test(`stanza mapping ${name}: presence -> object bytes -> same payload`, () => {
    const stanza = parseXml(read(`${name}.xml`).trim());
    const text = object(`${name}.cpim`);
    assert.equal(serializeCpim(presenceToCpim(stanza, HEADERS, "t1")), text);
    const back = cpimToPresencePayload(parseCpim(text));
    assert.equal(normalize(back.children), payloadChildren(stanza));
  });
}

test("unavailable presence maps to basic closed and back", () => {
  const stanza = el("presence", { xmlns: "jabber:client", type: "unavailable" }, el("status", {}, "bye"));
  const m = presenceToCpim(stanza, HEADERS, "t1");
  assert.match(m.content.body, /<basic>closed<\/basic>/);
  const back = cpimToPresencePayload(parseCpim(serializeCpim(m)));
  assert.equal(back.type, "unavailable");
  assert.equal(normalize(back.children), "<status>bye</status>");
});

test("draft example 1 content (text/xml <body/>) reads as a body", () => {
  const p = cpimToMessagePayload(parseCpim(object("cpim-message.cpim")));
  assert.equal(normalize(p.children), "<subject>Imploring</subject><body>\nWherefore art thou, Romeo?\n</body>");
});

test("e2e fixture (draft example 2): strip reveals the S/MIME object; wrap puts it back", () => {
  const stanza = parseXml(read("e2e-signed-message.xml"));
  const expected = json<{ kind: "message"; to: string; type: string; smime: string; parts: number; firstPartType: string }>(
    "e2e-signed-message.json",
  );
  const s = stripWrapper(stanza);
  assert.equal(s.smime, expected.smime);
  assert.equal(s.kind, "message");
  assert.equal(s.to, expected.to);
  assert.equal(s.type, expected.type);
  const entity = parseEntity(s.smime);
  const ct = contentTypeOf(entity);
  assert.equal(ct.type, "multipart/signed");
  assert.equal(ct.params.micalg, "sha1");
  const parts = splitMultipart(entity.body, ct.params.boundary ?? "");
  assert.equal(parts.length, expected.parts);
  assert.equal(parseContentType(parseEntity(parts[0] ?? "").headers[0]?.value ?? "").type, expected.firstPartType);
  // Wrap (gateway direction into XMPP) and strip again: same object, CR LF surviving XML.
  const wrapped = wrapObject(s.smime, { kind: "message", to: expected.to, type: "chat" });
  const again = stripWrapper(parseXml(wrapped.toString().replace(/\r\n/g, "\n")));
  assert.equal(again.smime, expected.smime);
});
