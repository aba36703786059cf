/**
 * XEP-0047 element codec: <open/>, <data/>, <close/> in 'http://jabber.org/protocol/ibb'
 * and the iq/message stanzas that carry them.
 *
 * Spec: XEP-0047 v2.0.1 (In-Band Bytestreams)
 * - section 2.1: <open/> with REQUIRED 'block-size' (MUST NOT be greater than 65535),
 *   REQUIRED 'sid' (MUST match NMTOKEN) and OPTIONAL 'stanza' ("iq" default, "message");
 * - section 2.2: <data/> with 'seq' (16-bit unsigned) and 'sid'; the character data is
 *   Base64 (RFC 4648 section 4) with padding;
 * - section 4 (Security): "An implementation MUST reject (not ignore) any characters
 *   that are not explicitly allowed by the Base64 alphabet" and a '=' anywhere but at
 *   the end; we allow only XML whitespace between characters (spec examples wrap lines).
 * Codec only: no state. Parsing never throws; it returns a typed result.
 */
import { fromBase64, toBase64 } from "../core/bytes.js";
import { el, elements, NS as XNS, type Element } from "../xml/index.js";
import { attrOf } from "../adapters/connection.js";

export const NS_IBB = "http://jabber.org/protocol/ibb";

export type IbbStanzaKind = "iq" | "message";

export const MAX_BLOCK_SIZE = 65535;
export const SEQ_MODULUS = 65536;

export type IbbPayload =
  | { readonly kind: "open"; readonly sid: string; readonly blockSize: number; readonly stanza: IbbStanzaKind }
  | { readonly kind: "data"; readonly sid: string; readonly seq: number; readonly data: Uint8Array }
  | { readonly kind: "close"; readonly sid: string };

/** A payload that failed validation: which sid (if readable) and the XEP-0047 condition. */
export interface IbbMalformed {
  readonly kind: "malformed";
  readonly sid: string | undefined;
  readonly element: "open" | "data" | "close";
  readonly reason: string;
}

// XML NameChar subset sufficient for NMTOKEN checks (XML 1.0 production [7]).
const NMTOKEN = /^[A-Za-z0-9._:\-\u00B7\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u037D\u037F-\u1FFF\u200C\u200D\u203F\u2040\u2070-\u218F\u2C00-\u2FEF\u3001-\uD7FF\uF900-\uFDCF\uFDF0-\uFFFD]+$/;

export function isNmtoken(s: string): boolean {
  return NMTOKEN.test(s);
}

const B64_STRICT = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict XEP-0047 section 4 Base64: alphabet only, '=' only as final padding. */
export function decodeIbbBase64(text: string): Uint8Array | undefined {
  const t = text.replace(/[ \t\r\n]+/g, "");
  if (!B64_STRICT.test(t)) return undefined;
  return fromBase64(t);
}

function uint(s: string | undefined, max: number): number | undefined {
  if (s === undefined || !/^[0-9]{1,6}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= max ? n : undefined;
}

/** The IBB child of an iq or message, if any (one of open/data/close in NS_IBB). */
export function ibbChild(stanza: Element): Element | undefined {
  return elements(stanza).find((c) => c.attrs.xmlns === NS_IBB && (c.name === "open" || c.name === "data" || c.name === "close"));
}

export function parseIbb(child: Element): IbbPayload | IbbMalformed {
  const name = child.name as "open" | "data" | "close";
  const sidRaw = attrOf(child, "sid");
  const sid = sidRaw !== undefined && isNmtoken(sidRaw) ? sidRaw : undefined;
  const bad = (reason: string): IbbMalformed => ({ kind: "malformed", sid, element: name, reason });
  if (sid === undefined) return bad("sid missing or not an NMTOKEN");
  switch (name) {
    case "open": {
      const blockSize = uint(attrOf(child, "block-size"), MAX_BLOCK_SIZE);
      if (blockSize === undefined || blockSize === 0) return bad("block-size missing or out of range");
      const st = attrOf(child, "stanza") ?? "iq";
      if (st !== "iq" && st !== "message") return bad("stanza must be iq or message");
      return { kind: "open", sid, blockSize, stanza: st };
    }
    case "data": {
      const seq = uint(attrOf(child, "seq"), SEQ_MODULUS - 1);
      if (seq === undefined) return bad("seq missing or out of range");
      const data = decodeIbbBase64(child.getText());
      if (data === undefined) return bad("invalid Base64");
      return { kind: "data", sid, seq, data };
    }
    case "close":
      return { kind: "close", sid };
  }
}

export function openElement(sid: string, blockSize: number, stanza: IbbStanzaKind): Element {
  return el("open", { xmlns: NS_IBB, "block-size": blockSize, sid, stanza });
}

export function dataElement(sid: string, seq: number, data: Uint8Array): Element {
  return el("data", { xmlns: NS_IBB, seq, sid }, toBase64(data));
}

export function closeElement(sid: string): Element {
  return el("close", { xmlns: NS_IBB, sid });
}

export function iqSet(to: string, id: string, child: Element): Element {
  return el("iq", { xmlns: XNS.client, type: "set", to, id }, child);
}

export function iqResult(to: string, id: string): Element {
  return el("iq", { xmlns: XNS.client, type: "result", to, id });
}

export function messageWith(to: string, id: string, child: Element): Element {
  return el("message", { xmlns: XNS.client, to, id }, child);
}

/** The defined condition of an error stanza (RFC 6120 section 8.3.2), if present. */
export function errorCondition(stanza: Element): string | undefined {
  const err = elements(stanza).find((c) => c.name === "error");
  if (err === undefined) return undefined;
  return elements(err).find((c) => c.attrs.xmlns === XNS.stanzas && c.name !== "text")?.name;
}
