/**
 * XEP-0189 payloads <-> typed objects: public keys, revocations, attestations, the key
 * request, the "generating" signal, and the older `urn:xmpp:pubkey:0` `<pubkeys/>`
 * request/response the XTLS draft shows.
 *
 * Spec: XEP-0189 "Public Key Publishing" v0.14 (2010-07-15):
 * - section 3 "Public Keys": `<pubkey xmlns='urn:xmpp:pubkey:2'>` with `<begin/>`,
 *   `<end/>` (XEP-0082 DateTime), `<jid/>`, `<rsakey/>` (`<modulus/>`,
 *   `<publicExponent/>` as decimal strings, `<print algo='sha-256'/>`) and `<uri/>`
 *   (OPTIONAL). Sections 7 and 8 show a second form: `<key/>` (Base64 of a DER
 *   SubjectPublicKeyInfo) with a sibling `<print/>`. Both are parsed and built.
 * - section 4 "Revocations": `<revocation xmlns='urn:xmpp:revoke:2'>` (the example and
 *   schema; the prose says `<revoke/>`, also accepted) with `<key/>`, `<keyprint/>`,
 *   `<signature/>`, `<revocationprint/>`, `<revocationtime/>`.
 * - section 5 "Attestations": `<attest xmlns='urn:xmpp:attest:2'>` with `<keyprint/>`,
 *   `<signature/>`, `<signerjid/>`, `<signerprint/>`, `<signtime/>`.
 * - section 8 "Requesting a Public Key Directly" (empty `<pubkey/>` in an iq get),
 *   section 10 "Signalling Key Generation" (`<generating/>` in presence).
 * - draft-meyer-xmpp-e2e-encryption-02 section 5.1: `<pubkeys xmlns='urn:xmpp:pubkey:0'/>`
 *   in an iq get, answered with `<keyinfo><x509cert>Base64 DER</x509cert></keyinfo>`.
 *
 * Our extension (docs/pubkey.md): XEP-0189 v0.14 can carry only RSA keys (`<rsakey/>`) or
 * opaque DER (`<key/>`); for DSA and Ed25519 a `<pubkey/>` may instead carry the XML-DSig
 * `<KeyValue xmlns='http://www.w3.org/2000/09/xmldsig#'/>` exactly as XEP-0116 exchanges
 * it (src/identity/keyvalue.ts), with a sibling `<print/>`; a legacy `<keyinfo/>` may
 * carry one too. Text values have their whitespace removed when parsed (the spec's
 * examples wrap Base64 and decimal numbers over several lines).
 */
import { buildKeyValue, parseKeyValue, XMLDSIG_NS, type KeyValueData } from "../identity/keyvalue.js";
import { IdentityError } from "../identity/errors.js";
import { getLimits } from "../limits.js";
import { el, elements, NS, type Element } from "../xml/index.js";
import { PubkeyError } from "./errors.js";

export const NS_PUBKEY = "urn:xmpp:pubkey:2";
export const NS_REVOKE = "urn:xmpp:revoke:2";
export const NS_ATTEST = "urn:xmpp:attest:2";
/** The XEP-0189 v0.9 namespace the XTLS draft's `<pubkeys/>` request uses. */
export const NS_PUBKEY_LEGACY = "urn:xmpp:pubkey:0";
/** XEP-0189 section 11: the features an entity MUST return in disco#info. */
export const PUBKEY_FEATURES: readonly string[] = [NS_PUBKEY, NS_REVOKE, NS_ATTEST];

/** A fingerprint element; `algo` only when the attribute is present (default "sha-256"). */
export interface Print {
  readonly algo?: string;
  readonly value: string;
}

export type KeyMaterial =
  /** `<rsakey/>`: modulus and public exponent as decimal strings. */
  | { readonly kind: "rsakey"; readonly modulus: string; readonly publicExponent: string }
  /** `<key/>`: Base64 DER SubjectPublicKeyInfo. */
  | { readonly kind: "key"; readonly key: string }
  /** Our extension: an XML-DSig `<KeyValue/>`. */
  | { readonly kind: "keyvalue"; readonly keyValue: KeyValueData };

