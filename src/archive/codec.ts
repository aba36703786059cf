/**
 * Codec for XEP-0136 message archiving elements and their encrypted form:
 * `<chat/>` collections, `<save/>`, `<list/>`, `<retrieve/>`, `<remove/>` and the
 * XML Encryption `<EncryptedData/>` / `<EncryptedKey/>` children of encrypted collections.
 *
 * Spec: XEP-0136 v1.3.1 "Message Archiving": section 4 (the `<chat/>` element: start,
 * subject, thread, version, with; `<from/>`/`<to/>` with secs|utc, name, jid and bodies;
 * `<note/>`), 5.2 (`<save/>`), 5.3 (utc), 5.5 (`<previous/>`/`<next/>`), 5.6 (one x:data
 * form), 7.1 (`<list/>` with/start/end + XEP-0059 RSM), 7.2 (`<retrieve/>`; the result is
 * a `<chat/>` child of the iq), 7.3 (`<remove/>` with/start/end/open).
 * The encrypted collection format was split off XEP-0136 (v0.17) into XEP-0241 v0.1
 * "Encryption of Archived Messages": section 2 (`<EncryptedData/>` holding the encrypted,
 * joined `<to/>`/`<from/>`/`<note/>` sequence; `<EncryptedKey/>` carrying the named
 * symmetric key; "A collection that contains <EncryptedData/> or <EncryptedKey/> elements
 * MUST NOT contain <to/> or <from/> or <note/> elements"; an x:data form MAY be
 * encrypted), 4 ('crypt' attribute), 5 (`<KeyName/>` filters in `<retrieve/>`). XEP-0241
 * used the temporary namespace urn:xmpp:tmp:archive "replaced with the URN issued by the
 * XMPP Registrar" (its section 8): urn:xmpp:archive. Element syntax: W3C XML Encryption
 * (xmlenc-core, 2002, and 1.1 for aes256-gcm) and XML Signature KeyInfo/KeyName.
 *
 * Ciphertexts stay Base64 text here (as on the wire); ./crypto.ts decodes them.
 */
import { fromBase64 } from "../core/bytes.js";
import { type DataForm, formToXml, parseForm } from "../forms/codec.js";
import { el, elements, type Element, NS } from "../xml/index.js";
import { ArchiveError } from "./errors.js";

export const NS_ARCHIVE = "urn:xmpp:archive";
/** XEP-0241's temporary namespace, accepted on input for old servers and the XEP's examples. */
export const NS_ARCHIVE_TMP = "urn:xmpp:tmp:archive";
export const NS_XENC = "http://www.w3.org/2001/04/xmlenc#";
export const NS_DSIG = "http://www.w3.org/2000/09/xmldsig#";
export const NS_RSM = "http://jabber.org/protocol/rsm";
/** XML Encryption: the encrypted data is element content (XEP-0241 examples). */
export const XENC_CONTENT = "http://www.w3.org/2001/04/xmlenc#Content";

/** XEP-0059 result set (the subset XEP-0136 uses). */
export interface RsmSet {
  readonly max?: number;
  readonly after?: string;
  readonly before?: string;
  readonly index?: number;
  readonly first?: string;
  readonly firstIndex?: number;
  readonly last?: string;
  readonly count?: number;
}

/** `<EncryptedData/>` (XML Encryption section 3.4) as XEP-0241 uses it. */
export interface EncryptedData {
  readonly type?: string;
  /** EncryptionMethod/@Algorithm. */
  readonly algorithm: string;
  /** KeyInfo/KeyName: the name of the symmetric key (an EncryptedKey's CarriedKeyName). */
  readonly keyName?: string;
  /** CipherData/CipherValue, Base64 as on the wire. */
  readonly cipherValue: string;
}

/** `<EncryptedKey/>` (XML Encryption section 3.5). */
export interface EncryptedKey {
  readonly algorithm: string;
  /** KeyInfo/KeyName: the key that wraps this one (here: the user's archive key). */
  readonly keyName?: string;
  readonly cipherValue: string;
  /** The name of the key carried (referenced by EncryptedData KeyInfo/KeyName). */
  readonly carriedKeyName?: string;
}

