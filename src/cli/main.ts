/**
 * The `xmpp-e2e` command line: `demo` (Alice and Bob negotiate an ESession and talk, over
 * the in-memory switchboard or a real server), `chat` (an encrypted conversation with a
 * peer through a real XMPP server, with SAS confirmation), `vectors` (recompute an
 * ESession vectors file and report every match or mismatch).
 *
 * Spec: XEP-0217 v0.1 (negotiation, SAS: "Bob and Alice MAY confirm out-of-band that the
 * SAS their clients generate ... are the same"), XEP-0200 v0.2 (what is on the wire),
 * XEP-0116 section 12 (remind users who never confirmed a SAS).
 */
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import type { StanzaConnection } from "../adapters/connection.js";
import { Switchboard } from "../adapters/switchboard.js";
import { type ClientEvent, SecureClient } from "../client/secure-client.js";
import { parseFullJid, jidParts } from "../core/types.js";
import { nodeCrypto } from "../crypto/node.js";
import { toBase64 } from "../core/bytes.js";
import type { ProfileName } from "../esession/profile.js";
import { checkVectorFile, VectorFileError } from "../esession/vectors.js";
import { MemoryStore } from "../store/memory.js";
import { openSqliteStore } from "../store/sqlite.js";
import { keyVerifier, signingIdentity } from "../client/keys.js";
import { bareJid, parseJid } from "../core/types.js";
import type { PubkeyMethod } from "../esession/identity.js";
import type { NegotiatedOptions } from "../esession/session.js";
import { Keyring } from "../identity/keyring.js";
import { keyValueElement } from "../identity/keyvalue.js";
import { describeAlert, TrustManager } from "../trust/index.js";
import { buildPubKey, verifyPubKey } from "../pubkey/keys.js";
import { PubkeyService } from "../pubkey/service.js";
import { systemClock, systemRandom } from "../crypto/node.js";
import { el, type Element, normalize, NS, parseXml } from "../xml/index.js";

const USAGE = `usage: xmpp-e2e <command> [options]

commands:
  demo                 Alice and Bob negotiate an Encrypted Session and talk (zero setup)
      --server URL       use a real server instead (xmpp://host:port or ws://host:port/xmpp-websocket)
      --domain D         the server's XMPP domain (default: localhost)
      --alice U:P        Alice's account on that server (local part and password)
      --bob U:P          Bob's account on that server
      --profile P        spec (default) or gajim
      --quiet            print only the SAS lines and the summary
  chat                 encrypted chat through a real XMPP server
      --jid JID --password P   your account (or XMPP_E2E_PASSWORD in the environment)
      --to FULLJID             start a session with this peer (else wait for one)
      --service URL            default xmpp://<domain>:5222
      --store FILE             retained secrets and SAS state (default ./xmpp-e2e.db)
      --profile P              spec (default) or gajim
      --messages 3|4           4-message SIGMA-R (default) or 3-message SIGMA-I (needs keys)
      --auth M                 identify with our key: key, hash or none (default: key when
                               a key exists for --jid, see "keys create"; else none)
      --passphrase P           unlock a protected key (or XMPP_E2E_PASSPHRASE)
      --archive                keep an encrypted history of sessions in which both sides allow
                               logging (run "archive init" once first; see archive --help)
      --object                 RFC 3923 object encryption instead of a session
                               (with --cert, --key, --peer-cert: see object --help)
  vectors FILE         recompute an ESession vectors file (exit 1 on any mismatch)
      --profile P        gajim (default; every value) or spec (the shared values)
  keys ...             long-term signing keys: create, show, export, import (keys --help)
  trust ...            peers' keys: list, verify, petname, revoke (trust --help)
  archive ...          encrypted history: init, export-key, import-key, list, show (archive --help)
  object ...           RFC 3923 object encryption: keygen, sign, encrypt, decrypt, verify, chat
  xtls ...             XTLS (TLS over Jingle): chat over an end-to-end stream, send-file, receive-file
  tui ...              the interactive terminal client: contacts, presence, SAS, alerts, files (tui --help)
  web ...              build and serve the web client for a server's WebSocket endpoint (web --help)
`;

