/**
 * `xmpp-e2e web`: builds the web client (src/web) and serves it on loopback, with a
 * `config.json` naming the XMPP server's WebSocket endpoint (RFC 7395) the page logs in
 * to. Static files only; the server never sees passwords, keys or messages: the browser
 * talks to the XMPP server directly.
 *
 * With --local it first starts a throwaway Prosody on loopback (./local-server.ts: WebSocket
 * for the page, plain c2s for the terminal client, two demo accounts) and points the page
 * at it: one command gives a person a working setup.
 *
 * Spec: RFC 9110 (GET/HEAD of static files), RFC 7395 (the endpoint the page uses).
 */
import { createServer, type Server } from "node:http";
import { readFileSync, existsSync, statSync } from "node:fs";
import { extname, join, normalize, resolve, sep } from "node:path";
import { parseArgs } from "node:util";
import { tmpdir } from "node:os";
import { buildWeb, DEFAULT_OUT } from "../web/build.js";
import { startLocalServer, type LocalServer } from "./local-server.js";

export const WEB_USAGE = `usage: xmpp-e2e web [--service ws://HOST:PORT/xmpp-websocket] [--port 8080] [--host 127.0.0.1] [--out DIR] [--no-build]
       xmpp-e2e web --local [--port 8080]

Builds the web client and serves it. Open the printed address, log in with your XMPP
account; the page connects to --service (default ws://127.0.0.1:5280/xmpp-websocket), the
WebSocket endpoint (RFC 7395) of the server you name.

  --local   also start a local Prosody (loopback only, removed on exit) with two demo
            accounts, alice@localhost and bob@localhost, whose passwords are printed;
            the terminal client can join it too (the command is printed)
`;

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
};

export interface WebServer {
  readonly url: string;
  readonly server: Server;
  close(): Promise<void>;
}

/** Serves `dir` and a config.json for the page on host:port (0 = any free port). */
export function serveWeb(dir: string, opts: { host?: string; port?: number; service?: string; domain?: string }): Promise<WebServer> {
  const root = resolve(dir);
  const config = JSON.stringify({ ...(opts.service ? { service: opts.service } : {}), ...(opts.domain ? { domain: opts.domain } : {}) });
  const server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? "/").split("?")[0] ?? "/");
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405).end();
      return;
    }
    const headers = { "cache-control": "no-store", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer" };
    if (path === "/config.json") {
      res.writeHead(200, { ...headers, "content-type": TYPES[".json"] }).end(config);
      return;
    }
    const file = normalize(join(root, path === "/" ? "index.html" : path));
    if (!file.startsWith(root + sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, headers).end("not found");
      return;
    }
    res.writeHead(200, { ...headers, "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
    res.end(req.method === "HEAD" ? undefined : readFileSync(file));
  });
  return new Promise((resolveP, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 8080, opts.host ?? "127.0.0.1", () => {
      const a = server.address();
      const port = typeof a === "object" && a ? a.port : 0;
      resolveP({
        url: `http://${opts.host ?? "127.0.0.1"}:${port}/`,
        server,
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}

export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: argv,
      options: {
        service: { type: "string", default: "ws://127.0.0.1:5280/xmpp-websocket" },
        domain: { type: "string" },
        port: { type: "string", default: "8080" },
        host: { type: "string", default: "127.0.0.1" },
        out: { type: "string", default: DEFAULT_OUT },
        "no-build": { type: "boolean", default: false },
        local: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (e) {
    process.stderr.write(`xmpp-e2e web: ${(e as Error).message}\n\n${WEB_USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(WEB_USAGE);
    return 0;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`xmpp-e2e web: --port must be 0-65535\n`);
    return 2;
  }
  if (!values["no-build"]) {
    const r = await buildWeb(values.out);
    process.stdout.write(`built the web client into ${r.outDir}\n`);
  }
  let local: LocalServer | undefined;
  let service = values.service;
  let domain = values.domain;
  if (values.local) {
    local = await startLocalServer();
    service = local.wsService;
    domain = local.domain;
    process.stdout.write(`local XMPP server (Prosody, loopback only): ${local.wsService} and ${local.service}\n`);
    for (const [jid, pw] of local.accounts) process.stdout.write(`  demo account: ${jid}  password: ${pw}\n`);
    const [, second] = local.accounts;
    if (second)
      process.stdout.write(
        `  terminal client: XMPP_E2E_PASSWORD=${second[1]} xmpp-e2e tui --init --jid ${second[0]} --service ${local.service} --config ${join(tmpdir(), `xmpp-e2e-demo-${second[0].split("@")[0] ?? "bob"}`, "config.json")}\n`,
      );
  }
  let w: WebServer;
  try {
    w = await serveWeb(values.out, { host: values.host, port, service, ...(domain ? { domain } : {}) });
  } catch (e) {
    await local?.stop();
    throw e;
  }
  process.stdout.write(`xmpp-e2e web client: ${w.url}  (XMPP over WebSocket: ${service}; Ctrl-C stops)\n`);
  await new Promise<void>((r) => {
    process.once("SIGINT", r);
    process.once("SIGTERM", r);
  });
  await w.close();
  await local?.stop();
  return 0;
}

const self = process.argv[1] ?? "";
if (self.endsWith("cli/web.ts") || self.endsWith("cli/web.js")) {
  run(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
