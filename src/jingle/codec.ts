/**
 * Jingle element codec: <jingle/> with its contents (description, transport, security
 * precondition) and reason, as typed objects and back. No state here.
 *
 * Spec:
 * - XEP-0166 v1.1.2 (Jingle): section 7 "Formal Definition" (jingle: action, sid,
 *   initiator, responder; content: creator, name, senders; reason with one condition and
 *   optional text, section 7.4), section 8 (security preconditions, security-info),
 *   section 9 (errors in 'urn:xmpp:jingle:errors:1').
 * - draft-meyer-xmpp-e2e-encryption-02 section 3: <security
 *   xmlns='urn:xmpp:jingle:security:xtls:0'> with <fingerprint algo='...'/> and
 *   <method name='x509|srp'/>. The draft's examples have two typos (the jingle start tag
 *   closed before its attributes; a self-closed <security/> followed by children); the
 *   fixtures in test/vectors/jingle/ carry the evident intended XML.
 * - XEP-0261 v1.0 section 2: <transport xmlns='urn:xmpp:jingle:transports:ibb:1'
 *   block-size sid stanza/> (the draft and XEP-0247 use ':0'; both are read, we write
 *   what we were offered, ':1' by default).
 * - XEP-0247 v0.2 (Jingle XML Streams): description 'urn:xmpp:jingle:apps:xmlstream:0'.
 * - XEP-0234 v0.19.1 (Jingle File Transfer): the file-offer description (./file.ts).
 * - XEP-0260 v1.0.3 (Jingle SOCKS5 Bytestreams Transport): <transport
 *   xmlns='urn:xmpp:jingle:transports:s5b:1' sid mode dstaddr> with <candidate/>s, and the
 *   transport-info payloads candidate-used, candidate-error, activated, proxy-error.
 */
import { el, elements, NS, type Element } from "../xml/index.js";
import { attrOf } from "../adapters/connection.js";
import { isNmtoken } from "../ibb/codec.js";
import { NS_FILE_TRANSFER, buildFileDescription, parseFileDescription, type FileOffer } from "./file.js";

export const NS_JINGLE = "urn:xmpp:jingle:1";
export const NS_JINGLE_ERRORS = "urn:xmpp:jingle:errors:1";
export const NS_XTLS = "urn:xmpp:jingle:security:xtls:0";
export const NS_XMLSTREAM = "urn:xmpp:jingle:apps:xmlstream:0";
export const NS_IBB_TRANSPORT = "urn:xmpp:jingle:transports:ibb:1";
export const NS_IBB_TRANSPORT_0 = "urn:xmpp:jingle:transports:ibb:0";
export const NS_S5B_TRANSPORT = "urn:xmpp:jingle:transports:s5b:1";

/** XEP-0260 v1.0.3 section 2.2 candidate. */
export interface S5bCandidate {
  readonly cid: string;
  readonly host: string;
  readonly jid: string;
  readonly port: number;
  readonly priority: number;
  readonly type: "assisted" | "direct" | "proxy" | "tunnel";
}

export const JINGLE_ACTIONS = [
  "content-accept",
  "content-add",
  "content-modify",
  "content-reject",
  "content-remove",
  "description-info",
  "security-info",
  "session-accept",
  "session-info",
  "session-initiate",
  "session-terminate",
  "transport-accept",
  "transport-info",
  "transport-reject",
  "transport-replace",
] as const;
export type JingleAction = (typeof JINGLE_ACTIONS)[number];

/** XEP-0166 section 7.4 reason conditions. */
export const REASON_CONDITIONS = [
  "alternative-session",
  "busy",
  "cancel",
  "connectivity-error",
  "decline",
  "expired",
  "failed-application",
  "failed-transport",
  "general-error",
  "gone",
  "incompatible-parameters",
  "media-error",
  "security-error",
  "success",
  "timeout",
  "unsupported-applications",
  "unsupported-transports",
] as const;
export type ReasonCondition = (typeof REASON_CONDITIONS)[number];

export interface Reason {
  readonly condition: ReasonCondition;
  readonly text?: string;
}

export type Fingerprint = { readonly algo: string; readonly value: string };

