/**
 * XTLS wiring: Jingle negotiation with the XTLS security precondition, the in-band
 * bytestream it negotiates, and TLS over it, on one StanzaConnection. Owns timers,
 * trust-store calls and user prompts; the protocol decisions are the cores' (Jingle
 * session, security rules, IBB session).
 *
 * Spec: draft-meyer-xmpp-e2e-encryption-02
 * - section 3: session-initiate with <security/> (our fingerprint, methods x509 and
 *   srp); the responder's rules 1-5 and the initiator's rules 1-2 (src/jingle/security.ts);
 *   the initiator's security-info with its choice; the transport (XEP-0261 v1.0 section 2:
 *   "the initiator now MUST also send the <open/> element, with the same 'block-size' and
 *   'sid'"); responder = TLS server with CertificateRequest, initiator = TLS client; the
 *   application gets the transport "only after the TLS handshake has finished
 *   successfully";
 * - section 4: closing: the application closes its stream, then the Jingle session is
 *   terminated (tunnel.close(): TLS close_notify, IBB <close/>, session-terminate with
 *   <success/>);
 * - section 5: leap of faith only through the `leapOfFaith` callback (default: refuse);
 *   after a successful leap of faith or SRP session the peer's certificate is pinned;
 * - section 6: a certificate that does not verify or an invalid TLS message: "MUST
 *   terminate the Jingle session immediately" with <security-error/>.
 * XEP-0166 v1.1.2 section 9: a Jingle request for an unknown sid gets <unknown-session/>.
 *
 * The srp method plugs in through {@link XtlsOptions.srp} (see ./methods.ts).
 */
import type { Duplex } from "node:stream";
import type { Socket } from "node:net";
import { TLSSocket } from "node:tls";
import { bareJid, type Clock, type FullJid, type Random } from "../core/types.js";
import { toHex } from "../core/bytes.js";
import { systemClock, systemRandom } from "../crypto/node.js";
import { attrOf, type StanzaConnection } from "../adapters/connection.js";
import { el, type Element } from "../xml/index.js";
import { IbbEndpoint, type IbbStream } from "../ibb/duplex.js";
import { Socks5Listener, dstAddr, socks5Connect } from "../socks5/index.js";
import {
  NS_IBB_TRANSPORT,
  jingleChild,
  jingleErrorReply,
  parseJingle,
  type Content,
  type Description,
  type Fingerprint,
  type Jingle,
  type Reason,
  type S5bCandidate,
  type Transport,
  type XtlsSecurity,
} from "../jingle/codec.js";
import { JingleSession, peekInitiate, type JingleEvent } from "../jingle/session.js";
import { canonicalAlgo, initiatorDecision, responderDecision, type XtlsMethod } from "../jingle/security.js";
import type { XtlsIdentity } from "./cert.js";
import { XtlsError, type XtlsCondition } from "./errors.js";
import type { SrpTlsOverDuplex } from "./methods.js";
import { x509OverDuplex, type TlsVersion } from "./tls.js";
import type { XtlsTrustStore } from "./trust.js";
import type { SupportLookup } from "./support.js";

export interface XtlsOptions {
  readonly connection: StanzaConnection;
  readonly identity: XtlsIdentity;
  readonly trust: XtlsTrustStore;
  /** The TLS-SRP implementation (src/tls-srp's srpTlsOverDuplex) once available. */
  readonly srp?: SrpTlsOverDuplex;
  /** A password exchanged out of band with `peer`, for TLS-SRP; undefined if none. */
  readonly password?: (peer: FullJid) => Promise<string | undefined> | string | undefined;
  /** May we trust this unverified certificate of `peer` (and pin it)? Default: no. */
  readonly leapOfFaith?: (peer: FullJid, fp: Fingerprint) => Promise<boolean> | boolean;
  /** Responder: accept a session (an XML stream or a file offer) from `peer`? Default: decline. */
  readonly acceptSession?: (offer: { peer: FullJid; sid: string; description: Description }) => Promise<boolean> | boolean;
  /**
   * Draft section 7: how to learn whether a peer supports XTLS before initiating (its
   * caps, then disco#info on a miss; ./support.ts XtlsDiscovery). Without it, connect()
   * initiates directly and learns from the session-accept.
   */
  readonly discovery?: { lookup(peer: FullJid): Promise<SupportLookup> };
  /**
   * The "require XTLS" policy (draft section 8.3): a peer whose caps/disco lack the XTLS
   * feature is refused before anything is sent, and nothing ever falls back to clear
   * (`allowPlain` is ignored). When false (default), a missing feature is a
   * `downgrade-warning` notice and the session is still attempted with XTLS.
   */
  readonly requireXtls?: boolean;
  /** false behaves as an entity without XTLS (draft responder rule 1). Default true. */
  readonly supportsXtls?: boolean;
  /** Address our XEP-0260 direct candidate listens on. Default 127.0.0.1. */
  readonly s5bHost?: string;
  /** Offer a direct candidate (default true). */
  readonly s5bDirect?: boolean;
  /** A SOCKS5 proxy (XEP-0065 streamhost, e.g. Prosody's proxy65) to offer as a candidate. */
  readonly s5bProxy?: { readonly jid: string; readonly host: string; readonly port: number };
  /**
   * Responder: transports acceptable in a transport-replace (XEP-0166 section 7.2.15).
   * Default ["ibb"]; [] rejects every replacement (transport-reject).
   */
  readonly fallbackTransports?: readonly "ibb"[];
  /** IBB block-size to offer (initiator) or accept at most (responder). Default 4096. */
  readonly blockSize?: number;
  readonly minTlsVersion?: TlsVersion;
  readonly maxTlsVersion?: TlsVersion;
  /** An IBB endpoint to share (one per connection); created when absent. */
  readonly ibb?: IbbEndpoint;
  readonly random?: Random;
  readonly clock?: Clock;
  readonly ackTimeoutMs?: number;
  readonly acceptTimeoutMs?: number;
  readonly handshakeTimeoutMs?: number;
}

export interface ConnectOptions {
  /**
   * Initiator rule 1: continue unencrypted if the responder has no XTLS. Default false;
   * ignored for XML streams ("it makes no sense to use end-to-end XML streams without
   * encryption").
   */
  readonly allowPlain?: boolean;
  /** The Jingle application: an end-to-end XML stream (default) or a file offer (XEP-0234). */
  readonly application?: Description;
  /** In-band bytestreams (default) or SOCKS5 bytestreams with direct candidates (XEP-0260). */
  readonly transport?: "ibb" | "s5b";
  /**
   * SOCKS5 only: when no candidate works or the proxy fails, replace the transport with
   * IBB (XEP-0260 section 2.8) instead of ending with <connectivity-error/>. Default true.
   */
  readonly fallbackToIbb?: boolean;
}

