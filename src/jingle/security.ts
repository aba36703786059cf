/**
 * The XTLS security precondition rules: what the responder answers to a session-initiate
 * and what the initiator does with the session-accept, as pure functions over facts the
 * wiring gathered (trust store lookups, user answers). Also fingerprint comparison.
 *
 * Spec: draft-meyer-xmpp-e2e-encryption-02
 * - section 3, responder rules: (1) no XTLS support -> session-accept without
 *   <security/>; (2) XTLS support -> "MUST return a session-accept message that contains
 *   a <security/> element"; (3) if it can verify the initiator's certificate it "MUST
 *   include the fingerprint for the responder's certificate"; (4) if it cannot, it "MAY
 *   omit the fingerprint" and "SHOULD signal ... some other authentication method, such
 *   as secure remote passwords"; (5) without a password it "MAY terminate the session"
 *   or send its own fingerprint and trust there is no man-in-the-middle (leap of faith).
 * - section 3, initiator rules: (1) session-accept without <security/>: "setting up a
 *   secure transport layer has failed"; it MAY terminate or proceed unsecured, and "it
 *   makes no sense to use end-to-end XML streams without encryption"; (2) if it cannot
 *   verify the responder's certificate it SHOULD ask for a password for TLS-SRP, else
 *   terminate or proceed with leap of faith. Then it "sends an additional security-info
 *   message to the responder to signal its choice".
 * - section 5: "leap of faith is discouraged": only when the user allowed it.
 * - section 8.1: "An implementation MUST at a minimum support the 'srp' and 'x509'
 *   methods" (srp becomes available once the TLS-SRP layer is supplied).
 * Fingerprint algorithm names: the draft writes 'sha1'; we emit 'sha-256' (the IANA
 * "Hash Function Textual Names" as in RFC 4572) and accept both spellings.
 */
import type { Fingerprint, XtlsSecurity } from "./codec.js";

export type XtlsMethod = "x509" | "srp";

/** Canonical hash name for an algo attribute, or undefined if unknown. */
export function canonicalAlgo(algo: string): "sha-1" | "sha-256" | "sha-384" | "sha-512" | undefined {
  const a = algo.toLowerCase().replace(/[^a-z0-9]/g, "");
  switch (a) {
    case "sha1":
      return "sha-1";
    case "sha256":
      return "sha-256";
    case "sha384":
      return "sha-384";
    case "sha512":
      return "sha-512";
    default:
      return undefined;
  }
}

/** Hex value of a fingerprint without separators, lower case (or undefined if not hex). */
export function fingerprintHex(value: string): string | undefined {
  const h = value.replace(/[:\s]/g, "").toLowerCase();
  return /^[0-9a-f]+$/.test(h) && h.length % 2 === 0 ? h : undefined;
}

/** Formats a digest as upper-case hex pairs separated by colons (RFC 4572 style). */
export function formatFingerprint(digest: Uint8Array): string {
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0").toUpperCase()).join(":");
}

export function sameFingerprint(a: Fingerprint, b: Fingerprint): boolean {
  const aa = canonicalAlgo(a.algo);
  const ha = fingerprintHex(a.value);
  const hb = fingerprintHex(b.value);
  return aa !== undefined && aa === canonicalAlgo(b.algo) && ha !== undefined && ha === hb;
}

export interface ResponderFacts {
  /** Whether this entity implements XTLS at all (rule 1 applies when false). */
  readonly supportsXtls: boolean;
  /** Our certificate's fingerprint (sent on the happy path and for leap of faith). */
  readonly ownFingerprint: Fingerprint;
  /** The initiator's offered fingerprint is one we pinned for this peer. */
  readonly canVerifyPeer: boolean;
  /** The srp method is implemented here and the user has a password for this peer. */
  readonly srpAvailable: boolean;
  /** The user allows trusting an unknown certificate on first use. */
  readonly leapOfFaith: boolean;
}

export type ResponderDecision =
  /** Rule 1: we do not support XTLS; accept without <security/>. */
  | { readonly kind: "accept-plain" }
  | {
      readonly kind: "accept";
      readonly security: XtlsSecurity;
      /** What the responder expects the initiator to choose. */
      readonly expect: XtlsMethod;
      /** The initiator's certificate will be accepted unverified and pinned afterwards. */
      readonly leapOfFaith: boolean;
    }
  /** Rule 5 "MAY terminate": no way to authenticate. */
  | { readonly kind: "terminate"; readonly reason: "security-error"; readonly why: string };

export function responderDecision(offer: XtlsSecurity, facts: ResponderFacts): ResponderDecision {
  if (!facts.supportsXtls) return { kind: "accept-plain" };
  const offersX509 = offer.fingerprint !== undefined && offer.methods.includes("x509");
  const offersSrp = offer.methods.includes("srp");
  const methods = (x509: boolean): XtlsMethod[] => [...(x509 ? ["x509" as const] : []), ...(facts.srpAvailable ? ["srp" as const] : [])];
  if (offersX509 && facts.canVerifyPeer) {
    // Rules 2-3: the happy path.
    return { kind: "accept", security: { kind: "xtls", fingerprint: facts.ownFingerprint, methods: methods(true) }, expect: "x509", leapOfFaith: false };
  }
  if (offersSrp && facts.srpAvailable) {
    // Rule 4: omit our fingerprint, signal TLS-SRP.
    return { kind: "accept", security: { kind: "xtls", methods: ["srp"] }, expect: "srp", leapOfFaith: false };
  }
  if (offersX509 && facts.leapOfFaith) {
    // Rule 5 alternative: send our fingerprint knowing we cannot authenticate the initiator.
    return { kind: "accept", security: { kind: "xtls", fingerprint: facts.ownFingerprint, methods: methods(true) }, expect: "x509", leapOfFaith: true };
  }
  return { kind: "terminate", reason: "security-error", why: "cannot verify the initiator's certificate and no password or leap of faith" };
}

export interface InitiatorFacts {
  /** The responder's fingerprint is one we pinned for this peer. */
  readonly canVerifyPeer: boolean;
  readonly srpAvailable: boolean;
  readonly leapOfFaith: boolean;
  /** The application may continue unencrypted (never for end-to-end XML streams). */
  readonly allowPlain: boolean;
}

export type InitiatorDecision =
  | { readonly kind: "secure"; readonly method: XtlsMethod; readonly leapOfFaith: boolean }
  /** Initiator rule 1, "proceed without securing the transport" (only when allowed). */
  | { readonly kind: "plain" }
  | { readonly kind: "terminate"; readonly reason: "security-error"; readonly why: string; readonly downgrade: boolean };

export function initiatorDecision(answer: XtlsSecurity | undefined, facts: InitiatorFacts): InitiatorDecision {
  if (answer === undefined) {
    return facts.allowPlain
      ? { kind: "plain" }
      : { kind: "terminate", reason: "security-error", why: "the responder did not accept the XTLS precondition", downgrade: true };
  }
  const x509 = answer.fingerprint !== undefined && answer.methods.includes("x509");
  if (x509 && facts.canVerifyPeer) return { kind: "secure", method: "x509", leapOfFaith: false };
  if (answer.methods.includes("srp") && facts.srpAvailable) return { kind: "secure", method: "srp", leapOfFaith: false };
  if (x509 && facts.leapOfFaith) return { kind: "secure", method: "x509", leapOfFaith: true };
  return {
    kind: "terminate",
    reason: "security-error",
    why: x509 ? "cannot verify the responder's certificate" : "no common authentication method",
    downgrade: false,
  };
}
