/**
 * `xmpp-e2e tui`: the interactive terminal client. Reads the account file, asks for the
 * password (or takes XMPP_E2E_PASSWORD), logs in, creates the user's identity key and XTLS
 * device certificate on first use, and runs the full-screen view (or line mode when the
 * terminal cannot address the cursor or stdin is not a terminal).
 *
 * Spec: RFC 6120 (login through src/adapters/xmpp-client.ts), XEP-0116 v0.16 sections 4
 * and 12 (identity key, store), draft-meyer-xmpp-e2e-encryption-02 (XTLS identity and
 * pins), and the client behaviour documented in ./app.ts.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from "node:fs";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { keyVerifier, signingIdentity } from "../client/keys.js";
import { bareJid, jidParts, parseJid } from "../core/types.js";
import { nodeCrypto, systemClock, systemRandom } from "../crypto/node.js";
import type { PubkeyMethod } from "../esession/identity.js";
import { Keyring } from "../identity/keyring.js";
import { keyValueElement } from "../identity/keyvalue.js";
import { openSqliteReplayCache } from "../store/replay-sqlite.js";
import { openSqliteStore } from "../store/sqlite.js";
import { TrustManager } from "../trust/index.js";
import { generateIdentity, loadIdentity, type XtlsIdentity } from "../xtls/cert.js";
import { XtlsClient } from "../xtls/client.js";
import { FileTrustStore } from "../xtls/trust.js";
import { TuiApp, TuiError } from "./app.js";
import { defaultConfigPath, readConfig, type TuiConfig, writeConfig } from "./config.js";
import { loadOrCreateSmimeIdentity, ObjectMessaging } from "./objects.js";
import { promptHidden, runFullScreen, runLineMode } from "./terminal.js";

export { TuiApp, TuiError } from "./app.js";
export type { TuiAppOptions } from "./app.js";
export { Model, bestResource } from "./model.js";
export type { Alert, Contact, Conversation, Line, Protection, Verification } from "./model.js";
export { render, paint, protectionText } from "./screen.js";
export { COMMANDS, helpLines } from "./commands.js";
export { ObjectMessaging, loadOrCreateSmimeIdentity } from "./objects.js";
export type { ObjectChannel, ObjectChannelEvent, ObjectMessagingOptions } from "./objects.js";
export { readConfig, writeConfig, defaultConfigPath, validateConfig } from "./config.js";
export type { TuiConfig, ResolvedConfig } from "./config.js";

export const TUI_USAGE = `usage: xmpp-e2e tui [--config FILE] [--plain] [--no-color]
       xmpp-e2e tui --init --jid you@example.org [--service URL] [--config FILE]

The interactive terminal client. The account lives in a config file (default
$XMPP_E2E_CONFIG or ~/.config/xmpp-e2e/config.json, mode 0600); the password is asked
for, or read from XMPP_E2E_PASSWORD. Type /help inside for the commands.

  --init             write the config file (then log in)
  --jid JID          your account (with --init)
  --service URL      xmpp://host:port or ws://host:port/xmpp-websocket (with --init)
  --auth key|none    identify with your own key (default, created on first use) or by SAS only
  --plain            line mode: no cursor addressing (also when stdin is not a terminal)
  --no-color         no colours (also when NO_COLOR is set)
`;

export interface TuiIo {
  readonly input: NodeJS.ReadStream;
  readonly output: NodeJS.WriteStream;
  readonly env: NodeJS.ProcessEnv;
}

function pemBlocks(pem: string): { cert: string; key: string } | undefined {
  const cert = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/.exec(pem)?.[0];
  const key = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n?/.exec(pem)?.[0];
  return cert && key ? { cert, key } : undefined;
}

/** The XTLS device certificate, created once and kept (0600) so peers' pins stay valid. */
async function xtlsIdentity(path: string, bare: string): Promise<XtlsIdentity> {
  if (existsSync(path)) {
    const b = pemBlocks(readFileSync(path, "utf8"));
    if (b) return loadIdentity(b.cert, b.key);
  }
  const id = await generateIdentity(bare);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, id.certPem + id.keyPem, { mode: 0o600 });
  chmodSync(path, 0o600);
  return id;
}

