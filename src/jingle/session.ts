/**
 * One Jingle session as a sans-IO state machine (the subset XTLS needs): initiate,
 * acknowledge, accept, security-info, terminate; iq acknowledgements and timeouts.
 *
 * Spec: XEP-0166 v1.1.2 (Jingle)
 * - section 6.2/6.3: session-initiate, "the responder MUST acknowledge receipt of the
 *   initiation request" (iq result) before it accepts; session-accept is acknowledged
 *   by the initiator;
 * - section 6.7 termination: session-terminate with a <reason/>, acknowledged; after it
 *   the session is gone (a later request for the sid gets <unknown-session/>);
 * - section 7.2 'initiator': the responder checks it against the sender;
 * - section 8 security-info (the XTLS method choice, draft-meyer-xmpp-e2e-encryption-02
 *   section 3);
 * - section 7.2.15 transport-replace, acknowledged, then answered with transport-accept
 *   (7.2.12) or transport-reject (7.2.14), each acknowledged (XEP-0260 v1.0.3 section
 *   2.8: the fallback from SOCKS5 to IBB);
 * - section 9 errors: <out-of-order/> (unexpected-request) for an action that does not
 *   fit the state, <unknown-session/> (item-not-found), <unsupported-info/>.
 * - Timeouts are ours: an unacknowledged request after `ackTimeoutMs`, or no
 *   session-accept after `acceptTimeoutMs`, ends the session with reason <timeout/>.
 *
 * The security decisions (draft section 3 rules) are in ./security.ts; the wiring feeds
 * their outcome in as accept()/terminate() commands.
 */
import { assertNever, type Clock, type FullJid, type Random } from "../core/types.js";
import { toHex } from "../core/bytes.js";
import { Outbox } from "../core/machine.js";
import { attrOf } from "../adapters/connection.js";
import { NS, el, type Element } from "../xml/index.js";
import { errorCondition } from "../ibb/codec.js";
import {
  jingleChild,
  jingleErrorReply,
  jingleIq,
  parseJingle,
  type Content,
  type Jingle,
  type JingleAction,
  type Reason,
} from "./codec.js";
import { JingleError } from "./errors.js";

export type JingleRole = "initiator" | "responder";

export interface JingleSessionOptions {
  readonly self: FullJid;
  readonly peer: FullJid;
  readonly role: JingleRole;
  readonly sid: string;
  readonly random: Random;
  readonly clock: Clock;
  /** Wait for an iq acknowledgement. Default 30,000 ms. */
  readonly ackTimeoutMs?: number;
  /** Initiator: wait for session-accept (a human may be asked). Default 120,000 ms. */
  readonly acceptTimeoutMs?: number;
}

export type JingleEvent =
  /** Responder: a session-initiate arrived (already acknowledged). */
  | { readonly type: "incoming"; readonly jingle: Jingle }
  /** Initiator: our session-initiate was acknowledged. */
  | { readonly type: "initiate-acked" }
  /** Initiator: session-accept arrived (already acknowledged). */
  | { readonly type: "accepted"; readonly jingle: Jingle }
  /** Responder: our session-accept was acknowledged. */
  | { readonly type: "accept-acked" }
  | { readonly type: "security-info"; readonly contents: readonly Content[] }
  /** XEP-0260 candidate-used / candidate-error / activated (already acknowledged). */
  | { readonly type: "transport-info"; readonly contents: readonly Content[] }
  /** The peer proposes another transport (already acknowledged); answer with transportAccept/Reject. */
  | { readonly type: "transport-replace"; readonly contents: readonly Content[] }
  /** The peer accepted our transport-replace (already acknowledged). */
  | { readonly type: "transport-accept"; readonly contents: readonly Content[] }
  /** The peer rejected our transport-replace (already acknowledged). */
  | { readonly type: "transport-reject"; readonly contents: readonly Content[] }
  | { readonly type: "terminated"; readonly by: "local" | "remote"; readonly reason: Reason | undefined }
  | { readonly type: "failed"; readonly error: JingleError };

