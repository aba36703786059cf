/**
 * Type declarations for the @xmpp/* 0.14 modules that ship without types and that
 * ./xmpp-client.ts composes itself (DefinitelyTyped covers client-core, connection,
 * middleware, iq, sasl, stream-features and resource-binding).
 *
 * Spec: RFC 6120 section 5 (STARTTLS), section 6 (SASL: PLAIN per RFC 4616,
 * SCRAM-SHA-1 per RFC 5802), RFC 7395 (XMPP over WebSocket). Only what the adapter
 * uses is declared.
 */

declare module "@xmpp/tcp" {
  import type { Client } from "@xmpp/client-core";
  /** Registers the plain TCP transport (`xmpp://host:port`). */
  export default function tcp(opts: { entity: Client }): void;
}

declare module "@xmpp/starttls" {
  import type { Entity } from "@xmpp/middleware";
  import type { StreamFeatures } from "@xmpp/stream-features";
  /** Upgrades a TCP stream when the server offers <starttls/> (RFC 6120 section 5). */
  export default function starttls<T extends Entity>(opts: { streamFeatures: StreamFeatures<T> }): unknown;
}

declare module "@xmpp/sasl-plain" {
  import type SASLFactory = require("saslmechanisms");
  export default function saslPlain(factory: SASLFactory): void;
}

declare module "@xmpp/sasl-scram-sha-1" {
  import type SASLFactory = require("saslmechanisms");
  export default function saslScramSha1(factory: SASLFactory): void;
}

declare module "@xmpp/websocket/lib/Socket.js" {
  /** The browser-WebSocket wrapper of @xmpp/websocket (an EventEmitter). */
  export default class Socket {
    url: string | null;
    secure: boolean;
    socket: unknown;
    connect(url: string): void;
    end(): void;
    _attachSocket(socket: unknown): void;
  }
  export function isSecure(url: string): boolean;
}

declare module "@xmpp/websocket/lib/Connection.js" {
  import Connection from "@xmpp/connection";
  import type { Element } from "@xmpp/xml";
  /** The RFC 7395 transport (`ws://` / `wss://`); `prototype.Socket` picks the socket. */
  export default class ConnectionWebSocket extends Connection {
    headerElement(): Element;
    socketParameters(service: string): string | undefined;
  }
}

declare module "@xmpp/tcp/lib/Connection.js" {
  import Connection from "@xmpp/connection";
  /** The RFC 6120 TCP transport (`xmpp://host:port`); `prototype.Parser` parses the stream. */
  import type { Element } from "@xmpp/xml";
  export default class ConnectionTCP extends Connection {
    socketParameters(service: string): unknown;
    headerElement(): Element;
  }
}

declare module "@xmpp/websocket/lib/FramedParser.js" {
  import { Parser } from "@xmpp/xml";
  /** The RFC 7395 parser: every top-level element is a stanza, <open/> or <close/>. */
  export default class FramedParser extends Parser {}
}
