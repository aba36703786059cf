/**
 * Terminal I/O for the client: the full-screen view (raw mode, key handling through
 * node:readline's keypress decoder, repaint on change and on resize), the line mode for
 * terminals without cursor addressing or when stdin is not a TTY (every new line printed
 * once, commands read line by line), and the hidden password prompt.
 *
 * Spec: ECMA-48 / VT100 control sequences (see ./screen.ts); RFC 6120 section 13.8
 * (the password is never echoed, logged or stored).
 */
import { emitKeypressEvents, createInterface } from "node:readline";
import type { TuiApp } from "./app.js";
import { complete } from "./commands.js";
import type { Line } from "./model.js";
import { alertText, ENTER_ALT, LEAVE_ALT, paint, progressBar, protectionText, render } from "./screen.js";

interface Key {
  readonly name?: string;
  readonly ctrl?: boolean;
  readonly meta?: boolean;
  readonly sequence?: string;
}

export interface TerminalOptions {
  readonly input: NodeJS.ReadStream;
  readonly output: NodeJS.WriteStream;
  readonly color: boolean;
}

/** Runs the full-screen view until the user quits; resolves then. */
export function runFullScreen(app: TuiApp, o: TerminalOptions): Promise<void> {
  const { input, output } = o;
  let text = "";
  let cursor = 0;
  let scroll = 0;
  let queued = false;
  const history: string[] = [];
  let hist = 0;
  let lastCtrlC = 0;

  const draw = (): void => {
    queued = false;
    const f = render(app.model, { input: text, cursor, scroll }, output.columns || 80, output.rows || 24, o.color);
    output.write(paint(f));
  };
  const schedule = (): void => {
    if (queued) return;
    queued = true;
    setImmediate(draw);
  };

  return new Promise<void>((resolve) => {
    output.write(ENTER_ALT);
    emitKeypressEvents(input);
    if (input.isTTY) input.setRawMode(true);
    input.resume();
    const offChange = app.onChange(schedule);
    const onResize = (): void => schedule();
    output.on("resize", onResize);
    let busy: Promise<void> = Promise.resolve();

    const finish = (): void => {
      offChange();
      output.off("resize", onResize);
      input.off("keypress", onKey);
      if (input.isTTY) input.setRawMode(false);
      input.pause();
      output.write(LEAVE_ALT);
      resolve();
    };

    const submit = (line: string): void => {
      if (line.trim() !== "") history.push(line);
      hist = history.length;
      busy = busy.then(async () => {
        await app.submit(line);
        if (app.quitRequested) finish();
      });
    };

    const onKey = (str: string | undefined, key: Key | undefined): void => {
      const k = key ?? {};
      if (k.ctrl && k.name === "c") {
        // Ctrl-C clears the line; twice within a second quits.
        if (text === "" && Date.now() - lastCtrlC < 1000) return submit("/quit");
        lastCtrlC = Date.now();
        text = "";
        cursor = 0;
      } else if (k.ctrl && k.name === "d") {
        if (text === "") return submit("/quit");
      } else if (k.name === "return" || k.name === "enter") {
        const line = text;
        text = "";
        cursor = 0;
        scroll = 0;
        submit(line);
      } else if (k.name === "backspace") {
        if (cursor > 0) {
          const cps = [...text];
          cps.splice(cursor - 1, 1);
          text = cps.join("");
          cursor--;
        }
      } else if (k.name === "delete") {
        const cps = [...text];
        cps.splice(cursor, 1);
        text = cps.join("");
      } else if (k.name === "left") cursor = Math.max(0, cursor - 1);
      else if (k.name === "right") cursor = Math.min([...text].length, cursor + 1);
      else if (k.name === "home" || (k.ctrl && k.name === "a")) cursor = 0;
      else if (k.name === "end" || (k.ctrl && k.name === "e")) cursor = [...text].length;
      else if (k.ctrl && k.name === "u") {
        text = "";
        cursor = 0;
      } else if (k.name === "up") {
        if (hist > 0) {
          text = history[--hist] ?? "";
          cursor = [...text].length;
        }
      } else if (k.name === "down") {
        hist = Math.min(history.length, hist + 1);
        text = history[hist] ?? "";
        cursor = [...text].length;
      } else if (k.name === "tab") {
        const c = complete(text);
        if (c !== undefined) {
          text = c;
          cursor = [...text].length;
        }
      } else if (k.ctrl && k.name === "n") app.switchConversation(1);
      else if (k.ctrl && k.name === "p") app.switchConversation(-1);
      else if (k.name === "pageup") scroll += Math.max(1, (output.rows || 24) - 10);
      else if (k.name === "pagedown") scroll = Math.max(0, scroll - Math.max(1, (output.rows || 24) - 10));
      else if (k.ctrl && k.name === "l") output.write("\x1b[2J");
      else if (str !== undefined && !k.ctrl && !k.meta && str.length > 0 && !/[\u0000-\u001f\u007f]/.test(str)) {
        const cps = [...text];
        cps.splice(cursor, 0, ...str);
        text = cps.join("");
        cursor += [...str].length;
      }
      schedule();
    };
    input.on("keypress", onKey);
    schedule();
  });
}

