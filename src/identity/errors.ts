/**
 * The identity layer's one error class (long-term signing keys, their XML-DSig
 * `<KeyValue/>` form and key files).
 *
 * Spec: XEP-0116 v0.16 section 10.3 / 10.4 ("Key Signing Algorithms", "Public
 * Signature-Verification-Key Formats"): an unsupported algorithm or key format maps to
 * the ESession `feature-not-implemented` condition; a malformed or weak key to
 * `not-acceptable`. XEP-0116 section 14 ("an implementation might ... save private keys
 * to a file in cleartext!") motivates the key-file conditions.
 *
 * Messages never contain key material, passphrases or file contents.
 */

export const IDENTITY_ERROR_CONDITIONS = [
  /** The algorithm or key format is not one we implement (XEP-0116 10.3 / 10.4). */
  "unsupported-algorithm",
  /** The key or `<KeyValue/>` is malformed (bad Base64, bad DER, inconsistent fields). */
  "malformed-key",
  /** The key is well-formed but below our policy (RSA < 2048 bits, DSA p < 2048 bits). */
  "weak-key",
  /** A protected key file was opened without a passphrase. */
  "passphrase-required",
  /** The passphrase is wrong, or the protected key was altered (AES-GCM tag mismatch). */
  "bad-passphrase",
  /** A key file readable or writable by group or others (keys at rest must be 0600). */
  "insecure-permissions",
  /** The key was revoked (XEP-0189 section 4) and must not be used. */
  "revoked",
  /** The file cannot be read or written. */
  "io",
] as const;
export type IdentityErrorCondition = (typeof IDENTITY_ERROR_CONDITIONS)[number];

/** XEP-0116 / XMPP stanza error condition each identity condition maps to. */
export const IDENTITY_STANZA_CONDITION: Record<IdentityErrorCondition, "feature-not-implemented" | "not-acceptable" | "internal-server-error"> = {
  "unsupported-algorithm": "feature-not-implemented",
  "malformed-key": "not-acceptable",
  "weak-key": "not-acceptable",
  "passphrase-required": "internal-server-error",
  "bad-passphrase": "internal-server-error",
  "insecure-permissions": "internal-server-error",
  revoked: "not-acceptable",
  io: "internal-server-error",
};

export class IdentityError extends Error {
  override readonly name = "IdentityError";
  constructor(
    readonly condition: IdentityErrorCondition,
    detail?: string,
    /** The OS error code (ENOENT, EACCES) for "io". */
    readonly code?: string,
  ) {
    super(`${condition}${detail === undefined ? "" : `: ${detail}`}${code === undefined ? "" : ` (${code})`}`);
  }
}
