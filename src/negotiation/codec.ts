/**
 * Codec for Stanza Session Negotiation messages: `<message/>` stanzas carrying a
 * `<feature xmlns='http://jabber.org/protocol/feature-neg'>` data form with FORM_TYPE
 * urn:xmpp:ssn, and the error stanzas answering them.
 *
 * Spec: XEP-0155 v1.2 (2008-01-14), section 3 "State Chart" ([1]-[9]: which form type and
 * which field make a request, acceptance, rejection, completion, cancelation,
 * renegotiation and termination), section 4 (new session, incl. 4.3 error shapes),
 * section 5 (moving a session: 'continue'), section 6 (renegotiation), section 7
 * (termination and its acknowledgement). XEP-0020 (feature-neg wrapper). XEP-0079 /
 * XEP-0155 section 4.1 (the AMP "drop if stored" rule for immediate sessions). XEP-0201
 * for `<thread/>`. XEP-0116 v0.16 section 4.4 reuses {@link negotiationErrorStanza}.
 *
 * Logic lives in session.ts; this file only maps XML <-> typed objects.
 */
import { parseJid, type Jid, type ThreadId } from "../core/types.js";
import { f, FormError, findForm, formToXml, formType, parseBoolean, parseForm, type DataForm, type Field, type FormType } from "../forms/codec.js";
import { getThread, getThreadParent } from "../thread/index.js";
import { deepClone, el, elements, NS, type Element } from "../xml/index.js";
import {
  isStanzaErrorCondition,
  NEGOTIATION_ERROR_TYPES,
  NegotiationError,
  STANZA_ERROR_TYPES,
  type NegotiationCondition,
  type StanzaErrorCondition,
  type StanzaErrorType,
} from "./errors.js";

export const SSN_FORM_TYPE = NS.ssn;

/**
 * What a negotiation form means (XEP-0155 section 3 transitions and section 5):
 * - form + accept: request [1]; submit + accept: accept [2] / decline [3];
 *   result + accept: complete [4] / cancel [5];
 * - form + renegotiate: renegotiate [6]; submit + renegotiate: accept [7] / decline [8];
 * - submit + terminate: terminate [9]; result + terminate: acknowledgement (section 7);
 * - submit + continue: move to another resource; result + continue: its acceptance.
 */
export type SsnAction =
  | "request"
  | "accept"
  | "decline"
  | "complete"
  | "cancel"
  | "renegotiate"
  | "renegotiate-accept"
  | "renegotiate-decline"
  | "terminate"
  | "terminate-ack"
  | "continue"
  | "continue-ack";

/** A XEP-0079 rule (used by XEP-0155 section 4.1 for immediate sessions). */
export interface AmpRule {
  readonly action: string;
  readonly condition: string;
  readonly value: string;
}
export interface Amp {
  readonly perHop?: boolean;
  readonly rules: readonly AmpRule[];
}

/** XEP-0155 section 4.1: ask the server not to store a request for an immediate session. */
export const DROP_IF_STORED: Amp = { rules: [{ action: "drop", condition: "deliver", value: "stored" }] };

export type NegotiationMessageType = "normal" | "chat";

interface Addressing {
  /** The message 'type' attribute as sent; absent means "normal". */
  readonly type?: NegotiationMessageType;
  readonly id?: string;
  readonly from?: Jid;
  readonly to?: Jid;
}

/** A negotiation message (any of the {@link SsnAction}s). */
export interface NegotiationMessage extends Addressing {
  readonly kind: "negotiation";
  readonly thread: ThreadId;
  readonly threadParent?: ThreadId;
  readonly action: SsnAction;
  readonly form: DataForm;
  readonly amp?: Amp;
}

