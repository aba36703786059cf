/**
 * Fuzz targets for the codecs (XML <-> typed objects) of every layer: only the layer's
 * typed error escapes (or, for codecs that return a result, nothing escapes at all), and
 * what a codec builds it parses back to the same value.
 *
 * Spec: XEP-0004 v2.x (forms), XEP-0155 v1.2 (negotiation), XEP-0030 v2.5 / XEP-0115
 * v1.6 (disco, caps), XEP-0201 v1.0 (threads), XEP-0189 v0.9 (pubkey), XEP-0187 v0.2
 * (offline options), XEP-0166 v1.1 (Jingle), XEP-0047 v2.0 (IBB), XEP-0116 v0.16 section
 * 4 (ESession forms).
 */
import fc from "fast-check";
import { parseFullJid, parseJid, type ThreadId } from "../../../src/core/types.js";
import { nodeCrypto } from "../../../src/crypto/node.js";
import { capsVer, parseCaps, verifyCaps } from "../../../src/disco/caps.js";
import { DiscoError, infoToXml, parseInfo, parseInfoQuery, parseInfoResult, type DiscoInfo } from "../../../src/disco/codec.js";
import { b64Field, b64Values, carriedForm, fieldOrder, isTermination } from "../../../src/esession/codec.js";
import { ESessionError } from "../../../src/esession/errors.js";
import { f, FormError, formToXml, parseForm, type DataForm, type Field } from "../../../src/forms/codec.js";
import { buildJingle, parseJingle, type Jingle } from "../../../src/jingle/codec.js";
import { dataElement, decodeIbbBase64, openElement, closeElement, parseIbb } from "../../../src/ibb/codec.js";
import {
  buildCompletion,
  buildContinue,
  buildRenegotiation,
  buildRequest,
  buildResponse,
  buildTermination,
  classifyForm,
  isNegotiationStanza,
  negotiationErrorStanza,
  parseNegotiationStanza,
  parseStanzaError,
  ssnForm,
} from "../../../src/negotiation/codec.js";
import { NegotiationError } from "../../../src/negotiation/errors.js";
import { parseLogging, parseDisclosure, parseSecurity, parseMultisession, loggingField, disclosureField, securityField } from "../../../src/negotiation/fields.js";
import { parseDateTime, parseOfflineInit, parseOfflineOptions } from "../../../src/offline/codec.js";
import { OfflineError } from "../../../src/offline/errors.js";
import { buildPubkeyPayload, buildPubkeyStanza, parsePubkeyPayload, parsePubkeyStanza, type PubkeyPayload } from "../../../src/pubkey/codec.js";
import { PubkeyError } from "../../../src/pubkey/errors.js";
import { asThreadId, getThread, getThreadParent } from "../../../src/thread/index.js";
import { deepClone, el, NS, serialize, type Element } from "../../../src/xml/index.js";
import { IdentityError } from "../../../src/identity/errors.js";
import { elementArb, junkText, stanzaArb, target, typed, type FuzzTarget } from "../lib.js";

const ROMEO = parseFullJid("romeo@montague.net/orchard");
const JULIET = parseJid("juliet@capulet.com");
const THREAD = "ffd7076498744578d10edabfe7f4a866" as ThreadId;

// ---- forms ----------------------------------------------------------------------------------

const fieldTypes = ["boolean", "fixed", "hidden", "jid-multi", "jid-single", "list-multi", "list-single", "text-multi", "text-private", "text-single"] as const;
const fieldArb: fc.Arbitrary<Field> = fc.record({
  var: fc.string({ minLength: 1, maxLength: 12 }),
  type: fc.constantFrom(...fieldTypes),
  values: fc.array(fc.string({ maxLength: 20 }), { maxLength: 3 }),
  options: fc.array(fc.record({ value: fc.string({ maxLength: 10 }) }), { maxLength: 3 }),
});
const formArb: fc.Arbitrary<DataForm> = fc.record({
  type: fc.constantFrom("form" as const, "submit" as const, "result" as const, "cancel" as const),
  fields: fc.array(fieldArb, { maxLength: 6 }),
});

