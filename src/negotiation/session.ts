/**
 * The plain stanza-session core: a sans-IO state machine for one XEP-0155 session
 * (one thread between two full JIDs), as initiator or responder.
 *
 * Spec: XEP-0155 v1.2 (2008-01-14):
 * - section 3 State Chart, transitions [1]-[9];
 * - section 4.1 request (FORM_TYPE, accept, logging/disclosure/security, list options in
 *   order of preference, AMP "drop if stored" for immediate sessions);
 * - section 4.2 accept (values for every required field; "Both entities MUST assume the
 *   session is being established with the resource of the contact that sends the reply";
 *   a stored request for an immediate session is not answered automatically);
 * - section 4.3 decline / errors (service-unavailable, feature-not-implemented,
 *   not-acceptable naming the fields);
 * - section 4.4 complete / cancel (the user "SHOULD verify that the selected values are
 *   acceptable" and MAY review non-default choices);
 * - section 5 continue (the other client "SHOULD accept the switch automatically");
 * - section 6 renegotiation (either party; complete "as soon as the parameter acceptance
 *   message has been sent (or received)"; on rejection or error the old parameters stay);
 * - section 7 termination ("Both parties MUST then consider the session to be ended") and
 *   its optional acknowledgement;
 * - section 9.1 auto accept or reject by policy; section 10.1 presence leaks (no automatic
 *   answer, not even an error, unless the peer may see our presence).
 * XEP-0136 section 3.1 for the 'logging' choices. XEP-0203 `<delay/>` marks a stored
 * request. Disco checks are the caller's job.
 *
 * Inputs: handleStanza (already routed to this thread), handleTimer, commands. Outputs:
 * drained with poll(). Peer input never throws out of handle*.
 */
import { assertNever, bareJid, isFullJid, jidParts, parseFullJid, parseJid, type Clock, type FullJid, type Jid, type Random, type ThreadId } from "../core/types.js";
import { Outbox, type Output } from "../core/machine.js";
import { f, offered, parseBoolean, type DataForm, type Field } from "../forms/codec.js";
import { getThread, newThreadId, sessionKey, type StanzaSessionKey } from "../thread/index.js";
import type { Element } from "../xml/index.js";
import {
  buildCompletion,
  buildContinue,
  buildContinueAck,
  buildRenegotiation,
  buildRenegotiationResponse,
  buildRequest,
  buildResponse,
  buildTermination,
  buildTerminationAck,
  DROP_IF_STORED,
  errorStanzaFor,
  isNegotiationStanza,
  negotiationErrorStanza,
  parseNegotiationStanza,
  type BuildOptions,
  type NegotiationErrorMessage,
  type NegotiationMessage,
  type Route,
} from "./codec.js";
import { NegotiationError, type StanzaErrorCondition } from "./errors.js";
import {
  chooseDisclosure,
  chooseLogging,
  chooseOption,
  chooseSecurity,
  DEFAULT_DISCLOSURE_PREFERENCE,
  DEFAULT_SECURITY_PREFERENCE,
  disclosureField,
  encodeLogging,
  loggingField,
  loggingOffer,
  multisessionField,
  parseDisclosure,
  parseLogging,
  parseMultisession,
  parseSecurity,
  securityField,
  type Disclosure,
  type LoggingPolicy,
  type OtrPreference,
  type Security,
} from "./fields.js";

// ---------------------------------------------------------------------------------------
// Public types

export type Role = "initiator" | "responder";
export type Phase = "initial" | "renegotiation" | "move";

/** The parameters in force in a session. */
export interface SessionOptions {
  readonly logging?: LoggingPolicy;
  readonly disclosure?: Disclosure;
  readonly security?: Security;
  /** XEP-0155 v1.2 'multisession'; false when not negotiated. */
  readonly multisession: boolean;
  /** Other negotiated fields (e.g. language, chatstates): var -> selected value. */
  readonly extra: Readonly<Record<string, string>>;
}

/** A received request or renegotiation, for the application to decide on. */
export interface Proposal {
  readonly title?: string;
  /** The form as received (labels are the peer's: localise before showing, section 10.2). */
  readonly form: DataForm;
  /** Whether the request carries a XEP-0203 delay (it was stored for later delivery). */
  readonly delayed: boolean;
}

/** What the application may change when accepting (each value must have been offered). */
export interface Choices {
  readonly logging?: LoggingPolicy;
  readonly disclosure?: Disclosure;
  readonly security?: Security;
  readonly multisession?: boolean;
  readonly extra?: Readonly<Record<string, string>>;
}

/** What we offer in a request (defaults come from the policy). */
export interface RequestOptions {
  /** An OTR preference (offered per XEP-0136 section 3.1) or an explicit option list. */
  readonly logging?: OtrPreference | readonly LoggingPolicy[];
  readonly disclosure?: readonly Disclosure[];
  readonly security?: readonly Security[];
  readonly multisession?: boolean;
  /** Further fields (list-single with options in order of preference). */
  readonly fields?: readonly Field[];
  readonly title?: string;
  /** Ask the server to drop the request rather than store it (section 4.1, XEP-0079). */
  readonly immediate?: boolean;
}

/** What we renegotiate: only the parameters given are offered again. */
export type RenegotiationOptions = Omit<RequestOptions, "title" | "immediate" | "multisession">;

export type Decision = "ask" | "accept" | "decline";

export interface SessionPolicy {
  /** Our OTR preference (XEP-0136 section 3.1); decides 'logging' offers and choices. */
  readonly otr: OtrPreference;
  /** Acceptable disclosure values, most preferred first. */
  readonly disclosure: readonly Disclosure[];
  /** Acceptable minimum security levels, most preferred first. */
  readonly security: readonly Security[];
  /** Whether we allow multiple concurrent sessions with the peer's full JID. */
  readonly multisession: boolean;
  /** Other fields we support: var -> acceptable values, most preferred first. */
  readonly extra: Readonly<Record<string, readonly string[]>>;
  /** How to answer an acceptable initial request (section 9.1). */
  readonly decide: Decision;
  /** How to answer an acceptable renegotiation from the peer. */
  readonly renegotiation: Decision;
  /** Initiator: review the peer's selections before completing (section 4.4). */
  readonly review: "auto" | "ask" | "non-default";
  /** Acknowledge a termination (section 7: MAY). */
  readonly acknowledgeTermination: boolean;
  /** Give up waiting for a response / completion / termination ack after this long. */
  readonly timeoutMs: number | undefined;
}

