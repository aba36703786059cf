/**
 * Codec for XEP-0187 Offline Encrypted Sessions: the published offline ESession options
 * form and the offline ESession "response" (Bob's `<init/>` form that starts a session
 * without negotiation).
 *
 * Spec: XEP-0187 v0.5 section 3.1 "Publishing ESession Options" (the options form is built
 * like an XEP-0116 request form "except she MUST omit the 'accept' and 'pubkey' fields";
 * 'stanzas' "MUST NOT include the value 'iq'"; an 'expires' field with an XEP-0082 UTC
 * time; optional 'match_resource'; a 'signs' field with "signatures ... of the content of
 * the data form (excluding the 'signs' field)"), section 3.2 (the two PEP nodes: options
 * for presence subscribers on the XEP-0187 namespace node, options for every entity on the
 * XEP-0116 namespace node), section 3.3 "Starting an Offline ESession" (example 7: the
 * `<init/>` form with my_nonce, dhkeys, nonce, counter, identity, mac next to `<c/>`).
 * Signed bytes: the options `<x/>` children without 'signs', normalized as XEP-0116
 * section 13 says (the spec names no other normalization; docs/offline-and-devices.md).
 */
import { fromBase64, toBase64, utf8 } from "../core/bytes.js";
import { type DhGroupId, isDhGroup } from "../crypto/provider.js";
import { f, type DataForm, type Field, formToXml, offered, parseForm, value, field } from "../forms/codec.js";
import { el, type Element, NS, normalize } from "../xml/index.js";
import { formChildren } from "../esession/codec.js";
import { OfflineError } from "./errors.js";

/** PEP node for options reserved to presence subscribers (XEP-0187 section 3.1). */
export const NODE_SUBSCRIBERS = "http://www.xmpp.org/extensions/xep-0187.html#ns";
/** PEP node for options any entity may use (XEP-0187 section 3.1, "for All Entities"). */
export const NODE_EVERYONE = NS.esession;

export type Audience = "subscribers" | "everyone";

export function nodeFor(audience: Audience): string {
  return audience === "subscribers" ? NODE_SUBSCRIBERS : NODE_EVERYONE;
}

/** The options a publisher offers, as typed values (lists in preference order). */
export interface OfflineOptionsContent {
  readonly logging: readonly string[];
  readonly disclosure: readonly string[];
  readonly security: readonly string[];
  readonly modp: readonly DhGroupId[];
  readonly cryptAlgs: readonly string[];
  readonly hashAlgs: readonly string[];
  readonly signAlgs: readonly string[];
  readonly compress: readonly string[];
  readonly stanzas: readonly string[];
  readonly ver: readonly string[];
  readonly rekeyFreq: number;
  /** ms since the epoch (XEP-0082 DateTime on the wire, seconds precision). */
  readonly expiresAt: number;
  /** N_A, the one-time ESession ID that names this set of options. */
  readonly myNonce: Uint8Array;
  /** e per group, in `modp` order. */
  readonly dhkeys: readonly Uint8Array[];
  readonly matchResource?: string;
}

export interface ParsedOfflineOptions extends OfflineOptionsContent {
  /** The signatures ('signs' values), Base64-decoded. */
  readonly signs: readonly Uint8Array[];
  /** The bytes every signature covers. */
  readonly signed: Uint8Array;
}

/** XEP-0082 DateTime in UTC with seconds precision. */
export function formatDateTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function parseDateTime(s: string): number | undefined {
  // XEP-0082 section 3.3: CCYY-MM-DDThh:mm:ss[.sss]TZD
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(s)) return undefined;
  const t = Date.parse(s);
  return Number.isFinite(t) ? t : undefined;
}

function optionsFields(o: OfflineOptionsContent): Field[] {
  const list = (name: string, opts: readonly string[]): Field => f.list(name, "list-single", opts);
  return [
    f.hidden("FORM_TYPE", NS.ssn),
    list("logging", o.logging),
    list("disclosure", o.disclosure),
    list("security", o.security),
    list("modp", o.modp.map(String)),
    list("crypt_algs", o.cryptAlgs),
    list("hash_algs", o.hashAlgs),
    ...(o.signAlgs.length ? [list("sign_algs", o.signAlgs)] : []),
    list("compress", o.compress),
    f.list("stanzas", "list-multi", o.stanzas),
    list("ver", o.ver),
    f.typed("rekey_freq", "text-single", String(o.rekeyFreq)),
    f.value("expires", formatDateTime(o.expiresAt)),
    f.value("my_nonce", toBase64(o.myNonce)),
    f.value("dhkeys", ...o.dhkeys.map(toBase64)),
    ...(o.matchResource !== undefined ? [f.value("match_resource", o.matchResource)] : []),
  ];
}

