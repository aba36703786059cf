/**
 * `xmpp-e2e archive`: the encrypted history of Encrypted Sessions from the command line —
 * create the user's archive key, move it to another device, list and read the archived
 * conversations from the local cache and the server — and {@link archiveFor}, which makes
 * `xmpp-e2e chat` archive the sessions whose negotiated 'logging' allows it.
 *
 * Spec: XEP-0136 v1.3.1 section 3.2 (the negotiated 'logging' governs archiving in both
 * directions), 7.1 (listing collections), 7.2 (retrieving one), 8 (a local copy of the
 * archive); XEP-0241 v0.1 section 2 (encrypted collections: only a holder of the archive
 * key reads them); XEP-0155 v1.2 section 8 ('logging': only "may" allows it); XML
 * Encryption 1.1 section 5.4.2 (the PBKDF2 DerivedKey protecting an exported or
 * passphrase-sealed archive key, see src/archive/crypto.ts); XEP-0116 v0.16 section 14
 * (secret keys at rest: files 0600 in a 0700 directory, written atomically, refused when
 * group or others can read them, optionally sealed under a passphrase — as identity keys
 * are, src/identity/keyfile.ts). See docs/archive.md "Command line".
 *
 * The archive key is never printed, logged or put in an error; only its name
 * (`archive-` + 16 bytes of a hash) is. Passphrases and the account password come from a
 * prompt without echo, or from XMPP_E2E_ARCHIVE_PASSPHRASE / XMPP_E2E_PASSWORD for
 * scripts. Archived bodies are printed with control characters replaced (a peer's message
 * must not drive the user's terminal).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { AdapterError, type StanzaConnection } from "../adapters/connection.js";
import {
  ArchiveError,
  type ArchiveKey,
  ArchiveManager,
  archiveKeyFrom,
  type ArchiveStore,
  attachArchive,
  type ArchiveAttachment,
  type AttachmentEvent,
  type Chat,
  type ChatItem,
  type CollectionRef,
  DEFAULT_EXPORT_ITERATIONS,
  discoverArchiveStore,
  exportArchiveKey,
  importArchiveKey,
  IqClient,
  MIN_EXPORT_ITERATIONS,
  mergeItems,
  newArchiveKey,
  nodeArchiveCrypto,
  openCollection,
  openSqliteArchiveCache,
  type SqliteArchiveCache,
} from "../archive/index.js";
import {
  ArchiveKeyRefused,
  defaultIsAuthenticated,
  requestArchiveKey,
  serveArchiveKey,
} from "../archive/key-transfer.js";
import type { Established, SecureClient } from "../client/secure-client.js";
import type { FullStore } from "../store/trust-types.js";
import { fromBase64, toBase64, toHex, utf8, wipe } from "../core/bytes.js";
import { bareJid, type Clock, type FullJid, type Jid, jidParts, parseFullJid, parseJid, type Random } from "../core/types.js";
import { systemRandom } from "../crypto/node.js";
import { IdentityError } from "../identity/errors.js";
import { readPrivateFile, writePrivateFile } from "../identity/keyfile.js";
import { StoreError } from "../store/types.js";

const USAGE = `usage: xmpp-e2e archive <command> [options]

The encrypted history of Encrypted Sessions whose negotiated 'logging' allows it
(XEP-0136 collections encrypted as XEP-0241 says, under your own archive key).

commands:
  init                 create the archive key of an account (prints its name, never the key)
      --protect          seal it under a passphrase on this device
  export-key --out FILE
                       write the key, encrypted under a passphrase, for your other devices
  import-key FILE      add an exported key on this device (the second device)
      --protect          keep it sealed under the same passphrase
  list                 the archived conversations: id, start, number of messages, peer
      --peer JID         only those with JID (a bare JID matches every resource)
  show ID              one conversation as a transcript (ID: a unique prefix of the list's id)
  request-key --from RESOURCE --server URL
                       get the key from your other device RESOURCE (running serve-key) over
                       an Encrypted Session between the two: compare the SAS, then it is
                       stored as import-key does (--protect: sealed under a new passphrase)
  serve-key --server URL
                       on the device holding the key: wait for request-key from your other
                       devices; each request is shown with the session's SAS and needs y
      --resource NAME    this device's resource (default archive-XXXX, printed)
      --once             stop after the first request answered
      --store FILE       retained secrets and SAS state of these sessions
                         (default DIR/ACCOUNT.sessions.db)
      --timeout SECS     request-key: how long to wait for the other device (default 120)

options:
  --account JID        the account (default: the jid of DIR/config.json, or the only
                       account with an archive key in DIR)
  --dir DIR            where the key and the cache live (default: the directory of
                       XMPP_E2E_CONFIG, else $XDG_CONFIG_HOME/xmpp-e2e, else ~/.config/xmpp-e2e)
  --cache FILE         the local archive cache (default DIR/ACCOUNT.archive.db)
  --server URL         list/show also read the server's store (xmpp://host:port or
                       ws://host:port/xmpp-websocket); the password is asked for, or read
                       from XMPP_E2E_PASSWORD
  --json               machine-readable output (list, show)
  --iterations N       PBKDF2 iterations for init --protect and export-key (default ${DEFAULT_EXPORT_ITERATIONS}, at least ${MIN_EXPORT_ITERATIONS})
  --force              export-key: replace an existing FILE

Passphrases are asked for without echo, or read from XMPP_E2E_ARCHIVE_PASSPHRASE (the
same value then opens a sealed key and protects an export).
Files: DIR/ACCOUNT.archive-key.json (mode 0600) and DIR/ACCOUNT.archive.db (0600).
`;

// ---- the CLI layer's error ---------------------------------------------------------------

export const ARCHIVE_CLI_CONDITIONS = [
  /** Bad command line (exit 2). */
  "usage",
  /** No archive key on this device for the account: run `archive init` or `archive import-key`. */
  "no-key",
  /** The account already has an archive key here; replacing it would orphan the archive. */
  "key-exists",
  /** A passphrase or password is needed and there is no terminal to ask on. */
  "secret-required",
  /** The passphrase does not open the key (or the file was altered). */
  "bad-passphrase",
  /** The conversation was written under another archive key. */
  "wrong-key",
  /** No such conversation, file or account. */
  "not-found",
  /** A key file or export that is not ours or is malformed. */
  "bad-file",
  /** Stored ciphertext that does not authenticate (tampered or damaged). */
  "corrupt",
  /** A key file group or others can read (keys at rest must be 0600). */
  "insecure-permissions",
  /** A file could not be read or written. */
  "io",
  /** The server could not be reached, refused the login, or offers no archive store. */
  "server",
  /** request-key: the other device refused, or did not answer in time. */
  "refused",
  /** request-key: the SAS of the session with the other device was not confirmed. */
  "not-authenticated",
] as const;
export type ArchiveCliCondition = (typeof ARCHIVE_CLI_CONDITIONS)[number];

