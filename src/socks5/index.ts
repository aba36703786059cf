/**
 * XEP-0065 v1.8.2 SOCKS5 Bytestreams (direct candidates) for the XEP-0260 v1.0.3 Jingle
 * transport: sans-IO negotiators and Node sockets.
 */
export * from "./negotiate.js";
export * from "./node.js";
