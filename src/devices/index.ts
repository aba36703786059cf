/**
 * The many-devices layer: device registry (presence + disco/caps + XEP-0187 options, stale
 * expiry), fan-out bookkeeping with per-device negotiation deadlines, and the carbons /
 * hints / sent-by-self codec. SecureClient wires them (option `devices`).
 *
 * Spec: XEP-0280 v1.0, XEP-0334 v0.3, XEP-0115 v1.6.0, XEP-0030 v2.5.0, XEP-0187 v0.5,
 * RFC 6121 section 4; see docs/offline-and-devices.md "Many devices".
 */
export * from "./codec.js";
export * from "./fanout.js";
export * from "./registry.js";