/** The one error of `xmpp-e2e archive`: a typed condition and a message with no secret in it. */
export class ArchiveCliError extends Error {
  override readonly name = "ArchiveCliError";
  constructor(
    readonly condition: ArchiveCliCondition,
    message: string,
  ) {
    super(message);
  }
  /** 2 for a usage error, 1 otherwise. */
  get exitCode(): number {
    return this.condition === "usage" ? 2 : 1;
  }
}

const usage = (m: string): ArchiveCliError => new ArchiveCliError("usage", m);

// ---- io ----------------------------------------------------------------------------------

export interface ArchiveCliIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  /** Asks for a secret without echo; undefined when there is no terminal to ask on. */
  readonly secret: (question: string) => Promise<string | undefined>;
  readonly random: Random;
  /** Asks a yes/no question (request-key, serve-key); undefined: no terminal (counts as no). */
  readonly ask?: (question: string) => Promise<string | undefined>;
  /** serve-key stops when this resolves (default: SIGINT/SIGTERM). */
  readonly interrupted?: () => Promise<void>;
}

export const defaultArchiveIo: ArchiveCliIo = {
  out: (l) => console.log(l),
  err: (l) => console.error(l),
  env: process.env,
  now: () => Date.now(),
  async secret(question) {
    // Never read a secret from a pipe shared with other input: scripts use the environment.
    if (!process.stdin.isTTY) return undefined;
    const { promptHidden } = await import("../tui/terminal.js");
    return promptHidden(question, process.stdin, process.stderr);
  },
  random: systemRandom,
  async ask(question) {
    if (!process.stdin.isTTY) return undefined;
    const { createInterface } = await import("node:readline/promises");
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    try {
      return await rl.question(question);
    } finally {
      rl.close();
    }
  },
  interrupted: () =>
    new Promise<void>((resolve) => {
      process.once("SIGINT", () => resolve());
      process.once("SIGTERM", () => resolve());
    }),
};

const ENV_PASSPHRASE = "XMPP_E2E_ARCHIVE_PASSPHRASE";
const ENV_PASSWORD = "XMPP_E2E_PASSWORD";
/** A passphrase protecting a key that travels (export) or rests (--protect). */
const MIN_PASSPHRASE = 8;

async function askSecret(io: ArchiveCliIo, env: string, question: string, what: string): Promise<string> {
  const v = io.env[env] ?? (await io.secret(question));
  if (v === undefined) throw new ArchiveCliError("secret-required", `${what} is needed: run in a terminal, or set ${env}`);
  return v;
}

/** A new passphrase: from the environment, or typed twice. */
async function newPassphrase(io: ArchiveCliIo, question: string): Promise<string> {
  let p = io.env[ENV_PASSPHRASE];
  if (p === undefined) {
    p = await io.secret(question);
    if (p === undefined) throw new ArchiveCliError("secret-required", `a passphrase is needed: run in a terminal, or set ${ENV_PASSPHRASE}`);
    if ((await io.secret("Type it again: ")) !== p) throw usage("the two passphrases differ");
  }
  if ([...p].length < MIN_PASSPHRASE) throw usage(`use a passphrase of at least ${MIN_PASSPHRASE} characters`);
  return p;
}

// ---- where things live -------------------------------------------------------------------

/** The directory of the terminal client's config file (same rule as src/tui/config.ts). */
export function defaultArchiveDir(env: Readonly<Record<string, string | undefined>> = process.env): string {
  const cfg = env["XMPP_E2E_CONFIG"];
  if (cfg) return dirname(resolve(cfg));
  const xdg = env["XDG_CONFIG_HOME"];
  return join(xdg ? resolve(xdg) : join(homedir(), ".config"), "xmpp-e2e");
}

const KEY_SUFFIX = ".archive-key.json";

export function archivePaths(dir: string, account: Jid): { readonly keyFile: string; readonly cache: string } {
  return { keyFile: join(dir, `${account}${KEY_SUFFIX}`), cache: join(dir, `${account}.archive.db`) };
}

function accountOpt(v: string): Jid {
  let j: Jid;
  try {
    j = bareJid(parseJid(v));
  } catch {
    throw usage(`not a JID: ${printable(v)}`);
  }
  if (jidParts(j).local === undefined) throw usage("the account needs a local part (user@domain)");
  return j;
}

/** --account, else the terminal client's config in DIR, else the only archive key in DIR. */
function resolveAccount(v: string | undefined, dir: string, env: Readonly<Record<string, string | undefined>>): Jid {
  if (v !== undefined) return accountOpt(v);
  const cfg = env["XMPP_E2E_CONFIG"] ? resolve(env["XMPP_E2E_CONFIG"]) : join(dir, "config.json");
  if (existsSync(cfg)) {
    try {
      const jid: unknown = (JSON.parse(readFileSync(cfg, "utf8")) as Record<string, unknown>)["jid"];
      if (typeof jid === "string") return accountOpt(jid);
    } catch (e) {
      if (e instanceof ArchiveCliError) throw e;
      /* not a config we can read: fall through */
    }
  }
  const keys = existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith(KEY_SUFFIX)) : [];
  const only = keys.length === 1 ? keys[0] : undefined;
  if (only !== undefined) return accountOpt(only.slice(0, -KEY_SUFFIX.length));
  throw usage(keys.length > 1 ? `${dir} holds archive keys of several accounts: say which with --account JID` : "--account JID is required");
}

// ---- the archive key at rest -------------------------------------------------------------

const KEY_FILE_TYPE = "xmpp-e2e-archive-key";

/**
 * The key file: JSON, mode 0600. `key` (Base64) when unprotected, else `sealed`: the same
 * passphrase-protected `<EncryptedKey/>` as an export (PBKDF2-HMAC-SHA256 + kw-aes256).
 * `device` names this device's index in the server's private storage.
 */
interface KeyFileJson {
  readonly type: typeof KEY_FILE_TYPE;
  readonly version: 1;
  readonly account: string;
  readonly name: string;
  readonly createdAt: number;
  readonly device: string;
  readonly key?: string;
  readonly sealed?: string;
}

