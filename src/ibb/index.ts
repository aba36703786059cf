/**
 * XEP-0047 v2.0.1 In-Band Bytestreams: codec, sans-IO session core, Node Duplex wiring.
 */
export * from "./codec.js";
export * from "./errors.js";
export * from "./session.js";
export * from "./duplex.js";
