/**
 * The "SRP base64" of libsrp / GnuTLS password files (tpasswd, tpasswd.conf).
 *
 * Spec: none published; the format is defined by the Stanford SRP distribution and by
 * GnuTLS (lib/auth/srp_sb64.c, `gnutls_srp_base64_decode`). It is NOT RFC 4648 base64:
 * the alphabet is `0-9 A-Z a-z . /`, there is no padding, and the string is read as one
 * big-endian number whose leading *partial* group of (length mod 4) characters is
 * decoded first. GnuTLS drops a leading zero octet of that partial group, so a salt
 * read back may be shorter than the one written; we reproduce that exactly, because the
 * salt bytes enter x = SHA1(s | SHA1(I | ":" | P)) and must match GnuTLS's.
 */

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz./";
const VALUE = new Map<string, number>([...ALPHABET].map((c, i) => [c, i]));

function digits(s: string): number[] | undefined {
  const out: number[] = [];
  for (const c of s) {
    const v = VALUE.get(c);
    if (v === undefined) return undefined;
    out.push(v);
  }
  return out;
}

/** Decodes SRP base64; undefined on an empty string or a character outside the alphabet. */
export function decodeSrpBase64(s: string): Uint8Array | undefined {
  const d = digits(s);
  if (d === undefined || d.length === 0) return undefined;
  const left = d.length % 4;
  const out: number[] = [];
  let i = 0;
  if (left > 0) {
    // The partial group holds 6*left bits; GnuTLS emits floor(6*left/8) octets plus one
    // more only when the top octet is non-zero (and always at least one octet).
    let v = 0;
    for (; i < left; i++) v = v * 64 + (d[i] ?? 0);
    const bytes = [(v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff];
    const min = Math.max(1, Math.floor((6 * left) / 8));
    let start = 0;
    while (start < 3 - min && bytes[start] === 0) start++;
    out.push(...bytes.slice(start));
  }
  for (; i < d.length; i += 4) {
    const v = ((d[i] ?? 0) << 18) | ((d[i + 1] ?? 0) << 12) | ((d[i + 2] ?? 0) << 6) | (d[i + 3] ?? 0);
    out.push((v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
  }
  return Uint8Array.from(out);
}

/**
 * Encodes as GnuTLS's `gnutls_srp_base64_encode` does: the (length mod 3) leading octets
 * form a shortened first group without leading zero digits, then groups of 3 octets.
 */
export function encodeSrpBase64(b: Uint8Array): string {
  let s = "";
  const mod = b.length % 3;
  if (mod > 0) {
    let v = 0;
    for (let i = 0; i < mod; i++) v = v * 256 + (b[i] ?? 0);
    // 8*mod bits in ceil(8*mod/6) digits, leading zero digits dropped (at least one).
    const n = Math.ceil((8 * mod) / 6);
    let head = "";
    for (let k = n - 1; k >= 0; k--) head += ALPHABET[Math.floor(v / 64 ** k) % 64];
    s += head.replace(/^0+(?=.)/, "");
  }
  for (let i = mod; i < b.length; i += 3) {
    const v = ((b[i] ?? 0) << 16) | ((b[i + 1] ?? 0) << 8) | (b[i + 2] ?? 0);
    s += (ALPHABET[(v >> 18) & 63] ?? "") + (ALPHABET[(v >> 12) & 63] ?? "") + (ALPHABET[(v >> 6) & 63] ?? "") + (ALPHABET[v & 63] ?? "");
  }
  return s;
}