/** What a key file says about itself (no secret). */
export interface ArchiveKeyInfo {
  readonly account: string;
  readonly name: string;
  readonly createdAt: number;
  readonly device: string;
  readonly protected: boolean;
}

function fileError(e: unknown, path: string): ArchiveCliError {
  if (e instanceof IdentityError) {
    if (e.condition === "insecure-permissions") return new ArchiveCliError("insecure-permissions", `${path} is readable by group or others; run: chmod 600 ${path}`);
    return new ArchiveCliError("io", `${path}: ${e.code === "ENOENT" ? "no such file" : `cannot read or write it${e.code ? ` (${e.code})` : ""}`}`);
  }
  return new ArchiveCliError("io", `${path}: cannot read or write it`);
}

function parseKeyFile(text: string, path: string): KeyFileJson {
  let x: unknown;
  try {
    x = JSON.parse(text);
  } catch {
    throw new ArchiveCliError("bad-file", `${path} is not an archive key file`);
  }
  const o = typeof x === "object" && x !== null && !Array.isArray(x) ? (x as Record<string, unknown>) : {};
  const ok =
    o["type"] === KEY_FILE_TYPE &&
    o["version"] === 1 &&
    typeof o["account"] === "string" &&
    typeof o["name"] === "string" &&
    typeof o["createdAt"] === "number" &&
    typeof o["device"] === "string" &&
    (typeof o["key"] === "string") !== (typeof o["sealed"] === "string");
  if (!ok) throw new ArchiveCliError("bad-file", `${path} is not an archive key file (${KEY_FILE_TYPE} v1)`);
  return o as unknown as KeyFileJson;
}

function readKeyFile(path: string, account: Jid): KeyFileJson {
  if (!existsSync(path))
    throw new ArchiveCliError(
      "no-key",
      `no archive key for ${account} on this device: create one with \`xmpp-e2e archive init --account ${account}\`, or import the one of your other device with \`xmpp-e2e archive import-key FILE --account ${account}\``,
    );
  let text: string;
  try {
    text = readPrivateFile(path);
  } catch (e) {
    throw fileError(e, path);
  }
  const f = parseKeyFile(text, path);
  if (f.account !== account) throw new ArchiveCliError("bad-file", `${path} holds the archive key of another account`);
  return f;
}

export function archiveKeyInfo(path: string, account: Jid): ArchiveKeyInfo {
  const f = readKeyFile(path, account);
  return { account: f.account, name: f.name, createdAt: f.createdAt, device: f.device, protected: f.sealed !== undefined };
}

/** Writes the key file (0600, atomically), sealed under `passphrase` when given. */
export function writeArchiveKeyFile(
  path: string,
  account: Jid,
  ak: ArchiveKey,
  o: { readonly now: number; readonly random: Random; readonly passphrase?: string; readonly iterations?: number },
): ArchiveKeyInfo {
  const device = `d-${toHex(o.random.bytes(6))}`;
  const secret =
    o.passphrase === undefined
      ? { key: toBase64(ak.key) }
      : { sealed: exportArchiveKey(ak, o.passphrase, o.random, o.iterations === undefined ? {} : { iterations: o.iterations }) };
  const body: KeyFileJson = { type: KEY_FILE_TYPE, version: 1, account, name: ak.name, createdAt: o.now, device, ...secret };
  try {
    writePrivateFile(path, `${JSON.stringify(body, null, 2)}\n`);
  } catch (e) {
    throw fileError(e, path);
  }
  return { account, name: ak.name, createdAt: o.now, device, protected: o.passphrase !== undefined };
}

/** Opens the key file of `account` (asking for the passphrase of a sealed key). */
export async function loadArchiveKey(path: string, account: Jid, io: ArchiveCliIo, passphrase?: string): Promise<{ key: ArchiveKey; info: ArchiveKeyInfo }> {
  const f = readKeyFile(path, account);
  const info: ArchiveKeyInfo = { account: f.account, name: f.name, createdAt: f.createdAt, device: f.device, protected: f.sealed !== undefined };
  let key: ArchiveKey;
  if (f.sealed !== undefined) {
    const p = passphrase ?? (await askSecret(io, ENV_PASSPHRASE, `Passphrase of the archive key of ${account}: `, "the passphrase of the archive key"));
    try {
      key = importArchiveKey(f.sealed, p);
    } catch (e) {
      if (e instanceof ArchiveError && e.condition === "bad-passphrase") throw new ArchiveCliError("bad-passphrase", `wrong passphrase for the archive key of ${account}`);
      throw new ArchiveCliError("bad-file", `${path}: the sealed key is malformed`);
    }
  } else {
    const raw = fromBase64(f.key ?? "");
    if (raw === undefined || raw.length !== 32) throw new ArchiveCliError("bad-file", `${path}: the key is malformed`);
    key = archiveKeyFrom(raw);
    wipe(raw);
  }
  // The name is derived from the key: a mismatch means the file was damaged or edited.
  if (key.name !== f.name) {
    wipe(key.key);
    throw new ArchiveCliError("bad-file", `${path}: the key does not match its name`);
  }
  return { key, info };
}

function iterationsOpt(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < MIN_EXPORT_ITERATIONS || n > 100_000_000) throw usage(`--iterations must be an integer from ${MIN_EXPORT_ITERATIONS} to 100000000`);
  return n;
}

// ---- reading the archive -----------------------------------------------------------------

/** A conversation's short id: hex of SHA-256(with, start), 12 digits; the same from every store. */
export function collectionId(ref: { readonly with: string; readonly start: string }): string {
  return toHex(nodeArchiveCrypto.sha256(utf8(`${ref.with}\n${ref.start}`))).slice(0, 12);
}

interface Source {
  readonly name: "cache" | "server";
  readonly store: ArchiveStore;
}

interface Found {
  readonly ref: CollectionRef;
  readonly id: string;
  readonly sources: Array<"cache" | "server">;
}

async function listAll(sources: readonly Source[]): Promise<Found[]> {
  const all = new Map<string, Found>();
  for (const s of sources)
    for (const ref of await s.store.list()) {
      const id = collectionId(ref);
      const f = all.get(`${ref.start}\u0000${ref.with}`);
      if (f) f.sources.push(s.name);
      else all.set(`${ref.start}\u0000${ref.with}`, { ref, id, sources: [s.name] });
    }
  return [...all.values()].sort((a, b) => (a.ref.start < b.ref.start ? -1 : a.ref.start > b.ref.start ? 1 : 0));
}

