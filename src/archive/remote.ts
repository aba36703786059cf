/**
 * Remote archive stores over a StanzaConnection: XEP-0136 manual archiving for servers
 * that implement it, and XEP-0049 private XML storage otherwise (Prosody's mod_private;
 * docs/archive.md says why not PEP). Both hold only encrypted collections.
 *
 * Spec: XEP-0136 v1.3.1 sections 5.2 (`<save/>`), 7.1 (`<list/>` with XEP-0059 RSM
 * paging: "The client SHOULD use Result Set Management"), 7.2 (`<retrieve/>`), 9
 * (disco features urn:xmpp:archive:manual / :manage); XEP-0241 v0.1 section 2 (the
 * encrypted collection; a key "already uploaded to the collection" is not resent);
 * XEP-0049 v1.2 sections 2-3 (jabber:iq:private get/set of one element named by its
 * namespace, on the user's own account only; a get returns the empty element when nothing
 * is stored); XEP-0030 (disco#info of the server); RFC 6120 section 8.2.3 (iq id matching,
 * results come from our account or the server).
 *
 * Private storage layout (all under the account, readable by no one else):
 * - `<devices xmlns='urn:xmpp-e2e:archive:0:devices'>`: the devices that write archives
 *   (read-merge-write, only when a device writes its first collection);
 * - `<index xmlns='urn:xmpp-e2e:archive:0:index:DEVICE'>`: the collections this device
 *   wrote (single writer, so devices never overwrite each other's entries);
 * - `<part xmlns='urn:xmpp-e2e:archive:0:c:ID:N'>`: part N of collection ID, a XEP-0136
 *   `<chat/>` holding EncryptedKey/EncryptedData items; a new part starts past
 *   {@link PART_BYTES} so that no stanza nears the server's size limit.
 */
import type { StanzaConnection } from "../adapters/connection.js";
import { utf8, toHex } from "../core/bytes.js";
import { bareJid, jidParts, type Random } from "../core/types.js";
import { el, elements, type Element, NS } from "../xml/index.js";
import { type Chat, type ChatItem, chatToXml, NS_ARCHIVE, parseArchivePayload, parseChat, type RsmSet } from "./codec.js";
import { type ArchiveCrypto, nodeArchiveCrypto } from "./crypto.js";
import { ArchiveError } from "./errors.js";
import { type ArchiveStore, assertEncrypted, type CollectionRef, mergeItems, refKey } from "./store.js";

export const NS_PRIVATE = "jabber:iq:private";
export const NS_ARCHIVE_PRIVATE = "urn:xmpp-e2e:archive:0";
export const FEATURE_MANUAL = "urn:xmpp:archive:manual";
export const FEATURE_MANAGE = "urn:xmpp:archive:manage";
/** A private-storage part is closed once its serialized collection passes this size. */
export const PART_BYTES = 48 * 1024;

/** Sends iqs on a shared connection and matches their results by id. */
export class IqClient {
  private readonly pending = new Map<string, { resolve(e: Element): void; reject(e: Error): void; timer: ReturnType<typeof setTimeout> }>();
  private readonly off: () => void;
  private n = 0;
  private readonly prefix: string;

  constructor(
    private readonly conn: StanzaConnection,
    random: Random,
    private readonly timeoutMs = 15_000,
  ) {
    this.prefix = `ar-${toHex(random.bytes(6))}-`;
    this.off = conn.onStanza((s) => this.onStanza(s));
  }

  private onStanza(s: Element): void {
    if (s.name !== "iq" || (s.attrs.type !== "result" && s.attrs.type !== "error")) return;
    const w = this.pending.get(String(s.attrs.id ?? ""));
    if (!w) return;
    // Only our own account (or our server, for disco) answers these requests.
    const from = typeof s.attrs.from === "string" ? s.attrs.from : undefined;
    const bare = bareJid(this.conn.jid);
    const domain = jidParts(bare).domain;
    if (from !== undefined && from !== bare && from !== this.conn.jid && from !== domain) return;
    this.pending.delete(String(s.attrs.id));
    clearTimeout(w.timer);
    if (s.attrs.type === "result") w.resolve(s);
    else w.reject(new ArchiveError("server", stanzaErrorCondition(s)));
  }