export interface PubKey {
  readonly type: "pubkey";
  readonly begin?: string;
  readonly end?: string;
  readonly jid?: string;
  readonly material: KeyMaterial;
  /** Inside `<rsakey/>` for the rsakey form, a sibling `<print/>` otherwise. */
  readonly print?: Print;
  readonly uri?: string;
}

export interface Revocation {
  readonly type: "revocation";
  /** The element name: "revocation" (example, schema) or "revoke" (prose). */
  readonly element: "revocation" | "revoke";
  /** Base64 DER SubjectPublicKeyInfo of the revoked key. */
  readonly key: string;
  readonly keyprint: Print;
  readonly revocationprint: Print;
  readonly revocationtime: string;
  /** Base64. */
  readonly signature: string;
}

export interface Attestation {
  readonly type: "attestation";
  readonly keyprint: Print;
  /** Base64. */
  readonly signature: string;
  readonly signerjid: string;
  readonly signerprint: Print;
  readonly signtime: string;
}

/** Empty `<pubkey/>` in an iq get (XEP-0189 section 8). */
export interface PubKeyRequest {
  readonly type: "pubkey-request";
}

/** `<generating/>` in presence (XEP-0189 section 10). */
export interface Generating {
  readonly type: "generating";
}

export interface LegacyKeyInfo {
  readonly name?: string;
  /** Base64 DER X.509 certificates. */
  readonly x509certs: readonly string[];
  /** Our extension: XML-DSig key values. */
  readonly keyValues: readonly KeyValueData[];
}

/** `<pubkeys xmlns='urn:xmpp:pubkey:0'/>`: empty in a request, with keyinfos in a result. */
export interface LegacyPubKeys {
  readonly type: "pubkeys-legacy";
  readonly keyinfos: readonly LegacyKeyInfo[];
}

export type PubkeyPayload = PubKey | Revocation | Attestation | PubKeyRequest | Generating | LegacyPubKeys;

function bad(why: string): PubkeyError {
  return new PubkeyError("bad-request", why);
}

/**
 * Text with all whitespace removed (Base64, decimal numbers, fingerprints, times). Values
 * beyond maxPubkeyBytes (../limits.ts) are refused before any caller decodes them (a
 * decimal modulus becomes a bigint, quadratic in its length).
 */
function compact(e: Element): string {
  const t = e.getText();
  if (t.length > getLimits().maxPubkeyBytes) throw bad(`<${e.name}/> too large`);
  return t.replace(/\s+/g, "");
}

/** The text size of a whole subtree, bounded by maxPubkeyBytes. */
function checkSize(e: Element): void {
  const max = getLimits().maxPubkeyBytes;
  let n = 0;
  const walk = (x: Element): void => {
    for (const c of x.children) {
      n += typeof c === "string" ? c.length : 0;
      if (n > max) throw bad(`<${e.name}/> too large`);
      if (typeof c !== "string") walk(c);
    }
  };
  walk(e);
}

function only(parent: Element, name: string): Element | undefined {
  const found = elements(parent).filter((c) => c.name === name);
  if (found.length > 1) throw bad(`more than one <${name}/>`);
  return found[0];
}

function req(parent: Element, name: string): string {
  const c = only(parent, name);
  if (c === undefined) throw bad(`<${parent.name}/> lacks <${name}/>`);
  const t = compact(c);
  if (t.length === 0) throw bad(`<${name}/> is empty`);
  return t;
}

function opt(parent: Element, name: string): string | undefined {
  const c = only(parent, name);
  return c === undefined ? undefined : compact(c);
}

function printOf(parent: Element, name: string): Print | undefined {
  const c = only(parent, name);
  if (c === undefined) return undefined;
  const value = compact(c);
  if (value.length === 0) throw bad(`<${name}/> is empty`);
  const algo = c.attrs["algo"];
  return typeof algo === "string" ? { algo, value } : { value };
}

function reqPrint(parent: Element, name: string): Print {
  const p = printOf(parent, name);
  if (p === undefined) throw bad(`<${parent.name}/> lacks <${name}/>`);
  return p;
}

