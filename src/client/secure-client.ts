/**
 * SecureClient: the wiring between a StanzaConnection, the ESession cores and the store.
 * It routes each inbound stanza by (peer, thread) to the core that owns it, owns the timers
 * and the persistence calls, and turns core outputs into stanzas and application events.
 *
 * Spec: XEP-0201 (threads identify sessions), XEP-0155 (a request starts a session),
 * XEP-0217/XEP-0200 (via src/esession), XEP-0116 section 12 ("retained secrets", SAS
 * reminders: "remind them at the start of each ESession ... until they confirm"), the
 * project rule that no stanza the user asked to protect ever goes out in the clear.
 */
import { errorReply, type StanzaConnection } from "../adapters/connection.js";
import { bareJid, type Clock, type FullJid, type Jid, parseFullJid, type Random, type ThreadId } from "../core/types.js";
import type { AnySigningIdentity, KeyVerifier, PeerKey, PubkeyMethod, SigningIdentity } from "../esession/identity.js";
import { parseKeyValue, spkiFromKeyValue } from "../identity/keyvalue.js";
import type { TrustAlert, TrustManager, TrustVerdict } from "../trust/index.js";
import { nodeCrypto, systemClock, systemRandom } from "../crypto/node.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { carriedForm } from "../esession/codec.js";
import { ESessionError } from "../esession/errors.js";
import { profileByName, type ProfileName } from "../esession/profile.js";
import { DEFAULT_POLICY, ESession, type ESessionEvent, type NegotiatedOptions, type NegotiationStep, type Policy } from "../esession/session.js";
import { value } from "../forms/codec.js";
import { StoreError, type Store } from "../store/types.js";
import { newThreadId } from "../thread/index.js";
import { DiscoResponder } from "../disco/responder.js";
import { getLimits } from "../limits.js";
import { busyErrorStanza, NegotiationRate, PendingNegotiations } from "../negotiation/admission.js";
import { deepClone, el, type Element, NS } from "../xml/index.js";
import { toHex } from "../core/bytes.js";
import { parseJid } from "../core/types.js";
import { type Audience, nodeFor, offlineInitOf, type ParsedOfflineOptions, parseOfflineInit, parseOfflineOptions, NODE_EVERYONE, NODE_SUBSCRIBERS } from "../offline/codec.js";
import { OfflineError } from "../offline/errors.js";
import { errorCondition, itemsIq, parseItems, publishIq, retractIq } from "../offline/pep.js";
import { NODE_RELAY, parseRelayItems, RELAY_MAX_ITEMS, relayItemId, relayPayload } from "../offline/relay.js";
import { acceptOfflineSession, createOfflineOptions, destroySecret, type OfflineSecret, startOfflineSession, verifyOfflineOptions } from "../offline/session.js";
import { LEGACY_OFFERED_CRYPT_ALGS, LEGACY_OFFERED_HASH_ALGS, type OfflineStore, type StoredOfflineSecret } from "../store/offline.js";
import { buildInfoQuery, parseInfoResult } from "../disco/codec.js";
import {
  addHints,
  carbonsEnableIq,
  carriesESession,
  claimsCarbon,
  NS_CARBONS,
  parseCarbon,
  parseSentCopy,
  sentCopy,
  type CarbonDirection,
  type ParsedCarbon,
} from "../devices/codec.js";
import { FanoutTracker, type DeviceDelivery, type QueuedCopy, type UndeliveredReason } from "../devices/fanout.js";
import { DeviceRegistry, type DeviceChange, type DeviceInfo } from "../devices/registry.js";

export interface Established {
  readonly peer: FullJid;
  readonly thread: ThreadId;
  /** The Short Authentication String to compare (4-message negotiations). */
  readonly sas?: string;
  readonly options: NegotiatedOptions;
  /** How each side identified itself (XEP-0116 init_pubkey / resp_pubkey). */
  readonly initPubkey: PubkeyMethod;
  readonly respPubkey: PubkeyMethod;
  /** The peer's verified public key, if it identified itself with one. */
  readonly peerKey?: PeerKey;
  readonly retainedSecretMatched: boolean;
  /** Whether the users ever confirmed a SAS with this peer (XEP-0116: remind until they do). */
  readonly sasConfirmedBefore: boolean;
  /** XEP-0187: an offline session we started (sender) or accepted (receiver, receive-only). */
  readonly offline?: "sender" | "receiver";
}

export type ClientEvent =
  | { readonly type: "progress"; readonly peer: FullJid; readonly step: NegotiationStep }
  | ({ readonly type: "established" } & Established)
  | {
      readonly type: "message";
      readonly peer: FullJid;
      readonly body: string | undefined;
      readonly stanza: Element;
      readonly unauthenticated: readonly Element[];
    }
  | { readonly type: "stanza"; readonly peer: FullJid; readonly stanza: Element; readonly unauthenticated: readonly Element[] }
  | { readonly type: "rekeyed"; readonly peer: FullJid; readonly by: "us" | "peer" }
  | { readonly type: "terminated"; readonly peer: FullJid; readonly by: "us" | "peer"; readonly acknowledged: boolean }
  | { readonly type: "failed"; readonly peer: FullJid; readonly error: ESessionError }
  /** The trust verdict for the peer's key (when a TrustManager is configured). */
  | { readonly type: "trust"; readonly peer: FullJid; readonly verdict: TrustVerdict }
  /** An alert of the trust layer (XEP-0116 7.4): key changed, missing, shared or revoked. */
  | { readonly type: "trust-alert"; readonly peer: FullJid; readonly alert: TrustAlert }
  | {
      readonly type: "alert";
      readonly peer: FullJid;
      /**
       * sas-never-confirmed: remind the user to compare the SAS (XEP-0116 4.5.2).
       * retained-secret-mismatch: we hold retained secrets for this peer but none matched:
       * a man-in-the-middle, or the peer lost its state; compare the SAS now.
       * disclosure: the peer declared it may disclose the session to a third party
       * (XEP-0116 section 8: "MUST immediately and clearly inform their users").
       */
      readonly alert: "sas-never-confirmed" | "retained-secret-mismatch" | "disclosure";
    }
  /** A stanza that arrived outside any encrypted session (shown as unprotected). */
  | { readonly type: "unprotected"; readonly peer: string; readonly stanza: Element }
  /**
   * An encrypted stanza we could not decrypt (unknown session, used or expired offline
   * options, bad MAC...). Never silent: `id` is the stanza's id, `replied` whether the
   * sender was told (so that its client can resend).
   */
  | {
      readonly type: "undecryptable";
      readonly peer: string;
      readonly id: string | undefined;
      readonly thread: string | undefined;
      readonly reason: string;
      readonly replied: boolean;
    }
  /**
   * Handling an inbound stanza (stage "inbound") or finishing a negotiation after an
   * asynchronous signature ("signing") threw inside the client: a store that failed, a
   * listener that threw. That stanza was not processed; `peer` and `id` say which one when
   * known. Never silent, so that an application can log it or reconnect; the message is the
   * failing layer's own (no key material).
   */
  | {
      readonly type: "internal-error";
      readonly stage: "inbound" | "signing";
      readonly peer: string | undefined;
      readonly id: string | undefined;
      readonly error: Error;
    }
  /** A stanza we sent was not delivered decryptably (the peer said so); `willResend` if it is queued for the new session. */
  | { readonly type: "undelivered"; readonly peer: string; readonly id: string; readonly willResend: boolean }
  /** A stanza reported undelivered was sent again in a new session. */
  | { readonly type: "resent"; readonly peer: FullJid; readonly id: string }
  /** Automatic recovery after the peer lost our session (restart, crash, lost state). */
  | {
      readonly type: "recovery";
      readonly peer: FullJid;
      readonly state: "renegotiating" | "renegotiated" | "failed" | "gave-up";
      readonly reason: "peer-lost-session";
    }
  /** XEP-0187: our published offline options were used, topped up, or expired. */
  | { readonly type: "offline-options"; readonly published: number; readonly used: number; readonly expired: number }
  /**
   * XEP-0187 per device: an offline-stored stanza addressed to another device of ours
   * (`device`) reached us; `parked` when it went to the relay node for that device.
   * `collected`: stanzas parked for us were taken from the relay node and processed.
   */
  | { readonly type: "offline-relay"; readonly action: "parked" | "dropped"; readonly peer: string; readonly device: string; readonly id: string | undefined }
  | { readonly type: "offline-relay"; readonly action: "collected"; readonly count: number }
  /** Many devices (option `devices`): a device of a contact or of ours appeared, changed or expired. */
  | { readonly type: "device"; readonly change: DeviceChange; readonly device: DeviceInfo }
  /** Many devices: what happened to one copy of a fan-out (sent in its session, or undelivered and why). */
  | { readonly type: "delivery"; readonly fanoutId: string; readonly delivery: DeviceDelivery }
  /**
   * Many devices: one of our own other devices (`device`, authenticated by our session with
   * it) sent `stanza` to `to`; this is its sent-by-self copy, so this device sees the whole
   * conversation.
   */
  | { readonly type: "sent-copy"; readonly device: FullJid; readonly to: string; readonly body: string | undefined; readonly stanza: Element }
  /**
   * A XEP-0280 carbon of a plaintext message (our account's other device sent or received
   * it): shown as unprotected, `peer` is the other party.
   */
  | {
      readonly type: "carbon";
      readonly direction: CarbonDirection;
      readonly peer: string;
      readonly body: string | undefined;
      readonly stanza: Element;
      readonly protected: false;
    }
  /** A XEP-0280 carbon of an encrypted stanza: it belongs to another device's session and cannot be ours. */
  | { readonly type: "carbon-undecryptable"; readonly direction: CarbonDirection; readonly peer: string; readonly id: string | undefined }
  /**
   * A carbon we refused (XEP-0280 section 11): not from our own bare JID, malformed, or a
   * carbon wrapper inside a session with someone else's device.
   */
  | { readonly type: "carbon-rejected"; readonly from: string; readonly reason: "not-own-account" | "malformed" | "inside-foreign-session" }
  /** Whether the server enabled XEP-0280 carbons for this connection. */
  | { readonly type: "carbons"; readonly enabled: boolean };

export interface Timers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