export interface XtlsEnd {
  readonly by: "local" | "remote";
  readonly reason: Reason | undefined;
  readonly error?: XtlsError;
}

export type XtlsEvent =
  | { readonly type: "tunnel"; readonly tunnel: XtlsTunnel }
  /** An incoming session failed before it became a tunnel. */
  | { readonly type: "failed"; readonly peer: FullJid; readonly sid: string; readonly error: XtlsError };

/**
 * Things the user should know that do not end anything (see {@link XtlsClient.onNotice}).
 * Kept apart from {@link XtlsEvent} so that existing event handlers stay exhaustive.
 */
export type XtlsNotice =
  /** SOCKS5 failed and the session moves to in-band bytestreams (XEP-0260 section 2.8). */
  | { readonly type: "transport-fallback"; readonly peer: FullJid; readonly sid: string; readonly from: "s5b"; readonly to: "ibb"; readonly why: string }
  /**
   * The peer's caps/disco#info lack the XTLS feature: either it cannot do XTLS or someone
   * stripped the feature (draft section 8.3 downgrade). `refused`: the "require XTLS"
   * policy stopped the session before anything was sent.
   */
  | { readonly type: "downgrade-warning"; readonly peer: FullJid; readonly warning: string; readonly source: "caps-cache" | "disco"; readonly refused: boolean };

/** An open XTLS tunnel: `socket` carries application data, encrypted on the wire. */
export class XtlsTunnel {
  private closing: Promise<void> | undefined;
  constructor(
    readonly peer: FullJid,
    readonly sid: string,
    readonly role: "initiator" | "responder",
    readonly method: XtlsMethod | "none",
    /** The negotiated application (XML stream or file offer). */
    readonly description: Description,
    /** Plaintext side: what you write is sent through TLS, what you read was decrypted. */
    readonly socket: Duplex,
    readonly peerFingerprint: Fingerprint | undefined,
    readonly leapOfFaith: boolean,
    readonly protocol: string | undefined,
    /**
     * Resolves when the session ended (never rejects). When the peer ends it cleanly while
     * the reader has not yet taken everything, it resolves once the socket emitted 'end'
     * (or closed): a truncation found while draining ends it with security-error instead.
     */
    readonly ended: Promise<XtlsEnd>,
    private readonly closer: () => Promise<void>,
  ) {}

  /** TLS close_notify, IBB <close/>, then session-terminate with <success/>. */
  close(): Promise<void> {
    this.closing ??= this.closer();
    return this.closing;
  }
}

interface Ctx {
  readonly jingle: JingleSession;
  timer: NodeJS.Timeout | undefined;
  readonly waiters: Array<(e: JingleEvent) => boolean>;
  readonly backlog: JingleEvent[];
  securityInfoMethod: XtlsMethod | undefined;
  description: Description;
  ownCandidate: OwnCandidate | undefined;
  /** The IBB sid we expect an <open/> for (responder), to cancel if the session ends. */
  expectedIbb: string | undefined;
  /** The transport under TLS: an IBB stream or a SOCKS5 TCP socket. */
  ibb: Duplex | undefined;
  socket: Duplex | undefined;
  endInfo: XtlsEnd | undefined;
  /** The peer ended the session cleanly; the reader is still taking buffered data. */
  draining: XtlsEnd | undefined;
  readonly endWaiters: Array<(e: XtlsEnd) => void>;
}

const CONTENT_NAME = "xmlstream";

/** XEP-0260 section 2.2 priority of a direct candidate: type preference 126 << 16 | local 65535. */
const DIRECT_PRIORITY = 126 * 65536 + 65535;

/** XEP-0260 section 2.2 priority of a proxy candidate: type preference 10. */
const PROXY_PRIORITY = 10 * 65536 + 65535;

interface OwnCandidate {
  readonly direct?: { readonly listener: Socks5Listener; readonly cid: string; readonly incoming: Promise<Socket> };
  readonly proxy?: { readonly cid: string; readonly jid: string; readonly host: string; readonly port: number };
  readonly dstaddr: string;
}

/**
 * Whether a stream's readable side has ended (push(null) happened), even if its consumer
 * has not read up to the 'end' event yet. `readableEnded` is only true after 'end' was
 * emitted, so the (long-stable) readable state's `ended` flag is consulted as well.
 */
function readableEnded(s: Duplex): boolean {
  const state = (s as Duplex & { readonly _readableState?: { readonly ended?: boolean } })._readableState;
  return s.readableEnded || state?.ended === true;
}

/** Whether our side asked to end the bytestream before it closed (see IbbStream). */
function endedLocallyFirst(s: Duplex): boolean {
  return (s as Duplex & { readonly endedLocallyFirst?: boolean }).endedLocallyFirst === true;
}

function srpUnavailable(): XtlsError {
  return new XtlsError("srp-unavailable", "no TLS-SRP implementation was given (XtlsOptions.srp: pass srpTlsOverDuplex from src/tls-srp); use x509 or pass it");
}

export class XtlsClient {
  readonly ibb: IbbEndpoint;
  private readonly sessions = new Map<string, Ctx>();
  private readonly handlers: Array<(e: XtlsEvent) => void> = [];
  private readonly noticeHandlers: Array<(n: XtlsNotice) => void> = [];
  private readonly random: Random;
  private readonly clock: Clock;
  private readonly unsubscribe: () => void;
  private readonly ownsIbb: boolean;

  constructor(private readonly o: XtlsOptions) {
    this.random = o.random ?? systemRandom;
    this.clock = o.clock ?? systemClock;
    this.ownsIbb = o.ibb === undefined;
    this.ibb = o.ibb ?? new IbbEndpoint(o.connection, { random: this.random, clock: this.clock, maxBlockSize: o.blockSize ?? 8192 });
    this.unsubscribe = o.connection.onStanza((s) => this.dispatch(s));
  }

  get jid(): FullJid {
    return this.o.connection.jid;
  }

  on(handler: (e: XtlsEvent) => void): () => void {
    this.handlers.push(handler);
    return () => {
      const i = this.handlers.indexOf(handler);
      if (i !== -1) this.handlers.splice(i, 1);
    };
  }