/** A stanza error as carried in `<error/>` (RFC 6120 section 8.3; XEP-0155 section 4.3). */
export interface StanzaErrorInfo {
  readonly type: StanzaErrorType;
  /** Legacy XEP-0086 code, kept as received. */
  readonly code?: string;
  readonly condition: StanzaErrorCondition;
  readonly text?: string;
  /** The fields named by `<feature xmlns='...feature-neg'><field var/></feature>` in `<error/>`. */
  readonly fields: readonly string[];
}

/** An error message answering a negotiation message. */
export interface NegotiationErrorMessage {
  readonly kind: "error";
  readonly id?: string;
  readonly from?: Jid;
  readonly to?: Jid;
  readonly thread?: ThreadId;
  readonly threadParent?: ThreadId;
  /** The echoed `<feature/>`; `form` is absent when it held no (parsable) form. */
  readonly echo?: { readonly form?: DataForm };
  readonly error: StanzaErrorInfo;
}

export type NegotiationStanza = NegotiationMessage | NegotiationErrorMessage;

// ---------------------------------------------------------------------------------------
// Classification

const ACTION_FIELDS = ["accept", "renegotiate", "terminate", "continue"] as const;

function bool(form: DataForm, name: string): boolean {
  const v = form.fields.find((x) => x.var === name)?.values[0];
  const b = parseBoolean(v?.trim());
  if (b === undefined) throw new NegotiationError("bad-request", `'${name}' is not a boolean`, [name]);
  return b;
}

/**
 * The meaning of an urn:xmpp:ssn form. Throws {@link NegotiationError}: service-unavailable
 * when FORM_TYPE is missing or not urn:xmpp:ssn (section 4.3: "does not support the
 * urn:xmpp:ssn FORM_TYPE"), bad-request when the form is not one of the defined messages.
 */
export function classifyForm(form: DataForm): SsnAction {
  const ft = formType(form)?.trim();
  if (ft !== SSN_FORM_TYPE) throw new NegotiationError("service-unavailable", "FORM_TYPE is not urn:xmpp:ssn");
  const present = ACTION_FIELDS.filter((n) => form.fields.some((x) => x.var === n));
  const only = present.length === 1 ? present[0] : undefined;
  switch (form.type) {
    case "form":
      // Section 6: "The accept field MUST NOT be included in a renegotiation form".
      if (only === "accept") return "request";
      if (only === "renegotiate") return "renegotiate";
      break;
    case "submit":
      if (only === "accept") return bool(form, "accept") ? "accept" : "decline";
      if (only === "renegotiate") return bool(form, "renegotiate") ? "renegotiate-accept" : "renegotiate-decline";
      if (only === "terminate") {
        if (bool(form, "terminate")) return "terminate";
        break;
      }
      if (only === "continue") return "continue";
      break;
    case "result":
      if (only === "accept") return bool(form, "accept") ? "complete" : "cancel";
      if (only === "terminate") {
        if (bool(form, "terminate")) return "terminate-ack";
        break;
      }
      if (only === "continue") return "continue-ack";
      break;
    case "cancel":
      break;
  }
  throw new NegotiationError("bad-request", `not a stanza session negotiation message (${form.type}: ${present.join(",") || "no action field"})`);
}

/** Quick routing test: a message carrying a feature-neg element, or an error message. */
export function isNegotiationStanza(stanza: Element): boolean {
  if (stanza.name !== "message") return false;
  if (stanza.getChild("feature", NS.featureNeg)) return true;
  const err = stanza.attrs.type === "error" ? stanza.getChild("error") : undefined;
  return err?.getChild("feature", NS.featureNeg) !== undefined;
}

// ---------------------------------------------------------------------------------------
// Parsing

function optJid(v: unknown, what: string): Jid | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw new NegotiationError("bad-request", `bad '${what}'`);
  try {
    return parseJid(v);
  } catch {
    throw new NegotiationError("bad-request", `malformed '${what}' address`);
  }
}