export interface SecureClientOptions {
  readonly connection: StanzaConnection;
  readonly store: Store;
  readonly crypto?: CryptoProvider;
  readonly random?: Random;
  readonly clock?: Clock;
  readonly timers?: Timers;
  readonly profile?: ProfileName;
  readonly policy?: Partial<Policy>;
  /** Whether to answer an ESession request from `peer` (default: accept). */
  readonly acceptSessions?: (peer: FullJid) => boolean;
  /** An Other Shared Secret agreed out of band with peers (XEP-0217), if any. */
  readonly otherSecret?: Uint8Array;
  /**
   * How long a retained secret stays usable (XEP-0217: "confirmed that the secret has not
   * expired (because it is older than an implementation-defined period of time)").
   * Default 365 days; older secrets are destroyed before each negotiation.
   */
  readonly retainedSecretLifetimeMs?: number;
  /**
   * Set when the application answers unprotected iq get/set requests itself (from the
   * "unprotected" event). Otherwise they get service-unavailable (RFC 6120 section 8.4).
   */
  readonly handlesUnprotectedIq?: boolean;
  /** Our long-term signing key, for XEP-0116 public-key identification. */
  /**
   * Our long-term key, for XEP-0116 public-key identification. An asynchronous one
   * (`async: true`, e.g. a non-extractable WebCrypto key) signs between drains: the core
   * waits in 'awaiting-signature' and this client feeds the signature back
   * (docs/esession.md "Asynchronous signing"). Offline options (XEP-0187) need a
   * synchronous key; with an asynchronous one they are published unsigned.
   */
  readonly identity?: AnySigningIdentity;
  /** Verifies peers' keys; `accept` applies the trust policy (default: accept). */
  readonly verifier?: KeyVerifier & { accept?(key: PeerKey): boolean };
  /**
   * Trust decisions and the XEP-0116 key alerts. Every session's peer key (or its absence)
   * is recorded; a session whose key is untrusted (changed, shared) or revoked is ended.
   */
  readonly trust?: TrustManager;
  /** XEP-0187 offline ESessions (publishing one-time options, starting and accepting). */
  readonly offline?: OfflineConfig;
  /** How long an iq to the server may take (default 15,000 ms). */
  readonly iqTimeoutMs?: number;
  /** Session recovery after a peer lost its state (docs/offline-and-devices.md). */
  readonly recovery?: RecoveryOptions;
  /** Many devices: registry, fan-out, carbons and hints (docs/offline-and-devices.md "Many devices"). */
  readonly devices?: DevicesOptions;
}

export interface DevicesOptions {
  /** Enable XEP-0280 carbons in announce() (default true); plaintext carbons are then reported as `carbon` events. */
  readonly carbons?: boolean;
  /** Send sent-by-self copies to our own other online devices through sessions with them (default true). */
  readonly selfCopies?: boolean;
  /** How long one device's negotiation may take before its copies are reported undelivered (default 15,000 ms). */
  readonly negotiationTimeoutMs?: number;
  /** Devices offline (or unresponsive) and not seen for this long are dropped (default 14 days). */
  readonly staleAfterMs?: number;
  /** How long a device that timed out or failed is skipped (default 5 minutes). */
  readonly retryAfterMs?: number;
  /** When a contact has no online device, send through a XEP-0187 offline session if `offline` is configured (default true). */
  readonly offlineFallback?: boolean;
}

/** What fanout() did at once; `settled` resolves when every copy is sent or reported undelivered. */
export interface FanoutReport {
  readonly id: string;
  /** Devices whose copy left at once, in an active session. */
  readonly sent: readonly Jid[];
  /** Devices whose copy waits for their session (negotiating, or waiting for their features). */
  readonly queued: readonly FullJid[];
  /** Devices skipped (not capable, unresponsive), reported as undelivered. */
  readonly skipped: readonly { readonly device: FullJid; readonly reason: UndeliveredReason }[];
  readonly settled: Promise<readonly DeviceDelivery[]>;
}

export const DEFAULT_NEGOTIATION_TIMEOUT_MS = 15_000;
export const DEFAULT_STALE_AFTER_MS = 14 * 24 * 3600 * 1000;
export const DEFAULT_RETRY_AFTER_MS = 5 * 60 * 1000;

export interface RecoveryOptions {
  /** Renegotiate when a peer reports it cannot decrypt our stanzas (default true; at most 3 a minute). */
  readonly renegotiate?: boolean;
  /** Resend the stanzas it reported, in the new session (default false: the app decides). */
  readonly resend?: boolean;
  /** How many sent stanzas are kept in memory for reports and resends (default 500). */
  readonly keep?: number;
}

export interface OfflineConfig {
  /** Where our one-time option secrets and the replay set live. */
  readonly store: OfflineStore;
  /**
   * How many one-time option sets to keep published (default 10; at most the limit
   * maxOfflineOneTimeValues, 32 by default: the constructor throws a RangeError otherwise).
   */
  readonly count?: number;
  /** Lifetime of each set (XEP-0187 7.2: "not too long after she expects to be online again"; default 7 days). */
  readonly lifetimeMs?: number;
  /** Who may fetch our options (XEP-0187 3.1; default "subscribers": presence access model). */
  readonly audience?: Audience;
  /**
   * The publisher's keys we trust, to verify signed options (XEP-0187 3.2). Without it (or
   * when it returns none) only unsigned options can be used, and only with `allowUnauthenticated`.
   */
  readonly peerKeys?: (peer: Jid) => Promise<readonly Element[]>;
  /** Use unsigned options / accept senders without an identity key (default false). */
  readonly allowUnauthenticated?: boolean;
  /** Reply to an offline start we cannot accept with an error, so the sender can resend (default true). */
  readonly replyOnFailure?: boolean;
  /**
   * Publish our option sets for this device only, naming our resource in XEP-0187
   * 'match_resource' (default true). false: account-wide sets as before (any device of the
   * account may be handed the stanzas; only the one holding the secret can read them).
   */
  readonly perDevice?: boolean;
  /**
   * Park offline-stored stanzas addressed to another device of our account (a server
   * without AMP hands them to whichever device logs in first) on our owner-only PEP relay
   * node, for that device to collect (default true). false: they are reported
   * (`offline-relay` with `parked: false`) and dropped.
   */
  readonly relay?: boolean;
}

/** What startOfflineSessions() did for each device of the account. */
export interface OfflineSessions {
  /** New offline sessions, one per device (or one for the account-wide legacy sets). */
  readonly started: readonly Established[];
  /** Devices with a session already active (live or offline): use it. */
  readonly active: readonly Jid[];
  /** Devices whose sets could not be used, and why. */
  readonly failed: readonly { readonly device: Jid; readonly error: OfflineError }[];
}

export const DEFAULT_OFFLINE_COUNT = 10;
/** Devices whose one-time sets the options node has room for (max_items = 2 x count x this, at most 256). */
export const OFFLINE_DEVICES_PER_NODE = 8;
export const DEFAULT_OFFLINE_LIFETIME_MS = 7 * 24 * 3600 * 1000;

/** Our condition element in error replies for stanzas we could not decrypt. */
export const NS_E2E_ERRORS = "urn:xmpp-e2e:errors:0";

/** XEP-0203 delayed delivery: what came out of offline storage carries it. */
const NS_DELAY = "urn:xmpp:delay";

export const DEFAULT_RETAINED_SECRET_LIFETIME_MS = 365 * 24 * 3600 * 1000;

/** XEP-0115 section 4: the URI that identifies this software in caps. */
export const CAPS_NODE = "urn:xmpp-e2e:caps";

