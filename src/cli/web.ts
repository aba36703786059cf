/**
 * `xmpp-e2e web`: builds the web client (src/web) and serves it on loopback, with a
 * `config.json` naming the XMPP server's WebSocket endpoint (RFC 7395) the page logs in
 * to. Static files only; the server never sees passwords, keys or messages: the browser
 * talks to the XMPP server directly.
 *
 * Spec: RFC 9110 (GET/HEAD of static files), RFC 7395 (the endpoint the page uses).
 */
import { createServer, type Server } from "node:http";
import { readFileSync, existsSync, statSync } from "node:fs";
import { extname, join, normalize, resolve, sep } from "node:path";
import { parseArgs } from "node:util";
import { buildWeb, DEFAULT_OUT } from "../web/build.js";

export const WEB_USAGE = `usage: xmpp-e2e web [--service ws://HOST:PORT/xmpp-websocket] [--port 8080] [--host 127.0.0.1] [--out DIR] [--no-build]

Builds the web client and serves it. Open the printed address, log in with your XMPP
account; the page connects to --service (default ws://127.0.0.1:5280/xmpp-websocket).
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
  const w = await serveWeb(values.out, { host: values.host, port, service: values.service, ...(values.domain ? { domain: values.domain } : {}) });
  process.stdout.write(`xmpp-e2e web client: ${w.url}  (XMPP over WebSocket: ${values.service}; Ctrl-C stops)\n`);
  await new Promise<void>((r) => {
    process.once("SIGINT", r);
    process.once("SIGTERM", r);
  });
  await w.close();
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
