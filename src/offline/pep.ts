/**
 * The few XEP-0060/XEP-0163 (PEP) requests the offline, device and archive layers make:
 * publish an item with publish-options, retrieve items, retract an item; and reading the
 * answers. Codecs only: the wiring sends the iq and matches the reply.
 *
 * Spec: XEP-0060 v1.15 sections 6.5 (retrieve items), 7.1 and 7.1.5 (publish with
 * publish-options, precondition-not-met), 7.2 (retract); XEP-0163 v1.2 (PEP: the node
 * lives on the account's bare JID; an iq without 'to' addresses our own); XEP-0222/0223
 * (persistent items; 'whitelist' = owner only). XEP-0187 v0.5 section 3.1: offline options
 * "will never be pushed to subscribers": deliver_notifications false and
 * send_last_published_item never.
 */
import { el, elements, type Element, NS } from "../xml/index.js";

export const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options";

export type AccessModel = "open" | "presence" | "roster" | "whitelist";

export interface PublishOptions {
  readonly accessModel: AccessModel;
  readonly maxItems: number;
  /** Never push items to subscribers (XEP-0187 3.1). */
  readonly quiet?: boolean;
}

function field(name: string, v: string): Element {
  return el("field", { var: name }, el("value", {}, v));
}

/** XEP-0060 7.1.5: publish `payload` as item `itemId` of `node` on our own PEP service. */
export function publishIq(id: string, node: string, itemId: string, payload: Element, o: PublishOptions): Element {
  return el(
    "iq",
    { type: "set", id },
    el(
      "pubsub",
      { xmlns: NS_PUBSUB },
      el("publish", { node }, el("item", { id: itemId }, payload)),
      el(
        "publish-options",
        {},
        el(
          "x",
          { xmlns: NS.data, type: "submit" },
          el("field", { var: "FORM_TYPE", type: "hidden" }, el("value", {}, PUBLISH_OPTIONS)),
          field("pubsub#persist_items", "true"),
          field("pubsub#access_model", o.accessModel),
          field("pubsub#max_items", String(o.maxItems)),
          o.quiet === true && field("pubsub#deliver_notifications", "false"),
          o.quiet === true && field("pubsub#send_last_published_item", "never"),
        ),
      ),
    ),
  );
}

/** XEP-0060 6.5: all items of `node` at `owner` (undefined: our own account). */
export function itemsIq(id: string, owner: string | undefined, node: string, itemId?: string): Element {
  return el("iq", { type: "get", id, to: owner }, el("pubsub", { xmlns: NS_PUBSUB }, el("items", { node }, itemId !== undefined && el("item", { id: itemId }))));
}

/** XEP-0060 7.2: retract item `itemId` from our own `node`. */
export function retractIq(id: string, node: string, itemId: string): Element {
  return el("iq", { type: "set", id }, el("pubsub", { xmlns: NS_PUBSUB }, el("retract", { node }, el("item", { id: itemId }))));
}

export interface PepItem {
  readonly id: string;
  readonly payload: Element | undefined;
}

/** The items of an items result (empty when there are none). */
export function parseItems(result: Element): PepItem[] {
  const items = result.getChild("pubsub", NS_PUBSUB)?.getChild("items");
  if (!items) return [];
  return elements(items)
    .filter((i) => i.name === "item")
    .map((i) => ({ id: String(i.attrs.id ?? ""), payload: elements(i)[0] }));
}

/** The defined condition of an error reply (RFC 6120 8.3.3), if any. */
export function errorCondition(reply: Element): string | undefined {
  const e = reply.getChild("error");
  if (!e) return undefined;
  return elements(e).find((c) => c.getNS() === NS.stanzas)?.name;
}
