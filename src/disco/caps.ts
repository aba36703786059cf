/**
 * Entity capabilities: the verification string, the `<c/>` element, and checking a 'ver'
 * received from a peer against its disco#info answer.
 *
 * Spec: XEP-0115 v1.6.0 section 4 "Protocol" (`<c xmlns='http://jabber.org/protocol/caps'
 * hash node ver [ext]/>`), section 5.1 "Generation Method" (sort with i;octet collation;
 * identities as category/type/lang/name, features, XEP-0128 forms by FORM_TYPE, fields by
 * var, values sorted; each followed by '<'; UTF-8; hash; Base64 per RFC 4648 section 4),
 * section 5.2 / 5.3 (the worked examples, our tests), section 5.4 "Processing Method"
 * (ill-formed responses: duplicate identities, duplicate features, duplicate FORM_TYPEs or
 * a FORM_TYPE with differing values; forms whose FORM_TYPE is missing or not hidden are
 * ignored), section 6.2 (the disco node is node#ver), section 9.1 (SHA-1 is mandatory),
 * section 9.3 "Caps Poisoning" and the '&lt;' warning (no unescaping of factors).
 *
 * Hardening beyond section 5.4: a factor containing '<' makes a response ill-formed, since
 * it lets one set of identities/features imitate another under the same 'ver' (the 2009
 * "trivial preimage attack" cited in section 9.3).
 */
import { toBase64, utf8 } from "../core/bytes.js";
import type { CryptoProvider, HashAlg } from "../crypto/provider.js";
import type { DataForm } from "../forms/codec.js";
import { el, NS, type Element } from "../xml/index.js";
import type { DiscoInfo, Identity } from "./codec.js";

/** Hash names from the IANA Hash Function Textual Names registry, as used in 'hash'. */
export type CapsHash = "sha-1" | "sha-256" | "sha-384" | "sha-512";

const HASHES: Readonly<Record<CapsHash, HashAlg>> = {
  "sha-1": "sha1",
  "sha-256": "sha256",
  "sha-384": "sha384",
  "sha-512": "sha512",
};

export function isCapsHash(s: string): s is CapsHash {
  return Object.prototype.hasOwnProperty.call(HASHES, s);
}

/** A `<c/>` element's attributes (hash is absent in the legacy format). */
export interface Caps {
  readonly hash?: string;
  readonly node: string;
  readonly ver: string;
  readonly ext?: string;
}