/** The XTLS security precondition (draft-meyer-xmpp-e2e-encryption-02 section 3). */
export interface XtlsSecurity {
  readonly kind: "xtls";
  readonly fingerprint?: Fingerprint;
  /** Method names in document order ("x509", "srp", or anything else a peer sends). */
  readonly methods: readonly string[];
}

export type Security = XtlsSecurity | { readonly kind: "unknown"; readonly ns: string };

export type Description =
  | { readonly kind: "xmlstream" }
  | { readonly kind: "file"; readonly file: FileOffer }
  | { readonly kind: "unknown"; readonly ns: string; readonly element: Element };

export type Transport =
  | {
      readonly kind: "ibb";
      readonly ns: typeof NS_IBB_TRANSPORT | typeof NS_IBB_TRANSPORT_0;
      readonly sid: string;
      readonly blockSize: number;
      readonly stanza?: "iq" | "message";
    }
  | {
      readonly kind: "s5b";
      readonly sid: string;
      readonly mode?: "tcp" | "udp";
      readonly dstaddr?: string;
      readonly candidates: readonly S5bCandidate[];
      /** transport-info payloads (XEP-0260 sections 2.4-2.6). */
      readonly candidateUsed?: string;
      readonly candidateError?: boolean;
      readonly activated?: string;
      readonly proxyError?: boolean;
    }
  | { readonly kind: "unknown"; readonly ns: string; readonly element: Element };

export interface Content {
  readonly creator: "initiator" | "responder";
  readonly name: string;
  readonly senders?: "both" | "initiator" | "none" | "responder";
  readonly description?: Description;
  readonly transport?: Transport;
  readonly security?: Security;
}

export interface Jingle {
  readonly action: JingleAction;
  readonly sid: string;
  readonly initiator?: string;
  readonly responder?: string;
  readonly contents: readonly Content[];
  readonly reason?: Reason;
}

export type ParseResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

const fail = <T>(reason: string): ParseResult<T> => ({ ok: false, reason });

function isOneOf<T extends string>(list: readonly T[], s: string | undefined): s is T {
  return s !== undefined && (list as readonly string[]).includes(s);
}

/** The <jingle/> child of an iq, if any. */
export function jingleChild(iq: Element): Element | undefined {
  return elements(iq).find((c) => c.name === "jingle" && c.attrs.xmlns === NS_JINGLE);
}

export function parseJingle(j: Element): ParseResult<Jingle> {
  const action = attrOf(j, "action");
  const sid = attrOf(j, "sid");
  if (!isOneOf(JINGLE_ACTIONS, action)) return fail("unknown or missing action");
  if (sid === undefined || sid.length === 0) return fail("missing sid");
  const contents: Content[] = [];
  let reason: Reason | undefined;
  for (const c of elements(j)) {
    if (c.name === "content") {
      const r = parseContent(c);
      if (!r.ok) return fail(r.reason);
      contents.push(r.value);
    } else if (c.name === "reason") {
      const cond = elements(c).find((x) => x.name !== "text");
      if (!isOneOf(REASON_CONDITIONS, cond?.name)) return fail("unknown reason condition");
      const text = elements(c).find((x) => x.name === "text")?.getText();
      reason = { condition: cond.name as ReasonCondition, ...(text === undefined ? {} : { text }) };
    }
  }
  const initiator = attrOf(j, "initiator");
  const responder = attrOf(j, "responder");
  return {
    ok: true,
    value: {
      action,
      sid,
      ...(initiator === undefined ? {} : { initiator }),
      ...(responder === undefined ? {} : { responder }),
      contents,
      ...(reason === undefined ? {} : { reason }),
    },
  };
}

