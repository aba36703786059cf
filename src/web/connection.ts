/**
 * A {@link StanzaConnection} for browsers: XMPP over WebSocket (RFC 7395) with
 * @xmpp/client 0.14's parts and the browser's own WebSocket. The same pieces and the same
 * reasons as src/adapters/xmpp-client.ts (no iq "callee" auto-replies, no reconnect or
 * stream resumption: a dropped session is reported), without Node's TCP and `ws`.
 *
 * Spec: RFC 7395 sections 3.1 (subprotocol "xmpp"), 3.3-3.6 (<open/>/<close/> framing,
 * @xmpp/websocket's), RFC 6120 sections 6 (SASL: PLAIN over wss: or loopback only, else
 * SCRAM-SHA-1, RFC 4616 section 6 / RFC 5802), 7 (resource binding), 8 (stanzas); RFC
 * 6121 section 4.2 (initial presence is the caller's: SecureClient.announce()).
 * Credentials never appear in errors.
 */
import { Client } from "@xmpp/client-core";
import setupIqCaller from "@xmpp/iq/caller.js";
import setupMiddleware from "@xmpp/middleware";
import setupResourceBinding from "@xmpp/resource-binding";
import setupSasl from "@xmpp/sasl";
import saslPlain from "@xmpp/sasl-plain";
import saslScramSha1 from "@xmpp/sasl-scram-sha-1";
import setupStreamFeatures from "@xmpp/stream-features";
import ConnectionWebSocket from "@xmpp/websocket/lib/Connection.js";
import FramedParser from "@xmpp/websocket/lib/FramedParser.js";
import SASLFactory from "saslmechanisms";
import { AdapterError, StanzaFanout, isStanza, type StanzaConnection } from "../adapters/connection.js";
import { limitedParser } from "../adapters/stream-limits.js";
import { parseFullJid, type FullJid } from "../core/types.js";
import { NS, parseXml, serialize, type Element } from "../xml/index.js";

export interface BrowserConnectOptions {
  /** ws[s]://host:port/path of the server's RFC 7395 endpoint. */
  readonly service: string;
  readonly domain: string;
  readonly username: string;
  readonly password: string;
  readonly resource?: string;
  readonly timeoutMs?: number;
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

function errorText(e: unknown): AdapterError {
  if (e instanceof AdapterError) return e;
  const name = e instanceof Error ? e.name : "";
  const cond = typeof e === "object" && e !== null && "condition" in e ? String((e as { condition: unknown }).condition) : "unknown";
  if (name === "SASLError") return new AdapterError("auth-failed", `SASL failure: ${cond}`);
  if (name === "TimeoutError") return new AdapterError("timeout", "the server did not answer in time");
  return new AdapterError("connection-failed", name === "StreamError" ? `stream error: ${cond}` : "could not connect to the server");
}

// Inbound XML limits (src/adapters/stream-limits.ts, docs/security.md) on the browser's
// WebSocket too: each frame is checked whole before it is parsed. The parser class is read
// when a stream opens, so limits configured before connecting apply.
type ParserClass = NonNullable<typeof ConnectionWebSocket.prototype.Parser>;
class LimitedWsConnection extends ConnectionWebSocket {}
Object.defineProperty(LimitedWsConnection.prototype, "Parser", {
  get: () => limitedParser(FramedParser as unknown as ParserClass, true),
});

export class BrowserXmppConnection implements StanzaConnection {
  private readonly fanout = new StanzaFanout();
  private open = true;
  private readonly closeHandlers: Array<(e: AdapterError | undefined) => void> = [];

  constructor(
    private readonly entity: Client,
    readonly jid: FullJid,
  ) {
    entity.on("stanza", (raw) => {
      if (!this.open) return;
      const text = raw.toString();
      this.fanout.dispatch(() => {
        const s = parseXml(text);
        if (s.attrs["xmlns"] === undefined) s.attrs["xmlns"] = NS.client;
        return s;
      });
    });
    entity.on("disconnect", () => this.finish(new AdapterError("closed", "the server closed the connection")));
  }

  async send(stanza: Element): Promise<void> {
    if (!this.open) throw new AdapterError("closed", "the connection is closed");
    if (!isStanza(stanza)) throw new TypeError(`not a stanza: <${stanza.name}/>`);
    await this.entity.send(parseXml(serialize(stanza)));
  }

  onStanza(handler: (stanza: Element) => void): () => void {
    return this.fanout.subscribe(handler);
  }

  onClose(handler: (e: AdapterError | undefined) => void): void {
    this.closeHandlers.push(handler);
  }

  async close(): Promise<void> {
    if (!this.open) return;
    try {
      await this.entity.stop();
    } catch {
      /* already gone */
    }
    this.finish(undefined);
  }

  private finish(e: AdapterError | undefined): void {
    if (!this.open) return;
    this.open = false;
    for (const h of this.closeHandlers.splice(0)) h(e);
  }
}

/** Logs in over WebSocket; rejects with a typed AdapterError (never containing the password). */
export async function connectBrowserXmpp(o: BrowserConnectOptions): Promise<BrowserXmppConnection> {
  const url = new URL(o.service);
  if (url.protocol !== "ws:" && url.protocol !== "wss:") throw new AdapterError("connection-failed", "the service must be ws:// or wss://");
  const entity = new Client({ service: o.service, domain: o.domain, timeout: Math.min(o.timeoutMs ?? 10_000, 5_000) });
  entity.transports.push(LimitedWsConnection);
  const middleware = setupMiddleware({ entity });
  const streamFeatures = setupStreamFeatures({ middleware });
  const iqCaller = setupIqCaller({ middleware, entity });
  const factory = new SASLFactory();
  saslScramSha1(factory);
  saslPlain(factory);
  type Authenticate = (c: { username: string; password: string }, mechanism: string) => Promise<void>;
  const sasl = setupSasl as unknown as (
    deps: { streamFeatures: typeof streamFeatures; saslFactory: SASLFactory },
    onAuthenticate: (authenticate: Authenticate, mechanisms: string[]) => Promise<void>,
  ) => void;
  const plainOk = url.protocol === "wss:" || LOOPBACK.has(url.hostname);
  sasl({ streamFeatures, saslFactory: factory }, async (authenticate, offered) => {
    const mech = plainOk && offered.includes("PLAIN") ? "PLAIN" : "SCRAM-SHA-1";
    if (!offered.includes(mech)) throw new AdapterError("auth-failed", `the server does not offer ${mech}`);
    await authenticate({ username: o.username, password: o.password }, mech);
  });
  setupResourceBinding({ iqCaller, streamFeatures }, o.resource);
  let failure: unknown;
  entity.on("error", (e: unknown) => {
    failure ??= e;
  });
  try {
    await entity.start();
  } catch (e) {
    throw errorText(failure ?? e);
  }
  const bound = entity.jid?.toString();
  if (bound === undefined) throw new AdapterError("connection-failed", "no JID was bound");
  return new BrowserXmppConnection(entity, parseFullJid(bound));
}