class UsageError extends Error {
  override readonly name = "UsageError";
}

function profileOpt(v: string | undefined, def: ProfileName): ProfileName {
  if (v === undefined) return def;
  if (v === "spec" || v === "gajim") return v;
  throw new UsageError(`--profile must be spec or gajim, not ${v}`);
}

function withNone(methods: PubkeyMethod[], messages: 3 | 4): PubkeyMethod[] {
  return messages === 4 ? [...methods, "none"] : methods;
}

function suiteLabel(o: NegotiatedOptions): string {
  const dh = o.group === "x25519" ? "X25519" : `MODP group ${o.group}`;
  return `${dh}, ${o.cipher}, ${o.hash}`;
}

function short(s: string, n = 160): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

async function demo(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      server: { type: "string" },
      domain: { type: "string", default: "localhost" },
      alice: { type: "string" },
      bob: { type: "string" },
      profile: { type: "string" },
      quiet: { type: "boolean", default: false },
    },
  });
  const profile = profileOpt(values.profile, "spec");
  const say = (s: string): void => {
    if (!values.quiet) console.log(s);
  };
  let aliceConn: StanzaConnection;
  let bobConn: StanzaConnection;
  const wire: string[] = [];
  if (values.server) {
    const { connectXmpp } = await import("../adapters/xmpp-client.js");
    const creds = (v: string | undefined, who: string): [string, string] => {
      const i = v?.indexOf(":") ?? -1;
      if (!v || i < 1) throw new UsageError(`--${who} USER:PASSWORD is required with --server`);
      return [v.slice(0, i), v.slice(i + 1)];
    };
    const [au, ap] = creds(values.alice, "alice");
    const [bu, bp] = creds(values.bob, "bob");
    const domain = values.domain ?? "localhost";
    say(`connecting to ${values.server} as ${au}@${domain} and ${bu}@${domain} ...`);
    aliceConn = await connectXmpp({ service: values.server, domain, username: au, password: ap, resource: "demo-a" });
    bobConn = await connectXmpp({ service: values.server, domain, username: bu, password: bp, resource: "demo-b" });
    // Show what the server delivered to Bob, before decryption.
    bobConn.onStanza((s) => {
      if (s.name === "message") wire.push(s.toString());
    });
  } else {
    const board = new Switchboard();
    board.tap((r) => wire.push(r.text));
    aliceConn = board.connect(parseFullJid("alice@example.org/pda"));
    bobConn = board.connect(parseFullJid("bob@example.com/laptop"));
  }
  const mk = (conn: StanzaConnection) => new SecureClient({ connection: conn, store: new MemoryStore(), profile });
  const alice = mk(aliceConn);
  const bob = mk(bobConn);
  const show = (who: string) => (e: ClientEvent) => {
    switch (e.type) {
      case "progress":
        say(`  [${who}] ${e.step}`);
        break;
      case "message":
        say(`  [${who} reads] ${e.body ?? "(no body)"}`);
        break;
      case "stanza":
        say(`  [${who} reads] <${e.stanza.name}> ${short(e.stanza.children.map(String).join(""), 100)}`);
        break;
      case "rekeyed":
        say(`  [${who}] re-keyed (${e.by === "us" ? "initiated" : "accepted"})`);
        break;
      case "terminated":
        say(`  [${who}] session terminated by ${e.by}${e.acknowledged ? " (acknowledged)" : ""}`);
        break;
      case "failed":
        console.error(`  [${who}] FAILED: ${e.error.message}`);
        break;
      case "alert":
      case "established":
      case "unprotected":
        break;
    }
  };
  alice.on(show("alice"));
  bob.on(show("bob"));
  say(`xmpp-e2e demo: ${alice.jid} and ${bob.jid} negotiate an Encrypted Session (XEP-0217, ${profile} profile)`);
  // Bob's SAS comes from Bob's own event: each side computes it independently.
  const bobEst = new Promise<string>((resolve) => {
    const off = bob.on((e) => {
      if (e.type === "established") {
        off();
        resolve(e.sas ?? "(none)");
      }
    });
  });
  const est = await alice.startSession(bob.jid);
  const bobSas = await bobEst;
  console.log(`alice SAS: ${est.sas ?? "(none)"}`);
  console.log(`bob SAS: ${bobSas}`);
  say(`  (${suiteLabel(est.options)}, stanzas ${est.options.stanzas.join("/")}, logging ${est.options.logging})`);
  const flushWire = (label: string): void => {
    for (const w of wire.splice(0)) {
      if (!w.includes(NS.c)) continue;
      const st = parseXml(w);
      const c = st.getChild("c", NS.c);
      say(`  [wire ${label}] <${st.name}> ${short(c ? normalize([c]) : w, 150)}`);
    }
  };
  wire.splice(0);
  const received = new Promise<void>((resolve) => {
    let n = 0;
    const off = bob.on((e) => {
      if (e.type === "message" && ++n === 2) {
        off();
        resolve();
      }
    });
  });
  await alice.sendMessage(bob.jid, "Hello Bob, this is encrypted end to end.");
  await alice.send(bob.jid, el("presence", {}, el("status", {}, "in a secure meeting")));
  if (alice.session(bob.jid)?.channel?.canRekey()) await alice.rekey(bob.jid);
  else say(`  (no re-key: the negotiated rekey_freq is ${est.options.rekeyFreq} stanzas)`);
  await alice.sendMessage(bob.jid, "And this one went under a fresh key.");
  await received;
  flushWire("alice→bob");
  const reply = new Promise<void>((resolve) => {
    const off = alice.on((e) => {
      if (e.type === "message") {
        off();
        resolve();
      }
    });
  });
  await bob.sendMessage(alice.jid, "Hi Alice! SAS matches here.");
  await reply;
  flushWire("bob→alice");
  await alice.terminate(bob.jid);
  await bob.settled();
  const leaked = wire.some((w) => w.includes("Hello Bob") || w.includes("secure meeting"));
  say(`done: ${leaked ? "PLAINTEXT LEAKED" : "no plaintext crossed the server"}`);
  await alice.close();
  await bob.close();
  await aliceConn.close();
  await bobConn.close();
  return leaked ? 1 : 0;
}

