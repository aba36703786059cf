/**
 * Sans-IO core for XEP-0189: publish and retrieve public keys, revocations and
 * attestations via PEP, request a key directly by iq (XEP-0189 section 8 and the XTLS
 * draft's `urn:xmpp:pubkey:0` request), answer such requests, and surface PEP
 * notifications and "generating" presence.
 *
 * Spec: XEP-0189 v0.14 section 6 "Publication via PEP" ("A user SHOULD publish public
 * keys, attestations, and revocations via XEP-0163, in particular adhering to the best
 * practices defined in XEP-0222"; "If the user has only one public key ... the pubkey
 * PEP node SHOULD have only one item, with an ItemID of 'current'"); the nodes are named
 * by the payload namespaces (XEP-0163 section 4 convention). XEP-0222 section 3: publish
 * with publish-options `pubsub#persist_items` = true and an access model (default
 * "presence"). XEP-0060 sections 6.5 (retrieve items: `<items node=.../>`), 7.1
 * (publish, publish-options; 7.1.2.1 event notifications in `<message/>`), 7.2 (retract).
 * Section 8: an empty `<pubkey/>` in an iq get to a full JID is answered with the
 * client's key; draft-meyer-xmpp-e2e-encryption-02 section 5.1: `<pubkeys
 * xmlns='urn:xmpp:pubkey:0'/>` is answered with `<keyinfo/>` elements. Section 10:
 * `<generating/>` in presence. RFC 6120 section 8.2.3 / 8.3 (iq semantics, errors).
 *
 * The core owns no sockets or timers: feed stanzas with `handleStanza`, the time with
 * `handleTimer`, drain outputs with `poll()`, and call `handleTimer` at `nextDeadline()`.
 * Ids come from the injected Random; time from the injected Clock. Responses are matched
 * by id AND by the JID the request went to (a spoofed result from elsewhere is ignored).
 */
import { toHex } from "../core/bytes.js";
import { Outbox, type Output } from "../core/machine.js";
import { bareJid, type Clock, type FullJid, type Jid, type Random } from "../core/types.js";
import { getLimits } from "../limits.js";
import { el, elements, NS, type Element } from "../xml/index.js";
import {
  buildPubkeyPayload,
  NS_ATTEST,
  NS_PUBKEY,
  NS_PUBKEY_LEGACY,
  NS_REVOKE,
  parsePubkeyPayload,
  type Attestation,
  type LegacyPubKeys,
  type PubKey,
  type PubkeyPayload,
  type Revocation,
} from "./codec.js";
import { pubkeyConditionOf, PubkeyError } from "./errors.js";

export const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
export const NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event";
const PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options";

/** The PEP node of each payload kind (XEP-0163: a node named by the payload's namespace). */
export const PUBKEY_NODES = { pubkey: NS_PUBKEY, revocation: NS_REVOKE, attestation: NS_ATTEST } as const;
export type PubkeyNodeKind = keyof typeof PUBKEY_NODES;

export type AccessModel = "open" | "presence" | "roster" | "whitelist";

export interface PubkeyItem {
  readonly id: string;
  /** The parsed payload, or the PubkeyError that made it unusable. */
  readonly payload: PubkeyPayload | PubkeyError;
}

export type PubkeyEvent =
  | { readonly type: "published"; readonly requestId: string; readonly node: string; readonly itemId: string }
  | { readonly type: "retracted"; readonly requestId: string; readonly node: string; readonly itemId: string }
  | { readonly type: "items"; readonly requestId: string; readonly owner: Jid; readonly node: string; readonly items: readonly PubkeyItem[] }
  /** The answer to a direct key request (XEP-0189 section 8). */
  | { readonly type: "key"; readonly requestId: string; readonly from: Jid; readonly pubkey: PubKey }
  /** The answer to a `urn:xmpp:pubkey:0` request (XTLS draft). */
  | { readonly type: "legacy-keys"; readonly requestId: string; readonly from: Jid; readonly pubkeys: LegacyPubKeys }
  | { readonly type: "failed"; readonly requestId: string; readonly error: PubkeyError }
  /** A PEP notification (XEP-0060 section 7.1.2.1) on one of the key nodes. */
  | { readonly type: "notification"; readonly from: Jid; readonly node: string; readonly items: readonly PubkeyItem[]; readonly retracted: readonly string[] }
  /** A contact signals key generation in progress (true) or, with plain presence after it, done (false). */
  | { readonly type: "generating"; readonly from: Jid; readonly generating: boolean }
  /** A key sent directly in a message (XEP-0189 section 9). */
  | { readonly type: "key-message"; readonly from: Jid; readonly pubkey: PubKey }
  /** We answered a key request from `from` (what: "pubkey" or "legacy"), or refused it. */
  | { readonly type: "answered"; readonly from: Jid; readonly what: "pubkey" | "legacy"; readonly served: boolean };