/** "i;octet" collation (RFC 4790 section 9.3): compare the UTF-8 bytes. */
export function octetCompare(a: string, b: string): number {
  if (a === b) return 0;
  const x = utf8(a);
  const y = utf8(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

function compareIdentities(a: Identity, b: Identity): number {
  return (
    octetCompare(a.category, b.category) ||
    octetCompare(a.type, b.type) ||
    octetCompare(a.lang ?? "", b.lang ?? "") ||
    octetCompare(a.name ?? "", b.name ?? "")
  );
}

function identityFactor(i: Identity): string {
  return `${i.category}/${i.type}/${i.lang ?? ""}/${i.name ?? ""}`;
}

/** The FORM_TYPE of an extended form usable for caps (hidden, present), else undefined. */
function capsFormType(form: DataForm): string | undefined {
  const ft = form.fields.find((f) => f.var === "FORM_TYPE");
  if (!ft || ft.type !== "hidden") return undefined;
  return ft.values[0];
}

/** The string S of section 5.1 (before UTF-8 encoding and hashing). */
export function verificationString(info: DiscoInfo): string {
  let s = "";
  for (const i of [...info.identities].sort(compareIdentities)) s += `${identityFactor(i)}<`;
  for (const f of [...info.features].sort(octetCompare)) s += `${f}<`;
  const forms = info.forms
    .map((form) => ({ form, type: capsFormType(form) }))
    .filter((x): x is { form: DataForm; type: string } => x.type !== undefined)
    .sort((a, b) => octetCompare(a.type, b.type));
  for (const { form, type } of forms) {
    s += `${type}<`;
    const fields = form.fields.filter((f) => f.var !== "FORM_TYPE").sort((a, b) => octetCompare(a.var, b.var));
    for (const f of fields) {
      s += `${f.var}<`;
      for (const v of [...f.values].sort(octetCompare)) s += `${v}<`;
    }
  }
  return s;
}

/** The 'ver' attribute: Base64 of H(UTF-8(S)) (section 5.1 steps 8-9). */
export function capsVer(crypto: CryptoProvider, info: DiscoInfo, hash: CapsHash = "sha-1"): string {
  return toBase64(crypto.hash(HASHES[hash], utf8(verificationString(info))));
}

/** `<c xmlns='http://jabber.org/protocol/caps' hash node ver/>` (section 4). */
export function capsElement(c: { readonly hash: CapsHash; readonly node: string; readonly ver: string }): Element {
  return el("c", { xmlns: NS.caps, hash: c.hash, node: c.node, ver: c.ver });
}

/** Reads the `<c/>` of a presence (or a `<c/>` element itself); undefined if absent/unusable. */
export function parseCaps(e: Element): Caps | undefined {
  const c = e.name === "c" && e.getNS() === NS.caps ? e : e.getChild("c", NS.caps);
  if (!c) return undefined;
  const { hash, node, ver, ext } = c.attrs as Record<string, unknown>;
  if (typeof node !== "string" || typeof ver !== "string" || node === "" || ver === "") return undefined;
  return {
    node,
    ver,
    ...(typeof hash === "string" ? { hash } : {}),
    ...(typeof ext === "string" ? { ext } : {}),
  };
}

/** The disco node to query for a caps announcement (section 6.2: node '#' ver). */
export function capsNode(c: { readonly node: string; readonly ver: string }): string {
  return `${c.node}#${c.ver}`;
}

/**
 * Section 5.4 steps 3.3-3.5 (plus the '<' hardening): why a response cannot be used to
 * validate a 'ver', or undefined if it can.
 */
export function illFormedReason(info: DiscoInfo): string | undefined {
  const seenIdentities = new Set<string>();
  for (const i of info.identities) {
    const k = JSON.stringify([i.category, i.type, i.lang ?? "", i.name ?? ""]);
    if (seenIdentities.has(k)) return `duplicate identity ${identityFactor(i)}`;
    seenIdentities.add(k);
    if ([i.category, i.type, i.lang ?? "", i.name ?? ""].some((x) => x.includes("<"))) return "'<' in an identity";
  }
  const seenFeatures = new Set<string>();
  for (const f of info.features) {
    if (seenFeatures.has(f)) return `duplicate feature ${f}`;
    seenFeatures.add(f);
    if (f.includes("<")) return "'<' in a feature";
  }
  const seenTypes = new Set<string>();
  for (const form of info.forms) {
    const ft = form.fields.find((f) => f.var === "FORM_TYPE");
    if (ft && new Set(ft.values).size > 1) return "FORM_TYPE with differing values";
    const type = capsFormType(form);
    if (type === undefined) continue; // ignored, processing continues
    if (seenTypes.has(type)) return `duplicate form ${type}`;
    seenTypes.add(type);
    for (const f of form.fields) if (f.var.includes("<") || f.values.some((v) => v.includes("<"))) return "'<' in an extended form";
  }
  return undefined;
}

export type CapsVerification =
  | { readonly status: "valid"; readonly ver: string }
  /** No 'hash': the legacy format (section 13); the 'ver' cannot be verified or cached. */
  | { readonly status: "legacy" }
  /** A hash we do not implement: use the answer for this JID only (section 5.4 step 2). */
  | { readonly status: "unsupported-hash"; readonly hash: string }
  | { readonly status: "ill-formed"; readonly reason: string }
  /** MUST NOT be cached (section 5.4 step 3.9). */
  | { readonly status: "mismatch"; readonly expected: string; readonly computed: string };

/** Section 5.4: checks a received `<c/>` against the disco#info answer to node#ver. */
export function verifyCaps(crypto: CryptoProvider, caps: Caps, info: DiscoInfo): CapsVerification {
  if (caps.hash === undefined) return { status: "legacy" };
  const hash = caps.hash.toLowerCase();
  if (!isCapsHash(hash)) return { status: "unsupported-hash", hash: caps.hash };
  const reason = illFormedReason(info);
  if (reason !== undefined) return { status: "ill-formed", reason };
  const computed = capsVer(crypto, info, hash);
  return computed === caps.ver ? { status: "valid", ver: computed } : { status: "mismatch", expected: caps.ver, computed };
}
