/**
 * XML for every layer: parsing, building and the normalization used for MACs.
 *
 * Spec: XEP-0116 v0.16 section 13 "Normalization" (also XEP-0217 "Normalization") and
 * XEP-0200 v0.2 section 6 (m_content: "remove all character data from between all
 * elements"). The two readings (spec profile, gajim profile) are in
 * ../shared/docs/esession-interpretation.md rows 7 and 15.
 *
 * Stanzas are ltx Elements; nothing in this project builds XML by string concatenation.
 */
import { Element, clone, parse, escapeXML, escapeXMLText } from "ltx";

export { Element };
export type Child = Element | string;

export class XmlError extends Error {
  override readonly name = "XmlError";
  readonly condition = "not-well-formed" as const;
  constructor(reason: string) {
    super(`not-well-formed: ${reason}`);
  }
}

/** Hard limits applied before a parse, so hostile input costs bounded work. */
export const XML_LIMITS = { maxBytes: 256 * 1024, maxDepth: 64 } as const;

/**
 * Parses one element. Throws {@link XmlError} on malformed XML, a DOCTYPE or entity
 * declaration, or input beyond {@link XML_LIMITS}.
 */
export function parseXml(s: string): Element {
  if (s.length > XML_LIMITS.maxBytes) throw new XmlError("too large");
  if (s.includes("<!") && /<!DOCTYPE|<!ENTITY/i.test(s)) throw new XmlError("DTDs are not allowed");
  let root: Element;
  try {
    const r = parse(s);
    if (!(r instanceof Element)) throw new XmlError("no root element");
    root = r;
  } catch (e) {
    if (e instanceof XmlError) throw e;
    throw new XmlError("parse failed");
  }
  if (depth(root) > XML_LIMITS.maxDepth) throw new XmlError("nested too deeply");
  return root;
}

/**
 * Parses a fragment: zero or more sibling elements (and text) such as the decrypted
 * content of an XEP-0200 `<data/>` element. The fragment is wrapped in a synthetic parent
 * carrying `xmlns` so that children inherit the stanza's default namespace.
 */
export function parseFragment(s: string, xmlns: string): Child[] {
  const wrapper = parseXml(`<fragment xmlns="${escapeXML(xmlns)}">${s}</fragment>`);
  return wrapper.children.map((c) => (typeof c === "string" ? c : detach(c)));
}

function detach(e: Element): Element {
  e.parent = null;
  return e;
}

function depth(e: Element): number {
  let d = 1;
  for (const c of e.children) if (typeof c !== "string") d = Math.max(d, depth(c) + 1);
  return d;
}

export type Attrs = Record<string, string | number | undefined>;

/** Builds an element; undefined attributes are omitted. */
export function el(name: string, attrs: Attrs = {}, ...children: (Child | undefined | false)[]): Element {
  const e = new Element(name);
  for (const k in attrs) {
    const v = attrs[k];
    if (v !== undefined) e.attrs[k] = typeof v === "string" ? v : String(v);
  }
  for (const c of children) if (c !== undefined && c !== false) e.cnode(c);
  return e;
}

/** Element children only (text dropped). */
export function elements(e: Element): Element[] {
  return e.children.filter((c): c is Element => typeof c !== "string");
}

/** The element's namespace: its own xmlns or the nearest ancestor's. */
export function nsOf(e: Element): string | undefined {
  return e.getNS() ?? undefined;
}

export function serialize(e: Child): string {
  return typeof e === "string" ? escapeXMLText(e) : e.toString();
}

export function serializeAll(cs: readonly Child[]): string {
  return cs.map(serialize).join("");
}

export function deepClone(e: Element): Element {
  return clone(e);
}

/** How empty elements and inter-element whitespace are treated when normalizing. */
export type NormalizeStyle = "spec" | "gajim";

/**
 * Normalized serialization for MACs (XEP-0116 section 13):
 * - no `xmlns` attributes, attributes sorted lexicographically, double-quoted;
 * - character data between elements removed (text of leaf elements kept);
 * - empty elements as `<a></a>` ("spec") or `<a />` ("gajim", nbxmpp c14n);
 * - in "gajim" style, whitespace between received elements is kept (interpretation row 7).
 */
export function normalize(nodes: readonly Child[], style: NormalizeStyle = "spec"): string {
  let out = "";
  for (const n of nodes) out += normalizeNode(n, style, true);
  return out;
}

function normalizeNode(n: Child, style: NormalizeStyle, betweenElements: boolean): string {
  if (typeof n === "string") {
    if (betweenElements && style === "spec") return "";
    return escapeText(n);
  }
  const names = Object.keys(n.attrs)
    .filter((k) => k !== "xmlns" && !k.startsWith("xmlns:"))
    .sort();
  let s = `<${n.name}`;
  for (const k of names) s += ` ${k}="${escapeAttr(String(n.attrs[k]))}"`;
  const hasElementChild = n.children.some((c) => typeof c !== "string");
  const inner = n.children.map((c) => normalizeNode(c, style, hasElementChild)).join("");
  if (inner.length === 0 && n.children.length === 0 && style === "gajim") return `${s} />`;
  return `${s}>${inner}</${n.name}>`;
}

function escapeText(s: string): string {
  if (!/[&<>\r]/.test(s)) return s;
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/\r/g, "&#xD;");
}

function escapeAttr(s: string): string {
  if (!/[&<"\t\n\r]/.test(s)) return s;
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/"/g, "&quot;")
    .replace(/\t/g, "&#x9;")
    .replace(/\n/g, "&#xA;")
    .replace(/\r/g, "&#xD;");
}

/** Namespaces used across layers. */
export const NS = {
  client: "jabber:client",
  data: "jabber:x:data",
  featureNeg: "http://jabber.org/protocol/feature-neg",
  disco: "http://jabber.org/protocol/disco#info",
  caps: "http://jabber.org/protocol/caps",
  stanzas: "urn:ietf:params:xml:ns:xmpp-stanzas",
  ssn: "urn:xmpp:ssn",
  esessionInit: "http://www.xmpp.org/extensions/xep-0116.html#ns-init",
  esession: "http://www.xmpp.org/extensions/xep-0116.html#ns",
  c: "http://www.xmpp.org/extensions/xep-0200.html#ns",
  amp: "http://jabber.org/protocol/amp",
  hints: "urn:xmpp:hints",
} as const;
