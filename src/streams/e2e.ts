/**
 * Node wiring for an end-to-end XML stream over an XTLS tunnel: a StanzaConnection whose
 * stanzas travel inside TLS, and whose close() closes the stream and then the Jingle
 * session.
 *
 * Spec: draft-meyer-xmpp-e2e-encryption-02 section 4 (the initiator sends the first
 * header once the tunnel is open; closing the stream, then session-terminate: "To
 * completely terminate the Jingle session, the terminating party would then also send a
 * Jingle session-terminate message"); XEP-0246 v0.1.1 (the stream itself, see ./core.ts).
 * Guarantee: send() rejects with StreamError("not-open") unless the encrypted stream is
 * open, so a stanza meant for the tunnel never falls back to the server path.
 */
import type { FullJid } from "../core/types.js";
import { systemRandom } from "../crypto/node.js";
import { StanzaFanout, type StanzaConnection } from "../adapters/connection.js";
import type { Element } from "../xml/index.js";
import type { XtlsTunnel } from "../xtls/client.js";
import { XmlStreamSession, type StreamEvent, type StreamHeader } from "./core.js";
import { StreamError } from "./errors.js";

export interface E2eStreamOptions {
  /** Bound on waiting for the peer's stream header. Default 30,000 ms. */
  readonly timeoutMs?: number;
  readonly maxStanzaChars?: number;
}

export class E2eStream implements StanzaConnection {
  private readonly fanout = new StanzaFanout();
  private readonly core: XmlStreamSession;
  private openWaiter: { resolve: (h: StreamHeader) => void; reject: (e: Error) => void } | undefined;
  private closeWaiters: Array<() => void> = [];
  private endedError: StreamError | undefined;
  private isClosed = false;
  header: StreamHeader | undefined;

  constructor(
    readonly tunnel: XtlsTunnel,
    readonly jid: FullJid,
    o: E2eStreamOptions = {},
  ) {
    this.core = new XmlStreamSession({
      role: tunnel.role,
      self: jid,
      peer: tunnel.peer,
      random: systemRandom,
      ...(o.maxStanzaChars === undefined ? {} : { maxStanzaChars: o.maxStanzaChars }),
    });
    tunnel.socket.on("data", (d: Buffer) => {
      this.core.feed(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      this.pump();
    });
    tunnel.socket.on("error", () => undefined); // reported through tunnel.ended
    tunnel.socket.on("close", () => {
      this.core.transportClosed();
      this.pump();
    });
    void tunnel.ended.then(() => {
      this.core.transportClosed();
      this.pump();
    });
  }

  get peer(): FullJid {
    return this.tunnel.peer;
  }

  /** Resolves once both stream headers were exchanged. */
  open(timeoutMs = 30_000): Promise<StreamHeader> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new StreamError("not-open", "no stream header from the peer")), timeoutMs);
      t.unref();
      this.openWaiter = {
        resolve: (h) => {
          clearTimeout(t);
          resolve(h);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      };
      this.core.start();
      this.pump();
    });
  }

  send(stanza: Element): Promise<void> {
    try {
      this.core.send(stanza);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.pump();
  }

  onStanza(handler: (stanza: Element) => void): () => void {
    return this.fanout.subscribe(handler);
  }

  /** Closes the stream, waits for the peer's close, then ends the XTLS tunnel and Jingle session. */
  async close(): Promise<void> {
    if (!this.isClosed) {
      const closed = new Promise<void>((res) => this.closeWaiters.push(res));
      this.core.close();
      await this.pump();
      const t = setTimeout(() => this.closeWaiters.splice(0).forEach((w) => w()), 10_000);
      await closed;
      clearTimeout(t);
    }
    await this.tunnel.close();
  }

  /** The error that ended the stream, if any. */
  get error(): StreamError | undefined {
    return this.endedError;
  }

  private pump(): Promise<void> {
    let last: Promise<void> = Promise.resolve();
    for (;;) {
      const out = this.core.poll();
      if (out === undefined) break;
      if (out.kind === "write") {
        const sock = this.tunnel.socket;
        if (!sock.writable) continue;
        last = new Promise((res) => {
          if (sock.write(out.data)) res();
          else sock.once("drain", () => res());
        });
      } else this.onEvent(out.event);
    }
    return last;
  }

  private onEvent(e: StreamEvent): void {
    switch (e.type) {
      case "open":
        this.header = e.header;
        this.openWaiter?.resolve(e.header);
        this.openWaiter = undefined;
        return;
      case "stanza":
        this.fanout.dispatch(() => e.stanza);
        return;
      case "closed":
        this.isClosed = true;
        this.closeWaiters.splice(0).forEach((w) => w());
        // The party that closed the stream also ends the Jingle session (draft section 4);
        // this side's tunnel ends when that session-terminate arrives.
        return;
      case "error":
        this.isClosed = true;
        this.endedError = e.error;
        this.openWaiter?.reject(e.error);
        this.openWaiter = undefined;
        this.closeWaiters.splice(0).forEach((w) => w());
        if (e.error.condition !== "closed") void this.tunnel.close().catch(() => undefined);
        return;
    }
  }
}

/** Opens the end-to-end stream over an open tunnel (the initiator writes first). */
export async function openE2eStream(tunnel: XtlsTunnel, self: FullJid, o: E2eStreamOptions = {}): Promise<E2eStream> {
  const s = new E2eStream(tunnel, self, o);
  await s.open(o.timeoutMs);
  return s;
}
