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
import { Element, clone, escapeXML, escapeXMLText, unescapeXML } from "ltx";
import { getLimits, type Limits } from "../limits.js";

export { Element };
export type Child = Element | string;

/**
 * Why a parse failed, named after the RFC 6120 section 4.9.3 stream error a server would
 * send for it: 4.9.3.13 not-well-formed (syntax, unknown entity, mismatched tags),
 * 4.9.3.18 restricted-xml (section 11.1: DTDs, entity declarations, which is what makes
 * entity-expansion and external-entity attacks impossible here) and 4.9.3.14
 * policy-violation (over a limit of ../limits.ts).
 */
export type XmlCondition = "not-well-formed" | "restricted-xml" | "policy-violation";

export class XmlError extends Error {
  override readonly name = "XmlError";
  readonly condition: XmlCondition;
  constructor(reason: string, condition: XmlCondition = "not-well-formed") {
    super(`${condition}: ${reason}`);
    this.condition = condition;
  }
}

/** The XML subset of ../limits.ts. */
export type XmlLimits = Pick<Limits, "maxStanzaBytes" | "maxXmlDepth" | "maxXmlElements" | "maxXmlAttributes" | "maxXmlAttributeBytes">;

/** The XML limits in force (see ../limits.ts; overridable with configureLimits). */
export function xmlLimits(overrides?: Partial<XmlLimits>): XmlLimits {
  const l = getLimits();
  return {
    maxStanzaBytes: overrides?.maxStanzaBytes ?? l.maxStanzaBytes,
    maxXmlDepth: overrides?.maxXmlDepth ?? l.maxXmlDepth,
    maxXmlElements: overrides?.maxXmlElements ?? l.maxXmlElements,
    maxXmlAttributes: overrides?.maxXmlAttributes ?? l.maxXmlAttributes,
    maxXmlAttributeBytes: overrides?.maxXmlAttributeBytes ?? l.maxXmlAttributeBytes,
  };
}

/**
 * The default limits as they were before ../limits.ts existed (kept for callers).
 * @deprecated use {@link xmlLimits}.
 */
export const XML_LIMITS = {
  get maxBytes(): number {
    return getLimits().maxStanzaBytes;
  },
  get maxDepth(): number {
    return getLimits().maxXmlDepth;
  },
};

/** Work done by one parse, for tests that bound work by counting instead of timing. */
export interface XmlParseStats {
  /** Elements created (a rejected parse stops creating them at the first limit). */
  elements: number;
  /** Attributes examined. */
  attributes: number;
  /** Characters handed to the SAX tokenizer (0 when a pre-check rejected the input). */
  scanned: number;
}

export interface XmlParseOptions {
  readonly limits?: Partial<XmlLimits>;
  /** Filled with the work done, for tests. */
  readonly stats?: XmlParseStats;
}

/**
 * Markup RFC 6120 section 11.1 forbids and ltx would silently skip: `<!DOCTYPE`,
 * `<!ENTITY`, `<!ELEMENT`, `<!ATTLIST`, `<!NOTATION` (anything `<!` that is neither a
 * comment nor CDATA). Rejecting them before tokenizing means no DTD is ever read, so
 * "billion laughs" and external entities cost one linear scan.
 */