export interface PubkeyResponder {
  /** Our current `<pubkey/>` for a section 8 request (undefined: item-not-found). */
  pubkey?(from: Jid): PubKey | undefined;
  /** Our keys for a `urn:xmpp:pubkey:0` request (undefined: item-not-found). */
  legacy?(from: Jid): LegacyPubKeys | undefined;
}

export interface PubkeyClientOptions {
  /** Our full JID. */
  readonly jid: FullJid;
  readonly random: Random;
  readonly clock: Clock;
  /** How long a request may wait for its answer (default 30,000 ms). */
  readonly timeoutMs?: number;
  /** Answers key requests; without it requests get service-unavailable. */
  readonly responder?: PubkeyResponder;
}

interface Pending {
  readonly kind: "publish" | "retract" | "items" | "request" | "legacy";
  /** The JID the iq went to (undefined: our own account, PEP). */
  readonly to: Jid | undefined;
  readonly node: string;
  readonly itemId: string;
  readonly deadline: number;
}

function attr(e: Element, k: string): string | undefined {
  const v: unknown = e.attrs[k];
  return typeof v === "string" ? v : undefined;
}

function parseItem(item: Element): PubkeyItem {
  const id = attr(item, "id") ?? "";
  const child = elements(item)[0];
  if (child === undefined) return { id, payload: new PubkeyError("bad-request", "empty item") };
  try {
    return { id, payload: parsePubkeyPayload(child) };
  } catch (e) {
    return { id, payload: e instanceof PubkeyError ? e : new PubkeyError("bad-request", "unparsable item") };
  }
}

function stanzaErrorOf(s: Element): PubkeyError {
  const err = s.getChild("error");
  const cond = err === undefined ? undefined : elements(err).find((c) => c.getNS() === NS.stanzas && c.name !== "text");
  const name = cond?.name ?? "undefined-condition";
  const c = pubkeyConditionOf(name);
  return new PubkeyError(c, `stanza error ${name}`, c === "other" ? name : undefined);
}

export class PubkeyClient {
  private readonly out = new Outbox<PubkeyEvent>();
  private readonly pending = new Map<string, Pending>();
  private readonly jid: FullJid;
  private readonly random: Random;
  private readonly clock: Clock;
  private readonly timeoutMs: number;
  private readonly responder: PubkeyResponder | undefined;
  /** Contacts we saw `<generating/>` from, to report the end of generation. */
  private readonly generating = new Set<Jid>();

  constructor(opts: PubkeyClientOptions) {
    this.jid = opts.jid;
    this.random = opts.random;
    this.clock = opts.clock;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.responder = opts.responder;
  }

  poll(): Output<PubkeyEvent> | undefined {
    return this.out.poll();
  }

  drain(): Output<PubkeyEvent>[] {
    return this.out.drain();
  }

  nextDeadline(): number | undefined {
    let d: number | undefined;
    for (const p of this.pending.values()) if (d === undefined || p.deadline < d) d = p.deadline;
    return d;
  }

  private newId(): string {
    return `pk-${toHex(this.random.bytes(8))}`;
  }

  private iq(type: "get" | "set", to: Jid | undefined, child: Element, p: Omit<Pending, "deadline" | "to">): string {
    const id = this.newId();
    this.pending.set(id, { ...p, to, deadline: this.clock.now() + this.timeoutMs });
    this.out.send(el("iq", { xmlns: NS.client, type, id, to }, child));
    return id;
  }

  /**
   * Publishes a payload to its PEP node (XEP-0189 section 6, XEP-0222 publish-options).
   * Returns the request id of the "published" / "failed" event.
   */
  publish(payload: PubKey | Revocation | Attestation, opts: { itemId?: string; accessModel?: AccessModel; maxItems?: number } = {}): string {
    const kind: PubkeyNodeKind = payload.type === "pubkey" ? "pubkey" : payload.type;
    const node = PUBKEY_NODES[kind];
    const itemId = opts.itemId ?? "current";
    const field = (v: string, value: string) => el("field", { var: v }, el("value", {}, value));
    const options = el(
      "publish-options",
      {},
      el(
        "x",
        { xmlns: NS.data, type: "submit" },
        el("field", { var: "FORM_TYPE", type: "hidden" }, el("value", {}, PUBLISH_OPTIONS)),
        field("pubsub#persist_items", "true"),
        field("pubsub#access_model", opts.accessModel ?? "presence"),
        opts.maxItems !== undefined && field("pubsub#max_items", String(opts.maxItems)),
      ),
    );
    const child = el("pubsub", { xmlns: NS_PUBSUB }, el("publish", { node }, el("item", { id: itemId }, buildPubkeyPayload(payload))), options);
    return this.iq("set", undefined, child, { kind: "publish", node, itemId });
  }

