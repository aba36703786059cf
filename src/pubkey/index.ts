/**
 * XEP-0189 Public Key Publishing v0.14 (and the XTLS draft's `urn:xmpp:pubkey:0`
 * request): codec, key logic, sans-IO core and its Promise wiring. See docs/pubkey.md.
 */
export * from "./errors.js";
export * from "./codec.js";
export * from "./keys.js";
export * from "./client.js";
export * from "./service.js";
