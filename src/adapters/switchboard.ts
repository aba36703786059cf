/**
 * An in-memory XMPP "server" for unit tests, the deterministic two-party simulation and
 * the zero-setup demo: parties connect with a full JID and exchange stanzas through it.
 *
 * Spec: RFC 6120 (XMPP Core)
 * - section 8.1.2.1: the server stamps 'from' with the sender's full JID (a client
 *   cannot choose it); 8.1.1.1/8.1.1.2: a stanza without 'to' is handled on behalf of
 *   the account (message: as if sent to the sender's bare JID, section 10.3.1);
 * - section 10.5.3.1: a stanza to a full JID with no such connected resource is answered,
 *   for message and iq get/set, with <service-unavailable/> (here: also for a bare JID
 *   with no resource and for unknown domains, as a server with no such account would);
 *   presence is silently dropped (RFC 6121 section 4.? "no such user");
 * - section 8.3.1: never an error in reply to an error stanza (nor to an iq result);
 * - section 8.3.3.8: a malformed 'to' gets <jid-malformed/>;
 * - section 4.9.3.14 and Prosody's c2s_stanza_size_limit (256 KiB): an oversized stanza
 *   ends the session (policy-violation), here as an AdapterError `closed`.
 * RFC 6121 section 4.2/4.5: presence without 'to' is broadcast (here: to every other
 *   connected party, i.e. everyone is subscribed to everyone), and a session that had
 *   sent available presence is followed by unavailable presence when it ends.
 *
 * Simplifications, on purpose: routing is exact (a full JID reaches only that resource;
 * a bare JID reaches the first connected resource, in connection order); there is no
 * roster, no offline storage and no server features (an iq without 'to' gets
 * <service-unavailable/> from the sender's bare JID).
 *
 * Every delivered stanza is a deep copy (serialize + parse) so no object is shared
 * between parties, the test, the adversary and taps. Manual mode and the adversary hook
 * use no timers and no randomness: the same calls give the same deliveries.
 */
import { bareJid, jidParts, parseJid, type FullJid, type Jid } from "../core/types.js";
import { NS, parseXml, serialize, type Element } from "../xml/index.js";
import {
  AdapterError,
  StanzaFanout,
  attrOf,
  errorReply,
  isStanza,
  mayReplyWithError,
  type StanzaConnection,
} from "./connection.js";

/** `auto`: delivered asynchronously in order (setImmediate); `manual`: step()/flush(). */
export type DeliveryMode = "auto" | "manual";

/** A stanza the switchboard has accepted and will deliver to `to`. */
export interface InFlight {
  /** Unique, increasing in the order the switchboard accepted (or copied) stanzas. */
  readonly seq: number;
  /** Who the stanza is from as stamped (a party's full JID, or an address for bounces). */
  readonly from: Jid;
  /** The connected party it is routed to (its 'to' attribute may be a bare JID). */
  readonly to: FullJid;
  readonly stanza: Element;
}

/** What the adversary does with one in-flight stanza. */
export type Verdict =
  | { readonly action: "deliver" }
  | { readonly action: "drop" }
  | { readonly action: "duplicate" }
  | { readonly action: "replace"; readonly stanza: Element }
  | { readonly action: "hold" };

/** Sees each accepted stanza (a copy) once, when the switchboard accepts it. */
export type Adversary = (item: InFlight) => Verdict;

/** What a tap observes: a stanza as relayed to its recipient, with its serialized text. */
export interface Relayed extends InFlight {
  readonly text: string;
  /** True for stanzas that entered through {@link Switchboard.inject}. */
  readonly injected: boolean;
}

export type Tap = (item: Relayed) => void;

export interface SwitchboardOptions {
  readonly mode?: DeliveryMode;
  /** Bound on deliveries in one flush() (default 10,000); exceeding it throws. */
  readonly maxFlush?: number;
}

interface Item extends InFlight {
  readonly injected: boolean;
}

/** Prosody's default c2s_stanza_size_limit, and the XML layer's own parse limit. */
const MAX_STANZA_CHARS = 256 * 1024;

function copy(e: Element): Element {
  return parseXml(serialize(e));
}

function freeze(item: Item): InFlight {
  return { seq: item.seq, from: item.from, to: item.to, stanza: copy(item.stanza) };
}

class SwitchboardConnection implements StanzaConnection {
  readonly fanout = new StanzaFanout();
  closed = false;
  /** Whether the party has broadcast available presence (RFC 6121 section 4.2). */
  available = false;

  constructor(
    private readonly board: Switchboard,
    readonly jid: FullJid,
  ) {}

