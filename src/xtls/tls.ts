/**
 * TLS over the negotiated bytestream for the XTLS `x509` method, with Node's `tls`.
 *
 * Spec: draft-meyer-xmpp-e2e-encryption-02 section 3
 * - "the responder MUST take the role of the TLS server and the initiator MUST take the
 *   role of the TLS client"; "The responder MUST send a CertificateRequest";
 * - "the Jingle implementation starts a TLS handshake on the transport and signals to
 *   the using application that the transport is open only after the TLS handshake has
 *   finished successfully" (the promise resolves only then);
 * - section 6: a certificate that does not verify, or an invalid TLS message, ends the
 *   session with <security-error/> (the caller does that on rejection).
 * RFC 5246 (TLS 1.2) and RFC 8446 (TLS 1.3) are both allowed (`minVersion`
 * / `maxVersion`). Verification is by pinning: the peer's certificate must hash to the
 * fingerprint announced in Jingle (which the caller checked against its trust store or
 * accepted by leap of faith); no CA chain or host name is involved, so Node's own
 * verification is replaced, not weakened: a missing or different certificate fails.
 */
import { connect as tlsConnect, createServer, type PeerCertificate, type TLSSocket } from "node:tls";
import type { Duplex } from "node:stream";
import type { Fingerprint } from "../jingle/codec.js";
import { sameFingerprint } from "../jingle/security.js";
import { fingerprintLike, type XtlsIdentity } from "./cert.js";
import { XtlsError } from "./errors.js";

export type TlsVersion = "TLSv1.2" | "TLSv1.3";

export interface X509TlsOptions {
  readonly role: "client" | "server";
  readonly identity: XtlsIdentity;
  /** The peer's fingerprint as announced in Jingle (pinned or accepted by the user). */
  readonly peerFingerprint: Fingerprint;
  readonly minVersion?: TlsVersion;
  readonly maxVersion?: TlsVersion;
  /** Bound on the handshake. Default 30,000 ms. */
  readonly timeoutMs?: number;
}

export interface X509Tunnel {
  readonly socket: TLSSocket;
  readonly protocol: string;
  readonly cipher: string;
  readonly peerDer: Uint8Array;
}

/** Checks the presented certificate against the announced fingerprint. */
export function checkPeer(cert: PeerCertificate | undefined, expected: Fingerprint): Uint8Array {
  const raw = cert?.raw;
  if (raw === undefined || raw.length === 0) throw new XtlsError("fingerprint-mismatch", "the peer presented no certificate");
  const der = new Uint8Array(raw);
  const got = fingerprintLike(der, expected);
  if (got === undefined) throw new XtlsError("fingerprint-mismatch", `unsupported fingerprint algorithm ${expected.algo}`);
  if (!sameFingerprint(got, expected)) throw new XtlsError("fingerprint-mismatch", "the certificate is not the one announced in Jingle");
  return der;
}

/** Runs the handshake; resolves with the plaintext socket once it finished and verified. */
export function x509OverDuplex(stream: Duplex, o: X509TlsOptions): Promise<X509Tunnel> {
  const minVersion = o.minVersion ?? "TLSv1.2";
  const maxVersion = o.maxVersion ?? "TLSv1.3";
  return new Promise((resolve, reject) => {
    let settled = false;
    let socket: TLSSocket | undefined;
    const finish = (e: Error | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (e !== undefined || socket === undefined) {
        socket?.destroy();
        stream.destroy();
        const err = e ?? new XtlsError("tls-failure", "no TLS socket");
        reject(err instanceof XtlsError ? err : new XtlsError("tls-failure", "handshake failed", undefined, { cause: err }));
        return;
      }
      socket.removeListener("error", onError);
      try {
        const peerDer = checkPeer(socket.getPeerCertificate(true), o.peerFingerprint);
        resolve({ socket, protocol: socket.getProtocol() ?? "unknown", cipher: socket.getCipher().name, peerDer });
      } catch (err) {
        socket.destroy();
        reject(err);
      }
    };
    const onError = (e: Error): void => finish(e);
    const timer = setTimeout(() => finish(new XtlsError("timeout", "TLS handshake timed out")), o.timeoutMs ?? 30_000);
    timer.unref();
    if (o.role === "client") {
      const s = tlsConnect({
        socket: stream,
        cert: o.identity.certPem,
        key: o.identity.keyPem,
        minVersion,
        maxVersion,
        // Pinning replaces CA verification (checked in finish()); no SNI: peers are JIDs.
        rejectUnauthorized: false,
        checkServerIdentity: () => undefined,
      });
      socket = s;
      s.once("secureConnect", () => finish(undefined));
      s.on("error", onError);
      s.once("close", () => finish(new XtlsError("tls-failure", "the bytestream closed during the handshake")));
    } else {
      // A tls.Server given the bytestream as its connection: its sockets report record
      // errors after the handshake as 'error' events (a bare server TLSSocket does not).
      const server = createServer({
        cert: o.identity.certPem,
        key: o.identity.keyPem,
        minVersion,
        maxVersion,
        // Draft section 3: "The responder MUST send a CertificateRequest".
        requestCert: true,
        rejectUnauthorized: false,
      });
      server.once("secureConnection", (s: TLSSocket) => {
        socket = s;
        s.on("error", onError);
        finish(undefined);
      });
      server.once("tlsClientError", (e: Error) => finish(e));
      stream.once("close", () => finish(new XtlsError("tls-failure", "the bytestream closed during the handshake")));
      server.emit("connection", stream);
    }
  });
}
