/**
 * Codec for service discovery information: disco#info requests, results and errors.
 *
 * Spec: XEP-0030 v2.5.0 section 3.1 "Basic Protocol" (an empty `<query/>` in an IQ get;
 * a result with one or more `<identity category type [name] [xml:lang]/>` and
 * `<feature var/>` children; item-not-found / service-unavailable errors echo the query),
 * section 3.2 "Info Nodes" (the response MUST mirror the 'node' attribute). XEP-0128
 * (extended information: `<x xmlns='jabber:x:data' type='result'/>` forms in the query).
 *
 * Parsing is tolerant (it keeps duplicates so that XEP-0115 verification can reject
 * them); building emits exactly what it is given.
 */
import type { Jid } from "../core/types.js";
import { parseJid } from "../core/types.js";
import { getLimits } from "../limits.js";
import { FormError, formToXml, parseForm, type DataForm } from "../forms/codec.js";
import { el, elements, NS, type Element } from "../xml/index.js";

export interface Identity {
  readonly category: string;
  readonly type: string;
  readonly name?: string;
  /** xml:lang */
  readonly lang?: string;
}

export interface DiscoInfo {
  readonly identities: readonly Identity[];
  readonly features: readonly string[];
  /** XEP-0128 extended information forms. */
  readonly forms: readonly DataForm[];
}

export type DiscoCondition = "bad-request" | "item-not-found" | "service-unavailable" | "feature-not-implemented";

const ERROR_TYPES: Readonly<Record<DiscoCondition, "cancel" | "modify">> = {
  "bad-request": "modify",
  "item-not-found": "cancel",
  "service-unavailable": "cancel",
  "feature-not-implemented": "cancel",
};

/** The disco layer's error, with the stanza error condition it maps to. */
export class DiscoError extends Error {
  override readonly name = "DiscoError";
  constructor(
    readonly condition: DiscoCondition,
    reason: string,
  ) {
    super(`${condition}: ${reason}`);
  }
}

/** A disco#info get as received. */
export interface InfoQuery {
  readonly id: string;
  readonly from?: Jid;
  readonly to?: Jid;
  readonly node?: string;
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** Builds `<query xmlns='http://jabber.org/protocol/disco#info' [node]>` with the info. */
export function infoToXml(info: DiscoInfo, node?: string): Element {
  return el(
    "query",
    { xmlns: NS.disco, node },
    ...info.identities.map((i) => el("identity", { category: i.category, type: i.type, name: i.name, "xml:lang": i.lang })),
    ...info.features.map((v) => el("feature", { var: v })),
    ...info.forms.map((f) => formToXml(f)),
  );
}

/**
 * Reads a disco#info `<query/>`. Identities without category or type and features without
 * var are malformed (section 3.1 "MUST possess"); forms that do not parse are skipped
 * (XEP-0115 section 5.4 ignores unusable forms). Throws {@link DiscoError} (bad-request).
 */
export function parseInfo(query: Element): DiscoInfo {
  if (query.name !== "query" || query.getNS() !== NS.disco) throw new DiscoError("bad-request", "not a disco#info query");
  const identities: Identity[] = [];
  const features: string[] = [];
  const forms: DataForm[] = [];
  // Bounded answers (../limits.ts): the result is hashed for XEP-0115 and may be cached.
  const lim = getLimits();
  for (const c of elements(query)) {
    if (c.name === "identity") {
      if (identities.length >= lim.maxDiscoIdentities) throw new DiscoError("bad-request", "too many identities");
      const category = str(c.attrs.category);
      const type = str(c.attrs.type);
      if (category === undefined || type === undefined) throw new DiscoError("bad-request", "identity without category or type");
      const name = str(c.attrs.name);
      const lang = str(c.attrs["xml:lang"]);
      identities.push({ category, type, ...(name !== undefined ? { name } : {}), ...(lang !== undefined ? { lang } : {}) });
    } else if (c.name === "feature") {
      if (features.length >= lim.maxDiscoFeatures) throw new DiscoError("bad-request", "too many features");
      const v = str(c.attrs.var);
      if (v === undefined) throw new DiscoError("bad-request", "feature without var");
      features.push(v);
    } else if (c.name === "x" && c.getNS() === NS.data) {
      if (forms.length >= lim.maxDiscoForms) throw new DiscoError("bad-request", "too many extension forms");
      try {
        forms.push(parseForm(c));
      } catch (e) {
        if (!(e instanceof FormError)) throw e;
      }
    }
  }
  return { identities, features, forms };
}

/** The 'node' attribute of a disco#info query element, if any. */
export function queryNode(query: Element): string | undefined {
  return str(query.attrs.node);
}

/** An IQ get asking `to` for its information (optionally about `node`). */
export function buildInfoQuery(q: { readonly id: string; readonly to: Jid; readonly from?: Jid; readonly node?: string }): Element {
  return el("iq", { type: "get", id: q.id, to: q.to, from: q.from }, el("query", { xmlns: NS.disco, node: q.node }));
}

/**
 * Recognises a disco#info get; undefined for any other stanza. Throws {@link DiscoError}
 * (bad-request) for a disco#info get we cannot answer properly (no id, bad addresses).
 */
export function parseInfoQuery(iq: Element): InfoQuery | undefined {
  if (iq.name !== "iq" || iq.attrs.type !== "get") return undefined;
  const q = iq.getChild("query", NS.disco);
  if (!q) return undefined;
  const id = str(iq.attrs.id);
  if (id === undefined) throw new DiscoError("bad-request", "iq without id");
  const jid = (v: unknown): Jid | undefined => {
    const s = str(v);
    if (s === undefined) return undefined;
    try {
      return parseJid(s);
    } catch {
      throw new DiscoError("bad-request", "malformed address");
    }
  };
  const from = jid(iq.attrs.from);
  const to = jid(iq.attrs.to);
  const node = queryNode(q);
  return { id, ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}), ...(node !== undefined ? { node } : {}) };
}

/** The result answering `request` (section 3.1), mirroring its 'node' (section 3.2). */
export function buildInfoResult(request: InfoQuery, info: DiscoInfo, from?: Jid): Element {
  return el("iq", { type: "result", id: request.id, to: request.from, from: from ?? request.to }, infoToXml(info, request.node));
}

/** Reads the information from an IQ result. Throws {@link DiscoError}. */
export function parseInfoResult(iq: Element): DiscoInfo & { readonly node?: string } {
  if (iq.name !== "iq" || iq.attrs.type !== "result") throw new DiscoError("bad-request", "not an iq result");
  const q = iq.getChild("query", NS.disco);
  if (!q) throw new DiscoError("bad-request", "no disco#info query");
  const node = queryNode(q);
  return { ...parseInfo(q), ...(node !== undefined ? { node } : {}) };
}

/** An error answering `request`, echoing the (empty) query as the XEP-0030 examples do. */
export function discoErrorStanza(request: InfoQuery, condition: DiscoCondition, from?: Jid): Element {
  return el(
    "iq",
    { type: "error", id: request.id, to: request.from, from: from ?? request.to },
    el("query", { xmlns: NS.disco, node: request.node }),
    el("error", { type: ERROR_TYPES[condition] }, el(condition, { xmlns: NS.stanzas })),
  );
}