type Pending = { readonly action: JingleAction; readonly deadline: number };

type State =
  | { readonly name: "idle" }
  | { readonly name: "awaiting-initiate" }
  | { readonly name: "awaiting-accept"; readonly deadline: number }
  | { readonly name: "awaiting-local-decision" }
  | { readonly name: "active" }
  | { readonly name: "ending"; readonly reason: Reason }
  | { readonly name: "ended" };

export class JingleSession {
  readonly outbox = new Outbox<JingleEvent>();
  private state: State;
  private readonly pending = new Map<string, Pending>();
  private readonly ackTimeoutMs: number;
  private readonly acceptTimeoutMs: number;

  constructor(private readonly opts: JingleSessionOptions) {
    this.state = opts.role === "initiator" ? { name: "idle" } : { name: "awaiting-initiate" };
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 30_000;
    this.acceptTimeoutMs = opts.acceptTimeoutMs ?? 120_000;
  }

  get sid(): string {
    return this.opts.sid;
  }
  get peer(): FullJid {
    return this.opts.peer;
  }
  get role(): JingleRole {
    return this.opts.role;
  }
  get stateName(): State["name"] {
    return this.state.name;
  }
  private get initiatorJid(): FullJid {
    return this.opts.role === "initiator" ? this.opts.self : this.opts.peer;
  }

  // ---- commands ----

  initiate(contents: readonly Content[]): void {
    if (this.state.name !== "idle") throw new JingleError("out-of-order", "initiate() twice");
    this.request({ action: "session-initiate", sid: this.sid, initiator: this.opts.self, contents });
    this.state = { name: "awaiting-accept", deadline: this.opts.clock.now() + this.acceptTimeoutMs };
  }

  accept(contents: readonly Content[]): void {
    if (this.state.name !== "awaiting-local-decision") throw new JingleError("out-of-order", "nothing to accept");
    this.request({ action: "session-accept", sid: this.sid, initiator: this.initiatorJid, responder: this.opts.self, contents });
    this.state = { name: "active" };
  }

  securityInfo(contents: readonly Content[]): void {
    if (this.state.name !== "active") throw new JingleError("out-of-order", "security-info outside an active session");
    this.request({ action: "security-info", sid: this.sid, initiator: this.initiatorJid, contents });
  }

  transportInfo(contents: readonly Content[]): void {
    if (this.state.name !== "active") throw new JingleError("out-of-order", "transport-info outside an active session");
    this.request({ action: "transport-info", sid: this.sid, initiator: this.initiatorJid, contents });
  }

  /** XEP-0166 section 7.2.15: propose another transport for the contents. */
  transportReplace(contents: readonly Content[]): void {
    if (this.state.name !== "active") throw new JingleError("out-of-order", "transport-replace outside an active session");
    this.request({ action: "transport-replace", sid: this.sid, initiator: this.initiatorJid, contents });
  }

  /** XEP-0166 section 7.2.12: accept the peer's transport-replace. */
  transportAccept(contents: readonly Content[]): void {
    if (this.state.name !== "active") throw new JingleError("out-of-order", "transport-accept outside an active session");
    this.request({ action: "transport-accept", sid: this.sid, initiator: this.initiatorJid, contents });
  }

  /** XEP-0166 section 7.2.14: refuse the peer's transport-replace (the old transport stays). */
  transportReject(contents: readonly Content[]): void {
    if (this.state.name !== "active") throw new JingleError("out-of-order", "transport-reject outside an active session");
    this.request({ action: "transport-reject", sid: this.sid, initiator: this.initiatorJid, contents });
  }

