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
import type { KeyVerifier, PeerKey, PubkeyMethod, SigningIdentity } from "../esession/identity.js";
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
import { el, type Element, NS } from "../xml/index.js";

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
  | { readonly type: "unprotected"; readonly peer: string; readonly stanza: Element };

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
  readonly identity?: SigningIdentity;
  /** Verifies peers' keys; `accept` applies the trust policy (default: accept). */
  readonly verifier?: KeyVerifier & { accept?(key: PeerKey): boolean };
  /**
   * Trust decisions and the XEP-0116 key alerts. Every session's peer key (or its absence)
   * is recorded; a session whose key is untrusted (changed, shared) or revoked is ended.
   */
  readonly trust?: TrustManager;
}

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

  constructor(private readonly o: SecureClientOptions) {
    this.crypto = o.crypto ?? nodeCrypto;
    this.random = o.random ?? systemRandom;
    this.clock = o.clock ?? systemClock;
    this.timers = o.timers ?? systemTimers;
    this.policy = { ...DEFAULT_POLICY, ...o.policy };
    this.disco = new DiscoResponder({ jid: o.connection.jid, crypto: this.crypto, capsNode: CAPS_NODE });
    this.unsubscribe = o.connection.onStanza((s) => {
      this.inbound = this.inbound.then(() => this.onInbound(s)).catch(() => undefined);
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
    s.send(stanza);
    await this.pump(s);
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
    if (this.o.trust) {
      const latestRs = (await this.o.store.list(account, bareJid(parseFullJid(peer))))[0];
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
    const latest = (await this.o.store.list(account, bareJid(parseFullJid(peer))))[0];
    if (latest) await this.o.store.markChainVerified(latest.id);
  }

  /** Terminates every session (XEP-0217: "MUST terminate all open ESessions before they go offline"). */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const peer of [...this.sessions.keys()]) {
      const s = this.sessions.get(peer);
      if (s?.isActive) await Promise.race([this.terminate(peer), delay(2000)]);
    }
    this.closed = true;
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
    const thread = stanza.getChildText("thread") ?? undefined;
    const s = this.sessions.get(from);
    const sessionStanza = thread === undefined && stanza.name !== "message" && stanza.getChild("c", NS.c) !== undefined;
    if (s && (thread === s.thread || sessionStanza)) {
      s.handleStanza(stanza);
      await this.pump(s);
      return;
    }
    if (stanza.name === "message" && isESessionRequest(stanza)) {
      await this.answer(stanza, from, thread);
      return;
    }
    if (stanza.name === "iq" && this.answerDisco(stanza)) return;
    if (stanza.getChild("c", NS.c) && stanza.attrs.type !== "error") {
      const peer = safeFullJid(from);
      if (peer) this.emit({ type: "failed", peer, error: new ESessionError("unexpected-request", "encrypted stanza for an unknown session") });
      return;
    }
    this.emit({ type: "unprotected", peer: from, stanza });
    // RFC 6120 8.4: an iq get/set must be answered. Unprotected requests are not ours to
    // serve unless the application said so.
    if (stanza.name === "iq" && (stanza.attrs.type === "get" || stanza.attrs.type === "set") && !this.o.handlesUnprotectedIq) {
      this.queueSend(errorReply(stanza, "service-unavailable", "cancel", { to: from }));
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
    const old = this.sessions.get(peer);
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
    this.heldSecrets.set(s, retained.length);
    await this.pump(s);
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
    this.queueSend(el("presence", {}, this.disco.caps()));
    await this.outbound;
  }

  /** Drains a core: sends its stanzas in order, persists, maps events, re-arms the timer. */
  private async pump(s: ESession): Promise<void> {
    for (const out of s.drain()) {
      if (out.kind === "send") this.queueSend(out.stanza);
      else await this.onEvent(s, out.event);
    }
    if (s.stateKind === "terminated" && this.sessions.get(s.peer) === s) this.sessions.delete(s.peer);
    this.arm();
    await this.outbound;
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
        const account = bareJid(this.jid);
        const sasState = await this.o.store.getSasState(account, bareJid(peer));
        if (e.newRetainedSecret) await this.retain(account, bareJid(peer), e.newRetainedSecret, e.replaces);
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
          this.emit({ type: "failed", peer, error: err });
          this.waiters.get(s)?.reject(err);
          this.waiters.delete(s);
          s.terminate();
          return;
        }
        this.waiters.get(s)?.resolve(info);
        this.waiters.delete(s);
        return;
      }
      case "stanza": {
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
        return;
      case "failed":
        this.emit({ type: "failed", peer, error: e.error });
        this.waiters.get(s)?.reject(e.error);
        this.waiters.delete(s);
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
  private async retain(account: Jid, peer: Jid, secret: Uint8Array, replaces: string | undefined): Promise<void> {
    try {
      await this.o.store.replace({ account, peer, ...(replaces ? { oldSecretId: replaces } : {}), secret, now: this.clock.now(), verifiedChain: false });
    } catch (err) {
      // Only a concurrent replacement of the same SRS is recoverable: keep the newest
      // secret as a fresh chain. Any other store failure propagates.
      if (!(err instanceof StoreError && err.condition === "not-found")) throw err;
      await this.o.store.replace({ account, peer, secret, now: this.clock.now(), verifiedChain: false });
    } finally {
      secret.fill(0);
    }
  }

  private arm(): void {
    if (this.timer !== undefined) this.timers.clear(this.timer);
    this.timer = undefined;
    let next: number | undefined;
    for (const s of this.sessions.values()) {
      const d = s.nextDeadline();
      if (d !== undefined && (next === undefined || d < next)) next = d;
    }
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
    this.arm();
  }

  private emit(e: ClientEvent): void {
    for (const l of this.listeners) l(e);
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
