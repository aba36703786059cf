/**
 * SQLite {@link OfflineStore}: one file (better-sqlite3), created 0600 (directory 0700),
 * WAL mode, `secure_delete` on and a WAL checkpoint after each deletion, so that a used or
 * expired offline private value does not linger on disk (XEP-0187 v0.5 section 7.4: "It is
 * really hard to securely erase something from a disk"; section 3.4 "destroy in a secure
 * way"). `take` is one DELETE ... RETURNING: a set is handed out at most once.
 * Errors are StoreError without the driver's message.
 */
import { fromBase64, toBase64 } from "../core/bytes.js";
import type { Jid } from "../core/types.js";
import { isDhGroup } from "../crypto/provider.js";
import type { OfflineStore, StoredOfflineSecret } from "./offline.js";
import { StoreError } from "./types.js";
import { openDatabaseFile, toStoreError } from "./sqlite-file.js";

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS offline_secrets (
    account    TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (account, id)
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS offline_seen (
    account TEXT    NOT NULL,
    k       TEXT    NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (account, k)
  ) WITHOUT ROWID;
`;


interface Body {
  nonce: string;
  pairs: { group: string; x: string }[];
  createdAt: number;
  expiresAt: number;
  stanzas: string[];
  logging: string[];
  /** Absent in bodies written before they were kept (the reader applies LEGACY_OFFERED_*). */
  cryptAlgs?: string[];
  hashAlgs?: string[];
}

function encode(s: StoredOfflineSecret): string {
  const b: Body = {
    nonce: toBase64(s.nonce),
    pairs: s.pairs.map((p) => ({ group: String(p.group), x: toBase64(p.x) })),
    createdAt: s.createdAt,
    expiresAt: s.expiresAt,
    stanzas: [...s.stanzas],
    logging: [...s.logging],
    ...(s.cryptAlgs ? { cryptAlgs: [...s.cryptAlgs] } : {}),
    ...(s.hashAlgs ? { hashAlgs: [...s.hashAlgs] } : {}),
  };
  return JSON.stringify(b);
}

function decode(id: string, text: string): StoredOfflineSecret {
  const b = JSON.parse(text) as Body;
  const nonce = fromBase64(b.nonce);
  if (!nonce) throw new StoreError("corrupt", "offline secret");
  return {
    id,
    nonce,
    pairs: b.pairs.map((p) => {
      const group = isDhGroup(p.group);
      const x = fromBase64(p.x);
      if (group === undefined || !x) throw new StoreError("corrupt", "offline secret");
      return { group, x };
    }),
    createdAt: b.createdAt,
    expiresAt: b.expiresAt,
    stanzas: b.stanzas,
    logging: b.logging,
    ...(b.cryptAlgs ? { cryptAlgs: b.cryptAlgs } : {}),
    ...(b.hashAlgs ? { hashAlgs: b.hashAlgs } : {}),
  };
}

export function openSqliteOfflineStore(path: string): OfflineStore {
  const db = openDatabaseFile(path, "open offline store", SCHEMA);
  const put = db.prepare("INSERT OR REPLACE INTO offline_secrets (account, id, body, expires_at) VALUES (?, ?, ?, ?)");
  const list = db.prepare("SELECT id, expires_at FROM offline_secrets WHERE account = ?");
  const get = db.prepare("SELECT body FROM offline_secrets WHERE account = ? AND id = ?");
  const take = db.prepare("DELETE FROM offline_secrets WHERE account = ? AND id = ? RETURNING body");
  const seen = db.prepare("INSERT OR IGNORE INTO offline_seen (account, k, seen_at) VALUES (?, ?, ?)");
  const expire = db.prepare("DELETE FROM offline_secrets WHERE account = ? AND expires_at <= ? RETURNING id");
  const checkpoint = (): void => {
    if (path !== ":memory:") db.pragma("wal_checkpoint(TRUNCATE)");
  };
  return {
    async put(account: Jid, s: StoredOfflineSecret): Promise<void> {
      try {
        put.run(account, s.id, encode(s), s.expiresAt);
      } catch (e) {
        throw toStoreError("put", e);
      }
    },
    async list(account: Jid) {
      try {
        return (list.all(account) as { id: string; expires_at: number }[]).map((r) => ({ id: r.id, expiresAt: r.expires_at }));
      } catch (e) {
        throw toStoreError("list", e);
      }
    },
    async get(account: Jid, id: string) {
      let row: { body: string } | undefined;
      try {
        row = get.get(account, id) as { body: string } | undefined;
      } catch (e) {
        throw toStoreError("get", e);
      }
      return row ? decode(id, row.body) : undefined;
    },
    async take(account: Jid, id: string) {
      let row: { body: string } | undefined;
      try {
        row = take.get(account, id) as { body: string } | undefined;
        checkpoint();
      } catch (e) {
        throw toStoreError("take", e);
      }
      return row ? decode(id, row.body) : undefined;
    },
    async markSeen(account: Jid, key: string, now: number) {
      try {
        return seen.run(account, key, now).changes === 1;
      } catch (e) {
        throw toStoreError("markSeen", e);
      }
    },
    async expire(account: Jid, now: number) {
      try {
        const ids = (expire.all(account, now) as { id: string }[]).map((r) => r.id);
        if (ids.length) checkpoint();
        return ids;
      } catch (e) {
        throw toStoreError("expire", e);
      }
    },
    async close() {
      db.close();
    },
  };
}