  /** Ends the session with a reason (XEP-0166 section 6.7); idempotent. */
  terminate(reason: Reason): void {
    const s = this.state;
    if (s.name === "ending" || s.name === "ended") return;
    if (s.name === "idle" || s.name === "awaiting-initiate") {
      this.state = { name: "ended" };
      this.outbox.emit({ type: "terminated", by: "local", reason });
      return;
    }
    this.pending.clear();
    this.request({ action: "session-terminate", sid: this.sid, initiator: this.initiatorJid, contents: [], reason });
    this.state = { name: "ending", reason };
  }

  connectionLost(): void {
    if (this.state.name === "ended") return;
    this.state = { name: "ended" };
    this.pending.clear();
    this.outbox.emit({ type: "failed", error: new JingleError("closed", "stanza connection closed") });
  }

  nextDeadline(): number | undefined {
    let d = this.state.name === "awaiting-accept" ? this.state.deadline : Infinity;
    for (const p of this.pending.values()) d = Math.min(d, p.deadline);
    return d === Infinity ? undefined : d;
  }

  onTimer(now: number): void {
    const d = this.nextDeadline();
    if (d === undefined || now < d) return;
    const s = this.state;
    if (s.name === "ending") {
      // The terminate was not acknowledged: the session is over anyway.
      this.pending.clear();
      this.state = { name: "ended" };
      this.outbox.emit({ type: "terminated", by: "local", reason: s.reason });
      return;
    }
    const reason: Reason = { condition: "timeout" };
    this.terminate(reason);
    this.outbox.emit({ type: "failed", error: new JingleError("timeout", "no answer from the peer", undefined, "timeout") });
  }

  // ---- input ----

  /** Offers a stanza; false if it is not for this session. Never throws on peer input. */
  handleStanza(stanza: Element): boolean {
    if (attrOf(stanza, "from") !== this.opts.peer || stanza.name !== "iq") return false;
    const type = attrOf(stanza, "type");
    const id = attrOf(stanza, "id") ?? "";
    if (type === "result" || type === "error") {
      const p = this.pending.get(id);
      if (p === undefined) return false;
      this.pending.delete(id);
      this.onReply(p, type === "error" ? stanza : undefined);
      return true;
    }
    if (type !== "set") return false;
    const jEl = jingleChild(stanza);
    if (jEl === undefined) return false;
    const parsed = parseJingle(jEl);
    if (!parsed.ok) {
      if (attrOf(jEl, "sid") !== this.sid) return false;
      this.outbox.send(jingleErrorReply(stanza, undefined, "bad-request"));
      return true;
    }
    const j = parsed.value;
    if (j.sid !== this.sid) return false;
    this.onRequest(stanza, id, j);
    return true;
  }

  // ---- internals ----

  private newId(): string {
    return `jingle-${toHex(this.opts.random.bytes(8))}`;
  }

  private request(j: Jingle): void {
    const id = this.newId();
    this.pending.set(id, { action: j.action, deadline: this.opts.clock.now() + this.ackTimeoutMs });
    this.outbox.send(jingleIq(this.opts.peer, id, j));
  }

  private ack(id: string): void {
    this.outbox.send(el("iq", { xmlns: NS.client, type: "result", to: this.opts.peer, id }));
  }

  private onReply(p: Pending, error: Element | undefined): void {
    const s = this.state;
    if (p.action === "session-terminate" && s.name === "ending") {
      this.state = { name: "ended" };
      this.outbox.emit({ type: "terminated", by: "local", reason: s.reason });
      return;
    }
    if (error !== undefined) {
      const cond = errorCondition(error);
      if (p.action === "security-info" || p.action === "transport-info") return; // informational: not fatal
      if (p.action === "transport-replace") {
        // The peer refused the transport-replace itself (e.g. feature-not-implemented):
        // treat it as a reject, so the wiring does not wait for an answer that will not come.
        if (s.name === "active") this.outbox.emit({ type: "transport-reject", contents: [] });
        return;
      }
      if (p.action === "transport-accept" || p.action === "transport-reject") return;
      if (s.name === "ended" || s.name === "ending") return;
      // A refused session-initiate (e.g. service-unavailable: no Jingle) or session-accept.
      this.state = { name: "ended" };
      this.pending.clear();
      this.outbox.emit({ type: "failed", error: new JingleError("remote-error", `${p.action} refused`, cond) });
      return;
    }
    if (p.action === "session-initiate") this.outbox.emit({ type: "initiate-acked" });
    else if (p.action === "session-accept") this.outbox.emit({ type: "accept-acked" });
  }

