/**
 * A {@link StanzaConnection} over a real XMPP server, built from @xmpp/client 0.14's
 * parts: plain TCP (`xmpp://host:port`) and WebSocket (`ws://host:port/xmpp-websocket`).
 *
 * Spec: RFC 6120 (XMPP Core): section 4 (streams; 4.4 closing a stream), section 5
 * (STARTTLS, used when the server offers it), section 6 (SASL; PLAIN is RFC 4616,
 * SCRAM-SHA-1 is RFC 5802), section 7 (resource binding), section 8 (stanzas).
 * RFC 6121 section 4.2 (initial presence) and 4.5 (unavailable presence on close).
 * RFC 7395 (XMPP over WebSocket): the `<open/>`/`<close/>` framing is @xmpp/websocket's;
 * on Node < 22 (no global WebSocket) the `ws` package supplies the socket.
 *
 * Why not `client()` from @xmpp/client: it installs an iq "callee" that answers every
 * iq get/set nobody registered with it with <service-unavailable/> (and any iq whose
 * child count is not one with <bad-request/>). Our layers see every stanza through
 * onStanza() and answer iqs themselves, so that auto-reply would make a second, wrong
 * answer. It also installs reconnect, stream management and SASL2/FAST, which this
 * adapter does not want (a dropped session is reported, not silently resumed).
 *
 * Credentials never appear in errors or logs: errors carry the SASL condition only.
 */
import { Socket as NetSocket } from "node:net";
import { Client } from "@xmpp/client-core";
import type { SocketConstructor } from "@xmpp/connection";
import setupMiddleware from "@xmpp/middleware";
import setupStreamFeatures from "@xmpp/stream-features";
import setupIqCaller from "@xmpp/iq/caller.js";
import setupSasl from "@xmpp/sasl";
import setupResourceBinding from "@xmpp/resource-binding";
import ConnectionTcp from "@xmpp/tcp/lib/Connection.js";
import setupStarttls from "@xmpp/starttls";
import saslPlain from "@xmpp/sasl-plain";
import saslScramSha1 from "@xmpp/sasl-scram-sha-1";
import SASLFactory from "saslmechanisms";
import WsSocket, { isSecure as wsIsSecure } from "@xmpp/websocket/lib/Socket.js";
import ConnectionWebSocket from "@xmpp/websocket/lib/Connection.js";
import FramedParser from "@xmpp/websocket/lib/FramedParser.js";
import { WebSocket as NodeWebSocket } from "ws";
import { parseFullJid, type FullJid } from "../core/types.js";
import { el, NS, parseXml, serialize, type Element } from "../xml/index.js";
import { getLimits } from "../limits.js";
import { AdapterError, StanzaFanout, attrOf, isStanza, type StanzaConnection } from "./connection.js";
import { limitedParser, StreamLimitError } from "./stream-limits.js";

export type SaslMechanism = "PLAIN" | "SCRAM-SHA-1";

export interface XmppConnectOptions {
  /** `xmpp://host:port` (TCP, STARTTLS if offered) or `ws[s]://host:port/path` (RFC 7395). */
  readonly service: string;
  /** The XMPP domain (the stream's 'to'), e.g. "localhost"; may differ from the host. */
  readonly domain: string;
  /** The local part of the account. */
  readonly username: string;
  readonly password: string;
  /** Requested resource; the server may assign another (the bound JID is `jid`). */
  readonly resource?: string;
  /**
   * Default: PLAIN when the stream is encrypted or the host is loopback (SCRAM costs about
   * 1 s per login in @xmpp/client), else SCRAM-SHA-1. PLAIN is refused over an
   * unencrypted stream to a non-loopback host (RFC 4616 section 6 needs confidentiality).
   */
  readonly mechanism?: SaslMechanism;
  /** Bound on the whole login (connect, SASL, bind, initial presence). Default 10,000. */
  readonly timeoutMs?: number;
  /** Send initial presence once online (RFC 6121 section 4.2). Default true. */
  readonly presence?: boolean;
}

export type XmppTransport = "tcp" | "websocket";

// ---- WebSocket transport that works on Node 20 without a global WebSocket ----

