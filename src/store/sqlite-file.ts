/**
 * What every SQLite-backed store shares: creating the database file with owner-only
 * permissions before SQLite opens it, the pragmas, and mapping driver failures to a
 * StoreError that carries only the operation and the driver's code.
 *
 * Spec: none (local persistence); DEVELOPERS.md "Persistent state ... lives in a real
 * store" and "Secrets never appear in logs or error messages"; docs/store.md.
 */
import { chmodSync, closeSync, constants, existsSync, fchmodSync, mkdirSync, openSync } from "node:fs";
import { dirname, resolve } from "node:path";
import Database from "better-sqlite3";
import { StoreError } from "./types.js";

const CORRUPT_CODES = /^SQLITE_(CORRUPT|NOTADB|FORMAT)/;

function errorCode(e: unknown): string | undefined {
  return e instanceof Error && "code" in e && typeof e.code === "string" ? e.code : undefined;
}

/**
 * Maps any failure to a StoreError carrying only the operation and the driver's code:
 * the driver's message is dropped so nothing read or written can leak into logs.
 */
export function toStoreError(op: string, e: unknown): Error {
  if (e instanceof StoreError || e instanceof RangeError) return e;
  const code = errorCode(e);
  const condition = code !== undefined && CORRUPT_CODES.test(code) ? "corrupt" : "io";
  return new StoreError(condition, `${op} failed`, code);
}

/**
 * Creates the directory (0700) if missing and the file (0600) before SQLite touches it,
 * tightening an existing file and leftover -wal/-shm files.
 */
export function prepareFile(path: string): void {
  const dir = dirname(path);
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700); // the umask may have removed bits; never add group/other ones
  }
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600);
  try {
    fchmodSync(fd, 0o600);
  } finally {
    closeSync(fd);
  }
  // SQLite gives -wal/-shm the main file's mode, but tighten leftovers from older runs.
  for (const side of [`${path}-wal`, `${path}-shm`]) if (existsSync(side)) chmodSync(side, 0o600);
}

/**
 * Opens `path` (or ":memory:") as a WAL database with secure_delete, after creating it
 * owner-only, and applies `schema`. Throws StoreError ("io" or "corrupt") named by `op`.
 */
export function openDatabaseFile(path: string, op: string, schema: string): Database.Database {
  const file = path === ":memory:" ? path : resolve(path);
  try {
    if (file !== ":memory:") prepareFile(file);
    const db = new Database(file, { timeout: 5000 });
    db.pragma("journal_mode = WAL");
    db.pragma("secure_delete = ON");
    db.exec(schema);
    return db;
  } catch (e) {
    throw toStoreError(op, e);
  }
}
