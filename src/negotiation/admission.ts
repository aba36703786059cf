/**
 * Admission control for incoming negotiations: at most maxPendingNegotiationsPerPeer
 * negotiations waiting per peer (bare JID) and maxPendingNegotiations in all
 * (../limits.ts). A request over either limit is refused with <resource-constraint/>
 * BEFORE the responder does any expensive work (the DH exponentiation of an ESession
 * response, a signature), so a peer that opens negotiations from many resources, or many
 * peers at once, cannot make us hold unbounded state or burn CPU.
 *
 * Spec: XEP-0210 v0.3 section 4.4 "Efficiency" (DH and public-key operations are the
 * expensive part and must stay bounded); XEP-0155 v1.2 section 4.3 (a request may be
 * rejected with a stanza error); RFC 6120 section 8.3.3.18 <resource-constraint/> (type
 * 'wait': "the requesting entity ... may retry later"). A sans-IO counter: the wiring
 * (SecureClient) admits before creating a responder and releases on establishment,
 * failure or termination. NegotiationRate bounds the rate of that work too (a token
 * bucket per bare JID and in total), so a resource that keeps re-requesting, or junk
 * offline starts, cannot make us do DH work at will.
 */
import { bareJid, type Jid } from "../core/types.js";
import { getLimits, type Limits } from "../limits.js";
import type { Element } from "../xml/index.js";
import { negotiationErrorStanza, type ErrorStyle } from "./codec.js";

export type AdmissionResult = "admitted" | "peer-limit" | "total-limit";

export type AdmissionLimits = Pick<Limits, "maxPendingNegotiationsPerPeer" | "maxPendingNegotiations">;

export class PendingNegotiations {
  /** Negotiation key (e.g. full JID + thread) -> bare JID of the peer. */
  private readonly pending = new Map<string, string>();
  private readonly perPeer = new Map<string, number>();
  private readonly overrides: Partial<AdmissionLimits> | undefined;

  /** Limits default to ../limits.ts (read at each admit, so configureLimits applies). */
  constructor(overrides?: Partial<AdmissionLimits>) {
    this.overrides = overrides;
  }

  private limits(): AdmissionLimits {
    const l = getLimits();
    return {
      maxPendingNegotiationsPerPeer: this.overrides?.maxPendingNegotiationsPerPeer ?? l.maxPendingNegotiationsPerPeer,
      maxPendingNegotiations: this.overrides?.maxPendingNegotiations ?? l.maxPendingNegotiations,
    };
  }

  /**
   * Counts a new negotiation `key` with `peer` if the limits allow. A key already pending
   * (the same negotiation again, e.g. a retransmitted request) is admitted without counting.
   */
  admit(peer: Jid | string, key: string): AdmissionResult {
    if (this.pending.has(key)) return "admitted";
    const bare = bareJid(peer as Jid);
    const lim = this.limits();
    if (this.pending.size >= lim.maxPendingNegotiations) return "total-limit";
    const n = this.perPeer.get(bare) ?? 0;
    if (n >= lim.maxPendingNegotiationsPerPeer) return "peer-limit";
    this.pending.set(key, bare);
    this.perPeer.set(bare, n + 1);
    return "admitted";
  }

  /** The negotiation ended (established, failed, timed out, terminated); idempotent. */
  release(key: string): void {
    const bare = this.pending.get(key);
    if (bare === undefined) return;
    this.pending.delete(key);
    const n = (this.perPeer.get(bare) ?? 1) - 1;
    if (n <= 0) this.perPeer.delete(bare);
    else this.perPeer.set(bare, n);
  }

  has(key: string): boolean {
    return this.pending.has(key);
  }

  /** Pending negotiations with `peer`'s bare JID. */
  countFor(peer: Jid | string): number {
    return this.perPeer.get(bareJid(peer as Jid)) ?? 0;
  }

  get size(): number {
    return this.pending.size;
  }
}

export type RateResult = "allowed" | "peer-rate" | "total-rate";

