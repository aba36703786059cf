/**
 * XMPP <message/> stanzas to Message/CPIM objects and back.
 *
 * Spec: draft-ietf-xmpp-e2e-03 section 3 step 1 ("Generate a Message/CPIM object as
 * defined in MSGFMT") and example 1; RFC 3862 sections 4.1-4.6 (From/To are `im:` URIs,
 * DateTime, Subject with ;lang=); RFC 3860 (the `im:` URI: `im:local@domain`, no resource);
 * RFC 3922 section 4 (mapping XMPP messages to CPIM: <subject/> to Subject, <body/> to a
 * text/plain content); RFC 3923 section 5 ("Securing Arbitrary XMPP Data": a stanza that
 * does not map is carried whole as application/xmpp+xml). The draft's example uses a
 * text/xml content holding a <body/> element; this codec reads that form too.
 *
 * A message maps to text/plain when its children are at most one <body/> and any number
 * of <subject/> elements (no other attributes than xml:lang, no element children).
 * Anything else (threads, chat states, receipts, other namespaces, several bodies) is
 * carried as the whole stanza in application/xmpp+xml, so nothing is lost.
 */
import { bareJid, type Jid, parseJid } from "../core/types.js";
import { el, type Element, elements, NS, parseXml, serialize } from "../xml/index.js";
import { SmimeError } from "../smime/errors.js";
import { contentTypeOf, type MimeHeader } from "../smime/mime.js";
import { CPIM_MESSAGE_TYPE, type CpimMessage } from "./codec.js";

export const XMPP_XML_TYPE = "application/xmpp+xml";

export interface ObjectHeaders {
  /** The sender (bare JID; im: URIs carry no resource). */
  readonly from: Jid;
  /** The recipient (bare JID), absent for broadcast presence. */
  readonly to?: Jid;
  /** ms since the epoch, from the injected clock. */
  readonly dateTime: string;
  /** Globally unique id, without angle brackets (RFC 2045 section 7). */
  readonly contentId: string;
  readonly fromName?: string;
  readonly toName?: string;
}

/** `im:alice@example.org` for a JID (RFC 3860 / RFC 3922 section 3: bare JID). */
export function jidToUri(scheme: "im" | "pres", jid: Jid): string {
  return `${scheme}:${bareJid(jid)}`;
}

