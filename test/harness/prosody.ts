/**
 * Test harness: starts a private Prosody 0.12 instance on loopback for interop tests.
 *
 * Spec: RFC 6120 (client-to-server streams on the c2s port; plain TCP with
 * `c2s_require_encryption = false`, so STARTTLS (section 5) is not offered: mod_tls is not
 * loaded), RFC 7395 (XMPP over WebSocket, Prosody's mod_websocket on the HTTP port),
 * XEP-0030 (disco), XEP-0163 (PEP), XEP-0280 (carbons), XEP-0160 (offline messages),
 * XEP-0199 (ping), XEP-0077 (in-band registration). See ../shared/docs/real-peers.md.
 *
 * Each instance lives in its own mkdtemp directory (config, data, pid file, log) with its
 * own free ports, so several can run at once. `stop()` kills it and removes the
 * directory. Prosody is started through a small shell watchdog whose stdin is a pipe from
 * this process: if this process dies in any way (even SIGKILL) the pipe closes and the
 * watchdog kills Prosody; an 'exit' handler and SIGINT/SIGTERM/SIGHUP handlers also kill
 * every live instance and remove its directory (after a SIGKILL of this process only the
 * directory under the OS temp dir is left behind, never a running Prosody). Passwords are passed to prosodyctl as arguments and never logged.
 */
