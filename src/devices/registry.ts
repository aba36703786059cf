/**
 * Sans-IO device registry: which devices (full JIDs) a contact and the user have, whether
 * each is online and speaks Encrypted Sessions, and when an entry has gone stale.
 *
 * Spec: RFC 6121 section 4 (presence: available presence from a full JID means that
 * resource is online, 'unavailable' that it left; the server also sends the user's own
 * other resources' presence, section 4.2.2/4.4.2), XEP-0115 v1.6.0 section 6.1 (caps in
 * presence), 6.2/5.4 (query node#ver with disco#info and verify 'ver' before caching it;
 * a 'ver' that does not verify is used for that JID only, never cached), XEP-0030 v2.5.0
 * section 3.1 (plain disco#info when a device sent no caps), XEP-0116 v0.16 section 3 (an
 * entity that supports ESessions "MUST include a service discovery feature variable"
 * http://www.xmpp.org/extensions/xep-0116.html#ns), XEP-0187 v0.5 section 3.1 (offline
 * options; 'match_resource' names the publishing device).
 *
 * Inputs are presence stanzas, disco answers, session outcomes and timer ticks; outputs
 * are events (device changes, and "query" requests the wiring turns into disco#info iqs).
 * Time comes from the injected Clock; nothing here does IO.
 *
 * Expiry (docs/offline-and-devices.md "Many devices"): an entry that is offline, or online
 * but whose last negotiation timed out or failed, and that has not been seen (presence, a
 * stanza, a session) for `staleAfterMs` is dropped. A device that goes
 * offline keeps its entry (and, in the store, its retained secret) until then; the wiring
 * drops its live session at once.
 */
import { Outbox, type Output } from "../core/machine.js";
import { bareJid, type Clock, type FullJid, type Jid, parseFullJid } from "../core/types.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { capsNode, parseCaps, verifyCaps, type Caps } from "../disco/caps.js";
import type { DiscoInfo } from "../disco/codec.js";
import { NS, type Element } from "../xml/index.js";

/** Whether a device speaks ESessions: from its disco#info (or caps), or unknown while we ask. */
export type ESessionSupport = "yes" | "no" | "unknown";

export interface DeviceInfo {
  readonly jid: FullJid;
  /** The account (bare JID) the device belongs to. */
  readonly account: Jid;
  /** One of the user's own other devices. */
  readonly own: boolean;
  readonly online: boolean;
  readonly esession: ESessionSupport;
  /** When the device was last seen (presence, a stanza, a session), clock milliseconds. */
  readonly lastSeen: number;
  readonly caps?: Caps;
  /** XEP-0187: the device published offline options naming it (match_resource). */
  readonly offlineOptions: boolean;
  /** Set while the device is skipped after a negotiation timed out or failed. */
  readonly unresponsiveUntil?: number;
}

export type DeviceChange = "added" | "online" | "offline" | "capable" | "not-capable" | "unresponsive" | "responsive" | "expired";

export type RegistryEvent =
  | { readonly type: "device"; readonly change: DeviceChange; readonly device: DeviceInfo }
  /** Ask `jid` for disco#info (about `node` when it announced caps); answer with {@link DeviceRegistry.discoResult}. */
  | { readonly type: "query"; readonly jid: FullJid; readonly node: string | undefined };

export interface RegistryConfig {
  /** Our own full JID (never a target, never listed). */
  readonly self: FullJid;
  readonly clock: Clock;
  readonly crypto: CryptoProvider;
  /** Entries not seen for this long (offline or unresponsive) are dropped. */
  readonly staleAfterMs: number;
  /** How long an unresponsive device is skipped before it is tried again. */
  readonly retryAfterMs: number;
}

interface Entry {
  jid: FullJid;
  account: Jid;
  online: boolean;
  esession: ESessionSupport;
  lastSeen: number;
  caps: Caps | undefined;
  offlineOptions: boolean;
  unresponsiveUntil: number | undefined;
  /** A negotiation timed out or failed since the device was last established (it counts as dormant). */
  failed: boolean;
  /** The disco node we asked and are waiting for (at most one question per device). */
  asked: string | undefined;
}

/** XEP-0116 section 3: the feature an ESession-capable entity MUST advertise. */
export function supportsESessions(info: DiscoInfo): boolean {
  return info.features.includes(NS.esession);
}

export class DeviceRegistry {
  private readonly out = new Outbox<RegistryEvent>();
  private readonly entries = new Map<FullJid, Entry>();
  /** Verified caps: `hash node ver` -> ESession support (XEP-0115 5.4: only verified answers are cached). */
  private readonly capsCache = new Map<string, boolean>();
  /** Accounts known to have published XEP-0187 offline options. */
  private readonly offlineAccounts = new Set<Jid>();