  /** Subscribes to notices (transport fallback, downgrade warnings). */
  onNotice(handler: (n: XtlsNotice) => void): () => void {
    this.noticeHandlers.push(handler);
    return () => {
      const i = this.noticeHandlers.indexOf(handler);
      if (i !== -1) this.noticeHandlers.splice(i, 1);
    };
  }

  private notice(n: XtlsNotice): void {
    for (const h of [...this.noticeHandlers]) h(n);
  }

  /** Stops routing; live tunnels are destroyed. */
  detach(): void {
    this.unsubscribe();
    for (const c of this.sessions.values()) {
      c.socket?.destroy();
      c.ibb?.destroy();
      if (c.timer !== undefined) clearTimeout(c.timer);
    }
    this.sessions.clear();
    if (this.ownsIbb) this.ibb.detach();
  }

  /** Initiates an XTLS tunnel to `peer` (end-to-end XML stream application). */
  async connect(peer: FullJid, opts: ConnectOptions = {}): Promise<XtlsTunnel> {
    if (this.o.discovery !== undefined) {
      // Draft section 7 / 8.3: check support first; a missing feature may be a downgrade.
      const found = await this.o.discovery.lookup(peer);
      if (found.support.kind === "unsupported") {
        const refused = this.o.requireXtls === true;
        this.notice({ type: "downgrade-warning", peer, warning: found.support.warning, source: found.source, refused });
        if (refused) throw new XtlsError("no-xtls-support", `${peer} does not advertise XTLS; the require-XTLS policy refused to continue (nothing was sent)`);
      }
    }
    const sid = this.newSid();
    const ibbSid = this.newSid();
    const ctx = this.newCtx(peer, sid, "initiator");
    const blockSize = this.o.blockSize ?? 4096;
    const description: Description = opts.application ?? { kind: "xmlstream" };
    ctx.description = description;
    const name = description.kind === "file" ? "a-file-offer" : CONTENT_NAME;
    let offered: Transport = { kind: "ibb", ns: NS_IBB_TRANSPORT, sid: ibbSid, blockSize };
    let ours: OwnCandidate | undefined;
    if (opts.transport === "s5b") {
      // XEP-0260 section 2.2: our candidates; the responder connects to them with
      // DST.ADDR = SHA1(SID + initiator JID + responder JID) (also the proxy's 'dstaddr').
      const dstaddr = dstAddr(ibbSid, this.jid, peer);
      const candidates: S5bCandidate[] = [];
      let direct: OwnCandidate["direct"];
      if (this.o.s5bDirect !== false) {
        const listener = await Socks5Listener.listen(this.o.s5bHost ?? "127.0.0.1");
        const cid = this.newSid();
        const incoming = listener.expect(dstaddr, this.o.acceptTimeoutMs ?? 120_000);
        incoming.catch(() => undefined);
        direct = { listener, cid, incoming };
        const { host, port } = listener.address;
        candidates.push({ cid, host, jid: this.jid, port, priority: DIRECT_PRIORITY, type: "direct" });
      }
      const px = this.o.s5bProxy;
      const proxy = px === undefined ? undefined : { cid: this.newSid(), ...px };
      if (proxy !== undefined) candidates.push({ cid: proxy.cid, host: proxy.host, jid: proxy.jid, port: proxy.port, priority: PROXY_PRIORITY, type: "proxy" });
      ours = { ...(direct === undefined ? {} : { direct }), ...(proxy === undefined ? {} : { proxy }), dstaddr };
      ctx.ownCandidate = ours;
      offered = { kind: "s5b", sid: ibbSid, mode: "tcp", ...(proxy === undefined ? {} : { dstaddr }), candidates };
    }
    const content: Content = {
      creator: "initiator",
      name,
      // XEP-0234 section 6: a file offer is sent by the initiator only.
      ...(description.kind === "file" ? { senders: "initiator" as const } : {}),
      description,
      transport: offered,
      // Section 8.1: x509 and srp are both offered; srp fails typed if not plugged in.
      security: { kind: "xtls", fingerprint: this.o.identity.fingerprint, methods: ["x509", "srp"] },
    };
    ctx.jingle.initiate([content]);
    this.pump(ctx);
    const accepted = await this.waitFor(ctx, "accepted");
    const acc = accepted.jingle.contents.find((c) => c.name === name);
    const t = acc?.transport;
    const transportOk = t?.kind === "ibb" ? offered.kind === "ibb" && t.blockSize <= blockSize : t?.kind === "s5b" && offered.kind === "s5b";
    if (acc === undefined || t === undefined || !transportOk || (t.kind !== "ibb" && t.kind !== "s5b") || t.sid !== ibbSid) {
      throw this.fail(ctx, new XtlsError("unsupported", "the session-accept does not match the offered transport", "failed-transport"));
    }
    const answer = acc.security?.kind === "xtls" ? acc.security : undefined;
    const peerBare = bareJid(peer);
    const canVerifyPeer = answer?.fingerprint !== undefined && (await this.o.trust.isPinned(peerBare, answer.fingerprint));
    const password = !canVerifyPeer && answer?.methods.includes("srp") === true ? await this.o.password?.(peer) : undefined;
    const leap =
      // A fingerprint in an unknown or broken algorithm (md5) could never match the
      // certificate: the user is not asked to take a leap of faith on it.
      !canVerifyPeer && password === undefined && answer?.fingerprint !== undefined && canonicalAlgo(answer.fingerprint.algo) !== undefined
        ? ((await this.o.leapOfFaith?.(peer, answer.fingerprint)) ?? false)
        : false;
    const decision = initiatorDecision(answer, {
      canVerifyPeer,
      srpAvailable: password !== undefined,
      leapOfFaith: leap,
      // Under "require XTLS" nothing falls back to clear, whatever the application asked.
      allowPlain: opts.allowPlain === true && description.kind !== "xmlstream" && this.o.requireXtls !== true,
    });
    if (decision.kind === "terminate") {
      throw this.fail(ctx, new XtlsError(decision.downgrade ? "no-xtls-support" : "peer-unverified", decision.why));
    }
    const establish = (): Promise<Duplex> =>
      t.kind === "ibb"
        ? this.openIbb(ctx, () => this.ibb.open(peer, { sid: ibbSid, blockSize: t.blockSize, exactBlockSize: true }))
        : this.s5bOrFallback(ctx, "initiator", t.sid, t.candidates, ours, { creator: "initiator", name }, opts.fallbackToIbb !== false);
    if (decision.kind === "plain") {
      const raw = await establish();
      return this.makeTunnel(ctx, "initiator", "none", raw, undefined, false, undefined);
    }
    if (decision.method === "srp" && this.o.srp === undefined) throw this.fail(ctx, srpUnavailable());
    // Section 3: "sends an additional security-info message to the responder to signal its choice".
    ctx.jingle.securityInfo([{ creator: "initiator", name, security: { kind: "xtls", methods: [decision.method] } }]);
    this.pump(ctx);
    const raw = await establish();
    return this.secure(ctx, "initiator", decision.method, raw, answer, password, decision.leapOfFaith);
  }

