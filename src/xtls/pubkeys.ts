/**
 * Certificate exchange over the end-to-end stream, so that a session bootstrapped with
 * a password (TLS-SRP) or by leap of faith leads to pinned x509 for later sessions.
 *
 * Spec: draft-meyer-xmpp-e2e-encryption-02 section 5.1: "a client SHOULD request the
 * certificate according to [XEP-0189] over the secure connection ... A client MUST NOT
 * request the certificate over the insecure stream-based on the connection to the XMPP
 * server"; "The peer MUST return its own client certificate". Wire format as in the
 * draft's example (XEP-0189 as of 2009): <pubkeys xmlns='urn:xmpp:pubkey:0'> with
 * <keyinfo><x509cert>Base64 DER</x509cert></keyinfo>. Current XEP-0189 (v0.14,
 * 'urn:xmpp:pubkey:2') is a different PEP-based design and is not used here.
 */
import { X509Certificate } from "node:crypto";
import { bareJid } from "../core/types.js";
import { el, elements, type Element } from "../xml/index.js";
import { attrOf } from "../adapters/connection.js";
import type { E2eStream } from "../streams/e2e.js";
import type { Fingerprint } from "../jingle/codec.js";
import { fingerprintOf, type XtlsIdentity } from "./cert.js";
import { XtlsError } from "./errors.js";
import type { XtlsTrustStore } from "./trust.js";

export const NS_PUBKEY_0 = "urn:xmpp:pubkey:0";

function pubkeysChild(s: Element): Element | undefined {
  return elements(s).find((c) => c.name === "pubkeys" && c.attrs.xmlns === NS_PUBKEY_0);
}

/** Answers the peer's <pubkeys/> requests on this (encrypted) stream with our certificate. */
export function servePubkeys(stream: E2eStream, identity: XtlsIdentity): () => void {
  return stream.onStanza((s) => {
    if (s.name !== "iq" || attrOf(s, "type") !== "get" || pubkeysChild(s) === undefined) return;
    const b64 = Buffer.from(identity.der).toString("base64");
    void stream
      .send(el("iq", { type: "result", id: attrOf(s, "id"), to: stream.peer }, el("pubkeys", { xmlns: NS_PUBKEY_0 }, el("keyinfo", {}, el("x509cert", {}, b64)))))
      .catch(() => undefined);
  });
}

/**
 * Requests the peer's certificate over the encrypted stream and pins it for the peer's
 * bare JID. Only over a tunnel with TLS (never method "none"). Resolves with the pinned
 * fingerprint.
 */
export function fetchAndPinPeerCertificate(stream: E2eStream, trust: XtlsTrustStore, timeoutMs = 30_000): Promise<Fingerprint> {
  if (stream.tunnel.method === "none") return Promise.reject(new XtlsError("not-protected", "certificates are only exchanged over an encrypted tunnel"));
  const id = `pk-${Math.random().toString(36).slice(2)}`;
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      off();
      reject(new XtlsError("timeout", "no <pubkeys/> answer"));
    }, timeoutMs);
    const off = stream.onStanza((s) => {
      if (s.name !== "iq" || attrOf(s, "id") !== id) return;
      clearTimeout(t);
      off();
      const cert = pubkeysChild(s)
        ?.getChild("keyinfo")
        ?.getChildText("x509cert")
        ?.replace(/\s+/g, "");
      if (attrOf(s, "type") !== "result" || cert === undefined || cert.length === 0) {
        reject(new XtlsError("peer-unverified", "the peer returned no certificate"));
        return;
      }
      try {
        const der = new Uint8Array(new X509Certificate(Buffer.from(cert, "base64")).raw);
        const fp = fingerprintOf(der);
        trust.pin(bareJid(stream.peer), fp).then(() => resolve(fp), reject);
      } catch {
        reject(new XtlsError("peer-unverified", "the peer's certificate does not parse"));
      }
    });
    void stream.send(el("iq", { type: "get", id, to: stream.peer }, el("pubkeys", { xmlns: NS_PUBKEY_0 }))).catch((e: unknown) => {
      clearTimeout(t);
      off();
      reject(e instanceof Error ? e : new XtlsError("terminated", "the stream is closed"));
    });
  });
}
