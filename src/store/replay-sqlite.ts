/**
 * The persistent replay cache: one SQLite table (better-sqlite3), so that a replayed
 * object is still recognised after a restart within its DateTime window.
 *
 * Spec: RFC 2779 section 2.5.2 via draft-ietf-xmpp-e2e-03 section 2 (replay detection),
 * RFC 3923 section 6.9 (timestamps bound the window); see ./replay.ts. The file is created
 * 0600 (its directory 0700 when created here), WAL mode; `INSERT OR IGNORE` on the primary
 * key makes check-and-record one atomic statement. Errors are StoreError without the
 * driver's message (ids and JIDs never reach logs).
 */
import type { ReplayCache } from "./replay.js";
import { StoreError } from "./types.js";
import { openDatabaseFile, toStoreError } from "./sqlite-file.js";

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS e2e_replay (
    account TEXT    NOT NULL,
    sender  TEXT    NOT NULL,
    id      TEXT    NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (account, sender, id)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS e2e_replay_by_age ON e2e_replay (seen_at);
`;


/** Opens (creating if needed) a replay cache in `path`, or in memory with ":memory:". */
export function openSqliteReplayCache(path: string): ReplayCache {
  const db = openDatabaseFile(path, "open replay cache", SCHEMA);
  const insert = db.prepare("INSERT OR IGNORE INTO e2e_replay (account, sender, id, seen_at) VALUES (?, ?, ?, ?)");
  const del = db.prepare("DELETE FROM e2e_replay WHERE seen_at < ?");
  let closed = false;
  const live = (op: string) => {
    if (closed) throw new StoreError("io", `${op} after close`);
  };
  return {
    async checkAndRecord(account, sender, id, now) {
      live("checkAndRecord");
      if (!Number.isSafeInteger(now)) throw new RangeError("now must be an integer number of ms");
      try {
        return insert.run(account, sender, id, now).changes === 1;
      } catch (e) {
        throw toStoreError("checkAndRecord", e);
      }
    },
    async expire(before) {
      live("expire");
      try {
        return del.run(before).changes;
      } catch (e) {
        throw toStoreError("expire", e);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      db.close();
    },
  };
}
