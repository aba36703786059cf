/**
 * Test harness: starts a private PostgreSQL server (Debian's postgresql 15, or any
 * /usr/lib/postgresql/N/bin) on loopback for the PostgreSQL store tests.
 *
 * Spec: none (test infrastructure); the server speaks the PostgreSQL frontend/backend
 * protocol v3 to the `pg` driver over TCP on 127.0.0.1 with SCRAM-SHA-256 passwords
 * (RFC 7677), and also listens on a Unix socket in its own directory.
 *
 * Each instance lives in its own mkdtemp directory (data directory, socket, password
 * file) on a free port, so several can run at once. PostgreSQL refuses to run as root, so
 * the directory is chowned to the `postgres` system user and initdb and the server run as
 * that user (`runuser -u postgres --`). The server is started through a small shell
 * watchdog (also as `postgres`) whose stdin is a pipe from this process: if this process
 * dies in any way (even SIGKILL) the pipe closes and the watchdog stops the server
 * (SIGQUIT: immediate shutdown, which also ends the backends and frees shared memory;
 * SIGKILL after 5 s) and removes the directory. An 'exit' handler and
 * SIGINT/SIGTERM/SIGHUP handlers also stop every live instance. `stop()` stops it and
 * removes the directory. The password is random, passed in a 0600 file, never logged.
 */
import { execFile, spawn, type ChildProcessByStdio } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import pg from "pg";
import type { PoolConfig } from "pg";

export interface PostgresOptions {
  /** How long to wait for the server to accept queries. Default 30,000 ms. */
  readonly startTimeoutMs?: number;
}

export interface PostgresInstance {
  readonly host: "127.0.0.1";
  readonly port: number;
  readonly user: "postgres";
  readonly password: string;
  readonly database: "postgres";
  /** The directory holding the data directory and the Unix socket (`.s.PGSQL.<port>`). */
  readonly dir: string;
  /** `postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres` (contains the password: do not log). */
  readonly url: string;
  /** Settings for a pg Pool / Client on this server (`database` defaults to "postgres"). */
  config(extra?: PoolConfig): PoolConfig;
  /** Creates a database and returns the settings to reach it. */
  createDatabase(name: string): Promise<PoolConfig>;
  /** The last lines of the server's console output, for failure messages. */
  logTail(lines?: number): string;
  /** Stops the server (immediate shutdown) and removes the directory. */
  stop(): Promise<void>;
}

export class PostgresHarnessError extends Error {
  override readonly name = "PostgresHarnessError";
}

/** The newest /usr/lib/postgresql/N/bin that has initdb and postgres. */
function pgBin(): string | undefined {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, "bin", "initdb")) && existsSync(join(root, v, "bin", "postgres")))
    .sort((a, b) => Number(b) - Number(a));
  const v = versions[0];
  return v === undefined ? undefined : join(root, v, "bin");
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new PostgresHarnessError("no free port"))));
    });
  });
}

