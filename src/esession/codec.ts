/**
 * Codec for the four XEP-0217 negotiation messages and the ESession termination forms.
 *
 * Spec: XEP-0217 v0.1 sections "ESession Request" (Alice's form, field order, fixed
 * parameters table), "ESession Response" (Bob's submit form with my_nonce, dhkeys,
 * counter, nonce), "Sending Alice's Identity" (result form: nonce, rshashes, dhkeys,
 * identity, mac), "Sending Bob's Identity" (`<init/>` wrapper: nonce, srshash, identity,
 * mac), "ESession Termination". XEP-0155 section 4 (feature-neg wrapper, terminate).
 * Field order follows the one deployed implementation (interpretation note, last section).
 */
import { fromBase64, toBase64 } from "../core/bytes.js";
import { f, type DataForm, type Field, field, findForm, formToXml, offered, parseForm, value } from "../forms/codec.js";
import { el, elements, type Element, NS } from "../xml/index.js";
import { ESessionError } from "./errors.js";

export const SSN = NS.ssn;

export interface RequestOptions {
  readonly logging: readonly string[];
  readonly disclosure: readonly string[];
  readonly security: readonly string[];
  readonly cryptAlgs: readonly string[];
  readonly hashAlgs: readonly string[];
  readonly compress: readonly string[];
  readonly stanzas: readonly string[];
  readonly initPubkey: readonly string[];
  readonly respPubkey: readonly string[];
  readonly ver: readonly string[];
  readonly rekeyFreq: string;
  /** Absent in 3-message negotiations (XEP-0116 4.2: "there MUST be no 'sas_algs' field"). */
  readonly sasAlgs?: readonly string[];
  readonly signAlgs?: readonly string[];
  readonly myNonce: Uint8Array;
  readonly modp: readonly string[];
  /** 4-message: 'dhhashes' (He per group); 3-message: 'dhkeys' (e per group). */
  readonly dh: { readonly field: "dhhashes" | "dhkeys"; readonly values: readonly Uint8Array[] };
}

export interface ResponseChoice {
  readonly accept: boolean;
  readonly logging: string;
  readonly disclosure: string;
  readonly security: string;
  readonly cryptAlgs: string;
  readonly hashAlgs: string;
  readonly compress: string;
  readonly stanzas: readonly string[];
  readonly initPubkey: string;
  readonly respPubkey: string;
  readonly ver: string;
  readonly rekeyFreq: string;
  readonly sasAlgs?: string;
  readonly signAlgs?: string;
  readonly modp: string;
  readonly myNonce: Uint8Array;
  readonly dhkeys: Uint8Array;
  readonly counter: Uint8Array;
  readonly nonce: Uint8Array;
}

/** The request form (message 1). List fields carry `<option/>`s in preference order. */
export function requestForm(o: RequestOptions, style: "spec" | "gajim"): DataForm {
  const list = (name: string, opts: readonly string[]): Field => f.list(name, "list-single", opts);
  const hidden = (name: string, ...v: string[]): Field => f.hidden(name, ...v);
  /** One value: a hidden field; several: a list in preference order. */
  const choice = (name: string, opts: readonly string[]): Field => (opts.length === 1 ? hidden(name, ...opts) : list(name, opts));
  const fields: Field[] = [
    hidden("FORM_TYPE", SSN),
    f.bool("accept", true),
    list("logging", o.logging),
    list("disclosure", o.disclosure),
    list("security", o.security),
    // Negotiable in XEP-0116 (options in preference order); XEP-0217 / Gajim send them hidden.
    style === "gajim" ? hidden("crypt_algs", ...o.cryptAlgs) : list("crypt_algs", o.cryptAlgs),
    style === "gajim" ? hidden("hash_algs", ...o.hashAlgs) : list("hash_algs", o.hashAlgs),
    hidden("compress", ...o.compress),
    f.list("stanzas", "list-multi", o.stanzas),
    style === "gajim" ? list("init_pubkey", o.initPubkey) : choice("init_pubkey", o.initPubkey),
    style === "gajim" ? list("resp_pubkey", o.respPubkey) : choice("resp_pubkey", o.respPubkey),
    style === "gajim" ? hidden("ver", ...o.ver) : list("ver", o.ver),
    hidden("rekey_freq", o.rekeyFreq),
    ...(o.sasAlgs ? [hidden("sas_algs", ...o.sasAlgs)] : []),
    ...(o.signAlgs ? [style === "gajim" ? hidden("sign_algs", ...o.signAlgs) : choice("sign_algs", o.signAlgs)] : []),
    hidden("my_nonce", toBase64(o.myNonce)),
    list("modp", o.modp),
    hidden(o.dh.field, ...o.dh.values.map(toBase64)),
  ];
  return { type: "form", fields };
}