/** Runs the terminal client; resolves with the exit code. */
export async function runTui(argv: string[], io: TuiIo = { input: process.stdin, output: process.stdout, env: process.env }): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: "string" },
      init: { type: "boolean", default: false },
      jid: { type: "string" },
      service: { type: "string" },
      auth: { type: "string" },
      plain: { type: "boolean", default: false },
      "no-color": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const say = (s: string): boolean => io.output.write(`${s}\n`);
  if (values.help) {
    say(TUI_USAGE);
    return 0;
  }
  const path = values.config ?? defaultConfigPath(io.env);
  if (values.init) {
    if (!values.jid) throw new TuiError("usage", "--init needs --jid you@example.org");
    if (values.auth !== undefined && values.auth !== "key" && values.auth !== "none") throw new TuiError("usage", "--auth must be key or none");
    const c: TuiConfig = {
      jid: values.jid,
      ...(values.service ? { service: values.service } : {}),
      ...(values.auth === "key" || values.auth === "none" ? { auth: values.auth } : {}),
    };
    writeConfig(path, c);
    say(`wrote ${path} (mode 0600)`);
  }
  const cfg = readConfig(path);
  const account = bareJid(parseJid(cfg.jid));
  const { local, domain } = jidParts(account);
  const password = io.env.XMPP_E2E_PASSWORD ?? (await promptHidden(`Password for ${account}: `, io.input, io.output));
  if (!password) throw new TuiError("usage", "no password given");
  say(`connecting to ${cfg.service} as ${account} ...`);
  const { connectXmpp } = await import("../adapters/xmpp-client.js");
  const conn = await connectXmpp({ service: cfg.service, domain, username: local ?? "", password, resource: cfg.resource, presence: false });
  mkdirSync(dirname(cfg.store), { recursive: true, mode: 0o700 });
  const store = openSqliteStore(cfg.store);
  try {
    const ring = new Keyring({ store, crypto: nodeCrypto });
    let stored = cfg.auth === "key" ? await ring.current(account) : undefined;
    let created = false;
    if (cfg.auth === "key" && !stored) {
      stored = await ring.create(account, "ed25519", Date.now());
      created = true;
    }
    const key = stored ? ring.unlock(stored, io.env.XMPP_E2E_PASSPHRASE) : undefined;
    const identity = key ? signingIdentity(key) : undefined;
    const trust = new TrustManager({ store, crypto: nodeCrypto });
    const known = await store.listPeerKeys(account);
    const offer: PubkeyMethod[] = identity ? ["key", "none"] : ["none"];
    const xtlsId = await xtlsIdentity(cfg.xtlsIdentity, account);
    // RFC 3923 object encryption: an S/MIME certificate created once, its own trust database.
    const objects = new ObjectMessaging({
      connection: conn,
      identity: await loadOrCreateSmimeIdentity(cfg.smimeIdentity, account, { clock: systemClock, random: systemRandom }),
      trustStore: openSqliteStore(cfg.smimeTrust),
      certificatesPath: cfg.smimeCertificates,
      replay: openSqliteReplayCache(cfg.smimeReplay),
      crypto: nodeCrypto,
      clock: systemClock,
      random: systemRandom,
    });
    let app: TuiApp | undefined;
    const xtls = new XtlsClient({
      connection: conn,
      identity: xtlsId,
      trust: new FileTrustStore(cfg.xtlsPins),
      leapOfFaith: (peer, fp) => app?.leapOfFaith(peer, fp) ?? false,
      acceptSession: (o) => app?.acceptTunnel(o) ?? false,
    });
    app = new TuiApp({
      connection: conn,
      store,
      trust,
      xtls,
      objects,
      downloads: cfg.downloads,
      client: {
        profile: cfg.profile,
        ...(identity ? { identity } : {}),
        verifier: keyVerifier({ known: () => known.filter((k) => k.revokedAt === undefined).map((k) => keyValueElement(k.publicKey)) }),
        policy: { offerPubkey: offer, acceptPubkey: ["key", "hash", "none"] },
      },
    });
    if (key) app.model.ownFingerprint = trust.fingerprint(key.publicKey);
    if (created) app.model.say(undefined, "info", `created your identity key (Ed25519) ${app.model.ownFingerprint ?? ""}`);
    await app.start();
    const color = !values["no-color"] && io.env.NO_COLOR === undefined;
    const fullScreen = !values.plain && io.input.isTTY === true && io.output.isTTY === true && io.env.TERM !== "dumb";
    await (fullScreen ? runFullScreen : runLineMode)(app, { input: io.input, output: io.output, color });
    await app.close();
    return 0;
  } finally {
    await conn.close().catch(() => undefined);
    await store.close();
  }
}