function keyValueOf(e: Element): KeyValueData {
  checkSize(e);
  try {
    return parseKeyValue(e);
  } catch (err) {
    if (err instanceof IdentityError) throw bad(`<KeyValue/>: ${err.condition}`);
    throw err;
  }
}

const DECIMAL = /^[0-9]+$/;

function parsePubKey(e: Element): PubKey | PubKeyRequest {
  const kids = elements(e);
  if (kids.length === 0) return { type: "pubkey-request" };
  const begin = opt(e, "begin");
  const end = opt(e, "end");
  const jid = opt(e, "jid");
  const uri = opt(e, "uri");
  const rsakey = only(e, "rsakey");
  const key = only(e, "key");
  const kv = kids.filter((c) => c.name === "KeyValue");
  const forms = (rsakey ? 1 : 0) + (key ? 1 : 0) + kv.length;
  if (forms !== 1) throw bad("a <pubkey/> holds exactly one of <rsakey/>, <key/>, <KeyValue/>");
  let material: KeyMaterial;
  let print: Print | undefined;
  if (rsakey !== undefined) {
    const modulus = req(rsakey, "modulus");
    const publicExponent = req(rsakey, "publicExponent");
    if (!DECIMAL.test(modulus) || !DECIMAL.test(publicExponent)) throw bad("<rsakey/> values are decimal integers");
    material = { kind: "rsakey", modulus, publicExponent };
    print = printOf(rsakey, "print");
  } else {
    material = key !== undefined ? { kind: "key", key: compact(key) } : { kind: "keyvalue", keyValue: keyValueOf(kv[0] as Element) };
    print = printOf(e, "print");
  }
  return {
    type: "pubkey",
    ...(begin === undefined ? {} : { begin }),
    ...(end === undefined ? {} : { end }),
    ...(jid === undefined ? {} : { jid }),
    material,
    ...(print === undefined ? {} : { print }),
    ...(uri === undefined ? {} : { uri }),
  };
}

function parseLegacy(e: Element): LegacyPubKeys {
  const keyinfos: LegacyKeyInfo[] = [];
  const max = getLimits().maxPubkeyEntries;
  let entries = 0;
  for (const ki of elements(e)) {
    if (ki.name !== "keyinfo") continue;
    entries += 1 + elements(ki).length;
    if (entries > max) throw bad("too many keys");
    const name = opt(ki, "name");
    keyinfos.push({
      ...(name === undefined ? {} : { name }),
      x509certs: elements(ki)
        .filter((c) => c.name === "x509cert")
        .map(compact),
      keyValues: elements(ki)
        .filter((c) => c.name === "KeyValue")
        .map(keyValueOf),
    });
  }
  return { type: "pubkeys-legacy", keyinfos };
}

/** Parses one XEP-0189 payload element. Throws PubkeyError "bad-request" (or "feature-not-implemented" for an unknown element). */
export function parsePubkeyPayload(e: Element): PubkeyPayload {
  const ns = e.getNS();
  if (ns === NS_PUBKEY && e.name === "pubkey") return parsePubKey(e);
  if (ns === NS_PUBKEY && e.name === "generating") return { type: "generating" };
  if (ns === NS_REVOKE && (e.name === "revocation" || e.name === "revoke"))
    return {
      type: "revocation",
      element: e.name,
      key: req(e, "key"),
      keyprint: reqPrint(e, "keyprint"),
      revocationprint: reqPrint(e, "revocationprint"),
      revocationtime: req(e, "revocationtime"),
      signature: req(e, "signature"),
    };
  if (ns === NS_ATTEST && e.name === "attest")
    return {
      type: "attestation",
      keyprint: reqPrint(e, "keyprint"),
      signature: req(e, "signature"),
      signerjid: req(e, "signerjid"),
      signerprint: reqPrint(e, "signerprint"),
      signtime: req(e, "signtime"),
    };
  if (ns === NS_PUBKEY_LEGACY && e.name === "pubkeys") return parseLegacy(e);
  throw new PubkeyError("feature-not-implemented", `not an XEP-0189 payload: <${e.name}/>`);
}