export type Direction = "to" | "from";

/** One child of a `<chat/>` collection, in document order. */
export type ChatItem =
  | {
      readonly kind: Direction;
      /** Seconds since the previous item (or the collection start). */
      readonly secs?: number;
      /** Absolute time (XEP-0082 DateTime), instead of secs. */
      readonly utc?: string;
      /** Groupchat nickname / sender name. */
      readonly name?: string;
      readonly jid?: string;
      readonly bodies: readonly string[];
    }
  | { readonly kind: "note"; readonly utc?: string; readonly text: string }
  | { readonly kind: "previous" | "next"; readonly with?: string; readonly start?: string }
  | { readonly kind: "form"; readonly form: DataForm; readonly encrypted?: EncryptedData }
  | { readonly kind: "encrypted-data"; readonly data: EncryptedData }
  | { readonly kind: "encrypted-key"; readonly key: EncryptedKey };

/** A collection (XEP-0136 section 4), identified by 'with' + 'start'. */
export interface Chat {
  readonly with: string;
  readonly start: string;
  readonly subject?: string;
  readonly thread?: string;
  readonly version?: number;
  /** XEP-0241 section 4: true when the collection holds encrypted items. */
  readonly crypt?: boolean;
  readonly items: readonly ChatItem[];
  readonly set?: RsmSet;
}

/** The archive payload of an iq (XEP-0136 sections 5-7). */
export type ArchivePayload =
  | { readonly kind: "save"; readonly chat: Chat }
  | { readonly kind: "list"; readonly with?: string; readonly start?: string; readonly end?: string; readonly set?: RsmSet }
  | { readonly kind: "list-result"; readonly chats: readonly Chat[]; readonly set?: RsmSet }
  | {
      readonly kind: "retrieve";
      readonly with: string;
      readonly start: string;
      /** XEP-0241 section 5: only EncryptedKeys wrapped with these keys. */
      readonly keyNames?: readonly string[];
      readonly set?: RsmSet;
    }
  /** The answer to a retrieve: the `<chat/>` itself is the iq's child (XEP-0136 7.2). */
  | { readonly kind: "chat"; readonly chat: Chat }
  | { readonly kind: "remove"; readonly with?: string; readonly start?: string; readonly end?: string; readonly open?: boolean };

export interface ArchiveIq {
  readonly type: "get" | "set" | "result" | "error";
  readonly id: string;
  readonly to?: string;
  readonly payload: ArchivePayload;
}

function bad(what: string): never {
  throw new ArchiveError("bad-format", what);
}

function str(e: Element, name: string): string | undefined {
  const v: unknown = e.attrs[name];
  return typeof v === "string" ? v : undefined;
}

function int(e: Element, name: string): number | undefined {
  const v = str(e, name);
  if (v === undefined) return undefined;
  if (!/^[0-9]{1,15}$/.test(v.trim())) bad(`${name} is not a non-negative integer`);
  return Number(v.trim());
}

function bool(e: Element, name: string): boolean | undefined {
  const v = str(e, name);
  if (v === undefined) return undefined;
  if (v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  return bad(`${name} is not a boolean`);
}

function isArchiveNs(ns: string | undefined): boolean {
  return ns === NS_ARCHIVE || ns === NS_ARCHIVE_TMP;
}

/** Base64 text of a CipherValue (whitespace removed); rejects anything but Base64 characters. */
function cipherText(parent: Element): string {
  const cd = parent.getChild("CipherData", NS_XENC) ?? parent.getChild("CipherData");
  const cv = cd?.getChild("CipherValue", NS_XENC) ?? cd?.getChild("CipherValue");
  if (!cv) return bad("CipherData/CipherValue missing");
  const t = cv.getText().replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(t)) bad("CipherValue is not Base64");
  return t;
}

function algorithm(parent: Element): string {
  const m = parent.getChild("EncryptionMethod", NS_XENC) ?? parent.getChild("EncryptionMethod");
  const a = m ? str(m, "Algorithm") : undefined;
  if (a === undefined || a === "") return bad("EncryptionMethod/@Algorithm missing");
  return a;
}

