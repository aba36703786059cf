/**
 * XMPP <presence/> stanzas to PIDF presence objects and back.
 *
 * Spec: draft-ietf-xmpp-e2e-03 section 4 step 1 ("Generate an application/cpim-pidf+xml
 * object defined in PIDF") and example 3: the PIDF document travels in a CPIM header
 * block (From/To with pres: URIs, DateTime) whose content is the PIDF document. RFC 3863
 * (PIDF); RFC 3922 section 5 (XMPP presence to CPP: available = basic "open",
 * unavailable = basic "closed", <status/> = <note/>, <show/> as the pidf:im status).
 * RFC 3923 section 5: presence that does not map (subscriptions, <priority/>, extension
 * children such as entity caps) is carried whole as application/xmpp+xml.
 *
 * <show/> values are written as the im:im token unchanged (away, chat, dnd, xa) and read
 * back the same way; "busy" (the RFC 3863 example value) reads as dnd.
 */
import { type Jid } from "../core/types.js";
import { el, type Element, elements, NS } from "../xml/index.js";
import { CPIM_MESSAGE_TYPE, CPIM_PRESENCE_TYPE, type CpimMessage } from "../cpim/codec.js";
import { decodeStanzaContent, type DecodedPayload, jidToUri, type ObjectHeaders, XMPP_XML_TYPE } from "../cpim/xmpp.js";
import { SmimeError } from "../smime/errors.js";
import { contentTypeOf } from "../smime/mime.js";
import { parsePidf, PIDF_TYPE, type PidfDocument, serializePidf } from "./codec.js";

const SHOWS = new Set(["away", "chat", "dnd", "xa"]);

/** Whether a presence stanza maps to PIDF (see the banner). */
export function isPlainPresence(stanza: Element): boolean {
  const type = stanza.attrs.type;
  if (type !== undefined && type !== "unavailable") return false;
  for (const c of stanza.children) {
    if (typeof c === "string") {
      if (c.trim().length > 0) return false;
      continue;
    }
    const ns = c.attrs.xmlns;
    if (ns !== undefined && ns !== NS.client) return false;
    if (elements(c).length > 0) return false;
    if (c.name === "show") {
      if (!SHOWS.has(c.getText().trim()) || Object.keys(c.attrs).some((k) => k !== "xmlns")) return false;
    } else if (c.name === "status") {
      if (Object.keys(c.attrs).some((k) => k !== "xmlns" && k !== "xml:lang")) return false;
    } else return false;
  }
  return true;
}

/** The PIDF document for a presence stanza that {@link isPlainPresence}. */
export function presenceToPidf(stanza: Element, entity: Jid, tupleId: string, timestamp: string): PidfDocument {
  const show = stanza.getChild("show")?.getText().trim();
  const notes = elements(stanza)
    .filter((c) => c.name === "status")
    .map((c) => {
      const lang = c.attrs["xml:lang"];
      return typeof lang === "string" ? { text: c.getText(), lang } : { text: c.getText() };
    });
  return {
    entity: jidToUri("pres", entity),
    tuples: [
      {
        id: tupleId,
        basic: stanza.attrs.type === "unavailable" ? "closed" : "open",
        ...(show === undefined ? {} : { im: show }),
        notes,
        timestamp,
      },
    ],
    notes: [],
  };
}

/**
 * The presence object (draft section 4 step 1): PIDF in a CPIM header block, or the whole
 * stanza as application/xmpp+xml in a Message/CPIM object when it does not map.
 */
export function presenceToCpim(stanza: Element, h: ObjectHeaders, tupleId: string): CpimMessage {
  if (stanza.name !== "presence") throw new SmimeError("bad-request", "not a presence stanza");
  const base = {
    from: { uri: jidToUri("pres", h.from), ...(h.fromName === undefined ? {} : { name: h.fromName }) },
    to: h.to === undefined ? [] : [{ uri: jidToUri("pres", h.to), ...(h.toName === undefined ? {} : { name: h.toName }) }],
    cc: [],
    dateTime: h.dateTime,
    subject: [],
    ns: [],
    require: [],
    extensions: [],
  };
  const contentId = { name: "Content-ID", value: `<${h.contentId}>` };
  if (isPlainPresence(stanza)) {
    const doc = presenceToPidf(stanza, h.from, tupleId, h.dateTime);
    return {
      ...base,
      objectType: CPIM_PRESENCE_TYPE,
      content: { headers: [{ name: "Content-type", value: `${PIDF_TYPE}; charset=utf-8` }, contentId], body: serializePidf(doc) },
    };
  }
  const inner = el(
    "presence",
    { xmlns: NS.client, type: typeof stanza.attrs.type === "string" ? stanza.attrs.type : undefined },
    ...elements(stanza),
  );
  return {
    ...base,
    objectType: CPIM_MESSAGE_TYPE,
    content: { headers: [{ name: "Content-type", value: `${XMPP_XML_TYPE}; charset=utf-8` }, contentId], body: inner.toString() },
  };
}

/** Presence children and type for a PIDF document (the first tuple is the XMPP resource's). */
export function pidfToPresencePayload(doc: PidfDocument): DecodedPayload {
  const t = doc.tuples[0];
  const children: Element[] = [];
  if (t?.im !== undefined) {
    const show = t.im === "busy" ? "dnd" : t.im;
    if (SHOWS.has(show)) children.push(el("show", {}, show));
  }
  for (const n of [...(t?.notes ?? []), ...doc.notes])
    children.push(el("status", n.lang === undefined ? {} : { "xml:lang": n.lang }, n.text));
  return t?.basic === "closed" ? { children, stanzaName: "presence", type: "unavailable" } : { children, stanzaName: "presence" };
}

/** The presence payload of a presence object (PIDF or application/xmpp+xml). */
export function cpimToPresencePayload(m: CpimMessage): DecodedPayload {
  const ct = contentTypeOf(m.content);
  if (ct.type === XMPP_XML_TYPE) return decodeStanzaContent(m.content.body);
  if (ct.type === PIDF_TYPE || ct.type === "text/xml" || ct.type === "application/xml")
    return pidfToPresencePayload(parsePidf(m.content.body));
  throw new SmimeError("unsupported-algorithm", "unsupported presence content type");
}
