/**
 * Object encryption for single stanzas: the sans-IO ObjectSession (commands and parsed
 * stanzas in; protected stanzas, error replies and events out through an Outbox) and the
 * ObjectClient that runs it over a StanzaConnection.
 *
 * Spec: draft-ietf-xmpp-e2e-03 (RFC 3923):
 * - section 3: a message becomes a Message/CPIM object, is signed and/or encrypted, and
 *   travels as the character data of <e2e/>;
 * - section 4: presence becomes a PIDF object; encrypted presence MUST be directed
 *   (a 'to'); broadcast presence is signed only (appendix B.2: "the ability to sign
 *   broadcasted presence");
 * - section 2 requirement 1 (RFC 2779): tamper detection (2.5.1: the signature and, for
 *   AES-GCM, the tag), replay detection (2.5.2: a DateTime window plus a persistent cache
 *   of seen ids, RFC 3923 section 6.9), confidentiality to the chosen recipients (2.5.3:
 *   the peer's certificates and, by default, our own devices'), and "MUST NOT require
 *   that all clients use these means" (2.5.4: a message carries a fallback <body/>, and
 *   stanzas without <e2e/> are left to the rest of the application);
 * - RFC 3923 section 6.3: the signer's certificate must name the stanza's 'from' in
 *   id-on-xmppAddr (and the CPIM From must agree); section 6.6: certificates included;
 *   section 7: errors answered with <bad-request/><decryption-failed/>,
 *   <not-acceptable/><signature-unverified/>, <not-acceptable/><bad-timestamp/>; a
 *   recipient that does not support the protocol answers <service-unavailable/> (or
 *   <feature-not-implemented/>), reported here as a "peer-error" event with
 *   `unsupported: true`.
 * Wrongly addressed objects (CPIM To is not us) are rejected: an object signed for
 * someone else and replayed to us must not be accepted (RFC 2779 section 5.4.6/5.4.7).
 *
 * Async crypto stays at the edge as explicit async steps (`send*`, `receive`); the core
 * holds no timers (nextDeadline is always undefined).
 */
import { createHash } from "node:crypto";
import { type Element } from "../xml/index.js";
import { el, NS } from "../xml/index.js";
import { Outbox } from "../core/machine.js";
import { bareJid, type Clock, type FullJid, type Jid, parseJid, type Random } from "../core/types.js";
import { toHex } from "../core/bytes.js";
import { attrOf, errorReply, mayReplyWithError, type StanzaConnection } from "../adapters/connection.js";
import { formatDateTime, parseCpim, parseDateTime, serializeCpim } from "../cpim/codec.js";
import { cpimToMessagePayload, type DecodedPayload, messageToCpim, uriToJid } from "../cpim/xmpp.js";
import { cpimToPresencePayload, presenceToCpim } from "../pidf/xmpp.js";
import type { ReplayCache } from "../store/replay.js";
import { checkAddressBinding, validateChain } from "./certs.js";
import type { CertificateStore } from "./certstore.js";
import type { ContentCipher, SmimeIdentity } from "./cms.js";
import { e2eText, findE2e, NS_E2E, wrapObject } from "./e2e.js";
import { asSmimeError, SmimeError, stanzaErrorFor } from "./errors.js";
import { headerValue } from "./mime.js";
import { protectEntity, type SmimeLayer, unprotectEntity } from "./protect.js";

export interface ObjectPolicy {
  /** Reject objects without a valid signature (RFC 2779 2.5.1 needs one). Default true. */
  readonly requireSignature: boolean;
  /** Accepted distance between the object's DateTime and our clock, ms. Default 5 minutes. */
  readonly windowMs: number;
  /** Content cipher for what we send. Default aes-128-cbc (RFC 3923 section 6.10). */
  readonly cipher: ContentCipher;
  /** Also encrypt to our own certificates (our other devices). Default true. */
  readonly encryptToSelf: boolean;
  /** Body shown by clients without support for encrypted messages; `false` for none. */
  readonly fallbackBody: string | false;
  /** For signed-only messages, copy the body in clear for clients without support. Default true. */
  readonly clearFallbackForSigned: boolean;
  /** Answer rejected messages with the RFC 3923 section 7 errors. Default true. */
  readonly sendErrors: boolean;
}