  // ---- responder ----

  private async onIncoming(ctx: Ctx, j: Jingle): Promise<void> {
    const peer = ctx.jingle.peer;
    const offerC = j.contents[0];
    const t = offerC?.transport;
    const description = offerC?.description;
    if (offerC === undefined || j.contents.length !== 1 || description === undefined || description.kind === "unknown") {
      throw this.fail(ctx, new XtlsError("unsupported", "only one XML stream or file offer content is supported"));
    }
    ctx.description = description;
    if (t?.kind !== "ibb" && t?.kind !== "s5b") throw this.fail(ctx, new XtlsError("unsupported", "only in-band and SOCKS5 bytestreams are supported", "unsupported-transports"));
    const offer: XtlsSecurity | undefined = offerC.security?.kind === "xtls" ? offerC.security : undefined;
    const supportsXtls = this.o.supportsXtls !== false;
    if (offer === undefined && supportsXtls) {
      // Our application (end-to-end XML streams) is never run unencrypted.
      throw this.fail(ctx, new XtlsError("no-xtls-support", "the initiator did not offer XTLS"));
    }
    if ((await this.o.acceptSession?.({ peer, sid: ctx.jingle.sid, description })) !== true) {
      throw this.fail(ctx, new XtlsError("declined", "session declined"));
    }
    const blockSize = t.kind === "ibb" ? Math.min(t.blockSize, this.o.blockSize ?? 8192) : 0;
    // XEP-0260: we offer no candidates of our own; we connect to the initiator's.
    const transport: Transport = t.kind === "ibb" ? { ...t, blockSize } : { kind: "s5b", sid: t.sid, mode: "tcp", candidates: [] };
    const establish = (): Promise<Duplex> => {
      if (t.kind === "s5b") return this.s5bOrFallback(ctx, "responder", t.sid, t.candidates, undefined, { creator: offerC.creator, name: offerC.name }, true);
      ctx.expectedIbb = t.sid;
      const pending = this.ibb.expect(peer, t.sid, blockSize);
      return Promise.resolve(pending);
    };
    if (!supportsXtls || offer === undefined) {
      const pendingIbb = t.kind === "ibb" ? establish() : undefined;
      ctx.jingle.accept([{ creator: offerC.creator, name: offerC.name, ...(offerC.senders === undefined ? {} : { senders: offerC.senders }), description, transport }]);
      this.pump(ctx);
      const raw = pendingIbb !== undefined ? await this.openIbb(ctx, () => pendingIbb as Promise<IbbStream>) : await establish();
      this.emit({ type: "tunnel", tunnel: this.makeTunnel(ctx, "responder", "none", raw, undefined, false, undefined) });
      return;
    }
    const peerBare = bareJid(peer);
    const canVerifyPeer = offer.fingerprint !== undefined && (await this.o.trust.isPinned(peerBare, offer.fingerprint));
    const password = !canVerifyPeer && offer.methods.includes("srp") ? await this.o.password?.(peer) : undefined;
    const leap =
      !canVerifyPeer && password === undefined && offer.fingerprint !== undefined && offer.methods.includes("x509") && canonicalAlgo(offer.fingerprint.algo) !== undefined
        ? ((await this.o.leapOfFaith?.(peer, offer.fingerprint)) ?? false)
        : false;
    const decision = responderDecision(offer, {
      supportsXtls,
      ownFingerprint: this.o.identity.fingerprint,
      canVerifyPeer,
      srpAvailable: password !== undefined,
      leapOfFaith: leap,
    });
    if (decision.kind === "terminate") throw this.fail(ctx, new XtlsError("peer-unverified", decision.why));
    if (decision.kind === "accept" && decision.expect === "srp" && this.o.srp === undefined) throw this.fail(ctx, srpUnavailable());
    if (decision.kind === "accept-plain") throw this.fail(ctx, new XtlsError("no-xtls-support", "unreachable"));
    // Register the bytestream before accepting, so the initiator's <open/> finds it.
    const pendingIbb = t.kind === "ibb" ? establish() : undefined;
    ctx.jingle.accept([{ ...offerC, transport, security: decision.security }]);
    this.pump(ctx);
    const ibb = pendingIbb !== undefined ? await this.openIbb(ctx, () => pendingIbb as Promise<IbbStream>) : await establish();
    // The security-info precedes the IBB <open/> from the same sender (in-order delivery).
    const method = ctx.securityInfoMethod ?? decision.expect;
    if (method === "x509" && !canVerifyPeer && !decision.leapOfFaith) {
      ibb.destroy();
      throw this.fail(ctx, new XtlsError("peer-unverified", "the initiator chose x509 but its certificate cannot be verified"));
    }
    const tunnel = await this.secure(ctx, "responder", method, ibb, offer, password, decision.leapOfFaith);
    this.emit({ type: "tunnel", tunnel });
  }

  // ---- shared steps ----

