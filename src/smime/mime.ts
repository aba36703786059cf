/**
 * Minimal MIME for S/MIME objects: canonical CRLF text, entity headers and body,
 * Content-Type parameters, multipart splitting and the multipart/signed and
 * application/pkcs7-mime entities.
 *
 * Spec: RFC 2045 (MIME part one: header fields, Content-Type parameters, base64 with
 * lines of at most 76 characters, section 6.8), RFC 2046 section 5.1.1 (multipart
 * boundary delimiters: "the CRLF preceding the boundary delimiter line is conceptually
 * attached to the boundary"), RFC 1847 section 2.1 (multipart/signed: exactly two body
 * parts, the first one signed exactly as it appears between the delimiters), RFC 5751
 * section 3.1.1 (canonical form: lines end in CRLF before signing) and section 3.2
 * (application/pkcs7-mime with smime-type). draft-ietf-xmpp-e2e-03 section 3 step 3 (the
 * multipart S/MIME object of RFC 1847 is the character data of <e2e/>).
 *
 * XML parsers turn every CRLF into LF (XML 1.0 section 2.11), so text taken out of an
 * <e2e/> element is canonicalized again before it is parsed or verified; signers
 * canonicalize before signing, so both sides hash the same bytes.
 *
 * Parsing is linear (indexOf scans, no backtracking regular expressions) and bounded by
 * {@link MIME_LIMITS}; every failure is a SmimeError("malformed").
 */
import { SmimeError } from "./errors.js";

export interface MimeHeader {
  readonly name: string;
  readonly value: string;
}

export interface MimeEntity {
  readonly headers: readonly MimeHeader[];
  /** The body as text (canonical CRLF). Binary CMS travels base64-encoded. */
  readonly body: string;
}

export const MIME_LIMITS = {
  /** Largest entity we parse (a stanza is at most 256 KiB on Prosody). */
  maxChars: 1024 * 1024,
  maxHeaders: 64,
  maxHeaderChars: 8192,
  maxParts: 16,
} as const;

export const CRLF = "\r\n";

/** Every line break (CRLF, bare CR, bare LF) becomes CRLF (RFC 5751 section 3.1.1). */
export function canonicalize(s: string): string {
  if (!s.includes("\r") && !s.includes("\n")) return s;
  return s.replace(/\r\n|\r|\n/g, CRLF);
}

/**
 * The canonical MIME text carried in an <e2e/> element: line breaks restored, the
 * indentation before the first header and the whitespace after the last line removed.
 */
export function canonicalizeWrapped(s: string): string {
  const c = canonicalize(s);
  let start = 0;
  while (start < c.length && (c[start] === " " || c[start] === "\t" || c[start] === "\r" || c[start] === "\n")) start++;
  let end = c.length;
  while (end > start && (c[end - 1] === " " || c[end - 1] === "\t" || c[end - 1] === "\r" || c[end - 1] === "\n")) end--;
  return c.slice(start, end);
}

