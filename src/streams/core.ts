/**
 * An end-to-end XML stream as a sans-IO machine: bytes from the tunnel in, bytes to
 * write and events (open, stanza, closed, error) out.
 *
 * Spec:
 * - XEP-0246 v0.1.1 (End-to-End XML Streams): stream header and response header, version
 *   '1.0'; "either entity then can send XMPP message, presence, and IQ stanzas, with or
 *   without 'to' and 'from' addresses"; ending: "either party closes the XML stream ...
 *   The other party then closes the stream in the other direction as well".
 * - draft-meyer-xmpp-e2e-encryption-02 section 4: the initiator's header carries 'from'
 *   and 'to' which "SHOULD specify the full JIDs of the clients" and version='1.0'; the
 *   responder answers with its header including an 'id'; stanzas flow both ways; then
 *   </stream:stream>, then the Jingle session-terminate (done by the wiring).
 * - RFC 6120: section 4.7 header attributes; 4.9 stream errors; 8.1.2.1 'from' (here the
 *   peer's identity is the tunnel's: a stanza claiming another sender is invalid-from;
 *   a stanza without 'from' is stamped with the peer's full JID); 11.1 restricted XML.
 * We send no <stream:features/> (XEP-0246 says SHOULD when both say version 1.0, for
 * STARTTLS/SASL; the tunnel is already TLS with mutual authentication, so there is
 * nothing to offer) and ignore features the peer sends.
 */
import { bareJid, type FullJid, type Random } from "../core/types.js";
import { toHex, utf8 } from "../core/bytes.js";
import { el, NS, serialize, type Element } from "../xml/index.js";
import { attrOf } from "../adapters/connection.js";
import { StreamError, type StreamCondition } from "./errors.js";
import { XmlStreamParser, type ParserEvent } from "./parser.js";

export const NS_STREAM = "http://etherx.jabber.org/streams";
export const NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams";

export interface StreamHeader {
  readonly from: string | undefined;
  readonly to: string | undefined;
  readonly id: string | undefined;
  readonly version: string | undefined;
}

export type StreamEvent =
  | { readonly type: "open"; readonly header: StreamHeader }
  | { readonly type: "stanza"; readonly stanza: Element }
  | { readonly type: "closed"; readonly by: "local" | "remote" }
  | { readonly type: "error"; readonly error: StreamError };

export type StreamOutput = { readonly kind: "write"; readonly data: Uint8Array } | { readonly kind: "event"; readonly event: StreamEvent };

export interface XmlStreamOptions {
  readonly role: "initiator" | "responder";
  readonly self: FullJid;
  readonly peer: FullJid;
  readonly random: Random;
  /** Largest stanza accepted, in characters. Default 256 KiB (Prosody's limit). */
  readonly maxStanzaChars?: number;
}

type State = "idle" | "awaiting-header" | "open" | "closing" | "closed";

/** `<stream:stream ...>` as an open tag: an ltx element serialized, minus its self-close. */
function openTag(e: Element): string {
  const s = serialize(e);
  if (!s.endsWith("/>")) throw new Error("stream header must be empty");
  return `${s.slice(0, -2)}>`;
}

const CLOSE_TAG = "</stream:stream>";

export class XmlStreamSession {
  private readonly queue: StreamOutput[] = [];
  private state: State = "idle";
  private readonly parser: XmlStreamParser;

  constructor(private readonly o: XmlStreamOptions) {
    this.parser = new XmlStreamParser(o.maxStanzaChars ?? 256 * 1024);
  }

  get stateName(): State {
    return this.state;
  }

  poll(): StreamOutput | undefined {
    return this.queue.shift();
  }

  /** Initiator: writes the initial header. Responder: starts waiting for it. */
  start(): void {
    if (this.state !== "idle") return;
    if (this.o.role === "initiator") this.writeHeader(undefined);
    this.state = "awaiting-header";
  }

  /** Sends a stanza over the stream. Throws StreamError("not-open") unless open. */
  send(stanza: Element): void {
    if (this.state !== "open") throw new StreamError("not-open", "the end-to-end stream is not open");
    if (stanza.name !== "message" && stanza.name !== "presence" && stanza.name !== "iq")
      throw new StreamError("unsupported-stanza-type", "only message, presence and iq");
    const copy = el(stanza.name, { ...stanza.attrs, xmlns: undefined }, ...stanza.children);
    // Inherit jabber:client from the stream; 'from' defaults to us (RFC 6120 8.1.2.1).
    const ns = attrOf(stanza, "xmlns");
    if (ns !== undefined && ns !== NS.client) throw new StreamError("invalid-namespace", "stanzas are jabber:client");
    this.write(serialize(copy));
  }

  /** Closes our direction (XEP-0246 "Ending an e2e Stream"). */
  close(): void {
    if (this.state === "open" || this.state === "awaiting-header") {
      this.write(CLOSE_TAG);
      this.state = "closing";
    } else if (this.state === "idle") {
      this.state = "closed";
      this.emit({ type: "closed", by: "local" });
    }
  }

