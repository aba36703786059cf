/**
 * A hostile TCP proxy on 127.0.0.1 between an XMPP client and the server (Prosody in the
 * tests): it splits each direction's byte stream into the stream header, top-level stanzas
 * and the stream close, and lets a test drop, duplicate, replace, hold or inject stanzas,
 * while recording every byte that passed for plaintext scans.
 *
 * Spec: RFC 6120 section 4 (an XML stream: one header, then top-level elements; a new
 * header after SASL success restarts the stream, section 6.4.6). The splitter understands
 * exactly what a stanza boundary needs: tags, quoted attribute values, self-closing tags,
 * comments, CDATA and the XML declaration. Test support only, loopback only.
 */
import { createServer, connect, type Server, type Socket } from "node:net";
import { type Element, parseXml, serialize } from "../../src/xml/index.js";

export type Direction = "c2s" | "s2c";

export interface ProxiedStanza {
  readonly conn: number;
  readonly direction: Direction;
  /** The parsed stanza (a copy the hook may keep or alter). */
  readonly stanza: Element;
  /** The exact text that arrived. */
  readonly raw: string;
}

export type ProxyVerdict =
  | { readonly action: "deliver" }
  | { readonly action: "drop" }
  | { readonly action: "duplicate" }
  | { readonly action: "replace"; readonly stanzas: readonly Element[] };

export interface HostileProxy {
  readonly port: number;
  /** xmpp://127.0.0.1:PORT, for connectXmpp({ service }). */
  readonly service: string;
  /** Every byte each direction carried (after the hook), as text. */
  readonly transcript: { c2s: string; s2c: string };
  setHook(h: ((s: ProxiedStanza) => ProxyVerdict) | undefined): void;
  /** Sends a forged stanza on connection `conn` in `direction`. */
  inject(conn: number, direction: Direction, stanza: Element): void;
  close(): Promise<void>;
}

/** Splits an XML stream into header / stanza / close tokens; keeps any incomplete tail. */
export class StreamSplitter {
  private buf = "";
  private depth = 0;
  private start = 0;
  private pos = 0;

  push(chunk: string): Array<{ kind: "header" | "stanza" | "close" | "text"; text: string }> {
    this.buf += chunk;
    const out: Array<{ kind: "header" | "stanza" | "close" | "text"; text: string }> = [];
    while (this.pos < this.buf.length) {
      const lt = this.buf.indexOf("<", this.pos);
      if (lt === -1) {
        this.pos = this.buf.length;
        break;
      }
      const end = this.tagEnd(lt);
      if (end === -1) break; // incomplete tag: wait for more bytes
      const tag = this.buf.slice(lt, end + 1);
      this.pos = end + 1;
      if (tag.startsWith("<?") || tag.startsWith("<!--")) {
        if (this.depth === 0) this.emit(out, "text");
        continue;
      }
      if (tag.startsWith("<![CDATA[")) continue;
      if (/^<stream:stream[\s>]/.test(tag)) {
        this.depth = 0;
        this.emit(out, "header");
        continue;
      }
      if (tag.startsWith("</stream:stream")) {
        this.emit(out, "close");
        continue;
      }
      if (this.depth === 0 && lt > this.start) {
        // Whitespace keepalives between stanzas.
        const ws = this.buf.slice(this.start, lt);
        if (ws.length) out.push({ kind: "text", text: ws });
        this.start = lt;
      }
      if (tag.startsWith("</")) this.depth--;
      else if (!tag.endsWith("/>")) this.depth++;
      if (this.depth === 0) this.emit(out, "stanza");
    }
    if (this.depth === 0 && this.pos === this.buf.length && this.start < this.pos) this.emit(out, "text");
    // Compact the buffer.
    this.buf = this.buf.slice(this.start);
    this.pos -= this.start;
    this.start = 0;
    return out;
  }

  private emit(out: Array<{ kind: "header" | "stanza" | "close" | "text"; text: string }>, kind: "header" | "stanza" | "close" | "text"): void {
    const text = this.buf.slice(this.start, this.pos);
    if (text.length) out.push({ kind, text });
    this.start = this.pos;
  }

  /** Index of the '>' that ends the tag opening at `lt`, honouring quotes, comments, CDATA. */
  private tagEnd(lt: number): number {
    if (this.buf.startsWith("<!--", lt)) {
      const e = this.buf.indexOf("-->", lt);
      return e === -1 ? -1 : e + 2;
    }
    if (this.buf.startsWith("<![CDATA[", lt)) {
      const e = this.buf.indexOf("]]>", lt);
      return e === -1 ? -1 : e + 2;
    }
    let quote: string | undefined;
    for (let i = lt + 1; i < this.buf.length; i++) {
      const c = this.buf[i];
      if (quote) {
        if (c === quote) quote = undefined;
      } else if (c === '"' || c === "'") quote = c;
      else if (c === ">") return i;
    }
    return -1;
  }
}

export async function startHostileProxy(target: { host: string; port: number }): Promise<HostileProxy> {
  let hook: ((s: ProxiedStanza) => ProxyVerdict) | undefined;
  const transcript = { c2s: "", s2c: "" };
  const conns = new Map<number, { client: Socket; server: Socket }>();
  let next = 0;
  const write = (sock: Socket, dir: Direction, text: string): void => {
    transcript[dir] += text;
    if (!sock.destroyed) sock.write(text);
  };
  const server: Server = createServer((client) => {
    const id = ++next;
    const upstream = connect(target.port, target.host);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    conns.set(id, { client, server: upstream });
    const pipe = (from: Socket, to: Socket, dir: Direction): void => {
      const split = new StreamSplitter();
      from.setEncoding("utf8");
      from.on("data", (chunk: string) => {
        for (const tok of split.push(chunk)) {
          if (tok.kind !== "stanza" || !hook) {
            write(to, dir, tok.text);
            continue;
          }
          let stanza: Element;
          try {
            stanza = parseXml(tok.text);
          } catch {
            write(to, dir, tok.text);
            continue;
          }
          const v = hook({ conn: id, direction: dir, stanza, raw: tok.text });
          switch (v.action) {
            case "deliver":
              write(to, dir, tok.text);
              break;
            case "drop":
              break;
            case "duplicate":
              write(to, dir, tok.text + tok.text);
              break;
            case "replace":
              for (const s of v.stanzas) write(to, dir, serialize(s));
              break;
          }
        }
      });
      from.on("close", () => to.destroy());
      from.on("error", () => to.destroy());
    };
    pipe(client, upstream, "c2s");
    pipe(upstream, client, "s2c");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    port,
    service: `xmpp://127.0.0.1:${port}`,
    transcript,
    setHook: (h) => {
      hook = h;
    },
    inject: (conn, direction, stanza) => {
      const c = conns.get(conn);
      if (c) write(direction === "c2s" ? c.server : c.client, direction, serialize(stanza));
    },
    close: async () => {
      for (const c of conns.values()) {
        c.client.destroy();
        c.server.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
