/**
 * Test harness support shared by the server harnesses (test/harness/prosody.ts,
 * test/harness/postgres.ts): a free loopback port, running a helper program, and a server
 * process that never outlives the test process.
 *
 * Spec: none (test infrastructure); POSIX sh semantics for the watchdog script.
 *
 * A server is started through a small shell watchdog whose stdin is a pipe from this
 * process: the watchdog starts the server in the background, prints its pid, and waits;
 * EOF on its stdin (this process closed the pipe or died in any way, even by SIGKILL)
 * runs the harness's stop command against the server. Every instance directory is
 * registered before anything is started: an 'exit' handler and SIGINT/SIGTERM/SIGHUP
 * handlers signal every live server and remove every live directory; `stop()` does the
 * same for one instance.
 */
import { execFile, spawn, type ChildProcessByStdio } from "node:child_process";
import { rmSync } from "node:fs";
import { createServer } from "node:net";
import type { Readable, Writable } from "node:stream";

/** The environment of every helper and server: the C locale (stable messages to parse). */
export const harnessEnv = (): NodeJS.ProcessEnv => ({ ...process.env, LANG: "C", LC_ALL: "C" });

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(makeError: (message: string) => Error = (m) => new Error(m)): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(makeError("no free port"))));
    });
  });
}

/** Runs a program to completion; the error carries `stdout` and `stderr`. */
export function run(file: string, args: readonly string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, env: harnessEnv() }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Whether `p` settles within `ms` (the timer is cleared either way). */
function settlesWithin(p: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    void p.then(() => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/**
 * The watchdog shell script. `$0` and the further positional arguments are the harness's;
 * `server` is the command line that starts the server (it gets /dev/null as stdin and not
 * the pipe), `onEof` what to do to the server `$p` when the pipe closes, `afterExit` what
 * to do once the server has exited. The script prints the server's pid on its first line
 * and exits with the server's status.
 */
export function watchdogScript(server: string, onEof: string, afterExit = ""): string {
  return `
exec 3<&0
${server} </dev/null 3<&- &
p=$!
echo "$p"
{ cat <&3 >/dev/null; ${onEof}; } &
w=$!
wait "$p"
rc=$?
kill "$w" 2>/dev/null
${afterExit}
exit "$rc"
`;
}

// ---- cleanup of every live instance, however this process ends ----

const live = new Set<WatchedServer>();
let hooksInstalled = false;

function killAllSync(): void {
  for (const w of live) w.killSync();
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

/** How a harness stops its server. */
export interface StopPlan {
  /** Sent to the server first. */
  readonly signal: NodeJS.Signals;
  /** How long to wait for the watchdog to exit after `signal` before SIGKILL. */
  readonly graceMs: number;
  /** How long to wait after SIGKILL. */
  readonly killMs: number;
}

/**
 * One server instance and its directory. Construct it as soon as the directory exists
 * (it is then removed however this process ends), `start` the watchdog, `detach` once the
 * server is up, `stop` to end it.
 */
export class WatchedServer {
  /** The server's pid as printed by the watchdog. */
  pid: number | undefined;
  /** Set when the watchdog has exited ("exited with SIGKILL", "exited with code 1"). */
  exitInfo: string | undefined;
  /** The watchdog's console output after the pid line (stdout and stderr), last 20,000 characters. */
  output = "";
  private child: ChildProcessByStdio<Writable, Readable, Readable> | undefined;
  private exited: Promise<void> = Promise.resolve();

  /**
   * @param dir the instance directory, removed by `stop` and the exit hooks
   * @param exitSignal what the exit hooks send the server (the watchdog finishes the job)
   */
  constructor(
    readonly dir: string,
    private readonly exitSignal: NodeJS.Signals,
  ) {
    installHooks();
    live.add(this);
  }

  /**
   * Spawns `file args` (a shell running {@link watchdogScript}, possibly behind runuser)
   * and resolves with the server's pid once the watchdog has printed it (undefined when
   * the watchdog exited first).
   */
  start(file: string, args: readonly string[]): Promise<number | undefined> {
    const proc = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"], env: harnessEnv() });
    this.child = proc;
    this.exited = new Promise((resolve) => {
      proc.once("exit", (code, signal) => {
        this.exitInfo = `exited with ${signal ?? `code ${String(code)}`}`;
        proc.stdin.destroy();
        resolve();
      });
    });
    const append = (s: string): void => {
      this.output = (this.output + s).slice(-20_000);
    };
    proc.stderr.on("data", (d: Buffer) => append(d.toString("utf8")));
    return new Promise<number | undefined>((resolve) => {
      let buf = "";
      proc.stdout.on("data", (d: Buffer) => {
        if (this.pid !== undefined) return append(d.toString("utf8"));
        buf += d.toString("utf8");
        const nl = buf.indexOf("\n");
        if (nl === -1) return;
        const pid = Number(buf.slice(0, nl).trim());
        this.pid = Number.isInteger(pid) && pid > 0 ? pid : undefined;
        append(buf.slice(nl + 1));
        resolve(this.pid);
      });
      proc.once("exit", () => resolve(this.pid));
    });
  }

  /** From here on the instance does not keep the test process alive: a test that forgets
   * stop() still exits, and the exit hook (or the watchdog) ends the server. */
  detach(): void {
    const c = this.child;
    if (c === undefined) return;
    c.unref();
    for (const s of [c.stdin, c.stdout, c.stderr]) (s as unknown as { unref?: () => void }).unref?.();
  }

  /** Stops the server as planned (SIGKILL when it outlasts the grace period) and removes the directory. */
  async stop(plan: StopPlan): Promise<void> {
    if (this.child !== undefined && this.exitInfo === undefined) {
      this.signal(plan.signal);
      this.child.stdin.end();
      if (!(await settlesWithin(this.exited, plan.graceMs))) {
        this.signal("SIGKILL");
        await settlesWithin(this.exited, plan.killMs);
      }
    }
    live.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** What the exit hooks do: signal the server, remove the directory, synchronously. */
  killSync(): void {
    this.signal(this.exitSignal);
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      /* best effort; a watchdog that removes it does so too */
    }
  }

  private signal(sig: NodeJS.Signals): void {
    if (this.pid === undefined) return;
    try {
      process.kill(this.pid, sig);
    } catch {
      /* already gone */
    }
  }
}