  /** Removes an item from one of our key nodes (XEP-0060 section 7.2), with notification. */
  retract(kind: PubkeyNodeKind, itemId: string): string {
    const node = PUBKEY_NODES[kind];
    const child = el("pubsub", { xmlns: NS_PUBSUB }, el("retract", { node, notify: "true" }, el("item", { id: itemId })));
    return this.iq("set", undefined, child, { kind: "retract", node, itemId });
  }

  /** Retrieves `owner`'s items on a key node (XEP-0060 section 6.5); our own with owner undefined. */
  retrieve(owner: Jid | undefined, kind: PubkeyNodeKind, opts: { itemId?: string; maxItems?: number } = {}): string {
    const node = PUBKEY_NODES[kind];
    const items = el("items", { node, max_items: opts.maxItems }, opts.itemId !== undefined && el("item", { id: opts.itemId }));
    const to = owner === undefined ? undefined : bareJid(owner);
    return this.iq("get", to, el("pubsub", { xmlns: NS_PUBSUB }, items), { kind: "items", node, itemId: opts.itemId ?? "" });
  }

  /** Asks a client directly for its key (XEP-0189 section 8), or with `legacy` the XTLS draft's `<pubkeys/>`. */
  request(peer: FullJid, opts: { legacy?: boolean } = {}): string {
    const legacy = opts.legacy === true;
    const child = legacy ? el("pubkeys", { xmlns: NS_PUBKEY_LEGACY }) : buildPubkeyPayload({ type: "pubkey-request" });
    return this.iq("get", peer, child, { kind: legacy ? "legacy" : "request", node: legacy ? NS_PUBKEY_LEGACY : NS_PUBKEY, itemId: "" });
  }

  /** Times out requests whose deadline passed. */
  handleTimer(now: number): void {
    for (const [id, p] of [...this.pending]) {
      if (p.deadline <= now) {
        this.pending.delete(id);
        this.out.emit({ type: "failed", requestId: id, error: new PubkeyError("timeout", `no answer to ${p.kind} within ${this.timeoutMs} ms`) });
      }
    }
  }

  /** Fails every pending request (the connection is gone). */
  handleClosed(): void {
    for (const id of [...this.pending.keys()]) {
      this.pending.delete(id);
      this.out.emit({ type: "failed", requestId: id, error: new PubkeyError("closed", "the connection closed") });
    }
  }

  /**
   * Feeds an inbound stanza. Returns whether this core consumed it (an answer to one of
   * our requests, a key request, a key notification, a key in a message, key presence).
   * Never throws on peer input.
   */
  handleStanza(s: Element): boolean {
    switch (s.name) {
      case "iq":
        return this.onIq(s);
      case "message":
        return this.onMessage(s);
      case "presence":
        return this.onPresence(s);
      default:
        return false;
    }
  }

  /** Whether `from` is the entity a request went to (our own account for PEP on our nodes). */
  private fromMatches(from: string | undefined, to: Jid | undefined): boolean {
    if (to === undefined) return from === undefined || from === bareJid(this.jid) || from === this.jid;
    return from === to;
  }

  private onIq(s: Element): boolean {
    const type = attr(s, "type");
    const id = attr(s, "id");
    const from = attr(s, "from");
    if (type === "result" || type === "error") {
      if (id === undefined) return false;
      const p = this.pending.get(id);
      if (p === undefined || !this.fromMatches(from, p.to)) return false;
      this.pending.delete(id);
      if (type === "error") this.out.emit({ type: "failed", requestId: id, error: stanzaErrorOf(s) });
      else this.onResult(id, p, s);
      return true;
    }
    if (type !== "get") return false;
    const child = elements(s)[0];
    if (child === undefined) return false;
    const ns = child.getNS();
    if (ns === NS_PUBKEY && child.name === "pubkey" && elements(child).length === 0) {
      this.answer(s, "pubkey");
      return true;
    }
    if (ns === NS_PUBKEY_LEGACY && child.name === "pubkeys") {
      this.answer(s, "legacy");
      return true;
    }
    return false;
  }

