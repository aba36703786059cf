/**
 * Where encrypted collections live: the interface every archive store implements (the
 * local SQLite cache, XEP-0049 private storage, a XEP-0136 server), the merge rule they
 * share, and an in-memory store for tests.
 *
 * Spec: XEP-0136 v1.3.1 section 5.2 (a save appends to the collection named by 'with' +
 * 'start'; "If the collection does not exist then the server MUST create" it), 7.1 (list),
 * 7.2 (retrieve); XEP-0241 v0.1 section 2 ("When appending <EncryptedData/> elements ...
 * the client MAY reuse a symmetric Key that has already been uploaded to the collection.
 * In this case the client SHOULD NOT resend <EncryptedKey/> elements": a key already held
 * is not stored twice).
 */
import type { Chat, ChatItem } from "./codec.js";
import { ArchiveError } from "./errors.js";

export interface CollectionRef {
  readonly with: string;
  readonly start: string;
  readonly thread?: string;
}

export interface ArchiveStore {
  /** Appends the (encrypted) items of `chat` to its collection, creating it if needed. */
  save(chat: Chat): Promise<void>;
  /** Every collection, oldest first. */
  list(): Promise<CollectionRef[]>;
  /** The whole collection, or undefined. */
  retrieve(ref: { readonly with: string; readonly start: string }): Promise<Chat | undefined>;
}

/** Identity of an item for de-duplication (EncryptedKeys are kept once). */
function keyId(i: ChatItem): string | undefined {
  return i.kind === "encrypted-key" ? `${i.key.carriedKeyName ?? ""}\u0000${i.key.keyName ?? ""}\u0000${i.key.cipherValue}` : undefined;
}

/** Appends `add` to `items`, dropping EncryptedKeys already present (XEP-0241 2). */
export function mergeItems(items: readonly ChatItem[], add: readonly ChatItem[]): ChatItem[] {
  const seen = new Set(items.map(keyId).filter((k): k is string => k !== undefined));
  const out = [...items];
  for (const i of add) {
    const k = keyId(i);
    if (k !== undefined) {
      if (seen.has(k)) continue;
      seen.add(k);
    }
    out.push(i);
  }
  return out;
}

/** Stores that must never hold plaintext refuse any unencrypted item (defence in depth). */
export function assertEncrypted(chat: Chat): void {
  for (const i of chat.items)
    if (i.kind !== "encrypted-data" && i.kind !== "encrypted-key") throw new ArchiveError("bad-format", "only encrypted items are stored");
  if (chat.subject !== undefined) throw new ArchiveError("bad-format", "a subject would be stored in the clear");
}

export const refKey = (r: { readonly with: string; readonly start: string }): string => `${r.start}\u0000${r.with}`;

/** In-memory store (tests, and a reference for the contract). */
export class MemoryArchiveStore implements ArchiveStore {
  private readonly chats = new Map<string, Chat>();
  async save(chat: Chat): Promise<void> {
    assertEncrypted(chat);
    const k = refKey(chat);
    const old = this.chats.get(k);
    this.chats.set(k, { ...(old ?? chat), items: mergeItems(old?.items ?? [], chat.items) });
  }
  list(): Promise<CollectionRef[]> {
    return Promise.resolve(
      [...this.chats.values()]
        .map((c) => ({ with: c.with, start: c.start, ...(c.thread !== undefined ? { thread: c.thread } : {}) }))
        .sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0)),
    );
  }
  retrieve(ref: { readonly with: string; readonly start: string }): Promise<Chat | undefined> {
    return Promise.resolve(this.chats.get(refKey(ref)));
  }
}