function parseContent(c: Element): ParseResult<Content> {
  const creator = attrOf(c, "creator");
  const name = attrOf(c, "name");
  const senders = attrOf(c, "senders");
  if (creator !== "initiator" && creator !== "responder") return fail("content creator missing or invalid");
  if (name === undefined || name.length === 0) return fail("content name missing");
  if (senders !== undefined && !isOneOf(["both", "initiator", "none", "responder"] as const, senders))
    return fail("invalid senders");
  let description: Description | undefined;
  let transport: Transport | undefined;
  let security: Security | undefined;
  for (const x of elements(c)) {
    const ns = attrOf(x, "xmlns") ?? "";
    if (x.name === "description") {
      if (ns === NS_XMLSTREAM) description = { kind: "xmlstream" };
      else if (ns === NS_FILE_TRANSFER) {
        const file = parseFileDescription(x);
        if (file === undefined) return fail("invalid file description");
        description = { kind: "file", file };
      } else description = { kind: "unknown", ns, element: x };
    } else if (x.name === "transport") {
      if (ns === NS_IBB_TRANSPORT || ns === NS_IBB_TRANSPORT_0) {
        const sid = attrOf(x, "sid");
        const bs = attrOf(x, "block-size");
        const st = attrOf(x, "stanza");
        if (sid === undefined || !isNmtoken(sid)) return fail("ibb transport sid missing or not an NMTOKEN");
        if (bs === undefined || !/^[0-9]{1,5}$/.test(bs) || Number(bs) < 1 || Number(bs) > 65535)
          return fail("ibb transport block-size missing or out of range");
        if (st !== undefined && st !== "iq" && st !== "message") return fail("ibb transport stanza invalid");
        transport = { kind: "ibb", ns, sid, blockSize: Number(bs), ...(st === undefined ? {} : { stanza: st }) };
      } else if (ns === NS_S5B_TRANSPORT) {
        const r = parseS5b(x);
        if (!r.ok) return fail(r.reason);
        transport = r.value;
      } else transport = { kind: "unknown", ns, element: x };
    } else if (x.name === "security") {
      if (ns === NS_XTLS) {
        const fpEl = elements(x).find((y) => y.name === "fingerprint");
        let fingerprint: Fingerprint | undefined;
        if (fpEl !== undefined) {
          const algo = attrOf(fpEl, "algo");
          const value = fpEl.getText().trim();
          if (algo === undefined || value.length === 0) return fail("fingerprint without algo or value");
          fingerprint = { algo, value };
        }
        const methods = elements(x)
          .filter((y) => y.name === "method")
          .map((y) => attrOf(y, "name"))
          .filter((n): n is string => n !== undefined && n.length > 0);
        security = { kind: "xtls", ...(fingerprint === undefined ? {} : { fingerprint }), methods };
      } else security = { kind: "unknown", ns };
    }
  }
  return {
    ok: true,
    value: {
      creator,
      name,
      ...(senders === undefined ? {} : { senders }),
      ...(description === undefined ? {} : { description }),
      ...(transport === undefined ? {} : { transport }),
      ...(security === undefined ? {} : { security }),
    },
  };
}

export function buildJingle(j: Jingle): Element {
  return el(
    "jingle",
    { xmlns: NS_JINGLE, action: j.action, initiator: j.initiator, responder: j.responder, sid: j.sid },
    ...j.contents.map(buildContent),
    j.reason === undefined
      ? undefined
      : el("reason", {}, el(j.reason.condition), j.reason.text === undefined ? undefined : el("text", {}, j.reason.text)),
  );
}

function buildContent(c: Content): Element {
  return el(
    "content",
    { creator: c.creator, name: c.name, senders: c.senders },
    c.description === undefined ? undefined : buildDescription(c.description),
    c.transport === undefined ? undefined : buildTransport(c.transport),
    c.security === undefined || c.security.kind !== "xtls" ? undefined : buildSecurity(c.security),
  );
}

function buildDescription(d: Description): Element {
  switch (d.kind) {
    case "xmlstream":
      return el("description", { xmlns: NS_XMLSTREAM });
    case "file":
      return buildFileDescription(d.file);
    case "unknown":
      return d.element;
  }
}

const CANDIDATE_TYPES = ["assisted", "direct", "proxy", "tunnel"] as const;

