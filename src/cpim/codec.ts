/**
 * The Message/CPIM format, both ways: MIME headers, message headers, encapsulated MIME
 * object.
 *
 * Spec: RFC 3862 "Common Presence and Instant Messaging (CPIM): Message Format" (the
 * published draft-ietf-imp-cpim-msgfmt-08 that draft-ietf-xmpp-e2e-03 references as
 * MSGFMT), sections 2 (overall format: "Content-type: Message/CPIM", a blank line, the
 * message headers, a blank line, the encapsulated MIME object), 3 (header syntax:
 * `Name:[;param] value`, prefixed extension names `prefix.Name`, the `\` escapes of
 * section 3.2) and 4 (From, To, cc, DateTime, Subject with ;lang=, NS, Require).
 * draft-ietf-xmpp-e2e-03 section 3 step 1 and section 4 step 1 (the presence object uses
 * the same header block with outer type application/cpim-pidf+xml, example 3).
 *
 * Lines are CRLF (RFC 3862 section 2, "the canonical line break is CRLF"); a parser fed
 * text from XML canonicalizes first. Failures are SmimeError("malformed").
 */
import { SmimeError } from "../smime/errors.js";
import { canonicalize, CRLF, type MimeEntity, MIME_LIMITS, parseEntity, serializeEntity } from "../smime/mime.js";

export const CPIM_MESSAGE_TYPE = "Message/CPIM";
/** draft-ietf-xmpp-e2e-03 section 4 step 1 (example 4 misspells it cpim-pid+xml). */
export const CPIM_PRESENCE_TYPE = "application/cpim-pidf+xml";

export interface CpimAddress {
  /** Formal name (display name), if any. */
  readonly name?: string;
  /** The URI between angle brackets, e.g. `im:juliet@capulet.com`. */
  readonly uri: string;
}

export interface CpimText {
  readonly value: string;
  readonly lang?: string;
}

export interface CpimNs {
  /** Absent for the default namespace (`NS: <urn:...>`). */
  readonly prefix?: string;
  readonly uri: string;
}

/** Any header this codec does not model (kept in order, value unescaped). */
export interface CpimHeader {
  readonly name: string;
  readonly params: readonly string[];
  readonly value: string;
}

export interface CpimMessage {
  /** The outer MIME Content-type ("Message/CPIM" or "application/cpim-pidf+xml"). */
  readonly objectType: string;
  readonly from?: CpimAddress;
  readonly to: readonly CpimAddress[];
  readonly cc: readonly CpimAddress[];
  /** RFC 3339 date-time, as written. */
  readonly dateTime?: string;
  readonly subject: readonly CpimText[];
  readonly ns: readonly CpimNs[];
  readonly require: readonly string[];
  readonly extensions: readonly CpimHeader[];
  /** The encapsulated MIME object (RFC 3862 section 2: "Content-type" and "Content-ID" etc.). */
  readonly content: MimeEntity;
}

function malformed(detail: string): SmimeError {
  return new SmimeError("malformed", detail);
}

/** RFC 3862 section 3.2 escapes for header values. */
export function escapeValue(s: string): string {
  let out = "";
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    if (ch === "\\") out += "\\\\";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || c === 0x7f) out += `\\u${c.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return out;
}

export function unescapeValue(s: string): string {
  if (!s.includes("\\")) return s;
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const ch = s[i] ?? "";
    if (ch !== "\\") {
      out += ch;
      continue;
    }
    const n = s[i + 1];
    i++;
    switch (n) {
      case "\\":
      case '"':
        out += n;
        break;
      case "r":
        out += "\r";
        break;
      case "n":
        out += "\n";
        break;
      case "t":
        out += "\t";
        break;
      case "b":
        out += "\b";
        break;
      case "u": {
        const hex = s.slice(i + 1, i + 5);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw malformed("bad \\u escape");
        out += String.fromCharCode(parseInt(hex, 16));
        i += 4;
        break;
      }
      default:
        throw malformed("bad escape in header value");
    }
  }
  return out;
}

function formatAddress(a: CpimAddress): string {
  if (/[<>\r\n]/.test(a.uri)) throw new SmimeError("bad-request", "URI contains a forbidden character");
  if (a.name === undefined || a.name.length === 0) return `<${a.uri}>`;
  // A formal name of plain tokens is written as is; anything else as a quoted string.
  const plain = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+( [A-Za-z0-9!#$%&'*+\-.^_`|~]+)*$/.test(a.name);
  const name = plain ? a.name : `"${escapeValue(a.name).replace(/"/g, '\\"')}"`;
  return `${name} <${a.uri}>`;
}

export function parseAddress(v: string): CpimAddress {
  const lt = v.lastIndexOf("<");
  const gt = v.lastIndexOf(">");
  if (lt === -1 || gt !== v.length - 1 || gt < lt) throw malformed("address without <URI>");
  const uri = v.slice(lt + 1, gt);
  if (uri.length === 0 || /[\s<>]/.test(uri)) throw malformed("bad URI");
  let name = v.slice(0, lt).trim();
  if (name.startsWith('"')) {
    if (!name.endsWith('"') || name.length < 2) throw malformed("bad formal name");
    name = unescapeValue(name.slice(1, -1));
  }
  return name.length === 0 ? { uri } : { name, uri };
}

function line(name: string, value: string, params: readonly string[] = []): string {
  return `${name}:${params.map((p) => `;${p}`).join("")} ${value}${CRLF}`;
}

