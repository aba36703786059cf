/**
 * XEP-0166 v1.1.2 Jingle (the subset XTLS uses) with the XTLS security precondition of
 * draft-meyer-xmpp-e2e-encryption-02: codec, sans-IO session core, security rules.
 */
export * from "./codec.js";
export * from "./errors.js";
export * from "./file.js";
export * from "./security.js";
export * from "./session.js";
