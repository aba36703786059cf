/**
 * Per-device offline delivery on a server without AMP: the relay of offline-stored stanzas
 * addressed to another device of the same account.
 *
 * Spec: XEP-0187 v0.5 section 3.1 ('match_resource': the options belong to one resource)
 * and 3.3 (the sender "MUST address" such a session to that resource and relies on
 * XEP-0079 AMP `match-resource` so that no other resource gets it). Prosody has no AMP:
 * RFC 6121 8.5.3.2.1 delivers a message for an unavailable full JID as if sent to the bare
 * JID, so XEP-0160 offline storage hands every stored stanza to whichever device logs in
 * first. That device cannot decrypt stanzas of another device's session (the one-time
 * secret is that device's alone), so instead of refusing them it parks them, still
 * encrypted, on a PEP node of its own account with the 'whitelist' access model (XEP-0223:
 * owner only; XEP-0060 7.1.5 publish-options, XEP-0297 forwarding), and the device they
 * name collects them when it logs in. Codec only; the wiring is in SecureClient.
 */
import { el, elements, type Element } from "../xml/index.js";
import { NS_FORWARD } from "../devices/codec.js";
import type { PepItem } from "./pep.js";

/** Our PEP node for parked stanzas (not a registered namespace: private to this library). */
export const NODE_RELAY = "urn:xmpp-e2e:offline-relay:0";

/** Relay items kept at most (Prosody's default pep_max_items is 256). */
export const RELAY_MAX_ITEMS = 256;

/**
 * Item id: the arrival time and a sequence number, zero-padded, so that sorting the ids
 * restores the order the server delivered them in (a session's stanzas MUST be processed
 * in order: XEP-0200 counters).
 */
export function relayItemId(nowMs: number, seq: number): string {
  return `${String(Math.max(0, Math.floor(nowMs))).padStart(15, "0")}-${String(seq % 1e9).padStart(9, "0")}`;
}

/** The payload of a relay item: the stanza as the server delivered it, forwarded. */
export function relayPayload(stanza: Element): Element {
  return el("forwarded", { xmlns: NS_FORWARD }, stanza);
}

/** A parked stanza and the item that holds it. */
export interface RelayedStanza {
  readonly itemId: string;
  readonly stanza: Element;
  /** The full JID the stanza was addressed to. */
  readonly to: string;
}

/** The parked stanzas of an items result, in arrival order; malformed items are skipped. */
export function parseRelayItems(items: readonly PepItem[]): RelayedStanza[] {
  const out: RelayedStanza[] = [];
  for (const i of items) {
    const f = i.payload;
    if (!f || f.name !== "forwarded" || f.getNS() !== NS_FORWARD) continue;
    const m = elements(f).find((c) => c.name === "message");
    const to = m?.attrs.to;
    if (!m || typeof to !== "string") continue;
    out.push({ itemId: i.id, stanza: m, to });
  }
  return out.sort((a, b) => (a.itemId < b.itemId ? -1 : a.itemId > b.itemId ? 1 : 0));
}