class NodeWsSocket extends WsSocket {
  override connect(url: string): void {
    if (typeof globalThis.WebSocket === "function") {
      super.connect(url);
      return;
    }
    this.url = url;
    this.secure = wsIsSecure(url);
    // RFC 7395 section 3.1: the subprotocol is "xmpp". One message carries one stanza
    // (section 3.3.3): a frame larger than the stanza limit (4 bytes per character at
    // most in UTF-8) is refused by ws itself before it is buffered (close code 1009).
    this._attachSocket(new NodeWebSocket(url, ["xmpp"], { maxPayload: 4 * getLimits().maxStanzaBytes + 4096 }));
  }
  terminate(): void {
    const inner = this.socket;
    if (inner instanceof NodeWebSocket) inner.terminate();
    else this.end();
  }
}

class NodeWsConnection extends ConnectionWebSocket {}
NodeWsConnection.prototype.Socket = NodeWsSocket as unknown as SocketConstructor;

// Inbound XML limits (./stream-limits.ts) on both transports. The parser class is read
// when a stream opens, so limits configured before connecting apply.
type ParserClass = NonNullable<typeof ConnectionWebSocket.prototype.Parser>;
class LimitedTcpConnection extends ConnectionTcp {}
const tcpParser = ConnectionTcp.prototype.Parser as ParserClass;
Object.defineProperty(LimitedTcpConnection.prototype, "Parser", {
  get: () => limitedParser(tcpParser, false),
});
Object.defineProperty(NodeWsConnection.prototype, "Parser", {
  get: () => limitedParser(FramedParser as unknown as ParserClass, true),
});

/**
 * After a parse error @xmpp/connection detaches its parser but the socket may still
 * deliver data before it closes; its `_onData` would then throw on the missing parser
 * inside a socket listener (an uncaught exception). Data after the parser is gone is
 * dropped instead.
 */
function guardDataAfterParseError(entity: Client): void {
  const c = entity as unknown as { _onData(data: unknown): void; parser: unknown };
  const onData = c._onData.bind(entity);
  c._onData = (data: unknown) => {
    if (c.parser !== null && c.parser !== undefined) onData(data);
  };
}

// ---- helpers ----

const LOOPBACK = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

function transportOf(service: string): { transport: XmppTransport; host: string } {
  let url: URL;
  try {
    url = new URL(service);
  } catch {
    throw new AdapterError("connection-failed", `not a service URL: ${service}`);
  }
  if (url.protocol === "xmpp:") return { transport: "tcp", host: url.hostname };
  if (url.protocol === "ws:" || url.protocol === "wss:") return { transport: "websocket", host: url.hostname };
  throw new AdapterError("connection-failed", `unsupported service scheme ${url.protocol} (use xmpp:// or ws[s]://)`);
}

function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function errorField(e: unknown, field: string): string | undefined {
  if (typeof e !== "object" || e === null || !(field in e)) return undefined;
  const v: unknown = (e as Record<string, unknown>)[field];
  return typeof v === "string" ? v : undefined;
}

