/**
 * The plug-in point for the XTLS `srp` method (TLS-SRP, RFC 5054, over TLS 1.2).
 *
 * Spec: draft-meyer-xmpp-e2e-encryption-02 section 5 ("it is REQUIRED for
 * implementations to support at least one TLS cipher that uses Secure Remote Password")
 * and section 8.1 (srp and x509 are mandatory to implement); the prior implementations'
 * convention (../shared/docs/esession-interpretation.md, last paragraph): the SRP
 * username is the initiator's full JID, and the TLS client is the Jingle initiator.
 *
 * The TLS-SRP handshake and record layer live in src/tls-srp/ (another layer). This
 * module deliberately does not import it: the application passes its
 * `srpTlsOverDuplex` function in {@link XtlsOptions.srp}; without it, choosing srp
 * fails with XtlsError("srp-unavailable").
 */
import type { Duplex } from "node:stream";

/**
 * Runs a TLS-SRP handshake over `stream` and resolves with the plaintext Duplex once the
 * handshake finished (rejects on a wrong password or any TLS failure). Exactly the
 * signature of src/tls-srp's `srpTlsOverDuplex`.
 */
export type SrpTlsOverDuplex = (
  stream: Duplex,
  opts: { role: "client" | "server"; username: string; password: string },
) => Promise<Duplex>;
