/**
 * The web client used as people use it, in Debian's Chromium driven by playwright-core:
 * two people in two browser contexts log in to a real Prosody over WebSocket, negotiate an
 * Encrypted Session, see the same SAS, confirm it and exchange messages; what Prosody
 * relays over the WebSocket is ciphertext; they add each other as contacts, act on alerts
 * with their buttons, and after a page reload the SAS confirmation and the retained
 * secret (IndexedDB) carry the next session. Then a browser user and a terminal user (the
 * tmux-driven `xmpp-e2e tui`) talk to each other encrypted. A screenshot of the
 * conversation view is kept under test-artifacts/.
 *
 * Spec: RFC 7395 (XMPP over WebSocket), XEP-0217 v0.1 (SAS), XEP-0200 v0.2 (<c/> on the
 * wire), XEP-0210 section 3.
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";
import type { Browser, Page } from "playwright-core";
import type { WebServer } from "../../src/cli/web.js";
import { writeConfig } from "../../src/tui/config.js";
import type { ProsodyInstance } from "../harness/prosody.js";
import { TmuxServer } from "../tui/tmux.js";
import { webWithProsody } from "./fixture.js";

const ROOT = resolve(import.meta.dirname, "../..");
const ARTIFACTS = join(ROOT, "test-artifacts");
const NS_C = "http://www.xmpp.org/extensions/xep-0200.html#ns";

let prosody: ProsodyInstance;
let web: WebServer;
let browser: Browser;
let dir: string;

webWithProsody("xmpp-e2e-web-", ["alice", "bob", "carol"], (env) => {
  ({ prosody, web, browser, dir } = env);
});

interface Person {
  readonly page: Page;
  /** Every frame the server sent this browser over the WebSocket. */
  readonly frames: string[];
}

async function person(user: string, password: string, resource: string): Promise<Person> {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const frames: string[] = [];
  page.on("websocket", (ws) => ws.on("framereceived", (f) => frames.push(typeof f.payload === "string" ? f.payload : f.payload.toString("utf8"))));
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(web.url);
  await page.fill("#jid", `${user}@localhost`);
  await page.fill("#password", password);
  await page.fill("#resource", resource);
  await page.click("#login-btn");
  await page.waitForSelector("#main:not([hidden])", { timeout: 20_000 }).catch(async (e: unknown) => {
    throw new Error(`${user} could not log in: ${await page.textContent("#login-error")} ${errors.join("; ")} (${String(e)})`);
  });
  assert.match((await page.textContent("#fingerprint")) ?? "", /^[A-Za-z0-9+/]{43}=$/, "the identity key's fingerprint is shown");
  return { page, frames };
}

async function login(p: Person, user: string, password: string): Promise<void> {
  await p.page.fill("#password", password);
  await p.page.click("#login-btn");
  await p.page.waitForSelector("#main:not([hidden])", { timeout: 20_000 }).catch(async (e: unknown) => {
    throw new Error(`${user} could not log in again: ${await p.page.textContent("#login-error")} (${String(e)})`);
  });
}

const text = async (p: Person, sel: string): Promise<string> => (await p.page.textContent(sel)) ?? "";
const waitText = (p: Person, sel: string, needle: string, timeout = 20_000): Promise<unknown> =>
  p.page.waitForFunction(([s, n]) => document.querySelector(s)?.textContent?.includes(n) === true, [sel, needle] as const, { timeout });