function keyName(parent: Element): string | undefined {
  const ki = parent.getChild("KeyInfo", NS_DSIG);
  const kn = ki?.getChild("KeyName", NS_DSIG) ?? ki?.getChild("KeyName");
  return kn ? kn.getText().trim() : undefined;
}

export function parseEncryptedData(e: Element): EncryptedData {
  if (e.name !== "EncryptedData" || e.getNS() !== NS_XENC) bad("not an xenc:EncryptedData");
  const type = str(e, "Type");
  const kn = keyName(e);
  return { ...(type !== undefined ? { type } : {}), algorithm: algorithm(e), ...(kn !== undefined ? { keyName: kn } : {}), cipherValue: cipherText(e) };
}

export function parseEncryptedKey(e: Element): EncryptedKey {
  if (e.name !== "EncryptedKey" || e.getNS() !== NS_XENC) bad("not an xenc:EncryptedKey");
  const kn = keyName(e);
  const ckn = e.getChild("CarriedKeyName", NS_XENC)?.getText().trim();
  return {
    algorithm: algorithm(e),
    ...(kn !== undefined ? { keyName: kn } : {}),
    cipherValue: cipherText(e),
    ...(ckn !== undefined ? { carriedKeyName: ckn } : {}),
  };
}

function keyInfo(name: string | undefined): Element | undefined {
  return name === undefined ? undefined : el("KeyInfo", { xmlns: NS_DSIG }, el("KeyName", {}, name));
}

export function encryptedDataToXml(d: EncryptedData): Element {
  return el(
    "EncryptedData",
    { xmlns: NS_XENC, Type: d.type },
    el("EncryptionMethod", { Algorithm: d.algorithm }),
    keyInfo(d.keyName),
    el("CipherData", {}, el("CipherValue", {}, d.cipherValue)),
  );
}

/** XML Encryption schema order: EncryptionMethod, KeyInfo, CipherData, CarriedKeyName. */
export function encryptedKeyToXml(k: EncryptedKey): Element {
  return el(
    "EncryptedKey",
    { xmlns: NS_XENC },
    el("EncryptionMethod", { Algorithm: k.algorithm }),
    keyInfo(k.keyName),
    el("CipherData", {}, el("CipherValue", {}, k.cipherValue)),
    k.carriedKeyName !== undefined && el("CarriedKeyName", {}, k.carriedKeyName),
  );
}

export function parseRsm(parent: Element): RsmSet | undefined {
  const s = parent.getChild("set", NS_RSM);
  if (!s) return undefined;
  const num = (name: string): number | undefined => {
    const c = s.getChild(name);
    if (!c) return undefined;
    const t = c.getText().trim();
    if (!/^[0-9]{1,15}$/.test(t)) bad(`rsm ${name} is not a number`);
    return Number(t);
  };
  const text = (name: string): string | undefined => s.getChild(name)?.getText();
  const first = s.getChild("first");
  const firstIndex = first ? int(first, "index") : undefined;
  const o: Record<string, string | number | undefined> = {
    max: num("max"),
    after: text("after"),
    before: text("before"),
    index: num("index"),
    first: first?.getText(),
    firstIndex,
    last: text("last"),
    count: num("count"),
  };
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as RsmSet;
}

export function rsmToXml(s: RsmSet): Element {
  return el(
    "set",
    { xmlns: NS_RSM },
    s.max !== undefined && el("max", {}, String(s.max)),
    s.after !== undefined && el("after", {}, s.after),
    s.before !== undefined && el("before", {}, s.before),
    s.index !== undefined && el("index", {}, String(s.index)),
    s.first !== undefined && el("first", { index: s.firstIndex }, s.first),
    s.last !== undefined && el("last", {}, s.last),
    s.count !== undefined && el("count", {}, String(s.count)),
  );
}

