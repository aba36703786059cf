/**
 * Sans-IO fan-out bookkeeping: one logical message sent "to Bob" becomes one encrypted copy
 * per device session (Bob's devices, and our own other devices as sent-by-self copies).
 * Copies for devices with an active session leave at once; copies for a device whose
 * session is still being negotiated wait in that device's queue, under a per-device
 * negotiation deadline, so that one slow, stale or silent device never holds back the
 * others: when its deadline passes (or its negotiation fails, or it goes offline) its
 * queued copies are reported undelivered and the device is skipped for a while.
 *
 * Spec: XEP-0201 v1.0 / XEP-0217 v0.1 (an ESession is between two full JIDs: one per device
 * pair), XEP-0200 v0.2 (a copy can only be encrypted in an established session),
 * XEP-0280 v1.0 section 7 (copies go through sessions, never through server carbons).
 * docs/offline-and-devices.md "Many devices" describes the guarantees.
 *
 * Time comes from the injected Clock; the wiring arms a timer for nextDeadline() and calls
 * onTimer(now).
 */
import type { Clock, FullJid, Jid } from "../core/types.js";
import type { Element } from "../xml/index.js";

export type UndeliveredReason =
  /** The device's negotiation did not finish within the per-device timeout. */
  | "timeout"
  /** The negotiation failed (refused, error, bad signature...). */
  | "failed"
  /** The device went offline before its session was established. */
  | "offline"
  /** The device was skipped: it timed out or failed recently. */
  | "unresponsive"
  /** The device does not speak Encrypted Sessions. */
  | "not-capable"
  /** The session could not protect the stanza (e.g. a stanza kind not negotiated). */
  | "not-protected"
  /** The client was closed with the copy still queued. */
  | "closed";

/** What happened to one copy of a fan-out. */
export interface DeviceDelivery {
  /** The device (a full JID), or the account for a copy sent in a XEP-0187 offline session. */
  readonly device: Jid;
  /** A copy for one of our own other devices (sent-by-self). */
  readonly selfCopy: boolean;
  readonly state: "sent" | "undelivered";
  /** The id of the encrypted stanza that carried the copy (when sent). */
  readonly id?: string;
  readonly reason?: UndeliveredReason;
}

/** A copy waiting for its device's session. */
export interface QueuedCopy {
  readonly fanoutId: string;
  readonly device: FullJid;
  readonly stanza: Element;
  readonly selfCopy: boolean;
}

export interface FanoutConfig {
  readonly clock: Clock;
  /** How long a device's negotiation may take before its copies are reported (per device). */
  readonly negotiationTimeoutMs: number;
}

interface Pending {
  /** Copies not yet sent or reported. */
  outstanding: number;
  readonly results: DeviceDelivery[];
}

export class FanoutTracker {
  private readonly queues = new Map<FullJid, { deadline: number; copies: QueuedCopy[] }>();
  private readonly fanouts = new Map<string, Pending>();

  constructor(private readonly c: FanoutConfig) {}

  /** Starts tracking a fan-out of `copies` copies (sent, queued or skipped). */
  begin(fanoutId: string, copies: number): void {
    this.fanouts.set(fanoutId, { outstanding: copies, results: [] });
  }

  /**
   * Records the outcome of one copy; returns every outcome of the fan-out once the last
   * copy is accounted for (then it is forgotten), else undefined.
   */
  record(fanoutId: string, d: DeviceDelivery): readonly DeviceDelivery[] | undefined {
    const f = this.fanouts.get(fanoutId);
    if (!f) return undefined;
    f.results.push(d);
    f.outstanding--;
    if (f.outstanding > 0) return undefined;
    this.fanouts.delete(fanoutId);
    return f.results;
  }

  /** Whether copies are waiting for `device`'s session. */
  waiting(device: FullJid): boolean {
    return this.queues.has(device);
  }

  /** Queues a copy until `device`'s session is established; its deadline starts with the first copy. */
  queue(copy: QueuedCopy): void {
    const q = this.queues.get(copy.device);
    if (q) q.copies.push(copy);
    else this.queues.set(copy.device, { deadline: this.c.clock.now() + this.c.negotiationTimeoutMs, copies: [copy] });
  }

  /** The device's session is established (or it failed, or went offline): its queued copies, in order. */
  take(device: FullJid): QueuedCopy[] {
    const q = this.queues.get(device);
    this.queues.delete(device);
    return q?.copies ?? [];
  }

  /** Devices whose negotiation deadline passed, with their copies (removed from the queues). */
  onTimer(now: number): Array<{ readonly device: FullJid; readonly copies: QueuedCopy[] }> {
    const due: Array<{ device: FullJid; copies: QueuedCopy[] }> = [];
    for (const [device, q] of [...this.queues]) {
      if (q.deadline <= now) {
        this.queues.delete(device);
        due.push({ device, copies: q.copies });
      }
    }
    return due;
  }

  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const q of this.queues.values()) if (next === undefined || q.deadline < next) next = q.deadline;
    return next;
  }

  /** Every queued copy (for close()), removed. */
  takeAll(): QueuedCopy[] {
    const all = [...this.queues.values()].flatMap((q) => q.copies);
    this.queues.clear();
    return all;
  }
}
