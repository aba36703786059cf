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
 * that user (`runuser -u postgres --`). The server is started through the shell watchdog
 * of test/harness/watchdog.ts (also as `postgres`) whose stdin is a pipe from this process: if this process
 * dies in any way (even SIGKILL) the pipe closes and the watchdog stops the server
 * (SIGQUIT: immediate shutdown, which also ends the backends and frees shared memory;
 * SIGKILL after 5 s) and removes the directory. An 'exit' handler and
 * SIGINT/SIGTERM/SIGHUP handlers also stop every live instance. `stop()` stops it and
 * removes the directory. The password is random, passed in a 0600 file, never logged.
 */
import { randomBytes } from "node:crypto";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { PoolConfig } from "pg";
import { freePort, run, sleep, WatchedServer, watchdogScript } from "./watchdog.js";

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

/**
 * The watchdog, run as `postgres`: starts the server, prints its pid, then waits; EOF on
 * its stdin (this process closed the pipe or died) stops the server. When the server has
 * exited it removes the instance directory. It exits with the server's status.
 * $0 = postgres binary, $1 = data directory, $2 = instance directory, $3 = port.
 */
const WATCHDOG = watchdogScript(
  `"$0" -D "$1" -p "$3" -c listen_addresses=127.0.0.1 -c unix_socket_directories="$2" \\
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \\
  -c shared_buffers=16MB -c log_min_messages=warning -c log_min_error_statement=panic`,
  `kill -QUIT "$p" 2>/dev/null; i=0
  while [ "$i" -lt 50 ] && kill -0 "$p" 2>/dev/null; do sleep 0.1; i=$((i+1)); done
  kill -KILL "$p" 2>/dev/null`,
  `rm -rf "$2" 2>/dev/null`,
);

/** Starts a fresh PostgreSQL on a free loopback port; see {@link PostgresOptions}. */
export async function startPostgres(opts: PostgresOptions = {}): Promise<PostgresInstance> {
  const bin = pgBin();
  if (bin === undefined)
    throw new PostgresHarnessError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb); .ci/run installs it with apt-get");
  const dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-postgres-"));
  // SIGQUIT: immediate shutdown; the watchdog finishes the job.
  const server = new WatchedServer(dir, "SIGQUIT");
  const password = randomBytes(18).toString("base64url");
  const port = await freePort((m) => new PostgresHarnessError(m));
  const data = join(dir, "data");
  const logTail = (lines = 40): string => server.output.trimEnd().split("\n").slice(-lines).join("\n");
  const stop = (): Promise<void> => server.stop({ signal: "SIGQUIT", graceMs: 8_000, killMs: 2_000 });

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

    await server.start("/usr/sbin/runuser", ["-u", "postgres", "--", "/bin/sh", "-c", WATCHDOG, join(bin, "postgres"), data, dir, String(port)]);

    const timeoutMs = opts.startTimeoutMs ?? 30_000;
    const started = Date.now();
    for (;;) {
      if (server.exitInfo !== undefined) throw new PostgresHarnessError(`postgres ${server.exitInfo} during startup`);
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
    server.detach();
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