/** The options `<x/>` without signatures, and the bytes a signature covers. */
export function unsignedOptions(o: OfflineOptionsContent): { readonly x: Element; readonly signed: Uint8Array } {
  const x = formToXml({ type: "form", fields: optionsFields(o) });
  return { x, signed: utf8(normalize(x.children)) };
}

/** The options `<x/>` with its 'signs' field (omitted when there is no signature). */
export function signedOptions(o: OfflineOptionsContent, signs: readonly Uint8Array[]): Element {
  const fields = optionsFields(o);
  if (signs.length) fields.push(f.value("signs", ...signs.map(toBase64)));
  return formToXml({ type: "form", fields });
}

/** Parses a published options form. Throws OfflineError("bad-options"). */
export function parseOfflineOptions(x: Element): ParsedOfflineOptions {
  let form: DataForm;
  try {
    form = parseForm(x);
  } catch {
    throw new OfflineError("bad-options", "not a data form");
  }
  if (value(form, "FORM_TYPE") !== NS.ssn) throw new OfflineError("bad-options", "FORM_TYPE");
  // XEP-0187 3.1: the options form omits 'accept' and the pubkey fields.
  if (field(form, "accept") || field(form, "init_pubkey") || field(form, "resp_pubkey"))
    throw new OfflineError("bad-options", "an options form carries no accept/pubkey fields");
  const list = (name: string): string[] => offered(field(form, name));
  const modp: DhGroupId[] = [];
  for (const g of list("modp")) {
    const id = isDhGroup(g);
    if (id === undefined) throw new OfflineError("bad-options", "modp");
    modp.push(id);
  }
  const b64 = (v: string): Uint8Array => {
    const b = fromBase64(v);
    if (!b || b.length === 0) throw new OfflineError("bad-options", "Base64");
    return b;
  };
  const dhkeys = (field(form, "dhkeys")?.values ?? []).map(b64);
  if (modp.length === 0 || dhkeys.length !== modp.length) throw new OfflineError("bad-options", "dhkeys do not match modp");
  const expires = value(form, "expires");
  const expiresAt = expires === undefined ? undefined : parseDateTime(expires);
  if (expiresAt === undefined) throw new OfflineError("bad-options", "expires");
  const myNonceText = value(form, "my_nonce");
  if (myNonceText === undefined) throw new OfflineError("bad-options", "my_nonce");
  const stanzas = list("stanzas");
  // XEP-0187 3.1: "the list of stanza types she is willing to decrypt MUST NOT include 'iq'".
  if (stanzas.length === 0 || stanzas.includes("iq")) throw new OfflineError("bad-options", "stanzas");
  const rekeyFreq = Number(value(form, "rekey_freq") ?? "1");
  if (!Number.isInteger(rekeyFreq) || rekeyFreq < 1) throw new OfflineError("bad-options", "rekey_freq");
  const matchResource = value(form, "match_resource");
  const signs = (field(form, "signs")?.values ?? []).map(b64);
  return {
    logging: list("logging"),
    disclosure: list("disclosure"),
    security: list("security"),
    modp,
    cryptAlgs: list("crypt_algs"),
    hashAlgs: list("hash_algs"),
    signAlgs: list("sign_algs"),
    compress: list("compress"),
    stanzas,
    ver: list("ver"),
    rekeyFreq,
    expiresAt,
    myNonce: b64(myNonceText),
    dhkeys,
    ...(matchResource !== undefined ? { matchResource } : {}),
    signs,
    signed: utf8(normalize(formChildren(x, ["signs"]))),
  };
}

/** Bob's choice, sent in the `<init/>` form (XEP-0187 example 7). */
export interface OfflineResponse {
  readonly logging: string;
  readonly disclosure: string;
  readonly security: string;
  readonly modp: DhGroupId;
  readonly cryptAlgs: string;
  readonly hashAlgs: string;
  readonly signAlgs?: string;
  readonly compress: string;
  readonly stanzas: readonly string[];
  readonly ver: string;
  readonly rekeyFreq: number;
  /** N_B. */
  readonly myNonce: Uint8Array;
  /** d. */
  readonly dhkeys: Uint8Array;
  /** N_A echoed: names the options (and so the publisher's x) this session uses. */
  readonly nonce: Uint8Array;
  readonly counter: Uint8Array;
}