const ssn = ssnForm("form", [loggingField(["may", "mustnot"]), disclosureField(["never"]), securityField(["e2e", "c2s"]), f.value("otr", "true")]);
const formSeeds: Element[] = [formToXml(ssn), formToXml({ type: "submit", fields: [f.value("FORM_TYPE", NS.ssn), f.value("accept", "1")] })];

// ---- negotiation ------------------------------------------------------------------------------

const route = { to: JULIET, from: ROMEO, thread: THREAD, id: "n1" };
const negotiationSeeds: Element[] = [
  buildRequest({ ...route, fields: ssn.fields }),
  buildResponse({ ...route, accept: true, fields: [f.value("logging", "mustnot")] }),
  buildResponse({ ...route, accept: false, reason: "no" }),
  buildCompletion({ ...route, accept: true }),
  buildRenegotiation({ ...route, fields: ssn.fields }),
  buildTermination(route),
  buildContinue({ ...route, resource: "balcony" }),
];
negotiationSeeds.push(negotiationErrorStanza(negotiationSeeds[0] as Element, "not-acceptable", { fields: ["security"] }));

// ---- disco -------------------------------------------------------------------------------------

const info: DiscoInfo = {
  identities: [{ category: "client", type: "pc", name: "xmpp-e2e" }],
  features: [NS.disco, NS.caps, NS.ssn, NS.esession],
  forms: [{ type: "result", fields: [f.value("FORM_TYPE", "urn:xmpp:dataforms:softwareinfo"), f.value("os", "Linux")] }],
};
const discoSeeds: Element[] = [
  el("iq", { type: "result", id: "d1", from: ROMEO }, infoToXml(info, "http://x#ver")),
  el("iq", { type: "get", id: "d2", from: ROMEO, to: JULIET }, el("query", { xmlns: NS.disco, node: "n" })),
  el("presence", { from: ROMEO }, el("c", { xmlns: NS.caps, hash: "sha-1", node: "http://x", ver: capsVer(nodeCrypto, info) })),
];

// ---- pubkey ------------------------------------------------------------------------------------

const pubkeySeeds: Element[] = [
  buildPubkeyPayload({ type: "pubkey", jid: "juliet@capulet.com", material: { kind: "key", key: "MCowBQYDK2VwAyEA" + "A".repeat(43) + "=" }, print: { value: "ab:cd" } }),
  buildPubkeyPayload({ type: "pubkey", material: { kind: "rsakey", modulus: "123456789", publicExponent: "65537" }, print: { algo: "sha-1", value: "00" } }),
  buildPubkeyPayload({ type: "revocation", element: "revocation", key: "AAAA", keyprint: { value: "aa" }, revocationprint: { value: "bb" }, revocationtime: "2007-01-01T00:00:00Z", signature: "AAAA" }),
  buildPubkeyPayload({ type: "attestation", keyprint: { value: "aa" }, signature: "AAAA", signerjid: "a@b", signerprint: { value: "cc" }, signtime: "2007-01-01T00:00:00Z" }),
  buildPubkeyPayload({ type: "pubkey-request" }),
];

// ---- jingle / ibb ------------------------------------------------------------------------------

const jingleArb: fc.Arbitrary<Jingle> = fc.record({
  action: fc.constantFrom("session-initiate" as const, "session-accept" as const, "transport-info" as const, "security-info" as const, "session-terminate" as const),
  sid: fc.stringMatching(/^[a-z0-9]{1,12}$/),
  initiator: fc.constant("romeo@montague.net/orchard"),
  contents: fc.array(
    fc.record({
      creator: fc.constantFrom("initiator" as const, "responder" as const),
      name: fc.stringMatching(/^[a-z]{1,8}$/),
      description: fc.constant({ kind: "xmlstream" as const }),
      transport: fc.record({
        kind: fc.constant("ibb" as const),
        ns: fc.constant("urn:xmpp:jingle:transports:ibb:1" as const),
        sid: fc.stringMatching(/^[a-z0-9]{1,12}$/),
        blockSize: fc.integer({ min: 1, max: 65535 }),
      }),
      security: fc.record({ kind: fc.constant("xtls" as const), methods: fc.subarray(["x509", "srp"]) }),
    }),
    { maxLength: 2 },
  ),
});
const jingleSeeds: Element[] = fc.sample(jingleArb, { numRuns: 6, seed: 7 }).map(buildJingle);
const ibbSeeds: Element[] = [openElement("s1", 4096, "iq"), dataElement("s1", 0, Uint8Array.of(1, 2, 3)), closeElement("s1")];

