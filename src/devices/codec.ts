/**
 * Codec for the many-devices layer: message carbons (enable, received/sent wrappers), the
 * processing hints put next to ESession stanzas, and the "sent by self" copy that a
 * device sends to the user's other devices inside its ESession with each of them.
 *
 * Spec: XEP-0280 v1.0 (Message Carbons): section 4 (enable with `<enable/>` in an iq set to
 * the user's own account), section 6 (`<received/>`/`<sent/>` wrappers holding a XEP-0297
 * `<forwarded/>` message), section 7 ("Avoiding Carbons": `<private/>`, which servers
 * honour together with XEP-0334 `<no-copy/>`), section 11 (Security Considerations: "a
 * client MUST NOT accept carbon-copied messages whose 'from' is not the user's bare JID").
 * XEP-0297 v1.0 (Stanza Forwarding: `<forwarded xmlns='urn:xmpp:forward:0'>`).
 * XEP-0334 v0.3 (Message Processing Hints) section 4: `<no-copy/>`, `<no-store/>` ("MUST
 * NOT store the message in any way, neither permanently (archives) nor temporarily
 * (offline storage)"), `<no-permanent-store/>`.
 *
 * The sent-by-self copy reuses the XEP-0280 `<sent/>` + `<forwarded/>` shape, but it never
 * travels in the clear: it is the content of a XEP-0200 `<c/>` encrypted in the sender's
 * session with each of its own other devices, so the receiving device knows it comes from
 * one of its own devices because the session authenticated that peer.
 */
import { deepClone, el, elements, NS, type Element } from "../xml/index.js";

export const NS_CARBONS = "urn:xmpp:carbons:2";
export const NS_FORWARD = "urn:xmpp:forward:0";

/** XEP-0280 section 4: `<iq type='set'><enable xmlns='urn:xmpp:carbons:2'/></iq>` (no 'to': our account). */
export function carbonsEnableIq(id: string): Element {
  return el("iq", { type: "set", id }, el("enable", { xmlns: NS_CARBONS }));
}

export type CarbonDirection = "sent" | "received";

/** A server carbon, as parsed (not yet checked against our bare JID). */
export interface ParsedCarbon {
  readonly direction: CarbonDirection;
  /** The wrapper's 'from' ('' when absent). */
  readonly from: string;
  /** The forwarded message (undefined when the wrapper holds none: malformed). */
  readonly inner: Element | undefined;
}

/** Recognises a XEP-0280 carbon wrapper (section 6); undefined for any other stanza. */
export function parseCarbon(stanza: Element): ParsedCarbon | undefined {
  if (stanza.name !== "message" || stanza.attrs.type === "error") return undefined;
  for (const direction of ["received", "sent"] as const) {
    const w = stanza.getChild(direction, NS_CARBONS);
    if (!w) continue;
    const forwarded = w.getChild("forwarded", NS_FORWARD);
    const inner = forwarded ? elements(forwarded).find((c) => c.name === "message") : undefined;
    const from = typeof stanza.attrs.from === "string" ? stanza.attrs.from : "";
    return { direction, from, inner };
  }
  return undefined;
}

/** Whether a message carries ESession material: a XEP-0200 `<c/>`, a negotiation form or an offline `<init/>`. */
export function carriesESession(stanza: Element): boolean {
  if (stanza.name !== "message") return false;
  return (
    stanza.getChild("c", NS.c) !== undefined ||
    stanza.getChild("feature", NS.featureNeg) !== undefined ||
    stanza.getChild("init", NS.esessionInit) !== undefined
  );
}

export interface HintOptions {
  /** The session's negotiated XEP-0155 'logging' value, if established. */
  readonly logging?: string;
  /**
   * Whether temporary (offline) storage must stay allowed: XEP-0187 offline sessions and
   * recovery of a stanza sent to a device that just vanished depend on it.
   */
  readonly keepOffline: boolean;
}

/**
 * Adds, in the clear, what keeps servers from copying an ESession stanza anywhere it could
 * not be decrypted: XEP-0280 `<private/>` and XEP-0334 `<no-copy/>`; with logging not
 * allowed, `<no-permanent-store/>` and (unless offline storage must stay possible)
 * `<no-store/>`. Idempotent: hints already present are not repeated.
 */
export function addHints(stanza: Element, o: HintOptions): void {
  const add = (name: string, xmlns: string): void => {
    if (!stanza.getChild(name, xmlns)) stanza.cnode(el(name, { xmlns }));
  };
  add("private", NS_CARBONS);
  add("no-copy", NS.hints);
  if (o.logging === "mustnot") {
    add("no-permanent-store", NS.hints);
    if (!o.keepOffline) add("no-store", NS.hints);
  }
}

/**
 * The content of a sent-by-self copy: `<message type=...><sent xmlns=carbons><forwarded>
 * <message to=(the recipient) from=(this device)>...children...</message></forwarded></sent>
 * </message>`, to be encrypted in the session with one of our own devices.
 */
export function sentCopy(original: Element, to: string, from: string): Element {
  const type = typeof original.attrs.type === "string" ? original.attrs.type : "chat";
  const inner = el("message", { xmlns: NS.client, to, from, type, id: original.attrs.id });
  for (const c of original.children) {
    if (typeof c === "string") inner.t(c);
    else if (c.name !== "thread") inner.cnode(deepClone(c));
  }
  return el("message", { type }, el("sent", { xmlns: NS_CARBONS }, el("forwarded", { xmlns: NS_FORWARD }, inner)));
}

/** The forwarded message of a decrypted sent-by-self copy, or undefined. */
export function parseSentCopy(decrypted: Element): Element | undefined {
  const w = decrypted.getChild("sent", NS_CARBONS) ?? decrypted.getChild("received", NS_CARBONS);
  if (!w) return undefined;
  const f = w.getChild("forwarded", NS_FORWARD);
  return f ? elements(f).find((c) => c.name === "message") : undefined;
}

/** Whether a decrypted stanza claims to be a carbon or a self copy (only our own devices may send those). */
export function claimsCarbon(decrypted: Element): boolean {
  return decrypted.getChild("sent", NS_CARBONS) !== undefined || decrypted.getChild("received", NS_CARBONS) !== undefined;
}