  /** Sends `iq` (its id is set here) and resolves with the result stanza. */
  request(iq: Element): Promise<Element> {
    const id = `${this.prefix}${++this.n}`;
    iq.attrs.id = id;
    return new Promise<Element>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ArchiveError("server", "timeout"));
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.conn.send(iq).catch((e: unknown) => {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new ArchiveError("server", e instanceof Error && "condition" in e ? String(e.condition) : "send failed"));
      });
    });
  }

  close(): void {
    this.off();
    for (const w of this.pending.values()) {
      clearTimeout(w.timer);
      w.reject(new ArchiveError("server", "closed"));
    }
    this.pending.clear();
  }
}

function stanzaErrorCondition(s: Element): string {
  const e = s.getChild("error");
  return (e ? elements(e).find((c) => c.getNS() === NS.stanzas)?.name : undefined) ?? "error";
}

/** The disco#info features of our server (XEP-0030). */
export async function serverFeatures(iq: IqClient, domain: string): Promise<Set<string>> {
  const r = await iq.request(el("iq", { type: "get", to: domain }, el("query", { xmlns: NS.disco })));
  const q = r.getChild("query", NS.disco);
  return new Set((q ? elements(q) : []).filter((f) => f.name === "feature").map((f) => String(f.attrs.var ?? "")));
}

// ---- XEP-0136 manual archiving ---------------------------------------------------------

/** A server implementing XEP-0136 manual archiving + archive management. */
export class Xep0136Archive implements ArchiveStore {
  /** Collections whose EncryptedKeys the server already acknowledged (not resent). */
  private readonly keysSent = new Map<string, Set<string>>();
  constructor(
    private readonly iq: IqClient,
    private readonly pageSize = 50,
  ) {}

  async save(chat: Chat): Promise<void> {
    assertEncrypted(chat);
    const k = refKey(chat);
    const sent = this.keysSent.get(k) ?? new Set<string>();
    const items = chat.items.filter((i) => i.kind !== "encrypted-key" || !sent.has(i.key.cipherValue));
    await this.iq.request(el("iq", { type: "set" }, el("save", { xmlns: NS_ARCHIVE }, chatToXml({ ...chat, items }, false))));
    for (const i of items) if (i.kind === "encrypted-key") sent.add(i.key.cipherValue);
    this.keysSent.set(k, sent);
  }

  async list(): Promise<CollectionRef[]> {
    const out: CollectionRef[] = [];
    let after: string | undefined;
    for (;;) {
      const set: RsmSet = { max: this.pageSize, ...(after !== undefined ? { after } : {}) };
      const r = await this.iq.request(el("iq", { type: "get" }, el("list", { xmlns: NS_ARCHIVE }, rsm(set))));
      const list = r.getChild("list", NS_ARCHIVE);
      if (!list) break;
      const p = parseArchivePayload(list, "result");
      if (p.kind !== "list-result") break;
      for (const c of p.chats) out.push({ with: c.with, start: c.start, ...(c.thread !== undefined ? { thread: c.thread } : {}) });
      if (p.chats.length === 0 || p.set?.last === undefined || (p.set.count !== undefined && out.length >= p.set.count)) break;
      after = p.set.last;
    }
    return out;
  }

  async retrieve(ref: { readonly with: string; readonly start: string }): Promise<Chat | undefined> {
    let items: ChatItem[] = [];
    let first: Chat | undefined;
    let after: string | undefined;
    for (;;) {
      const set: RsmSet = { max: this.pageSize, ...(after !== undefined ? { after } : {}) };
      let r: Element;
      try {
        r = await this.iq.request(el("iq", { type: "get" }, el("retrieve", { xmlns: NS_ARCHIVE, with: ref.with, start: ref.start }, rsm(set))));
      } catch (e) {
        if (e instanceof ArchiveError && e.message.includes("item-not-found")) return undefined;
        throw e;
      }
      const c = r.getChild("chat", NS_ARCHIVE);
      if (!c) break;
      const chat = parseChat(c);
      first ??= chat;
      items = mergeItems(items, chat.items);
      const page = chat.items.filter((i) => i.kind === "encrypted-data").length;
      if (page === 0 || chat.set?.last === undefined || (chat.set.count !== undefined && items.filter((i) => i.kind === "encrypted-data").length >= chat.set.count)) break;
      after = chat.set.last;
    }
    if (!first) return undefined;
    const { set: _set, ...rest } = first;
    return { ...rest, items };
  }
}