  private answer(s: Element, what: "pubkey" | "legacy"): void {
    const from = (attr(s, "from") ?? bareJid(this.jid)) as Jid;
    const id = attr(s, "id");
    let payload: PubkeyPayload | undefined;
    if (this.responder !== undefined) payload = what === "pubkey" ? this.responder.pubkey?.(from) : this.responder.legacy?.(from);
    if (payload === undefined) {
      const condition = this.responder === undefined ? "service-unavailable" : "item-not-found";
      this.out.send(
        el("iq", { xmlns: NS.client, type: "error", id, to: attr(s, "from") }, el("error", { type: "cancel" }, el(condition, { xmlns: NS.stanzas }))),
      );
    } else this.out.send(el("iq", { xmlns: NS.client, type: "result", id, to: attr(s, "from") }, buildPubkeyPayload(payload)));
    this.out.emit({ type: "answered", from, what, served: payload !== undefined });
  }

  private onResult(id: string, p: Pending, s: Element): void {
    const from = (attr(s, "from") ?? bareJid(this.jid)) as Jid;
    const fail = (why: string) => this.out.emit({ type: "failed", requestId: id, error: new PubkeyError("bad-request", why) });
    switch (p.kind) {
      case "publish":
        this.out.emit({ type: "published", requestId: id, node: p.node, itemId: this.publishedId(s) ?? p.itemId });
        return;
      case "retract":
        this.out.emit({ type: "retracted", requestId: id, node: p.node, itemId: p.itemId });
        return;
      case "items": {
        const items = s.getChild("pubsub", NS_PUBSUB)?.getChild("items");
        if (items === undefined || attr(items, "node") !== p.node) return fail("no <items/> for the node");
        if (items.getChildren("item").length > getLimits().maxPubkeyEntries) return fail("too many items");
        this.out.emit({
          type: "items",
          requestId: id,
          owner: (p.to ?? bareJid(this.jid)) as Jid,
          node: p.node,
          items: items.getChildren("item").map(parseItem),
        });
        return;
      }
      case "request":
      case "legacy": {
        const child = elements(s)[0];
        let payload: PubkeyPayload;
        try {
          if (child === undefined) throw new PubkeyError("bad-request", "empty result");
          payload = parsePubkeyPayload(child);
        } catch (e) {
          this.out.emit({ type: "failed", requestId: id, error: e instanceof PubkeyError ? e : new PubkeyError("bad-request", "unparsable result") });
          return;
        }
        if (p.kind === "request" && payload.type === "pubkey") this.out.emit({ type: "key", requestId: id, from, pubkey: payload });
        else if (p.kind === "legacy" && payload.type === "pubkeys-legacy") this.out.emit({ type: "legacy-keys", requestId: id, from, pubkeys: payload });
        else fail("unexpected payload in the result");
        return;
      }
    }
  }

  private publishedId(s: Element): string | undefined {
    const item = s.getChild("pubsub", NS_PUBSUB)?.getChild("publish")?.getChild("item");
    return item === undefined ? undefined : attr(item, "id");
  }

  private onMessage(s: Element): boolean {
    const from = attr(s, "from") as Jid | undefined;
    if (from === undefined) return false;
    const event = s.getChild("event", NS_PUBSUB_EVENT);
    if (event !== undefined) {
      const items = event.getChild("items");
      const node = items === undefined ? undefined : attr(items, "node");
      if (items === undefined || node === undefined || !Object.values(PUBKEY_NODES).includes(node as (typeof PUBKEY_NODES)[PubkeyNodeKind])) return false;
      // ../limits.ts maxPubkeyEntries: an oversized notification is dropped, not delivered.
      if (items.children.length > getLimits().maxPubkeyEntries) return true;
      this.out.emit({
        type: "notification",
        from: bareJid(from),
        node,
        items: items.getChildren("item").map(parseItem),
        retracted: items
          .getChildren("retract")
          .map((r) => attr(r, "id"))
          .filter((x): x is string => x !== undefined),
      });
      return true;
    }
    const pk = s.getChild("pubkey", NS_PUBKEY);
    if (pk !== undefined) {
      try {
        const payload = parsePubkeyPayload(pk);
        if (payload.type === "pubkey") this.out.emit({ type: "key-message", from, pubkey: payload });
      } catch {
        // a malformed key in a message is dropped (nothing to answer)
      }
      return true;
    }
    return false;
  }

  private onPresence(s: Element): boolean {
    const from = attr(s, "from") as Jid | undefined;
    if (from === undefined) return false;
    const gen = s.getChild("generating", NS_PUBKEY) !== undefined;
    if (gen && !this.generating.has(from)) {
      this.generating.add(from);
      this.out.emit({ type: "generating", from, generating: true });
    } else if (!gen && this.generating.delete(from)) {
      this.out.emit({ type: "generating", from, generating: false });
    }
    return false; // presence is also for others (roster, caps)
  }
}