  constructor(private readonly c: RegistryConfig) {}

  poll(): Output<RegistryEvent> | undefined {
    return this.out.poll();
  }

  drain(): Output<RegistryEvent>[] {
    return this.out.drain();
  }

  /** A device's current view, if known. */
  get(jid: string): DeviceInfo | undefined {
    const e = this.entries.get(jid as FullJid);
    return e ? this.view(e) : undefined;
  }

  /** Every known device of `account` (any state), or of every account. */
  list(account?: string): DeviceInfo[] {
    const bare = account === undefined ? undefined : bareJid(account as Jid);
    return [...this.entries.values()].filter((e) => bare === undefined || e.account === bare).map((e) => this.view(e));
  }

  /** Our own other devices' account. */
  get ownAccount(): Jid {
    return bareJid(this.c.self);
  }

  /**
   * The devices of `account` a fan-out goes to: online, not unresponsive, and speaking
   * ESessions or not yet known not to ("unknown" ones are waiting for a disco answer).
   */
  targets(account: string): DeviceInfo[] {
    const now = this.c.clock.now();
    const bare = bareJid(account as Jid);
    return [...this.entries.values()]
      .filter((e) => e.account === bare && e.online && e.esession !== "no" && !(e.unresponsiveUntil !== undefined && e.unresponsiveUntil > now))
      .map((e) => this.view(e));
  }

  /** Whether `account` published XEP-0187 offline options (as far as we looked). */
  hasOfflineOptions(account: string): boolean {
    return this.offlineAccounts.has(bareJid(account as Jid));
  }

  /**
   * RFC 6121 presence from `from`. Available presence adds or refreshes the device and asks
   * for its features unless its verified caps are cached; 'unavailable' marks it offline.
   * Other presence types (subscriptions, probes, errors) say nothing about devices.
   */
  presence(stanza: Element): void {
    if (stanza.name !== "presence" || typeof stanza.attrs.from !== "string") return;
    let jid: FullJid;
    try {
      jid = parseFullJid(stanza.attrs.from);
    } catch {
      return; // a bare JID (or malformed): not a device
    }
    if (jid === this.c.self) return;
    const type = stanza.attrs.type;
    const now = this.c.clock.now();
    if (type === "unavailable") {
      const e = this.entries.get(jid);
      if (!e) return;
      e.lastSeen = now;
      if (e.online) {
        e.online = false;
        e.asked = undefined;
        this.event("offline", e);
      }
      return;
    }
    if (type !== undefined) return;
    const caps = parseCaps(stanza);
    let e = this.entries.get(jid);
    if (!e) {
      e = { jid, account: bareJid(jid), online: true, esession: "unknown", lastSeen: now, caps, offlineOptions: false, unresponsiveUntil: undefined, failed: false, asked: undefined };
      this.entries.set(jid, e);
      this.event("added", e);
    } else {
      e.lastSeen = now;
      const capsChanged = !sameCaps(e.caps, caps);
      e.caps = caps;
      if (!e.online) {
        e.online = true;
        // A device that comes back gets a fresh chance.
        e.unresponsiveUntil = undefined;
        e.failed = false;
        this.event("online", e);
      }
      if (!capsChanged && e.esession !== "unknown") return;
      if (capsChanged) e.esession = "unknown";
    }
    const cached = caps ? this.capsCache.get(capsKey(caps)) : undefined;
    if (cached !== undefined) {
      this.setSupport(e, cached);
      return;
    }
    const node = caps ? capsNode(caps) : undefined;
    if (e.asked === (node ?? "")) return;
    e.asked = node ?? "";
    this.out.emit({ type: "query", jid, node });
  }

  /**
   * The answer to a "query": the disco#info result, or undefined when the device answered
   * with an error or not at all (then it is treated as not speaking ESessions).
   */
  discoResult(jid: string, node: string | undefined, info: DiscoInfo | undefined): void {
    const e = this.entries.get(jid as FullJid);
    if (!e || e.asked !== (node ?? "")) return;
    e.asked = undefined;
    if (!info) {
      this.setSupport(e, false);
      return;
    }
    const supported = supportsESessions(info);
    if (node !== undefined && e.caps && capsNode(e.caps) === node) {
      // XEP-0115 5.4: cache only a 'ver' that verifies against this answer.
      const v = verifyCaps(this.c.crypto, e.caps, info);
      if (v.status === "valid") this.capsCache.set(capsKey(e.caps), supported);
    }
    this.setSupport(e, supported);
  }

