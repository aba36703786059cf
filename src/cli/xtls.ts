/**
 * `xmpp-e2e xtls ...`: XTLS end-to-end encryption through a real XMPP server.
 *
 *   xtls chat         --jid JID [--to FULLJID] ...   end-to-end XML stream chat
 *   xtls send-file    --jid JID --to FULLJID FILE    encrypted file transfer
 *   xtls receive-file --jid JID [--out DIR]          accept one file offer
 *
 * Spec: draft-meyer-xmpp-e2e-encryption-02: section 7 (we look the peer's
 * 'urn:xmpp:jingle:security:xtls:1' up in its XEP-0115 caps, with disco#info on a cache
 * miss, before initiating; we announce it in our caps and answer disco#info with it; a
 * missing feature is shown as the section 8.3 downgrade warning and nothing is sent;
 * --transport s5b uses XEP-0260 SOCKS5 bytestreams with a direct candidate),
 * section 5 (leap of faith only with --leap-of-faith; otherwise the peer's certificate
 * must be pinned in the trust file, or a password given for TLS-SRP with --srp, which
 * is asked for without echo), section 4 (chat is an end-to-end XML stream: /quit closes
 * the stream, then the Jingle session). XEP-0234 v0.19.1 for send-file/receive-file.
 *
 * State lives in --dir (default ./.xmpp-e2e-xtls): cert.pem + key.pem (0600, generated on
 * first use, per device) and pins.json. Exit codes: 0 success, 1 failure, 2 usage.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { connectXmpp } from "../adapters/xmpp-client.js";
import type { StanzaConnection } from "../adapters/connection.js";
import { bareJid, jidParts, parseFullJid, parseJid, type FullJid } from "../core/types.js";
import { el, elements } from "../xml/index.js";
import { openE2eStream } from "../streams/index.js";
import { srpTlsOverDuplex } from "../tls-srp/index.js";
import { nodeCrypto } from "../crypto/node.js";
import {
  FileTrustStore,
  XtlsClient,
  XtlsDiscovery,
  XtlsError,
  fetchAndPinPeerCertificate,
  servePubkeys,
  generateIdentity,
  loadIdentity,
  receiveFile,
  sendFile,
  serveDisco,
  xtlsDiscoResponder,
  type XtlsIdentity,
  type XtlsTunnel,
} from "../xtls/index.js";

const USAGE = `usage: xmpp-e2e xtls <chat|send-file|receive-file> [options]
  chat          --jid JID [--to FULLJID]          chat over an end-to-end XML stream (/quit ends)
  send-file     --jid JID --to FULLJID FILE       send FILE encrypted (XEP-0234 over XTLS)
  receive-file  --jid JID [--out DIR]             accept one file offer into DIR (default .)
common options:
  --password P         account password (or XMPP_E2E_PASSWORD)
  --service URL        xmpp://host:port or ws://host:port/xmpp-websocket (default xmpp://<domain>:5222)
  --dir DIR            device certificate and pinned peers (default ./.xmpp-e2e-xtls)
  --from JID           only accept sessions from this JID (responder)
  --leap-of-faith      trust an unknown peer certificate on first use and pin it
  --srp                ask for a password shared with the peer, for TLS-SRP
  --block-size N       in-band bytestream block size (default 4096)
  --transport T        ibb (default) or s5b (SOCKS5 direct candidate, XEP-0260)
  --s5b-host ADDR      address our SOCKS5 candidate listens on (default 127.0.0.1)
  --skip-disco         do not look up XTLS support (caps, disco#info) first
`;

class UsageError extends Error {}

export interface XtlsCliIo {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
  /** Reads a secret without echo (TTY) or a line (pipe). */
  readonly secret: (prompt: string) => Promise<string>;
  readonly lines: () => AsyncIterable<string>;
}

const defaultIo: XtlsCliIo = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  secret: promptHidden,
  lines: () => createInterface({ input: process.stdin, terminal: false }),
};

/** Prompts on stderr; with a TTY, characters are not echoed. */
function promptHidden(prompt: string): Promise<string> {
  const env = process.env.XTLS_SRP_PASSWORD;
  if (env !== undefined) return Promise.resolve(env);
  process.stderr.write(prompt);
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    return new Promise((resolve) => {
      const rl = createInterface({ input: stdin, terminal: false });
      rl.once("line", (l) => {
        rl.close();
        resolve(l);
      });
    });
  }
  return new Promise((resolve) => {
    let s = "";
    stdin.setRawMode(true);
    stdin.resume();
    const onData = (d: Buffer): void => {
      for (const ch of d.toString("utf8")) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") {
          stdin.setRawMode(false);
          stdin.pause();
          stdin.removeListener("data", onData);
          process.stderr.write("\n");
          resolve(s);
          return;
        }
        if (ch === "\u0003") process.exit(130);
        if (ch === "\u007f") s = s.slice(0, -1);
        else s += ch;
      }
    };
    stdin.on("data", onData);
  });
}

