/**
 * The web client's identity key at work, in Debian's Chromium driven by playwright-core,
 * through a real Prosody over WebSocket: two people in two browser contexts negotiate with
 * both non-extractable Ed25519 keys signing (XEP-0116 'key' both ways, asynchronously through
 * WebCrypto), each page shows the key the other proved and it is the one the other's
 * keystore reports; the peer's fingerprint is in the IndexedDB trust store, so when Bob's
 * browser loses its key and makes a new one, Alice's page raises the key-changed alert and
 * ends the session, as the terminal does. Then a Node user with an Ed25519 identity key
 * (src/identity/keyfile.ts, src/client/keys.ts) starts a session with a browser user over
 * Prosody: keys both ways, each side verified the other's. A screenshot is kept under
 * test-artifacts/web-signed-session.png.
 *
 * Spec: XEP-0116 v0.16 sections 4.3-4.5 (SIGMA with public keys), 7.3-7.4 (fingerprints,
 * key alerts); RFC 8032 (Ed25519); RFC 7395 (WebSocket).
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { connectXmpp } from "../../src/adapters/xmpp-client.js";
import { keyVerifier, signingIdentity } from "../../src/client/keys.js";
import { type ClientEvent, SecureClient } from "../../src/client/secure-client.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { createIdentityKey } from "../../src/identity/keyfile.js";
import { keyFingerprint } from "../../src/identity/keyvalue.js";
import type { WebServer } from "../../src/cli/web.js";
import { MemoryStore } from "../../src/store/memory.js";
import { TrustManager } from "../../src/trust/index.js";
import { peerKeyFingerprint } from "../../src/web/verifier.js";
import type { ProsodyInstance } from "../harness/prosody.js";
import { webWithProsody } from "./fixture.js";

const ROOT = resolve(import.meta.dirname, "../..");
const ARTIFACTS = join(ROOT, "test-artifacts");

let prosody: ProsodyInstance;
let web: WebServer;
let browser: Browser;
let dir: string;

webWithProsody("xmpp-e2e-websign-", ["alice", "bob", "dave"], (env) => {
  ({ prosody, web, browser, dir } = env);
});

async function login(page: Page, user: string, password: string, resource: string): Promise<void> {
  await page.fill("#jid", `${user}@localhost`);
  await page.fill("#password", password);
  await page.fill("#resource", resource);
  await page.click("#login-btn");
  await page.waitForSelector("#main:not([hidden])", { timeout: 20_000 }).catch(async (e: unknown) => {
    throw new Error(`${user} could not log in: ${await page.textContent("#login-error")} (${String(e)})`);
  });
}

async function person(user: string, password: string, resource: string): Promise<Page> {
  const page = await (await browser.newContext()).newPage();
  await page.goto(web.url);
  await login(page, user, password, resource);
  return page;
}

const text = async (p: Page, sel: string): Promise<string> => (await p.textContent(sel)) ?? "";
const waitText = (p: Page, sel: string, needle: string, timeout = 20_000): Promise<unknown> =>
  p.waitForFunction(([s, n]) => document.querySelector(s)?.textContent?.includes(n) === true, [sel, needle] as const, { timeout });

interface AuthShown {
  readonly auth: string;
  readonly peerFingerprint: string;
  readonly initPubkey: string;
  readonly respPubkey: string;
}

async function authOf(p: Page): Promise<AuthShown> {
  await p.waitForSelector('#auth[data-auth="key"]:not([hidden])', { timeout: 20_000 });
  return p.$eval("#auth", (e) => {
    const d = (e as HTMLElement).dataset;
    return { auth: d.auth ?? "", peerFingerprint: d.peerFingerprint ?? "", initPubkey: d.initPubkey ?? "", respPubkey: d.respPubkey ?? "" };
  });
}

test("two browsers negotiate with both identity keys signing; each shows the other's key; a new key raises the key-changed alert", { timeout: 150_000 }, async () => {
  const alice = await person("alice", "alice-pw", "web");
  const bob = await person("bob", "bob-pw", "web");
  const aliceFp = await text(alice, "#fingerprint");
  const bobFp = await text(bob, "#fingerprint");
  assert.match(aliceFp, /^[A-Za-z0-9+/]{43}=$/);
  assert.notEqual(aliceFp, bobFp);

  await alice.fill("#peer", "bob@localhost/web");
  await alice.click("#open-btn");
  await alice.fill("#text", "Signed by my browser's key");
  await alice.click("#send");
  await waitText(bob, "#messages", "Signed by my browser's key");
  await bob.click('#contacts button[data-jid="alice@localhost"]');
  const a = await authOf(alice);
  const b = await authOf(bob);
  // Alice started: init_pubkey is hers, resp_pubkey Bob's; both 'key'.
  assert.deepEqual([a.initPubkey, a.respPubkey, b.initPubkey, b.respPubkey], ["key", "key", "key", "key"]);
  assert.equal(a.peerFingerprint, bobFp, "Alice's page shows the key Bob's keystore holds");
  assert.equal(b.peerFingerprint, aliceFp, "Bob's page shows the key Alice's keystore holds");
  assert.match(await text(alice, "#auth"), /identified by key .* \(trusted on first use\): compare SAS/);
  // The SAS still binds the session; confirming it verifies the key too.
  assert.equal(await text(alice, "#sas"), await text(bob, "#sas"));
  await alice.click("#sas-match");
  await waitText(alice, "#protection", "| VERIFIED");
  await waitText(alice, "#auth", "verified by key");
  mkdirSync(ARTIFACTS, { recursive: true });
  await alice.screenshot({ path: join(ARTIFACTS, "web-signed-session.png"), fullPage: true });

  // Bob's browser loses its identity key (profile reset): the next login makes a new one.
  await bob.evaluate(
    () =>
      new Promise<void>((res, rej) => {
        const r = indexedDB.open("xmpp-e2e");
        r.onsuccess = () => {
          const t = r.result.transaction("identity", "readwrite");
          t.objectStore("identity").delete("bob@localhost");
          t.oncomplete = () => {
            r.result.close();
            res();
          };
          t.onerror = () => rej(new Error("delete failed"));
        };
      }),
  );
  await bob.reload();
  await bob.fill("#password", "bob-pw");
  await bob.click("#login-btn");
  await bob.waitForSelector("#main:not([hidden])", { timeout: 20_000 });
  const bobNewFp = await text(bob, "#fingerprint");
  assert.notEqual(bobNewFp, bobFp, "a new key");
  await alice.fill("#text", "Is that still you?");
  await alice.click("#send");
  // The trust store (IndexedDB) remembers Bob's first key: the new one is an alert, the session ends.
  await alice.waitForSelector('#alerts li[data-kind="key-changed"] button[data-action="trust"]', { timeout: 30_000 });
  assert.ok((await text(alice, '#alerts li[data-kind="key-changed"]')).includes(`presented a different public key (${bobNewFp})`));
  await waitText(alice, "#protection", "NOT ENCRYPTED");
  assert.ok(await alice.locator("#auth").isHidden(), "no key claim for an ended session");
  await alice.screenshot({ path: join(ARTIFACTS, "web-key-changed.png"), fullPage: true });
  await alice.context().close();
  await bob.context().close();
});

test("a Node user with an Ed25519 identity key and a browser user negotiate through Prosody with keys both ways", { timeout: 120_000 }, async () => {
  const page = await person("alice", "alice-pw", "keys");
  const browserFp = await text(page, "#fingerprint");
  const key = createIdentityKey("ed25519", Date.now());
  const store = new MemoryStore();
  const conn = await connectXmpp({ service: prosody.service, domain: "localhost", username: "dave", password: "dave-pw", resource: "node" });
  const dave = new SecureClient({
    connection: conn,
    store,
    trust: new TrustManager({ store, crypto: nodeCrypto }),
    identity: signingIdentity(key),
    verifier: keyVerifier(),
    policy: { offerPubkey: ["key", "none"], acceptPubkey: ["key", "hash", "none"] },
  });
  const events: ClientEvent[] = [];
  dave.on((e) => events.push(e));
  try {
    await dave.announce();
    const est = await dave.startSession("alice@localhost/keys");
    assert.equal(est.initPubkey, "key");
    assert.equal(est.respPubkey, "key");
    assert.ok(est.peerKey, "the browser proved its key");
    assert.equal(peerKeyFingerprint(nodeCrypto, est.peerKey.keyValue), browserFp, "the key the Node user verified is the browser's keystore key");
    const trust = events.find((e): e is Extract<ClientEvent, { type: "trust" }> => e.type === "trust");
    assert.equal(trust?.verdict.fingerprint, browserFp);
    await dave.sendMessage("alice@localhost/keys", "Hello from Node, signed with Ed25519");
    await waitText(page, "#messages", "Hello from Node, signed with Ed25519");
    await page.click('#contacts button[data-jid="dave@localhost"]');
    const shown = await authOf(page);
    assert.deepEqual([shown.initPubkey, shown.respPubkey], ["key", "key"]);
    assert.equal(shown.peerFingerprint, keyFingerprint(nodeCrypto, key.publicKey), "the browser verified and recorded the Node user's key");
    const got = new Promise<string>((res) =>
      dave.on((e) => {
        if (e.type === "message" && e.body !== undefined) res(e.body);
      }),
    );
    await page.fill("#text", "Hi Dave, from the browser");
    await page.click("#send");
    assert.equal(await got, "Hi Dave, from the browser");
  } finally {
    await dave.close().catch(() => undefined);
    await conn.close().catch(() => undefined);
    await page.context().close();
  }
});