  /** Any stanza or session from `jid` shows it is there (refreshes it if known). */
  seen(jid: string): void {
    const e = this.entries.get(jid as FullJid);
    if (e) e.lastSeen = this.c.clock.now();
  }

  /**
   * An ESession was established with `jid`: it is online and speaks ESessions, even if we
   * never saw its presence (no subscription); it is responsive again.
   */
  established(jid: FullJid): void {
    if (jid === this.c.self) return;
    const now = this.c.clock.now();
    let e = this.entries.get(jid);
    if (!e) {
      e = { jid, account: bareJid(jid), online: true, esession: "yes", lastSeen: now, caps: undefined, offlineOptions: false, unresponsiveUntil: undefined, failed: false, asked: undefined };
      this.entries.set(jid, e);
      this.event("added", e);
      return;
    }
    e.lastSeen = now;
    if (!e.online) {
      e.online = true;
      this.event("online", e);
    }
    if (e.esession !== "yes") this.setSupport(e, true);
    e.failed = false;
    if (e.unresponsiveUntil !== undefined) {
      e.unresponsiveUntil = undefined;
      this.event("responsive", e);
    }
  }

  /** A negotiation with `jid` timed out or failed: skip it for `retryAfterMs`. */
  unresponsive(jid: string): void {
    const e = this.entries.get(jid as FullJid);
    if (!e) return;
    e.unresponsiveUntil = this.c.clock.now() + this.c.retryAfterMs;
    e.failed = true;
    this.event("unresponsive", e);
  }

  /**
   * XEP-0187 3.1: `account` has published offline options; those naming a resource
   * (match_resource) mark that device (added as offline if we never saw it).
   */
  offlineOptions(account: string, resources: readonly (string | undefined)[]): void {
    const bare = bareJid(account as Jid);
    if (resources.length > 0) this.offlineAccounts.add(bare);
    else this.offlineAccounts.delete(bare);
    const now = this.c.clock.now();
    for (const r of resources) {
      if (r === undefined) continue;
      let jid: FullJid;
      try {
        jid = parseFullJid(`${bare}/${r}`);
      } catch {
        continue;
      }
      if (jid === this.c.self) continue;
      const e = this.entries.get(jid);
      if (e) {
        e.offlineOptions = true;
        continue;
      }
      const n: Entry = { jid, account: bare, online: false, esession: "yes", lastSeen: now, caps: undefined, offlineOptions: true, unresponsiveUntil: undefined, failed: false, asked: undefined };
      this.entries.set(jid, n);
      this.event("added", n);
    }
  }

  /** Drops stale entries and ends expired unresponsiveness. */
  onTimer(now: number): void {
    for (const e of [...this.entries.values()]) {
      if (e.unresponsiveUntil !== undefined && e.unresponsiveUntil <= now && e.online) {
        e.unresponsiveUntil = undefined;
        this.event("responsive", e);
      }
      const dormant = !e.online || e.failed;
      if (dormant && now - e.lastSeen >= this.c.staleAfterMs) {
        this.entries.delete(e.jid);
        this.event("expired", e);
      }
    }
  }

  nextDeadline(): number | undefined {
    let next: number | undefined;
    const consider = (t: number): void => {
      if (next === undefined || t < next) next = t;
    };
    for (const e of this.entries.values()) {
      if (e.unresponsiveUntil !== undefined) consider(e.unresponsiveUntil);
      if (!e.online || e.failed) consider(e.lastSeen + this.c.staleAfterMs);
    }
    return next;
  }

  private setSupport(e: Entry, supported: boolean): void {
    const v: ESessionSupport = supported ? "yes" : "no";
    if (e.esession === v) return;
    e.esession = v;
    this.event(supported ? "capable" : "not-capable", e);
  }

  private event(change: DeviceChange, e: Entry): void {
    this.out.emit({ type: "device", change, device: this.view(e) });
  }

  private view(e: Entry): DeviceInfo {
    return {
      jid: e.jid,
      account: e.account,
      own: e.account === bareJid(this.c.self),
      online: e.online,
      esession: e.esession,
      lastSeen: e.lastSeen,
      ...(e.caps ? { caps: e.caps } : {}),
      offlineOptions: e.offlineOptions,
      ...(e.unresponsiveUntil !== undefined ? { unresponsiveUntil: e.unresponsiveUntil } : {}),
    };
  }
}

function capsKey(c: Caps): string {
  return `${c.hash ?? ""} ${c.node} ${c.ver}`;
}

function sameCaps(a: Caps | undefined, b: Caps | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return capsKey(a) === capsKey(b);
}