async function deviceIdentity(dir: string, jid: string): Promise<XtlsIdentity> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  if (existsSync(cert) && existsSync(key)) return loadIdentity(readFileSync(cert, "utf8"), readFileSync(key, "utf8"));
  const id = await generateIdentity(jid);
  writeFileSync(key, id.keyPem, { mode: 0o600 });
  writeFileSync(cert, id.certPem, { mode: 0o644 });
  return id;
}

function describe(t: XtlsTunnel): string {
  const fp = t.peerFingerprint === undefined ? "" : `, peer certificate ${t.peerFingerprint.algo} ${t.peerFingerprint.value}`;
  const lof = t.leapOfFaith ? " (not verified: trusted on first use and pinned now)" : "";
  return `secured with ${t.method}${t.protocol === undefined ? "" : ` over ${t.protocol}`}${fp}${lof}`;
}

export async function run(argv: string[], io: XtlsCliIo = defaultIo): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "--help" || cmd === "-h" || !["chat", "send-file", "receive-file"].includes(cmd)) {
    io.err(USAGE);
    return cmd === "--help" || cmd === "-h" ? 0 : 2;
  }
  let conn: StanzaConnection | undefined;
  let client: XtlsClient | undefined;
  try {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        jid: { type: "string" },
        to: { type: "string" },
        from: { type: "string" },
        out: { type: "string" },
        password: { type: "string" },
        service: { type: "string" },
        dir: { type: "string" },
        "leap-of-faith": { type: "boolean" },
        srp: { type: "boolean" },
        "block-size": { type: "string" },
        transport: { type: "string" },
        "s5b-host": { type: "string" },
        "skip-disco": { type: "boolean" },
      },
    });
    if (values.jid === undefined) throw new UsageError("--jid is required");
    const jid = parseJid(values.jid);
    const parts = jidParts(jid);
    if (parts.local === undefined) throw new UsageError("--jid needs a local part");
    const password = values.password ?? process.env.XMPP_E2E_PASSWORD;
    if (password === undefined) throw new UsageError("--password or XMPP_E2E_PASSWORD is required");
    const to = values.to === undefined ? undefined : parseFullJid(values.to);
    if ((cmd === "send-file" || (cmd === "chat" && values.to !== undefined)) && to === undefined) throw new UsageError("--to needs a full JID");
    if (cmd === "send-file" && positionals[0] === undefined) throw new UsageError("send-file needs a FILE");
    if (cmd === "send-file" && to === undefined) throw new UsageError("send-file needs --to");
    const blockSize = values["block-size"] === undefined ? 4096 : Number(values["block-size"]);
    if (!Number.isInteger(blockSize) || blockSize < 1 || blockSize > 65535) throw new UsageError("--block-size must be 1..65535");
    const transport = values.transport ?? "ibb";
    if (transport !== "ibb" && transport !== "s5b") throw new UsageError("--transport must be ibb or s5b");
    const dir = values.dir ?? ".xmpp-e2e-xtls";
    const identity = await deviceIdentity(dir, bareJid(jid));
    const trust = new FileTrustStore(join(dir, "pins.json"));
    conn = await connectXmpp({
      service: values.service ?? `xmpp://${parts.domain}:5222`,
      domain: parts.domain,
      username: parts.local,
      password,
      ...(parts.resource === undefined ? {} : { resource: parts.resource }),
    });
    io.err(`connected as ${conn.jid}; device certificate sha-256 ${identity.fingerprint.value}\n`);
    // Draft section 7 / XEP-0115: answer disco#info (plain and node#ver) and announce our
    // caps, so peers learn of XTLS from their caps cache.
    const responder = xtlsDiscoResponder({ jid: conn.jid, crypto: nodeCrypto });
    serveDisco(conn, responder);
    await conn.send(el("presence", {}, responder.caps()));
    const discovery = values["skip-disco"] === true ? undefined : new XtlsDiscovery({ connection: conn, crypto: nodeCrypto });
    const fromFilter = values.from;
    let srpPassword: string | undefined;
    client = new XtlsClient({
      connection: conn,
      identity,
      trust,
      blockSize,
      ...(values["s5b-host"] === undefined ? {} : { s5bHost: values["s5b-host"] }),
      // Caps first, disco#info on a miss; a peer without the feature is refused before
      // anything is sent (the section 8.3 downgrade warning is printed), never run in clear.
      ...(discovery === undefined ? {} : { discovery }),
      requireXtls: true,
      leapOfFaith: (peer, fp) => {
        if (values["leap-of-faith"] !== true) return false;
        io.err(`warning: trusting ${peer}'s unverified certificate ${fp.algo} ${fp.value} on first use\n`);
        return true;
      },
      ...(values.srp === true
        ? {
            // RFC 5054 TLS-SRP over TLS 1.2 (src/tls-srp), proven against GnuTLS.
            srp: srpTlsOverDuplex,
            password: async (peer: FullJid) => {
              srpPassword ??= await io.secret(`password shared with ${peer} (TLS-SRP): `);
              return srpPassword;
            },
          }
        : {}),
      acceptSession: ({ peer, description }) => {
        const ok = fromFilter === undefined || peer === fromFilter || bareJid(peer) === fromFilter;
        const wanted = cmd === "receive-file" ? description.kind === "file" : description.kind === "xmlstream";
        return ok && wanted;
      },
    });
    const c = client;
    const self = conn.jid;

    c.onNotice((n) => {
      if (n.type === "downgrade-warning") io.err(`${n.peer}: ${n.warning}\n`);
      else io.err(`${n.peer}: ${n.why}; falling back to in-band bytestreams (still encrypted)\n`);
    });

    const incoming = (): Promise<XtlsTunnel> =>
      new Promise((resolve, reject) =>
        c.on((e) => {
          if (e.type === "tunnel") resolve(e.tunnel);
          else if (e.type === "failed") io.err(`incoming session from ${e.peer} failed: ${e.error.condition}\n`);
          void reject;
        }),
      );

    if (cmd === "send-file") {
      const path = positionals[0] as string;
      let last = -1;
      const r = await sendFile(c, to as FullJid, path, {
        transport,
        onProgress: (n, total) => {
          const pct = total === 0 ? 100 : Math.floor((n * 100) / total);
          if (pct !== last) io.err(`\rsent ${n}/${total} bytes (${pct}%)`);
          last = pct;
        },
      });
      io.err("\n");
      io.out(`sent ${r.bytes} bytes, sha-256 ${r.sha256}, ${describe(r.tunnel)}\n`);
      return 0;
    }

    if (cmd === "receive-file") {
      io.err("waiting for a file offer...\n");
      const t = await incoming();
      if (t.description.kind !== "file") throw new XtlsError("unsupported", "not a file offer");
      const outDir = values.out ?? ".";
      const target = join(outDir, t.description.file.name);
      if (existsSync(target)) throw new UsageError(`${target} exists; not overwriting`);
      io.err(`receiving ${t.description.file.name} (${t.description.file.size} bytes) from ${t.peer}, ${describe(t)}\n`);
      const r = await receiveFile(t, target, { onProgress: (n, total) => io.err(`\rreceived ${n}/${total} bytes`) });
      io.err("\n");
      io.out(`received ${target}: ${r.bytes} bytes, sha-256 ${r.sha256} (verified)\n`);
      return 0;
    }

    // chat
    let tunnel: XtlsTunnel;
    if (to !== undefined) tunnel = await c.connect(to, { transport });
    else {
      io.err("waiting for an XTLS chat session...\n");
      tunnel = await incoming();
    }
    io.err(`${tunnel.peer}: ${describe(tunnel)}\n`);
    const stream = await openE2eStream(tunnel, self);
    // Draft section 5.1: after an SRP session both sides exchange certificates over the
    // encrypted stream and pin them, so the next session is plain pinned x509.
    servePubkeys(stream, identity);
    if (tunnel.method === "srp") {
      const fp = await fetchAndPinPeerCertificate(stream, trust);
      io.err(`pinned ${bareJid(tunnel.peer)}'s certificate ${fp.algo} ${fp.value}; later sessions use x509 without the password\n`);
    }
    io.err("end-to-end stream open; type messages, /quit to leave\n");
    stream.onStanza((s) => {
      if (s.name === "message") {
        const body = elements(s).find((b) => b.name === "body")?.getText();
        if (body !== undefined) io.out(`${tunnel.peer}: ${body}\n`);
      }
    });
    const ended = tunnel.ended.then((e) => {
      io.err(`session ended (${e.by}, ${e.reason?.condition ?? "no reason"})\n`);
      return e;
    });
    const reading = (async () => {
      for await (const line of io.lines()) {
        if (line === "/quit") break;
        if (line.length === 0) continue;
        await stream.send(el("message", { to: tunnel.peer, type: "chat" }, el("body", {}, line)));
      }
    })();
    await Promise.race([reading, ended]);
    await stream.close().catch(() => undefined);
    const e = await ended;
    return e.reason?.condition === "success" ? 0 : 1;
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`${e.message}\n${USAGE}`);
      return 2;
    }
    if (e instanceof XtlsError) {
      io.err(`xtls: ${e.condition}: ${e.message}\n`);
      return 1;
    }
    io.err(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  } finally {
    client?.detach();
    await conn?.close().catch(() => undefined);
  }
}