async function chat(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      jid: { type: "string" },
      password: { type: "string" },
      to: { type: "string" },
      service: { type: "string" },
      store: { type: "string", default: "xmpp-e2e.db" },
      profile: { type: "string" },
      messages: { type: "string" },
      auth: { type: "string" },
      passphrase: { type: "string" },
      archive: { type: "boolean", default: false },
    },
  });
  if (!values.jid) throw new UsageError("--jid is required");
  const messages = values.messages === undefined ? 4 : Number(values.messages);
  if (messages !== 3 && messages !== 4) throw new UsageError("--messages must be 3 or 4");
  if (values.auth !== undefined && !["key", "hash", "none"].includes(values.auth)) throw new UsageError("--auth must be key, hash or none");
  const password = values.password ?? process.env.XMPP_E2E_PASSWORD;
  if (!password) throw new UsageError("--password or XMPP_E2E_PASSWORD is required");
  const { local, domain, resource } = jidParts(values.jid);
  if (!local) throw new UsageError("--jid needs a local part (user@domain)");
  const { connectXmpp } = await import("../adapters/xmpp-client.js");
  const conn = await connectXmpp({
    service: values.service ?? `xmpp://${domain}:5222`,
    domain,
    username: local,
    password,
    ...(resource ? { resource } : {}),
  });
  const store = openSqliteStore(values.store ?? "xmpp-e2e.db");
  const account = bareJid(parseJid(values.jid));
  const ring = new Keyring({ store, crypto: nodeCrypto });
  const stored = await ring.current(account);
  const passphrase = values.passphrase ?? process.env.XMPP_E2E_PASSPHRASE;
  const identity = stored ? signingIdentity(ring.unlock(stored, passphrase)) : undefined;
  const auth = (values.auth ?? (identity ? "key" : "none")) as PubkeyMethod;
  if (auth !== "none" && !identity) throw new UsageError(`--auth ${auth} needs a key: run \`xmpp-e2e keys create --jid ${account}\` first`);
  if (messages === 3 && auth === "none") throw new UsageError("a 3-message negotiation needs --auth key or hash");
  const trust = new TrustManager({ store, crypto: nodeCrypto });
  // XEP-0189: publish our key so peers can fetch it, and fetch the peer's published keys
  // so that 'hash' identification works on first contact.
  const pubkeys = new PubkeyService({ connection: conn, random: systemRandom, clock: systemClock, timeoutMs: 5000 });
  if (stored) await pubkeys.publish(buildPubKey(nodeCrypto, stored.publicKey), { accessModel: "open" }).catch(() => undefined);
  const fetched: Element[] = [];
  if (values.to) {
    const items = await pubkeys.retrieve(bareJid(parseJid(values.to)), "pubkey").catch(() => []);
    for (const item of items) {
      if (item.payload instanceof Error || item.payload.type !== "pubkey") continue;
      try {
        fetched.push(keyValueElement(verifyPubKey(nodeCrypto, item.payload, { now: Date.now() }).spki));
      } catch {
        /* an invalid published key is simply not used */
      }
    }
  }
  const known = await store.listPeerKeys(account);
  const archiving = values.archive ? await import("./archive.js") : undefined;
  const client = new SecureClient({
    connection: conn,
    store,
    profile: profileOpt(values.profile, "spec"),
    trust,
    ...(identity ? { identity } : {}),
    verifier: keyVerifier({
      known: () => [...known.filter((k) => k.revokedAt === undefined).map((k) => keyValueElement(k.publicKey)), ...fetched],
    }),
    policy: {
      messages,
      // What we provide: our preferred method first, then the other key form (the responder
      // may not hold our key for 'hash'), then none where a 4-message negotiation allows it.
      offerPubkey: withNone(auth === "none" ? [] : auth === "hash" ? ["hash", "key"] : ["key", "hash"], messages),
      // What we accept from the peer: 'hash' first when we hold (or fetched) its key.
      acceptPubkey: withNone(fetched.length > 0 ? ["hash", "key"] : ["key", "hash"], messages),
      ...archiving?.ARCHIVE_POLICY,
    },
  });
  const archive = await archiving?.archiveFor(client, account, { connection: conn, domain });
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: Boolean(process.stdin.isTTY) });
  let peer = values.to;
  let pendingSas: string | undefined;
  console.log(`connected as ${conn.jid}. Type a message and press enter; /rekey, /sas, /quit.`);
  client.on((e) => {
    switch (e.type) {
      case "established":
        peer = e.peer;
        pendingSas = e.peer;
        console.log(`\n*** encrypted session with ${e.peer} (${suiteLabel(e.options)}, ${e.options.messages}-message, ${e.options.profile} profile)`);
        if (e.sas !== undefined) {
          console.log(`*** SAS: ${e.sas}   compare it with your peer, then type /yes if it matches or /no if not`);
          if (!e.retainedSecretMatched) console.log("*** no retained secret from an earlier session: compare the SAS now");
        }
        if (e.peerKey) console.log(`*** peer key fingerprint: ${toBase64(e.peerKey.fingerprint)}`);
        break;
      case "alert":
        if (e.alert === "sas-never-confirmed") console.log(`*** you never confirmed a SAS with ${e.peer}`);
        if (e.alert === "retained-secret-mismatch")
          console.log(`*** WARNING: ${e.peer} did not share the secret from your last session: compare the SAS now`);
        if (e.alert === "disclosure") console.log(`*** WARNING: ${e.peer} may disclose this session to a third party`);
        break;
      case "trust-alert":
        console.log(`*** WARNING: ${describeAlert(e.alert)}`);
        break;
      case "trust":
        console.log(`*** ${e.peer}'s key: ${e.verdict.trust}${e.verdict.fingerprint ? ` (${e.verdict.fingerprint})` : ""}`);
        break;
      case "message":
        console.log(`${e.peer}: ${e.body ?? "(no text)"}`);
        break;
      case "failed":
        console.log(`*** session error: ${e.error.message}`);
        break;
      case "terminated":
        console.log(`*** session ended by ${e.by}`);
        break;
      case "unprotected":
        if (e.stanza.name === "message" && e.stanza.getChildText("body"))
          console.log(`(unencrypted) ${e.peer}: ${e.stanza.getChildText("body") ?? ""}`);
        break;
      case "progress":
      case "rekeyed":
      case "stanza":
        break;
    }
  });
  if (peer) {
    console.log(`negotiating with ${peer} ...`);
    await client.startSession(peer).catch((e: Error) => console.log(`*** could not start a session: ${e.message}`));
  }
  for await (const line of rl) {
    const t = line.trim();
    if (!t) continue;
    try {
      if (t === "/quit") break;
      if (t === "/rekey" && peer) await client.rekey(peer);
      else if ((t === "/yes" || t === "/sas") && pendingSas) {
        await client.confirmSas(pendingSas);
        console.log("*** SAS confirmed and remembered");
        pendingSas = undefined;
      } else if (t === "/no" && peer) {
        console.log("*** SAS mismatch: ending the session (possible man-in-the-middle)");
        await client.terminate(peer);
      } else if (peer) await client.sendMessage(peer, t);
      else console.log("*** no peer yet: start with --to FULLJID or wait for one");
    } catch (e) {
      console.log(`*** not sent: ${(e as Error).message}`);
    }
  }
  rl.close();
  await archive?.close();
  await client.close();
  await conn.close();
  await store.close();
  return 0;
}