function optString(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

function parseAmp(stanza: Element): Amp | undefined {
  const amp = stanza.getChild("amp", NS.amp);
  if (!amp) return undefined;
  const rules: AmpRule[] = [];
  for (const r of amp.getChildren("rule")) {
    const { action, condition, value } = r.attrs as Record<string, unknown>;
    if (typeof action === "string" && typeof condition === "string" && typeof value === "string") rules.push({ action, condition, value });
  }
  const ph = amp.attrs["per-hop"] as unknown;
  return { rules, ...(ph === "true" || ph === "1" ? { perHop: true } : {}) };
}

function featureForm(feature: Element): DataForm {
  const x = findForm(feature);
  if (!x) throw new NegotiationError("bad-request", "feature-neg element without a data form");
  try {
    return parseForm(x);
  } catch (e) {
    if (e instanceof FormError) throw new NegotiationError("bad-request", e.message);
    throw e;
  }
}

/** Reads the `<error/>` child of an error stanza. */
export function parseStanzaError(error: Element): StanzaErrorInfo {
  let condition: StanzaErrorCondition | undefined;
  let text: string | undefined;
  const fields: string[] = [];
  for (const c of elements(error)) {
    const ns = c.getNS();
    if (ns === NS.stanzas) {
      if (c.name === "text") text ??= c.getText();
      else if (condition === undefined) condition = isStanzaErrorCondition(c.name) ? c.name : "undefined-condition";
    } else if (ns === NS.featureNeg && c.name === "feature") {
      for (const fd of c.getChildren("field")) {
        const v = fd.attrs.var as unknown;
        if (typeof v === "string") fields.push(v);
      }
    }
  }
  const t = error.attrs.type as unknown;
  const code = optString(error.attrs.code);
  return {
    type: typeof t === "string" && (STANZA_ERROR_TYPES as readonly string[]).includes(t) ? (t as StanzaErrorType) : "cancel",
    condition: condition ?? "undefined-condition",
    fields,
    ...(code !== undefined ? { code } : {}),
    ...(text !== undefined ? { text } : {}),
  };
}

/**
 * Parses a negotiation message or a negotiation error. Throws {@link NegotiationError}
 * (bad-request for malformed input, service-unavailable for a form that is not urn:xmpp:ssn).
 */
export function parseNegotiationStanza(stanza: Element): NegotiationStanza {
  if (stanza.name !== "message") throw new NegotiationError("bad-request", "not a message");
  const from = optJid(stanza.attrs.from, "from");
  const to = optJid(stanza.attrs.to, "to");
  const id = optString(stanza.attrs.id);
  const thread = getThread(stanza);
  const threadParent = getThreadParent(stanza);
  const feature = stanza.getChild("feature", NS.featureNeg);
  const addr = {
    ...(id !== undefined ? { id } : {}),
    ...(from !== undefined ? { from } : {}),
    ...(to !== undefined ? { to } : {}),
  };
  const threading = {
    ...(thread !== undefined ? { thread } : {}),
    ...(threadParent !== undefined ? { threadParent } : {}),
  };
  const type = stanza.attrs.type as unknown;
  if (type === "error") {
    const err = stanza.getChild("error");
    if (!err) throw new NegotiationError("bad-request", "error message without <error/>");
    let echo: { form?: DataForm } | undefined;
    if (feature) {
      let form: DataForm | undefined;
      try {
        form = featureForm(feature);
      } catch {
        form = undefined; // an echo we cannot read is still an echo
      }
      echo = form ? { form } : {};
    }
    return { kind: "error", ...addr, ...threading, ...(echo ? { echo } : {}), error: parseStanzaError(err) };
  }
  if (type !== undefined && type !== "normal" && type !== "chat")
    throw new NegotiationError("bad-request", `negotiation in a message of type '${String(type)}'`);
  if (!feature) throw new NegotiationError("bad-request", "no feature-neg element");
  // Section 4.1: "The stanza MUST contain a <thread/> element".
  if (thread === undefined) throw new NegotiationError("bad-request", "negotiation message without a thread");
  if (stanza.getChild("body")) throw new NegotiationError("bad-request", "negotiation message with a <body/>");
  const form = featureForm(feature);
  const action = classifyForm(form);
  const amp = parseAmp(stanza);
  return {
    kind: "negotiation",
    ...(type !== undefined ? { type: type as NegotiationMessageType } : {}),
    ...addr,
    thread,
    ...(threadParent !== undefined ? { threadParent } : {}),
    action,
    form,
    ...(amp ? { amp } : {}),
  };
}

// ---------------------------------------------------------------------------------------
// Building

export interface BuildOptions {
  /**
   * Emit `<required/>` for fields flagged required (default true: XEP-0155 section 4.2 and
   * XEP-0136 section 3.1 give it meaning). The ESession layer may turn it off so that its
   * MACed forms contain no empty elements (interpretation row 7).
   */
  readonly emitRequired?: boolean;
}

function formElement(form: DataForm, o: BuildOptions): Element {
  const x = formToXml(form);
  if (o.emitRequired === false) return x;
  // formToXml never emits empty elements; add <required/> after values/options, as in
  // the XEP-0155 examples.
  const fieldEls = x.getChildren("field");
  for (const fd of form.fields) {
    if (!fd.required) continue;
    const fe = fieldEls.find((e) => e.attrs.var === fd.var);
    fe?.cnode(el("required"));
  }
  return x;
}

function ampElement(a: Amp): Element {
  return el(
    "amp",
    { xmlns: NS.amp, "per-hop": a.perHop ? "true" : undefined },
    ...a.rules.map((r) => el("rule", { action: r.action, condition: r.condition, value: r.value })),
  );
}

function threadElement(thread: ThreadId, parent: ThreadId | undefined): Element {
  return el("thread", { parent }, thread);
}

/**
 * Builds a negotiation message or error from its typed form. Throws
 * {@link NegotiationError} (bad-request) if `action` does not match the form.
 */
export function buildNegotiationStanza(msg: NegotiationStanza, o: BuildOptions = {}): Element {
  if (msg.kind === "error") {
    const e = msg.error;
    return el(
      "message",
      { type: "error", id: msg.id, from: msg.from, to: msg.to },
      msg.thread !== undefined ? threadElement(msg.thread, msg.threadParent) : undefined,
      msg.echo ? el("feature", { xmlns: NS.featureNeg }, msg.echo.form ? formElement(msg.echo.form, o) : undefined) : undefined,
      errorElement(e.condition, e.type, e.code, e.text, e.fields),
    );
  }
  const action = classifyForm(msg.form);
  if (action !== msg.action) throw new NegotiationError("bad-request", `form is a '${action}', not a '${msg.action}'`);
  return el(
    "message",
    { type: msg.type, id: msg.id, from: msg.from, to: msg.to },
    threadElement(msg.thread, msg.threadParent),
    el("feature", { xmlns: NS.featureNeg }, formElement(msg.form, o)),
    msg.amp ? ampElement(msg.amp) : undefined,
  );
}

/**
 * An urn:xmpp:ssn form: FORM_TYPE first (hidden in 'form' type forms, untyped in answers,
 * as in the XEP-0155 examples), then `fields`.
 */
export function ssnForm(type: FormType, fields: readonly Field[], title?: string): DataForm {
  const ft: Field = type === "form" ? f.hidden("FORM_TYPE", SSN_FORM_TYPE) : f.value("FORM_TYPE", SSN_FORM_TYPE);
  return { type, fields: [ft, ...fields], ...(title !== undefined ? { title } : {}) };
}

/** Who a negotiation message is addressed to and which session it belongs to. */
export interface Route {
  readonly to: Jid;
  readonly from?: Jid;
  readonly thread: ThreadId;
  readonly id?: string;
}

function message(r: Route, action: SsnAction, form: DataForm, amp: Amp | undefined, o: BuildOptions): Element {
  // Section 4.1: type SHOULD be "normal"; we say so explicitly, as the examples do.
  return buildNegotiationStanza(
    {
      kind: "negotiation",
      type: "normal",
      to: r.to,
      thread: r.thread,
      action,
      form,
      ...(r.from !== undefined ? { from: r.from } : {}),
      ...(r.id !== undefined ? { id: r.id } : {}),
      ...(amp ? { amp } : {}),
    },
    o,
  );
}

const boolField = (name: string, v: boolean): Field => f.value(name, v ? "1" : "0");

function reasonField(reason: string | undefined): Field[] {
  return reason === undefined ? [] : [{ var: "reason", type: "text-single", values: [reason], options: [] }];
}

/** Section 4.1: a request ([1]); `fields` are the parameters after FORM_TYPE and accept. */
export function buildRequest(r: Route & { fields: readonly Field[]; title?: string; amp?: Amp }, o: BuildOptions = {}): Element {
  const accept: Field = { var: "accept", type: "boolean", label: "Accept this session?", values: ["1"], options: [], required: true };
  return message(r, "request", ssnForm("form", [accept, ...r.fields], r.title), r.amp, o);
}

/** Sections 4.2 / 4.3: accept ([2]) with the selected values, or decline ([3]) with a reason. */
export function buildResponse(r: Route & { accept: boolean; fields?: readonly Field[]; reason?: string }, o: BuildOptions = {}): Element {
  const fields = r.accept ? [boolField("accept", true), ...(r.fields ?? [])] : [boolField("accept", false), ...reasonField(r.reason)];
  return message(r, r.accept ? "accept" : "decline", ssnForm("submit", fields), undefined, o);
}

/** Section 4.4: complete ([4]) or cancel ([5]) the negotiation. */
export function buildCompletion(r: Route & { accept: boolean; reason?: string }, o: BuildOptions = {}): Element {
  return message(r, r.accept ? "complete" : "cancel", ssnForm("result", [boolField("accept", r.accept), ...reasonField(r.reason)]), undefined, o);
}

/** Section 6: a renegotiation request ([6]); no 'accept' field. */
export function buildRenegotiation(r: Route & { fields: readonly Field[] }, o: BuildOptions = {}): Element {
  const reneg: Field = { var: "renegotiate", type: "boolean", label: "Renegotiate?", values: ["1"], options: [], required: true };
  return message(r, "renegotiate", ssnForm("form", [reneg, ...r.fields]), undefined, o);
}

/** Section 6: accept ([7]) or reject ([8]) a renegotiation. */
export function buildRenegotiationResponse(r: Route & { accept: boolean; fields?: readonly Field[] }, o: BuildOptions = {}): Element {
  const fields = [boolField("renegotiate", r.accept), ...(r.accept ? (r.fields ?? []) : [])];
  return message(r, r.accept ? "renegotiate-accept" : "renegotiate-decline", ssnForm("submit", fields), undefined, o);
}

/** Section 7: terminate ([9]). */
export function buildTermination(r: Route, o: BuildOptions = {}): Element {
  return message(r, "terminate", ssnForm("submit", [boolField("terminate", true)]), undefined, o);
}

/** Section 7: acknowledge a termination (type 'result'). */
export function buildTerminationAck(r: Route, o: BuildOptions = {}): Element {
  return message(r, "terminate-ack", ssnForm("result", [boolField("terminate", true)]), undefined, o);
}

/** Section 5: ask to continue the session from another of our resources. */
export function buildContinue(r: Route & { resource: string }, o: BuildOptions = {}): Element {
  return message(r, "continue", ssnForm("submit", [f.value("continue", r.resource)]), undefined, o);
}

/** Section 5: accept the switch to the other party's new resource. */
export function buildContinueAck(r: Route & { resource: string }, o: BuildOptions = {}): Element {
  return message(r, "continue-ack", ssnForm("result", [f.value("continue", r.resource)]), undefined, o);
}

// ---------------------------------------------------------------------------------------
// Errors

/**
 * Error shapes: "xep-0155" (default) as XEP-0155 section 4.3 shows them (legacy `code`,
 * not-acceptable of type 'modify'); "xep-0116" as XEP-0116 v0.16 section 4.4 shows them
 * (no `code`, not-acceptable of type 'cancel').
 */
export type ErrorStyle = "xep-0155" | "xep-0116";

export interface NegotiationErrorOptions {
  /** Fields not implemented / with no acceptable option, named in `<error><feature/>`. */
  readonly fields?: readonly string[];
  /** Human-readable `<text/>` (RFC 6120 section 8.3.2). */
  readonly text?: string;
  readonly style?: ErrorStyle;
  /** Overrides the error type the style implies. */
  readonly type?: StanzaErrorType;
  /** Our address (defaults to the request's 'to', which may be our bare JID). */
  readonly from?: Jid;
}

function errorElement(
  condition: StanzaErrorCondition,
  type: StanzaErrorType,
  code: string | undefined,
  text: string | undefined,
  fields: readonly string[],
): Element {
  return el(
    "error",
    { code, type },
    el(condition, { xmlns: NS.stanzas }),
    text !== undefined ? el("text", { xmlns: NS.stanzas }, text) : undefined,
    fields.length ? el("feature", { xmlns: NS.featureNeg }, ...fields.map((v) => el("field", { var: v }))) : undefined,
  );
}

/**
 * The error answering a negotiation `request` (a request, renegotiation or any other
 * negotiation message), shaped as XEP-0155 section 4.3 (and XEP-0116 section 4.4) shows:
 *
 * ```xml
 * <message type='error' from=(our JID) to=(request 'from') [id=(request id)]>
 *   <thread>(mirrored)</thread>
 *   <feature xmlns='http://jabber.org/protocol/feature-neg'>(the request's, echoed)</feature>
 *   <error code='406' type='modify'>
 *     <not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
 *     <feature xmlns='http://jabber.org/protocol/feature-neg'><field var='security'/></feature>
 *   </error>
 * </message>
 * ```
 * Throws {@link NegotiationError} (unexpected-request) if `request` is itself an error:
 * RFC 6120 section 8.3.1 forbids answering an error with an error.
 */
export function negotiationErrorStanza(request: Element, condition: NegotiationCondition, opts: NegotiationErrorOptions = {}): Element {
  if (request.attrs.type === "error") throw new NegotiationError("unexpected-request", "an error stanza is never answered with an error");
  const style = opts.style ?? "xep-0155";
  const def = NEGOTIATION_ERROR_TYPES[condition];
  const type = opts.type ?? (style === "xep-0116" && condition === "not-acceptable" ? "cancel" : def.type);
  const code = style === "xep-0155" ? def.code : undefined;
  const thread = getThread(request);
  const feature = request.getChild("feature", NS.featureNeg);
  return el(
    "message",
    { type: "error", id: optString(request.attrs.id), from: opts.from ?? optString(request.attrs.to), to: optString(request.attrs.from) },
    thread !== undefined ? threadElement(thread, getThreadParent(request)) : undefined,
    feature ? deepClone(feature) : undefined,
    errorElement(condition, type, code, opts.text, opts.fields ?? []),
  );
}

/**
 * The error of a {@link NegotiationError}, ready to send. Its fields are named only for the
 * two conditions XEP-0155 section 4.3 defines that for (feature-not-implemented,
 * not-acceptable).
 */
export function errorStanzaFor(request: Element, e: NegotiationError, opts: Omit<NegotiationErrorOptions, "fields"> = {}): Element {
  const named = e.condition === "feature-not-implemented" || e.condition === "not-acceptable";
  return negotiationErrorStanza(request, e.condition, { ...opts, ...(named && e.fields ? { fields: e.fields } : {}) });
}