/** The collection as every source holds it, merged: each encrypted item once. */
async function retrieveMerged(f: Found, sources: readonly Source[]): Promise<Chat | undefined> {
  let merged: Chat | undefined;
  const seen = new Set<string>();
  for (const s of sources) {
    if (!f.sources.includes(s.name)) continue;
    const c = await s.store.retrieve(f.ref);
    if (!c) continue;
    // The same EncryptedData (random IV) in the cache and on the server is one message.
    const fresh = c.items.filter((i) => {
      if (i.kind !== "encrypted-data") return true;
      if (seen.has(i.data.cipherValue)) return false;
      seen.add(i.data.cipherValue);
      return true;
    });
    merged = merged ? { ...merged, items: mergeItems(merged.items, fresh) } : { ...c, items: mergeItems([], fresh) };
  }
  return merged;
}

/** One line of a transcript. */
export interface TranscriptEntry {
  /** XEP-0082 DateTime, when the archive says. */
  readonly time?: string;
  readonly direction: "sent" | "received" | "note";
  readonly peer: string;
  readonly body: string;
}

export type Opened =
  | { readonly readable: true; readonly entries: readonly TranscriptEntry[] }
  | { readonly readable: false; readonly condition: ArchiveCliCondition; readonly keyNames: readonly string[]; readonly reason: string };

function addSecs(base: string | undefined, secs: number | undefined): string | undefined {
  if (base === undefined || secs === undefined) return undefined;
  const t = Date.parse(base);
  return Number.isNaN(t) ? undefined : new Date(t + secs * 1000).toISOString();
}

/** Decrypts a collection with the archive key into transcript entries (never throws). */
export function openTranscript(chat: Chat, key: ArchiveKey): Opened {
  const keyNames = [...new Set(chat.items.flatMap((i) => (i.kind === "encrypted-key" && i.key.keyName !== undefined ? [i.key.keyName] : [])))];
  let items: readonly ChatItem[];
  try {
    items = openCollection(chat, key).items;
  } catch (e) {
    const c = e instanceof ArchiveError ? e.condition : "bad-format";
    if (c === "no-key")
      return {
        readable: false,
        condition: "wrong-key",
        keyNames,
        reason: keyNames.length > 0 ? `written under archive key ${keyNames.join(", ")}, not ${key.name}` : "no data key for this archive key",
      };
    return { readable: false, condition: "corrupt", keyNames, reason: c === "decrypt-failed" ? "ciphertext does not authenticate (altered or damaged)" : "malformed collection" };
  }
  const entries: TranscriptEntry[] = [];
  let last: string | undefined = chat.start;
  for (const i of items) {
    if (i.kind === "to" || i.kind === "from") {
      const time: string | undefined = i.utc ?? addSecs(last, i.secs);
      if (time !== undefined) last = time;
      entries.push({ ...(time !== undefined ? { time } : {}), direction: i.kind === "to" ? "sent" : "received", peer: chat.with, body: i.bodies[0] ?? "" });
    } else if (i.kind === "note") entries.push({ ...(i.utc !== undefined ? { time: i.utc } : {}), direction: "note", peer: chat.with, body: i.text });
  }
  return { readable: true, entries };
}

/**
 * Text safe to print on a terminal: C0/C1 controls (escape sequences), DEL and the bidi
 * overrides become U+FFFD; newlines and tabs stay. Archived bodies come from peers.
 */
export function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, "\uFFFD");
}

function when(t: string | undefined): string {
  if (t === undefined) return "(no time)           ";
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? printable(t).padEnd(20) : `${new Date(ms).toISOString().slice(0, 19).replace("T", " ")}Z`;
}

function peerMatches(peerFilter: string | undefined, w: string): boolean {
  if (peerFilter === undefined) return true;
  return peerFilter.includes("/") ? w === peerFilter : bareJid(w as Jid) === peerFilter;
}

// ---- the server store --------------------------------------------------------------------

interface Remote {
  readonly store: ArchiveStore;
  readonly kind: "xep-0136" | "private";
  close(): Promise<void>;
}

async function openServer(service: string, account: Jid, device: string, io: ArchiveCliIo): Promise<Remote> {
  if (!/^(xmpp|wss?):\/\/[^/]/.test(service)) throw usage("--server must be xmpp://host:port or ws[s]://host:port/path");
  const { local, domain } = jidParts(account);
  if (local === undefined) throw usage("--account needs a local part");
  const password = await askSecret(io, ENV_PASSWORD, `Password for ${account}: `, `the password of ${account}`);
  const { connectXmpp } = await import("../adapters/xmpp-client.js");
  let conn: StanzaConnection;
  try {
    conn = await connectXmpp({ service, domain, username: local, password, resource: `archive-${toHex(io.random.bytes(4))}`, presence: false });
  } catch (e) {
    const c = e instanceof AdapterError ? e.condition : "connection-failed";
    throw new ArchiveCliError("server", c === "auth-failed" ? `the server refused the login of ${account} (wrong password?)` : `could not connect to ${service} (${c})`);
  }
  const iq = new IqClient(conn, io.random);
  const close = async (): Promise<void> => {
    iq.close();
    await conn.close().catch(() => undefined);
  };
  try {
    const remote = await discoverArchiveStore(iq, domain, { deviceId: device });
    if (!remote) throw new ArchiveCliError("server", `${domain} offers no archive store (neither XEP-0136 manual archiving nor XEP-0049 private storage)`);
    return { store: remote.store, kind: remote.kind, close };
  } catch (e) {
    await close();
    throw e;
  }
}

// ---- commands ----------------------------------------------------------------------------

interface Values {
  readonly account?: string | undefined;
  readonly dir?: string | undefined;
  readonly cache?: string | undefined;
  readonly server?: string | undefined;
  readonly peer?: string | undefined;
  readonly out?: string | undefined;
  readonly iterations?: string | undefined;
  readonly json?: boolean | undefined;
  readonly protect?: boolean | undefined;
  readonly force?: boolean | undefined;
  readonly from?: string | undefined;
  readonly resource?: string | undefined;
  readonly store?: string | undefined;
  readonly timeout?: string | undefined;
  readonly once?: boolean | undefined;
}

interface Ctx {
  readonly io: ArchiveCliIo;
  readonly values: Values;
  readonly dir: string;
  readonly account: Jid;
  readonly keyFile: string;
  readonly cache: string;
}