export interface StanzaSessionConfig {
  /** Our full JID. */
  readonly local: FullJid;
  readonly random: Random;
  /** Needed only when `policy.timeoutMs` is set. */
  readonly clock?: Clock;
  /**
   * Whether we may answer an unsolicited request automatically, errors included
   * (section 10.1: only if the peer is subscribed to our presence and not blocked).
   * When false, requests always go to the application and bad requests get no answer.
   */
  readonly revealPresence: boolean;
  /** XEP-0136: do not offer or accept 'mustnot' unless the server's archiving can be disabled. */
  readonly policy: Partial<SessionPolicy> & Pick<SessionPolicy, "otr">;
  /** Codec options (e.g. emitRequired). */
  readonly build?: BuildOptions;
  /** A thread to use for our request instead of a new one. */
  readonly thread?: ThreadId;
}

export type RejectReason = "declined" | "canceled" | "invalid-response" | "timeout" | "error";

export type SessionEvent =
  | {
      readonly type: "request";
      readonly phase: "initial" | "renegotiation";
      readonly peer: FullJid;
      readonly thread: ThreadId;
      readonly proposal: Proposal;
      /** What accept() without choices will answer. */
      readonly answer: SessionOptions;
    }
  | { readonly type: "review"; readonly peer: FullJid; readonly thread: ThreadId; readonly options: SessionOptions; readonly nonDefault: readonly string[] }
  | {
      readonly type: "active";
      readonly phase: "initial" | "renegotiation";
      readonly role: Role;
      readonly peer: FullJid;
      readonly thread: ThreadId;
      readonly key: StanzaSessionKey;
      readonly options: SessionOptions;
    }
  | { readonly type: "moved"; readonly party: "us" | "peer"; readonly jid: FullJid; readonly key: StanzaSessionKey }
  | { readonly type: "rejected"; readonly phase: Phase; readonly by: "us" | "peer"; readonly reason: RejectReason; readonly text?: string }
  | { readonly type: "terminated"; readonly by: "us" | "peer" }
  | {
      readonly type: "error";
      readonly phase: Phase;
      /** "remote": the peer sent us an error; "local": we found the peer's input bad. */
      readonly origin: "local" | "remote";
      readonly condition: StanzaErrorCondition;
      readonly fields: readonly string[];
      readonly text?: string;
      /** Whether we answered with an error stanza. */
      readonly sent: boolean;
    };

interface Established {
  readonly thread: ThreadId;
  readonly local: FullJid;
  readonly peer: FullJid;
  readonly role: Role;
  readonly options: SessionOptions;
}

/** An offer we sent, kept to check the answer against. */
interface SentOffer {
  readonly fields: readonly Field[];
}

/** A received proposal with our computed answer (var -> wire value). */
interface Pending {
  readonly form: DataForm;
  readonly request: Element;
  readonly selection: ReadonlyMap<string, string>;
  readonly delayed: boolean;
}

export type SessionState =
  | { readonly name: "idle" }
  | { readonly name: "awaiting-response"; readonly thread: ThreadId; readonly to: Jid; readonly offer: SentOffer; readonly deadline: number | undefined }
  | { readonly name: "awaiting-review"; readonly thread: ThreadId; readonly peer: FullJid; readonly options: SessionOptions }
  | { readonly name: "awaiting-decision"; readonly thread: ThreadId; readonly peer: FullJid; readonly pending: Pending }
  | { readonly name: "awaiting-completion"; readonly thread: ThreadId; readonly peer: FullJid; readonly options: SessionOptions; readonly deadline: number | undefined }
  | ({ readonly name: "active" } & Established)
  | ({ readonly name: "renegotiating"; readonly offer: SentOffer } & Established)
  | ({ readonly name: "awaiting-renegotiation-decision"; readonly pending: Pending } & Established)
  | ({ readonly name: "awaiting-continue-ack"; readonly resource: string } & Established)
  | { readonly name: "awaiting-terminate-ack"; readonly thread: ThreadId; readonly peer: FullJid; readonly deadline: number | undefined }
  | { readonly name: "terminated"; readonly by: "us" | "peer"; readonly thread?: ThreadId; readonly peer?: Jid; readonly initiator: boolean }
  | { readonly name: "rejected"; readonly reason: RejectReason; readonly thread?: ThreadId; readonly peer?: Jid; readonly initiator: boolean };

export type HandleResult = "handled" | "ignored";

const DEFAULT_POLICY: Omit<SessionPolicy, "otr"> = {
  disclosure: DEFAULT_DISCLOSURE_PREFERENCE,
  security: DEFAULT_SECURITY_PREFERENCE,
  multisession: false,
  extra: {},
  decide: "ask",
  renegotiation: "accept",
  review: "auto",
  acknowledgeTermination: true,
  timeoutMs: undefined,
};

/** Fields with a protocol role rather than a negotiable value. */
const CONTROL_FIELDS = new Set(["FORM_TYPE", "accept", "renegotiate", "terminate", "continue", "reason", ""]);
const PARAMETER_FIELDS = new Set(["logging", "otr", "disclosure", "security", "multisession"]);

const NO_OPTIONS: SessionOptions = { multisession: false, extra: {} };

// ---------------------------------------------------------------------------------------
// Helpers

/** Same JID, bare part compared case-insensitively, resource exactly. */
function sameJid(a: Jid, b: Jid): boolean {
  const pa = jidParts(a);
  const pb = jidParts(b);
  return sameBare(a, b) && pa.resource === pb.resource;
}

function sameBare(a: Jid, b: Jid): boolean {
  return bareJid(a).toLowerCase() === bareJid(b).toLowerCase();
}

function fieldValue(form: DataForm, name: string): string | undefined {
  return form.fields.find((x) => x.var === name)?.values[0];
}

/** Reads the negotiated parameters from an answer form over `base`, for the vars allowed. */
function optionsFromForm(form: DataForm, base: SessionOptions, allowed: ReadonlySet<string>): SessionOptions {
  let o: { -readonly [K in keyof SessionOptions]: SessionOptions[K] } = { ...base, extra: { ...base.extra } };
  const lf = parseLogging(form);
  // An answer may use 'otr' where we sent 'logging' (or the reverse): both carry logging.
  if (lf && (allowed.has("logging") || allowed.has("otr")) && lf.value !== undefined) o.logging = lf.value;
  const df = parseDisclosure(form);
  if (df && allowed.has("disclosure") && df.value !== undefined) o.disclosure = df.value;
  const sf = parseSecurity(form);
  if (sf && allowed.has("security") && sf.value !== undefined) o.security = sf.value;
  const ms = parseMultisession(form);
  if (ms !== undefined && allowed.has("multisession")) o.multisession = ms;
  const extra: Record<string, string> = { ...o.extra };
  for (const fd of form.fields) {
    if (CONTROL_FIELDS.has(fd.var) || PARAMETER_FIELDS.has(fd.var) || !allowed.has(fd.var)) continue;
    const v = fd.values[0];
    if (v !== undefined) extra[fd.var] = v;
  }
  o = { ...o, extra };
  return o;
}

