/**
 * `xmpp-e2e web --local` as a person runs it: one command builds and serves the page and
 * starts a local Prosody with two demo accounts; two people log in with the printed
 * passwords in Chromium and talk encrypted; Ctrl-C (SIGTERM) stops the page server and
 * Prosody.
 *
 * Spec: RFC 7395 (the page's WebSocket endpoint), XEP-0217 v0.1 / XEP-0200 v0.2 (the
 * conversation), XEP-0210 section 3 (a working setup in one step).
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";

const ROOT = resolve(import.meta.dirname, "../..");
const CHROMIUM = "/usr/bin/chromium";
let proc: ChildProcess | undefined;
let browser: Browser | undefined;
const dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-web-local-"));

after(async () => {
  await browser?.close();
  if (proc && proc.exitCode === null) proc.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

function accepts(port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = connect({ host: "127.0.0.1", port });
    s.once("connect", () => (s.destroy(), r(true)));
    s.once("error", () => r(false));
  });
}

async function login(page: Page, url: string, jid: string, password: string): Promise<void> {
  await page.goto(url);
  await page.fill("#jid", jid);
  await page.fill("#password", password);
  await page.click("#login-btn");
  await page.waitForSelector("#main:not([hidden])", { timeout: 20_000 });
}

test("xmpp-e2e web --local: one command, two demo accounts, an encrypted conversation; SIGTERM stops everything", { timeout: 120_000 }, async () => {
  assert.ok(existsSync(CHROMIUM), "Chromium is installed (.ci/run installs it)");
  const p = spawn(process.execPath, ["--import", "tsx", join(ROOT, "src/cli/web.ts"), "--local", "--port", "0", "--out", join(dir, "site")], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  proc = p;
  let out = "";
  p.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  p.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const started = Date.now();
  while (!/xmpp-e2e web client: (http:\S+)/.test(out)) {
    if (p.exitCode !== null || Date.now() - started > 60_000) throw new Error(`web --local did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const url = /xmpp-e2e web client: (http:\S+)/.exec(out)?.[1] ?? "";
  const accounts = [...out.matchAll(/demo account: (\S+)\s+password: (\S+)/g)].map((m) => [m[1] ?? "", m[2] ?? ""] as const);
  assert.deepEqual(
    accounts.map((a) => a[0]),
    ["alice@localhost", "bob@localhost"],
  );
  const ws = /local XMPP server \(Prosody, loopback only\): ws:\/\/127\.0\.0\.1:(\d+)\/xmpp-websocket and xmpp:\/\/127\.0\.0\.1:(\d+)/.exec(out);
  assert.ok(ws, out);
  assert.match(out, /terminal client: XMPP_E2E_PASSWORD=\S+ xmpp-e2e tui --init --jid bob@localhost --service xmpp:\/\/127\.0\.0\.1:\d+/);

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"] });
  const [alice, bob] = [await (await browser.newContext()).newPage(), await (await browser.newContext()).newPage()];
  const [a, b] = accounts;
  assert.ok(a && b);
  await login(alice, url, a[0], a[1]);
  await login(bob, url, b[0], b[1]);
  await alice.fill("#peer", "bob@localhost/web");
  await alice.click("#open-btn");
  await alice.fill("#text", "hello from the one-command setup");
  await alice.click("#send");
  await bob.waitForFunction(() => document.querySelector("#messages")?.textContent?.includes("hello from the one-command setup"), undefined, { timeout: 30_000 });
  assert.match((await alice.textContent("#protection")) ?? "", /ENCRYPTED \(ESession/);
  assert.equal(await alice.textContent("#sas"), await bob.textContent("#sas"));

  p.kill("SIGTERM");
  const code = await new Promise<number | null>((r) => (p.exitCode !== null ? r(p.exitCode) : p.once("exit", (c) => r(c))));
  assert.equal(code, 0, out);
  assert.equal(await accepts(Number(ws[1])), false, "Prosody's WebSocket port is closed");
  assert.equal(await accepts(Number(ws[2])), false, "Prosody's c2s port is closed");
});
