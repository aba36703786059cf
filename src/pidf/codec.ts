/**
 * The Presence Information Data Format, both ways (XML document <-> typed object).
 *
 * Spec: RFC 3863 "Presence Information Data Format (PIDF)" (the published
 * draft-ietf-imp-cpim-pidf-08 that draft-ietf-xmpp-e2e-03 references as PIDF), sections
 * 4.1 (<presence entity=...>, "pres:" URI), 4.1.2-4.1.4 (<tuple id>, <status>/<basic>
 * open|closed, <contact priority>), 4.1.6 (<note xml:lang>), 4.1.7 (<timestamp>), and
 * section 4.2.1 / the urn:ietf:params:xml:ns:pidf:im namespace for the <im:im> status
 * extension used in draft-ietf-xmpp-e2e-03 example 3. Unknown status extensions and
 * elements are ignored on input, as RFC 3863 section 4.3 requires ("MUST ignore").
 *
 * XML is built with src/xml (never by concatenation); the XML declaration of section
 * 4.1 is prepended to the serialized element.
 */
import { el, type Element, elements, parseXml, serialize } from "../xml/index.js";
import { SmimeError } from "../smime/errors.js";

export const NS_PIDF = "urn:ietf:params:xml:ns:pidf";
export const NS_PIDF_IM = "urn:ietf:params:xml:ns:pidf:im";
export const PIDF_TYPE = "application/pidf+xml";

export interface PidfNote {
  readonly text: string;
  readonly lang?: string;
}

export interface PidfTuple {
  readonly id: string;
  readonly basic?: "open" | "closed";
  /** The urn:ietf:params:xml:ns:pidf:im <im/> status value (e.g. "away", "busy"). */
  readonly im?: string;
  readonly contact?: { readonly uri: string; readonly priority?: string };
  readonly notes: readonly PidfNote[];
  readonly timestamp?: string;
}

export interface PidfDocument {
  /** The presentity, a pres: URI (RFC 3863 section 4.1.1). */
  readonly entity: string;
  readonly tuples: readonly PidfTuple[];
  readonly notes: readonly PidfNote[];
}

function malformed(detail: string): SmimeError {
  return new SmimeError("malformed", detail);
}

function noteEl(n: PidfNote): Element {
  return el("note", n.lang === undefined ? {} : { "xml:lang": n.lang }, n.text);
}

export function pidfToXml(d: PidfDocument): Element {
  const usesIm = d.tuples.some((t) => t.im !== undefined);
  return el(
    "presence",
    { xmlns: NS_PIDF, "xmlns:im": usesIm ? NS_PIDF_IM : undefined, entity: d.entity },
    ...d.tuples.map((t) =>
      el(
        "tuple",
        { id: t.id },
        el(
          "status",
          {},
          t.basic === undefined ? undefined : el("basic", {}, t.basic),
          t.im === undefined ? undefined : el("im:im", {}, t.im),
        ),
        t.contact === undefined ? undefined : el("contact", { priority: t.contact.priority }, t.contact.uri),
        ...t.notes.map(noteEl),
        t.timestamp === undefined ? undefined : el("timestamp", {}, t.timestamp),
      ),
    ),
    ...d.notes.map(noteEl),
  );
}

export function serializePidf(d: PidfDocument): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\r\n${serialize(pidfToXml(d))}`;
}

function notesOf(e: Element): PidfNote[] {
  return elements(e)
    .filter((c) => c.getName() === "note" && c.getNS() === NS_PIDF)
    .map((c) => {
      const lang = c.attrs["xml:lang"];
      return typeof lang === "string" ? { text: c.getText(), lang } : { text: c.getText() };
    });
}

const TUPLE_ID = /^[A-Za-z_][A-Za-z0-9_.\-]*$/;

export function parsePidf(xml: string): PidfDocument {
  const root = parseXml(xml.replace(/^\uFEFF/, "").trim());
  if (root.getName() !== "presence" || root.getNS() !== NS_PIDF) throw malformed("not a PIDF document");
  const entity = root.attrs.entity;
  if (typeof entity !== "string" || entity.length === 0) throw malformed("PIDF without entity");
  const tuples: PidfTuple[] = [];
  for (const t of elements(root)) {
    if (t.getNS() !== NS_PIDF || t.getName() !== "tuple") continue;
    const id = t.attrs.id;
    // RFC 3863 section 4.1.2: id is an xs:ID.
    if (typeof id !== "string" || !TUPLE_ID.test(id)) throw malformed("tuple without a valid id");
    const status = elements(t).find((c) => c.getName() === "status" && c.getNS() === NS_PIDF);
    if (status === undefined) throw malformed("tuple without status");
    let basic: "open" | "closed" | undefined;
    let im: string | undefined;
    for (const s of elements(status)) {
      if (s.getName() === "basic" && s.getNS() === NS_PIDF) {
        const v = s.getText().trim();
        if (v !== "open" && v !== "closed") throw malformed("basic is neither open nor closed");
        basic = v;
      } else if (s.getName() === "im" && s.getNS() === NS_PIDF_IM) im = s.getText().trim();
    }
    const c = elements(t).find((x) => x.getName() === "contact" && x.getNS() === NS_PIDF);
    const prio = c?.attrs.priority;
    const contact = c === undefined ? undefined : { uri: c.getText().trim(), ...(typeof prio === "string" ? { priority: prio } : {}) };
    const ts = elements(t).find((x) => x.getName() === "timestamp" && x.getNS() === NS_PIDF)?.getText().trim();
    tuples.push({
      id,
      notes: notesOf(t),
      ...(basic === undefined ? {} : { basic }),
      ...(im === undefined ? {} : { im }),
      ...(contact === undefined ? {} : { contact }),
      ...(ts === undefined ? {} : { timestamp: ts }),
    });
  }
  return { entity, tuples, notes: notesOf(root) };
}