export type RateLimits = Pick<Limits, "negotiationRequestsPerMinutePerPeer" | "negotiationRequestsPerMinute">;

interface Bucket {
  tokens: number;
  at: number;
}

const MINUTE_MS = 60_000;
/** Buckets remembered at most (the peers seen lately); beyond, full buckets go first. */
const MAX_TRACKED_PEERS = 4096;

/**
 * The rate of inbound negotiation work: a token bucket per peer bare JID and one for all
 * peers, each holding up to its per-minute limit and refilled evenly over a minute. Every
 * request that would cost a DH operation (a request, a re-request from a resource that is
 * already negotiating, an offline session start) takes a token; without one it is refused
 * before any work (docs/security.md "Limits"). Sans-IO: the caller passes the time.
 */
export class NegotiationRate {
  private readonly peers = new Map<string, Bucket>();
  private readonly total: Bucket;
  private readonly overrides: Partial<RateLimits> | undefined;

  constructor(now: number, overrides?: Partial<RateLimits>) {
    this.overrides = overrides;
    this.total = { tokens: this.limits().negotiationRequestsPerMinute, at: now };
  }

  private limits(): RateLimits {
    const l = getLimits();
    return {
      negotiationRequestsPerMinutePerPeer: this.overrides?.negotiationRequestsPerMinutePerPeer ?? l.negotiationRequestsPerMinutePerPeer,
      negotiationRequestsPerMinute: this.overrides?.negotiationRequestsPerMinute ?? l.negotiationRequestsPerMinute,
    };
  }

  /** Takes one token for a request from `peer` at `now` (ms) if both buckets have one. */
  take(peer: Jid | string, now: number): RateResult {
    const lim = this.limits();
    refill(this.total, lim.negotiationRequestsPerMinute, now);
    if (this.total.tokens < 1) return "total-rate";
    const bare = bareJid(peer as Jid);
    let b = this.peers.get(bare);
    if (b === undefined) {
      b = { tokens: lim.negotiationRequestsPerMinutePerPeer, at: now };
      this.remember(bare, b, lim.negotiationRequestsPerMinutePerPeer, now);
    } else refill(b, lim.negotiationRequestsPerMinutePerPeer, now);
    if (b.tokens < 1) return "peer-rate";
    b.tokens -= 1;
    this.total.tokens -= 1;
    return "allowed";
  }

  /** Peers with a bucket (for tests and metrics). */
  get tracked(): number {
    return this.peers.size;
  }

  private remember(bare: string, b: Bucket, capacity: number, now: number): void {
    if (this.peers.size >= MAX_TRACKED_PEERS) {
      // A bucket that refilled is the same as none: forget those first, then the oldest
      // (whose peer gets a full bucket again; the total bucket still bounds the rate).
      for (const [k, v] of this.peers) {
        refill(v, capacity, now);
        if (v.tokens >= capacity) this.peers.delete(k);
      }
      while (this.peers.size >= MAX_TRACKED_PEERS) {
        const oldest = this.peers.keys().next().value as string;
        this.peers.delete(oldest);
      }
    }
    this.peers.set(bare, b);
  }
}

function refill(b: Bucket, capacity: number, now: number): void {
  const elapsed = now - b.at;
  if (elapsed > 0) b.tokens = Math.min(capacity, b.tokens + (elapsed * capacity) / MINUTE_MS);
  else b.tokens = Math.min(capacity, b.tokens);
  b.at = Math.max(b.at, now);
}

/**
 * The refusal of a request over the limits: <resource-constraint/> of type 'wait'
 * (RFC 6120 8.3.3.18), shaped as the negotiation errors of XEP-0155 section 4.3. Throws
 * NegotiationError if `request` is itself an error (RFC 6120 8.3.1).
 */
export function busyErrorStanza(request: Element, style: ErrorStyle = "xep-0116"): Element {
  return negotiationErrorStanza(request, "resource-constraint", { style });
}
