/**
 * Test support: drives terminal programs the way a person does, through tmux: start a
 * program in a detached window of a private tmux server, type with send-keys, read the
 * screen with capture-pane, wait until something appears.
 *
 * Spec: none (test support); tmux(1) new-session, send-keys, capture-pane, kill-server.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";

export const TMUX = "/usr/bin/tmux";

function tmux(socket: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(TMUX, ["-L", socket, ...args], { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`tmux ${args[0] ?? ""} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

export class TmuxServer {
  private n = 0;
  readonly panes: Pane[] = [];
  constructor(readonly socket: string) {
    if (!existsSync(TMUX)) throw new Error(`tmux is not installed (${TMUX}): the terminal-client tests need it; .ci/run installs it with apt-get install -y tmux`);
  }

  /** Starts `command` (argv) in a new detached window of `cols` x `rows`. */
  async start(name: string, command: readonly string[], env: Record<string, string>, cols = 150, rows = 42): Promise<Pane> {
    this.n++;
    const envArgs = Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
    const quoted = command.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
    // `; sleep` keeps the pane (and its last screen) after the program exits.
    await tmux(this.socket, ["new-session", "-d", "-s", name, "-x", String(cols), "-y", String(rows), ...envArgs, `${quoted}; echo "[exited $?]"; sleep 600`]);
    const p = new Pane(this.socket, name);
    this.panes.push(p);
    return p;
  }

  /** Every window's screen, for a failure message. */
  async dump(): Promise<string> {
    const out: string[] = [];
    for (const p of this.panes) out.push(`--- ${p.name} ---\n${await p.screen().catch(() => "(gone)")}`);
    return out.join("\n");
  }

  async kill(): Promise<void> {
    await tmux(this.socket, ["kill-server"]).catch(() => undefined);
  }
}

export class Pane {
  constructor(
    readonly socket: string,
    readonly name: string,
  ) {}

  /** Types `text` literally, then presses Enter (unless `enter` is false). */
  async type(text: string, enter = true): Promise<void> {
    if (text !== "") await tmux(this.socket, ["send-keys", "-t", this.name, "-l", text]);
    if (enter) await tmux(this.socket, ["send-keys", "-t", this.name, "Enter"]);
  }

  async keys(...keys: string[]): Promise<void> {
    await tmux(this.socket, ["send-keys", "-t", this.name, ...keys]);
  }

  /** The visible screen as text (no escape codes). */
  screen(): Promise<string> {
    return tmux(this.socket, ["capture-pane", "-p", "-t", this.name]);
  }

  /** Waits until the screen matches; returns the match. Fails with the screen shown. */
  async waitFor(re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    const end = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
      last = await this.screen();
      const m = last.match(re);
      if (m) return m;
      if (Date.now() > end) throw new Error(`timed out waiting for ${re} in ${this.name}; the screen was:\n${last}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  }
}
