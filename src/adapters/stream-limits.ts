/**
 * Limits on the inbound XML stream of the @xmpp/client adapters, applied while the bytes
 * are tokenized, before a stanza is built: a hostile (or compromised) server, or a peer
 * whose stanza the server relays, cannot make us buffer an unbounded stanza, build an
 * unboundedly deep tree, or crash the process with input ltx throws on.
 *
 * Spec: RFC 6120 (XMPP Core) section 4.9.3.14 <policy-violation/> (stanza over the size
 * limit; Prosody's c2s_stanza_size_limit defaults to 256 KiB), 4.9.3.18 <restricted-xml/>
 * and section 11.1 (no DTDs, no entity declarations, no entity references other than the
 * predefined ones), 4.9.3.13 <not-well-formed/>; RFC 7395 section 3.3.3 (one stanza per
 * WebSocket message). The limits are those of ../limits.ts ({@link getLimits}).
 *
 * How: a mixin over @xmpp/xml's Parser (TCP: the stream root is depth 1) and
 * @xmpp/websocket's FramedParser (each frame is a top-level element). Input is fed to
 * the tokenizer in slices of {@link SLICE} characters and the size of the stanza being
 * read is checked after each slice, so at most maxStanzaBytes + SLICE characters of one
 * stanza are ever held. Over a limit, the parser emits an error (the connection then
 * closes the stream, as @xmpp/connection does for any parse error) and ignores the rest.
 */
import { Parser as XmppParser, XMLError } from "@xmpp/xml";
import { getLimits, type Limits } from "../limits.js";

/** Characters tokenized between two size checks. */
export const SLICE = 16 * 1024;

/** Why the stream parser stopped (RFC 6120 stream error names). */
export type StreamLimitCondition = "policy-violation" | "restricted-xml" | "not-well-formed";

/** The XMLError subclass emitted by a limited parser; `condition` names the stream error. */
export class StreamLimitError extends XMLError {
  readonly condition: StreamLimitCondition;
  constructor(condition: StreamLimitCondition, reason: string) {
    super(`${condition}: ${reason}`);
    this.condition = condition;
  }
}

/** Counters of a limited parser, for tests that bound work by counting. */
export interface StreamParserStats {
  /** Characters handed to the tokenizer. */
  scanned: number;
  /** Elements started. */
  elements: number;
}

type ParserCtor = new () => XmppParser;

/** What the mixin needs of the parser it wraps (@xmpp/xml's Parser and FramedParser). */
interface ParserLike {
  write(data: string): void;
  onStartElement(name: string, attrs?: string | { [attrName: string]: unknown }): void;
  onEndElement(name: string): void;
  onText(str: string): void;
  emit(event: string, ...args: unknown[]): boolean;
}

/**
 * A subclass of `Base` that enforces the XML limits. `framed`: top-level elements are
 * stanzas (RFC 7395); otherwise they are children of the stream root (RFC 6120 4.7).
 */
export function limitedParser<B extends ParserCtor>(Base: B, framed: boolean, overrides?: Partial<Limits>): B {
  const C = class extends (Base as ParserCtor) {
    limitsStats: StreamParserStats = { scanned: 0, elements: 0 };
    private lDepth = 0;
    private lElements = 0;
    private lStanzaChars = 0;
    private lBoundary = false;
    private lFailed = false;
    /** The end of the previous write, so that a "<!" split across writes is still seen. */
    private lTail = "";
    private readonly lim: Readonly<Limits> = { ...getLimits(), ...(overrides ?? {}) };

    /** Depth inside the current stanza (1 = the stanza element). */
    private get stanzaDepth(): number {
      return framed ? this.lDepth : this.lDepth - 1;
    }

    private fail(condition: StreamLimitCondition, reason: string): void {
      if (this.lFailed) return;
      this.lFailed = true;
      (this as unknown as ParserLike).emit("error", new StreamLimitError(condition, reason));
    }

    override onStartElement(name: string, attrs?: string | { [attrName: string]: unknown }): void {
      if (this.lFailed) return;
      this.lDepth++;
      this.limitsStats.elements++;
      if (this.stanzaDepth >= 1) {
        this.lElements++;
        if (this.stanzaDepth > this.lim.maxXmlDepth) return this.fail("policy-violation", "nested too deeply");
        if (this.lElements > this.lim.maxXmlElements) return this.fail("policy-violation", "too many elements");
      }
      if (typeof attrs === "object") {
        let n = 0;
        for (const k in attrs) {
          n++;
          const v = attrs[k];
          if (n > this.lim.maxXmlAttributes) return this.fail("policy-violation", "too many attributes");
          if (typeof v === "string" && v.length > this.lim.maxXmlAttributeBytes) return this.fail("policy-violation", "attribute too large");
        }
      }
      super.onStartElement(name, attrs);
    }

    override onEndElement(name: string): void {
      if (this.lFailed) return;
      this.lDepth--;
      super.onEndElement(name);
      if (this.stanzaDepth === 0) {
        // A stanza (or the stream root's end) completed: its budget starts again.
        this.lElements = 0;
        this.lBoundary = true;
      }
    }

    override onText(str: string): void {
      if (this.lFailed) return;
      // Whitespace between stanzas (keepalives) is not kept: @xmpp/xml would append it to
      // the stream root for the whole life of the connection.
      if (this.stanzaDepth < 1) return;
      super.onText(str);
    }

    override write(data: string): void {
      if (this.lFailed) return;
      const scan = this.lTail + data;
      this.lTail = data.slice(-8);
      // A "<!" at the very end may still become "<!--" or "<![CDATA[": decide on the next write.
      const m = /<!(?!--|\[CDATA\[)/.exec(scan);
      const rest = m === null ? "" : scan.slice(m.index);
      if (m !== null && (rest.length >= 9 || !("<![CDATA[".startsWith(rest) || "<!--".startsWith(rest))))
        return this.fail("restricted-xml", "DTDs and entity declarations are not allowed");
      // RFC 7395 3.3.3: a WebSocket message is one element, so its length is the stanza's.
      if (framed && data.length > this.lim.maxStanzaBytes) return this.fail("policy-violation", "stanza too large");
      // Small limits get small slices, so the overshoot stays a fraction of the limit.
      const step = Math.min(SLICE, Math.max(64, Math.floor(this.lim.maxStanzaBytes / 16)));
      for (let o = 0; o < data.length && !this.lFailed; o += step) {
        const slice = data.slice(o, o + step);
        this.lBoundary = false;
        this.limitsStats.scanned += slice.length;
        try {
          super.write(slice);
        } catch {
          // ltx throws plain Errors on unknown entities and illegal character references.
          return this.fail("not-well-formed", "XML syntax error");
        }
        this.lStanzaChars = this.lBoundary ? 0 : this.lStanzaChars + slice.length;
        if (this.lStanzaChars > this.lim.maxStanzaBytes) return this.fail("policy-violation", "stanza too large");
      }
    }
  };
  return C as unknown as B;
}

/** The limits-enforcing parser for an RFC 6120 TCP stream. */
export function limitedStreamParser(overrides?: Partial<Limits>): ParserCtor {
  return limitedParser(XmppParser as unknown as ParserCtor, false, overrides);
}
