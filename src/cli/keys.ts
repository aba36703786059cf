/**
 * `xmpp-e2e keys`: our long-term signing keys — create, show (fingerprints), export,
 * import.
 *
 * Spec: XEP-0116 v0.16 section 10.3 (rsa-sha256 MUST, dsa-sha256 SHOULD; ed25519 for the
 * modern suite; ecdsa-p256-sha256, RFC 6931, the S/MIME default key type), section 7.3
 * (users compare "the full SHA-256 fingerprint" out of band: `show` prints it), section 14 (private keys at rest: the store file is 0600, keys can be
 * sealed under a passphrase, exported files are written 0600). See
 * docs/identity-and-trust.md.
 *
 * Passphrases come from --passphrase or the XMPP_E2E_PASSPHRASE environment variable and
 * are never printed.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { bareJid, parseJid, type Jid } from "../core/types.js";
import { nodeCrypto } from "../crypto/node.js";
import { IdentityError } from "../identity/errors.js";
import { exportIdentityJson, exportPrivatePem, exportPublicPem, importIdentity, writePrivateFile } from "../identity/keyfile.js";
import { Keyring } from "../identity/keyring.js";
import { isSignAlg, SIGN_ALGS, type SignAlg } from "../identity/keys.js";
import { displayFingerprint, keyValueElement } from "../identity/keyvalue.js";
import { openSqliteStore } from "../store/sqlite.js";
import type { FullStore, StoredIdentity } from "../store/trust-types.js";
import { StoreError } from "../store/types.js";

export interface CliIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
}

export const defaultIo: CliIo = { out: (l) => console.log(l), err: (l) => console.error(l), env: process.env, now: () => Date.now() };

const USAGE = `usage: xmpp-e2e keys <command> --jid JID [--store FILE] [options]

commands:
  create             generate a signing key for JID
      --alg A            rsa-sha256 (default; XEP-0116 MUST), dsa-sha256, ed25519, ecdsa-p256-sha256
      --bits N           RSA modulus bits (default 3072, at least 2048)
      --protect          seal the private key under a passphrase (--passphrase or XMPP_E2E_PASSPHRASE)
  show               list JID's keys with their full fingerprints (compare these out of band)
  export             write a key
      --key REF          key id or fingerprint (prefix); default: the current key
      --format F         json (default; our key file), pem (PKCS#8), public (SPKI PEM), keyvalue (XML-DSig)
      --out FILE         write to FILE with mode 0600 (default: standard output)
      --encrypt          seal / encrypt the exported private key under the passphrase
  import FILE        add a key from our key file or a PEM private key
      --protect          seal it in the store under the passphrase

  --store FILE         the identity and trust store (default ./xmpp-e2e.db)
  --passphrase P       or XMPP_E2E_PASSPHRASE in the environment
`;

export class UsageError extends Error {
  override readonly name = "UsageError";
}

export function jidOpt(v: string | undefined): Jid {
  if (v === undefined) throw new UsageError("--jid JID is required");
  try {
    return bareJid(parseJid(v));
  } catch {
    throw new UsageError(`not a JID: ${v}`);
  }
}

function passphrase(values: { passphrase?: string | undefined }, io: CliIo): string | undefined {
  return values.passphrase ?? io.env["XMPP_E2E_PASSPHRASE"];
}

function needPassphrase(values: { passphrase?: string | undefined }, io: CliIo): string {
  const p = passphrase(values, io);
  if (p === undefined || p.length === 0) throw new UsageError("a passphrase is needed: --passphrase P or XMPP_E2E_PASSPHRASE");
  return p;
}

function describe(k: StoredIdentity): string[] {
  return [
    `key ${k.id}`,
    `  algorithm:   ${k.alg}`,
    `  fingerprint: ${displayFingerprint(k.fingerprint)}`,
    `               (SHA-256, Base64 ${k.fingerprint})`,
    `  created:     ${new Date(k.createdAt).toISOString()}`,
    `  protection:  ${k.protection === "passphrase" ? "sealed under a passphrase (scrypt + AES-256-GCM)" : "none (store file 0600)"}`,
    ...(k.revokedAt === undefined ? [] : [`  REVOKED:     ${new Date(k.revokedAt).toISOString()}`]),
  ];
}

/** Maps layer errors to a message and exit code 1 (2 for usage). */
export function reportError(e: unknown, io: CliIo, usage: string): number {
  if (e instanceof UsageError) {
    io.err(`${e.message}\n\n${usage}`);
    return 2;
  }
  if (e instanceof IdentityError || e instanceof StoreError) {
    io.err(`error: ${e.message}`);
    return 1;
  }
  if (e instanceof Error && "code" in e && typeof e.code === "string" && e.code.startsWith("ERR_PARSE_ARGS")) {
    io.err(`${e.message}\n\n${usage}`);
    return 2;
  }
  throw e;
}