type Evaluation =
  | { readonly kind: "ok"; readonly selection: ReadonlyMap<string, string> }
  | { readonly kind: "error"; readonly condition: "feature-not-implemented" | "not-acceptable"; readonly fields: readonly string[] }
  | { readonly kind: "refuse"; readonly reason: string };

/**
 * Computes our answer to a request or renegotiation form (sections 4.2, 4.3, 6): a value
 * for each field we can support; feature-not-implemented for required fields we do not
 * know; not-acceptable for required fields none of whose options we accept (and for
 * 'logging' whatever 'required' says: XEP-0136 makes such a negotiation fail).
 */
function evaluate(form: DataForm, policy: SessionPolicy, phase: "initial" | "renegotiation"): Evaluation {
  const selection = new Map<string, string>();
  const notImplemented: string[] = [];
  const notAcceptable: string[] = [];
  const lf = parseLogging(form);
  for (const fd of form.fields) {
    const name = fd.var;
    if (CONTROL_FIELDS.has(name)) continue;
    if (name === "logging" || name === "otr") {
      if (!lf || lf.var !== name) continue; // 'otr' next to 'logging': answer 'logging' only
      const c = chooseLogging(lf.offered, policy.otr);
      if (c === undefined) notAcceptable.push(name);
      else selection.set(name, encodeLogging(c, lf.encoding));
    } else if (name === "disclosure") {
      const c = chooseDisclosure(parseDisclosure(form)?.offered ?? [], policy.disclosure);
      if (c !== undefined) selection.set(name, c);
      else if (fd.required) notAcceptable.push(name);
    } else if (name === "security") {
      const c = chooseSecurity(parseSecurity(form)?.offered ?? [], policy.security);
      if (c !== undefined) selection.set(name, c);
      else if (fd.required) notAcceptable.push(name);
    } else if (name === "multisession") {
      const asked = parseBoolean(fd.values[0]?.trim()) ?? false;
      selection.set(name, asked && policy.multisession ? "1" : "0");
    } else {
      const prefs = policy.extra[name];
      if (prefs !== undefined) {
        const c = chooseOption(offered(fd), prefs);
        if (c !== undefined) selection.set(name, c);
        else if (fd.required) notAcceptable.push(name);
      } else if (fd.required) {
        notImplemented.push(name);
      }
    }
  }
  if (notImplemented.length) return { kind: "error", condition: "feature-not-implemented", fields: notImplemented };
  if (notAcceptable.length) return { kind: "error", condition: "not-acceptable", fields: notAcceptable };
  // XEP-0136 section 3.1: with OTR required, a request without 'logging' MUST be refused.
  if (phase === "initial" && !lf && policy.otr === "require") return { kind: "refuse", reason: "Off-the-record is required: please offer the 'logging' field" };
  return { kind: "ok", selection };
}

function selectionFields(form: DataForm, selection: ReadonlyMap<string, string>): Field[] {
  const out: Field[] = [];
  for (const fd of form.fields) {
    const v = selection.get(fd.var);
    if (v !== undefined && !out.some((x) => x.var === fd.var)) out.push(f.value(fd.var, v));
  }
  return out;
}

function selectionForm(form: DataForm, selection: ReadonlyMap<string, string>): DataForm {
  return { type: "submit", fields: selectionFields(form, selection) };
}

/** Applies the application's choices to our computed selection; each must have been offered. */
function applyChoices(form: DataForm, selection: ReadonlyMap<string, string>, c: Choices): Map<string, string> {
  const out = new Map(selection);
  const has = (name: string) => form.fields.some((x) => x.var === name);
  const reject = (name: string, v: string): never => {
    throw new NegotiationError("not-acceptable", `'${v}' was not offered for '${name}'`, [name]);
  };
  if (c.logging !== undefined) {
    const lf = parseLogging(form);
    if (!lf || !lf.offered.includes(c.logging)) reject("logging", c.logging);
    else out.set(lf.var, encodeLogging(c.logging, lf.encoding));
  }
  if (c.disclosure !== undefined) {
    if (!(parseDisclosure(form)?.offered ?? []).includes(c.disclosure)) reject("disclosure", c.disclosure);
    out.set("disclosure", c.disclosure);
  }
  if (c.security !== undefined) {
    if (!(parseSecurity(form)?.offered ?? []).includes(c.security)) reject("security", c.security);
    out.set("security", c.security);
  }
  if (c.multisession !== undefined) {
    if (!has("multisession") || (c.multisession && parseMultisession(form) !== true)) reject("multisession", String(c.multisession));
    out.set("multisession", c.multisession ? "1" : "0");
  }
  for (const [name, v] of Object.entries(c.extra ?? {})) {
    const fd = form.fields.find((x) => x.var === name);
    if (!fd || CONTROL_FIELDS.has(name) || PARAMETER_FIELDS.has(name) || !offered(fd).includes(v)) reject(name, v);
    out.set(name, v);
  }
  return out;
}

/**
 * Section 4.4: "SHOULD verify that the selected values are acceptable". Every required
 * field we sent must be answered; list answers must be among our options; a boolean we
 * set false cannot be turned on. Returns the offending fields.
 */
function checkAnswer(sent: SentOffer, answer: DataForm): string[] {
  const bad: string[] = [];
  const lf = parseLogging(answer);
  for (const sf of sent.fields) {
    if (CONTROL_FIELDS.has(sf.var)) continue;
    if (sf.var === "logging") {
      const ours = offered(sf);
      if (lf === undefined || lf.value === undefined) {
        if (sf.required) bad.push(sf.var);
      } else if (!ours.includes(lf.value)) bad.push(sf.var);
      continue;
    }
    const v = fieldValue(answer, sf.var)?.trim();
    if (v === undefined) {
      if (sf.required) bad.push(sf.var);
      continue;
    }
    if (sf.type === "boolean") {
      const theirs = parseBoolean(v);
      const ours = parseBoolean(sf.values[0]);
      if (theirs === undefined || (theirs && ours === false)) bad.push(sf.var);
    } else if (sf.options.length && !sf.options.some((o) => o.value === v)) {
      bad.push(sf.var);
    }
  }
  return bad;
}