function parseS5b(x: Element): ParseResult<Transport> {
  const sid = attrOf(x, "sid");
  const mode = attrOf(x, "mode");
  const dstaddr = attrOf(x, "dstaddr");
  if (sid === undefined || sid.length === 0) return fail("s5b transport without sid");
  if (mode !== undefined && mode !== "tcp" && mode !== "udp") return fail("s5b mode invalid");
  const candidates: S5bCandidate[] = [];
  let candidateUsed: string | undefined;
  let candidateError = false;
  let activated: string | undefined;
  let proxyError = false;
  for (const c of elements(x)) {
    if (c.name === "candidate") {
      const cid = attrOf(c, "cid");
      const host = attrOf(c, "host");
      const jid = attrOf(c, "jid");
      const port = Number(attrOf(c, "port") ?? "1080");
      const priority = Number(attrOf(c, "priority"));
      const type = attrOf(c, "type") ?? "direct";
      if (cid === undefined || host === undefined || jid === undefined) return fail("candidate without cid, host or jid");
      if (!Number.isInteger(port) || port < 1 || port > 65535 || !Number.isInteger(priority) || priority < 0) return fail("candidate port or priority invalid");
      if (!isOneOf(CANDIDATE_TYPES, type)) return fail("candidate type invalid");
      candidates.push({ cid, host, jid, port, priority, type });
    } else if (c.name === "candidate-used") candidateUsed = attrOf(c, "cid");
    else if (c.name === "candidate-error") candidateError = true;
    else if (c.name === "activated") activated = attrOf(c, "cid");
    else if (c.name === "proxy-error") proxyError = true;
  }
  return {
    ok: true,
    value: {
      kind: "s5b",
      sid,
      ...(mode === undefined ? {} : { mode }),
      ...(dstaddr === undefined ? {} : { dstaddr }),
      candidates,
      ...(candidateUsed === undefined ? {} : { candidateUsed }),
      ...(candidateError ? { candidateError } : {}),
      ...(activated === undefined ? {} : { activated }),
      ...(proxyError ? { proxyError } : {}),
    },
  };
}

function buildTransport(t: Transport): Element {
  if (t.kind === "unknown") return t.element;
  if (t.kind === "s5b")
    return el(
      "transport",
      { xmlns: NS_S5B_TRANSPORT, dstaddr: t.dstaddr, mode: t.mode, sid: t.sid },
      ...t.candidates.map((c) => el("candidate", { cid: c.cid, host: c.host, jid: c.jid, port: c.port, priority: c.priority, type: c.type })),
      t.candidateUsed === undefined ? undefined : el("candidate-used", { cid: t.candidateUsed }),
      t.candidateError === true ? el("candidate-error") : undefined,
      t.activated === undefined ? undefined : el("activated", { cid: t.activated }),
      t.proxyError === true ? el("proxy-error") : undefined,
    );
  return el("transport", { xmlns: t.ns, "block-size": t.blockSize, sid: t.sid, stanza: t.stanza });
}

export function buildSecurity(s: XtlsSecurity): Element {
  return el(
    "security",
    { xmlns: NS_XTLS },
    s.fingerprint === undefined ? undefined : el("fingerprint", { algo: s.fingerprint.algo }, s.fingerprint.value),
    ...s.methods.map((m) => el("method", { name: m })),
  );
}

export function jingleIq(to: string, id: string, j: Jingle): Element {
  return el("iq", { xmlns: NS.client, type: "set", to, id }, buildJingle(j));
}

/** XEP-0166 section 9 error conditions and the XMPP condition each rides on. */
export const JINGLE_ERRORS = {
  "out-of-order": "unexpected-request",
  "tie-break": "conflict",
  "unknown-session": "item-not-found",
  "unsupported-info": "feature-not-implemented",
  "security-required": "not-acceptable",
} as const;
export type JingleErrorCondition = keyof typeof JINGLE_ERRORS;

/** An iq error reply with the XMPP condition and the Jingle-specific one (section 9). */
export function jingleErrorReply(iq: Element, jc: JingleErrorCondition | undefined, xmpp?: string): Element {
  const cond = xmpp ?? (jc === undefined ? "bad-request" : JINGLE_ERRORS[jc]);
  return el(
    "iq",
    { xmlns: NS.client, type: "error", id: attrOf(iq, "id"), to: attrOf(iq, "from") },
    el(
      "error",
      { type: cond === "conflict" || cond === "bad-request" ? "modify" : "cancel" },
      el(cond, { xmlns: NS.stanzas }),
      jc === undefined ? undefined : el(jc, { xmlns: NS_JINGLE_ERRORS }),
    ),
  );
}