export const DEFAULT_OBJECT_POLICY: ObjectPolicy = {
  requireSignature: true,
  windowMs: 5 * 60_000,
  cipher: "aes-128-cbc",
  encryptToSelf: true,
  fallbackBody: "This message is encrypted (RFC 3923 object encryption); your client cannot display it.",
  clearFallbackForSigned: true,
  sendErrors: true,
};

export interface ObjectSessionOptions {
  /** Our bound full JID. */
  readonly self: FullJid;
  /** Signs what we send; decrypts what we receive. */
  readonly identity: SmimeIdentity;
  /** Other identities we can decrypt with (older keys). */
  readonly extraIdentities?: readonly SmimeIdentity[];
  readonly certificates: CertificateStore;
  readonly replay: ReplayCache;
  readonly clock: Clock;
  readonly random: Random;
  readonly policy?: Partial<ObjectPolicy>;
}

export interface ReceivedObject {
  /** The sender's full JID (as stamped by the server). */
  readonly from: Jid;
  /** The clear stanza (outer routing attributes, inner payload). */
  readonly stanza: Element;
  /** The signer's bare JID (the certificate's id-on-xmppAddr), when signed. */
  readonly signedBy?: Jid;
  readonly encrypted: boolean;
  readonly layers: readonly SmimeLayer[];
  /** The object's DateTime, ms since the epoch. */
  readonly dateTime: number;
}

export type ObjectEvent =
  | ({ readonly type: "message" } & ReceivedObject)
  | ({ readonly type: "presence" } & ReceivedObject)
  | { readonly type: "rejected"; readonly from?: string; readonly kind: string; readonly error: SmimeError }
  | {
      readonly type: "peer-error";
      readonly peer?: string;
      readonly id?: string;
      readonly condition: string;
      readonly e2eCondition?: string;
      /** The peer does not implement the protocol (service-unavailable, feature-not-implemented). */
      readonly unsupported: boolean;
    };

export interface SendOptions {
  /** Default true. */
  readonly sign?: boolean;
  /** Default true for messages and directed presence; never for broadcast presence. */
  readonly encrypt?: boolean;
  readonly cipher?: ContentCipher;
}

const MAX_TRACKED = 1024;

export class ObjectSession {
  private readonly out = new Outbox<ObjectEvent>();
  private readonly policy: ObjectPolicy;
  /** Ids of protected stanzas we sent, for matching error replies. */
  private readonly sent = new Map<string, string>();
  private lastExpire = -Infinity;

  constructor(private readonly o: ObjectSessionOptions) {
    this.policy = { ...DEFAULT_OBJECT_POLICY, ...(o.policy ?? {}) };
  }

  poll() {
    return this.out.poll();
  }
  drain() {
    return this.out.drain();
  }
  nextDeadline(): number | undefined {
    return undefined;
  }

  private newId(): string {
    return `e2e-${toHex(this.o.random.bytes(8))}`;
  }

  private track(id: string, peer: string): void {
    this.sent.set(id, peer);
    if (this.sent.size > MAX_TRACKED) {
      const first = this.sent.keys().next();
      if (first.done !== true) this.sent.delete(first.value);
    }
  }