/** Our offered fields whose selected value is not our default (first) one. */
function nonDefaultChoices(sent: SentOffer, answer: DataForm): string[] {
  const out: string[] = [];
  const lf = parseLogging(answer);
  for (const sf of sent.fields) {
    if (CONTROL_FIELDS.has(sf.var) || sf.values[0] === undefined) continue;
    const v = sf.var === "logging" ? lf?.value : fieldValue(answer, sf.var)?.trim();
    if (v === undefined) continue;
    const same = sf.type === "boolean" ? parseBoolean(v) === parseBoolean(sf.values[0]) : v === sf.values[0];
    if (!same) out.push(sf.var);
  }
  return out;
}

function isDelayed(stanza: Element): boolean {
  return stanza.getChild("delay", "urn:xmpp:delay") !== undefined || stanza.getChild("x", "jabber:x:delay") !== undefined;
}

// ---------------------------------------------------------------------------------------
// The core

export class StanzaSessionCore {
  private readonly out = new Outbox<SessionEvent>();
  private readonly policy: SessionPolicy;
  private local: FullJid;
  private s: SessionState = { name: "idle" };

  constructor(private readonly config: StanzaSessionConfig) {
    this.policy = { ...DEFAULT_POLICY, ...config.policy };
    this.local = config.local;
    if (this.policy.timeoutMs !== undefined && config.clock === undefined) throw new RangeError("timeoutMs needs a clock");
  }

  get state(): SessionState {
    return this.s;
  }

  /** Our current full JID (changes after a section 5 move). */
  get localJid(): FullJid {
    return this.local;
  }

  get thread(): ThreadId | undefined {
    return "thread" in this.s ? this.s.thread : undefined;
  }

  /** The session key once the peer's full JID is known. */
  get key(): StanzaSessionKey | undefined {
    const s = this.s;
    if (!("thread" in s) || s.thread === undefined || !("peer" in s) || s.peer === undefined || !isFullJid(s.peer)) return undefined;
    return sessionKey(this.local, s.peer, s.thread);
  }

  poll(): Output<SessionEvent> | undefined {
    return this.out.poll();
  }

  drain(): Output<SessionEvent>[] {
    return this.out.drain();
  }

  nextDeadline(): number | undefined {
    const s = this.s;
    return "deadline" in s ? s.deadline : undefined;
  }

  // -------------------------------------------------------------------- commands

  /** Section 4.1: sends a request to `to` (bare or full JID). */
  request(to: Jid, options: RequestOptions = {}): void {
    this.expect("idle");
    const thread = this.config.thread ?? newThreadId(this.config.random);
    const fields = this.requestFields(options, "initial");
    const stanza = buildRequest(
      {
        to,
        from: this.local,
        thread,
        fields,
        ...(options.title !== undefined ? { title: options.title } : {}),
        ...(options.immediate ? { amp: DROP_IF_STORED } : {}),
      },
      this.config.build,
    );
    this.s = { name: "awaiting-response", thread, to, offer: { fields }, deadline: this.deadline() };
    this.out.send(stanza);
  }

  /** Accepts the pending request or renegotiation (sections 4.2, 6). */
  accept(choices: Choices = {}): void {
    const s = this.s;
    if (s.name === "awaiting-decision") {
      const selection = applyChoices(s.pending.form, s.pending.selection, choices);
      this.acceptRequest(s.thread, s.peer, s.pending.form, selection);
    } else if (s.name === "awaiting-renegotiation-decision") {
      const selection = applyChoices(s.pending.form, s.pending.selection, choices);
      this.acceptRenegotiation(s, s.pending.form, selection);
    } else {
      throw new NegotiationError("unexpected-request", `accept() in state ${s.name}`);
    }
  }

  /** Declines the pending request (section 4.3) or renegotiation (section 6, [8]). */
  decline(reason?: string): void {
    const s = this.s;
    if (s.name === "awaiting-decision") {
      this.declineRequest(s.thread, s.peer, reason);
    } else if (s.name === "awaiting-renegotiation-decision") {
      this.out.send(buildRenegotiationResponse({ ...this.route(s), accept: false }, this.config.build));
      this.s = this.backToActive(s);
      this.out.emit({ type: "rejected", phase: "renegotiation", by: "us", reason: "declined", ...(reason !== undefined ? { text: reason } : {}) });
    } else {
      throw new NegotiationError("unexpected-request", `decline() in state ${s.name}`);
    }
  }

  /** Initiator, after a "review" event: completes the negotiation (section 4.4, [4]). */
  complete(reason?: string): void {
    const s = this.s;
    if (s.name !== "awaiting-review") throw new NegotiationError("unexpected-request", `complete() in state ${s.name}`);
    this.out.send(buildCompletion({ to: s.peer, from: this.local, thread: s.thread, accept: true, ...(reason !== undefined ? { reason } : {}) }, this.config.build));
    this.activate({ thread: s.thread, local: this.local, peer: s.peer, role: "initiator", options: s.options }, "initial");
  }

  /** Initiator, after a "review" event: cancels the negotiation (section 4.4, [5]). */
  cancel(reason?: string): void {
    const s = this.s;
    if (s.name !== "awaiting-review") throw new NegotiationError("unexpected-request", `cancel() in state ${s.name}`);
    this.out.send(buildCompletion({ to: s.peer, from: this.local, thread: s.thread, accept: false, ...(reason !== undefined ? { reason } : {}) }, this.config.build));
    this.s = { name: "rejected", reason: "canceled", thread: s.thread, peer: s.peer, initiator: true };
    this.out.emit({ type: "rejected", phase: "initial", by: "us", reason: "canceled", ...(reason !== undefined ? { text: reason } : {}) });
  }

  /** Section 6: renegotiates the given parameters of the active session. */
  renegotiate(options: RenegotiationOptions): void {
    const s = this.s;
    if (s.name !== "active") throw new NegotiationError("unexpected-request", `renegotiate() in state ${s.name}`);
    const fields = this.requestFields(options, "renegotiation");
    if (fields.length === 0) throw new NegotiationError("bad-request", "nothing to renegotiate");
    this.out.send(buildRenegotiation({ ...this.route(s), fields }, this.config.build));
    this.s = { ...this.established(s), name: "renegotiating", offer: { fields } };
  }