function parseItem(c: Element): ChatItem | undefined {
  const ns = c.getNS();
  if (ns === NS_XENC && c.name === "EncryptedData") return { kind: "encrypted-data", data: parseEncryptedData(c) };
  if (ns === NS_XENC && c.name === "EncryptedKey") return { kind: "encrypted-key", key: parseEncryptedKey(c) };
  if (ns === NS.data && c.name === "x") {
    const enc = c.getChild("EncryptedData", NS_XENC);
    return { kind: "form", form: parseForm(c), ...(enc ? { encrypted: parseEncryptedData(enc) } : {}) };
  }
  if (!isArchiveNs(ns)) return undefined; // RSM <set/> and unknown extensions
  switch (c.name) {
    case "to":
    case "from": {
      const secs = int(c, "secs");
      const utc = str(c, "utc");
      const name = str(c, "name");
      const jid = str(c, "jid");
      return {
        kind: c.name,
        ...(secs !== undefined ? { secs } : {}),
        ...(utc !== undefined ? { utc } : {}),
        ...(name !== undefined ? { name } : {}),
        ...(jid !== undefined ? { jid } : {}),
        bodies: elements(c)
          .filter((b) => b.name === "body")
          .map((b) => b.getText()),
      };
    }
    case "note": {
      const utc = str(c, "utc");
      return { kind: "note", ...(utc !== undefined ? { utc } : {}), text: c.getText() };
    }
    case "previous":
    case "next": {
      const w = str(c, "with");
      const start = str(c, "start");
      return { kind: c.name, ...(w !== undefined ? { with: w } : {}), ...(start !== undefined ? { start } : {}) };
    }
    default:
      return undefined;
  }
}

/** Parses a `<chat/>` (XEP-0136 section 4). */
export function parseChat(e: Element): Chat {
  if (e.name !== "chat" || !isArchiveNs(e.getNS())) bad("not an archive <chat/>");
  const w = str(e, "with");
  const start = str(e, "start");
  if (w === undefined || w === "") bad("chat without 'with'");
  if (start === undefined || start === "") bad("chat without 'start'");
  const subject = str(e, "subject");
  const thread = str(e, "thread");
  const version = int(e, "version");
  const crypt = bool(e, "crypt");
  const items: ChatItem[] = [];
  for (const c of elements(e)) {
    const it = parseItem(c);
    if (it) items.push(it);
  }
  // XEP-0241 section 2: "A collection that contains <EncryptedData/> or <EncryptedKey/>
  // elements MUST NOT contain <to/> or <from/> or <note/> elements."
  const encrypted = items.some((i) => i.kind === "encrypted-data" || i.kind === "encrypted-key");
  if (encrypted && items.some((i) => i.kind === "to" || i.kind === "from" || i.kind === "note")) bad("encrypted collection with plaintext messages");
  const set = parseRsm(e);
  return {
    with: w,
    start,
    ...(subject !== undefined ? { subject } : {}),
    ...(thread !== undefined ? { thread } : {}),
    ...(version !== undefined ? { version } : {}),
    ...(crypt !== undefined ? { crypt } : {}),
    items,
    ...(set ? { set } : {}),
  };
}

function itemToXml(i: ChatItem): Element {
  switch (i.kind) {
    case "to":
    case "from":
      return el(i.kind, { secs: i.secs, utc: i.utc, name: i.name, jid: i.jid }, ...i.bodies.map((b) => el("body", {}, b)));
    case "note":
      return el("note", { utc: i.utc }, i.text);
    case "previous":
    case "next":
      return el(i.kind, { with: i.with, start: i.start });
    case "form": {
      const x = formToXml(i.form);
      if (i.encrypted) x.cnode(encryptedDataToXml(i.encrypted));
      return x;
    }
    case "encrypted-data":
      return encryptedDataToXml(i.data);
    case "encrypted-key":
      return encryptedKeyToXml(i.key);
  }
}

/** Builds a `<chat/>`; `xmlns` only when it is the top archive element (iq child). */
export function chatToXml(c: Chat, top = true): Element {
  const e = el(
    "chat",
    {
      xmlns: top ? NS_ARCHIVE : undefined,
      with: c.with,
      start: c.start,
      subject: c.subject,
      thread: c.thread,
      crypt: c.crypt === undefined ? undefined : String(c.crypt),
      version: c.version,
    },
    ...c.items.map(itemToXml),
  );
  if (c.set) e.cnode(rsmToXml(c.set));
  return e;
}

