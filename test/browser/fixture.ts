/**
 * Test fixture for the browser tests: a Prosody with XMPP over WebSocket (RFC 7395) for the
 * given users (password "<user>-pw"), the web client built into a scratch directory and
 * served by `xmpp-e2e web`'s server, and a headless Chromium; started before a file's tests
 * and stopped after them.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { chromium, type Browser } from "playwright-core";
import { serveWeb, type WebServer } from "../../src/cli/web.js";
import { buildWeb } from "../../src/web/build.js";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";

export const CHROMIUM = "/usr/bin/chromium";

export interface WebEnv {
  readonly dir: string;
  readonly prosody: ProsodyInstance;
  readonly web: WebServer;
  readonly browser: Browser;
}

export function webWithProsody(prefix: string, users: readonly string[], use: (env: WebEnv) => void): void {
  let dir: string | undefined;
  let prosody: ProsodyInstance | undefined;
  let web: WebServer | undefined;
  let browser: Browser | undefined;
  before(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`Chromium is not installed (${CHROMIUM}): the browser tests need it; .ci/run installs it with apt-get install -y chromium`);
    dir = mkdtempSync(join(tmpdir(), prefix));
    prosody = await startProsody({ users: users.map((u): [string, string] => [u, `${u}-pw`]), websocket: true });
    await buildWeb(join(dir, "site"));
    web = await serveWeb(join(dir, "site"), { port: 0, service: prosody.wsService ?? "", domain: "localhost" });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    use({ dir, prosody, web, browser });
  });
  after(async () => {
    await browser?.close();
    await web?.close();
    await prosody?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
}