function run(file: string, args: readonly string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, env: { ...process.env, LANG: "C", LC_ALL: "C" } }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function exitsWithin(p: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    void p.then(() => {
      clearTimeout(t);
      resolve(true);
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
        process.kill(l.pid, "SIGQUIT"); // immediate shutdown; the watchdog finishes the job
      } catch {
        /* already gone */
      }
    }
    try {
      rmSync(l.dir, { recursive: true, force: true });
    } catch {
      /* best effort; the watchdog removes it too */
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
      process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/**
 * The watchdog, run as `postgres`: starts the server, prints its pid, then waits; EOF on
 * its stdin (this process closed the pipe or died) stops the server. When the server has
 * exited it removes the instance directory. It exits with the server's status.
 * $0 = postgres binary, $1 = data directory, $2 = instance directory, $3 = port.
 */
const WATCHDOG = `
exec 3<&0
"$0" -D "$1" -p "$3" -c listen_addresses=127.0.0.1 -c unix_socket_directories="$2" \\
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \\
  -c shared_buffers=16MB -c log_min_messages=warning -c log_min_error_statement=panic \\
  </dev/null 3<&- &
p=$!
echo "$p"
{ cat <&3 >/dev/null; kill -QUIT "$p" 2>/dev/null; i=0
  while [ "$i" -lt 50 ] && kill -0 "$p" 2>/dev/null; do sleep 0.1; i=$((i+1)); done
  kill -KILL "$p" 2>/dev/null; } &
w=$!
wait "$p"
rc=$?
kill "$w" 2>/dev/null
rm -rf "$2" 2>/dev/null
exit "$rc"
`;

/** Starts a fresh PostgreSQL on a free loopback port; see {@link PostgresOptions}. */
export async function startPostgres(opts: PostgresOptions = {}): Promise<PostgresInstance> {
  const bin = pgBin();
  if (bin === undefined)
    throw new PostgresHarnessError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb); .ci/run installs it with apt-get");
  installHooks();
  const dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-postgres-"));
  const entry: Live = { pid: undefined, dir };
  live.add(entry);
  const password = randomBytes(18).toString("base64url");
  const port = await freePort();
  const data = join(dir, "data");
  let consoleOut = "";
  const logTail = (lines = 40): string => consoleOut.trimEnd().split("\n").slice(-lines).join("\n");

  let child: ChildProcessByStdio<Writable, Readable, Readable> | undefined;
  let exited: Promise<void> = Promise.resolve();
  let exitInfo: string | undefined;
  const stop = async (): Promise<void> => {
    if (child !== undefined && exitInfo === undefined) {
      const pid = entry.pid;
      if (pid !== undefined) {
        try {
          process.kill(pid, "SIGQUIT");
        } catch {
          /* gone */
        }
      }
      child.stdin.end();
      if (!(await exitsWithin(exited, 8_000)) && pid !== undefined) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          /* gone */
        }
        await exitsWithin(exited, 2_000);
      }
    }
    live.delete(entry);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const pwfile = join(dir, "pw");
    writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
    const { uid, gid } = await postgresIds();
    chownSync(dir, uid, gid);
    chownSync(pwfile, uid, gid);
    try {
      await run(
        "/usr/sbin/runuser",
        ["-u", "postgres", "--", join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "scram-sha-256", `--pwfile=${pwfile}`, "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
        60_000,
      );
    } catch (e) {
      const stderr = typeof e === "object" && e !== null && "stderr" in e ? String(e.stderr) : String(e);
      throw new PostgresHarnessError(`initdb failed: ${stderr.trim().slice(-800)}`);
    } finally {
      rmSync(pwfile, { force: true });
    }

    child = spawn("/usr/sbin/runuser", ["-u", "postgres", "--", "/bin/sh", "-c", WATCHDOG, join(bin, "postgres"), data, dir, String(port)], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, LANG: "C", LC_ALL: "C" },
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
            resolve(entry.pid);
          }
        }
      });
      proc.once("exit", () => resolve(entry.pid));
    });
    proc.stderr.on("data", (d: Buffer) => {
      consoleOut = (consoleOut + d.toString("utf8")).slice(-20_000);
    });
    await pidLine;

    const timeoutMs = opts.startTimeoutMs ?? 30_000;
    const started = Date.now();
    for (;;) {
      if (exitInfo !== undefined) throw new PostgresHarnessError(`postgres ${exitInfo} during startup`);
      const c = new pg.Client({ host: "127.0.0.1", port, user: "postgres", password, database: "postgres", connectionTimeoutMillis: 2000 });
      c.on("error", () => {});
      try {
        await c.connect();
        await c.query("SELECT 1");
        await c.end();
        break;
      } catch {
        await c.end().catch(() => {});
      }
      if (Date.now() - started > timeoutMs) throw new PostgresHarnessError(`postgres did not accept on 127.0.0.1:${port} within ${timeoutMs} ms`);
      await sleep(50);
    }
    // The instance must not keep the test process alive: the exit hook or the watchdog
    // stops it when a test forgets stop().
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr]) (s as unknown as { unref?: () => void }).unref?.();
  } catch (e) {
    const tail = logTail();
    await stop();
    const reason = e instanceof Error ? e.message : String(e);
    throw new PostgresHarnessError(`${reason}\n--- postgres output tail ---\n${tail}`);
  }

  const config = (extra: PoolConfig = {}): PoolConfig => ({ host: "127.0.0.1", port, user: "postgres", password, database: "postgres", ...extra });
  return {
    host: "127.0.0.1",
    port,
    user: "postgres",
    password,
    database: "postgres",
    dir,
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    config,
    async createDatabase(name: string): Promise<PoolConfig> {
      if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new RangeError("bad database name");
      const c = new pg.Client(config());
      await c.connect();
      try {
        await c.query(`CREATE DATABASE "${name}"`);
      } finally {
        await c.end();
      }
      return config({ database: name });
    },
    logTail,
    stop,
  };
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const [u, g] = await Promise.all([run("/usr/bin/id", ["-u", "postgres"], 5000), run("/usr/bin/id", ["-g", "postgres"], 5000)]);
  const uid = Number(u.stdout.trim());
  const gid = Number(g.stdout.trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new PostgresHarnessError("no `postgres` system user");
  return { uid, gid };
}
