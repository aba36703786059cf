/**
 * Incremental parser for one XML stream: the stream header, then top-level elements
 * (stanzas) as ltx Elements, then the end of the stream. Built on ltx's SAX parser.
 *
 * Spec: RFC 6120 section 4.7 (the stream header is an open tag; stanzas are its
 * children), section 11.1 "Restrictions" (no comments, processing instructions other
 * than the XML declaration, internal or external DTD subsets, or entity references other
 * than the predefined ones: restricted-xml), section 11.6 (UTF-8; a malformed sequence is
 * not-well-formed), and a size limit per stanza (policy-violation, 4.9.3.14).
 */
// The CommonJS build: under tsx the ESM source is re-transformed (a __name wrapper on every
// call), which made this parser several times slower.
import SaxLtxModule from "ltx/lib/parsers/ltx.js";
import { Element } from "../xml/index.js";
import type { StreamCondition } from "./errors.js";

interface SaxParser {
  write(data: string): void;
  on(ev: "startElement", h: (name: string, attrs: Record<string, string>) => void): void;
  on(ev: "endElement", h: (name: string) => void): void;
  on(ev: "text", h: (text: string) => void): void;
  on(ev: "error", h: (e: Error) => void): void;
}
const SaxLtx = SaxLtxModule as unknown as new () => SaxParser;

export type ParserEvent =
  | { readonly type: "header"; readonly name: string; readonly attrs: Readonly<Record<string, string | undefined>> }
  | { readonly type: "element"; readonly element: Element }
  | { readonly type: "end" }
  | { readonly type: "error"; readonly condition: StreamCondition; readonly reason: string };

export class XmlStreamParser {
  private readonly sax = new SaxLtx();
  private readonly decoder = new TextDecoder("utf-8", { fatal: true });
  private events: ParserEvent[] = [];
  private depth = 0;
  private current: Element | undefined;
  private stanzaChars = 0;
  private failed = false;
  private seenHeader = false;
  private tail = "";

  constructor(private readonly maxStanzaChars: number) {
    this.sax.on("startElement", (name, attrs) => {
      if (this.failed) return;
      if (this.depth === 0) {
        this.seenHeader = true;
        this.events.push({ type: "header", name, attrs });
      } else {
        const e = new Element(name, attrs);
        this.current = this.current === undefined ? e : this.current.cnode(e);
      }
      this.depth++;
      if (this.depth > 64) this.fail("policy-violation", "nested too deeply");
    });
    this.sax.on("endElement", (name) => {
      if (this.failed) return;
      this.depth--;
      if (this.depth === 0) {
        this.events.push({ type: "end" });
        return;
      }
      const cur = this.current;
      if (cur === undefined || cur.name !== name) return this.fail("not-well-formed", "mismatched end tag");
      if (this.depth === 1) {
        this.events.push({ type: "element", element: cur });
        this.current = undefined;
        this.stanzaChars = 0;
      } else this.current = cur.parent ?? undefined;
    });
    this.sax.on("text", (text) => {
      if (this.failed || this.current === undefined) return; // whitespace between stanzas
      this.current.t(text);
    });
    this.sax.on("error", () => this.fail("not-well-formed", "XML syntax error"));
  }

  write(bytes: Uint8Array): ParserEvent[] {
    if (this.failed) return [];
    let s: string;
    try {
      s = this.decoder.decode(bytes, { stream: true });
    } catch {
      this.fail("not-well-formed", "invalid UTF-8");
      return this.take();
    }
    // Section 11.1: look for markup the SAX parser would silently skip, across chunks.
    const scan = this.tail + s;
    const restricted = /<!(?!\[CDATA\[)|<\?/g;
    for (let m = restricted.exec(scan); m !== null; m = restricted.exec(scan)) {
      const rest = scan.slice(m.index, m.index + 9);
      const isXmlDecl = !this.seenHeader && scan.startsWith("<?xml", m.index);
      // A chunk may end inside "<![CDATA[" or "<?xml": decide when the rest arrives.
      const incomplete = rest.startsWith("<!") ? rest.length < 9 && "<![CDATA[".startsWith(rest) : !this.seenHeader && rest.length < 5 && "<?xml".startsWith(rest);
      if (!isXmlDecl && !incomplete) {
        this.fail("restricted-xml", "comments, processing instructions and DTDs are not allowed");
        return this.take();
      }
    }
    this.tail = scan.slice(-8);
    if (this.current !== undefined || this.depth >= 1) {
      this.stanzaChars += s.length;
      if (this.stanzaChars > this.maxStanzaChars) {
        this.fail("policy-violation", "stanza too large");
        return this.take();
      }
    }
    try {
      this.sax.write(s);
    } catch {
      this.fail("not-well-formed", "XML syntax error");
    }
    return this.take();
  }

  private take(): ParserEvent[] {
    const e = this.events;
    this.events = [];
    return e;
  }

  private fail(condition: StreamCondition, reason: string): void {
    if (this.failed) return;
    this.failed = true;
    this.events.push({ type: "error", condition, reason });
  }
}
