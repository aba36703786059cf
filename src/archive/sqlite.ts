/**
 * The local archive cache: encrypted collections in SQLite, so that the archive opens
 * after a restart without the server, and a replica of collections other devices wrote
 * can be kept.
 *
 * Spec: XEP-0136 v1.3.1 section 8 "Replication" ("The existence of a local copy of the
 * archive enables clients to search the content of all messages"; collections "SHOULD be
 * stored on the server in a form that it cannot decrypt"); XEP-0241 v0.1 section 2 (only
 * `<EncryptedData/>`/`<EncryptedKey/>` items; a key is stored once). The file is opened by
 * src/store/sqlite-file.ts (0600 before SQLite opens it, 0700 directory, WAL,
 * secure_delete). Only ciphertext is ever written: a plaintext item is refused, so with
 * logging not allowed, or before decryption, nothing readable reaches the file.
 */
import { openDatabaseFile, toStoreError } from "../store/sqlite-file.js";
import { parseXml } from "../xml/index.js";
import { type Chat, type ChatItem, chatToXml, parseChat } from "./codec.js";
import { ArchiveError } from "./errors.js";
import { type ArchiveStore, assertEncrypted, type CollectionRef, mergeItems } from "./store.js";

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS archive_collections (
    id       INTEGER PRIMARY KEY,
    with_jid TEXT NOT NULL,
    start    TEXT NOT NULL,
    thread   TEXT,
    UNIQUE (with_jid, start)
  );
  CREATE TABLE IF NOT EXISTS archive_items (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    collection INTEGER NOT NULL REFERENCES archive_collections (id) ON DELETE CASCADE,
    xml        TEXT NOT NULL,
    UNIQUE (collection, xml)
  );
`;

export interface SqliteArchiveCache extends ArchiveStore {
  close(): void;
}

/** Serializes one encrypted item (as a child of a `<chat/>` so that it parses alone). */
function itemXml(c: { with: string; start: string }, i: ChatItem): string {
  return chatToXml({ with: c.with, start: c.start, items: [i] }).toString();
}

/** Opens (creating if needed) the archive cache in `path` (or ":memory:"). */
export function openSqliteArchiveCache(path: string): SqliteArchiveCache {
  const db = openDatabaseFile(path, "open archive cache", SCHEMA);
  const findC = db.prepare("SELECT id FROM archive_collections WHERE with_jid = ? AND start = ?");
  const insC = db.prepare("INSERT INTO archive_collections (with_jid, start, thread) VALUES (?, ?, ?)");
  const insI = db.prepare("INSERT OR IGNORE INTO archive_items (collection, xml) VALUES (?, ?)");
  const listC = db.prepare("SELECT with_jid, start, thread FROM archive_collections ORDER BY start, id");
  const getC = db.prepare("SELECT id, thread FROM archive_collections WHERE with_jid = ? AND start = ?");
  const getI = db.prepare("SELECT xml FROM archive_items WHERE collection = ? ORDER BY seq");
  let closed = false;
  const live = (op: string): void => {
    if (closed) throw new ArchiveError("server", `${op} after close`);
  };
  const save = db.transaction((chat: Chat) => {
    const row = findC.get(chat.with, chat.start) as { id: number } | undefined;
    const id = row ? row.id : Number(insC.run(chat.with, chat.start, chat.thread ?? null).lastInsertRowid);
    for (const i of mergeItems([], chat.items)) insI.run(id, itemXml(chat, i));
  });
  return {
    async save(chat) {
      live("save");
      assertEncrypted(chat);
      try {
        save(chat);
      } catch (e) {
        throw toStoreError("archive save", e);
      }
    },
    async list(): Promise<CollectionRef[]> {
      live("list");
      try {
        return (listC.all() as { with_jid: string; start: string; thread: string | null }[]).map((r) => ({
          with: r.with_jid,
          start: r.start,
          ...(r.thread !== null ? { thread: r.thread } : {}),
        }));
      } catch (e) {
        throw toStoreError("archive list", e);
      }
    },
    async retrieve(ref) {
      live("retrieve");
      let row: { id: number; thread: string | null } | undefined;
      let xs: { xml: string }[];
      try {
        row = getC.get(ref.with, ref.start) as { id: number; thread: string | null } | undefined;
        if (!row) return undefined;
        xs = getI.all(row.id) as { xml: string }[];
      } catch (e) {
        throw toStoreError("archive retrieve", e);
      }
      const items = xs.flatMap((x) => parseChat(parseXml(x.xml)).items);
      return { with: ref.with, start: ref.start, ...(row.thread !== null ? { thread: row.thread } : {}), crypt: true, items: mergeItems([], items) };
    },
    close() {
      if (closed) return;
      closed = true;
      db.close();
    },
  };
}