// ---- esession / offline --------------------------------------------------------------------------

const esForm = formToXml(ssnForm("form", [f.value("my_nonce", "AAAAAAAAAAA="), { var: "dhkeys", values: ["AAAA", "BBBB"], options: [] }, { var: "modp", type: "list-single", values: [], options: [{ value: "5" }, { value: "14" }] }]));
const esSeeds: Element[] = [el("message", { from: ROMEO }, el("thread", {}, THREAD), el("feature", { xmlns: NS.featureNeg }, esForm)), el("message", {}, el("init", { xmlns: NS.esessionInit }, esForm))];

const errs = {
  forms: [FormError],
  negotiation: [NegotiationError, FormError],
  disco: [DiscoError],
  pubkey: [PubkeyError],
  offline: [OfflineError, FormError],
  esession: [ESessionError, FormError],
};

export const codecTargets: readonly FuzzTarget[] = [
  target("forms: parseForm on mutated forms throws only FormError", 800, () =>
    fc.property(stanzaArb(formSeeds), (x) => {
      const form = typed(errs.forms, () => parseForm(x));
      if (form) for (const p of [parseLogging, parseDisclosure, parseSecurity, parseMultisession]) typed(errs.negotiation, () => p(form));
    }),
  ),
  target("forms: formToXml then parseForm round-trips", 400, () =>
    fc.property(formArb, (form) => {
      const back = parseForm(formToXml(form));
      if (serialize(formToXml(back)) !== serialize(formToXml(form))) throw new Error("form round trip differs");
    }),
  ),
  target("negotiation: parseNegotiationStanza / classifyForm / parseStanzaError throw only NegotiationError", 800, () =>
    fc.property(stanzaArb(negotiationSeeds), (s) => {
      isNegotiationStanza(s);
      const m = typed(errs.negotiation, () => parseNegotiationStanza(s));
      if (m?.kind === "negotiation") typed(errs.negotiation, () => classifyForm(m.form));
      const e = s.getChild("error");
      if (e) typed(errs.negotiation, () => parseStanzaError(e));
      if (s.attrs.type !== "error") typed(errs.negotiation, () => negotiationErrorStanza(s, "bad-request"));
    }),
  ),
  target("negotiation: built messages parse back to the same stanza", 200, () =>
    fc.property(fc.constantFrom(...negotiationSeeds), (s) => {
      const m = parseNegotiationStanza(s);
      if (m.kind === "negotiation" && m.thread !== THREAD) throw new Error("thread lost");
    }),
  ),
  target("disco: parseInfo / parseInfoQuery / parseInfoResult / caps throw only DiscoError", 800, () =>
    fc.property(stanzaArb(discoSeeds), (s) => {
      typed(errs.disco, () => parseInfoQuery(s));
      const r = typed(errs.disco, () => parseInfoResult(s));
      const q = s.getChild("query", NS.disco);
      if (q) typed(errs.disco, () => parseInfo(q));
      const caps = parseCaps(s);
      if (caps && r) verifyCaps(nodeCrypto, caps, r);
    }),
  ),
  target("disco: infoToXml then parseInfo round-trips, and the caps ver verifies", 200, () =>
    fc.property(
      fc.record({
        identities: fc.array(fc.record({ category: fc.string({ minLength: 1, maxLength: 8 }), type: fc.string({ minLength: 1, maxLength: 8 }) }), { minLength: 1, maxLength: 3 }),
        features: fc.uniqueArray(fc.string({ minLength: 1, maxLength: 20 }), { maxLength: 8 }),
        forms: fc.constant([]),
      }),
      (i) => {
        const back = parseInfo(infoToXml(i));
        if (JSON.stringify(back) !== JSON.stringify(i)) throw new Error("disco round trip differs");
        const v = verifyCaps(nodeCrypto, { node: "n", ver: capsVer(nodeCrypto, i), hash: "sha-1" }, back);
        if (v.status !== "valid" && v.status !== "ill-formed") throw new Error(`caps ${v.status}`);
      },
    ),
  ),
  target("thread: getThread / getThreadParent / asThreadId never throw", 500, () =>
    fc.property(stanzaArb([el("message", {}, el("thread", { parent: "p" }, THREAD))]), junkText, (s, t) => {
      getThread(s);
      getThreadParent(s);
      asThreadId(t);
    }),
  ),
  target("pubkey: parsePubkeyPayload / parsePubkeyStanza throw only PubkeyError", 800, () =>
    fc.property(stanzaArb([...pubkeySeeds, el("iq", { type: "result", id: "1" }, ...pubkeySeeds.slice(0, 1).map((x) => deepClone(x)))]), (s) => {
      typed(errs.pubkey, () => parsePubkeyPayload(s));
      typed(errs.pubkey, () => parsePubkeyStanza(s));
    }),
  ),
  target("pubkey: built payloads parse back to the same element", 100, () =>
    fc.property(fc.constantFrom(...pubkeySeeds), (e) => {
      const p: PubkeyPayload = parsePubkeyPayload(e);
      if (serialize(buildPubkeyPayload(p)) !== serialize(e)) throw new Error("pubkey round trip differs");
      parsePubkeyStanza(buildPubkeyStanza({ name: "iq", stanzaType: "result", id: "1", payload: p }));
    }),
  ),
  target("offline: parseOfflineOptions / parseOfflineInit / parseDateTime throw only OfflineError", 600, () =>
    fc.property(stanzaArb([esForm, ...formSeeds]), junkText, (x, t) => {
      typed(errs.offline, () => parseOfflineOptions(x));
      typed(errs.offline, () => parseOfflineInit(x));
      parseDateTime(t);
    }),
  ),
  target("esession codec: carriedForm / b64Field / isTermination throw only ESessionError or FormError", 600, () =>
    fc.property(stanzaArb(esSeeds), (s) => {
      const c = typed(errs.esession, () => carriedForm(s));
      if (c) {
        typed(errs.esession, () => b64Field(c.form, "my_nonce"));
        typed(errs.esession, () => b64Values(c.form, "dhkeys"));
        fieldOrder(c.x);
      }
      isTermination(s.children.filter((k): k is Element => typeof k !== "string"));
    }),
  ),
  target("jingle: parseJingle never throws on mutated stanzas and round-trips what buildJingle makes", 600, () =>
    fc.property(stanzaArb(jingleSeeds), jingleArb, (s, j) => {
      parseJingle(s);
      const back = parseJingle(buildJingle(j));
      if (!back.ok || serialize(buildJingle(back.value)) !== serialize(buildJingle(j))) throw new Error("jingle round trip differs");
    }),
  ),
  target("ibb: parseIbb / decodeIbbBase64 never throw; data round-trips", 800, () =>
    fc.property(stanzaArb(ibbSeeds), junkText, fc.uint8Array({ maxLength: 100 }), fc.nat({ max: 65535 }), (s, t, bytes, seq) => {
      parseIbb(s);
      decodeIbbBase64(t);
      const back = parseIbb(dataElement("sid", seq, bytes));
      if (back.kind !== "data" || back.seq !== seq || Buffer.compare(Buffer.from(back.data), Buffer.from(bytes)) !== 0) throw new Error("ibb round trip differs");
    }),
  ),
  target("random element trees through every codec: only typed errors", 500, () =>
    fc.property(elementArb(4), (e) => {
      typed(errs.forms, () => parseForm(e));
      typed(errs.negotiation, () => parseNegotiationStanza(e));
      typed(errs.disco, () => parseInfo(e));
      typed(errs.pubkey, () => parsePubkeyPayload(e));
      typed(errs.offline, () => parseOfflineOptions(e));
      parseJingle(e);
      parseIbb(e);
    }),
  ),
];

export { IdentityError };