const TOKEN = /^[!#$%&'*+\-.0-9A-Z^_`a-z|~]+$/;

function malformed(detail: string): SmimeError {
  return new SmimeError("malformed", detail);
}

/** Parses canonical (CRLF) text into headers and body. Folded header lines are unfolded. */
export function parseEntity(text: string): MimeEntity {
  if (text.length > MIME_LIMITS.maxChars) throw malformed("MIME entity too large");
  const headers: MimeHeader[] = [];
  let pos = 0;
  let current: { name: string; value: string } | undefined;
  for (;;) {
    const eol = text.indexOf(CRLF, pos);
    if (eol === -1) {
      // Headers only, no blank line: a body-less entity is not something we accept.
      throw malformed("no blank line after the MIME headers");
    }
    const line = text.slice(pos, eol);
    pos = eol + 2;
    if (line.length === 0) break;
    if (line.length > MIME_LIMITS.maxHeaderChars) throw malformed("header line too long");
    if (line[0] === " " || line[0] === "\t") {
      if (current === undefined) throw malformed("continuation line before any header");
      current.value += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) throw malformed("header line without a name");
    const name = line.slice(0, colon).trim();
    if (!TOKEN.test(name)) throw malformed("bad header name");
    if (current !== undefined) headers.push(current);
    if (headers.length >= MIME_LIMITS.maxHeaders) throw malformed("too many headers");
    current = { name, value: line.slice(colon + 1).trim() };
  }
  if (current !== undefined) headers.push(current);
  if (headers.length === 0) throw malformed("no MIME headers");
  return { headers, body: text.slice(pos) };
}

export function serializeEntity(e: MimeEntity): string {
  let s = "";
  for (const h of e.headers) s += `${h.name}: ${h.value}${CRLF}`;
  return `${s}${CRLF}${e.body}`;
}

/** The first header named `name` (case-insensitive, RFC 2045 section 1). */
export function headerValue(headers: readonly MimeHeader[], name: string): string | undefined {
  const n = name.toLowerCase();
  for (const h of headers) if (h.name.toLowerCase() === n) return h.value;
  return undefined;
}

export interface ContentType {
  /** "type/subtype", lower-cased. */
  readonly type: string;
  /** Parameter names lower-cased; quoted values unquoted. */
  readonly params: Readonly<Record<string, string>>;
}

/** Parses a Content-Type value (RFC 2045 section 5.1), quoted-string aware. */
export function parseContentType(value: string): ContentType {
  if (value.length > MIME_LIMITS.maxHeaderChars) throw malformed("Content-Type too long");
  const semi = value.indexOf(";");
  const type = (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase();
  const slash = type.indexOf("/");
  if (slash <= 0 || slash === type.length - 1 || !TOKEN.test(type.slice(0, slash)) || !TOKEN.test(type.slice(slash + 1)))
    throw malformed("bad media type");
  const params: Record<string, string> = Object.create(null) as Record<string, string>;
  let i = semi === -1 ? value.length : semi + 1;
  while (i < value.length) {
    while (i < value.length && (value[i] === " " || value[i] === "\t" || value[i] === ";")) i++;
    if (i >= value.length) break;
    const eq = value.indexOf("=", i);
    if (eq === -1) throw malformed("parameter without a value");
    const name = value.slice(i, eq).trim().toLowerCase();
    if (!TOKEN.test(name)) throw malformed("bad parameter name");
    i = eq + 1;
    while (i < value.length && (value[i] === " " || value[i] === "\t")) i++;
    let v = "";
    if (value[i] === '"') {
      i++;
      let closed = false;
      while (i < value.length) {
        const c = value[i] ?? "";
        if (c === "\\" && i + 1 < value.length) {
          v += value[i + 1] ?? "";
          i += 2;
          continue;
        }
        if (c === '"') {
          closed = true;
          i++;
          break;
        }
        v += c;
        i++;
      }
      if (!closed) throw malformed("unterminated quoted parameter");
    } else {
      const end = value.indexOf(";", i);
      v = (end === -1 ? value.slice(i) : value.slice(i, end)).trim();
      i = end === -1 ? value.length : end;
    }
    params[name] = v;
  }
  return { type, params };
}

export function contentTypeOf(e: MimeEntity): ContentType {
  const v = headerValue(e.headers, "content-type");
  if (v === undefined) throw malformed("no Content-Type");
  return parseContentType(v);
}

/**
 * Splits a multipart body at its boundary (RFC 2046 section 5.1.1). Returns each part's
 * exact text: from after the delimiter line's CRLF up to (excluding) the CRLF that
 * precedes the next delimiter. Preamble and epilogue are ignored.
 */
export function splitMultipart(body: string, boundary: string): string[] {
  if (boundary.length === 0 || boundary.length > 70) throw malformed("bad boundary");
  const delim = `--${boundary}`;
  const parts: string[] = [];
  // The first delimiter may start the body; later ones always follow a CRLF.
  let pos: number;
  if (body.startsWith(delim)) pos = 0;
  else {
    const f = body.indexOf(CRLF + delim);
    if (f === -1) throw malformed("no boundary delimiter");
    pos = f + 2;
  }
  for (;;) {
    // pos is at the start of a delimiter line.
    const after = pos + delim.length;
    if (body.startsWith("--", after)) {
      if (parts.length === 0) throw malformed("empty multipart");
      return parts;
    }
    const eol = body.indexOf(CRLF, after);
    if (eol === -1) throw malformed("unterminated delimiter line");
    // Only transport padding (whitespace) may follow the boundary on its line.
    if (body.slice(after, eol).trim().length !== 0) throw malformed("junk after boundary");
    const start = eol + 2;
    const next = body.indexOf(CRLF + delim, start - 2);
    if (next === -1) throw malformed("no closing delimiter");
    parts.push(next < start ? "" : body.slice(start, next));
    if (parts.length > MIME_LIMITS.maxParts) throw malformed("too many parts");
    pos = next + 2;
  }
}

/** Base64 in lines of 64 characters (RFC 2045 section 6.8 allows up to 76). */
export function base64Lines(b64: string): string {
  let out = "";
  for (let i = 0; i < b64.length; i += 64) out += `${b64.slice(i, i + 64)}${CRLF}`;
  return out;
}

/** Strict base64 body of a part: whitespace ignored, anything else outside the alphabet rejected. */
export function decodeBase64Body(body: string): Uint8Array {
  const t = body.replace(/[\r\n\t ]+/g, "");
  if (t.length === 0 || t.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(t)) throw malformed("bad base64");
  const b = Buffer.from(t, "base64");
  const pad = t.endsWith("==") ? 2 : t.endsWith("=") ? 1 : 0;
  if (b.length !== (t.length / 4) * 3 - pad) throw malformed("bad base64");
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export function encodeBase64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
}

/** RFC 5751 section 3.4.3.2 micalg names. */
export type MicAlg = "sha-1" | "sha-256" | "sha-384" | "sha-512";

/**
 * multipart/signed (RFC 1847 section 2.1, RFC 5751 section 3.5.3): `content` is the
 * canonical signed entity, `signature` the DER of the detached SignedData.
 */
export function buildMultipartSigned(content: string, signature: Uint8Array, micalg: MicAlg, boundary: string): string {
  const delim = `--${boundary}`;
  return serializeEntity({
    headers: [
      {
        name: "Content-Type",
        value: `multipart/signed; protocol="application/pkcs7-signature"; micalg=${micalg}; boundary="${boundary}"`,
      },
    ],
    body:
      `This is an S/MIME signed message${CRLF}${CRLF}` +
      `${delim}${CRLF}${content}${CRLF}${delim}${CRLF}` +
      `Content-Type: application/pkcs7-signature; name="smime.p7s"${CRLF}` +
      `Content-Transfer-Encoding: base64${CRLF}` +
      `Content-Disposition: attachment; filename="smime.p7s"${CRLF}${CRLF}` +
      `${base64Lines(encodeBase64(signature))}${CRLF}${delim}--${CRLF}`,
  });
}

export type SmimeType = "enveloped-data" | "authEnveloped-data" | "signed-data";

/** application/pkcs7-mime (RFC 5751 section 3.2; authEnveloped-data: RFC 8551 section 3.2.2). */
export function buildPkcs7Mime(der: Uint8Array, smimeType: SmimeType): string {
  return serializeEntity({
    headers: [
      { name: "Content-Type", value: `application/pkcs7-mime; smime-type=${smimeType}; name="smime.p7m"` },
      { name: "Content-Transfer-Encoding", value: "base64" },
      { name: "Content-Disposition", value: 'attachment; filename="smime.p7m"' },
    ],
    body: base64Lines(encodeBase64(der)),
  });
}