/** The bare JID named by an `im:`, `pres:` or `xmpp:` URI; throws SmimeError("malformed"). */
export function uriToJid(uri: string): Jid {
  const m = /^(im|pres|xmpp):(?:\/\/)?([^?#]+)/i.exec(uri);
  if (m === null || m[2] === undefined) throw new SmimeError("malformed", "not an im:, pres: or xmpp: URI");
  try {
    return bareJid(parseJid(decodeURIComponent(m[2])));
  } catch (e) {
    throw new SmimeError("malformed", "URI does not name a JID", { cause: e });
  }
}

/** Whether a message's payload maps to CPIM text/plain (see the banner). */
export function isPlainMessage(stanza: Element): boolean {
  let bodies = 0;
  for (const c of stanza.children) {
    if (typeof c === "string") {
      if (c.trim().length > 0) return false;
      continue;
    }
    if (c.name !== "body" && c.name !== "subject") return false;
    const ns = c.attrs.xmlns;
    if (ns !== undefined && ns !== NS.client) return false;
    if (Object.keys(c.attrs).some((k) => k !== "xml:lang" && k !== "xmlns")) return false;
    if (elements(c).length > 0) return false;
    if (c.name === "body" && (++bodies > 1 || c.attrs["xml:lang"] !== undefined)) return false;
  }
  return true;
}

function contentHeaders(type: string, contentId: string): MimeHeader[] {
  return [
    { name: "Content-type", value: type },
    { name: "Content-ID", value: `<${contentId}>` },
  ];
}

/**
 * Builds the Message/CPIM object for a message stanza (draft section 3 step 1). The
 * stanza's own 'from'/'to' are not used: routing addresses come from `h`.
 */
export function messageToCpim(stanza: Element, h: ObjectHeaders): CpimMessage {
  if (stanza.name !== "message") throw new SmimeError("bad-request", "not a message stanza");
  const base = {
    objectType: CPIM_MESSAGE_TYPE,
    from: { uri: jidToUri("im", h.from), ...(h.fromName === undefined ? {} : { name: h.fromName }) },
    to: h.to === undefined ? [] : [{ uri: jidToUri("im", h.to), ...(h.toName === undefined ? {} : { name: h.toName }) }],
    cc: [],
    dateTime: h.dateTime,
    ns: [],
    require: [],
    extensions: [],
  };
  if (isPlainMessage(stanza)) {
    const subject = elements(stanza)
      .filter((c) => c.name === "subject")
      .map((c) => {
        const lang = c.attrs["xml:lang"];
        return typeof lang === "string" ? { value: c.getText(), lang } : { value: c.getText() };
      });
    const body = stanza.getChild("body")?.getText() ?? "";
    return {
      ...base,
      subject,
      content: { headers: contentHeaders("text/plain; charset=utf-8", h.contentId), body: canonicalText(body) },
    };
  }
  return {
    ...base,
    subject: [],
    content: { headers: contentHeaders(`${XMPP_XML_TYPE}; charset=utf-8`, h.contentId), body: serialize(innerStanza(stanza)) },
  };
}

/** The stanza as carried in application/xmpp+xml: jabber:client, no 'from' (the object's From is authoritative). */
function innerStanza(stanza: Element): Element {
  const attrs: Record<string, string | undefined> = { xmlns: NS.client };
  for (const k of ["to", "type", "id", "xml:lang"]) {
    const v = stanza.attrs[k];
    if (typeof v === "string") attrs[k] = v;
  }
  return el(stanza.name, attrs, ...stanza.children.map((c) => (typeof c === "string" ? c : parseXml(c.toString()))));
}

/** Text bodies travel with CRLF line breaks (RFC 2046 section 4.1.1); stanzas carry LF. */
function canonicalText(s: string): string {
  return s.replace(/\r\n|\r|\n/g, "\r\n");
}

function fromCanonicalText(s: string): string {
  return s.replace(/\r\n/g, "\n");
}

export interface DecodedPayload {
  /** Children for the delivered stanza (body, subject, or the carried stanza's children). */
  readonly children: Element[];
  /** The carried stanza's name, when the content was application/xmpp+xml. */
  readonly stanzaName?: string;
  /** The carried stanza's 'type', when the content was application/xmpp+xml. */
  readonly type?: string;
}

/** The message payload of a CPIM object (draft section 3, read direction). */
export function cpimToMessagePayload(m: CpimMessage): DecodedPayload {
  const ct = contentTypeOf(m.content);
  const subjects = m.subject.map((s) =>
    el("subject", s.lang === undefined ? {} : { "xml:lang": s.lang }, s.value),
  );
  switch (ct.type) {
    case "text/plain":
      return { children: [...subjects, el("body", {}, fromCanonicalText(m.content.body))] };
    case "text/xml":
    case "application/xml": {
      // draft-ietf-xmpp-e2e-03 example 1: a <body/> element as text/xml.
      const x = parseXml(m.content.body.trim());
      if (x.name !== "body") throw new SmimeError("malformed", "text/xml content is not a <body/>");
      return { children: [...subjects, el("body", {}, fromCanonicalText(x.getText()))] };
    }
    case XMPP_XML_TYPE:
      return decodeStanzaContent(m.content.body);
    default:
      throw new SmimeError("unsupported-algorithm", "unsupported CPIM content type");
  }
}

/** An application/xmpp+xml content: one message, presence or iq stanza. */
export function decodeStanzaContent(body: string): DecodedPayload {
  const x = parseXml(body.trim());
  if (x.name !== "message" && x.name !== "presence" && x.name !== "iq")
    throw new SmimeError("malformed", "application/xmpp+xml content is not a stanza");
  const type = x.attrs.type;
  const children = elements(x).map((c) => parseXml(c.toString()));
  return typeof type === "string" ? { children, stanzaName: x.name, type } : { children, stanzaName: x.name };
}
