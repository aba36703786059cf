/**
 * The <e2e xmlns='urn:ietf:params:xml:ns:xmpp-e2e'/> wrapper codec and the gateway
 * strip/wrap operations.
 *
 * Spec: draft-ietf-xmpp-e2e-03 section 3 step 3 and section 4 step 3 (the S/MIME object
 * is the character data of an <e2e/> child of <message/> or <presence/>; encrypted
 * presence "MUST include a 'to' attribute", i.e. directed presence), section 5 (a gateway
 * "MUST remove the XMPP wrapper (everything down to and including the <e2e> and </e2e>
 * tags) in order to reveal the multipart S/MIME object", and in the other direction "wrap
 * the object in an XMPP message or presence wrapper (including the <e2e> and </e2e>
 * tags)"), section 6 (the namespace) and appendix A (<e2e/> is an xs:string).
 *
 * The character data is CRLF-canonical MIME; XML turns CRLF into LF, so readers call
 * {@link e2eText}, which restores the canonical form (see ./mime.ts).
 */
import { el, type Element, elements, NS } from "../xml/index.js";
import { SmimeError } from "./errors.js";
import { canonicalizeWrapped, MIME_LIMITS } from "./mime.js";

export const NS_E2E = "urn:ietf:params:xml:ns:xmpp-e2e";

export type ObjectStanzaKind = "message" | "presence";

/** The <e2e/> child of a stanza, if any. */
export function findE2e(stanza: Element): Element | undefined {
  return elements(stanza).find((c) => c.name === "e2e" && c.attrs.xmlns === NS_E2E);
}

export function isE2eStanza(stanza: Element): boolean {
  return (stanza.name === "message" || stanza.name === "presence") && findE2e(stanza) !== undefined;
}

/** The canonical S/MIME text of a stanza's <e2e/>; SmimeError("malformed") if absent or empty. */
export function e2eText(stanza: Element): string {
  const e = findE2e(stanza);
  if (e === undefined) throw new SmimeError("malformed", "no <e2e/> element");
  if (elements(e).length > 0) throw new SmimeError("malformed", "<e2e/> has element children");
  const t = e.getText();
  if (t.length > MIME_LIMITS.maxChars) throw new SmimeError("malformed", "<e2e/> too large");
  const c = canonicalizeWrapped(t);
  if (c.length === 0) throw new SmimeError("malformed", "empty <e2e/>");
  return c;
}

export function e2eElement(smime: string): Element {
  return el("e2e", { xmlns: NS_E2E }, smime);
}

export interface WrapOptions {
  readonly kind: ObjectStanzaKind;
  /** Required for message and for encrypted presence (directed presence). */
  readonly to?: string;
  readonly from?: string;
  readonly type?: string;
  readonly id?: string;
  /**
   * A <body/> for clients that do not implement the protocol (RFC 2779 section 2.5.4:
   * clients that do not use it keep working). Messages only.
   */
  readonly fallbackBody?: string;
}

/** Puts an S/MIME object into a stanza (draft section 3/4 step 3; gateway wrap, section 5). */
export function wrapObject(smime: string, o: WrapOptions): Element {
  if (o.kind === "message" && o.to === undefined) throw new SmimeError("bad-request", "a message needs a 'to'");
  return el(
    o.kind,
    { xmlns: NS.client, to: o.to, from: o.from, type: o.type, id: o.id },
    e2eElement(smime),
    o.kind === "message" && o.fallbackBody !== undefined ? el("body", {}, o.fallbackBody) : undefined,
  );
}

export interface StrippedObject {
  readonly kind: ObjectStanzaKind;
  readonly to?: string;
  readonly from?: string;
  readonly type?: string;
  readonly id?: string;
  /** The canonical multipart S/MIME object. */
  readonly smime: string;
}

/** Removes the XMPP wrapper and reveals the S/MIME object (gateway strip, draft section 5). */
export function stripWrapper(stanza: Element): StrippedObject {
  if (stanza.name !== "message" && stanza.name !== "presence") throw new SmimeError("malformed", "not a message or presence");
  const smime = e2eText(stanza);
  const a = (k: string) => (typeof stanza.attrs[k] === "string" ? (stanza.attrs[k] as string) : undefined);
  const to = a("to");
  const from = a("from");
  const type = a("type");
  const id = a("id");
  return {
    kind: stanza.name,
    smime,
    ...(to === undefined ? {} : { to }),
    ...(from === undefined ? {} : { from }),
    ...(type === undefined ? {} : { type }),
    ...(id === undefined ? {} : { id }),
  };
}
