/**
 * The terminal client's account file: a small JSON file, mode 0600 in a 0700 directory,
 * refused when group or others can read it (as ssh refuses a private key). It never holds
 * the password: that comes from a prompt or the environment (XMPP_E2E_PASSWORD).
 *
 * Spec: RFC 6120 section 13.8 (credentials are secrets); XEP-0116 v0.16 section 12
 * (retained secrets and keys in the store next to it, 0600, src/store/sqlite.ts).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { bareJid, jidParts, parseJid } from "../core/types.js";
import { TuiError } from "./app.js";

export interface TuiConfig {
  readonly jid: string;
  /** xmpp://host:port or ws[s]://host:port/path; default xmpp://<domain>:5222. */
  readonly service?: string;
  /** Resource to request; default "tui". */
  readonly resource?: string;
  /** The SQLite store (keys, trust, retained secrets); default next to the config file. */
  readonly store?: string;
  /** Where received files go; default <config dir>/downloads. */
  readonly downloads?: string;
  readonly profile?: "spec" | "gajim";
  /** Identify with our key ("key", default: a key is created on first use) or SAS only ("none"). */
  readonly auth?: "key" | "none";
}

export interface ResolvedConfig extends Required<Omit<TuiConfig, "profile">> {
  readonly profile: "spec" | "gajim";
  readonly path: string;
  /** The XTLS device certificate and key (PEM, 0600). */
  readonly xtlsIdentity: string;
  /** Pinned XTLS certificates (JSON, 0600). */
  readonly xtlsPins: string;
  /** The S/MIME certificate and key for object encryption, RFC 3923 (PEM, 0600). */
  readonly smimeIdentity: string;
  /** Peers' S/MIME certificates (JSON, 0600). */
  readonly smimeCertificates: string;
  /** Trust decisions about peers' certificate keys (SQLite, 0600): apart from the ESession keys of the same JIDs. */
  readonly smimeTrust: string;
  /** Ids of received objects (replay detection, RFC 3923 section 6.9; SQLite, 0600). */
  readonly smimeReplay: string;
}

export function defaultConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.XMPP_E2E_CONFIG) return resolve(env.XMPP_E2E_CONFIG);
  const base = env.XDG_CONFIG_HOME ? resolve(env.XDG_CONFIG_HOME) : join(homedir(), ".config");
  return join(base, "xmpp-e2e", "config.json");
}

const KEYS = new Set(["jid", "service", "resource", "store", "downloads", "profile", "auth"]);

/** Validates a parsed config object; throws TuiError("bad-config") naming the field. */
export function validateConfig(v: unknown): TuiConfig {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new TuiError("bad-config", "the config file must hold a JSON object");
  const o = v as Record<string, unknown>;
  if ("password" in o) throw new TuiError("bad-config", "remove \"password\" from the config file: it is asked for, or read from XMPP_E2E_PASSWORD");
  for (const k of Object.keys(o)) if (!KEYS.has(k)) throw new TuiError("bad-config", `unknown config field "${k}"`);
  const str = (k: string): string | undefined => {
    const x = o[k];
    if (x === undefined) return undefined;
    if (typeof x !== "string" || x === "") throw new TuiError("bad-config", `"${k}" must be a non-empty string`);
    return x;
  };
  const jid = str("jid");
  if (!jid) throw new TuiError("bad-config", "\"jid\" is required (user@domain)");
  try {
    if (jidParts(parseJid(jid)).local === undefined) throw new Error();
  } catch {
    throw new TuiError("bad-config", "\"jid\" must be user@domain");
  }
  const profile = str("profile");
  if (profile !== undefined && profile !== "spec" && profile !== "gajim") throw new TuiError("bad-config", "\"profile\" must be spec or gajim");
  const auth = str("auth");
  if (auth !== undefined && auth !== "key" && auth !== "none") throw new TuiError("bad-config", "\"auth\" must be key or none");
  const service = str("service");
  if (service !== undefined && !/^(xmpp|wss?):\/\//.test(service)) throw new TuiError("bad-config", "\"service\" must be xmpp://host:port or ws[s]://host:port/path");
  const resource = str("resource");
  const store = str("store");
  const downloads = str("downloads");
  return {
    jid,
    ...(service ? { service } : {}),
    ...(resource ? { resource } : {}),
    ...(store ? { store } : {}),
    ...(downloads ? { downloads } : {}),
    ...(profile ? { profile } : {}),
    ...(auth ? { auth } : {}),
  };
}

/** Reads and validates the config; refuses a file group or others can access. */
export function readConfig(path: string): ResolvedConfig {
  if (!existsSync(path)) throw new TuiError("not-found", `no config file at ${path}; create one with: xmpp-e2e tui --init --jid you@example.org`);
  const st = statSync(path);
  if (process.platform !== "win32" && (st.mode & 0o077) !== 0)
    throw new TuiError("insecure-permissions", `${path} is readable by others (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${path}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    throw new TuiError("bad-config", `${path} is not valid JSON`);
  }
  return resolveConfig(path, validateConfig(parsed));
}

export function resolveConfig(path: string, c: TuiConfig): ResolvedConfig {
  const dir = dirname(resolve(path));
  const bare = bareJid(parseJid(c.jid));
  const { domain } = jidParts(bare);
  const rel = (p: string): string => resolve(dir, p.replace(/^~(?=\/|$)/, homedir()));
  return {
    jid: bare,
    service: c.service ?? `xmpp://${domain}:5222`,
    resource: c.resource ?? "tui",
    store: rel(c.store ?? `${bare}.db`),
    downloads: rel(c.downloads ?? "downloads"),
    profile: c.profile ?? "spec",
    auth: c.auth ?? "key",
    path: resolve(path),
    xtlsIdentity: join(dir, `${bare}.xtls.pem`),
    xtlsPins: join(dir, `${bare}.xtls-pins.json`),
    smimeIdentity: join(dir, `${bare}.smime.pem`),
    smimeCertificates: join(dir, `${bare}.smime-certs.json`),
    smimeTrust: join(dir, `${bare}.smime-trust.db`),
    smimeReplay: join(dir, `${bare}.smime-replay.db`),
  };
}

/** Writes the config atomically with mode 0600 (directory 0700). */
export function writeConfig(path: string, c: TuiConfig): void {
  validateConfig(c);
  const dir = dirname(resolve(path));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(c, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}