/** Bob's response form (message 2), in the request's field order. */
export function responseForm(r: ResponseChoice, requestOrder: readonly string[]): DataForm {
  const byName: Record<string, readonly string[]> = {
    FORM_TYPE: [SSN],
    accept: [r.accept ? "1" : "0"],
    logging: [r.logging],
    disclosure: [r.disclosure],
    security: [r.security],
    crypt_algs: [r.cryptAlgs],
    hash_algs: [r.hashAlgs],
    compress: [r.compress],
    stanzas: r.stanzas,
    init_pubkey: [r.initPubkey],
    resp_pubkey: [r.respPubkey],
    ver: [r.ver],
    rekey_freq: [r.rekeyFreq],
    ...(r.sasAlgs !== undefined ? { sas_algs: [r.sasAlgs] } : {}),
    ...(r.signAlgs !== undefined ? { sign_algs: [r.signAlgs] } : {}),
    my_nonce: [toBase64(r.myNonce)],
    modp: [r.modp],
    dhhashes: [toBase64(r.dhkeys)],
    dhkeys: [toBase64(r.dhkeys)],
  };
  const fields: Field[] = [];
  for (const name of requestOrder) {
    const v = byName[name];
    if (v === undefined) continue;
    fields.push(f.value(name === "dhhashes" ? "dhkeys" : name, ...v));
  }
  fields.push(f.value("counter", toBase64(r.counter)), f.value("nonce", toBase64(r.nonce)));
  return { type: "submit", fields };
}

export interface AliceIdentity {
  readonly nonce: Uint8Array;
  readonly rshashes: readonly Uint8Array[];
  readonly dhkeys: Uint8Array;
  readonly identity: Uint8Array;
  readonly mac: Uint8Array;
}

/**
 * Alice's result form without identity and mac (what formA2 normalizes). In a 3-message
 * negotiation it carries only the nonce (no rshashes, no dhkeys: XEP-0116 4.4.4).
 */
export function aliceIdentityForm(a: Omit<AliceIdentity, "identity" | "mac" | "dhkeys" | "rshashes"> & Partial<Pick<AliceIdentity, "dhkeys" | "rshashes">>): DataForm {
  return {
    type: "result",
    fields: [
      f.value("FORM_TYPE", SSN),
      f.value("accept", "1"),
      f.value("nonce", toBase64(a.nonce)),
      ...(a.rshashes ? [f.value("rshashes", ...a.rshashes.map(toBase64))] : []),
      ...(a.dhkeys ? [f.value("dhkeys", toBase64(a.dhkeys))] : []),
    ],
  };
}

export interface BobIdentity {
  readonly nonce: Uint8Array;
  readonly srshash: Uint8Array;
  readonly identity: Uint8Array;
  readonly mac: Uint8Array;
}

export function bobIdentityForm(b: Omit<BobIdentity, "identity" | "mac">): DataForm {
  return {
    type: "result",
    fields: [f.value("FORM_TYPE", SSN), f.value("nonce", toBase64(b.nonce)), f.value("srshash", toBase64(b.srshash))],
  };
}

export function withIdentity(form: DataForm, identity: Uint8Array, mac: Uint8Array): DataForm {
  return { ...form, fields: [...form.fields, f.value("identity", toBase64(identity)), f.value("mac", toBase64(mac))] };
}

export function wrapFeature(form: DataForm): Element {
  return el("feature", { xmlns: NS.featureNeg }, formToXml(form));
}

export function wrapInit(form: DataForm): Element {
  return el("init", { xmlns: NS.esessionInit }, formToXml(form));
}

/** The negotiation message a stanza carries, if any. */
export type Carried =
  | { readonly kind: "feature"; readonly x: Element; readonly form: DataForm }
  | { readonly kind: "init"; readonly x: Element; readonly form: DataForm };

export function carriedForm(stanza: Element): Carried | undefined {
  const feature = stanza.getChild("feature", NS.featureNeg);
  const init = stanza.getChild("init", NS.esessionInit);
  const holder = feature ?? init;
  if (!holder) return undefined;
  const x = findForm(holder);
  if (!x) return undefined;
  let form: DataForm;
  try {
    form = parseForm(x);
  } catch {
    return undefined;
  }
  return feature ? { kind: "feature", x, form } : { kind: "init", x, form };
}

/** The `<x/>` children to normalize, excluding the named fields (identity, mac). */
export function formChildren(x: Element, exclude: readonly string[] = []): (Element | string)[] {
  return x.children.filter((c) => typeof c === "string" || c.name !== "field" || !exclude.includes(String(c.attrs.var)));
}

export function b64Field(form: DataForm, name: string): Uint8Array {
  const v = value(form, name);
  const b = v === undefined ? undefined : fromBase64(v);
  if (!b || b.length === 0) throw new ESessionError("bad-request", `field ${name} missing or not Base64`, [name]);
  return b;
}

export function b64Values(form: DataForm, name: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const v of field(form, name)?.values ?? []) {
    const b = fromBase64(v);
    if (!b) throw new ESessionError("bad-request", `field ${name} not Base64`, [name]);
    out.push(b);
  }
  return out;
}

export { offered, value, field };

/** XEP-0155 section 6 termination form (and its acknowledgement). */
export function terminateFeature(ack: boolean): Element {
  return wrapFeature({
    type: ack ? "result" : "submit",
    fields: [f.value("FORM_TYPE", SSN), f.value("terminate", "1")],
  });
}

export function isTermination(children: readonly Element[]): { readonly terminate: boolean; readonly ack: boolean } {
  for (const c of children) {
    if (c.name !== "feature" || c.getNS() !== NS.featureNeg) continue;
    const x = findForm(c);
    if (!x) continue;
    try {
      const form = parseForm(x);
      const t = value(form, "terminate");
      if (t === "1" || t === "true") return { terminate: true, ack: form.type === "result" };
    } catch {
      /* not a form we understand */
    }
  }
  return { terminate: false, ack: false };
}

/** Field names of the x element, in received order (for answering in that order). */
export function fieldOrder(x: Element): string[] {
  return elements(x)
    .filter((c) => c.name === "field")
    .map((c) => String(c.attrs.var));
}