function vectors(argv: string[]): number {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { profile: { type: "string" } } });
  const file = positionals[0];
  if (!file) throw new UsageError("vectors needs a FILE");
  const profile = profileOpt(values.profile, "gajim");
  const checks = checkVectorFile(nodeCrypto, JSON.parse(readFileSync(file, "utf8")), profile === "spec" ? "spec" : "gajim");
  for (const c of checks) {
    const line = `${c.ok ? "match   " : "MISMATCH"} ${c.session} ${c.name}`;
    console.log(c.ok ? line : `${line}\n           expected ${c.expected}\n           actual   ${c.actual}`);
  }
  const bad = checks.filter((c) => !c.ok).length;
  console.log(`${checks.length - bad} passed, ${bad} failed`);
  return bad === 0 ? 0 : 1;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case "demo":
        return await demo(rest);
      case "chat":
        // `chat --object` sends RFC 3923 object-encrypted messages instead of an ESession.
        if (rest.includes("--object")) return await (await import("./object.js")).run(["chat", ...rest.filter((a) => a !== "--object")]);
        return await chat(rest);
      case "vectors":
        return vectors(rest);
      case "keys":
        return await (await import("./keys.js")).run(rest);
      case "trust":
        return await (await import("./trust.js")).run(rest);
      case "archive":
        return await (await import("./archive.js")).run(rest);
      case "object":
        return await (await import("./object.js")).run(rest);
      case "tui":
        return await (await import("./tui.js")).run(rest);
      case "xtls":
        return await (await import("./xtls.js")).run(rest);
      case "web":
        return await (await import("./web.js")).run(rest);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        console.log(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command ${cmd}`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`xmpp-e2e: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    if (e instanceof VectorFileError || e instanceof SyntaxError) {
      console.error(`xmpp-e2e: ${e.message}`);
      return 2;
    }
    console.error(`xmpp-e2e: ${(e as Error).message}`);
    return 1;
  }
}

const self = process.argv[1] ?? "";
if (self.endsWith("cli/main.ts") || self.endsWith("cli/main.js")) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