async function cmdInit(c: Ctx): Promise<number> {
  if (existsSync(c.keyFile)) {
    const name = (() => {
      try {
        return archiveKeyInfo(c.keyFile, c.account).name;
      } catch {
        return "(unreadable)";
      }
    })();
    throw new ArchiveCliError(
      "key-exists",
      `${c.account} already has archive key ${name} in ${c.keyFile}; a new key could not read what was archived under it. Move that file away yourself if you really want a new key.`,
    );
  }
  const iterations = iterationsOpt(c.values.iterations);
  const passphrase = c.values.protect ? await newPassphrase(c.io, `Passphrase to protect the archive key of ${c.account}: `) : undefined;
  const ak = newArchiveKey(c.io.random);
  try {
    writeArchiveKeyFile(c.keyFile, c.account, ak, {
      now: c.io.now(),
      random: c.io.random,
      ...(passphrase !== undefined ? { passphrase } : {}),
      ...(iterations !== undefined ? { iterations } : {}),
    });
  } finally {
    wipe(ak.key);
  }
  c.io.out(`archive key ${ak.name} created for ${c.account}`);
  c.io.out(`  stored in ${c.keyFile} (mode 0600${passphrase !== undefined ? ", sealed under your passphrase" : ""})`);
  c.io.out(`  for your other devices: xmpp-e2e archive export-key --account ${c.account} --out FILE`);
  c.io.out("  chat --archive keeps sessions in which both sides allow logging");
  return 0;
}

async function cmdExport(c: Ctx): Promise<number> {
  const out = c.values.out;
  if (out === undefined) throw usage("export-key needs --out FILE (the key is never written to the terminal)");
  if (existsSync(out) && !c.values.force) throw usage(`${out} exists; use --force to replace it`);
  const iterations = iterationsOpt(c.values.iterations);
  const { key, info } = await loadArchiveKey(c.keyFile, c.account, c.io);
  try {
    const passphrase = await newPassphrase(c.io, "Passphrase to protect the exported key: ");
    const text = exportArchiveKey(key, passphrase, c.io.random, iterations === undefined ? {} : { iterations });
    try {
      writePrivateFile(out, `${text}\n`);
    } catch (e) {
      throw fileError(e, out);
    }
  } finally {
    wipe(key.key);
  }
  c.io.out(`exported archive key ${info.name} of ${c.account} to ${out} (mode 0600, encrypted under your passphrase)`);
  c.io.out(`  on the other device: xmpp-e2e archive import-key ${out} --account ${c.account}`);
  return 0;
}

async function cmdImport(c: Ctx, file: string | undefined): Promise<number> {
  if (file === undefined) throw usage("import-key needs a FILE");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = e instanceof Error && "code" in e && typeof e.code === "string" ? e.code : undefined;
    throw new ArchiveCliError(code === "ENOENT" ? "not-found" : "io", `${file}: ${code === "ENOENT" ? "no such file" : "cannot read it"}`);
  }
  const passphrase = await askSecret(c.io, ENV_PASSPHRASE, `Passphrase of ${file}: `, "the passphrase of the exported key");
  let key: ArchiveKey;
  try {
    key = importArchiveKey(text, passphrase);
  } catch (e) {
    if (e instanceof ArchiveError && e.condition === "bad-passphrase") throw new ArchiveCliError("bad-passphrase", `wrong passphrase for ${file} (or the file was altered)`);
    throw new ArchiveCliError("bad-file", `${file} is not an exported archive key`);
  }
  try {
    if (alreadyHeld(c, key)) return 0;
    if (c.values.protect && [...passphrase].length < MIN_PASSPHRASE) throw usage(`use a passphrase of at least ${MIN_PASSPHRASE} characters`);
    keepKey(c, key, c.values.protect ? passphrase : undefined);
  } finally {
    wipe(key.key);
  }
  c.io.out(`imported archive key ${key.name} for ${c.account} into ${c.keyFile} (mode 0600${c.values.protect ? ", sealed under the same passphrase" : ""})`);
  return 0;
}

/** True (and says so) when this device holds `key` already; key-exists for another key. */
function alreadyHeld(c: Ctx, key: ArchiveKey): boolean {
  if (!existsSync(c.keyFile)) return false;
  const have = archiveKeyInfo(c.keyFile, c.account);
  if (have.name === key.name) {
    c.io.out(`this device already holds archive key ${key.name} for ${c.account}`);
    return true;
  }
  throw new ArchiveCliError(
    "key-exists",
    `${c.account} already has another archive key here (${have.name}, in ${c.keyFile}); move that file away first if you want to replace it`,
  );
}

/** Writes a received key as import-key does (0600, sealed when a passphrase is given). */
function keepKey(c: Ctx, key: ArchiveKey, passphrase: string | undefined): void {
  const iterations = iterationsOpt(c.values.iterations);
  writeArchiveKeyFile(c.keyFile, c.account, key, {
    now: c.io.now(),
    random: c.io.random,
    ...(passphrase !== undefined ? { passphrase } : {}),
    ...(iterations !== undefined ? { iterations } : {}),
  });
}

// ---- the key over an Encrypted Session between two devices (src/archive/key-transfer.ts) --

const yes = (a: string | undefined): boolean => a !== undefined && /^\s*y(es)?\s*$/i.test(a);

/** A SecureClient for the account on `--server`, with `--resource`, and its SQLite store. */
async function connectDevice(c: Ctx, resource: string): Promise<{ client: SecureClient; store: FullStore; close(): Promise<void> }> {
  const service = c.values.server;
  if (service === undefined) throw usage("this command needs --server URL (xmpp://host:port or ws://host:port/xmpp-websocket)");
  if (!/^(xmpp|wss?):\/\/[^/]/.test(service)) throw usage("--server must be xmpp://host:port or ws[s]://host:port/path");
  const { local, domain } = jidParts(c.account);
  if (local === undefined) throw usage("--account needs a local part");
  const password = await askSecret(c.io, ENV_PASSWORD, `Password for ${c.account}: `, `the password of ${c.account}`);
  const storePath = c.values.store !== undefined ? resolve(c.values.store) : join(c.dir, `${c.account}.sessions.db`);
  const { connectXmpp } = await import("../adapters/xmpp-client.js");
  const { openSqliteStore } = await import("../store/sqlite.js");
  const { SecureClient: Client } = await import("../client/secure-client.js");
  let conn: StanzaConnection;
  try {
    conn = await connectXmpp({ service, domain, username: local, password, resource });
  } catch (e) {
    const cond = e instanceof AdapterError ? e.condition : "connection-failed";
    throw new ArchiveCliError("server", cond === "auth-failed" ? `the server refused the login of ${c.account} (wrong password?)` : `could not connect to ${service} (${cond})`);
  }
  let store: FullStore;
  try {
    store = openSqliteStore(storePath);
  } catch (e) {
    await conn.close().catch(() => undefined);
    throw e;
  }
  const client = new Client({ connection: conn, store, random: c.io.random });
  return {
    client,
    store,
    async close() {
      await client.close().catch(() => undefined);
      await conn.close().catch(() => undefined);
      await store.close().catch(() => undefined);
    },
  };
}