function range(e: Element): { with?: string; start?: string; end?: string } {
  const w = str(e, "with");
  const start = str(e, "start");
  const end = str(e, "end");
  return { ...(w !== undefined ? { with: w } : {}), ...(start !== undefined ? { start } : {}), ...(end !== undefined ? { end } : {}) };
}

/** Parses the archive child of an iq (XEP-0136 sections 5-7, XEP-0241 sections 2-5). */
export function parseArchivePayload(p: Element, iqType: ArchiveIq["type"]): ArchivePayload {
  if (!isArchiveNs(p.getNS())) bad("not an archive element");
  switch (p.name) {
    case "save": {
      const chat = p.getChild("chat");
      if (!chat) return bad("save without chat");
      return { kind: "save", chat: parseChat(chat) };
    }
    case "list": {
      const set = parseRsm(p);
      if (iqType === "result") {
        return { kind: "list-result", chats: elements(p).filter((c) => c.name === "chat").map(parseChat), ...(set ? { set } : {}) };
      }
      return { kind: "list", ...range(p), ...(set ? { set } : {}) };
    }
    case "retrieve": {
      const w = str(p, "with");
      const start = str(p, "start");
      if (w === undefined || start === undefined) return bad("retrieve needs 'with' and 'start'");
      const keyNames = elements(p)
        .filter((c) => c.name === "KeyName" && c.getNS() === NS_DSIG)
        .map((c) => c.getText().trim());
      const set = parseRsm(p);
      return { kind: "retrieve", with: w, start, ...(keyNames.length ? { keyNames } : {}), ...(set ? { set } : {}) };
    }
    case "chat":
      return { kind: "chat", chat: parseChat(p) };
    case "remove": {
      const open = bool(p, "open");
      return { kind: "remove", ...range(p), ...(open !== undefined ? { open } : {}) };
    }
    default:
      return bad(`unknown archive element ${p.name}`);
  }
}

export function archivePayloadToXml(p: ArchivePayload): Element {
  switch (p.kind) {
    case "save":
      return el("save", { xmlns: NS_ARCHIVE }, chatToXml(p.chat, false));
    case "list":
      return el("list", { xmlns: NS_ARCHIVE, with: p.with, start: p.start, end: p.end }, p.set && rsmToXml(p.set));
    case "list-result":
      return el("list", { xmlns: NS_ARCHIVE }, ...p.chats.map((c) => chatToXml(c, false)), p.set && rsmToXml(p.set));
    case "retrieve":
      return el(
        "retrieve",
        { xmlns: NS_ARCHIVE, with: p.with, start: p.start },
        ...(p.keyNames ?? []).map((k) => el("KeyName", { xmlns: NS_DSIG }, k)),
        p.set && rsmToXml(p.set),
      );
    case "chat":
      return chatToXml(p.chat, true);
    case "remove":
      return el("remove", { xmlns: NS_ARCHIVE, with: p.with, start: p.start, end: p.end, open: p.open === undefined ? undefined : String(p.open) });
  }
}

const IQ_TYPES: readonly string[] = ["get", "set", "result", "error"];

/** Parses an iq carrying an archive payload (its first archive-namespace child). */
export function parseArchiveIq(iq: Element): ArchiveIq {
  if (iq.name !== "iq") bad("not an iq");
  const type = str(iq, "type");
  if (type === undefined || !IQ_TYPES.includes(type)) bad("bad iq type");
  const t = type as ArchiveIq["type"];
  const p = elements(iq).find((c) => isArchiveNs(c.getNS()));
  if (!p) return bad("no archive element");
  const to = str(iq, "to");
  return { type: t, id: str(iq, "id") ?? "", ...(to !== undefined ? { to } : {}), payload: parseArchivePayload(p, t) };
}

export function archiveIqToXml(q: ArchiveIq): Element {
  return el("iq", { type: q.type, id: q.id, to: q.to }, archivePayloadToXml(q.payload));
}

/** Decodes a CipherValue; throws bad-format on invalid Base64. */
export function cipherBytes(b64: string): Uint8Array {
  const padded = b64.length % 4 === 0 ? b64 : b64 + "=".repeat(4 - (b64.length % 4));
  const b = fromBase64(padded);
  if (!b) return bad("CipherValue is not Base64");
  return b;
}