  /** Section 5: asks to continue the session from another of our resources. */
  moveTo(resource: string): void {
    const s = this.s;
    if (s.name !== "active") throw new NegotiationError("unexpected-request", `moveTo() in state ${s.name}`);
    try {
      parseFullJid(`${bareJid(this.local)}/${resource}`);
    } catch {
      throw new NegotiationError("bad-request", "bad resource");
    }
    this.out.send(buildContinue({ ...this.route(s), resource }, this.config.build));
    this.s = { ...this.established(s), name: "awaiting-continue-ack", resource };
  }

  /**
   * Section 7: ends the session. The session is over as soon as the termination is sent;
   * an acknowledgement is awaited only to absorb it. Before a session exists, withdraws
   * (declines a pending request, cancels a reviewed answer).
   */
  terminate(): void {
    const s = this.s;
    switch (s.name) {
      case "idle":
      case "terminated":
      case "rejected":
      case "awaiting-terminate-ack":
        return;
      case "awaiting-response":
        // Nothing to terminate yet; a late acceptance will be canceled ([5]).
        this.s = { name: "terminated", by: "us", thread: s.thread, peer: s.to, initiator: true };
        this.out.emit({ type: "terminated", by: "us" });
        return;
      case "awaiting-review":
        this.cancel();
        return;
      case "awaiting-decision":
        this.decline();
        return;
      case "awaiting-completion":
      case "active":
      case "renegotiating":
      case "awaiting-renegotiation-decision":
      case "awaiting-continue-ack":
        this.out.send(buildTermination({ to: s.peer, from: this.local, thread: s.thread }, this.config.build));
        this.s = { name: "awaiting-terminate-ack", thread: s.thread, peer: s.peer, deadline: this.deadline() };
        this.out.emit({ type: "terminated", by: "us" });
        return;
      default:
        assertNever(s, "session state");
    }
  }

  // -------------------------------------------------------------------- inputs

  /** Timer input: expires the wait for a response, a completion or a termination ack. */
  handleTimer(now: number): void {
    const s = this.s;
    if (!("deadline" in s) || s.deadline === undefined || now < s.deadline) return;
    switch (s.name) {
      case "awaiting-response":
        this.s = { name: "rejected", reason: "timeout", thread: s.thread, peer: s.to, initiator: true };
        this.out.emit({ type: "rejected", phase: "initial", by: "us", reason: "timeout" });
        return;
      case "awaiting-completion":
        this.s = { name: "rejected", reason: "timeout", thread: s.thread, peer: s.peer, initiator: false };
        this.out.emit({ type: "rejected", phase: "initial", by: "us", reason: "timeout" });
        return;
      case "awaiting-terminate-ack":
        this.s = { name: "terminated", by: "us", thread: s.thread, peer: s.peer, initiator: false };
        return;
      default:
        assertNever(s, "state with a deadline");
    }
  }

  /**
   * A stanza routed to this session. Returns "ignored" for stanzas that are not
   * negotiation messages of this session from this peer. Never throws.
   */
  handleStanza(stanza: Element): HandleResult {
    const saved = this.s;
    const queued = this.out.size;
    try {
      return this.dispatch(stanza);
    } catch (e) {
      // Nothing half-done survives: restore the state and drop what this input queued.
      this.s = saved;
      const all = this.out.drain();
      for (const o of all.slice(0, queued)) {
        if (o.kind === "send") this.out.send(o.stanza);
        else this.out.emit(o.event);
      }
      const condition: StanzaErrorCondition = e instanceof NegotiationError ? e.condition : "undefined-condition";
      this.out.emit({ type: "error", phase: "initial", origin: "local", condition, fields: [], text: e instanceof Error ? e.message : String(e), sent: false });
      return "handled";
    }
  }

  // -------------------------------------------------------------------- dispatch

  private dispatch(stanza: Element): HandleResult {
    if (stanza.name !== "message") return "ignored";
    const s = this.s;
    // A bounce of our request need not echo the feature element (RFC 6120 section 8.3.1).
    const bounce = stanza.attrs.type === "error" && s.name === "awaiting-response";
    if (!isNegotiationStanza(stanza) && !bounce) return "ignored";
    const thread = getThread(stanza);
    const ours = this.thread;
    if (ours !== undefined && thread !== ours) return "ignored";
    const fromAttr = stanza.attrs.from as unknown;
    const from = typeof fromAttr === "string" ? fromAttr : undefined;
    if (!this.fromPeer(from, stanza.attrs.type === "error")) return "ignored";

    let msg: NegotiationMessage | NegotiationErrorMessage;
    try {
      msg = parseNegotiationStanza(stanza);
    } catch (e) {
      if (!(e instanceof NegotiationError)) throw e;
      this.badInput(stanza, e, this.phaseOf(s));
      return "handled";
    }
    if (msg.kind === "error") {
      this.onPeerError(msg);
      return "handled";
    }
    this.onMessage(stanza, msg);
    return "handled";
  }

  /** Whether `from` is the peer this session talks to (or may, before it is known). */
  private fromPeer(from: string | undefined, isError: boolean): boolean {
    const s = this.s;
    switch (s.name) {
      case "idle":
        return true; // the responder learns its peer from the request
      case "awaiting-response":
        // Section 4.2: any resource of the contact may answer; a bounce may come from the bare JID.
        if (from === undefined) return false;
        try {
          const j = parseJid(from);
          return sameBare(j, s.to) && (isFullJid(j) || isError);
        } catch {
          return false;
        }
      case "terminated":
      case "rejected":
        if (from === undefined || s.peer === undefined) return false;
        try {
          return sameBare(parseJid(from), s.peer);
        } catch {
          return false;
        }
      case "awaiting-review":
      case "awaiting-decision":
      case "awaiting-completion":
      case "active":
      case "renegotiating":
      case "awaiting-renegotiation-decision":
      case "awaiting-continue-ack":
      case "awaiting-terminate-ack":
        if (from === undefined) return false;
        try {
          return sameJid(parseJid(from), s.peer);
        } catch {
          return false;
        }
      default:
        return assertNever(s, "session state");
    }
  }

  private phaseOf(s: SessionState): Phase {
    switch (s.name) {
      case "renegotiating":
      case "awaiting-renegotiation-decision":
        return "renegotiation";
      case "awaiting-continue-ack":
        return "move";
      default:
        return "initial";
    }
  }

  /** Whether we may send error stanzas in the current state (section 10.1). */
  private mayAnswer(): boolean {
    return this.s.name !== "idle" || this.config.revealPresence;
  }

