/**
 * The web client's IndexedDB store (src/web/idb-store.ts) in Debian's Chromium: the same
 * scripted sequence of operations gives exactly the reference MemoryStore's results
 * (retained secrets, SAS state, identities, peer keys and trust decisions), and what it
 * stored survives closing and reopening the database.
 *
 * Spec: src/store/types.ts and src/store/trust-types.ts (XEP-0116 v0.16 sections 4.7.2,
 * 4.7.3, 4.8.1, 7.3, 7.4; XEP-0217 v0.1 4.5.4, 4.6.1); W3C Indexed Database API 3.0.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { build } from "esbuild";
import { chromium, type Browser } from "playwright-core";
import { serveWeb, type WebServer } from "../../src/cli/web.js";

const CHROMIUM = "/usr/bin/chromium";
let dir: string;
let web: WebServer;
let browser: Browser;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is not installed (${CHROMIUM}); .ci/run installs it`);
  dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-idb-"));
  await build({
    entryPoints: [resolve(import.meta.dirname, "idb-store-page.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["chrome110"],
    outfile: join(dir, "page.js"),
    logLevel: "silent",
  });
  writeFileSync(join(dir, "index.html"), '<!doctype html><meta charset="utf-8"><title>idb store</title><script type="module" src="page.js"></script>');
  web = await serveWeb(dir, { port: 0 });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"] });
});

after(async () => {
  await browser?.close();
  await web?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("IdbStore behaves exactly like MemoryStore and persists across reopen", { timeout: 60_000 }, async () => {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(web.url);
  await page.waitForFunction(() => window.__result !== undefined, undefined, { timeout: 30_000 });
  const r = (await page.evaluate(() => window.__result)) as {
    error?: string;
    memory: unknown[];
    idb: unknown[];
    persistence: { closedError: string; sameId: boolean; secret: number[]; verifiedChain: boolean; sas: { confirmed: boolean }; keys: string[]; settings: { service: string }; json: string };
  };
  assert.equal(r.error, undefined, r.error);
  assert.deepEqual(errors, []);
  assert.ok(r.memory.length > 50);
  for (let i = 0; i < r.memory.length; i++) assert.deepEqual(r.idb[i], r.memory[i], `step ${JSON.stringify((r.memory[i] as unknown[])[0])}`);
  assert.equal(r.idb.length, r.memory.length);
  // Sanity: the script exercised both outcomes.
  assert.ok(r.memory.some((x) => (x as unknown[])[1] === "StoreError:not-found"));
  assert.ok(r.memory.some((x) => (x as unknown[])[1] === "RangeError"));

  const p = r.persistence;
  assert.equal(p.closedError, "io");
  assert.equal(p.sameId, true);
  assert.equal(p.secret.length, 32);
  assert.equal(p.verifiedChain, true);
  assert.equal(p.sas.confirmed, true);
  assert.deepEqual(p.keys, ["fp"]);
  assert.equal(p.settings.service, "ws://127.0.0.1:1/xmpp-websocket");
  assert.ok(!p.json.includes(String(p.secret.slice(0, 8))), "the secret does not leak through JSON");
  assert.match(p.json, /redacted/);
  await page.close();
});