function rsm(s: RsmSet): Element {
  return el("set", { xmlns: "http://jabber.org/protocol/rsm" }, s.max !== undefined && el("max", {}, String(s.max)), s.after !== undefined && el("after", {}, s.after));
}

// ---- XEP-0049 private XML storage --------------------------------------------------------

interface IndexEntry {
  readonly ref: CollectionRef;
  readonly parts: number;
}

export interface PrivateStorageOptions {
  /** This device's id (stable across restarts, e.g. the resource): names its index. */
  readonly deviceId: string;
  readonly crypto?: ArchiveCrypto;
  readonly partBytes?: number;
}

const nsDevices = `${NS_ARCHIVE_PRIVATE}:devices`;
const nsIndex = (device: string): string => `${NS_ARCHIVE_PRIVATE}:index:${device}`;

export class PrivateStorageArchive implements ArchiveStore {
  private readonly crypto: ArchiveCrypto;
  private registered = false;
  /** This device's index (loaded on first write). */
  private own: Map<string, IndexEntry> | undefined;
  /** The current (last) part of collections written in this process. */
  private readonly parts = new Map<string, Chat>();
  /** Writes are serialized: each is a read-modify-write of one element. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly iq: IqClient,
    private readonly o: PrivateStorageOptions,
  ) {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(o.deviceId)) throw new ArchiveError("bad-format", "device id: 1-64 of A-Z a-z 0-9 . _ -");
    this.crypto = o.crypto ?? nodeArchiveCrypto;
  }

  /** Part N of a collection: its namespace is derived from 'with' + 'start' (never the content). */
  private partNs(ref: { with: string; start: string }, n: number): string {
    const id = toHex(this.crypto.sha256(utf8(`${ref.with}\n${ref.start}`)).subarray(0, 16));
    return `${NS_ARCHIVE_PRIVATE}:c:${id}:${n}`;
  }

  private async get(name: string, ns: string): Promise<Element | undefined> {
    const r = await this.iq.request(el("iq", { type: "get" }, el("query", { xmlns: NS_PRIVATE }, el(name, { xmlns: ns }))));
    const e = r.getChild("query", NS_PRIVATE)?.getChild(name, ns);
    return e && elements(e).length > 0 ? e : undefined;
  }

  private async set(payload: Element): Promise<void> {
    await this.iq.request(el("iq", { type: "set" }, el("query", { xmlns: NS_PRIVATE }, payload)));
  }

  private async devices(): Promise<string[]> {
    const d = await this.get("devices", nsDevices);
    return d ? elements(d).flatMap((x) => (x.name === "device" && typeof x.attrs.id === "string" ? [x.attrs.id] : [])) : [];
  }

  private async readIndex(device: string): Promise<Map<string, IndexEntry>> {
    const m = new Map<string, IndexEntry>();
    const idx = await this.get("index", nsIndex(device));
    for (const c of idx ? elements(idx) : []) {
      const chat = c.getChild("chat", NS_ARCHIVE);
      const parts = Number(c.attrs.parts);
      if (c.name !== "collection" || !chat || !Number.isInteger(parts) || parts < 1 || parts > 100_000) continue;
      const p = parseChat(chat);
      m.set(refKey(p), { ref: { with: p.with, start: p.start, ...(p.thread !== undefined ? { thread: p.thread } : {}) }, parts });
    }
    return m;
  }