  private async recipientsFor(to: Jid): Promise<Uint8Array[]> {
    const theirs = await this.o.certificates.certificatesFor(to);
    if (theirs.length === 0) throw new SmimeError("no-recipient-certificate", "no certificate for the recipient");
    const all = [...theirs];
    if (this.policy.encryptToSelf) {
      all.push(this.o.identity.certificate, ...(await this.o.certificates.certificatesFor(this.o.self)));
    }
    const seen = new Set<string>();
    return all.filter((c) => {
      const k = toHex(c);
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
  }

  private headers(to: Jid | undefined) {
    return {
      from: bareJid(this.o.self),
      ...(to === undefined ? {} : { to: bareJid(to) }),
      dateTime: formatDateTime(this.o.clock.now()),
      contentId: `${toHex(this.o.random.bytes(12))}@${bareJid(this.o.self).split("@").pop() ?? "localhost"}`,
    };
  }

  /**
   * Protects a message (draft section 3) and queues it. `payload` is a <message/> whose
   * children (body, subject, extensions) are the content; its 'to' and 'type' route it.
   * Resolves the stanza id. Rejects with SmimeError (e.g. no-recipient-certificate).
   */
  async sendMessage(to: Jid, payload: Element, opts: SendOptions = {}): Promise<string> {
    const sign = opts.sign ?? true;
    const encrypt = opts.encrypt ?? true;
    if (!sign && !encrypt) throw new SmimeError("bad-request", "neither signing nor encrypting");
    const object = serializeCpim(messageToCpim(payload, this.headers(to)));
    const smime = await protectEntity(
      object,
      {
        ...(sign ? { signer: this.o.identity } : {}),
        ...(encrypt ? { recipients: await this.recipientsFor(to), cipher: opts.cipher ?? this.policy.cipher } : {}),
      },
      this.o,
    );
    const id = attrOf(payload, "id") ?? this.newId();
    const clearBody = payload.getChild("body")?.getText();
    const fallback = encrypt
      ? this.policy.fallbackBody === false
        ? undefined
        : this.policy.fallbackBody
      : this.policy.clearFallbackForSigned
        ? clearBody
        : undefined;
    const type = attrOf(payload, "type");
    this.out.send(
      wrapObject(smime, {
        kind: "message",
        to,
        id,
        ...(type === undefined ? {} : { type }),
        ...(fallback === undefined ? {} : { fallbackBody: fallback }),
      }),
    );
    this.track(id, to);
    return id;
  }

  /**
   * Protects presence (draft section 4). Directed presence (`to`) is signed and, unless
   * `encrypt: false`, encrypted; broadcast presence (no `to`) is signed only, and asking
   * to encrypt it is a bad-request (section 4 step 3: encrypted presence MUST be directed).
   */
  async sendPresence(payload: Element, to?: Jid, opts: SendOptions = {}): Promise<string> {
    const encrypt = to === undefined ? false : (opts.encrypt ?? true);
    if (to === undefined && opts.encrypt === true)
      throw new SmimeError("bad-request", "encrypted presence must be directed (draft section 4)");
    const sign = opts.sign ?? true;
    if (!sign && !encrypt) throw new SmimeError("bad-request", "neither signing nor encrypting");
    const object = serializeCpim(presenceToCpim(payload, this.headers(to), `t${toHex(this.o.random.bytes(4))}`));
    const smime = await protectEntity(
      object,
      {
        ...(sign ? { signer: this.o.identity } : {}),
        ...(encrypt && to !== undefined ? { recipients: await this.recipientsFor(to), cipher: opts.cipher ?? this.policy.cipher } : {}),
      },
      this.o,
    );
    const id = this.newId();
    const type = attrOf(payload, "type");
    this.out.send(
      wrapObject(smime, { kind: "presence", id, ...(to === undefined ? {} : { to }), ...(type === "unavailable" ? { type } : {}) }),
    );
    if (to !== undefined) this.track(id, to);
    return id;
  }

  /**
   * Handles an inbound stanza. Resolves false when it is not ours (no <e2e/> and not an
   * error reply to one of our protected stanzas), so the application can process it.
   * Never rejects on peer input: failures become "rejected" events and error replies.
   */
  async receive(stanza: Element): Promise<boolean> {
    if (stanza.name !== "message" && stanza.name !== "presence") return false;
    if (attrOf(stanza, "type") === "error") return this.receiveError(stanza);
    if (findE2e(stanza) === undefined) return false;
    const from = attrOf(stanza, "from");
    try {
      const r = await this.open(stanza);
      this.out.emit({ type: stanza.name === "message" ? "message" : "presence", ...r });
    } catch (e) {
      const error = asSmimeError(e, "malformed", "object could not be processed");
      this.out.emit({ type: "rejected", kind: stanza.name, error, ...(from === undefined ? {} : { from }) });
      const mapping = stanzaErrorFor(error.condition);
      if (this.policy.sendErrors && mapping !== undefined && stanza.name === "message" && mayReplyWithError(stanza)) {
        const reply = errorReply(stanza, mapping.condition, mapping.type, { from: this.o.self });
        if (mapping.e2e !== undefined) reply.getChild("error")?.cnode(el(mapping.e2e, { xmlns: NS_E2E }));
        this.out.send(reply);
      }
    }
    return true;
  }

  private receiveError(stanza: Element): boolean {
    const id = attrOf(stanza, "id");
    if (findE2e(stanza) === undefined && (id === undefined || !this.sent.has(id))) return false;
    const err = stanza.getChild("error");
    let condition = "undefined-condition";
    let e2eCondition: string | undefined;
    for (const c of err?.children ?? []) {
      if (typeof c === "string") continue;
      if (c.attrs.xmlns === NS.stanzas && c.name !== "text") condition = c.name;
      if (c.attrs.xmlns === NS_E2E) e2eCondition = c.name;
    }
    const peer = attrOf(stanza, "from");
    this.out.emit({
      type: "peer-error",
      condition,
      unsupported: condition === "service-unavailable" || condition === "feature-not-implemented",
      ...(peer === undefined ? {} : { peer }),
      ...(id === undefined ? {} : { id }),
      ...(e2eCondition === undefined ? {} : { e2eCondition }),
    });
    return true;
  }

  private async open(stanza: Element): Promise<ReceivedObject> {
    const fromAttr = attrOf(stanza, "from");
    if (fromAttr === undefined) throw new SmimeError("malformed", "stanza without 'from'");
    let from: Jid;
    try {
      from = parseJid(fromAttr);
    } catch (e) {
      throw asSmimeError(e, "malformed", "bad 'from'");
    }
    const sender = bareJid(from);
    const now = this.o.clock.now();
    const smime = e2eText(stanza);
    const known = await this.o.certificates.certificatesFor(sender);
    const u = await unprotectEntity(smime, {
      identities: [this.o.identity, ...(this.o.extraIdentities ?? [])],
      extraCertificates: known,
    });
    let signedBy: Jid | undefined;
    if (u.signature === undefined) {
      if (this.policy.requireSignature) throw new SmimeError("not-protected", "object is not signed");
    } else {
      // RFC 3923 section 6.3: the certificate names the sender; the path leads to a trust anchor.
      checkAddressBinding(u.signature.signer, sender);
      // A store backed by the trust store records the key with the sender's JID (XEP-0116
      // section 7.4 alerts) and may pin it (trust on first use) before the path check.
      await this.o.certificates.observe?.(u.signature.signer, sender, now);
      await validateChain(u.signature.signer, {
        anchors: await this.o.certificates.anchors(),
        intermediates: u.signature.certificates,
        at: now,
      });
      signedBy = sender;
    }
    const cpim = parseCpim(u.entity);
    if (cpim.from === undefined || uriToJid(cpim.from.uri).toLowerCase() !== sender.toLowerCase())
      throw new SmimeError("address-mismatch", "CPIM From is not the stanza's sender");
    // Wrongly addressed: the object names other recipients than us.
    const me = bareJid(this.o.self).toLowerCase();
    const to = [...cpim.to, ...cpim.cc].map((a) => uriToJid(a.uri).toLowerCase());
    if (to.length === 0) {
      // Only signed broadcast presence names no recipient (draft section 4, appendix B.2).
      if (stanza.name === "message" || u.encryption !== undefined)
        throw new SmimeError("wrong-recipient", "object names no recipient");
    } else if (!to.includes(me)) throw new SmimeError("wrong-recipient", "object is addressed to someone else");
    // RFC 3923 section 6.9: DateTime within the window.
    const t = cpim.dateTime === undefined ? undefined : parseDateTime(cpim.dateTime);
    if (t === undefined) throw new SmimeError("bad-timestamp", "no valid DateTime");
    if (Math.abs(now - t) > this.policy.windowMs) throw new SmimeError("bad-timestamp", "DateTime outside the accepted window");
    const payload: DecodedPayload = stanza.name === "message" ? cpimToMessagePayload(cpim) : cpimToPresencePayload(cpim);
    if (payload.stanzaName !== undefined && payload.stanzaName !== stanza.name)
      throw new SmimeError("malformed", "carried stanza kind differs from the wrapper");
    // Replay cache last: only objects that passed every other check are remembered.
    const contentId = headerValue(cpim.content.headers, "content-id");
    const objectId = contentId ?? `sha256:${createHash("sha256").update(u.entity).digest("hex")}`;
    if (now - this.lastExpire > this.policy.windowMs) {
      this.lastExpire = now;
      await this.o.replay.expire(now - 2 * this.policy.windowMs);
    }
    if (!(await this.o.replay.checkAndRecord(me, sender.toLowerCase(), objectId, now)))
      throw new SmimeError("replayed", "object already received");
    const outerType = attrOf(stanza, "type");
    const type = outerType ?? payload.type;
    const clear = el(
      stanza.name,
      { xmlns: NS.client, from: fromAttr, to: attrOf(stanza, "to"), type, id: attrOf(stanza, "id") },
      ...payload.children,
    );
    return {
      from,
      stanza: clear,
      encrypted: u.encryption !== undefined,
      layers: u.layers,
      dateTime: t,
      ...(signedBy === undefined ? {} : { signedBy }),
    };
  }
}

export interface ObjectClientOptions extends Omit<ObjectSessionOptions, "self"> {
  readonly connection: StanzaConnection;
}

/**
 * Runs an ObjectSession over a StanzaConnection: inbound stanzas are processed one at a
 * time in arrival order, outputs are sent / dispatched after each step.
 */
export class ObjectClient {
  readonly session: ObjectSession;
  private readonly handlers = new Set<(e: ObjectEvent) => void>();
  private chain: Promise<void> = Promise.resolve();
  private readonly unsubscribe: () => void;
  /** Stanzas the session did not claim (no <e2e/>), for the application. */
  private readonly clearHandlers = new Set<(s: Element) => void>();

  constructor(private readonly o: ObjectClientOptions) {
    this.session = new ObjectSession({ ...o, self: o.connection.jid });
    this.unsubscribe = o.connection.onStanza((s) => {
      this.chain = this.chain.then(async () => {
        const mine = await this.session.receive(s);
        await this.flush();
        if (!mine) for (const h of this.clearHandlers) h(s);
      }).catch(() => {
        // A failed send (connection closed) must not stop the processing of later stanzas.
      });
    });
  }

  on(h: (e: ObjectEvent) => void): () => void {
    this.handlers.add(h);
    return () => this.handlers.delete(h);
  }

  onClear(h: (s: Element) => void): () => void {
    this.clearHandlers.add(h);
    return () => this.clearHandlers.delete(h);
  }

  private async flush(): Promise<void> {
    for (const out of this.session.drain()) {
      if (out.kind === "send") await this.o.connection.send(out.stanza);
      else for (const h of this.handlers) h(out.event);
    }
  }

  async sendMessage(to: Jid, body: string | Element, opts: SendOptions & { readonly type?: string } = {}): Promise<string> {
    const payload = typeof body === "string" ? el("message", { xmlns: NS.client, type: opts.type ?? "chat" }, el("body", {}, body)) : body;
    const id = await this.session.sendMessage(to, payload, opts);
    await this.flush();
    return id;
  }

  async sendPresence(payload: Element, to?: Jid, opts: SendOptions = {}): Promise<string> {
    const id = await this.session.sendPresence(payload, to, opts);
    await this.flush();
    return id;
  }

  /** Waits until every stanza received so far has been processed. */
  async idle(): Promise<void> {
    await this.chain;
  }

  async close(): Promise<void> {
    this.unsubscribe();
    await this.chain;
  }
}