  private async secure(
    ctx: Ctx,
    role: "initiator" | "responder",
    method: XtlsMethod,
    ibb: Duplex,
    peerSecurity: XtlsSecurity | undefined,
    password: string | undefined,
    leapOfFaith: boolean,
  ): Promise<XtlsTunnel> {
    const peer = ctx.jingle.peer;
    try {
      if (method === "srp") {
        const srp = this.o.srp;
        if (srp === undefined) throw srpUnavailable();
        if (password === undefined) throw new XtlsError("peer-unverified", "no password for TLS-SRP");
        // SRP username: the initiator's full JID (the prior implementation's convention).
        const username = role === "initiator" ? this.jid : peer;
        const plain = await srp(ibb, { role: role === "initiator" ? "client" : "server", username, password });
        return this.makeTunnel(ctx, role, "srp", ibb, plain, false, undefined);
      }
      const fp = peerSecurity?.fingerprint;
      if (fp === undefined) throw new XtlsError("peer-unverified", "no fingerprint announced for x509");
      const r = await x509OverDuplex(ibb, {
        role: role === "initiator" ? "client" : "server",
        identity: this.o.identity,
        peerFingerprint: fp,
        ...(this.o.minTlsVersion === undefined ? {} : { minVersion: this.o.minTlsVersion }),
        ...(this.o.maxTlsVersion === undefined ? {} : { maxVersion: this.o.maxTlsVersion }),
        ...(this.o.handshakeTimeoutMs === undefined ? {} : { timeoutMs: this.o.handshakeTimeoutMs }),
      });
      // Section 5: a leap of faith is remembered, so later sessions verify by pinning.
      if (leapOfFaith) await this.o.trust.pin(bareJid(peer), fp);
      return this.makeTunnel(ctx, role, "x509", ibb, r.socket, leapOfFaith, r.protocol, fp);
    } catch (e) {
      ibb.destroy();
      const err = e instanceof XtlsError ? e : new XtlsError("tls-failure", "handshake failed", undefined, { cause: e });
      throw this.fail(ctx, err);
    }
  }

  /**
   * SOCKS5 first, then (XEP-0260 v1.0.3 section 2.8) the in-band fallback: when no
   * candidate worked on either side, or the nominated proxy failed, "the initiator MUST
   * either terminate the Jingle session with a Jingle reason of <connectivity-error/> or
   * replace the transport": the initiator sends transport-replace with an IBB transport
   * (XEP-0261), the responder answers transport-accept (possibly with a smaller
   * block-size) or transport-reject, and the initiator opens the bytestream. TLS then runs
   * over IBB exactly as it would have over SOCKS5 (the tunnel opens only after it).
   */
  private async s5bOrFallback(
    ctx: Ctx,
    role: "initiator" | "responder",
    sid: string,
    theirs: readonly S5bCandidate[],
    ours: OwnCandidate | undefined,
    content: { creator: "initiator" | "responder"; name: string },
    fallback: boolean,
  ): Promise<Duplex> {
    const r = await this.s5bNominate(ctx, role, sid, theirs, ours, content);
    if (r.ok) return r.sock;
    const peer = ctx.jingle.peer;
    if (role === "initiator") {
      if (!fallback) throw this.fail(ctx, new XtlsError("transport-failed", r.why, "connectivity-error"));
      const ibbSid = this.newSid();
      const blockSize = this.o.blockSize ?? 4096;
      this.notice({ type: "transport-fallback", peer, sid: ctx.jingle.sid, from: "s5b", to: "ibb", why: r.why });
      ctx.jingle.transportReplace([{ ...content, transport: { kind: "ibb", ns: NS_IBB_TRANSPORT, sid: ibbSid, blockSize } }]);
      this.pump(ctx);
      const answer = await this.waitForAny(ctx, ["transport-accept", "transport-reject"]);
      const t = answer.contents.find((c) => c.name === content.name)?.transport;
      if (answer.type === "transport-reject" || t?.kind !== "ibb" || t.sid !== ibbSid || t.blockSize > blockSize) {
        throw this.fail(ctx, new XtlsError("transport-failed", `${r.why}; the peer rejected the in-band fallback`, "failed-transport"));
      }
      return this.openIbb(ctx, () => this.ibb.open(peer, { sid: ibbSid, blockSize: t.blockSize, exactBlockSize: true }));
    }
    // Responder: the initiator decides (terminate or transport-replace); wait for it.
    const replace = await this.withTimeout(ctx, this.waitFor(ctx, "transport-replace"), new XtlsError("transport-failed", `${r.why}; no transport-replace followed`, "connectivity-error"));
    const c = replace.contents.find((x) => x.name === content.name) ?? replace.contents[0];
    const t = c?.transport;
    const allowed = this.o.fallbackTransports === undefined || this.o.fallbackTransports.includes("ibb");
    if (c === undefined || t?.kind !== "ibb" || !allowed) {
      // XEP-0166 section 7.2.14: refuse; the initiator then terminates the session.
      ctx.jingle.transportReject(c === undefined ? [] : [c]);
      this.pump(ctx);
      throw this.fail(ctx, new XtlsError("transport-failed", "SOCKS5 failed and the offered fallback is not acceptable", "failed-transport"));
    }
    this.notice({ type: "transport-fallback", peer, sid: ctx.jingle.sid, from: "s5b", to: "ibb", why: r.why });
    const blockSize = Math.min(t.blockSize, this.o.blockSize ?? 8192);
    // Register the bytestream before accepting, so the initiator's <open/> finds it.
    ctx.expectedIbb = t.sid;
    const pending = this.ibb.expect(peer, t.sid, blockSize);
    ctx.jingle.transportAccept([{ creator: c.creator, name: c.name, transport: { ...t, blockSize } }]);
    this.pump(ctx);
    return this.openIbb(ctx, () => pending);
  }