/** Asks the user to compare this session's SAS; confirms it (both sides must) when it matches. */
async function compareSas(c: Ctx, client: SecureClient, device: FullJid, sas: string | undefined): Promise<boolean> {
  if (sas === undefined) return false;
  c.io.out(`SAS of the session with ${printable(device)}: ${sas}`);
  const ok = yes(await c.io.ask?.(`Does ${printable(device)} show the same SAS ${sas}? [y/N] `));
  if (!ok) return false;
  await client.confirmSas(device);
  return true;
}

async function cmdRequestKey(c: Ctx): Promise<number> {
  const from = c.values.from;
  if (from === undefined) throw usage("request-key needs --from RESOURCE (the resource of your device running serve-key)");
  let device: FullJid;
  try {
    device = parseFullJid(`${c.account}/${from}`);
  } catch {
    throw usage(`not a resource: ${printable(from)}`);
  }
  const secs = c.values.timeout === undefined ? 120 : Number(c.values.timeout);
  if (!Number.isFinite(secs) || secs <= 0 || secs > 86_400) throw usage("--timeout must be a number of seconds from 1 to 86400");
  if (existsSync(c.keyFile)) archiveKeyInfo(c.keyFile, c.account); // a damaged file is reported before connecting
  const passphrase = c.values.protect ? await newPassphrase(c.io, `Passphrase to protect the archive key of ${c.account}: `) : undefined;
  const resource = c.values.resource ?? `archive-${toHex(c.io.random.bytes(4))}`;
  if (resource === from) throw usage("--from names this device itself");
  const dev = await connectDevice(c, resource);
  try {
    c.io.out(`connected as ${printable(dev.client.jid)}; negotiating an encrypted session with ${printable(device)} ...`);
    let est: Established;
    try {
      est = await dev.client.startSession(device);
    } catch (e) {
      throw new ArchiveCliError("server", `no encrypted session with ${printable(device)} (is serve-key running there?): ${e instanceof Error ? e.message : "failed"}`);
    }
    let authenticated = await defaultIsAuthenticated(dev.client, device, { established: est, establishedAt: c.io.now() }, dev.store);
    if (!authenticated) authenticated = await compareSas(c, dev.client, device, est.sas);
    if (!authenticated) throw new ArchiveCliError("not-authenticated", `the SAS was not confirmed: no key was requested from ${printable(device)}`);
    c.io.out(`asking ${printable(device)} for the archive key; approve it there ...`);
    let key: ArchiveKey;
    try {
      key = await requestArchiveKey(dev.client, device, { established: est, isAuthenticated: () => true, timeoutMs: secs * 1000, random: c.io.random });
    } catch (e) {
      if (e instanceof ArchiveKeyRefused) throw new ArchiveCliError("refused", `${printable(device)} refused (${e.reason})`);
      if (e instanceof ArchiveError && e.condition === "timeout") throw new ArchiveCliError("refused", `${printable(device)} did not answer within ${secs} s`);
      throw e;
    }
    try {
      if (alreadyHeld(c, key)) return 0;
      keepKey(c, key, passphrase);
    } finally {
      wipe(key.key);
    }
    c.io.out(`received archive key ${key.name} for ${c.account} from ${printable(device)}; stored in ${c.keyFile} (mode 0600${passphrase !== undefined ? ", sealed under your passphrase" : ""})`);
    return 0;
  } finally {
    await dev.close();
  }
}

async function cmdServeKey(c: Ctx): Promise<number> {
  // Opened once (asking for a sealed key's passphrase now, not when a request comes).
  const { key, info } = await loadArchiveKey(c.keyFile, c.account, c.io);
  const resource = c.values.resource ?? `archive-${toHex(c.io.random.bytes(4))}`;
  let dev: Awaited<ReturnType<typeof connectDevice>>;
  try {
    dev = await connectDevice(c, resource);
  } catch (e) {
    wipe(key.key);
    throw e;
  }
  const client = dev.client;
  let answered: () => void = () => undefined;
  const once = new Promise<void>((r) => (answered = r));
  // One question at a time on the terminal.
  let asking: Promise<unknown> = Promise.resolve();
  const serial = <T>(f: () => Promise<T>): Promise<T> => {
    const p = asking.then(f);
    asking = p.catch(() => undefined);
    return p;
  };
  const stop = serveArchiveKey(client, {
    key: async () => ({ name: key.name, key: Uint8Array.from(key.key) }),
    store: dev.store,
    isAuthenticated: (device, facts) =>
      serial(async () => (await defaultIsAuthenticated(client, device, facts, dev.store)) || compareSas(c, client, device, facts?.established.sas)),
    approve: (device, facts) =>
      serial(async () => {
        const sas = facts?.established.sas;
        return yes(await c.io.ask?.(`Send archive key ${info.name} to ${printable(device)}${sas !== undefined ? ` (SAS ${sas})` : ""}? [y/N] `));
      }),
    onEvent: (e) => {
      switch (e.type) {
        case "request":
          c.io.out(`request for the archive key from ${printable(e.device)}`);
          return;
        case "sent":
          c.io.out(`sent archive key ${e.keyName} to ${printable(e.device)}`);
          answered();
          return;
        case "refused":
          c.io.out(`refused ${printable(e.device)} (${e.reason})`);
          answered();
          return;
        case "ignored":
          c.io.out(`ignored a request from ${printable(e.peer)} (${e.reason})`);
          return;
      }
    },
  });
  try {
    c.io.out(`serving archive key ${info.name} as ${printable(client.jid)}`);
    c.io.out(`  on the other device: xmpp-e2e archive request-key --from ${resource} --account ${c.account} --server ${c.values.server ?? "URL"}`);
    const interrupted = (c.io.interrupted ?? defaultArchiveIo.interrupted)?.() ?? new Promise<void>(() => undefined);
    await Promise.race(c.values.once ? [once, interrupted] : [interrupted]);
    await client.settled();
    return 0;
  } finally {
    stop();
    wipe(key.key);
    await dev.close();
  }
}