  private async writeIndex(m: Map<string, IndexEntry>): Promise<void> {
    const entries = [...m.values()].map((e) =>
      el("collection", { parts: e.parts }, chatToXml({ with: e.ref.with, start: e.ref.start, ...(e.ref.thread !== undefined ? { thread: e.ref.thread } : {}), crypt: true, items: [] })),
    );
    await this.set(el("index", { xmlns: nsIndex(this.o.deviceId) }, ...entries));
  }

  async save(chat: Chat): Promise<void> {
    assertEncrypted(chat);
    const run = this.queue.then(() => this.doSave(chat));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async doSave(chat: Chat): Promise<void> {
    if (!this.registered) {
      // Registered lazily: with nothing archived, nothing at all is written.
      const devs = await this.devices();
      if (!devs.includes(this.o.deviceId))
        await this.set(el("devices", { xmlns: nsDevices }, ...[...devs, this.o.deviceId].map((id) => el("device", { id }))));
      this.registered = true;
    }
    this.own ??= await this.readIndex(this.o.deviceId);
    const k = refKey(chat);
    let entry = this.own.get(k);
    let current = this.parts.get(k);
    if (entry && !current) {
      const e = await this.get("part", this.partNs(chat, entry.parts - 1));
      const c = e?.getChild("chat", NS_ARCHIVE);
      current = c ? parseChat(c) : undefined;
    }
    const base: Chat = { with: chat.with, start: chat.start, ...(chat.thread !== undefined ? { thread: chat.thread } : {}), crypt: true, items: [] };
    let partNo = entry ? entry.parts - 1 : 0;
    let next: Chat = { ...base, items: mergeItems(current?.items ?? [], chat.items) };
    if (current && chatToXml(next).toString().length > (this.o.partBytes ?? PART_BYTES)) {
      // Start a new part; it repeats the EncryptedKeys it needs so that each part opens alone.
      partNo += 1;
      next = { ...base, items: mergeItems([], chat.items) };
    }
    await this.set(el("part", { xmlns: this.partNs(chat, partNo) }, chatToXml(next)));
    this.parts.set(k, next);
    if (!entry || entry.parts !== partNo + 1) {
      entry = { ref: { with: chat.with, start: chat.start, ...(chat.thread !== undefined ? { thread: chat.thread } : {}) }, parts: partNo + 1 };
      this.own.set(k, entry);
      await this.writeIndex(this.own);
    }
  }

  /** Every collection of every device of the account, oldest first. */
  async list(): Promise<CollectionRef[]> {
    const all = new Map<string, CollectionRef>();
    for (const d of await this.devices()) for (const [k, e] of await this.readIndex(d)) all.set(k, e.ref);
    return [...all.values()].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  }

  async retrieve(ref: { readonly with: string; readonly start: string }): Promise<Chat | undefined> {
    let entry: IndexEntry | undefined;
    for (const d of await this.devices()) {
      entry = (await this.readIndex(d)).get(refKey(ref));
      if (entry) break;
    }
    if (!entry) return undefined;
    let items: ChatItem[] = [];
    for (let n = 0; n < entry.parts; n++) {
      const c = (await this.get("part", this.partNs(ref, n)))?.getChild("chat", NS_ARCHIVE);
      if (c) items = mergeItems(items, parseChat(c).items);
    }
    return { with: ref.with, start: ref.start, ...(entry.ref.thread !== undefined ? { thread: entry.ref.thread } : {}), crypt: true, items };
  }
}

/**
 * The remote store our server offers: XEP-0136 manual archiving when it advertises
 * urn:xmpp:archive:manual and :manage, else XEP-0049 private storage when it advertises
 * jabber:iq:private; undefined when it offers neither.
 */
export async function discoverArchiveStore(
  iq: IqClient,
  domain: string,
  o: PrivateStorageOptions,
): Promise<{ kind: "xep-0136"; store: Xep0136Archive } | { kind: "private"; store: PrivateStorageArchive } | undefined> {
  const f = await serverFeatures(iq, domain);
  if (f.has(FEATURE_MANUAL) && f.has(FEATURE_MANAGE)) return { kind: "xep-0136", store: new Xep0136Archive(iq) };
  if (f.has(NS_PRIVATE)) return { kind: "private", store: new PrivateStorageArchive(iq, o) };
  return undefined;
}