  /**
   * XEP-0260 v1.0.3 sections 2.4-2.6: connect to the peer's candidates (highest priority
   * first), report candidate-used or candidate-error, read the peer's report, and keep the
   * nominated connection: used beats error; of two used, the higher priority; on a tie,
   * the initiator's choice. Both errors, or a nominated proxy that fails (section 2.6,
   * <proxy-error/>), are returned as a failure for {@link s5bOrFallback} to handle.
   */
  private async s5bNominate(
    ctx: Ctx,
    role: "initiator" | "responder",
    sid: string,
    theirs: readonly S5bCandidate[],
    ours: OwnCandidate | undefined,
    content: { creator: "initiator" | "responder"; name: string },
  ): Promise<{ ok: true; sock: Socket } | { ok: false; why: string }> {
    const peer = ctx.jingle.peer;
    const sockets: Socket[] = [];
    const proxyError = (): void => {
      ctx.jingle.transportInfo([{ ...content, transport: { kind: "s5b", sid, candidates: [], proxyError: true } }]);
      this.pump(ctx);
    };
    try {
      let mine: { cid: string; sock: Socket; priority: number; proxy: boolean } | undefined;
      // Direct candidates before proxies (higher priority first, XEP-0260 section 2.2).
      for (const c of [...theirs].sort((a, b) => b.priority - a.priority)) {
        if (c.type !== "direct" && c.type !== "proxy") continue;
        try {
          // DST.ADDR for a candidate the peer offered: SHA1(SID + peer JID + our JID).
          const sock = await socks5Connect(c.host, c.port, dstAddr(sid, peer, this.jid));
          sockets.push(sock);
          mine = { cid: c.cid, sock, priority: c.priority, proxy: c.type === "proxy" };
          break;
        } catch {
          /* next candidate */
        }
      }
      const report: Transport = { kind: "s5b", sid, candidates: [], ...(mine === undefined ? { candidateError: true } : { candidateUsed: mine.cid }) };
      ctx.jingle.transportInfo([{ ...content, transport: report }]);
      this.pump(ctx);
      const info = await this.waitFor(ctx, "transport-info");
      const tr = info.contents.find((c) => c.transport?.kind === "s5b")?.transport;
      const theirUsed = tr?.kind === "s5b" ? tr.candidateUsed : undefined;
      let theirSock: Socket | undefined;
      let theirPriority = 0;
      let theirProxy: OwnCandidate["proxy"];
      if (theirUsed !== undefined) {
        if (ours?.direct !== undefined && theirUsed === ours.direct.cid) {
          theirSock = await ours.direct.incoming;
          sockets.push(theirSock);
          theirPriority = DIRECT_PRIORITY;
        } else if (ours?.proxy !== undefined && theirUsed === ours.proxy.cid) {
          theirProxy = ours.proxy;
          theirPriority = PROXY_PRIORITY;
        } else throw new XtlsError("transport-failed", "candidate-used names no candidate of ours", "connectivity-error");
      }
      if (mine === undefined && theirUsed === undefined) return { ok: false, why: "no SOCKS5 candidate worked" };
      const initiatorsChoiceIsMine = role === "initiator";
      const mineWins =
        mine !== undefined && (theirUsed === undefined || mine.priority > theirPriority || (mine.priority === theirPriority && initiatorsChoiceIsMine));
      if (mineWins && mine !== undefined) {
        for (const s of sockets) if (s !== mine.sock) s.destroy();
        if (mine.proxy) {
          // Section 2.6: the offering party activates the proxy and reports <activated/>
          // or <proxy-error/>; only then may bytes flow.
          const act = await this.waitForTransportInfo(ctx, (x) => x.activated !== undefined || x.proxyError === true);
          if (act.proxyError === true) {
            mine.sock.destroy();
            return { ok: false, why: "the peer's SOCKS5 proxy failed (proxy-error)" };
          }
        }
        ctx.ibb = mine.sock;
        return { ok: true, sock: mine.sock };
      }
      for (const s of sockets) if (s !== theirSock) s.destroy();
      if (theirProxy !== undefined) {
        // XEP-0260 section 2.6 / XEP-0065 section 6.3.3: connect to our proxy too (as the
        // requester, after the target), activate, then tell the peer <activated/>.
        try {
          theirSock = await socks5Connect(theirProxy.host, theirProxy.port, ours?.dstaddr ?? "");
          sockets.push(theirSock);
          await this.activateProxy(theirProxy.jid, sid, peer);
        } catch {
          theirSock?.destroy();
          proxyError();
          return { ok: false, why: "our SOCKS5 proxy failed (connect or activation)" };
        }
        ctx.jingle.transportInfo([{ ...content, transport: { kind: "s5b", sid, candidates: [], activated: theirProxy.cid } }]);
        this.pump(ctx);
      }
      if (theirSock === undefined) return { ok: false, why: "no SOCKS5 candidate worked" };
      ctx.ibb = theirSock;
      return { ok: true, sock: theirSock };
    } catch (e) {
      for (const s of sockets) s.destroy();
      if (e instanceof XtlsError) throw this.fail(ctx, e);
      throw this.fail(ctx, new XtlsError("transport-failed", "SOCKS5 negotiation failed", "connectivity-error", { cause: e }));
    } finally {
      ours?.direct?.listener.close();
    }
  }

  /** The next transport-info whose s5b payload satisfies `pred` (others stay in the backlog order). */
  private async waitForTransportInfo(ctx: Ctx, pred: (t: Extract<Transport, { kind: "s5b" }>) => boolean): Promise<Extract<Transport, { kind: "s5b" }>> {
    for (;;) {
      const info = await this.waitFor(ctx, "transport-info");
      const t = info.contents.find((c) => c.transport?.kind === "s5b")?.transport;
      if (t?.kind === "s5b" && pred(t)) return t;
    }
  }