/** Line mode: prints each new line once (with its conversation), reads commands by line. */
export function runLineMode(app: TuiApp, o: TerminalOptions): Promise<void> {
  const { input, output } = o;
  const printed = new Map<string, number>();
  const alertsShown = new Set<number>();
  const headers = new Map<string, string>();
  const bars = new Map<string, string>();
  const flush = (): void => {
    const emit = (key: string, lines: readonly Line[], label: string): void => {
      const n = printed.get(key) ?? 0;
      for (const l of lines.slice(n)) {
        const who = label === "" ? "" : `[${label}] `;
        const pre = l.kind === "in" ? `${label}: ` : l.kind === "out" ? "me: " : l.kind === "unprotected" ? `[NOT ENCRYPTED] ${label}: ` : l.kind === "info" ? `${who}* ` : l.kind === "warn" ? `${who}! ` : `${who}x `;
        output.write(`${pre}${l.text}\n`);
      }
      printed.set(key, lines.length);
    };
    emit("", app.model.console, "");
    for (const c of app.model.conversations.values()) {
      const h = protectionText(c).text;
      if (headers.get(c.bare) !== h) {
        headers.set(c.bare, h);
        output.write(`[${c.bare}] ${h}\n`);
      }
      emit(c.bare, c.lines, c.bare);
      if (c.transfer && (c.transfer.state === "done" || c.transfer.state === "failed") && bars.get(c.bare) !== `${c.transfer.id}`) {
        bars.set(c.bare, `${c.transfer.id}`);
        output.write(`[${c.bare}] ${progressBar(c.transfer, 60)}\n`);
      }
    }
    for (const a of app.model.alerts) if (!alertsShown.has(a.id)) {
      alertsShown.add(a.id);
      output.write(`${alertText(a)}\n`);
    }
  };
  let queued = false;
  const off = app.onChange(() => {
    if (queued) return;
    queued = true;
    setImmediate(() => {
      queued = false;
      flush();
    });
  });
  flush();
  const rl = createInterface({ input, terminal: false });
  return new Promise<void>((resolve) => {
    let busy: Promise<void> = Promise.resolve();
    const done = (): void => {
      off();
      rl.close();
      resolve();
    };
    rl.on("line", (line) => {
      busy = busy.then(async () => {
        await app.submit(line);
        flush();
        if (app.quitRequested) done();
      });
    });
    rl.on("close", () => {
      void busy.then(() => {
        off();
        resolve();
      });
    });
  });
}

/** Reads a secret without echo (raw mode on a TTY; a plain line otherwise). */
export function promptHidden(question: string, input: NodeJS.ReadStream, output: NodeJS.WriteStream): Promise<string> {
  output.write(question);
  if (!input.isTTY) {
    return new Promise((resolve) => {
      const rl = createInterface({ input, terminal: false });
      rl.once("line", (l) => {
        rl.close();
        resolve(l);
      });
      rl.once("close", () => resolve(""));
    });
  }
  return new Promise((resolve, reject) => {
    let buf = "";
    input.setRawMode(true);
    input.resume();
    input.setEncoding("utf8");
    const onData = (d: string): void => {
      for (const ch of d) {
        if (ch === "\r" || ch === "\n") {
          cleanup();
          output.write("\n");
          resolve(buf);
          return;
        }
        if (ch === "\u0003") {
          cleanup();
          output.write("\n");
          reject(new Error("cancelled"));
          return;
        }
        if (ch === "\u007f" || ch === "\b") buf = [...buf].slice(0, -1).join("");
        else if (ch >= " ") buf += ch;
      }
    };
    const cleanup = (): void => {
      input.off("data", onData);
      input.setRawMode(false);
      input.pause();
    };
    input.on("data", onData);
  });
}