async function withStore<T>(file: string, f: (s: FullStore) => Promise<T>): Promise<T> {
  const s = openSqliteStore(file);
  try {
    return await f(s);
  } finally {
    await s.close();
  }
}

async function pick(ring: Keyring, account: Jid, ref: string | undefined): Promise<StoredIdentity> {
  const k = ref === undefined ? await ring.current(account) : await ring.find(account, ref);
  if (k === undefined) throw new UsageError(ref === undefined ? `no key for ${account}; run: xmpp-e2e keys create --jid ${account}` : `no key ${ref} for ${account}`);
  return k;
}

export async function run(argv: string[], io: CliIo = defaultIo): Promise<number> {
  try {
    const [cmd, ...rest] = argv;
    if (cmd === undefined || cmd === "help" || cmd === "--help") {
      io.out(USAGE);
      return cmd === undefined ? 2 : 0;
    }
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        jid: { type: "string" },
        store: { type: "string", default: "xmpp-e2e.db" },
        passphrase: { type: "string" },
        alg: { type: "string", default: "rsa-sha256" },
        bits: { type: "string" },
        protect: { type: "boolean", default: false },
        key: { type: "string" },
        format: { type: "string", default: "json" },
        out: { type: "string" },
        encrypt: { type: "boolean", default: false },
      },
    });
    const account = jidOpt(values.jid);
    const storeFile = values.store ?? "xmpp-e2e.db";
    return await withStore(storeFile, async (store) => {
      const ring = new Keyring({ store, crypto: nodeCrypto });
      switch (cmd) {
        case "create": {
          const alg = values.alg ?? "rsa-sha256";
          if (!isSignAlg(alg)) throw new UsageError(`--alg must be one of ${SIGN_ALGS.join(", ")}, not ${alg}`);
          const bits = values.bits === undefined ? undefined : Number(values.bits);
          if (bits !== undefined && !Number.isInteger(bits)) throw new UsageError("--bits must be an integer");
          const pass = values.protect ? needPassphrase(values, io) : undefined;
          const k = await ring.create(account, alg as SignAlg, io.now(), {
            ...(bits === undefined ? {} : { rsaBits: bits }),
            ...(pass === undefined ? {} : { passphrase: pass }),
          });
          for (const l of describe(k)) io.out(l);
          return 0;
        }
        case "show": {
          const all = await ring.list(account);
          if (all.length === 0) io.out(`no keys for ${account}`);
          for (const k of all) for (const l of describe(k)) io.out(l);
          return 0;
        }
        case "export": {
          const stored = await pick(ring, account, values.key);
          const format = values.format ?? "json";
          let text: string;
          let secret = true;
          if (format === "public" || format === "keyvalue") {
            secret = false;
            text = format === "public" ? exportPublicPem(stored.publicKey) : `${keyValueElement(stored.publicKey).toString()}\n`;
          } else {
            const key = ring.unlock(stored, stored.protection === "passphrase" ? needPassphrase(values, io) : undefined);
            const pass = values.encrypt ? needPassphrase(values, io) : undefined;
            if (format === "json") text = exportIdentityJson(key, pass === undefined ? {} : { passphrase: pass });
            else if (format === "pem") text = exportPrivatePem(key, pass === undefined ? {} : { passphrase: pass });
            else throw new UsageError(`--format must be json, pem, public or keyvalue, not ${format}`);
          }
          if (values.out !== undefined) {
            writePrivateFile(values.out, text);
            io.err(`wrote ${secret ? "private" : "public"} key ${stored.fingerprint} to ${values.out} (mode 0600)`);
          } else io.out(text.trimEnd());
          return 0;
        }
        case "import": {
          const file = positionals[0];
          if (file === undefined) throw new UsageError("import needs a FILE");
          let text: string;
          try {
            text = readFileSync(file, "utf8");
          } catch (e) {
            throw new IdentityError("io", `read ${file} failed`, e instanceof Error && "code" in e && typeof e.code === "string" ? e.code : undefined);
          }
          const pass = passphrase(values, io);
          const key = importIdentity(text, { now: io.now(), ...(pass === undefined ? {} : { passphrase: pass }) });
          const k = await ring.add(account, key, values.protect ? { passphrase: needPassphrase(values, io) } : {});
          for (const l of describe(k)) io.out(l);
          return 0;
        }
        default:
          throw new UsageError(`unknown keys command: ${cmd}`);
      }
    });
  } catch (e) {
    return reportError(e, io, USAGE);
  }
}