/** Maps what @xmpp/client throws to an AdapterError whose text carries no secret. */
function toAdapterError(e: unknown): AdapterError {
  if (e instanceof AdapterError) return e;
  const name = e instanceof Error ? e.name : undefined;
  const condition = errorField(e, "condition");
  if (name === "SASLError") return new AdapterError("auth-failed", `SASL failure: ${condition ?? "unknown"}`, { cause: e });
  if (name === "TimeoutError") return new AdapterError("timeout", "the server did not answer in time", { cause: e });
  if (name === "StreamError")
    return new AdapterError("connection-failed", `stream error: ${condition ?? "unknown"}`, { cause: e });
  if (name === "StanzaError")
    return new AdapterError("connection-failed", `resource binding failed: ${condition ?? "unknown"}`, { cause: e });
  const code = errorField(e, "code");
  if (code !== undefined) return new AdapterError("connection-failed", code, { cause: e });
  const message = e instanceof Error ? e.message : String(e);
  return new AdapterError("connection-failed", message, { cause: e });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new AdapterError("timeout", `${what} took longer than ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(t);
        reject(err);
      },
    );
  });
}

/** Our own ltx copy of an inbound stanza, in jabber:client (RFC 6120 section 4.8.3). */
function importStanza(text: string): Element | undefined {
  try {
    const s = parseXml(text);
    if (s.attrs["xmlns"] === undefined) s.attrs["xmlns"] = NS.client;
    return s;
  } catch {
    return undefined;
  }
}

function noDelay(entity: { socket?: unknown }): void {
  const s = entity.socket as { setNoDelay?: (on: boolean) => unknown } | undefined;
  if (typeof s?.setNoDelay === "function") s.setNoDelay(true);
}

/** Ends the socket at once (used when a polite close cannot finish). */
function hardClose(entity: Client): void {
  const s: unknown = entity.socket;
  if (s instanceof NetSocket) s.destroy();
  else if (s instanceof NodeWsSocket) s.terminate();
}

// ---- the connection ----

export class XmppConnection implements StanzaConnection {
  private readonly fanout = new StanzaFanout();
  private readonly closeHandlers: Array<(error: AdapterError | undefined) => void> = [];
  private state: "online" | "closing" | "closed" = "online";
  private closing: Promise<void> | undefined;
  private presenceSent = false;

  /** @internal Use {@link connectXmpp}. */
  constructor(
    private readonly entity: Client,
    readonly jid: FullJid,
    readonly transport: XmppTransport,
    private readonly timeoutMs: number,
  ) {
    entity.on("stanza", (raw) => {
      if (this.state !== "online") return;
      const text = raw.toString();
      if (importStanza(text) === undefined) return; // over the XML layer's limits: dropped
      try {
        this.fanout.dispatch(() => importStanza(text) ?? el("invalid"));
      } catch (e) {
        // A handler threw: let the parser finish its chunk (the stanzas after this one must
        // still arrive), then surface the error as an uncaught exception, as a throwing
        // EventEmitter listener would.
        queueMicrotask(() => {
          throw e;
        });
      }
    });
    entity.on("disconnect", () => this.finish(new AdapterError("closed", "the server closed the connection")));
    entity.on("offline", () => this.finish(new AdapterError("closed", "the connection went offline")));
  }

  /** Whether the stream is encrypted (STARTTLS or wss:), as @xmpp/client sees it. */
  get secure(): boolean {
    return this.entity.isSecure();
  }

  get isOpen(): boolean {
    return this.state === "online";
  }

  async send(stanza: Element): Promise<void> {
    if (this.state !== "online") throw new AdapterError("closed", "the connection is closed");
    if (!isStanza(stanza)) throw new TypeError(`not a stanza: <${stanza.name}/>`);
    // A copy: the transport sets 'parent' (and, for WebSocket, xmlns) on what it sends.
    const copy = parseXml(serialize(stanza));
    try {
      await this.entity.send(copy);
    } catch (e) {
      throw this.state === "online" ? toAdapterError(e) : new AdapterError("closed", "the connection is closed");
    }
    if (stanza.name === "presence" && attrOf(stanza, "to") === undefined && attrOf(stanza, "type") === undefined)
      this.presenceSent = true;
  }

  onStanza(handler: (stanza: Element) => void): () => void {
    return this.fanout.subscribe(handler);
  }

  /**
   * Called once when the session ends: with an AdapterError `closed` if the server or
   * the network ended it, with undefined after close(). Returns an unsubscribe.
   */
  onClose(handler: (error: AdapterError | undefined) => void): () => void {
    if (this.state === "closed") {
      queueMicrotask(() => handler(undefined));
      return () => {};
    }
    this.closeHandlers.push(handler);
    return () => {
      const i = this.closeHandlers.indexOf(handler);
      if (i !== -1) this.closeHandlers.splice(i, 1);
    };
  }

  /** Sends unavailable presence, closes the stream and the socket; idempotent. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    if (this.state === "closed") return;
    const wasOnline = this.state === "online";
    this.state = "closing";
    if (wasOnline && this.presenceSent) {
      try {
        await this.entity.send(el("presence", { type: "unavailable" }));
      } catch {
        /* the stream may already be gone */
      }
    }
    try {
      await withTimeout(this.entity.stop(), this.timeoutMs, "closing the stream");
    } catch {
      hardClose(this.entity);
    }
    this.finish(undefined);
  }

  private finish(error: AdapterError | undefined): void {
    if (this.state === "closed") return;
    const unexpected = this.state === "online";
    this.state = "closed";
    if (unexpected) hardClose(this.entity);
    const handlers = [...this.closeHandlers];
    this.closeHandlers.length = 0;
    for (const h of handlers) h(unexpected ? error : undefined);
  }
}

/**
 * Connects, authenticates, binds a resource and (unless `presence: false`) sends initial
 * presence. Rejects with an {@link AdapterError}: `connection-failed` (socket, stream or
 * bind failure), `auth-failed` (SASL), `timeout` (the whole login exceeded `timeoutMs`).
 */
export async function connectXmpp(opts: XmppConnectOptions): Promise<XmppConnection> {
  const { transport, host } = transportOf(opts.service);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const entity = new Client({ service: opts.service, domain: opts.domain, timeout: Math.min(timeoutMs, 5_000) });

  entity.transports.push(LimitedTcpConnection, NodeWsConnection);
  guardDataAfterParseError(entity);
  const middleware = setupMiddleware({ entity });
  const streamFeatures = setupStreamFeatures({ middleware });
  const iqCaller = setupIqCaller({ middleware, entity });
  // Stream features in RFC 6120 order: STARTTLS, then SASL, then resource binding.
  setupStarttls({ streamFeatures });
  const saslFactory = new SASLFactory();
  saslScramSha1(saslFactory);
  saslPlain(saslFactory);

  type Authenticate = (credentials: { username: string; password: string }, mechanism: string) => Promise<void>;
  type OnAuthenticate = (authenticate: Authenticate, mechanisms: string[]) => Promise<void>;
  const sasl = setupSasl as unknown as (
    deps: { streamFeatures: typeof streamFeatures; saslFactory: SASLFactory },
    onAuthenticate: OnAuthenticate,
  ) => void;
  sasl({ streamFeatures, saslFactory }, async (authenticate, offered) => {
    const secure = entity.isSecure();
    const mechanism: SaslMechanism = opts.mechanism ?? (secure || isLoopback(host) ? "PLAIN" : "SCRAM-SHA-1");
    if (!offered.includes(mechanism))
      throw new AdapterError("auth-failed", `the server does not offer ${mechanism} (offers ${offered.join(", ")})`);
    if (mechanism === "PLAIN" && !secure && !isLoopback(host))
      throw new AdapterError("auth-failed", "refusing PLAIN over an unencrypted connection to a non-loopback host");
    await authenticate({ username: opts.username, password: opts.password }, mechanism);
  });
  setupResourceBinding({ iqCaller, streamFeatures }, opts.resource);

  let failure: unknown;
  entity.on("error", (e: unknown) => {
    failure ??= e instanceof StreamLimitError ? new AdapterError("connection-failed", `inbound XML refused: ${e.condition}`, { cause: e }) : e;
  });
  // Nagle's algorithm delays a second small write (an ack after a request) by ~40 ms on
  // TCP; stanzas are latency-sensitive, so send them at once (as Prosody does with
  // nagle = false). WebSocket sockets have no such method.
  entity.on("connect", () => noDelay(entity));

  let conn: XmppConnection;
  try {
    await withTimeout(
      (async () => {
        try {
          await entity.start();
        } catch (e) {
          // SASL and binding failures surface as 'error' events and reject start().
          throw failure ?? e;
        }
      })(),
      timeoutMs,
      "logging in",
    );
    noDelay(entity); // again after STARTTLS may have replaced the socket
    const bound = entity.jid?.toString();
    if (bound === undefined) throw new AdapterError("connection-failed", "no JID was bound");
    conn = new XmppConnection(entity, parseFullJid(bound), transport, timeoutMs);
  } catch (e) {
    hardClose(entity);
    throw toAdapterError(e);
  }
  if (opts.presence ?? true) {
    try {
      await conn.send(el("presence", {}));
    } catch (e) {
      await conn.close();
      throw toAdapterError(e);
    }
  }
  return conn;
}