/** Opens the sources list/show read: the local cache (when it exists) and the server. */
async function withSources<T>(c: Ctx, device: string, f: (sources: readonly Source[]) => Promise<T>): Promise<T> {
  let cache: SqliteArchiveCache | undefined;
  let remote: Remote | undefined;
  try {
    const sources: Source[] = [];
    if (existsSync(c.cache)) {
      cache = openSqliteArchiveCache(c.cache);
      sources.push({ name: "cache", store: cache });
    }
    if (c.values.server !== undefined) {
      remote = await openServer(c.values.server, c.account, device, c.io);
      sources.push({ name: "server", store: remote.store });
    }
    return await f(sources);
  } finally {
    cache?.close();
    await remote?.close();
  }
}

function where(c: Ctx): string {
  return c.values.server !== undefined ? `${c.cache} and the server` : c.cache;
}

async function cmdList(c: Ctx): Promise<number> {
  let peer: string | undefined;
  if (c.values.peer !== undefined) {
    try {
      peer = parseJid(c.values.peer);
    } catch {
      throw usage(`not a JID: ${printable(c.values.peer)}`);
    }
  }
  const { key } = await loadArchiveKey(c.keyFile, c.account, c.io);
  try {
    const rows = await withSources(c, "reader", async (sources) => {
      const out: { found: Found; opened: Opened }[] = [];
      for (const found of await listAll(sources)) {
        if (!peerMatches(peer, found.ref.with)) continue;
        const chat = await retrieveMerged(found, sources);
        out.push({ found, opened: chat ? openTranscript(chat, key) : { readable: false, condition: "not-found", keyNames: [], reason: "vanished while listing" } });
      }
      return out;
    });
    if (c.values.json) {
      c.io.out(
        JSON.stringify(
          rows.map(({ found, opened }) => ({
            id: found.id,
            with: found.ref.with,
            start: found.ref.start,
            ...(found.ref.thread !== undefined ? { thread: found.ref.thread } : {}),
            sources: found.sources,
            readable: opened.readable,
            messages: opened.readable ? opened.entries.filter((e) => e.direction !== "note").length : null,
            ...(opened.readable ? {} : { problem: opened.condition, keyNames: opened.keyNames }),
          })),
          null,
          2,
        ),
      );
      return 0;
    }
    if (rows.length === 0) {
      c.io.out(`no archived conversations${peer !== undefined ? ` with ${printable(peer)}` : ""} in ${where(c)}`);
      return 0;
    }
    c.io.out(`${"ID".padEnd(12)}  ${"STARTED (UTC)".padEnd(20)}  ${"MESSAGES".padStart(8)}  PEER`);
    for (const { found, opened } of rows) {
      const n = opened.readable ? String(opened.entries.filter((e) => e.direction !== "note").length) : "?";
      const note = opened.readable ? "" : `  (${opened.reason})`;
      c.io.out(`${found.id}  ${when(found.ref.start)}  ${n.padStart(8)}  ${printable(found.ref.with)}${note}`);
    }
    c.io.out(`${rows.length} conversation${rows.length === 1 ? "" : "s"} in ${where(c)}`);
    return 0;
  } finally {
    wipe(key.key);
  }
}

async function cmdShow(c: Ctx, ref: string | undefined): Promise<number> {
  if (ref === undefined) throw usage("show needs the ID of a conversation (see archive list)");
  const id = ref.toLowerCase();
  if (!/^[0-9a-f]{4,12}$/.test(id)) throw usage("an ID is 4 to 12 hex digits (see archive list)");
  const { key } = await loadArchiveKey(c.keyFile, c.account, c.io);
  try {
    const shown = await withSources(c, "reader", async (sources) => {
      const matches = (await listAll(sources)).filter((f) => f.id.startsWith(id));
      const only = matches[0];
      if (only === undefined) throw new ArchiveCliError("not-found", `no archived conversation ${id} in ${where(c)}`);
      if (matches.length > 1) throw usage(`${id} matches ${matches.length} conversations (${matches.map((m) => m.id).join(", ")}); give more digits`);
      const chat = await retrieveMerged(only, sources);
      if (!chat) throw new ArchiveCliError("not-found", `no archived conversation ${id} in ${where(c)}`);
      return { found: only, opened: openTranscript(chat, key) };
    });
    const { found, opened } = shown;
    if (!opened.readable) throw new ArchiveCliError(opened.condition, `conversation ${found.id}: ${opened.reason}`);
    if (c.values.json) {
      c.io.out(
        JSON.stringify(
          {
            id: found.id,
            with: found.ref.with,
            start: found.ref.start,
            ...(found.ref.thread !== undefined ? { thread: found.ref.thread } : {}),
            sources: found.sources,
            messages: opened.entries,
          },
          null,
          2,
        ),
      );
      return 0;
    }
    c.io.out(`conversation ${found.id} with ${printable(found.ref.with)}, started ${when(found.ref.start)}`);
    for (const e of opened.entries) {
      const head =
        e.direction === "sent" ? `me → ${printable(e.peer)}:` : e.direction === "received" ? `${printable(e.peer)} → me:` : "(note)";
      const [first = "", ...more] = printable(e.body).split("\n");
      c.io.out(`${when(e.time)}  ${head} ${first}`);
      for (const m of more) c.io.out(`${" ".repeat(22)}${m}`);
    }
    return 0;
  } finally {
    wipe(key.key);
  }
}

/** Maps what a command threw to a message and an exit code (never a secret). */
function report(e: unknown, io: ArchiveCliIo): number {
  let err: ArchiveCliError;
  if (e instanceof ArchiveCliError) err = e;
  else if (e instanceof ArchiveError)
    err = new ArchiveCliError(
      e.condition === "server"
        ? "server"
        : e.condition === "bad-passphrase"
          ? "bad-passphrase"
          : e.condition === "not-authenticated"
            ? "not-authenticated"
            : e.condition === "refused" || e.condition === "timeout"
              ? "refused"
              : "corrupt",
      `archive: ${e.message}`,
    );
  else if (e instanceof StoreError) err = new ArchiveCliError(e.condition === "corrupt" ? "corrupt" : "io", `the archive cache: ${e.message}`);
  else if (e instanceof IdentityError) err = fileError(e, "key file");
  else if (e instanceof AdapterError) err = new ArchiveCliError("server", `the server connection: ${e.condition}`);
  else if (e instanceof Error && "code" in e && typeof e.code === "string" && e.code.startsWith("ERR_PARSE_ARGS")) err = usage(e.message);
  else throw e;
  io.err(`xmpp-e2e archive: ${err.message}`);
  if (err.condition === "usage") io.err(`\n${USAGE}`);
  return err.exitCode;
}

