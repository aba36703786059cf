/**
 * The TLS-SRP layer's error: one class whose `condition` is the TLS alert that ended the
 * connection (sent by us or received from the peer), or "transport_closed" when the
 * underlying stream ended without a close_notify.
 *
 * Spec: RFC 5246 (TLS 1.2) section 7.2 (Alert Protocol, AlertDescription values);
 * RFC 5054 section 2.9 (SRP uses unknown_psk_identity from RFC 4279 for an unknown or
 * missing username, insufficient_security for unacceptable group parameters); RFC 5746
 * section 3 (no_renegotiation). Messages never contain key material, passwords or data.
 */

export const ALERTS = {
  close_notify: 0,
  unexpected_message: 10,
  bad_record_mac: 20,
  record_overflow: 22,
  decompression_failure: 30,
  handshake_failure: 40,
  bad_certificate: 42,
  unsupported_certificate: 43,
  certificate_unknown: 46,
  illegal_parameter: 47,
  decode_error: 50,
  decrypt_error: 51,
  protocol_version: 70,
  insufficient_security: 71,
  internal_error: 80,
  user_canceled: 90,
  no_renegotiation: 100,
  unsupported_extension: 110,
  unknown_psk_identity: 115,
} as const;

export type AlertName = keyof typeof ALERTS;

export type SrpTlsCondition = AlertName | "unknown_alert" | "transport_closed";

export function alertName(code: number): AlertName | undefined {
  for (const [name, c] of Object.entries(ALERTS)) if (c === code) return name as AlertName;
  return undefined;
}

export class SrpTlsError extends Error {
  override readonly name = "SrpTlsError";
  constructor(
    readonly condition: SrpTlsCondition,
    /** "sent": we raised the alert; "received": the peer did; "local": no alert on the wire. */
    readonly origin: "sent" | "received" | "local",
    detail?: string,
  ) {
    super(`${condition} (${origin})${detail ? `: ${detail}` : ""}`);
  }
}

/** Thrown inside the core to abort with a fatal alert; never escapes receive()/poll(). */
export class TlsAbort extends Error {
  constructor(
    readonly alert: AlertName,
    readonly detail: string,
  ) {
    super(`${alert}: ${detail}`);
  }
}