function printEl(name: string, p: Print): Element {
  return el(name, { algo: p.algo }, p.value);
}

/** Builds the payload element (schema order). */
export function buildPubkeyPayload(p: PubkeyPayload): Element {
  switch (p.type) {
    case "pubkey": {
      const m = p.material;
      const keyEl =
        m.kind === "rsakey"
          ? el("rsakey", {}, el("modulus", {}, m.modulus), el("publicExponent", {}, m.publicExponent), p.print !== undefined && printEl("print", p.print))
          : m.kind === "key"
            ? el("key", {}, m.key)
            : buildKeyValue(m.keyValue);
      return el(
        "pubkey",
        { xmlns: NS_PUBKEY },
        p.begin !== undefined && el("begin", {}, p.begin),
        p.end !== undefined && el("end", {}, p.end),
        p.jid !== undefined && el("jid", {}, p.jid),
        keyEl,
        m.kind !== "rsakey" && p.print !== undefined && printEl("print", p.print),
        p.uri !== undefined && el("uri", {}, p.uri),
      );
    }
    case "pubkey-request":
      return el("pubkey", { xmlns: NS_PUBKEY });
    case "generating":
      return el("generating", { xmlns: NS_PUBKEY });
    case "revocation":
      // Order of the section 4 example (the schema puts <signature/> third).
      return el(
        p.element,
        { xmlns: NS_REVOKE },
        el("key", {}, p.key),
        printEl("keyprint", p.keyprint),
        printEl("revocationprint", p.revocationprint),
        el("revocationtime", {}, p.revocationtime),
        el("signature", {}, p.signature),
      );
    case "attestation":
      return el(
        "attest",
        { xmlns: NS_ATTEST },
        printEl("keyprint", p.keyprint),
        el("signature", {}, p.signature),
        el("signerjid", {}, p.signerjid),
        printEl("signerprint", p.signerprint),
        el("signtime", {}, p.signtime),
      );
    case "pubkeys-legacy":
      return el(
        "pubkeys",
        { xmlns: NS_PUBKEY_LEGACY },
        ...p.keyinfos.map((ki) =>
          el(
            "keyinfo",
            {},
            ki.name !== undefined && el("name", {}, ki.name),
            ...ki.x509certs.map((c) => el("x509cert", {}, c)),
            ...ki.keyValues.map(buildKeyValue),
          ),
        ),
      );
  }
}

// ---- stanzas carrying a payload (fixtures, requests, responses) ----

export interface PubkeyStanza {
  readonly name: "iq" | "message" | "presence";
  readonly id?: string;
  readonly from?: string;
  readonly to?: string;
  readonly stanzaType?: string;
  readonly payload: PubkeyPayload | undefined;
}

const PAYLOAD_NS = new Set([NS_PUBKEY, NS_REVOKE, NS_ATTEST, NS_PUBKEY_LEGACY]);

/** The XEP-0189 payload child of a stanza, if any. */
export function findPayload(stanza: Element): Element | undefined {
  return elements(stanza).find((c) => PAYLOAD_NS.has(c.getNS() ?? ""));
}

export function parsePubkeyStanza(s: Element): PubkeyStanza {
  if (s.name !== "iq" && s.name !== "message" && s.name !== "presence") throw bad("not a stanza");
  const a = (k: string) => (typeof s.attrs[k] === "string" ? (s.attrs[k] as string) : undefined);
  const child = findPayload(s);
  const id = a("id");
  const from = a("from");
  const to = a("to");
  const stanzaType = a("type");
  return {
    name: s.name,
    ...(id === undefined ? {} : { id }),
    ...(from === undefined ? {} : { from }),
    ...(to === undefined ? {} : { to }),
    ...(stanzaType === undefined ? {} : { stanzaType }),
    payload: child === undefined ? undefined : parsePubkeyPayload(child),
  };
}

export function buildPubkeyStanza(s: PubkeyStanza): Element {
  return el(
    s.name,
    { xmlns: NS.client, from: s.from, to: s.to, id: s.id, type: s.stanzaType },
    s.payload !== undefined && buildPubkeyPayload(s.payload),
  );
}

export { XMLDSIG_NS };