/** formB (without identity and mac), in the field order of XEP-0187 example 7. */
export function responseFormFields(r: OfflineResponse): DataForm {
  return {
    type: "submit",
    fields: [
      f.value("FORM_TYPE", NS.ssn),
      f.value("logging", r.logging),
      f.value("disclosure", r.disclosure),
      f.value("security", r.security),
      f.value("modp", String(r.modp)),
      f.value("crypt_algs", r.cryptAlgs),
      f.value("hash_algs", r.hashAlgs),
      ...(r.signAlgs !== undefined ? [f.value("sign_algs", r.signAlgs)] : []),
      f.value("compress", r.compress),
      f.value("stanzas", ...r.stanzas),
      f.value("ver", r.ver),
      f.value("rekey_freq", String(r.rekeyFreq)),
      f.value("my_nonce", toBase64(r.myNonce)),
      f.value("dhkeys", toBase64(r.dhkeys)),
      f.value("nonce", toBase64(r.nonce)),
      f.value("counter", toBase64(r.counter)),
    ],
  };
}

export interface ParsedOfflineInit {
  readonly response: OfflineResponse;
  readonly identity: Uint8Array;
  readonly mac: Uint8Array;
  /** formB normalized (the `<x/>` children without identity and mac). */
  readonly formB: string;
}

/** Whether a stanza carries an offline ESession start (an `<init/>` with a submit form). */
export function offlineInitOf(stanza: Element): Element | undefined {
  const init = stanza.getChild("init", NS.esessionInit);
  const x = init?.getChild("x", NS.data);
  return x && x.attrs.type === "submit" ? x : undefined;
}

/** Parses Bob's `<init/>` form. Throws OfflineError("bad-init"). */
export function parseOfflineInit(x: Element): ParsedOfflineInit {
  let form: DataForm;
  try {
    form = parseForm(x);
  } catch {
    throw new OfflineError("bad-init", "not a data form");
  }
  if (value(form, "FORM_TYPE") !== NS.ssn) throw new OfflineError("bad-init", "FORM_TYPE");
  const one = (name: string): string => {
    const v = value(form, name);
    if (v === undefined) throw new OfflineError("bad-init", `missing ${name}`);
    return v;
  };
  const b64 = (name: string): Uint8Array => {
    const b = fromBase64(one(name));
    if (!b || b.length === 0) throw new OfflineError("bad-init", `${name} is not Base64`);
    return b;
  };
  const modp = isDhGroup(one("modp"));
  if (modp === undefined) throw new OfflineError("bad-init", "modp");
  const rekeyFreq = Number(one("rekey_freq"));
  if (!Number.isInteger(rekeyFreq) || rekeyFreq < 1) throw new OfflineError("bad-init", "rekey_freq");
  const counter = b64("counter");
  if (counter.length !== 16) throw new OfflineError("bad-init", "counter must be 128 bits");
  const signAlgs = value(form, "sign_algs");
  return {
    response: {
      logging: one("logging"),
      disclosure: one("disclosure"),
      security: one("security"),
      modp,
      cryptAlgs: one("crypt_algs"),
      hashAlgs: one("hash_algs"),
      ...(signAlgs !== undefined ? { signAlgs } : {}),
      compress: one("compress"),
      stanzas: field(form, "stanzas")?.values ?? [],
      ver: one("ver"),
      rekeyFreq,
      myNonce: b64("my_nonce"),
      dhkeys: b64("dhkeys"),
      nonce: b64("nonce"),
      counter,
    },
    identity: b64("identity"),
    mac: b64("mac"),
    formB: normalize(formChildren(x, ["identity", "mac"])),
  };
}

/** The `<init/>` element Bob puts next to the first `<c/>`. */
export function initElement(form: DataForm, identity: Uint8Array, mac: Uint8Array): Element {
  const x = formToXml({ ...form, fields: [...form.fields, f.value("identity", toBase64(identity)), f.value("mac", toBase64(mac))] });
  return el("init", { xmlns: NS.esessionInit }, x);
}