  /** Bad peer input: an error stanza where allowed and an event. */
  private badInput(stanza: Element, e: NegotiationError, phase: Phase): void {
    let sent = false;
    if (stanza.attrs.type !== "error" && this.mayAnswer() && getThread(stanza) !== undefined) {
      this.out.send(errorStanzaFor(stanza, e, { from: this.local }));
      sent = true;
    }
    const fields = e.condition === "not-acceptable" || e.condition === "feature-not-implemented" ? (e.fields ?? []) : [];
    this.out.emit({ type: "error", phase, origin: "local", condition: e.condition, fields, text: e.message, sent });
  }

  /** An out-of-state message: reported, never answered (it may be a duplicate or replay). */
  private unexpected(msg: NegotiationMessage): void {
    this.out.emit({ type: "error", phase: this.phaseOf(this.s), origin: "local", condition: "unexpected-request", fields: [], text: `unexpected '${msg.action}' in state ${this.s.name}`, sent: false });
  }

  private onPeerError(msg: NegotiationErrorMessage): void {
    const s = this.s;
    const e = msg.error;
    const event = (phase: Phase): SessionEvent => ({
      type: "error",
      phase,
      origin: "remote",
      condition: e.condition,
      fields: e.fields,
      ...(e.text !== undefined ? { text: e.text } : {}),
      sent: false,
    });
    switch (s.name) {
      case "awaiting-response":
        this.s = { name: "rejected", reason: "error", thread: s.thread, peer: s.to, initiator: true };
        this.out.emit(event("initial"));
        return;
      case "awaiting-completion":
      case "awaiting-review":
        this.s = { name: "rejected", reason: "error", thread: s.thread, peer: s.peer, initiator: s.name === "awaiting-review" };
        this.out.emit(event("initial"));
        return;
      case "renegotiating":
        // Section 6: on error "the existing negotiated session parameters are maintained".
        this.s = this.backToActive(s);
        this.out.emit(event("renegotiation"));
        return;
      case "awaiting-continue-ack":
        this.s = this.backToActive(s);
        this.out.emit(event("move"));
        return;
      case "active":
      case "awaiting-renegotiation-decision":
        this.out.emit(event("initial"));
        return;
      case "awaiting-terminate-ack":
        this.s = { name: "terminated", by: "us", thread: s.thread, peer: s.peer, initiator: false };
        return;
      case "idle":
      case "awaiting-decision":
      case "terminated":
      case "rejected":
        return;
      default:
        assertNever(s, "session state");
    }
  }

  private onMessage(stanza: Element, msg: NegotiationMessage): void {
    const s = this.s;
    // Section 7: a termination ends the session whatever state it is in.
    if (msg.action === "terminate") {
      this.onTerminate(msg);
      return;
    }
    switch (s.name) {
      case "idle":
        if (msg.action === "request") this.onRequest(stanza, msg);
        else if (this.config.revealPresence) this.badInput(stanza, new NegotiationError("unexpected-request", `no session for '${msg.action}'`), "initial");
        else this.unexpected(msg);
        return;
      case "awaiting-response":
        if (msg.action === "accept") this.onAccept(s, msg);
        else if (msg.action === "decline") {
          const text = fieldValue(msg.form, "reason");
          this.s = { name: "rejected", reason: "declined", thread: s.thread, peer: s.to, initiator: true };
          this.out.emit({ type: "rejected", phase: "initial", by: "peer", reason: "declined", ...(text !== undefined ? { text } : {}) });
        } else this.unexpected(msg);
        return;
      case "awaiting-review":
        if (msg.action !== "accept") this.unexpected(msg); // a duplicate acceptance is absorbed
        return;
      case "awaiting-decision":
        if (msg.action !== "request") this.unexpected(msg); // a duplicate request is absorbed
        return;
      case "awaiting-completion":
        if (msg.action === "complete") {
          this.activate({ thread: s.thread, local: this.local, peer: s.peer, role: "responder", options: s.options }, "initial");
        } else if (msg.action === "cancel") {
          const text = fieldValue(msg.form, "reason");
          this.s = { name: "rejected", reason: "canceled", thread: s.thread, peer: s.peer, initiator: false };
          this.out.emit({ type: "rejected", phase: "initial", by: "peer", reason: "canceled", ...(text !== undefined ? { text } : {}) });
        } else if (msg.action !== "request") this.unexpected(msg);
        return;
      case "active":
      case "renegotiating":
      case "awaiting-renegotiation-decision":
      case "awaiting-continue-ack":
        this.onEstablished(stanza, s, msg);
        return;
      case "awaiting-terminate-ack":
        if (msg.action === "terminate-ack") this.s = { name: "terminated", by: "us", thread: s.thread, peer: s.peer, initiator: false };
        return; // anything else was in flight before our termination
      case "terminated":
      case "rejected":
        this.onAfterEnd(s, msg);
        return;
      default:
        assertNever(s, "session state");
    }
  }

  private onTerminate(msg: NegotiationMessage): void {
    const s = this.s;
    const route = { to: (msg.from ?? ("peer" in s ? s.peer : undefined)) as Jid | undefined, from: this.local, thread: msg.thread };
    const ack = () => {
      if (this.policy.acknowledgeTermination && route.to !== undefined) this.out.send(buildTerminationAck({ to: route.to, from: route.from, thread: route.thread }, this.config.build));
    };
    switch (s.name) {
      case "idle":
        if (this.config.revealPresence) ack();
        return;
      case "terminated":
      case "rejected":
        ack(); // idempotent: the peer may not have seen our first acknowledgement
        return;
      case "awaiting-terminate-ack":
        // Both ended the session at once; it is already over for us.
        ack();
        this.s = { name: "terminated", by: "us", thread: s.thread, peer: s.peer, initiator: false };
        return;
      case "awaiting-response":
        ack();
        this.s = { name: "terminated", by: "peer", thread: s.thread, peer: s.to, initiator: true };
        this.out.emit({ type: "terminated", by: "peer" });
        return;
      case "awaiting-review":
      case "awaiting-decision":
      case "awaiting-completion":
      case "active":
      case "renegotiating":
      case "awaiting-renegotiation-decision":
      case "awaiting-continue-ack":
        ack();
        this.s = { name: "terminated", by: "peer", thread: s.thread, peer: s.peer, initiator: s.name === "awaiting-review" || ("role" in s && s.role === "initiator") };
        this.out.emit({ type: "terminated", by: "peer" });
        return;
      default:
        assertNever(s, "session state");
    }
  }