const systemTimers: Timers = {
  set: (fn, ms) => setTimeout(fn, Math.max(0, Math.min(ms, 2 ** 31 - 1))),
  clear: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

interface Waiter {
  resolve(e: Established): void;
  reject(e: ESessionError): void;
}

export class SecureClient {
  private readonly crypto: CryptoProvider;
  private readonly random: Random;
  private readonly clock: Clock;
  private readonly timers: Timers;
  private readonly policy: Policy;
  private readonly sessions = new Map<string, ESession>();
  private readonly waiters = new Map<ESession, Waiter>();
  /** The fingerprint of each peer's key in its current session (for SAS confirmation). */
  private readonly peerKeys = new Map<string, string>();
  /** How many retained secrets we held for the peer when each negotiation started. */
  private readonly heldSecrets = new WeakMap<ESession, number>();
  private readonly listeners = new Set<(e: ClientEvent) => void>();
  private readonly unsubscribe: () => void;
  private timer: unknown;
  /** Inbound stanzas are processed strictly in order, including async store lookups. */
  private inbound: Promise<void> = Promise.resolve();
  /** Outbound stanzas leave strictly in the order the cores produced them. */
  private outbound: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly disco: DiscoResponder;
  /** iq requests waiting for their result, by id. */
  private readonly pendingIq = new Map<string, { readonly to: string; resolve(e: Element): void; reject(e: Error): void; handle: unknown }>();
  /** Stanzas sent in sessions, by id, until evicted (for undelivered reports and resends). */
  private readonly sentLog = new Map<string, { readonly peer: string; readonly stanza: Element }>();
  private readonly resendQueue = new Map<string, Element[]>();
  private readonly recovering = new Set<string>();
  private readonly recoveries = new Map<string, number[]>();
  /** Offline option items we already used as a sender (never twice, XEP-0187 6.1). */
  private readonly usedOfflineItems = new Set<string>();
  /** Relay items published for our other devices (sequence numbers, and the pending publishes). */
  private relaySeq = 0;
  private readonly parkedThreads = new Set<string>();
  private relaying: Promise<void> = Promise.resolve();
  /** Many devices (option `devices`): the registry, the fan-out queues and each fan-out's waiter. */
  private readonly dev:
    | {
        readonly registry: DeviceRegistry;
        readonly tracker: FanoutTracker;
        readonly settle: Map<string, (r: readonly DeviceDelivery[]) => void>;
      }
    | undefined;
  /** The negotiated XEP-0155 logging of each established session (for the XEP-0334 hints). */
  private readonly logging = new WeakMap<ESession, string>();
  /**
   * Admission control (src/negotiation/admission.ts, docs/security.md "Limits"): at most
   * maxPendingNegotiationsPerPeer negotiations per bare JID and maxPendingNegotiations in
   * all, ours and the peers', keyed by the peer's full JID (one negotiation per full JID,
   * as `sessions` holds). A request over a limit is refused before any DH work.
   */
  private readonly admission = new PendingNegotiations();
  /**
   * The retained secret each device's latest session produced (full JID -> id). Secrets
   * are stored per bare JID, so with several devices "the latest for the account" may be
   * another device's: a SAS confirmation marks this one's chain.
   */
  private readonly retainedIdOf = new Map<string, string>();
  /** The rate of inbound DH work (requests, offline starts): created with the clock. */
  private negotiationRate: NegotiationRate | undefined;
  private rate(): NegotiationRate {
    this.negotiationRate ??= new NegotiationRate(this.clock.now());
    return this.negotiationRate;
  }
  /** Which session holds each admission key (a re-request from the same JID takes it over). */
  private readonly admittedBy = new Map<string, ESession>();

  constructor(private readonly o: SecureClientOptions) {
    this.crypto = o.crypto ?? nodeCrypto;
    this.random = o.random ?? systemRandom;
    this.clock = o.clock ?? systemClock;
    this.timers = o.timers ?? systemTimers;
    this.policy = { ...DEFAULT_POLICY, ...o.policy };
    const count = o.offline?.count;
    if (count !== undefined && (!Number.isSafeInteger(count) || count < 1 || count > getLimits().maxOfflineOneTimeValues))
      throw new RangeError(`offline.count must be an integer from 1 to maxOfflineOneTimeValues (${getLimits().maxOfflineOneTimeValues})`);
    this.disco = new DiscoResponder({ jid: o.connection.jid, crypto: this.crypto, capsNode: CAPS_NODE });
    if (o.devices) {
      this.dev = {
        registry: new DeviceRegistry({
          self: o.connection.jid,
          clock: this.clock,
          crypto: this.crypto,
          staleAfterMs: o.devices.staleAfterMs ?? DEFAULT_STALE_AFTER_MS,
          retryAfterMs: o.devices.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS,
        }),
        tracker: new FanoutTracker({ clock: this.clock, negotiationTimeoutMs: o.devices.negotiationTimeoutMs ?? DEFAULT_NEGOTIATION_TIMEOUT_MS }),
        settle: new Map(),
      };
    }
    this.unsubscribe = o.connection.onStanza((s) => {
      // iq results are matched at once: a handler awaiting one must not wait behind itself.
      if (this.matchIq(s)) return;
      this.inbound = this.inbound
        .then(() => this.onInbound(s))
        .catch((e: unknown) => this.internalError("inbound", typeof s.attrs.from === "string" ? s.attrs.from : undefined, typeof s.attrs.id === "string" ? s.attrs.id : undefined, e));
    });
  }

  get jid(): FullJid {
    return this.o.connection.jid;
  }

  on(listener: (e: ClientEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The session with `peer` (active or negotiating), if any. */
  session(peer: string): ESession | undefined {
    return this.sessions.get(peer);
  }

  /** Negotiates an ESession with `peer` (a full JID); resolves once both sides verified. */
  async startSession(peerJid: string): Promise<Established> {
    const peer = parseFullJid(peerJid);
    const existing = this.sessions.get(peer);
    if (existing?.isActive) throw new ESessionError("unexpected-request", "a session with this peer is already active");
    const account = bareJid(this.jid);
    await this.expireRetained();
    const retained = await this.o.store.list(account, bareJid(peer));
    // Our own negotiations count against the same limits as the peers' (docs/security.md
    // "Limits"); checked after the awaits so that nothing can run between it and the binding.
    // ESessionError has no resource-constraint condition (src/esession is not ours):
    // not-acceptable is also what the core reports when the peer refuses us as busy.
    this.sweepAdmissions();
    const admitted = this.admission.admit(peer, peer);
    if (admitted !== "admitted") {
      const which = admitted === "peer-limit" ? "with this account (maxPendingNegotiationsPerPeer)" : "(maxPendingNegotiations)";
      throw new ESessionError("not-acceptable", `too many negotiations pending ${which}`);
    }
    const s = ESession.initiate({
      crypto: this.crypto,
      random: this.random,
      clock: this.clock,
      local: this.jid,
      peer,
      thread: newThreadId(this.random),
      policy: this.policy,
      profile: profileByName(this.o.profile ?? "spec"),
      retained: retained.map((r) => ({ id: r.id, secret: r.secret, peer: r.peer })),
      ...(this.o.otherSecret ? { otherSecret: this.o.otherSecret } : {}),
      ...(this.o.identity ? { identity: this.o.identity } : {}),
      ...(this.o.verifier ? { verifier: this.o.verifier } : {}),
    });
    this.sessions.set(peer, s);
    this.admittedBy.set(peer, s);
    this.heldSecrets.set(s, retained.length);
    const done = new Promise<Established>((resolve, reject) => this.waiters.set(s, { resolve, reject }));
    await this.pump(s);
    return done;
  }

  /**
   * Encrypts and sends a stanza to `peer` inside the active session. Rejects with
   * ESessionError("not-protected") if there is none: nothing is ever sent in the clear.
   */
  async send(peer: string, stanza: Element): Promise<void> {
    const s = this.sessions.get(peer);
    if (!s) throw new ESessionError("not-protected", "no encrypted session with this peer");
    // Every protected stanza carries an id, so that a peer that cannot decrypt it can name
    // it in its error and we can report (and, if asked, resend) exactly that stanza.
    let out = stanza;
    if (stanza.attrs.id === undefined) {
      out = deepClone(stanza);
      out.attrs.id = this.newId();
    }
    s.send(out);
    this.remember(peer, out);
    await this.pump(s);
  }

  // ---- recovery ---------------------------------------------------------------------------

  /** Keeps what we sent (in memory only) until the peer can no longer report it undecryptable. */
  private remember(peer: string, stanza: Element): void {
    const id = String(stanza.attrs.id);
    this.sentLog.set(id, { peer, stanza: deepClone(stanza) });
    const keep = this.o.recovery?.keep ?? 500;
    while (this.sentLog.size > keep) {
      const first = this.sentLog.keys().next().value;
      if (first === undefined) break;
      this.sentLog.delete(first);
    }
  }

  /**
   * An error reply from a peer (RFC 6120 8.3). If it names a stanza we sent in a session,
   * that stanza was not delivered: the user is told; when the peer said it could not decrypt
   * it (it lost our session: restart, crash), a new session is negotiated and, if the app
   * opted in, the undelivered stanzas are sent again in it, in their original order.
   */
  private async onPeerError(stanza: Element, from: string): Promise<void> {
    const id = typeof stanza.attrs.id === "string" ? stanza.attrs.id : undefined;
    const entry = id === undefined ? undefined : this.sentLog.get(id);
    const lost = stanza.getChild("error")?.getChild("undecryptable", NS_E2E_ERRORS) !== undefined;
    const peer = safeFullJid(from);
    if (!entry || id === undefined) {
      if (lost && peer) this.recover(peer, "peer-lost-session");
      return;
    }
    if (entry.peer !== from && bareJid(parseJid(entry.peer)) !== bareJid(parseJid(from))) return;
    this.sentLog.delete(id);
    // Many devices: a copy meant for one device that reached another (the server rerouted it
    // after the device left) is reported, never resent to that other device, which has its own copy.
    const rerouted = this.dev !== undefined && entry.peer.includes("/") && entry.peer !== from;
    const resend = lost && peer !== undefined && !rerouted && (this.o.recovery?.resend ?? false);
    // A stanza is resent to the device that reported it (an offline session's bare JID
    // becomes the full JID that is now online).
    if (resend && peer) {
      const q = this.resendQueue.get(peer) ?? [];
      q.push(entry.stanza);
      this.resendQueue.set(peer, q);
    }
    this.emit({ type: "undelivered", peer: entry.peer, id, willResend: resend });
    if (lost && peer) this.recover(peer, "peer-lost-session");
  }

  /** Renegotiates with `peer` in the background (bounded: a few attempts a minute). */
  private recover(peer: FullJid, reason: "peer-lost-session"): void {
    if (this.closed || (this.o.recovery?.renegotiate ?? true) === false) return;
    const existing = this.sessions.get(peer);
    if (existing?.isActive) {
      void this.flushResend(peer);
      return;
    }
    if (existing || this.recovering.has(peer)) return;
    const now = this.clock.now();
    const recent = (this.recoveries.get(peer) ?? []).filter((t) => now - t < 60_000);
    if (recent.length >= 3) {
      this.emit({ type: "recovery", peer, state: "gave-up", reason });
      return;
    }
    recent.push(now);
    this.recoveries.set(peer, recent);
    this.recovering.add(peer);
    this.emit({ type: "recovery", peer, state: "renegotiating", reason });
    void this.startSession(peer)
      .then(async () => {
        this.emit({ type: "recovery", peer, state: "renegotiated", reason });
        await this.flushResend(peer);
      })
      .catch(() => this.emit({ type: "recovery", peer, state: "failed", reason }))
      .finally(() => this.recovering.delete(peer));
  }

  private async flushResend(peer: FullJid): Promise<void> {
    const q = this.resendQueue.get(peer);
    if (!q?.length) return;
    this.resendQueue.delete(peer);
    for (const st of q) {
      try {
        await this.send(peer, st);
        this.emit({ type: "resent", peer, id: String(st.attrs.id) });
      } catch {
        this.emit({ type: "undelivered", peer, id: String(st.attrs.id), willResend: false });
      }
    }
  }

  sendMessage(peer: string, body: string): Promise<void> {
    return this.send(peer, el("message", { type: "chat" }, el("body", {}, body)));
  }

  async rekey(peer: string): Promise<void> {
    const s = this.sessions.get(peer);
    if (!s) throw new ESessionError("not-protected", "no encrypted session with this peer");
    s.rekey();
    await this.pump(s);
  }

  /** Ends the session with `peer` and resolves when it is terminated (acknowledged or timed out). */
  async terminate(peer: string): Promise<void> {
    const s = this.sessions.get(peer);
    if (!s) return;
    const ended = new Promise<void>((resolve) => {
      const off = this.on((e) => {
        if (e.type === "terminated" && e.peer === peer) {
          off();
          resolve();
        }
      });
    });
    s.terminate();
    await this.pump(s);
    if (this.sessions.get(peer) === s) await ended;
  }

  /** Records that the users compared the SAS and it matched. */
  async confirmSas(peer: string): Promise<void> {
    const account = bareJid(this.jid);
    const confirmed = async (): Promise<{ id: string } | undefined> => {
      const list = await this.o.store.list(account, bareJid(parseFullJid(peer)));
      const own = this.retainedIdOf.get(peer);
      return (own !== undefined ? list.find((r) => r.id === own) : undefined) ?? list[0];
    };
    if (this.o.trust) {
      const latestRs = await confirmed();
      await this.o.trust.confirmSas({
        account,
        jid: bareJid(parseFullJid(peer)),
        now: this.clock.now(),
        ...(latestRs ? { retainedSecretId: latestRs.id } : {}),
        ...(this.peerKeys.has(peer) ? { fingerprint: this.peerKeys.get(peer) ?? "" } : {}),
      });
      return;
    }
    await this.o.store.setSasConfirmed(account, bareJid(parseFullJid(peer)), this.clock.now());
    const latest = await confirmed();
    if (latest) await this.o.store.markChainVerified(latest.id);
  }

  // ---- XEP-0187 offline ESessions ------------------------------------------------------

  private offlineConfig(): OfflineConfig {
    const c = this.o.offline;
    if (!c) throw new OfflineError("no-options", "offline sessions are not configured");
    return c;
  }

  /**
   * Publisher: destroys expired and retracts them, then tops our one-time offline options up
   * to `count` (XEP-0187 3.1). Call it before going offline and whenever sets were used
   * (done automatically after each accepted offline session). Returns how many were published.
   */
  async publishOfflineOptions(): Promise<number> {
    const c = this.offlineConfig();
    const account = bareJid(this.jid);
    const node = nodeFor(c.audience ?? "subscribers");
    const expired = await c.store.expire(account, this.clock.now());
    for (const id of expired) await this.iq(retractIq(this.newId(), node, id)).catch(() => undefined);
    const held = await c.store.list(account);
    // At most maxOfflineOneTimeValues sets (docs/security.md "Limits"): each is a stored
    // secret and a PEP item. The constructor refuses a larger `count`; the clamp covers
    // limits lowered by configureLimits() afterwards.
    const count = Math.min(c.count ?? DEFAULT_OFFLINE_COUNT, getLimits().maxOfflineOneTimeValues);
    let published = 0;
    for (let i = held.length; i < count; i++) {
      const { x, secret } = createOfflineOptions({
        crypto: this.crypto,
        random: this.random,
        clock: this.clock,
        policy: this.policy,
        lifetimeMs: c.lifetimeMs ?? DEFAULT_OFFLINE_LIFETIME_MS,
        ...(this.syncIdentity ? { identity: this.syncIdentity } : {}),
        // XEP-0187 3.1 'match_resource': these sets are this device's (it alone holds the
        // secrets), so a sender addresses the session to this resource (3.3).
        ...((c.perDevice ?? true) ? { matchResource: resourceOf(this.jid) } : {}),
      });
      // Stored before it is published: a sender can never use a set we did not keep.
      await c.store.put(account, secret);
      destroySecret(secret);
      await this.iq(
        publishIq(this.newId(), node, secret.id, x, {
          accessModel: (c.audience ?? "subscribers") === "subscribers" ? "presence" : "open",
          // Every device of the account publishes on this node: room for several of them.
          maxItems: Math.min(RELAY_MAX_ITEMS, Math.max(count * 2, 16) * OFFLINE_DEVICES_PER_NODE),
          quiet: true,
        }),
      );
      published++;
    }
    if (published || expired.length) this.emit({ type: "offline-options", published, used: 0, expired: expired.length });
    return published;
  }

  /**
   * Sender: fetches `peer`'s offline options (XEP-0187 3.2: the subscribers' node first, then
   * the one for everyone), verifies their signature with a key we trust, picks a set we have
   * not used and starts an offline ESession (3.3). Then send()/sendMessage() to the returned
   * `peer` go out encrypted and are kept by the peer's server until it is back.
   * `peerJid` a full JID: only that device's sets (match_resource). A bare JID: any one set
   * (one device); startOfflineSessions() reaches every device.
   */
  async startOfflineSession(peerJid: string): Promise<Established> {
    const c = this.offlineConfig();
    const j = parseJid(peerJid);
    const owner = bareJid(j);
    const resource = j === owner ? undefined : resourceOf(j);
    const sets = await this.offlineSets(owner);
    const pick = resource === undefined ? sets : sets.filter((x) => x.resource === resource);
    if (resource === undefined) {
      // XEP-0187 2: "Bob MUST NOT initiate a new ESession with Alice if he already has one".
      if (this.sessions.get(owner)?.isActive) throw new ESessionError("unexpected-request", "a session with this peer is already active");
    }
    return this.startFromSets(c, owner, pick);
  }

  /**
   * Sender, many devices: one offline session per device of `account` that published its own
   * sets (XEP-0187 'match_resource'), plus one for account-wide sets published the old way
   * (a "device" of its own). Devices in `skip` (resources, e.g. those online now) and our own
   * device are left out; so are account-wide sets of our own account (they may be ours).
   */
  async startOfflineSessions(account: string, o: { readonly skip?: readonly string[]; readonly accountWide?: boolean } = {}): Promise<OfflineSessions> {
    const skip = o.skip ?? [];
    const c = this.offlineConfig();
    const owner = bareJid(parseJid(account));
    const own = owner === bareJid(this.jid);
    const sets = await this.offlineSets(owner);
    const groups = new Map<string | undefined, OfflineSet[]>();
    for (const x of sets) {
      if (x.resource !== undefined && skip.includes(x.resource)) continue;
      if (x.resource === undefined && o.accountWide === false) continue;
      if (own && (x.resource === undefined || x.resource === resourceOf(this.jid))) continue;
      const g = groups.get(x.resource);
      if (g) g.push(x);
      else groups.set(x.resource, [x]);
    }
    const started: Established[] = [];
    const active: Jid[] = [];
    const failed: { device: Jid; error: OfflineError }[] = [];
    for (const [resource, group] of groups) {
      const device = (resource === undefined ? owner : `${owner}/${resource}`) as Jid;
      if (this.sessions.get(device)?.isActive) {
        active.push(device);
        continue;
      }
      try {
        started.push(await this.startFromSets(c, owner, group));
      } catch (e) {
        if (!(e instanceof OfflineError)) throw e;
        failed.push({ device, error: e });
      }
    }
    return { started, active, failed };
  }

  /** Every parsable option set `owner` published (both nodes), with the device it names. */
  private async offlineSets(owner: Jid): Promise<OfflineSet[]> {
    const out: OfflineSet[] = [];
    for (const node of [NODE_SUBSCRIBERS, NODE_EVERYONE]) {
      let items: ReturnType<typeof parseItems>;
      try {
        items = parseItems(await this.iq(itemsIq(this.newId(), owner, node)));
      } catch {
        continue;
      }
      for (const item of items) {
        if (!item.payload || this.usedOfflineItems.has(`${owner}/${item.id}`)) continue;
        let options: ParsedOfflineOptions;
        try {
          options = parseOfflineOptions(item.payload);
        } catch {
          continue;
        }
        if (toHex(options.myNonce) !== item.id) continue;
        // A resource must be a valid resourcepart, or the set names no device we can address.
        const resource = options.matchResource;
        if (resource !== undefined && safeFullJid(`${owner}/${resource}`) === undefined) continue;
        out.push({ itemId: item.id, options, resource });
      }
    }
    return out;
  }

  /** Starts one offline session from a random usable set of `sets` (all of one device). */
  private async startFromSets(c: OfflineConfig, owner: Jid, sets: readonly OfflineSet[]): Promise<Established> {
    const keys = c.peerKeys ? await c.peerKeys(owner) : [];
    let lastError: OfflineError = new OfflineError("no-options", "the peer has published no offline options");
    // A random unused set: concurrent senders rarely pick the same one-time values.
    const candidates = sets.filter((x) => !this.usedOfflineItems.has(`${owner}/${x.itemId}`));
    for (let n = candidates.length; n > 0; n--) {
      const j = (this.random.bytes(1)[0] ?? 0) % n;
      const set = candidates.splice(j, 1)[0];
      if (!set) continue;
      try {
        const { options } = set;
        const publisherKey = verifyOfflineOptions(options, keys, this.o.verifier, c.allowUnauthenticated ?? false, this.crypto);
        // XEP-0187 3.3: with 'match_resource' the session is addressed to that resource.
        const to = (set.resource !== undefined ? `${owner}/${set.resource}` : owner) as FullJid;
        if (this.sessions.get(to)?.isActive) throw new OfflineError("no-options", "a session with this device is already active");
        const s = startOfflineSession({
          crypto: this.crypto,
          random: this.random,
          clock: this.clock,
          local: this.jid,
          peer: to,
          thread: newThreadId(this.random),
          options,
          policy: this.policy,
          ...(publisherKey ? { publisherKey } : {}),
          ...(this.syncIdentity ? { identity: this.syncIdentity } : {}),
          ...(this.o.verifier ? { verifier: this.o.verifier } : {}),
        });
        this.usedOfflineItems.add(`${owner}/${set.itemId}`);
        this.sessions.set(to, s);
        const done = new Promise<Established>((resolve, reject) => this.waiters.set(s, { resolve, reject }));
        await this.pump(s);
        return await done;
      } catch (e) {
        if (!(e instanceof OfflineError)) throw e;
        lastError = e;
      }
    }
    throw lastError;
  }

  /** Publisher, back online: accepts an offline start (XEP-0187 3.4) and decrypts its content. */
  private async acceptOffline(stanza: Element, from: string, thread: string | undefined, x: Element): Promise<void> {
    const c = this.o.offline;
    const peer = safeFullJid(from);
    const id = typeof stanza.attrs.id === "string" ? stanza.attrs.id : undefined;
    const refuse = (reason: string): void => {
      const reply = (c?.replyOnFailure ?? true) && peer !== undefined;
      if (reply) this.queueSend(this.undecryptableReply(stanza, from, thread));
      this.emit({ type: "undecryptable", peer: from, id, thread, reason, replied: reply });
    };
    if (!c || !peer || !thread) return refuse("offline sessions are not configured");
    const account = bareJid(this.jid);
    // The set's nonce is public (it is the PEP item id), so anyone who can read our options
    // can name it in a junk <init/>. Nothing is consumed or recorded until the init has
    // passed every check, the sender's identity (M_B and signature) included; then the set
    // is taken atomically (exactly once: of two verified inits naming it, one gets it).
    let candidate: OfflineSecret | undefined;
    let used: StoredOfflineSecret | undefined;
    let s: ESession | undefined;
    try {
      const init = parseOfflineInit(x);
      const setId = toHex(init.response.nonce);
      const held = await c.store.get(account, setId);
      if (!held) throw new OfflineError("unknown-options", "the options were used or never ours");
      candidate = {
        ...held,
        cryptAlgs: held.cryptAlgs ?? LEGACY_OFFERED_CRYPT_ALGS,
        hashAlgs: held.hashAlgs ?? LEGACY_OFFERED_HASH_ALGS,
      };
      // Verifying the start costs a DH operation: bounded in rate like live requests.
      if (this.rate().take(peer, this.clock.now()) !== "allowed") return refuse("too many session starts from this account; try again later");
      s = acceptOfflineSession({
        crypto: this.crypto,
        random: this.random,
        clock: this.clock,
        local: this.jid,
        peer,
        thread: thread as ThreadId,
        init,
        secret: candidate,
        policy: this.policy,
        ...(this.o.verifier ? { verifier: this.o.verifier } : {}),
        allowUnauthenticated: c.allowUnauthenticated ?? false,
      });
      // XEP-0187 3.4 "destroy in a secure way": the one-time set is used now, once.
      used = await c.store.take(account, setId);
      if (!used) throw new OfflineError("unknown-options", "the options were used or never ours");
      // XEP-0187 6.1: refuse a d or N_B seen before (the one-time set makes this belt and
      // braces). Recorded only for a verified init: a junk one cannot pre-empt a real one.
      const fresh = await Promise.all([
        c.store.markSeen(account, `d:${toHex(this.crypto.hash("sha256", init.response.dhkeys))}`, this.clock.now()),
        c.store.markSeen(account, `n:${toHex(init.response.myNonce)}`, this.clock.now()),
      ]);
      if (!fresh.every(Boolean)) throw new OfflineError("replayed", "d or my_nonce seen before");
      const old = this.sessions.get(peer);
      if (old?.isActive) old.terminate();
      if (old) await this.pump(old);
      this.sessions.set(peer, s);
      await this.pump(s);
      s.handleStanza(stanza);
      await this.pump(s);
    } catch (e) {
      // A verified session that was not installed (the set was gone, a replay): its keys go.
      if (s && this.sessions.get(peer) !== s) {
        s.terminate();
        s.drain();
      }
      if (!(e instanceof OfflineError) && !(e instanceof ESessionError)) throw e;
      refuse(e.condition);
    } finally {
      if (candidate) destroySecret(candidate);
      if (used) for (const p of used.pairs) p.x.fill(0);
    }
    if (used) {
      // One-time: the used set leaves PEP and a fresh one replaces it.
      const node = nodeFor(c.audience ?? "subscribers");
      void this.iq(retractIq(this.newId(), node, used.id))
        .catch(() => undefined)
        .then(() => this.publishOfflineOptions())
        .then((published) => this.emit({ type: "offline-options", published, used: 1, expired: 0 }))
        .catch(() => undefined);
    }
  }

  /** The error that tells a sender's client its stanza could not be decrypted (it may resend). */
  private undecryptableReply(stanza: Element, to: string, thread: string | undefined): Element {
    const e = el("error", { type: "cancel" }, el("not-acceptable", { xmlns: NS.stanzas }), el("undecryptable", { xmlns: NS_E2E_ERRORS }));
    return el("message", { to, type: "error", id: stanza.attrs.id }, thread !== undefined && el("thread", {}, thread), e);
  }


  // ---- many devices ----------------------------------------------------------------------

  /** The known devices of `account` (a bare JID), or of every account; empty without `devices`. */
  devices(account?: string): DeviceInfo[] {
    return this.dev ? this.dev.registry.list(account) : [];
  }

  /** XEP-0280 section 4: asks our server to enable carbons for this connection; resolves with the outcome. */
  async enableCarbons(): Promise<boolean> {
    let enabled = true;
    try {
      await this.iq(carbonsEnableIq(this.newId()));
    } catch {
      enabled = false;
    }
    this.emit({ type: "carbons", enabled });
    return enabled;
  }

  /**
   * Looks for `account`'s XEP-0187 offline options (both nodes) and records which devices
   * published them (match_resource), then returns what we know of its devices.
   */
  async discoverDevices(account: string): Promise<DeviceInfo[]> {
    const dev = this.devicesOrThrow();
    const owner = bareJid(parseJid(account));
    const resources: (string | undefined)[] = [];
    for (const node of [NODE_SUBSCRIBERS, NODE_EVERYONE]) {
      try {
        for (const item of parseItems(await this.iq(itemsIq(this.newId(), owner, node)))) {
          if (!item.payload) continue;
          try {
            resources.push(parseOfflineOptions(item.payload).matchResource);
          } catch {
            /* not usable options: not a device we can reach offline */
          }
        }
      } catch {
        /* no such node, or not allowed */
      }
    }
    dev.registry.offlineOptions(owner, resources);
    this.drainRegistry();
    this.arm();
    return dev.registry.list(owner);
  }

  /**
   * Sends `stanza` to every device of `to` (a bare JID; a full JID is reduced to its
   * account), each copy encrypted in the session with that device, and a sent-by-self copy
   * to each of our own other online devices. Copies for devices with an active session leave
   * at once; the others wait for their own negotiation (started here) under a per-device
   * deadline, so one slow or silent device never delays the rest. Never sends in the clear:
   * a copy that cannot be protected is reported undelivered. Resolves with what happened at
   * once; `settled` (and `delivery` events) report every copy.
   */
  async fanout(to: string, stanza: Element): Promise<FanoutReport> {
    const dev = this.devicesOrThrow();
    const account = bareJid(parseJid(to));
    const own = bareJid(this.jid);
    const fanoutId = typeof stanza.attrs.id === "string" ? stanza.attrs.id : this.newId();
    const targets = dev.registry.targets(account).filter((d) => d.jid !== this.jid);
    const selfTargets =
      account !== own && (this.o.devices?.selfCopies ?? true) ? dev.registry.targets(own).filter((d) => d.jid !== this.jid) : [];
    const now = this.clock.now();
    const skipped: { device: FullJid; reason: UndeliveredReason }[] = [];
    for (const d of dev.registry.list(account)) {
      if (!d.online || d.jid === this.jid || targets.some((t) => t.jid === d.jid)) continue;
      skipped.push({ device: d.jid, reason: d.esession === "no" ? "not-capable" : d.unresponsiveUntil !== undefined && d.unresponsiveUntil > now ? "unresponsive" : "failed" });
    }
    const copies: QueuedCopy[] = [
      ...targets.map((d) => ({ fanoutId, device: d.jid, stanza: this.copyOf(stanza), selfCopy: false })),
      ...selfTargets.map((d) => ({ fanoutId, device: d.jid, stanza: this.withId(sentCopy(stanza, account, this.jid)), selfCopy: true })),
    ];
    // XEP-0187 per device: every device (contact's, and our own for self copies) that is not
    // online but published its own option sets gets its copy through an offline session
    // with it; account-wide sets (published the old way) only when no device is online.
    const offlineFallback = this.o.offline !== undefined && (this.o.devices?.offlineFallback ?? true);
    const offlineCopies: { readonly device: Jid; readonly stanza: Element; readonly selfCopy: boolean }[] = [];
    const offlineFailed: Jid[] = [];
    if (offlineFallback) {
      const online = (acc: Jid): string[] => dev.registry.list(acc).filter((d) => d.online).map((d) => resourceOf(d.jid));
      // PEP is asked only when a device may be missing: none online, a known device offline,
      // or options seen by discoverDevices().
      const mayMiss = (acc: Jid): boolean => dev.registry.hasOfflineOptions(acc) || dev.registry.list(acc).some((d) => !d.online && d.jid !== this.jid);
      const plan: { acc: Jid; selfCopy: boolean; accountWide: boolean }[] = [];
      if (account !== own && (targets.length === 0 || mayMiss(account))) plan.push({ acc: account, selfCopy: false, accountWide: targets.length === 0 });
      if (account !== own && (this.o.devices?.selfCopies ?? true) && mayMiss(own)) plan.push({ acc: own, selfCopy: true, accountWide: false });
      for (const p of plan) {
        const r = await this.offlineDevices(p.acc, [...online(p.acc), resourceOf(this.jid)], p.accountWide);
        for (const device of r.ok)
          offlineCopies.push({ device, selfCopy: p.selfCopy, stanza: p.selfCopy ? this.withId(sentCopy(stanza, account, this.jid)) : this.copyOf(stanza) });
        if (!p.selfCopy) offlineFailed.push(...r.failed);
      }
      // Nothing reachable at all: one undelivered entry for the account, as before.
      if (account !== own && targets.length === 0 && !offlineCopies.some((c) => !c.selfCopy) && offlineFailed.length === 0) offlineFailed.push(account);
    }
    const settled = new Promise<readonly DeviceDelivery[]>((resolve) => dev.settle.set(fanoutId, resolve));
    const total = copies.length + skipped.length + offlineCopies.length + offlineFailed.length;
    dev.tracker.begin(fanoutId, total);
    if (total === 0) this.finishFanout(fanoutId, []);
    const sent: Jid[] = [];
    const queued: FullJid[] = [];
    for (const sk of skipped) this.recordCopy(fanoutId, { device: sk.device, selfCopy: false, state: "undelivered", reason: sk.reason });
    for (const c of copies) {
      const s = this.sessions.get(c.device);
      if (s?.isActive && s.offlineRole === undefined) {
        if (await this.sendCopy(c)) sent.push(c.device);
        continue;
      }
      queued.push(c.device);
      dev.tracker.queue(c);
      if (!s && dev.registry.get(c.device)?.esession === "yes") this.negotiateFor(c.device);
    }
    for (const device of offlineFailed) this.recordCopy(fanoutId, { device, selfCopy: false, state: "undelivered", reason: "offline" });
    for (const c of offlineCopies) {
      try {
        await this.send(c.device, c.stanza);
        this.recordCopy(fanoutId, { device: c.device, selfCopy: c.selfCopy, state: "sent", id: String(c.stanza.attrs.id) });
        sent.push(c.device);
      } catch (e) {
        if (!(e instanceof ESessionError)) throw e;
        this.recordCopy(fanoutId, { device: c.device, selfCopy: c.selfCopy, state: "undelivered", reason: "offline" });
      }
    }
    this.arm();
    return { id: fanoutId, sent, queued, skipped, settled };
  }

  /** fanout() of a chat message with `body`. */
  fanoutMessage(to: string, body: string): Promise<FanoutReport> {
    return this.fanout(to, el("message", { type: "chat" }, el("body", {}, body)));
  }

  private devicesOrThrow(): NonNullable<SecureClient["dev"]> {
    if (!this.dev) throw new ESessionError("not-protected", "many devices are not configured (option `devices`)");
    return this.dev;
  }

  private copyOf(stanza: Element): Element {
    const c = deepClone(stanza);
    c.attrs.id = this.newId();
    return c;
  }

  private withId(stanza: Element): Element {
    stanza.attrs.id = this.newId();
    return stanza;
  }

  /** Sends one copy in its device's active session; records the outcome. */
  private async sendCopy(c: QueuedCopy): Promise<boolean> {
    try {
      await this.send(c.device, c.stanza);
    } catch (e) {
      if (!(e instanceof ESessionError)) throw e;
      this.recordCopy(c.fanoutId, { device: c.device, selfCopy: c.selfCopy, state: "undelivered", reason: "not-protected" });
      return false;
    }
    this.recordCopy(c.fanoutId, { device: c.device, selfCopy: c.selfCopy, state: "sent", id: String(c.stanza.attrs.id) });
    return true;
  }

  /**
   * The devices of `account` we can reach through an offline session now (an active one, or
   * one started from their own sets), leaving out the resources in `skip`; account-wide sets
   * count as one more device when `accountWide`.
   */
  private async offlineDevices(account: Jid, skip: readonly string[], accountWide: boolean): Promise<{ ok: Jid[]; failed: Jid[] }> {
    const ok: Jid[] = [];
    for (const [key, s] of this.sessions) {
      const device = key as Jid;
      if (s.offlineRole !== "sender" || !s.isActive || bareJid(device) !== account) continue;
      if (device === account ? accountWide : !skip.includes(resourceOf(device))) ok.push(device);
    }
    let r: OfflineSessions;
    try {
      r = await this.startOfflineSessions(account, { skip, accountWide });
    } catch (e) {
      if (!(e instanceof OfflineError) && !(e instanceof ESessionError)) throw e;
      return { ok, failed: [] };
    }
    for (const est of r.started) if (!ok.includes(est.peer)) ok.push(est.peer);
    return { ok, failed: r.failed.map((f) => f.device) };
  }

  private recordCopy(fanoutId: string, d: DeviceDelivery): void {
    const dev = this.dev;
    if (!dev) return;
    this.emit({ type: "delivery", fanoutId, delivery: d });
    const all = dev.tracker.record(fanoutId, d);
    if (all) this.finishFanout(fanoutId, all);
  }

  private finishFanout(fanoutId: string, all: readonly DeviceDelivery[]): void {
    const resolve = this.dev?.settle.get(fanoutId);
    this.dev?.settle.delete(fanoutId);
    resolve?.(all);
  }

  /** Starts a negotiation with a device in the background; its outcome arrives as session events. */
  private negotiateFor(device: FullJid): void {
    if (this.closed || this.sessions.has(device)) return;
    this.startSession(device).catch(() => undefined);
  }

  /** The device's session is established: its queued copies leave now, in order. */
  private async flushDevice(device: FullJid): Promise<void> {
    if (!this.dev) return;
    for (const c of this.dev.tracker.take(device)) await this.sendCopy(c);
  }

  /** The device's negotiation failed or ended: its queued copies are reported, the device is skipped for a while. */
  private abandonDevice(device: FullJid, reason: UndeliveredReason): void {
    if (!this.dev?.tracker.waiting(device)) return;
    this.giveUpDevice(device, this.dev.tracker.take(device), reason);
  }

  private giveUpDevice(device: FullJid, copies: readonly QueuedCopy[], reason: UndeliveredReason): void {
    const dev = this.dev;
    if (!dev) return;
    if (reason === "timeout" || reason === "failed") dev.registry.unresponsive(device);
    // A negotiation still pending is abandoned (its deadline is ours, shorter than the core's).
    const s = this.sessions.get(device);
    if (s && !s.isActive && s.offlineRole === undefined) {
      this.sessions.delete(device);
      s.abort(); // its DH secret and retained secrets are wiped, not left to the GC
      this.waiters.get(s)?.reject(new ESessionError("unexpected-request", reason === "timeout" ? "negotiation timed out" : "negotiation abandoned"));
      this.waiters.delete(s);
    }
    this.drainRegistry();
    for (const c of copies) this.recordCopy(c.fanoutId, { device: c.device, selfCopy: c.selfCopy, state: "undelivered", reason });
  }

  /**
   * Device bookkeeping for every inbound stanza: presence updates the registry (a device that
   * goes offline loses its live session at once, its retained secret stays in the store);
   * XEP-0280 carbons are handled here. Returns true when the stanza was consumed.
   */
  private onDeviceInbound(stanza: Element, from: string): boolean {
    const dev = this.dev;
    if (!dev) return false;
    dev.registry.seen(from);
    if (stanza.name === "presence") {
      dev.registry.presence(stanza);
      const device = safeFullJid(from);
      if (stanza.attrs.type === "unavailable" && device) this.dropDevice(device);
      this.drainRegistry();
      this.arm();
      return false;
    }
    const carbon = parseCarbon(stanza);
    if (!carbon) return false;
    this.onCarbon(carbon);
    return true;
  }

  /** A device went offline: its live session (not an offline one) is gone, queued copies are reported. */
  private dropDevice(device: FullJid): void {
    const s = this.sessions.get(device);
    if (s && s.offlineRole === undefined) {
      this.sessions.delete(device);
      // Nobody will answer on this session any more: its keys are wiped now.
      const wasActive = s.isActive;
      s.abort();
      const w = this.waiters.get(s);
      this.waiters.delete(s);
      w?.reject(new ESessionError("unexpected-request", "the device went offline"));
      if (wasActive) this.emit({ type: "terminated", peer: device, by: "peer", acknowledged: false });
    }
    if (this.dev?.tracker.waiting(device)) this.giveUpDevice(device, this.dev.tracker.take(device), "offline");
  }

  /** XEP-0280 section 11: only carbons from our own bare JID are accepted. */
  private onCarbon(c: ParsedCarbon): void {
    if (c.from !== bareJid(this.jid)) {
      this.emit({ type: "carbon-rejected", from: c.from, reason: "not-own-account" });
      return;
    }
    const inner = c.inner;
    if (!inner) {
      this.emit({ type: "carbon-rejected", from: c.from, reason: "malformed" });
      return;
    }
    const other = c.direction === "received" ? inner.attrs.from : inner.attrs.to;
    const peer = typeof other === "string" ? other : "";
    if (carriesESession(inner)) {
      // Another device's session: its keys are not ours, so this can never be decrypted here.
      const id = typeof inner.attrs.id === "string" ? inner.attrs.id : undefined;
      this.emit({ type: "carbon-undecryptable", direction: c.direction, peer, id });
      return;
    }
    this.emit({ type: "carbon", direction: c.direction, peer, body: inner.getChildText("body") ?? undefined, stanza: inner, protected: false });
  }

  /** A decrypted stanza wrapping a carbon: a sent-by-self copy from our own device, or refused. */
  private onSessionCarbon(peer: FullJid, decrypted: Element): void {
    const inner = parseSentCopy(decrypted);
    if (bareJid(peer) !== bareJid(this.jid) || !inner || !decrypted.getChild("sent", NS_CARBONS)) {
      this.emit({ type: "carbon-rejected", from: peer, reason: bareJid(peer) !== bareJid(this.jid) ? "inside-foreign-session" : "malformed" });
      return;
    }
    const to = typeof inner.attrs.to === "string" ? inner.attrs.to : "";
    this.emit({ type: "sent-copy", device: peer, to, body: inner.getChildText("body") ?? undefined, stanza: inner });
  }

  /** Turns registry outputs into events and disco#info queries (answered back through the inbound queue). */
  private drainRegistry(): void {
    const dev = this.dev;
    if (!dev) return;
    for (const out of dev.registry.drain()) {
      if (out.kind !== "event") continue;
      const ev = out.event;
      if (ev.type === "device") {
        this.emit({ type: "device", change: ev.change, device: ev.device });
        if (ev.change === "capable" && dev.tracker.waiting(ev.device.jid)) this.negotiateFor(ev.device.jid);
        if (ev.change === "not-capable" && dev.tracker.waiting(ev.device.jid)) this.giveUpDevice(ev.device.jid, dev.tracker.take(ev.device.jid), "not-capable");
        continue;
      }
      const { jid, node } = ev;
      // Not awaited: a device that never answers must not hold up inbound processing.
      void this.iq(buildInfoQuery({ id: this.newId(), to: jid, ...(node !== undefined ? { node } : {}) }))
        .then(
          (r) => {
            try {
              return parseInfoResult(r);
            } catch {
              return undefined;
            }
          },
          () => undefined,
        )
        .then((info) => {
          this.inbound = this.inbound
            .then(() => {
              if (this.closed) return;
              dev.registry.discoResult(jid, node, info);
              this.drainRegistry();
              this.arm();
            })
            .catch(() => undefined);
        });
    }
  }

  // ---- iq plumbing ----------------------------------------------------------------------

  private newId(): string {
    return `e2e-${toHex(this.random.bytes(8))}`;
  }

  /** Sends an iq and resolves with its result (rejects with OfflineError("server") on error/timeout). */
  private iq(request: Element): Promise<Element> {
    const id = String(request.attrs.id);
    const to = typeof request.attrs.to === "string" ? request.attrs.to : bareJid(this.jid);
    return new Promise((resolve, reject) => {
      const handle = this.timers.set(() => {
        this.pendingIq.delete(id);
        reject(new OfflineError("server", "the server did not answer in time"));
      }, this.o.iqTimeoutMs ?? 15_000);
      this.pendingIq.set(id, { to, resolve, reject, handle });
      this.o.connection.send(request).catch(() => {
        this.pendingIq.delete(id);
        this.timers.clear(handle);
        reject(new OfflineError("server", "could not send"));
      });
    });
  }

  private matchIq(s: Element): boolean {
    if (s.name !== "iq" || (s.attrs.type !== "result" && s.attrs.type !== "error")) return false;
    const id = String(s.attrs.id ?? "");
    const w = this.pendingIq.get(id);
    if (!w) return false;
    // Only the entity we asked may answer (our own account may answer without 'from').
    const from = typeof s.attrs.from === "string" ? s.attrs.from : bareJid(this.jid);
    if (from !== w.to && !(w.to === bareJid(this.jid) && from === this.jid)) return false;
    this.pendingIq.delete(id);
    this.timers.clear(w.handle);
    if (s.attrs.type === "result") w.resolve(s);
    else w.reject(new OfflineError("server", errorCondition(s) ?? "error"));
    return true;
  }

  /** Terminates every session (XEP-0217: "MUST terminate all open ESessions before they go offline"). */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const peer of [...this.sessions.keys()]) {
      const s = this.sessions.get(peer);
      if (s?.isActive) await Promise.race([this.terminate(peer), delay(2000)]);
    }
    this.closed = true;
    if (this.dev) for (const c of this.dev.tracker.takeAll()) this.recordCopy(c.fanoutId, { device: c.device, selfCopy: c.selfCopy, state: "undelivered", reason: "closed" });
    this.unsubscribe();
    if (this.timer !== undefined) this.timers.clear(this.timer);
    await this.outbound;
  }

  /** Resolves once every inbound stanza received so far has been processed. */
  async settled(): Promise<void> {
    await this.inbound;
    await this.outbound;
  }

  private async onInbound(stanza: Element): Promise<void> {
    if (this.closed) return;
    const from = String(stanza.attrs.from ?? "");
    if (this.dev && this.onDeviceInbound(stanza, from)) return;
    if (this.forOtherDevice(stanza)) return;
    const thread = stanza.getChildText("thread") ?? undefined;
    const s = this.sessions.get(from);
    // A session stanza without thread: an encrypted presence/iq, or (many devices) an error
    // bounced for our request to a device that is gone (servers do not echo the thread).
    const sessionStanza =
      thread === undefined &&
      ((stanza.name !== "message" && stanza.getChild("c", NS.c) !== undefined) ||
        (this.dev !== undefined && stanza.name === "message" && stanza.attrs.type === "error" && s !== undefined && !s.isActive && this.waiters.has(s)));
    if (stanza.name === "message" && stanza.attrs.type !== "error" && (!s || thread !== s.thread)) {
      const offlineInit = offlineInitOf(stanza);
      if (offlineInit) {
        await this.acceptOffline(stanza, from, thread, offlineInit);
        return;
      }
    }
    if (stanza.name === "presence") await this.peerPresence(stanza, from);
    if (s && (thread === s.thread || sessionStanza)) {
      s.handleStanza(stanza);
      await this.pump(s);
      if (stanza.attrs.type === "error") await this.onPeerError(stanza, from);
      return;
    }
    if (stanza.attrs.type === "error" && stanza.name === "message" && (thread !== undefined || this.sentLog.has(String(stanza.attrs.id ?? "")))) {
      await this.onPeerError(stanza, from);
      if (thread !== undefined) return;
    }
    if (stanza.name === "message" && isESessionRequest(stanza)) {
      await this.answer(stanza, from, thread);
      return;
    }
    if (stanza.name === "iq" && this.answerDisco(stanza)) return;
    if (stanza.getChild("c", NS.c) && stanza.attrs.type !== "error") {
      const peer = safeFullJid(from);
      if (peer) this.emit({ type: "failed", peer, error: new ESessionError("unexpected-request", "encrypted stanza for an unknown session") });
      // Never silent: the user is told, and the sender's client learns which stanza we could
      // not decrypt so that it can renegotiate and resend (we lost the session: restart, crash).
      const id = typeof stanza.attrs.id === "string" ? stanza.attrs.id : undefined;
      const reply = peer !== undefined && stanza.name === "message";
      if (reply) this.queueSend(this.undecryptableReply(stanza, from, thread));
      this.emit({ type: "undecryptable", peer: from, id, thread, reason: "unknown-session", replied: reply });
      return;
    }
    this.emit({ type: "unprotected", peer: from, stanza });
    // RFC 6120 8.4: an iq get/set must be answered. Unprotected requests are not ours to
    // serve unless the application said so.
    if (stanza.name === "iq" && (stanza.attrs.type === "get" || stanza.attrs.type === "set") && !this.o.handlesUnprotectedIq) {
      this.queueSend(errorReply(stanza, "service-unavailable", "cancel", { to: from }));
    }
  }

  /**
   * XEP-0187 3.3 without AMP: an encrypted stanza addressed to another resource of our
   * account reached us (the server delivered it to the bare JID: offline storage, or that
   * device left). It belongs to that device's session (its one-time secret is that device's
   * alone), so we neither try it nor answer with an error (that would make the sender
   * resend what the other device will read): we park it on our owner-only relay node for
   * that device to collect, and say so.
   */
  private forOtherDevice(stanza: Element): boolean {
    if (stanza.name !== "message" || stanza.attrs.type === "error") return false;
    const to = typeof stanza.attrs.to === "string" ? stanza.attrs.to : undefined;
    if (to === undefined || to === this.jid || !to.includes("/")) return false;
    const target = safeFullJid(to);
    if (!target || bareJid(target) !== bareJid(this.jid)) return false;
    const init = offlineInitOf(stanza) !== undefined;
    if (!init && !stanza.getChild("c", NS.c)) return false;
    // Only what belongs to offline delivery: an offline start, a stanza of a session whose
    // start we parked, or one out of offline storage (XEP-0203 delay). A live session's
    // stanza rerouted because its device just left still gets the undecryptable reply, so
    // that the sender renegotiates with a device that is here (Recovery).
    const thread = stanza.getChildText("thread") ?? undefined;
    if (!init && !stanza.getChild("delay", NS_DELAY) && !(thread !== undefined && this.parkedThreads.has(thread))) return false;
    if (init && thread !== undefined) {
      if (this.parkedThreads.size >= 1000) this.parkedThreads.clear();
      this.parkedThreads.add(thread);
    }
    const peer = String(stanza.attrs.from ?? "");
    const id = typeof stanza.attrs.id === "string" ? stanza.attrs.id : undefined;
    const c = this.o.offline;
    if (!c || c.relay === false) {
      this.emit({ type: "offline-relay", action: "dropped", peer, device: to, id });
      return true;
    }
    const itemId = relayItemId(this.clock.now(), this.relaySeq++);
    const publish = this.iq(
      publishIq(this.newId(), NODE_RELAY, itemId, relayPayload(deepClone(stanza)), { accessModel: "whitelist", maxItems: RELAY_MAX_ITEMS, quiet: true }),
    ).then(
      () => this.emit({ type: "offline-relay", action: "parked", peer, device: to, id }),
      () => this.emit({ type: "offline-relay", action: "dropped", peer, device: to, id }),
    );
    this.relaying = this.relaying.then(() => publish);
    return true;
  }

  /** Resolves once every stanza being parked for another device has been published (or failed). */
  async relayed(): Promise<void> {
    await this.relaying;
  }

  /**
   * Per-device offline sessions: takes the stanzas another device of ours parked for this
   * device (see forOtherDevice), processes them in the order the server delivered them
   * (offline starts first, as they arrived) and removes them from the relay node. Call it
   * after logging in, like publishOfflineOptions(). Returns how many were processed.
   */
  async collectOfflineRelays(): Promise<number> {
    this.offlineConfig();
    let items: ReturnType<typeof parseItems>;
    try {
      items = parseItems(await this.iq(itemsIq(this.newId(), undefined, NODE_RELAY)));
    } catch {
      return 0; // no relay node: nothing was parked
    }
    const mine = parseRelayItems(items).filter((r) => r.to === this.jid);
    for (const r of mine) {
      // Removed first: a stanza is tried once, whatever its outcome (a replay is refused anyway).
      await this.iq(retractIq(this.newId(), NODE_RELAY, r.itemId)).catch(() => undefined);
      const stanza = deepClone(r.stanza);
      this.inbound = this.inbound.then(() => this.onInbound(stanza)).catch(() => undefined);
    }
    await this.inbound;
    if (mine.length) this.emit({ type: "offline-relay", action: "collected", count: mine.length });
    return mine.length;
  }

  /** XEP-0187 5: "If Bob notices that Alice comes online during his offline ESession with her then he MUST terminate the ESession immediately." */
  private async peerPresence(stanza: Element, from: string): Promise<void> {
    if (stanza.attrs.type !== undefined || !from.includes("/")) return;
    const owner = bareJid(from as Jid);
    for (const [key, s] of [...this.sessions]) {
      // Per device (XEP-0187 'match_resource'): only the session with the device that came
      // online ends; an account-wide (bare JID) session ends on any device of the account.
      if (s.offlineRole === "sender" && s.isActive && (key === from || key === owner)) {
        s.terminate();
        await this.pump(s);
      }
    }
  }

  private async answer(stanza: Element, from: string, thread: string | undefined): Promise<void> {
    const peer = safeFullJid(from);
    if (!peer || !thread) return;
    if (this.o.acceptSessions && !this.o.acceptSessions(peer)) {
      const e = el("error", { type: "cancel" }, el("not-acceptable", { xmlns: NS.stanzas }));
      await this.o.connection.send(el("message", { to: from, type: "error" }, el("thread", {}, thread), e));
      return;
    }
    // XEP-0210 4.4 (docs/security.md "Expensive work only after cheap checks"): a request is
    // unauthenticated and answering it costs a DH key generation, so it is admitted first
    // (per bare JID and in total) and refused with <resource-constraint/> (wait) otherwise,
    // before any store lookup or DH work. A re-request from the same full JID replaces its
    // pending negotiation and keeps its admission.
    // The rate as well (docs/security.md "Limits"): every request that would be answered
    // costs a DH operation, a re-request from a resource already negotiating included.
    this.sweepAdmissions();
    const fresh = !this.admission.has(peer);
    if (this.rate().take(peer, this.clock.now()) !== "allowed" || this.admission.admit(peer, peer) !== "admitted") {
      // RFC 6120 8.3.1: an error stanza is never answered with an error.
      if (stanza.attrs.type !== "error") this.queueSend(busyErrorStanza(stanza));
      return;
    }
    let bound = false;
    try {
      bound = await this.respondTo(stanza, peer, thread);
    } finally {
      // Nothing took the admission (store failure, or we keep our own request): give it back.
      if (fresh && !bound) this.admission.release(peer);
    }
  }

  /** answer() once admitted: the ESession responder; true if a session now holds the admission. */
  private async respondTo(stanza: Element, peer: FullJid, thread: string): Promise<boolean> {
    const old = this.sessions.get(peer);
    // Both devices asked at once (a fan-out on each side): the request of the smaller full
    // JID wins. We keep ours and ignore theirs (they answer ours), or we drop ours and answer
    // theirs, and whoever waits for ours is served by the session we answer.
    let inherited: Waiter | undefined;
    if (old && !old.isActive && old.stateKind !== "terminated" && old.offlineRole === undefined && this.waiters.has(old)) {
      if (this.jid < peer) return false;
      inherited = this.waiters.get(old);
      this.waiters.delete(old);
    }
    if (old?.isActive) old.terminate();
    const account = bareJid(this.jid);
    await this.expireRetained();
    const [retained, all] = await Promise.all([this.o.store.list(account, bareJid(peer)), this.o.store.listAll(account)]);
    const ref = (r: { id: string; secret: Uint8Array; peer: string }) => ({ id: r.id, secret: r.secret, peer: r.peer });
    const s = ESession.respond(
      {
        crypto: this.crypto,
        random: this.random,
        clock: this.clock,
        local: this.jid,
        peer,
        thread: thread as ThreadId,
        policy: this.policy,
        ...(this.o.profile === "gajim" ? { profile: profileByName("gajim") } : {}),
        retained: retained.map(ref),
        retainedOther: all.filter((r) => r.peer !== bareJid(peer)).map(ref),
        ...(this.o.otherSecret ? { otherSecret: this.o.otherSecret } : {}),
        ...(this.o.identity ? { identity: this.o.identity } : {}),
        ...(this.o.verifier ? { verifier: this.o.verifier } : {}),
      },
      stanza,
    );
    this.sessions.set(peer, s);
    this.admittedBy.set(peer, s);
    this.heldSecrets.set(s, retained.length);
    if (inherited) this.waiters.set(s, inherited);
    await this.pump(s);
    return true;
  }

  /**
   * Gives back the admission of every negotiation that is over: established, failed,
   * terminated or timed out, or replaced in `sessions` (a re-request, an offline session,
   * a device that went away). Run after each pump and before each admission decision.
   */
  private sweepAdmissions(): void {
    for (const [key, s] of [...this.admittedBy]) {
      const negotiating = !s.isActive && s.stateKind !== "terminated" && s.stateKind !== "awaiting-terminate-ack";
      if (negotiating && this.sessions.get(key) === s) continue;
      this.admittedBy.delete(key);
      this.admission.release(key);
    }
  }

  private async expireRetained(): Promise<void> {
    await this.o.store.expire(this.clock.now() - (this.o.retainedSecretLifetimeMs ?? DEFAULT_RETAINED_SECRET_LIFETIME_MS));
  }

  /** XEP-0030 / XEP-0115: answer disco#info (plain and node#ver) so peers can discover ESessions. */
  private answerDisco(iq: Element): boolean {
    if (this.disco.handleStanza(iq) !== "handled") return false;
    for (const out of this.disco.drain()) if (out.kind === "send") this.queueSend(out.stanza);
    return true;
  }

  /** The XEP-0115 `<c/>` element to put in our presence. */
  capsElement(): Element {
    return this.disco.caps();
  }

  /** Broadcasts available presence carrying our entity capabilities (XEP-0115 section 6.1). */
  async announce(): Promise<void> {
    if (this.dev && (this.o.devices?.carbons ?? true)) await this.enableCarbons();
    this.queueSend(el("presence", {}, this.disco.caps()));
    await this.outbound;
  }

  /** Drains a core: sends its stanzas in order, persists, maps events, re-arms the timer. */
  private async pump(s: ESession): Promise<void> {
    for (const out of s.drain()) {
      if (out.kind === "send") {
        // Many devices: nothing of a session may be carbon-copied to a device that cannot
        // decrypt it (XEP-0280 section 7, XEP-0334 no-copy); no storage when logging is not
        // allowed, except the offline storage an offline session needs.
        if (this.dev && carriesESession(out.stanza)) {
          const logging = this.logging.get(s);
          addHints(out.stanza, { ...(logging !== undefined ? { logging } : {}), keepOffline: s.offlineRole !== undefined });
        }
        this.queueSend(out.stanza);
      } else await this.onEvent(s, out.event);
    }
    this.requestSignature(s);
    if (s.stateKind === "terminated" && this.sessions.get(s.peer) === s) this.sessions.delete(s.peer);
    this.sweepAdmissions();
    this.arm();
    await this.outbound;
  }

  /** Our identity when it signs synchronously (what the offline layer needs). */
  private get syncIdentity(): SigningIdentity | undefined {
    const id = this.o.identity;
    return id && id.async !== true ? id : undefined;
  }

  /**
   * An asynchronous identity signs outside the core: take its request, sign, feed the
   * signature back and drain what the negotiation produced next. A key that refuses to
   * sign fails the negotiation (signatureFailed); a signature that arrives after the
   * session ended is ignored by the core.
   */
  private requestSignature(s: ESession): void {
    const id = this.o.identity;
    if (id?.async !== true) return;
    const req = s.takeSignRequest();
    if (!req) return;
    id.sign(req.data)
      .then(
        (sig) => s.provideSignature(req.id, sig),
        () => s.signatureFailed(req.id),
      )
      .then(() => (this.closed ? undefined : this.pump(s)))
      .catch((e: unknown) => this.internalError("signing", s.peer, undefined, e));
  }

  private queueSend(stanza: Element): void {
    this.outbound = this.outbound.then(() => this.o.connection.send(stanza)).catch(() => undefined);
  }

  private async onEvent(s: ESession, e: ESessionEvent): Promise<void> {
    const peer = s.peer;
    switch (e.type) {
      case "progress":
        this.emit({ type: "progress", peer, step: e.step });
        return;
      case "established": {
        this.logging.set(s, e.options.logging);
        const account = bareJid(this.jid);
        const sasState = await this.o.store.getSasState(account, bareJid(peer));
        if (e.newRetainedSecret) await this.retain(account, peer, e.newRetainedSecret, e.replaces);
        const info: Established = {
          peer,
          thread: s.thread,
          ...(e.sas !== undefined ? { sas: e.sas } : {}),
          options: e.options,
          initPubkey: e.initPubkey,
          respPubkey: e.respPubkey,
          ...(e.peerKey ? { peerKey: e.peerKey } : {}),
          retainedSecretMatched: e.retainedSecretMatched,
          sasConfirmedBefore: sasState.confirmed,
          ...(e.offline ? { offline: e.offline } : {}),
        };
        this.emit({ type: "established", ...info });
        const verdict = this.o.trust ? await this.judge(peer, e.peerKey) : undefined;
        if (verdict) {
          if (verdict.fingerprint !== undefined) this.peerKeys.set(peer, verdict.fingerprint);
          else this.peerKeys.delete(peer);
          this.emit({ type: "trust", peer, verdict });
          for (const alert of verdict.alerts) if (alert.kind !== "sas-never-confirmed") this.emit({ type: "trust-alert", peer, alert });
        }
        const sasAlert = verdict ? verdict.alerts.some((a) => a.kind === "sas-never-confirmed") : !sasState.confirmed;
        if (sasAlert && e.sas !== undefined) this.emit({ type: "alert", peer, alert: "sas-never-confirmed" });
        if (e.options.disclosure !== "never") this.emit({ type: "alert", peer, alert: "disclosure" });
        if (e.options.messages === 4 && !e.retainedSecretMatched && (this.heldSecrets.get(s) ?? 0) > 0)
          this.emit({ type: "alert", peer, alert: "retained-secret-mismatch" });
        if (verdict && (verdict.trust === "untrusted" || verdict.trust === "revoked")) {
          // XEP-0116 4.4.2: only a key she "can confirm (or has previously confirmed)".
          const err = new ESessionError("identity-mismatch", `the peer's key is ${verdict.trust}`, ["identity"]);
          // Ended before anyone hears of it: a listener that looks at the session on
          // "failed" must not find it active.
          s.terminate();
          this.emit({ type: "failed", peer, error: err });
          this.waiters.get(s)?.reject(err);
          this.waiters.delete(s);
          this.abandonDevice(peer, "failed");
          return;
        }
        this.waiters.get(s)?.resolve(info);
        this.waiters.delete(s);
        if (this.dev && s.offlineRole === undefined) {
          this.dev.registry.established(peer);
          this.drainRegistry();
          await this.flushDevice(peer);
        }
        return;
      }
      case "stanza": {
        if (this.dev && e.stanza.name === "message" && claimsCarbon(e.stanza)) {
          this.onSessionCarbon(peer, e.stanza);
          return;
        }
        const body = e.stanza.name === "message" ? (e.stanza.getChildText("body") ?? undefined) : undefined;
        if (e.stanza.name === "message") this.emit({ type: "message", peer, body, stanza: e.stanza, unauthenticated: e.unauthenticated });
        else this.emit({ type: "stanza", peer, stanza: e.stanza, unauthenticated: e.unauthenticated });
        return;
      }
      case "rekeyed":
        this.emit({ type: "rekeyed", peer, by: e.by });
        return;
      case "terminated":
        this.emit({ type: "terminated", peer, by: e.by, acknowledged: e.acknowledged });
        this.waiters.get(s)?.reject(new ESessionError("unexpected-request", "session terminated before it was established"));
        this.waiters.delete(s);
        this.abandonDevice(peer, "failed");
        return;
      case "failed":
        this.emit({ type: "failed", peer, error: e.error });
        this.waiters.get(s)?.reject(e.error);
        this.waiters.delete(s);
        this.abandonDevice(peer, "failed");
        return;
      default: {
        const never: never = e;
        return never;
      }
    }
  }

  /** Records the peer's key (or its absence) and evaluates trust (XEP-0116 7.3-7.4). */
  private async judge(peer: FullJid, key: PeerKey | undefined): Promise<TrustVerdict | undefined> {
    const trust = this.o.trust;
    if (!trust) return undefined;
    let publicKey: Uint8Array | undefined;
    if (key) {
      try {
        publicKey = spkiFromKeyValue(parseKeyValue(key.keyValue));
      } catch {
        publicKey = undefined;
      }
    }
    return trust.observe({ account: bareJid(this.jid), jid: bareJid(peer), publicKey, now: this.clock.now() });
  }

  /** Stores the new retained secret, destroying the SRS it replaces (XEP-0217). */
  private async retain(account: Jid, device: FullJid, secret: Uint8Array, replaces: string | undefined): Promise<void> {
    const peer = bareJid(device);
    try {
      const kept = await this.o.store.replace({ account, peer, ...(replaces ? { oldSecretId: replaces } : {}), secret, now: this.clock.now(), verifiedChain: false });
      this.noteRetained(device, kept.id);
    } catch (err) {
      // Only a concurrent replacement of the same SRS is recoverable: keep the newest
      // secret as a fresh chain. Any other store failure propagates.
      if (!(err instanceof StoreError && err.condition === "not-found")) throw err;
      const kept = await this.o.store.replace({ account, peer, secret, now: this.clock.now(), verifiedChain: false });
      this.noteRetained(device, kept.id);
    } finally {
      secret.fill(0);
    }
  }

  private noteRetained(device: FullJid, id: string): void {
    this.retainedIdOf.delete(device);
    this.retainedIdOf.set(device, id);
    // Bounded (a gateway sees many devices): the oldest go; confirmSas then falls back to
    // the account's latest secret, as before.
    if (this.retainedIdOf.size > 10_000) this.retainedIdOf.delete(this.retainedIdOf.keys().next().value as string);
  }

  private arm(): void {
    if (this.timer !== undefined) this.timers.clear(this.timer);
    this.timer = undefined;
    let next: number | undefined;
    const deadlines = [...this.sessions.values()].map((s) => s.nextDeadline());
    if (this.dev) deadlines.push(this.dev.registry.nextDeadline(), this.dev.tracker.nextDeadline());
    for (const d of deadlines) if (d !== undefined && (next === undefined || d < next)) next = d;
    if (next === undefined || this.closed) return;
    this.timer = this.timers.set(() => {
      this.timer = undefined;
      this.inbound = this.inbound.then(() => this.tick()).catch(() => undefined);
    }, next - this.clock.now());
  }

  private async tick(): Promise<void> {
    const now = this.clock.now();
    for (const s of [...this.sessions.values()]) {
      s.onTimer(now);
      await this.pump(s);
    }
    if (this.dev) {
      this.dev.registry.onTimer(now);
      this.drainRegistry();
      for (const due of this.dev.tracker.onTimer(now)) this.giveUpDevice(due.device, due.copies, "timeout");
    }
    this.arm();
  }

  private emit(e: ClientEvent): void {
    for (const l of this.listeners) l(e);
  }

  /** Reports a failure inside the client (see the "internal-error" event); never throws. */
  private internalError(stage: "inbound" | "signing", peer: string | undefined, id: string | undefined, e: unknown): void {
    const error = e instanceof Error ? e : new Error(String(e));
    try {
      this.emit({ type: "internal-error", stage, peer, id, error });
    } catch {
      // A listener that throws on this event too: nothing more to tell.
    }
  }
}

function isESessionRequest(stanza: Element): boolean {
  const c = carriedForm(stanza);
  return (
    c !== undefined &&
    c.kind === "feature" &&
    c.form.type === "form" &&
    value(c.form, "FORM_TYPE") === NS.ssn &&
    // 4-message requests commit with 'dhhashes'; 3-message ones carry 'dhkeys' (XEP-0116 4.2).
    c.form.fields.some((f) => f.var === "dhhashes" || f.var === "dhkeys")
  );
}

/** One published offline option set and the device ('match_resource') it belongs to. */
interface OfflineSet {
  readonly itemId: string;
  readonly options: ParsedOfflineOptions;
  /** undefined: an account-wide set (published the old way, or by a client without per-device sets). */
  readonly resource: string | undefined;
}

/** The resourcepart of a full JID ("" for a bare JID). */
function resourceOf(j: string): string {
  const i = j.indexOf("/");
  return i < 0 ? "" : j.slice(i + 1);
}

function safeFullJid(s: string): FullJid | undefined {
  try {
    return parseFullJid(s);
  } catch {
    return undefined;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