  private onRequest(iq: Element, id: string, j: Jingle): void {
    const s = this.state;
    if (j.action === "session-terminate") {
      this.ack(id);
      if (s.name === "ended") return;
      this.pending.clear();
      this.state = { name: "ended" };
      this.outbox.emit({ type: "terminated", by: "remote", reason: j.reason });
      return;
    }
    const outOfOrder = (): void => {
      this.outbox.send(jingleErrorReply(iq, s.name === "ended" ? "unknown-session" : "out-of-order"));
    };
    switch (j.action) {
      case "session-initiate":
        if (s.name !== "awaiting-initiate") return outOfOrder();
        // Section 7.2: the initiator is the sender.
        if (j.initiator !== undefined && j.initiator !== this.opts.peer) {
          this.outbox.send(jingleErrorReply(iq, undefined, "bad-request"));
          return;
        }
        this.ack(id);
        this.state = { name: "awaiting-local-decision" };
        this.outbox.emit({ type: "incoming", jingle: j });
        return;
      case "session-accept":
        if (s.name !== "awaiting-accept") return outOfOrder();
        this.ack(id);
        // An accept before the initiate's ack implies it (the responder processed it).
        for (const [pid, p] of this.pending) if (p.action === "session-initiate") this.pending.delete(pid);
        this.state = { name: "active" };
        this.outbox.emit({ type: "accepted", jingle: j });
        return;
      case "security-info":
        if (s.name !== "active" && s.name !== "awaiting-local-decision") return outOfOrder();
        this.ack(id);
        this.outbox.emit({ type: "security-info", contents: j.contents });
        return;
      case "session-info":
        // Section 7.2.13: an empty session-info is a ping; payloads we do not know get
        // <unsupported-info/>.
        if (s.name === "ended") return outOfOrder();
        if (jingleChild(iq)?.children.some((c) => typeof c !== "string") === true)
          this.outbox.send(jingleErrorReply(iq, "unsupported-info"));
        else this.ack(id);
        return;
      case "transport-info":
        if (s.name !== "active" && s.name !== "awaiting-accept" && s.name !== "awaiting-local-decision") return outOfOrder();
        this.ack(id);
        this.outbox.emit({ type: "transport-info", contents: j.contents });
        return;
      case "transport-replace":
      case "transport-accept":
      case "transport-reject":
        if (s.name !== "active") return outOfOrder();
        this.ack(id);
        this.outbox.emit({ type: j.action, contents: j.contents });
        return;
      case "content-accept":
      case "content-add":
      case "content-modify":
      case "content-reject":
      case "content-remove":
      case "description-info":
        if (s.name === "ended") return outOfOrder();
        this.outbox.send(jingleErrorReply(iq, undefined, "feature-not-implemented"));
        return;
      default:
        assertNever(j.action, "jingle action");
    }
  }
}

/** Reads a session id and initiator from a session-initiate for routing (no state). */
export function peekInitiate(stanza: Element): { sid: string; from: string } | undefined {
  if (stanza.name !== "iq" || attrOf(stanza, "type") !== "set") return undefined;
  const j = jingleChild(stanza);
  const from = attrOf(stanza, "from");
  if (j === undefined || from === undefined || attrOf(j, "action") !== "session-initiate") return undefined;
  const sid = attrOf(j, "sid");
  return sid === undefined ? undefined : { sid, from };
}