  send(stanza: Element): Promise<void> {
    // Accepted synchronously (so manual mode sees it at once), reported as a promise.
    try {
      this.board.acceptFromParty(this, stanza);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  onStanza(handler: (stanza: Element) => void): () => void {
    return this.fanout.subscribe(handler);
  }

  close(): Promise<void> {
    this.board.disconnect(this);
    return Promise.resolve();
  }
}

export class Switchboard {
  private modeValue: DeliveryMode;
  private readonly maxFlush: number;
  private readonly parties = new Map<FullJid, SwitchboardConnection>();
  private queue: Item[] = [];
  private readonly heldItems = new Map<number, Item>();
  private readonly taps: Tap[] = [];
  private adversary: Adversary | undefined;
  private seq = 0;
  private scheduled = false;
  private idleWaiters: Array<() => void> = [];

  constructor(opts: SwitchboardOptions = {}) {
    this.modeValue = opts.mode ?? "auto";
    this.maxFlush = opts.maxFlush ?? 10_000;
  }

  get mode(): DeliveryMode {
    return this.modeValue;
  }

  setMode(mode: DeliveryMode): void {
    this.modeValue = mode;
    this.schedule();
  }

  /**
   * Connects a party. Throws {@link AdapterError} `connection-failed` if that full JID is
   * already connected (a real server would resolve the conflict; tests want to know).
   */
  connect(jid: FullJid): StanzaConnection {
    if (this.parties.has(jid)) throw new AdapterError("connection-failed", `resource conflict for ${jid}`);
    const c = new SwitchboardConnection(this, jid);
    this.parties.set(jid, c);
    return c;
  }

  /** The connected parties, in connection order. */
  connected(): FullJid[] {
    return [...this.parties.keys()];
  }

  setAdversary(fn: Adversary | undefined): void {
    this.adversary = fn;
  }

  /** Observes every stanza as relayed (after the adversary); returns an unsubscribe. */
  tap(fn: Tap): () => void {
    this.taps.push(fn);
    return () => {
      const i = this.taps.indexOf(fn);
      if (i !== -1) this.taps.splice(i, 1);
    };
  }

  /**
   * Injects a forged stanza as if `from` had sent it: 'from' is set to `from` (whether or
   * not that party is connected), routing follows the stanza's 'to'; the adversary is
   * not consulted (it is the one injecting), taps see it with `injected: true`.
   */
  inject(from: Jid, stanza: Element): void {
    const s = copy(stanza);
    s.attrs["xmlns"] ??= NS.client;
    s.attrs["from"] = from;
    this.route(from, s, { judge: false, injected: true });
  }

  /** Stanzas accepted and not yet delivered, oldest first (copies). */
  pending(): InFlight[] {
    return this.queue.map(freeze);
  }

  /** Stanzas the adversary put on hold, by seq (copies). */
  held(): InFlight[] {
    return [...this.heldItems.values()].map(freeze);
  }

  /** Re-queues a held stanza at the end of the queue (this is how tests reorder). */
  release(seq: number): void {
    const item = this.heldItems.get(seq);
    if (item === undefined) throw new RangeError(`no held stanza with seq ${seq}`);
    this.heldItems.delete(seq);
    this.queue.push(item);
    this.schedule();
  }

  /**
   * Delivers the oldest queued stanza (any mode); returns it, or undefined if the queue
   * is empty. A handler's or tap's exception is rethrown after the stanza was handed to
   * every handler.
   */
  step(): InFlight | undefined {
    const item = this.queue.shift();
    if (item === undefined) return undefined;
    try {
      this.deliver(item);
    } finally {
      this.notifyIdle();
    }
    return freeze(item);
  }

  /** Delivers until the queue is empty (including replies), at most `max` stanzas. */
  flush(max = this.maxFlush): number {
    let n = 0;
    while (this.queue.length > 0) {
      if (n >= max) throw new RangeError(`flush: queue not empty after ${max} deliveries (a stanza loop?)`);
      this.step();
      n++;
    }
    return n;
  }

  /** Resolves once nothing is queued (held stanzas do not count). */
  idle(): Promise<void> {
    if (this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  // ---- internals (used by SwitchboardConnection) ----

  /** @internal */
  acceptFromParty(c: SwitchboardConnection, stanza: Element): void {
    if (c.closed) throw new AdapterError("closed", `${c.jid} is disconnected`);
    if (!isStanza(stanza)) throw new TypeError(`not a stanza: <${stanza.name}/>`);
    const text = serialize(stanza);
    if (text.length > MAX_STANZA_CHARS) {
      this.disconnect(c);
      throw new AdapterError("closed", "policy-violation: stanza larger than 256 KiB");
    }
    const s = parseXml(text);
    // RFC 6120 section 8.1.2.1: the server stamps 'from'; jabber:client is the stanza
    // namespace of a client stream (section 4.8.3).
    s.attrs["xmlns"] = NS.client;
    s.attrs["from"] = c.jid;
    if (s.name === "presence" && attrOf(s, "to") === undefined) {
      const type = attrOf(s, "type");
      if (type === undefined) c.available = true;
      else if (type === "unavailable") c.available = false;
    }
    this.route(c.jid, s, { judge: true, injected: false });
  }

  /** @internal */
  disconnect(c: SwitchboardConnection): void {
    if (c.closed) return;
    c.closed = true;
    if (this.parties.get(c.jid) === c) this.parties.delete(c.jid);
    if (c.available) {
      c.available = false;
      const s = parseXml(`<presence xmlns="${NS.client}" type="unavailable"/>`);
      s.attrs["from"] = c.jid;
      this.route(c.jid, s, { judge: true, injected: false });
    }
  }

  private route(from: Jid, s: Element, how: { judge: boolean; injected: boolean }): void {
    const toAttr = attrOf(s, "to");
    if (s.name === "presence" && toAttr === undefined) {
      for (const jid of this.parties.keys()) if (jid !== from) this.admit(from, jid, s, how);
      return;
    }
    let to: Jid;
    if (toAttr === undefined) {
      if (s.name !== "message") return this.bounce(s, "service-unavailable", from, bareJid(from));
      to = bareJid(from);
    } else {
      try {
        to = parseJid(toAttr);
      } catch {
        return this.bounce(s, "jid-malformed", from, undefined);
      }
    }
    const target = this.resolve(to);
    if (target === undefined) return this.bounce(s, "service-unavailable", from, to);
    this.admit(from, target, s, how);
  }

  private resolve(to: Jid): FullJid | undefined {
    if (this.parties.has(to as FullJid)) return to as FullJid;
    if (to.includes("/")) return undefined;
    for (const jid of this.parties.keys()) if (bareJid(jid) === to) return jid;
    return undefined;
  }

  /**
   * Sends the RFC 6120 error reply for `s` back to its sender, when one is allowed and
   * the sender is a connected party. `as` is the address the error comes from (the
   * original recipient; the sender's domain when the 'to' itself was malformed).
   */
  private bounce(s: Element, condition: string, sender: Jid, as: Jid | undefined): void {
    if (s.name === "presence" || !mayReplyWithError(s)) return;
    const target = sender as FullJid;
    if (!this.parties.has(target)) return;
    const errorFrom = as ?? (jidParts(sender).domain as Jid);
    const reply = errorReply(s, condition, "cancel", { to: sender, from: errorFrom });
    this.admit(errorFrom, target, reply, { judge: true, injected: false });
  }

  private admit(from: Jid, to: FullJid, s: Element, how: { judge: boolean; injected: boolean }): void {
    const item: Item = { seq: ++this.seq, from, to, stanza: copy(s), injected: how.injected };
    const verdict: Verdict = how.judge && this.adversary !== undefined ? this.adversary(freeze(item)) : { action: "deliver" };
    switch (verdict.action) {
      case "deliver":
        this.queue.push(item);
        break;
      case "drop":
        break;
      case "duplicate":
        this.queue.push(item, { ...item, seq: ++this.seq, stanza: copy(item.stanza) });
        break;
      case "replace":
        this.queue.push({ ...item, stanza: copy(verdict.stanza) });
        break;
      case "hold":
        this.heldItems.set(item.seq, item);
        break;
      default: {
        const never: never = verdict;
        throw new TypeError(`unknown adversary verdict ${JSON.stringify(never)}`);
      }
    }
    this.schedule();
  }

  private deliver(item: Item): void {
    const party = this.parties.get(item.to);
    if (party === undefined) {
      // The recipient left while the stanza was in flight (RFC 6120 section 10.5.3.1).
      const addressed = attrOf(item.stanza, "to");
      let as: Jid = item.to;
      if (addressed !== undefined) {
        try {
          as = parseJid(addressed);
        } catch {
          /* keep item.to */
        }
      }
      this.bounce(item.stanza, "service-unavailable", item.from, as);
      return;
    }
    const text = serialize(item.stanza);
    let first: { error: unknown } | undefined;
    for (const t of [...this.taps]) {
      try {
        t({ seq: item.seq, from: item.from, to: item.to, stanza: parseXml(text), text, injected: item.injected });
      } catch (error) {
        first ??= { error };
      }
    }
    try {
      party.fanout.dispatch(() => parseXml(text));
    } catch (error) {
      first ??= { error };
    }
    if (first !== undefined) throw first.error;
  }

  private schedule(): void {
    if (this.modeValue !== "auto" || this.scheduled || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => this.drain());
  }

  /** Auto mode: delivers what is queued now; what those deliveries send waits a turn. */
  private drain(): void {
    this.scheduled = false;
    if (this.modeValue !== "auto") return;
    let n = this.queue.length;
    let first: { error: unknown } | undefined;
    while (n-- > 0) {
      try {
        this.step();
      } catch (error) {
        first ??= { error };
      }
    }
    this.schedule();
    if (first !== undefined) throw first.error;
  }

  private notifyIdle(): void {
    if (this.queue.length > 0 || this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
