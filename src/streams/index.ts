/**
 * End-to-end XML streams (XEP-0246 v0.1.1) over XTLS tunnels
 * (draft-meyer-xmpp-e2e-encryption-02 section 4).
 */
export * from "./core.js";
export * from "./e2e.js";
export * from "./errors.js";
export * from "./parser.js";
