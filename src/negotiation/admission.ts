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
 * failure or termination.
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

/**
 * The refusal of a request over the limits: <resource-constraint/> of type 'wait'
 * (RFC 6120 8.3.3.18), shaped as the negotiation errors of XEP-0155 section 4.3. Throws
 * NegotiationError if `request` is itself an error (RFC 6120 8.3.1).
 */
export function busyErrorStanza(request: Element, style: ErrorStyle = "xep-0116"): Element {
  return negotiationErrorStanza(request, "resource-constraint", { style });
}
