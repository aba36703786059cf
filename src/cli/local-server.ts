/**
 * A throwaway local XMPP server for trying the clients with one command (`xmpp-e2e web
 * --local`): Prosody on 127.0.0.1 only, with WebSocket (RFC 7395) for the web client and
 * plain c2s for the terminal client, two demo accounts, everything in a temporary
 * directory removed when it stops. Not a production server: no TLS (loopback only), no
 * federation.
 *
 * Prosody runs under a tiny shell watchdog whose stdin is a pipe from this process, so if
 * this process dies in any way the pipe closes and the watchdog kills Prosody (the same
 * approach as the test harness, test/harness/prosody.ts, kept separate so that the
 * product does not depend on test code). Passwords go to prosodyctl as arguments, never
 * into logs or the config file.
 *
 * Spec: RFC 6120 (c2s; PLAIN over loopback only), RFC 7395 (mod_websocket), RFC 6121
 * (roster, presence subscriptions), XEP-0163 (PEP, for XEP-0189 certificates).
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const PROSODY = "/usr/bin/prosody";
export const PROSODYCTL = "/usr/bin/prosodyctl";

export interface LocalServer {
  readonly domain: "localhost";
  /** For the terminal client: xmpp://127.0.0.1:PORT. */
  readonly service: string;
  /** For the web client: ws://127.0.0.1:PORT/xmpp-websocket. */
  readonly wsService: string;
  /** The demo accounts as [bare JID, password]. */
  readonly accounts: ReadonlyArray<readonly [string, string]>;
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

export class LocalServerError extends Error {
  override readonly name = "LocalServerError";
}

const lua = (s: string): string => JSON.stringify(s); // a JSON string is a valid Lua string literal here (no control characters)

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      const port = typeof a === "object" && a ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    const end = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.once("connect", () => end(true));
    s.once("error", () => end(false));
  });
}

const WATCHDOG = `
exec 3<&0
"$0" -F --config "$1" </dev/null >/dev/null 2>&1 3<&- &
p=$!
echo "$p"
{ cat <&3 >/dev/null; kill -KILL "$p" 2>/dev/null; } &
wait "$p"
`;

/** Starts Prosody with `users` (default alice and bob with random passwords). */
export async function startLocalServer(o: { users?: readonly string[]; startTimeoutMs?: number } = {}): Promise<LocalServer> {
  if (!existsSync(PROSODY) || !existsSync(PROSODYCTL)) throw new LocalServerError(`Prosody is not installed (${PROSODY}); on Debian: apt-get install -y prosody`);
  const dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-local-"));
  const [c2s, http] = [await freePort(), await freePort()];
  const cfg = join(dir, "prosody.cfg.lua");
  mkdirSync(join(dir, "data"));
  writeFileSync(
    cfg,
    [
      "-- Written by xmpp-e2e (src/cli/local-server.ts): a local demo server, removed on exit.",
      ...(process.getuid?.() === 0 ? ["run_as_root = true"] : []),
      `pidfile = ${lua(join(dir, "prosody.pid"))}`,
      `data_path = ${lua(join(dir, "data"))}`,
      'interfaces = { "127.0.0.1" }',
      `c2s_ports = { ${c2s} }`,
      'c2s_interfaces = { "127.0.0.1" }',
      "c2s_direct_tls_ports = {}",
      "s2s_ports = {}",
      `http_ports = { ${http} }`,
      'http_interfaces = { "127.0.0.1" }',
      "https_ports = {}",
      "network_settings = { nagle = false }",
      "c2s_require_encryption = false",
      "allow_unencrypted_plain_auth = true",
      'authentication = "internal_hashed"',
      `log = { { levels = { min = "warn" }, to = "file", filename = ${lua(join(dir, "prosody.log"))} } }`,
      'modules_enabled = { "roster", "saslauth", "disco", "pep", "carbons", "offline", "ping", "websocket" }',
      'modules_disabled = { "s2s", "tls" }',
      "http_cors_override = { websocket = { enabled = true } }",
      "consider_websocket_secure = true",
      'VirtualHost "localhost"',
      "",
    ].join("\n"),
  );
  const accounts = (o.users ?? ["alice", "bob"]).map((u) => [`${u}@localhost`, randomBytes(6).toString("base64url")] as const);
  let child: ChildProcess | undefined;
  let pid: number | undefined;
  const stop = async (): Promise<void> => {
    if (pid !== undefined) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        /* gone */
      }
    }
    child?.stdin?.end();
    if (child && child.exitCode === null) await new Promise<void>((r) => child?.once("exit", () => r()));
    rmSync(dir, { recursive: true, force: true });
  };
  const onExit = (): void => {
    if (pid !== undefined) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", onExit);
  try {
    for (const [jid, pw] of accounts) {
      const user = jid.split("@")[0] ?? "";
      await new Promise<void>((resolve, reject) =>
        execFile(PROSODYCTL, ["--config", cfg, "register", user, "localhost", pw], { timeout: 20_000 }, (e) =>
          e ? reject(new LocalServerError(`prosodyctl could not create ${jid}`)) : resolve(),
        ),
      );
    }
    child = spawn("/bin/sh", ["-c", WATCHDOG, PROSODY, cfg], { stdio: ["pipe", "pipe", "ignore"] });
    const proc = child;
    pid = await new Promise<number | undefined>((resolve) => {
      proc.stdout?.once("data", (d: Buffer) => resolve(Number(d.toString().trim()) || undefined));
      proc.once("exit", () => resolve(undefined));
    });
    const deadline = Date.now() + (o.startTimeoutMs ?? 15_000);
    while (!((await accepts(c2s)) && (await accepts(http)))) {
      if (proc.exitCode !== null || Date.now() > deadline) {
        const log = existsSync(join(dir, "prosody.log")) ? readFileSync(join(dir, "prosody.log"), "utf8").trim().split("\n").slice(-5).join("\n") : "";
        throw new LocalServerError(`Prosody did not start${log ? `:\n${log}` : ""}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (e) {
    await stop();
    process.removeListener("exit", onExit);
    throw e;
  }
  return {
    domain: "localhost",
    service: `xmpp://127.0.0.1:${c2s}`,
    wsService: `ws://127.0.0.1:${http}/xmpp-websocket`,
    accounts,
    pid,
    stop: async () => {
      process.removeListener("exit", onExit);
      await stop();
    },
  };
}