/** Serializes a CPIM object, CRLF-canonical (RFC 3862 section 2). */
export function serializeCpim(m: CpimMessage): string {
  let s = `Content-type: ${m.objectType}${CRLF}${CRLF}`;
  if (m.from !== undefined) s += line("From", formatAddress(m.from));
  for (const a of m.to) s += line("To", formatAddress(a));
  for (const a of m.cc) s += line("cc", formatAddress(a));
  if (m.dateTime !== undefined) s += line("DateTime", m.dateTime);
  for (const t of m.subject) s += line("Subject", escapeValue(t.value), t.lang === undefined ? [] : [`lang=${t.lang}`]);
  for (const n of m.ns) s += line("NS", n.prefix === undefined ? `<${n.uri}>` : `${n.prefix} <${n.uri}>`);
  if (m.require.length > 0) s += line("Require", m.require.join(","));
  for (const h of m.extensions) {
    if (!/^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/.test(h.name)) throw new SmimeError("bad-request", "bad header name");
    s += line(h.name, escapeValue(h.value), h.params);
  }
  return `${s}${CRLF}${serializeEntity(m.content)}`;
}

/**
 * Parses a CPIM object. Accepts LF or CRLF line breaks (text out of XML); the encapsulated
 * object's body is returned with CRLF line breaks.
 */
export function parseCpim(text: string): CpimMessage {
  if (text.length > MIME_LIMITS.maxChars) throw malformed("CPIM object too large");
  const outer = parseEntity(canonicalize(text));
  const ct = outer.headers.find((h) => h.name.toLowerCase() === "content-type")?.value;
  if (ct === undefined) throw malformed("CPIM object without Content-type");
  const objectType = ct.split(";")[0]?.trim() ?? "";
  const lower = objectType.toLowerCase();
  if (lower !== "message/cpim" && lower !== CPIM_PRESENCE_TYPE && lower !== "application/cpim-pid+xml")
    throw malformed("not a Message/CPIM object");
  const rest = outer.body;
  // Message headers up to the blank line, then the encapsulated MIME object.
  const end = rest.indexOf(CRLF + CRLF);
  const headerBlock = rest.startsWith(CRLF) ? "" : end === -1 ? undefined : rest.slice(0, end);
  if (headerBlock === undefined) throw malformed("no blank line after the CPIM message headers");
  const contentText = rest.startsWith(CRLF) ? rest.slice(2) : rest.slice(end + 4);
  let from: CpimAddress | undefined;
  const to: CpimAddress[] = [];
  const cc: CpimAddress[] = [];
  let dateTime: string | undefined;
  const subject: CpimText[] = [];
  const ns: CpimNs[] = [];
  const require: string[] = [];
  const extensions: CpimHeader[] = [];
  const lines = headerBlock.length === 0 ? [] : headerBlock.split(CRLF);
  if (lines.length > MIME_LIMITS.maxHeaders) throw malformed("too many CPIM headers");
  for (const l of lines) {
    if (l.length > MIME_LIMITS.maxHeaderChars) throw malformed("CPIM header too long");
    const colon = l.indexOf(":");
    if (colon <= 0) throw malformed("CPIM header without a name");
    const name = l.slice(0, colon);
    if (!/^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/.test(name)) throw malformed("bad CPIM header name");
    // Header-name ":" *( ";" Parameter ) SP Header-value (RFC 3862 section 3.1).
    let after = l.slice(colon + 1);
    const params: string[] = [];
    while (after.startsWith(";")) {
      const sp = after.indexOf(" ");
      const semi = after.indexOf(";", 1);
      const stop = semi !== -1 && (sp === -1 || semi < sp) ? semi : sp === -1 ? after.length : sp;
      params.push(after.slice(1, stop));
      after = after.slice(stop);
    }
    if (after.length > 0 && !after.startsWith(" ")) throw malformed("CPIM header value not after a space");
    const raw = after.slice(1);
    const lang = params.find((p) => p.toLowerCase().startsWith("lang="))?.slice(5);
    switch (name.toLowerCase()) {
      case "from":
        if (from !== undefined) throw malformed("two From headers");
        from = parseAddress(raw);
        break;
      case "to":
        to.push(parseAddress(raw));
        break;
      case "cc":
        cc.push(parseAddress(raw));
        break;
      case "datetime":
        if (dateTime !== undefined) throw malformed("two DateTime headers");
        dateTime = raw.trim();
        break;
      case "subject":
        subject.push(lang === undefined ? { value: unescapeValue(raw) } : { value: unescapeValue(raw), lang });
        break;
      case "ns": {
        const v = raw.trim();
        const lt = v.indexOf("<");
        if (lt === -1 || !v.endsWith(">")) throw malformed("bad NS header");
        const prefix = v.slice(0, lt).trim();
        const uri = v.slice(lt + 1, -1);
        ns.push(prefix.length === 0 ? { uri } : { prefix, uri });
        break;
      }
      case "require":
        for (const r of raw.split(",")) if (r.trim().length > 0) require.push(r.trim());
        break;
      default:
        extensions.push({ name, params, value: unescapeValue(raw) });
    }
  }
  const content = parseEntity(contentText);
  const m: CpimMessage = { objectType, to, cc, subject, ns, require, extensions, content };
  return {
    ...m,
    ...(from === undefined ? {} : { from }),
    ...(dateTime === undefined ? {} : { dateTime }),
  };
}

/**
 * RFC 3862 section 4.6 / RFC 3339: a UTC date-time. Returns ms since the epoch or
 * undefined when `s` is not a valid RFC 3339 date-time.
 */
export function parseDateTime(s: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/.exec(s);
  if (m === null) return undefined;
  const t = Date.parse(s.toUpperCase());
  return Number.isFinite(t) ? t : undefined;
}

/** A DateTime value for `ms` (UTC, milliseconds, as RFC 3923 section 6.9 asks: UTC, no offset). */
export function formatDateTime(ms: number): string {
  return new Date(ms).toISOString();
}