export async function run(argv: string[], io: ArchiveCliIo = defaultArchiveIo): Promise<number> {
  try {
    const [cmd, ...rest] = argv;
    if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
      io.out(USAGE);
      return cmd === undefined ? 2 : 0;
    }
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        account: { type: "string" },
        dir: { type: "string" },
        cache: { type: "string" },
        server: { type: "string" },
        peer: { type: "string" },
        out: { type: "string" },
        iterations: { type: "string" },
        json: { type: "boolean", default: false },
        protect: { type: "boolean", default: false },
        force: { type: "boolean", default: false },
        from: { type: "string" },
        resource: { type: "string" },
        store: { type: "string" },
        timeout: { type: "string" },
        once: { type: "boolean", default: false },
      },
    });
    if (!["init", "export-key", "import-key", "list", "show", "request-key", "serve-key"].includes(cmd)) throw usage(`unknown archive command: ${printable(cmd)}`);
    const dir = resolve(values.dir ?? defaultArchiveDir(io.env));
    const account = resolveAccount(values.account, dir, io.env);
    const paths = archivePaths(dir, account);
    const c: Ctx = { io, values, dir, account, keyFile: paths.keyFile, cache: values.cache !== undefined ? resolve(values.cache) : paths.cache };
    switch (cmd) {
      case "init":
        return await cmdInit(c);
      case "export-key":
        return await cmdExport(c);
      case "import-key":
        return await cmdImport(c, positionals[0]);
      case "list":
        return await cmdList(c);
      case "request-key":
        return await cmdRequestKey(c);
      case "serve-key":
        return await cmdServeKey(c);
      default:
        return await cmdShow(c, positionals[0]);
    }
  } catch (e) {
    return report(e, io);
  }
}

// ---- archiving from `xmpp-e2e chat` ------------------------------------------------------

/**
 * What `chat` must add to its SecureClient policy so that a session can be archived: we
 * prefer 'may' and still accept 'mustnot' (XEP-0155 section 8; the responder's first
 * choice among the offered values wins, so both sides must prefer it for 'may').
 */
export const ARCHIVE_POLICY = { logging: ["may", "mustnot"] } as const;

export interface ArchiveForOptions {
  /** Where the key file and cache are (default {@link defaultArchiveDir}). */
  readonly dir?: string;
  /** The local cache (default DIR/ACCOUNT.archive.db). */
  readonly cache?: string;
  /** Also store on the server over this connection (XEP-0136 or XEP-0049, discovered). */
  readonly connection?: StanzaConnection;
  /** The server's domain (default: the account's). */
  readonly domain?: string;
  /** The passphrase of a sealed key (else XMPP_E2E_ARCHIVE_PASSPHRASE, else a prompt). */
  readonly passphrase?: string;
  /** One human-readable line per archive event worth telling the user. */
  readonly notice?: (line: string) => void;
  readonly io?: Partial<ArchiveCliIo>;
  readonly clock?: Clock;
}

export interface ChatArchive {
  readonly keyName: string;
  /** The server store in use, or undefined when archiving on this device only. */
  readonly server: "xep-0136" | "private" | undefined;
  readonly attachment: ArchiveAttachment;
  /** Waits for pending writes, detaches from the client, closes the cache. */
  close(): Promise<void>;
}

/**
 * Archives `client`'s sessions whose negotiated 'logging' is "may" into the local cache
 * and, with a connection, the server's store, under the archive key of `account` (which
 * must exist: ArchiveCliError "no-key" tells the user to run `archive init`). Sessions
 * with any other 'logging' leave nothing anywhere (src/archive/manager.ts).
 */
export async function archiveFor(client: SecureClient, account: string, opts: ArchiveForOptions = {}): Promise<ChatArchive> {
  const io: ArchiveCliIo = { ...defaultArchiveIo, ...opts.io };
  const acct = accountOpt(account);
  const dir = resolve(opts.dir ?? defaultArchiveDir(io.env));
  const paths = archivePaths(dir, acct);
  const { key, info } = await loadArchiveKey(paths.keyFile, acct, io, opts.passphrase);
  const say = opts.notice ?? ((l: string) => io.out(l));
  // After the client's other listeners of the same event: "encrypted session with X" first.
  const notice = (l: string): void => queueMicrotask(() => say(l));
  let cache: SqliteArchiveCache;
  try {
    cache = openSqliteArchiveCache(opts.cache ?? paths.cache);
  } catch (e) {
    wipe(key.key);
    throw e;
  }
  let iq: IqClient | undefined;
  let server: ChatArchive["server"];
  const stores: ArchiveStore[] = [cache];
  if (opts.connection) {
    iq = new IqClient(opts.connection, io.random);
    try {
      const remote = await discoverArchiveStore(iq, opts.domain ?? jidParts(acct).domain, { deviceId: info.device });
      if (remote) {
        stores.push(remote.store);
        server = remote.kind;
      } else notice("*** archive: the server offers no archive store; archiving on this device only");
    } catch (e) {
      notice(`*** archive: the server's store is unavailable (${e instanceof ArchiveError ? e.condition : "error"}); archiving on this device only`);
    }
  }
  const onEvent = (e: AttachmentEvent): void => {
    switch (e.type) {
      case "recording":
        notice(`*** archiving this session with ${printable(e.peer)} (both sides allow logging), encrypted under archive key ${info.name}`);
        break;
      case "off-the-record":
        notice(`*** off the record with ${printable(e.peer)} (logging: ${printable(e.logging)}): nothing of this session is archived`);
        break;
      case "store-failed":
        notice(`*** archive: could not save to ${e.store === 0 ? "the local cache" : "the server"} (${e.error.condition})`);
        break;
      case "store":
      case "not-archived":
        break;
    }
  };
  const attachment = attachArchive(client, {
    manager: new ArchiveManager({ key, random: io.random }),
    stores,
    ...(opts.clock ? { clock: opts.clock } : {}),
    onEvent,
  });
  let closed = false;
  return {
    keyName: info.name,
    server,
    attachment,
    async close() {
      if (closed) return;
      closed = true;
      attachment.detach();
      await attachment.flushed();
      iq?.close();
      cache.close();
      wipe(key.key);
    },
  };
}

const self = process.argv[1] ?? "";
if (self.endsWith("cli/archive.ts") || self.endsWith("cli/archive.js")) {
  run(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
