/**
 * Helpers for the offline / devices / history interop tests: a SecureClient on a real
 * Prosody connection whose sent and received stanzas are recorded, waiting for events,
 * presence subscriptions.
 *
 * Spec: RFC 6121 section 3 (presence subscription: subscribe / subscribed), section 4.2
 * (initial presence, sent only once every handler is registered so that offline messages
 * (XEP-0160) reach them all).
 */
import { connectXmpp, type XmppConnection } from "../../src/adapters/xmpp-client.js";
import type { StanzaConnection } from "../../src/adapters/connection.js";
import { type ClientEvent, SecureClient, type SecureClientOptions } from "../../src/client/secure-client.js";
import { bareJid } from "../../src/core/types.js";
import { el, type Element } from "../../src/xml/index.js";
import { after, before } from "node:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";

export interface Side {
  readonly conn: XmppConnection;
  readonly client: SecureClient;
  readonly events: ClientEvent[];
  /** Every stanza received (serialized). */
  readonly received: string[];
  /** Every stanza sent (serialized). */
  readonly sent: Element[];
}

/** A recording wrapper: what the client sends is kept for replay tests. */
function recording(conn: XmppConnection, sent: Element[]): StanzaConnection {
  return {
    jid: conn.jid,
    send: (s: Element) => {
      sent.push(s);
      return conn.send(s);
    },
    onStanza: (h) => conn.onStanza(h),
    close: () => conn.close(),
  };
}

export async function side(
  server: ProsodyInstance,
  user: string,
  resource: string,
  opts: Omit<SecureClientOptions, "connection">,
  presence = true,
): Promise<Side> {
  const conn = await connectXmpp({ service: server.service, domain: server.domain, username: user, password: `${user}-pw`, resource, presence: false });
  const received: string[] = [];
  const sent: Element[] = [];
  const client = new SecureClient({ connection: recording(conn, sent), ...opts });
  conn.onStanza((s) => received.push(s.toString()));
  const events: ClientEvent[] = [];
  client.on((e) => events.push(e));
  if (presence) await client.announce();
  return { conn, client, events, received, sent };
}

export function waitFor(s: Side, pred: (evs: readonly ClientEvent[]) => boolean, what: string, server?: ProsodyInstance, ms = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (pred(s.events)) return resolve();
    const t = setTimeout(() => {
      off();
      const types = s.events.map((x) => (x.type === "failed" ? `failed:${x.error.condition}` : x.type === "undecryptable" ? `undecryptable:${x.reason}` : x.type));
      reject(new Error(`timed out waiting for ${what} on ${s.conn.jid}: ${JSON.stringify(types.slice(-30))}${server ? `\n${server.logTail(10)}` : ""}`));
    }, ms);
    const off = s.client.on(() => {
      if (pred(s.events)) {
        clearTimeout(t);
        off();
        resolve();
      }
    });
  });
}

export const bodies = (evs: readonly ClientEvent[]): string[] => evs.flatMap((e) => (e.type === "message" && e.body !== undefined ? [e.body] : []));

/** `a` subscribes to `b`'s presence and `b` approves (RFC 6121 3.1), both ways when `mutual`. */
export async function subscribe(a: Side, b: Side, mutual = true): Promise<void> {
  const aBare = bareJid(a.conn.jid);
  const bBare = bareJid(b.conn.jid);
  await a.conn.send(el("presence", { to: bBare, type: "subscribe" }));
  await b.conn.send(el("presence", { to: aBare, type: "subscribed" }));
  if (mutual) {
    await b.conn.send(el("presence", { to: aBare, type: "subscribe" }));
    await a.conn.send(el("presence", { to: bBare, type: "subscribed" }));
  }
  await new Promise((r) => setTimeout(r, 150));
}

export async function shut(...sides: Side[]): Promise<void> {
  for (const s of sides) {
    await s.client.close().catch(() => undefined);
    await s.conn.close().catch(() => undefined);
  }
}

/**
 * For a test file: a Prosody with mod_private (XEP-0049, where the archive lives on Prosody)
 * for `users` (password "<user>-pw") and a scratch directory, started before the file's
 * tests and removed after; `use` receives both. mod_private is enabled for localhost only:
 * host-level modules_enabled adds to the global list (Prosody 0.12 modulemanager).
 */
export function privateStorageProsody(prefix: string, users: readonly string[], use: (server: ProsodyInstance, dir: string) => void): void {
  let server: ProsodyInstance | undefined;
  let dir: string | undefined;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), prefix));
    server = await startProsody({
      users: users.map((u): [string, string] => [u, `${u}-pw`]),
      extraConfig: ['VirtualHost "localhost"', '  modules_enabled = { "private" }'].join("\n"),
    });
    use(server, dir);
  });
  after(async () => {
    await server?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });
}
