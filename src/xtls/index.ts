/**
 * XTLS (draft-meyer-xmpp-e2e-encryption-02): TLS over Jingle-negotiated in-band
 * bytestreams, x509 method with pinning; the srp method plugs in via `XtlsOptions.srp`.
 */
export * from "./cert.js";
export * from "./client.js";
export * from "./disco.js";
export * from "./errors.js";
export * from "./file.js";
export * from "./methods.js";
export * from "./pubkeys.js";
export * from "./tls.js";
export * from "./trust.js";
export * from "./support.js";