test("two people in two browsers: contacts, encrypted session, same SAS, confirm, messages, ciphertext on the wire; after a reload the trust and the retained secret are still there", { timeout: 150_000 }, async () => {
  const alice = await person("alice", "alice-pw", "web");
  const bob = await person("bob", "bob-pw", "web");
  // The identity key is non-extractable in IndexedDB.
  const extractable = await alice.page.evaluate(
    () =>
      new Promise<boolean>((res, rej) => {
        const r = indexedDB.open("xmpp-e2e");
        r.onsuccess = () => {
          const g = r.result.transaction("identity").objectStore("identity").get("alice@localhost");
          g.onsuccess = () => res((g.result as { privateKey: CryptoKey }).privateKey.extractable);
          g.onerror = () => rej(new Error("no key"));
        };
      }),
  );
  assert.equal(extractable, false);

  // Contacts: Alice adds Bob; Bob allows her from the alert (and asks back, auto-approved).
  await alice.page.fill("#add-jid", "bob@localhost");
  await alice.page.click("#add-btn");
  await bob.page.waitForSelector('#alerts li[data-kind="subscription"] button[data-action="allow"]', { timeout: 20_000 });
  await bob.page.click('#alerts li[data-kind="subscription"] button[data-action="allow"]');
  await alice.page.waitForSelector('#contacts button[data-jid="bob@localhost"][data-presence="online"]', { timeout: 20_000 });
  await bob.page.waitForSelector('#contacts button[data-jid="alice@localhost"][data-presence="online"]', { timeout: 20_000 });

  await alice.page.click('#contacts button[data-jid="bob@localhost"]');
  assert.match(await text(alice, "#protection"), /NOT ENCRYPTED/);
  await alice.page.fill("#text", "Hello Bob, from Alice's browser");
  await alice.page.click("#send");
  await waitText(alice, "#protection", "ENCRYPTED (ESession");
  await waitText(bob, "#messages", "Hello Bob, from Alice's browser");
  const aliceSas = await text(alice, "#sas");
  const bobSas = await text(bob, "#sas");
  assert.ok(/^\S{5}$/.test(aliceSas), `a SAS is shown (${aliceSas})`);
  assert.equal(aliceSas, bobSas, "both people see the same SAS");
  assert.match(await text(alice, "#protection"), /UNVERIFIED: compare SAS/);
  assert.match(await text(alice, "#messages"), /ESession\s*\d\d:\d\d me: Hello Bob/, "the message carries its encrypted-by indicator");

  // Alice confirms with the SAS box, Bob with the buttons of the "not verified yet" alert.
  await alice.page.click("#sas-match");
  await bob.page.click('#alerts li[data-kind="sas-never-confirmed"] button[data-action="confirm"]');
  await waitText(alice, "#protection", "| VERIFIED");
  await waitText(bob, "#protection", "| VERIFIED");
  assert.equal(await bob.page.locator('#alerts li[data-kind="sas-never-confirmed"]').count(), 0, "the alert is resolved by its action");

  await bob.page.fill("#text", "Hi Alice, the code matched");
  await bob.page.click("#send");
  await waitText(alice, "#messages", "Hi Alice, the code matched");

  // What Prosody relayed: <c/> elements, never the text.
  const relayed = [...alice.frames, ...bob.frames].join("\n");
  assert.ok(relayed.includes(NS_C), "encrypted <c/> elements were relayed");
  assert.ok(!relayed.includes("Hello Bob, from Alice"), "Alice's message never crossed the server in the clear");
  assert.ok(!relayed.includes("the code matched"), "Bob's message never crossed the server in the clear");

  mkdirSync(ARTIFACTS, { recursive: true });
  await alice.page.screenshot({ path: join(ARTIFACTS, "web-conversation.png"), fullPage: true });

  // Both reload the page: the login form remembers the account (not the password), and
  // IndexedDB still holds the retained secret and the SAS confirmation, so the next
  // session continues the verified chain without comparing again.
  await alice.page.reload();
  await bob.page.reload();
  assert.equal(await alice.page.inputValue("#jid"), "alice@localhost");
  assert.equal(await alice.page.inputValue("#password"), "");
  await login(bob, "bob", "bob-pw");
  await login(alice, "alice", "alice-pw");
  await alice.page.waitForSelector('#contacts button[data-jid="bob@localhost"][data-presence="online"]', { timeout: 20_000 });
  await alice.page.click('#contacts button[data-jid="bob@localhost"]');
  await alice.page.fill("#text", "Still you, Bob?");
  await alice.page.click("#send");
  await waitText(bob, "#messages", "Still you, Bob?");
  await waitText(alice, "#messages", "retained secret matched");
  await waitText(bob, "#messages", "retained secret matched");
  await waitText(alice, "#protection", "| VERIFIED");
  await waitText(bob, "#protection", "| VERIFIED");
  assert.equal(await alice.page.locator('#alerts li[data-kind="retained-secret-mismatch"]').count(), 0);
  assert.equal(await alice.page.locator('#alerts li[data-kind="sas-never-confirmed"]').count(), 0);
  assert.ok(await alice.page.locator("#sas-box").isHidden(), "nothing to compare again");
  await alice.page.screenshot({ path: join(ARTIFACTS, "web-after-reload.png"), fullPage: true });
  await alice.page.context().close();
  await bob.page.context().close();
});

test("a browser user and a terminal user talk encrypted", { timeout: 120_000 }, async () => {
  const tmux = new TmuxServer(`xmpp-e2e-web-${process.pid}`);
  try {
    const cfg = join(dir, "carol", "config.json");
    writeConfig(cfg, { jid: "carol@localhost", service: prosody.service });
    const carol = await tmux.start("carol", [process.execPath, "--import", "tsx", join(ROOT, "src/cli/tui.ts"), "--config", cfg], {
      TERM: "xterm-256color",
      HOME: dir,
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      XMPP_E2E_PASSWORD: "carol-pw",
    });
    await carol.waitFor(/Logged in as carol@localhost/);
    const alice = await person("alice", "alice-pw", "browser");
    await alice.page.fill("#peer", "carol@localhost/tui");
    await alice.page.click("#open-btn");
    await alice.page.fill("#text", "Hello Carol in your terminal");
    await alice.page.click("#send");
    await carol.waitFor(/alice@localhost: Hello Carol in your terminal/);
    const termSas = (await carol.waitFor(/SAS: (\S{5}) /))[1];
    assert.equal(await alice.page.textContent("#sas"), termSas, "the browser and the terminal show the same SAS");
    await carol.type("/confirm");
    await alice.page.click("#sas-match");
    await carol.waitFor(/ENCRYPTED \(ESession[^\n]*\| VERIFIED/);
    await carol.type("Hi Alice, from the terminal");
    await alice.page.waitForFunction(() => document.querySelector("#messages")?.textContent?.includes("Hi Alice, from the terminal"), undefined, { timeout: 20_000 });
    assert.ok(!alice.frames.join("\n").includes("Hi Alice, from the terminal"));
    assert.ok(alice.frames.join("\n").includes(NS_C));
    mkdirSync(ARTIFACTS, { recursive: true });
    await alice.page.screenshot({ path: join(ARTIFACTS, "web-with-terminal.png"), fullPage: true });
    await carol.type("/quit");
    await carol.waitFor(/\[exited 0\]/);
    await alice.page.context().close();
  } catch (e) {
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n${await tmux.dump()}`);
  } finally {
    await tmux.kill();
  }
});