import { spawn, execFile, type ChildProcessByStdio } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { createServer, connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";

export interface ProsodyOptions {
  /** Accounts to create before start, as [username, password] (domain "localhost"). */
  readonly users?: Array<[string, string]>;
  /** Load mod_websocket and expose `wsService`. Default false. */
  readonly websocket?: boolean;
  /** How long to wait for the ports to accept. Default 15,000 ms. */
  readonly startTimeoutMs?: number;
  /** Extra global Lua config lines, appended before the VirtualHost (for later tests). */
  readonly extraConfig?: string;
}

export interface ProsodyInstance {
  readonly domain: "localhost";
  readonly c2sPort: number;
  readonly httpPort: number;
  /** `xmpp://127.0.0.1:PORT` for {@link connectXmpp}. */
  readonly service: string;
  /** `ws://127.0.0.1:PORT/xmpp-websocket`, when started with `websocket: true`. */
  readonly wsService?: string;
  /** The instance's temporary directory (config, data, log). */
  readonly dir: string;
  /** Creates an account with prosodyctl (works while the server runs). */
  register(user: string, pass: string): Promise<void>;
  /** The last lines of Prosody's log and console output, for failure messages. */
  logTail(lines?: number): string;
  /** Kills Prosody (SIGKILL, or SIGTERM first when graceful) and removes the directory. */
  stop(opts?: { graceful?: boolean }): Promise<void>;
}

export class ProsodyHarnessError extends Error {
  override readonly name = "ProsodyHarnessError";
}

const PROSODY = "/usr/bin/prosody";
const PROSODYCTL = "/usr/bin/prosodyctl";

/** Lua long-bracket-free string literal. */
function lua(s: string): string {
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new ProsodyHarnessError("no free port"))));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: "127.0.0.1", port });
    const done = (ok: boolean): void => {
      s.removeAllListeners();
      s.destroy();
      resolve(ok);
    };
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Whether `p` settles within `ms` (the timer is cleared either way). */
function exitsWithin(p: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    void p.then(() => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

function run(file: string, args: readonly string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, env: { ...process.env, LANG: "C" } }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

// ---- cleanup of every live instance, however this process ends ----

interface Live {
  pid: number | undefined;
  dir: string;
}
const live = new Set<Live>();
let hooksInstalled = false;

function killAllSync(): void {
  for (const l of live) {
    if (l.pid !== undefined) {
      try {
        process.kill(l.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
    try {
      rmSync(l.dir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
  live.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on("exit", killAllSync);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = (): void => {
      killAllSync();
      process.removeListener(sig, onSignal);
      process.kill(process.pid, sig); // die of the same signal, as without the handler
    };
    process.on(sig, onSignal);
  }
}

/**
 * The watchdog: prints Prosody's pid, then waits; EOF on its stdin (this process closed
 * the pipe or died) kills Prosody. It exits with Prosody's status.
 */
const WATCHDOG = `
exec 3<&0
"$0" -F --config "$1" </dev/null 3<&- &
p=$!
echo "$p"
{ cat <&3 >/dev/null; kill -KILL "$p" 2>/dev/null; } &
w=$!
wait "$p"
rc=$?
kill "$w" 2>/dev/null
exit "$rc"
`;

function config(dir: string, c2sPort: number, httpPort: number, opts: ProsodyOptions): string {
  const modules = ["roster", "saslauth", "disco", "pep", "carbons", "offline", "ping", "register"];
  if (opts.websocket === true) modules.push("websocket");
  return [
    "-- Generated by test/harness/prosody.ts; one throwaway instance per test file.",
    "run_as_root = true",
    `pidfile = ${lua(join(dir, "prosody.pid"))}`,
    `data_path = ${lua(join(dir, "data"))}`,
    `certificates = ${lua(join(dir, "certs"))}`,
    'interfaces = { "127.0.0.1" }',
    'local_interfaces = { "127.0.0.1" }',
    `c2s_ports = { ${c2sPort} }`,
    'c2s_interfaces = { "127.0.0.1" }',
    "c2s_direct_tls_ports = {}",
    "legacy_ssl_ports = {}",
    "s2s_ports = {}",
    `http_ports = { ${httpPort} }`,
    'http_interfaces = { "127.0.0.1" }',
    "https_ports = {}",
    "network_settings = { nagle = false }",
    "c2s_require_encryption = false",
    "s2s_require_encryption = false",
    "allow_unencrypted_plain_auth = true",
    "allow_registration = true",
    "min_seconds_between_registrations = 0",
    'authentication = "internal_hashed"',
    'storage = "internal"',
    `log = { { levels = { min = "info" }, to = "file", filename = ${lua(join(dir, "prosody.log"))} } }`,
    `modules_enabled = { ${modules.map(lua).join(", ")} }`,
    // No s2s in a loopback test server; no mod_tls, so no STARTTLS offer (plain TCP).
    'modules_disabled = { "s2s", "s2s_auth_certs", "tls" }',
    "http_cors_override = { websocket = { enabled = true } }",
    "consider_websocket_secure = true",
    opts.extraConfig ?? "",
    'VirtualHost "localhost"',
    "",
  ].join("\n");
}

/** Starts a fresh Prosody on free loopback ports; see {@link ProsodyOptions}. */
export async function startProsody(opts: ProsodyOptions = {}): Promise<ProsodyInstance> {
  if (!existsSync(PROSODY) || !existsSync(PROSODYCTL))
    throw new ProsodyHarnessError(`Prosody is not installed (${PROSODY}); .ci/run installs it with apt-get`);
  installHooks();
  const dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-prosody-"));
  const entry: Live = { pid: undefined, dir };
  live.add(entry);
  mkdirSync(join(dir, "data"));
  mkdirSync(join(dir, "certs"));
  const c2sPort = await freePort();
  let httpPort = await freePort();
  while (httpPort === c2sPort) httpPort = await freePort();
  const cfg = join(dir, "prosody.cfg.lua");
  writeFileSync(cfg, config(dir, c2sPort, httpPort, opts));
  const logFile = join(dir, "prosody.log");
  let consoleOut = "";

  const logTail = (lines = 40): string => {
    let log = "";
    try {
      log = readFileSync(logFile, "utf8");
    } catch {
      /* not written yet */
    }
    const all = `${log}${consoleOut === "" ? "" : `\n[console]\n${consoleOut}`}`.trimEnd().split("\n");
    return all.slice(-lines).join("\n");
  };

  const register = async (user: string, pass: string): Promise<void> => {
    try {
      await run(PROSODYCTL, ["--config", cfg, "register", user, "localhost", pass], 20_000);
    } catch (e) {
      const stderr = typeof e === "object" && e !== null && "stderr" in e ? String(e.stderr) : "";
      // The password is an argument: report the user only.
      throw new ProsodyHarnessError(`prosodyctl register ${user}@localhost failed: ${stderr.trim().slice(-500)}`);
    }
  };

  let child: ChildProcessByStdio<Writable, Readable, Readable> | undefined;
  let exited: Promise<void> = Promise.resolve();
  let exitInfo: string | undefined;
  const stop = async (stopOpts: { graceful?: boolean } = {}): Promise<void> => {
    if (child !== undefined && exitInfo === undefined) {
      const pid = entry.pid;
      if (pid !== undefined) {
        try {
          process.kill(pid, stopOpts.graceful === true ? "SIGTERM" : "SIGKILL");
        } catch {
          /* gone */
        }
      }
      child.stdin.end();
      const gracefulMs = stopOpts.graceful === true ? 5_000 : 2_000;
      if (!(await exitsWithin(exited, gracefulMs))) {
        if (pid !== undefined) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            /* gone */
          }
        }
        await exitsWithin(exited, 1_000);
      }
    }
    live.delete(entry);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    for (const [u, p] of opts.users ?? []) await register(u, p);

    child = spawn("/bin/sh", ["-c", WATCHDOG, PROSODY, cfg], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, LANG: "C" },
    });
    const proc = child;
    exited = new Promise((resolve) => {
      proc.once("exit", (code, signal) => {
        exitInfo = `exited with ${signal ?? `code ${String(code)}`}`;
        proc.stdin.destroy();
        resolve();
      });
    });
    const pidLine = new Promise<number | undefined>((resolve) => {
      let buf = "";
      proc.stdout.on("data", (d: Buffer) => {
        if (entry.pid === undefined) {
          buf += d.toString("utf8");
          const nl = buf.indexOf("\n");
          if (nl !== -1) {
            const pid = Number(buf.slice(0, nl).trim());
            entry.pid = Number.isInteger(pid) && pid > 0 ? pid : undefined;
            consoleOut += buf.slice(nl + 1);
            resolve(entry.pid);
          }
        } else consoleOut = (consoleOut + d.toString("utf8")).slice(-20_000);
      });
      proc.once("exit", () => resolve(entry.pid));
    });
    proc.stderr.on("data", (d: Buffer) => {
      consoleOut = (consoleOut + d.toString("utf8")).slice(-20_000);
    });
    await pidLine;

    const timeoutMs = opts.startTimeoutMs ?? 15_000;
    const started = Date.now();
    const ports = opts.websocket === true ? [c2sPort, httpPort] : [c2sPort];
    for (;;) {
      if (exitInfo !== undefined) throw new ProsodyHarnessError(`Prosody ${exitInfo} during startup`);
      const ok = await Promise.all(ports.map(accepts));
      if (ok.every(Boolean)) break;
      if (Date.now() - started > timeoutMs)
        throw new ProsodyHarnessError(`Prosody did not accept on port(s) ${ports.join(", ")} within ${timeoutMs} ms`);
      await sleep(25);
    }
    // From here on the instance must not keep the test process alive: a test that forgets
    // stop() still exits, and the exit hook (or the watchdog) kills Prosody.
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr]) (s as unknown as { unref?: () => void }).unref?.();
  } catch (e) {
    const tail = logTail();
    await stop();
    const reason = e instanceof Error ? e.message : String(e);
    throw new ProsodyHarnessError(`${reason}\n--- Prosody log tail ---\n${tail}`);
  }

  const inst: ProsodyInstance = {
    domain: "localhost",
    c2sPort,
    httpPort,
    service: `xmpp://127.0.0.1:${c2sPort}`,
    ...(opts.websocket === true ? { wsService: `ws://127.0.0.1:${httpPort}/xmpp-websocket` } : {}),
    dir,
    register,
    logTail,
    stop,
  };
  return inst;
}