  /** Messages after the end: cancel a late acceptance ([5]), terminate a late completion. */
  private onAfterEnd(s: Extract<SessionState, { name: "terminated" | "rejected" }>, msg: NegotiationMessage): void {
    if (s.thread === undefined || msg.from === undefined || !isFullJid(msg.from)) return;
    const route = { to: msg.from, from: this.local, thread: s.thread };
    if (msg.action === "accept" && s.initiator) this.out.send(buildCompletion({ ...route, accept: false }, this.config.build));
    else if (msg.action === "complete" && !s.initiator) this.out.send(buildTermination(route, this.config.build));
  }

  // -------------------------------------------------------------------- initial negotiation

  private onRequest(stanza: Element, msg: NegotiationMessage): void {
    const from = msg.from;
    if (from === undefined || !isFullJid(from)) {
      // Sessions are between full JIDs; a request without one cannot be answered.
      this.out.emit({ type: "error", phase: "initial", origin: "local", condition: "bad-request", fields: [], text: "request not from a full JID", sent: false });
      return;
    }
    const thread = msg.thread;
    const ev = evaluate(msg.form, this.policy, "initial");
    const delayed = isDelayed(stanza);
    switch (ev.kind) {
      case "error": {
        const sent = this.config.revealPresence;
        if (sent) this.out.send(negotiationErrorStanza(stanza, ev.condition, { fields: ev.fields, from: this.local }));
        this.s = { name: "rejected", reason: "error", thread, peer: from, initiator: false };
        this.out.emit({ type: "error", phase: "initial", origin: "local", condition: ev.condition, fields: ev.fields, sent });
        return;
      }
      case "refuse":
        if (this.config.revealPresence) {
          this.declineRequest(thread, from, ev.reason);
        } else {
          this.s = { name: "rejected", reason: "declined", thread, peer: from, initiator: false };
          this.out.emit({ type: "rejected", phase: "initial", by: "us", reason: "declined", text: ev.reason });
        }
        return;
      case "ok": {
        // Section 10.1: no automatic answer unless the peer may see our presence; section
        // 4.2: a stored request is not answered automatically (answering leaks presence).
        const auto = this.config.revealPresence && !delayed ? this.policy.decide : "ask";
        if (auto === "accept") {
          this.acceptRequest(thread, from, msg.form, ev.selection);
        } else if (auto === "decline") {
          this.declineRequest(thread, from);
        } else {
          const pending: Pending = { form: msg.form, request: stanza, selection: ev.selection, delayed };
          this.s = { name: "awaiting-decision", thread, peer: from, pending };
          this.out.emit({ type: "request", phase: "initial", peer: from, thread, proposal: this.proposal(pending), answer: this.answerOptions(pending.form, ev.selection, NO_OPTIONS) });
        }
        return;
      }
      default:
        assertNever(ev, "evaluation");
    }
  }

  private proposal(p: Pending): Proposal {
    return { form: p.form, delayed: p.delayed, ...(p.form.title !== undefined ? { title: p.form.title } : {}) };
  }

  private answerOptions(form: DataForm, selection: ReadonlyMap<string, string>, base: SessionOptions): SessionOptions {
    return optionsFromForm(selectionForm(form, selection), base, new Set(selection.keys()));
  }

  private acceptRequest(thread: ThreadId, peer: FullJid, form: DataForm, selection: ReadonlyMap<string, string>): void {
    this.out.send(buildResponse({ to: peer, from: this.local, thread, accept: true, fields: selectionFields(form, selection) }, this.config.build));
    this.s = { name: "awaiting-completion", thread, peer, options: this.answerOptions(form, selection, NO_OPTIONS), deadline: this.deadline() };
  }

  private declineRequest(thread: ThreadId, peer: FullJid, reason?: string): void {
    this.out.send(buildResponse({ to: peer, from: this.local, thread, accept: false, ...(reason !== undefined ? { reason } : {}) }, this.config.build));
    this.s = { name: "rejected", reason: "declined", thread, peer, initiator: false };
    this.out.emit({ type: "rejected", phase: "initial", by: "us", reason: "declined", ...(reason !== undefined ? { text: reason } : {}) });
  }

  private onAccept(s: Extract<SessionState, { name: "awaiting-response" }>, msg: NegotiationMessage): void {
    const peer = msg.from;
    if (peer === undefined || !isFullJid(peer)) return; // checked by fromPeer
    const bad = checkAnswer(s.offer, msg.form);
    if (bad.length) {
      // Section 4.4 [5]: we cancel a negotiation whose selected values we cannot accept.
      this.out.send(buildCompletion({ to: peer, from: this.local, thread: s.thread, accept: false, reason: `Unacceptable values for: ${bad.join(", ")}` }, this.config.build));
      this.s = { name: "rejected", reason: "invalid-response", thread: s.thread, peer, initiator: true };
      this.out.emit({ type: "rejected", phase: "initial", by: "us", reason: "invalid-response", text: bad.join(",") });
      return;
    }
    const options = optionsFromForm(msg.form, NO_OPTIONS, new Set(s.offer.fields.map((x) => x.var)));
    const nonDefault = nonDefaultChoices(s.offer, msg.form);
    const review = this.policy.review;
    if (review === "ask" || (review === "non-default" && nonDefault.length > 0)) {
      this.s = { name: "awaiting-review", thread: s.thread, peer, options };
      this.out.emit({ type: "review", peer, thread: s.thread, options, nonDefault });
      return;
    }
    this.out.send(buildCompletion({ to: peer, from: this.local, thread: s.thread, accept: true }, this.config.build));
    this.activate({ thread: s.thread, local: this.local, peer, role: "initiator", options }, "initial");
  }

  private activate(e: Established, phase: "initial" | "renegotiation"): void {
    this.s = { name: "active", ...e };
    this.out.emit({ type: "active", phase, role: e.role, peer: e.peer, thread: e.thread, key: sessionKey(this.local, e.peer, e.thread), options: e.options });
  }

  // -------------------------------------------------------------------- established session