  /** The tunnel ended without the peer closing the stream. */
  transportClosed(): void {
    if (this.state === "closed") return;
    const wasClosing = this.state === "closing";
    this.state = "closed";
    if (wasClosing) this.emit({ type: "closed", by: "local" });
    else this.emit({ type: "error", error: new StreamError("closed", "the tunnel closed under the stream") });
  }

  feed(bytes: Uint8Array): void {
    if (this.state === "closed" || this.state === "idle") return;
    for (const ev of this.parser.write(bytes)) {
      this.onParserEvent(ev);
      if (this.stateName === "closed") return;
    }
  }

  private onParserEvent(ev: ParserEvent): void {
    switch (ev.type) {
      case "header": {
        if (this.state !== "awaiting-header") return this.streamError("bad-format", "a second stream header");
        if (ev.name !== "stream:stream" || ev.attrs["xmlns:stream"] !== NS_STREAM) return this.streamError("invalid-namespace", "not an XMPP stream");
        if ((ev.attrs.xmlns ?? NS.client) !== NS.client) return this.streamError("invalid-namespace", "the default namespace must be jabber:client");
        const h: StreamHeader = { from: ev.attrs.from, to: ev.attrs.to, id: ev.attrs.id, version: ev.attrs.version };
        // Draft section 4 / XEP-0246: the headers name the two parties (full or bare JIDs).
        if (h.from !== undefined && h.from !== this.o.peer && h.from !== bareJid(this.o.peer)) return this.streamError("invalid-from", "header 'from' is not the peer");
        if (h.to !== undefined && h.to !== this.o.self && h.to !== bareJid(this.o.self)) return this.streamError("invalid-from", "header 'to' is not us");
        if (this.o.role === "responder") this.writeHeader(`e2e-${toHex(this.o.random.bytes(8))}`);
        this.state = "open";
        this.emit({ type: "open", header: h });
        return;
      }
      case "element": {
        if (this.state !== "open" && this.state !== "closing") return this.streamError("bad-format", "element before the stream header");
        const e = ev.element;
        if (e.name === "stream:features") return;
        if (e.name === "stream:error") {
          const cond = e.children.find((c): c is Element => typeof c !== "string" && c.attrs.xmlns === NS_STREAM_ERRORS)?.name;
          this.state = "closed";
          this.emit({ type: "error", error: new StreamError(isCondition(cond) ? cond : "undefined-condition", "stream error from the peer", true) });
          return;
        }
        if (e.name !== "message" && e.name !== "presence" && e.name !== "iq") return this.streamError("unsupported-stanza-type", e.name);
        const ns = attrOf(e, "xmlns");
        if (ns !== undefined && ns !== NS.client) return this.streamError("invalid-namespace", "stanzas are jabber:client");
        const from = attrOf(e, "from");
        if (from !== undefined && from !== this.o.peer && from !== bareJid(this.o.peer)) return this.streamError("invalid-from", "stanza 'from' is not the peer");
        e.attrs.xmlns = NS.client;
        e.attrs.from = from ?? this.o.peer;
        this.emit({ type: "stanza", stanza: e });
        return;
      }
      case "end": {
        if (this.state === "open" || this.state === "awaiting-header") {
          // "The other party then closes the stream in the other direction as well".
          this.write(CLOSE_TAG);
          this.state = "closed";
          this.emit({ type: "closed", by: "remote" });
        } else if (this.state === "closing") {
          this.state = "closed";
          this.emit({ type: "closed", by: "local" });
        }
        return;
      }
      case "error":
        return this.streamError(ev.condition, ev.reason);
    }
  }

  private writeHeader(id: string | undefined): void {
    this.write(
      openTag(el("stream:stream", { xmlns: NS.client, "xmlns:stream": NS_STREAM, from: this.o.self, to: this.o.peer, id, version: "1.0" })),
    );
  }

  private streamError(condition: StreamCondition, reason: string): void {
    if (this.state === "closed") return;
    // RFC 6120 4.9.1.1: send the error (after our header if none was sent), then close.
    if (this.state === "awaiting-header" && this.o.role === "responder") this.writeHeader(`e2e-${toHex(this.o.random.bytes(8))}`);
    this.write(serialize(el("stream:error", {}, el(condition === "not-open" || condition === "closed" ? "undefined-condition" : condition, { xmlns: NS_STREAM_ERRORS }))) + CLOSE_TAG);
    this.state = "closed";
    this.emit({ type: "error", error: new StreamError(condition, reason) });
  }

  private write(s: string): void {
    this.queue.push({ kind: "write", data: utf8(s) });
  }

  private emit(event: StreamEvent): void {
    this.queue.push({ kind: "event", event });
  }
}

function isCondition(s: string | undefined): s is StreamCondition {
  return s !== undefined && ["bad-format", "invalid-from", "invalid-namespace", "not-well-formed", "policy-violation", "restricted-xml", "unsupported-stanza-type"].includes(s);
}