const RESTRICTED = /<!(?!--|\[CDATA\[)/;

/** XML whitespace (XML 1.0 production S). */
function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d;
}

/** Characters that end an element or attribute name. */
function endsName(c: number): boolean {
  return isSpace(c) || c === 0x3e /* > */ || c === 0x2f /* / */ || c === 0x3d /* = */;
}

/** Characters no element or attribute name may contain (XML 1.0 production Name). */
const BAD_NAME = /[<>&"'=/\s]/;

/**
 * Character data between tags: unescaped into `cursor`, or refused outside the root unless
 * it is whitespace. (A module function, not a closure: no allocation per parse.)
 */
function appendText(cursor: Element | undefined, t: string): void {
  if (cursor !== undefined) cursor.children.push(unescape(t));
  else if (t.trim() !== "") throw new XmlError("text outside the root element");
}

/** Entity and character references replaced (ltx's table; anything else is refused). */
function unescape(s: string): string {
  if (!s.includes("&")) return s;
  try {
    return unescapeXML(s);
  } catch {
    // ltx throws plain Errors for unknown entities and illegal character references.
    throw new XmlError("unknown entity or illegal character reference");
  }
}

/**
 * Parses one element. Throws {@link XmlError} on malformed XML, a DTD or entity
 * declaration (restricted-xml), or input beyond the XML limits of ../limits.ts
 * (policy-violation): total size is checked before tokenizing; depth, element count,
 * attribute count and attribute size as each start tag is read, so a hostile input stops
 * the parse at the first element over a limit.
 *
 * The tokenizer is a single pass over the string with indexOf (no SAX events, no closure
 * per call): every stanza received and every decrypted XEP-0200 payload goes through it.
 * It builds ltx Elements as ltx's own parser does (entities through ltx's unescapeXML,
 * comments and processing instructions skipped, CDATA as text) and is stricter where XML
 * 1.0 is: unquoted or duplicate attributes, `<` in an attribute value, a tag left open
 * and content after the root element are not-well-formed.
 */
export function parseXml(s: string, opts: XmlParseOptions = {}): Element {
  const lim = opts.limits === undefined ? getLimits() : xmlLimits(opts.limits);
  const stats = opts.stats;
  if (s.length > lim.maxStanzaBytes) throw new XmlError("too large", "policy-violation");
  if (s.includes("<!") && RESTRICTED.test(s)) throw new XmlError("DTDs and entity declarations are not allowed", "restricted-xml");
  if (stats) stats.scanned += s.length;
  const len = s.length;
  let root: Element | undefined;
  let cursor: Element | undefined;
  let depth = 0;
  let count = 0;
  let done = false;
  let pos = 0;
  while (pos < len) {
    const lt = s.indexOf("<", pos);
    if (lt === -1) {
      appendText(cursor, s.slice(pos));
      break;
    }
    if (lt > pos) appendText(cursor, s.slice(pos, lt));
    const c = s.charCodeAt(lt + 1);
    if (c === 0x21 /* ! */) {
      if (s.startsWith("<!--", lt)) {
        const end = s.indexOf("-->", lt + 4);
        if (end === -1) throw new XmlError("unclosed comment");
        pos = end + 3;
      } else if (s.startsWith("<![CDATA[", lt)) {
        const end = s.indexOf("]]>", lt + 9);
        if (end === -1) throw new XmlError("unclosed CDATA section");
        const data = s.slice(lt + 9, end);
        if (cursor !== undefined) {
          if (data.length > 0) cursor.children.push(data);
        } else if (data.trim() !== "") throw new XmlError("text outside the root element");
        pos = end + 3;
      } else throw new XmlError("DTDs and entity declarations are not allowed", "restricted-xml");
      continue;
    }
    if (c === 0x3f /* ? */) {
      const end = s.indexOf("?>", lt + 2);
      if (end === -1) throw new XmlError("unclosed processing instruction");
      pos = end + 2;
      continue;
    }
    if (c === 0x2f /* / */) {
      const gt = s.indexOf(">", lt + 2);
      if (gt === -1) throw new XmlError("unclosed end tag");
      const name = s.slice(lt + 2, gt).trimEnd();
      if (cursor === undefined || cursor.name !== name) throw new XmlError("mismatched end tag");
      depth--;
      const parent = cursor.parent;
      if (parent === null || depth === 0) {
        cursor = undefined;
        done = true;
      } else cursor = parent;
      pos = gt + 1;
      continue;
    }
    // A start tag.
    if (done) throw new XmlError("content after the root element");
    let i = lt + 1;
    while (i < len && !endsName(s.charCodeAt(i))) i++;
    const name = s.slice(lt + 1, i);
    if (name.length === 0 || BAD_NAME.test(name)) throw new XmlError("bad element name");
    depth++;
    count++;
    if (stats) stats.elements++;
    if (depth > lim.maxXmlDepth) throw new XmlError("nested too deeply", "policy-violation");
    if (count > lim.maxXmlElements) throw new XmlError("too many elements", "policy-violation");
    const e = new Element(name);
    const attrs = e.attrs as Record<string, string>;
    let n = 0;
    let selfClosing = false;
    for (;;) {
      while (i < len && isSpace(s.charCodeAt(i))) i++;
      if (i >= len) throw new XmlError("unclosed start tag");
      const ch = s.charCodeAt(i);
      if (ch === 0x3e /* > */) {
        i++;
        break;
      }
      if (ch === 0x2f /* / */) {
        if (s.charCodeAt(i + 1) !== 0x3e) throw new XmlError("bad start tag");
        selfClosing = true;
        i += 2;
        break;
      }
      const a = i;
      while (i < len && !endsName(s.charCodeAt(i))) i++;
      const attr = s.slice(a, i);
      if (attr.length === 0 || BAD_NAME.test(attr)) throw new XmlError("bad attribute name");
      while (i < len && isSpace(s.charCodeAt(i))) i++;
      if (s.charCodeAt(i) !== 0x3d /* = */) throw new XmlError("attribute without a value");
      i++;
      while (i < len && isSpace(s.charCodeAt(i))) i++;
      const q = s.charCodeAt(i);
      if (q !== 0x22 && q !== 0x27) throw new XmlError("unquoted attribute value");
      const close = s.indexOf(q === 0x22 ? '"' : "'", i + 1);
      if (close === -1) throw new XmlError("unclosed attribute value");
      n++;
      if (stats) stats.attributes++;
      if (n > lim.maxXmlAttributes) throw new XmlError("too many attributes", "policy-violation");
      const raw = s.slice(i + 1, close);
      if (raw.includes("<")) throw new XmlError("'<' in an attribute value");
      if (Object.prototype.hasOwnProperty.call(attrs, attr)) throw new XmlError("duplicate attribute");
      const v = unescape(raw);
      if (v.length > lim.maxXmlAttributeBytes) throw new XmlError("attribute too large", "policy-violation");
      attrs[attr] = v;
      i = close + 1;
    }
    if (cursor === undefined) root = e;
    else {
      e.parent = cursor;
      cursor.children.push(e);
    }
    if (selfClosing) {
      depth--;
      if (depth === 0) done = true;
    } else cursor = e;
    pos = i;
  }
  if (root === undefined || !done) throw new XmlError(root === undefined ? "no root element" : "unclosed element");
  root.parent = null;
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

/**
 * The XML text of a node, exactly as ltx's Element.toString() writes it (attributes in
 * insertion order, `"` quoted, empty elements as `<a/>`), in one pass without ltx's
 * writer callback per token: every stanza on the wire and every MACed plaintext goes
 * through here.
 */
export function serialize(e: Child): string {
  return typeof e === "string" ? escapeText(e, false) : writeElement(e);
}

export function serializeAll(cs: readonly Child[]): string {
  let out = "";
  for (const c of cs) out += serialize(c);
  return out;
}

function writeElement(e: Element): string {
  let s = "<" + e.name;
  const attrs = e.attrs as Record<string, unknown>;
  for (const k in attrs) {
    const v = attrs[k];
    if (v === null || v === undefined) continue;
    s += " " + k + '="' + escapeXmlAttr(typeof v === "string" ? v : String(v)) + '"';
  }
  const children = e.children as readonly (Child | null | undefined)[];
  if (children.length === 0) return s + "/>";
  s += ">";
  for (const c of children) {
    if (c === null || c === undefined) continue;
    s += typeof c === "string" ? escapeText(c, false) : writeElement(c);
  }
  return s + "</" + e.name + ">";
}

/** ltx's escapeXML (attribute values): & < > " ' as entities. */
function escapeXmlAttr(v: string): string {
  return /["&'<>]/.test(v) ? escapeXML(v) : v;
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
    return escapeText(n, true);
  }
  let s = "<" + n.name;
  // Attributes sorted lexicographically, xmlns declarations dropped. Most elements of a
  // form or <c/> have none or one, so the sort runs only when there is something to sort.
  let names: string[] | undefined;
  for (const k in n.attrs) {
    if (k === "xmlns" || k.startsWith("xmlns:")) continue;
    (names ??= []).push(k);
  }
  if (names !== undefined) {
    if (names.length > 1) names.sort();
    for (const k of names) s += " " + k + '="' + escapeAttr(String(n.attrs[k])) + '"';
  }
  const children = n.children;
  if (children.length === 0) return style === "gajim" ? s + " />" : s + "></" + n.name + ">";
  let hasElementChild = false;
  for (const c of children) {
    if (typeof c !== "string") {
      hasElementChild = true;
      break;
    }
  }
  s += ">";
  for (const c of children) s += normalizeNode(c, style, hasElementChild);
  return s + "</" + n.name + ">";
}

/** Text content: & < > escaped (and CR as a reference when normalizing, XEP-0116 13). */
function escapeText(s: string, normalizing: boolean): string {
  if (normalizing) {
    if (!/[&<>\r]/.test(s)) return s;
    return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/\r/g, "&#xD;");
  }
  return /[&<>]/.test(s) ? escapeXMLText(s) : s;
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