  private onEstablished(stanza: Element, s: Extract<SessionState, Established>, msg: NegotiationMessage): void {
    switch (msg.action) {
      case "renegotiate":
        if (s.name === "active") this.onPeerRenegotiation(stanza, s, msg);
        // A repeat while the first waits for our user: absorbed (one answer per proposal).
        else if (s.name === "awaiting-renegotiation-decision") return;
        // Glare (both renegotiate at once) or a move in progress: decline theirs. Both
        // sides then keep the old parameters and may retry.
        else this.out.send(buildRenegotiationResponse({ ...this.route(s), accept: false }, this.config.build));
        return;
      case "renegotiate-accept":
        if (s.name !== "renegotiating") return; // late or duplicate: absorbed
        {
          const bad = checkAnswer(s.offer, msg.form);
          if (bad.length) {
            // The peer already applied values we never offered: end the session rather
            // than run it with parameters we did not agree to.
            this.out.emit({ type: "error", phase: "renegotiation", origin: "local", condition: "not-acceptable", fields: bad, text: "renegotiation answer outside our offer", sent: false });
            this.out.send(buildTermination(this.route(s), this.config.build));
            this.s = { name: "awaiting-terminate-ack", thread: s.thread, peer: s.peer, deadline: this.deadline() };
            this.out.emit({ type: "terminated", by: "us" });
            return;
          }
          const options = optionsFromForm(msg.form, s.options, new Set(s.offer.fields.map((x) => x.var)));
          this.activate({ ...this.established(s), options }, "renegotiation");
        }
        return;
      case "renegotiate-decline":
        if (s.name !== "renegotiating") return;
        this.s = this.backToActive(s);
        this.out.emit({ type: "rejected", phase: "renegotiation", by: "peer", reason: "declined" });
        return;
      case "continue": {
        // Section 5: accepted automatically; the ack goes to the old resource.
        const resource = fieldValue(msg.form, "continue")?.trim() ?? "";
        let jid: FullJid;
        try {
          jid = parseFullJid(`${bareJid(s.peer)}/${resource}`);
        } catch {
          this.badInput(stanza, new NegotiationError("bad-request", "bad resource in 'continue'"), "move");
          return;
        }
        this.out.send(buildContinueAck({ ...this.route(s), resource }, this.config.build));
        const next = { ...s, peer: jid };
        this.s = next;
        this.out.emit({ type: "moved", party: "peer", jid, key: sessionKey(this.local, jid, s.thread) });
        return;
      }
      case "continue-ack": {
        if (s.name !== "awaiting-continue-ack") return;
        if (fieldValue(msg.form, "continue")?.trim() !== s.resource) {
          this.unexpected(msg);
          return;
        }
        const jid = parseFullJid(`${bareJid(this.local)}/${s.resource}`);
        this.local = jid;
        this.s = { ...this.established(s), local: jid, name: "active" };
        this.out.emit({ type: "moved", party: "us", jid, key: sessionKey(jid, s.peer, s.thread) });
        return;
      }
      case "accept":
      case "complete":
        return; // duplicates of the initial exchange
      case "terminate-ack":
        return;
      case "request":
      case "decline":
      case "cancel":
        this.unexpected(msg);
        return;
      case "terminate":
        return; // handled before the state switch
      default:
        assertNever(msg.action, "action");
    }
  }

  private onPeerRenegotiation(stanza: Element, s: Extract<SessionState, { name: "active" }>, msg: NegotiationMessage): void {
    const ev = evaluate(msg.form, this.policy, "renegotiation");
    switch (ev.kind) {
      case "error":
        // Section 6: errors as in section 4.3; the existing parameters are maintained.
        this.out.send(negotiationErrorStanza(stanza, ev.condition, { fields: ev.fields, from: this.local }));
        this.out.emit({ type: "error", phase: "renegotiation", origin: "local", condition: ev.condition, fields: ev.fields, sent: true });
        return;
      case "refuse":
        this.out.send(buildRenegotiationResponse({ ...this.route(s), accept: false }, this.config.build));
        this.out.emit({ type: "rejected", phase: "renegotiation", by: "us", reason: "declined", text: ev.reason });
        return;
      case "ok": {
        const decide = this.policy.renegotiation;
        if (decide === "accept") this.acceptRenegotiation(s, msg.form, ev.selection);
        else if (decide === "decline") {
          this.out.send(buildRenegotiationResponse({ ...this.route(s), accept: false }, this.config.build));
          this.out.emit({ type: "rejected", phase: "renegotiation", by: "us", reason: "declined" });
        } else {
          const pending: Pending = { form: msg.form, request: stanza, selection: ev.selection, delayed: false };
          this.s = { ...this.established(s), name: "awaiting-renegotiation-decision", pending };
          this.out.emit({
            type: "request",
            phase: "renegotiation",
            peer: s.peer,
            thread: s.thread,
            proposal: this.proposal(pending),
            answer: this.answerOptions(msg.form, ev.selection, s.options),
          });
        }
        return;
      }
      default:
        assertNever(ev, "evaluation");
    }
  }

  /** Section 6: complete "as soon as the parameter acceptance message has been sent". */
  private acceptRenegotiation(s: Extract<SessionState, Established>, form: DataForm, selection: ReadonlyMap<string, string>): void {
    this.out.send(buildRenegotiationResponse({ ...this.route(s), accept: true, fields: selectionFields(form, selection) }, this.config.build));
    this.activate({ ...this.established(s), options: this.answerOptions(form, selection, s.options) }, "renegotiation");
  }

  // -------------------------------------------------------------------- helpers

  private expect(name: SessionState["name"]): void {
    if (this.s.name !== name) throw new NegotiationError("unexpected-request", `expected state ${name}, in ${this.s.name}`);
  }

  private deadline(): number | undefined {
    const t = this.policy.timeoutMs;
    return t === undefined || this.config.clock === undefined ? undefined : this.config.clock.now() + t;
  }

  private route(s: Established): Route {
    return { to: s.peer, from: this.local, thread: s.thread };
  }

  private established(s: Extract<SessionState, Established>): Established {
    return { thread: s.thread, local: s.local, peer: s.peer, role: s.role, options: s.options };
  }

  private backToActive(s: Extract<SessionState, Established>): SessionState {
    return { name: "active", ...this.established(s) };
  }

  private requestFields(o: RequestOptions, phase: "initial" | "renegotiation"): Field[] {
    const p = this.policy;
    const initial = phase === "initial";
    const fields: Field[] = [];
    const logging = o.logging ?? (initial ? p.otr : undefined);
    if (logging !== undefined) {
      const offer = typeof logging === "string" ? loggingOffer(logging) : logging;
      if (offer.length) fields.push(loggingField(offer));
    }
    const disclosure = o.disclosure ?? (initial ? p.disclosure : undefined);
    if (disclosure?.length) fields.push(disclosureField(disclosure));
    const security = o.security ?? (initial ? p.security : undefined);
    if (security?.length) fields.push(securityField(security));
    if (initial) fields.push(multisessionField(o.multisession ?? p.multisession));
    for (const x of o.fields ?? []) {
      if (CONTROL_FIELDS.has(x.var) || PARAMETER_FIELDS.has(x.var)) throw new NegotiationError("bad-request", `field '${x.var}' is set through its own option`);
      fields.push(x);
    }
    return fields;
  }
}