  /** XEP-0065 v1.8.2 section 6.3.3: <activate/> at the proxy; rejects on error or timeout. */
  private activateProxy(proxy: string, sid: string, target: FullJid): Promise<void> {
    const id = `act-${toHex(this.random.bytes(6))}`;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        off();
        reject(new XtlsError("transport-failed", "the proxy did not answer the activation", "connectivity-error"));
      }, this.o.ackTimeoutMs ?? 30_000);
      const off = this.o.connection.onStanza((s) => {
        if (s.name !== "iq" || attrOf(s, "id") !== id) return;
        clearTimeout(t);
        off();
        if (attrOf(s, "type") === "result") resolve();
        else reject(new XtlsError("transport-failed", "the proxy refused the activation", "connectivity-error"));
      });
      void this.o.connection
        .send(el("iq", { type: "set", id, to: proxy }, el("query", { xmlns: "http://jabber.org/protocol/bytestreams", sid }, el("activate", {}, target))))
        .catch(() => undefined);
    });
  }

  private async openIbb(ctx: Ctx, open: () => Promise<IbbStream>): Promise<IbbStream> {
    const ended = new Promise<never>((_, reject) => {
      ctx.endWaiters.push((e) => reject(e.error ?? new XtlsError("terminated", "the peer ended the session", e.reason?.condition ?? "general-error")));
    });
    ended.catch(() => undefined);
    try {
      const ibb = await Promise.race([open(), ended]);
      ctx.ibb = ibb;
      return ibb;
    } catch (e) {
      if (e instanceof XtlsError) throw e;
      throw this.fail(ctx, new XtlsError("transport-failed", "the in-band bytestream did not open", undefined, { cause: e }));
    }
  }

  private makeTunnel(
    ctx: Ctx,
    role: "initiator" | "responder",
    method: XtlsMethod | "none",
    ibb: Duplex,
    plain: Duplex | undefined,
    leapOfFaith: boolean,
    protocol: string | undefined,
    peerFingerprint?: Fingerprint,
  ): XtlsTunnel {
    const socket = plain ?? ibb;
    ctx.socket = socket;
    const ended = new Promise<XtlsEnd>((resolve) => {
      if (ctx.endInfo !== undefined) resolve(ctx.endInfo);
      else ctx.endWaiters.push(resolve);
    });
    // Section 6: an invalid TLS record (bad MAC, alert) ends the session with security-error.
    if (plain !== undefined) {
      // node:tls over a JS stream closes when its transport closes, dropping plaintext
      // not yet read: the bytestream stays open (after its clean end) until the TLS socket
      // has closed. (A TLS-SRP plug-in's Duplex manages its transport itself.)
      if (plain instanceof TLSSocket) {
        const hold = (ibb as Duplex & { carryTls?: () => () => void }).carryTls?.();
        if (hold !== undefined) plain.once("close", hold);
      }
      plain.on("error", (e: Error) => {
        if (ctx.endInfo === undefined)
          this.fail(ctx, new XtlsError("tls-failure", "invalid message on the TLS layer", undefined, { cause: e }));
      });
      // RFC 8446 section 6.1 / RFC 5246 section 7.2.1: the end of the data is signalled by
      // close_notify. A bytestream that ends (an IBB <close/>) before the TLS layer read a
      // close_notify is a truncation, "an invalid message on the TLS layer" (section 6):
      // security-error, not a clean end. Checked before the TLS layer sees the transport's
      // EOF (prepended listener), because it ends its readable side on EOF as well. A
      // close_notify, read earlier from the same in-order bytestream, has already ended it.
      // (A SOCKS5 socket is taken over natively by node:tls and emits no 'end' of its own.)
      // Only a close that the peer started is a truncation: when we ended our side first
      // (the XEP-0047 <close/> covers both directions), the peer's close_notify may still
      // be on its way and nothing of ours was cut short.
      ibb.prependListener("end", () => {
        if (ctx.endInfo === undefined && !readableEnded(plain) && !endedLocallyFirst(ibb))
          this.fail(ctx, new XtlsError("tls-failure", "the bytestream ended without a TLS close_notify (truncation)"));
      });
    }
    ibb.on("error", (e: Error) => {
      if (ctx.endInfo === undefined) this.fail(ctx, new XtlsError("transport-failed", "the in-band bytestream failed", undefined, { cause: e }));
    });
    const closer = async (): Promise<void> => {
      if (ctx.endInfo !== undefined) return;
      if (ctx.draining !== undefined) {
        // The peer already ended the session; closing now gives up what was not read.
        socket.destroy();
        await ended;
        return;
      }
      const ibbClosed = new Promise<void>((res) => {
        if (ibb.destroyed) res();
        else ibb.once("close", () => res());
      });
      if (!socket.writableEnded) socket.end();
      // Both directions: the peer's close_notify or <close/> may finish ours.
      const t = setTimeout(() => ibb.destroy(), 10_000);
      await ibbClosed;
      clearTimeout(t);
      if (ctx.endInfo === undefined) {
        ctx.jingle.terminate({ condition: "success" });
        this.pump(ctx);
      }
      await ended;
    };
    return new XtlsTunnel(ctx.jingle.peer, ctx.jingle.sid, role, method, ctx.description, socket, peerFingerprint, leapOfFaith, protocol, ended, closer);
  }

  /** Terminates the Jingle session with the error's reason; returns the error to throw. */
  private fail(ctx: Ctx, err: XtlsError): XtlsError {
    if (ctx.endInfo === undefined) {
      ctx.jingle.terminate({ condition: err.reason });
      ctx.endInfo = { by: "local", reason: { condition: err.reason }, error: err };
      this.pump(ctx);
      for (const w of ctx.endWaiters.splice(0)) w(ctx.endInfo);
    }
    ctx.socket?.destroy();
    ctx.ibb?.destroy();
    if (ctx.expectedIbb !== undefined) this.ibb.cancel(ctx.jingle.peer, ctx.expectedIbb);
    ctx.ownCandidate?.direct?.listener.close();
    return err;
  }

  private newCtx(peer: FullJid, sid: string, role: "initiator" | "responder"): Ctx {
    const jingle = new JingleSession({
      self: this.jid,
      peer,
      role,
      sid,
      random: this.random,
      clock: this.clock,
      ...(this.o.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: this.o.ackTimeoutMs }),
      ...(this.o.acceptTimeoutMs === undefined ? {} : { acceptTimeoutMs: this.o.acceptTimeoutMs }),
    });
    const ctx: Ctx = {
      jingle,
      timer: undefined,
      waiters: [],
      backlog: [],
      securityInfoMethod: undefined,
      description: { kind: "xmlstream" },
      ownCandidate: undefined,
      expectedIbb: undefined,
      ibb: undefined,
      socket: undefined,
      endInfo: undefined,
      draining: undefined,
      endWaiters: [],
    };
    this.sessions.set(`${peer} ${sid}`, ctx);
    return ctx;
  }

  private newSid(): string {
    return `x${toHex(this.random.bytes(12))}`;
  }

  /** Resolves with the first event of `type`; rejects if the session ends first. */
  private waitFor<T extends JingleEvent["type"]>(ctx: Ctx, type: T): Promise<Extract<JingleEvent, { type: T }>> {
    return this.waitForAny(ctx, [type]);
  }

  /** Races `p` against the ack timeout; on expiry the session fails with `err`. */
  private withTimeout<T>(ctx: Ctx, p: Promise<T>, err: XtlsError): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(this.fail(ctx, err)), this.o.ackTimeoutMs ?? 30_000);
      t.unref();
      p.then(
        (v) => {
          clearTimeout(t);
          resolve(v);
        },
        (e: unknown) => {
          clearTimeout(t);
          reject(e instanceof Error ? e : new XtlsError("terminated"));
        },
      );
    });
  }

  /** Resolves with the first event of any of `types`; rejects if the session ends first. */
  private waitForAny<T extends JingleEvent["type"]>(ctx: Ctx, types: readonly T[]): Promise<Extract<JingleEvent, { type: T }>> {
    return new Promise((resolve, reject) => {
      const wanted = (e: JingleEvent): e is Extract<JingleEvent, { type: T }> => (types as readonly string[]).includes(e.type);
      const check = (e: JingleEvent): boolean => {
        if (wanted(e)) {
          resolve(e);
          return true;
        }
        if (e.type === "terminated" || e.type === "failed") {
          reject(this.endError(e));
          return true;
        }
        return false;
      };
      const i = ctx.backlog.findIndex((e) => wanted(e) || e.type === "terminated" || e.type === "failed");
      if (i !== -1) {
        check(ctx.backlog.splice(i, 1)[0] as JingleEvent);
        return;
      }
      const w = (e: JingleEvent): boolean => {
        const hit = check(e);
        if (hit) ctx.waiters.splice(ctx.waiters.indexOf(w), 1);
        return hit;
      };
      ctx.waiters.push(w);
    });
  }

  private endError(e: JingleEvent): XtlsError {
    if (e.type === "failed")
      return e.error.condition === "timeout"
        ? new XtlsError("timeout", e.error.message)
        : new XtlsError("terminated", e.error.message, e.error.reason ?? "general-error");
    if (e.type === "terminated") {
      const c = e.reason?.condition ?? "general-error";
      if (c === "decline") return new XtlsError("declined", "the peer declined", c);
      return new XtlsError("terminated", `the peer ended the session (${c})`, c);
    }
    return new XtlsError("terminated");
  }

  private pump(ctx: Ctx): void {
    for (;;) {
      const out = ctx.jingle.outbox.poll();
      if (out === undefined) break;
      if (out.kind === "send") {
        this.o.connection.send(out.stanza).catch(() => {
          ctx.jingle.connectionLost();
          this.pump(ctx);
        });
        continue;
      }
      const e = out.event;
      if (e.type === "security-info") {
        const m = e.contents.find((c) => c.security?.kind === "xtls")?.security;
        const method = m?.kind === "xtls" ? m.methods[0] : undefined;
        if (method === "x509" || method === "srp") ctx.securityInfoMethod = method;
      }
      if (e.type === "terminated" || e.type === "failed") this.onEnded(ctx, e);
      if (e.type === "incoming") {
        this.onIncoming(ctx, e.jingle).catch((err: unknown) => {
          const error = err instanceof XtlsError ? err : new XtlsError("tls-failure", "incoming session failed", undefined, { cause: err });
          this.emit({ type: "failed", peer: ctx.jingle.peer, sid: ctx.jingle.sid, error });
        });
        continue;
      }
      let consumed = false;
      for (const x of [...ctx.waiters]) consumed = x(e) || consumed;
      if (!consumed && e.type === "transport-replace" && ctx.socket !== undefined) {
        // XEP-0166 v1.1.2 section 7.2.15: a transport-replace is answered with
        // transport-accept or transport-reject. Once the TLS tunnel runs on its bytestream
        // nothing may move it (the draft's transport is fixed for the TLS session), so
        // mid-session the answer is transport-reject and the old bytestream stays.
        if (ctx.jingle.stateName === "active") ctx.jingle.transportReject(e.contents);
        continue;
      }
      if (!consumed) ctx.backlog.push(e);
    }
    if (ctx.timer !== undefined) clearTimeout(ctx.timer);
    ctx.timer = undefined;
    const d = ctx.jingle.nextDeadline();
    if (d !== undefined) {
      ctx.timer = setTimeout(() => {
        ctx.timer = undefined;
        ctx.jingle.onTimer(this.clock.now());
        this.pump(ctx);
      }, Math.max(0, d - this.clock.now()));
      ctx.timer.unref();
    }
    if (ctx.jingle.stateName === "ended") this.sessions.delete(`${ctx.jingle.peer} ${ctx.jingle.sid}`);
  }

  private onEnded(ctx: Ctx, e: JingleEvent & { type: "terminated" | "failed" }): void {
    if (ctx.endInfo === undefined && ctx.draining === undefined) {
      const by = e.type === "terminated" ? e.by : "local";
      const reason = e.type === "terminated" ? e.reason : e.error.reason === undefined ? undefined : { condition: e.error.reason };
      const info: XtlsEnd = { by, reason, ...(by === "remote" && reason?.condition !== "success" ? { error: this.endError(e) } : {}) };
      if (ctx.expectedIbb !== undefined) this.ibb.cancel(ctx.jingle.peer, ctx.expectedIbb);
      // A clean end with the bytestream closed in order (or the peer's close_notify read):
      // the reader may still be taking what is buffered, so the socket is left to finish
      // on its own. The rest of the bytestream goes through the TLS layer, the truncation
      // check included, and the tunnel ends once the reader saw 'end' (or the socket
      // closed). Anything else (and a TLS-SRP plug-in's own Duplex) is cut off now.
      const socket = ctx.socket;
      const drained =
        reason?.condition === "success" &&
        socket !== undefined &&
        !socket.destroyed &&
        (socket instanceof TLSSocket || socket === ctx.ibb) &&
        (readableEnded(socket) || (ctx.ibb !== undefined && readableEnded(ctx.ibb)));
      if (drained) {
        ctx.draining = info;
        const settle = (): void => {
          if (ctx.endInfo !== undefined) return;
          ctx.endInfo = info;
          for (const w of ctx.endWaiters.splice(0)) w(info);
        };
        socket.once("end", settle);
        socket.once("close", settle);
        return;
      }
      ctx.endInfo = info;
      ctx.socket?.destroy();
      ctx.ibb?.destroy();
    }
    if (ctx.endInfo !== undefined) for (const w of ctx.endWaiters.splice(0)) w(ctx.endInfo);
  }

  private emit(e: XtlsEvent): void {
    for (const h of [...this.handlers]) h(e);
  }

  private dispatch(stanza: Element): void {
    for (const ctx of this.sessions.values()) {
      if (ctx.jingle.handleStanza(stanza)) {
        this.pump(ctx);
        return;
      }
    }
    if (stanza.name !== "iq" || attrOf(stanza, "type") !== "set") return;
    const j = jingleChild(stanza);
    if (j === undefined) return;
    const init = peekInitiate(stanza);
    const from = attrOf(stanza, "from");
    if (init !== undefined && from !== undefined && from.includes("/")) {
      const parsed = parseJingle(j);
      if (!parsed.ok) {
        void this.o.connection.send(jingleErrorReply(stanza, undefined, "bad-request")).catch(() => undefined);
        return;
      }
      const ctx = this.newCtx(from as FullJid, init.sid, "responder");
      ctx.jingle.handleStanza(stanza);
      this.pump(ctx);
      return;
    }
    // XEP-0166 section 9: a request for a session we do not know.
    void this.o.connection.send(jingleErrorReply(stanza, "unknown-session")).catch(() => undefined);
  }
}

export type { XtlsCondition };
