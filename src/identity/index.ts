/**
 * The identity layer: long-term signing keys (XEP-0116 v0.16 sections 10.3, 10.4), their
 * XML-DSig `<KeyValue/>` form and fingerprints (section 4.1), and keys at rest (section 14).
 * See docs/identity-and-trust.md.
 */
export * from "./errors.js";
export * from "./keys.js";
export * from "./keyvalue.js";
export * from "./keyfile.js";
export * from "./keyring.js";
