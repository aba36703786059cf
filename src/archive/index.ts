/**
 * The archive layer: encrypted history of Encrypted Sessions whose negotiated 'logging'
 * allows it (XEP-0136 v1.3.1 manual archiving, XEP-0241 v0.1 encrypted collections),
 * stored locally (SQLite) and on the server (XEP-0136 or XEP-0049 private storage).
 * See docs/archive.md.
 */
import type { ArchiveCrypto, ArchiveKey, OpenedCollection } from "./crypto.js";
import { nodeArchiveCrypto, openCollection } from "./crypto.js";
import type { ArchiveStore } from "./store.js";

export * from "./codec.js";
export * from "./crypto.js";
export * from "./errors.js";
export * from "./manager.js";
export * from "./store.js";
export * from "./sqlite.js";
export * from "./remote.js";
export * from "./attach.js";
export * from "./key-transfer.js";

/** Lists and opens every collection of `store` with the archive key, oldest first. */
export async function readArchive(store: ArchiveStore, key: ArchiveKey, crypto: ArchiveCrypto = nodeArchiveCrypto): Promise<OpenedCollection[]> {
  const out: OpenedCollection[] = [];
  for (const ref of await store.list()) {
    const chat = await store.retrieve(ref);
    if (chat) out.push(openCollection(chat, key, crypto));
  }
  return out;
}
