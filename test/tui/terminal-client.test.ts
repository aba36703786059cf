/**
 * The terminal client used as a person uses it: two people (Alice and Bob) run
 * `xmpp-e2e tui` in terminals (tmux windows) against a real Prosody on loopback. Alice
 * creates her account file with --init and types her password at the prompt; they add
 * each other, see presence, Alice types a message (an Encrypted Session is negotiated
 * first), both see the same SAS and confirm it, they exchange S/MIME-encrypted objects
 * (RFC 3923), a file goes over XTLS with a progress bar
 * and the certificate alerts, then Bob comes back with a new key and Alice gets the
 * key-changed alert and acts on it.
 *
 * Spec: XEP-0210 section 3 (usability requirements), XEP-0116 v0.16 sections 4.7.2, 7.4,
 * XEP-0217 v0.1, XEP-0200 v0.2, draft-meyer-xmpp-e2e-encryption-02 section 5, RFC 6121.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";
import { writeConfig } from "../../src/tui/config.js";
import { TmuxServer, type Pane } from "./tmux.js";

const ROOT = resolve(import.meta.dirname, "../..");
const TUI = [process.execPath, "--import", "tsx", join(ROOT, "src/cli/tui.ts")];

let prosody: ProsodyInstance;
let tmux: TmuxServer;
let dir: string;

before(async () => {
  prosody = await startProsody({ users: [["alice", "alice-pw"], ["bob", "bob-pw"]] });
  tmux = new TmuxServer(`xmpp-e2e-tui-${process.pid}`);
  dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-tui-"));
});

after(async () => {
  await tmux?.kill();
  await prosody?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const env = (extra: Record<string, string> = {}): Record<string, string> => ({
  TERM: "xterm-256color",
  HOME: dir,
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  NODE_OPTIONS: "",
  ...extra,
});

async function bobTerminal(name: string, configDir: string): Promise<Pane> {
  const config = join(configDir, "config.json");
  writeConfig(config, { jid: "bob@localhost", service: prosody.service });
  const pane = await tmux.start(name, [...TUI, "--config", config], env({ XMPP_E2E_PASSWORD: "bob-pw" }));
  await pane.waitFor(/Logged in as bob@localhost/);
  return pane;
}

test("two people chat encrypted in the terminal client: login, presence, SAS, S/MIME object, file over XTLS, key-changed alert", { timeout: 150_000 }, async () => {
  try {
    await scenario();
  } catch (e) {
    // Show every terminal as it was, so a failure reads like a bug report.
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n${await tmux.dump()}`);
  }
});

async function scenario(): Promise<void> {
  // --- Alice creates her account file and logs in, typing her password at the prompt.
  const aliceConfig = join(dir, "alice", "config.json");
  const alice = await tmux.start("alice", [...TUI, "--init", "--jid", "alice@localhost", "--service", prosody.service, "--config", aliceConfig], env());
  await alice.waitFor(/Password for alice@localhost:/);
  await alice.type("alice-pw");
  await alice.waitFor(/Logged in as alice@localhost/);
  assert.equal(statSync(aliceConfig).mode & 0o777, 0o600, "the account file is 0600");
  assert.ok(!readFileSync(aliceConfig, "utf8").includes("alice-pw"), "the password is not in the account file");
  // The screen shows neither the password nor a stray echo of it.
  assert.ok(!(await alice.screen()).includes("alice-pw"));

  const bob = await bobTerminal("bob", join(dir, "bob1"));

  // --- /help is there.
  await alice.type("/help");
  await alice.waitFor(/\/confirm\s+the SAS matches/);

  // --- Contacts and presence: Alice adds Bob, Bob allows her (and asks back; auto-approved).
  await alice.type("/add bob@localhost");
  await bob.waitFor(/alice@localhost asks to see when you are online/);
  await bob.waitFor(/\/allow alice@localhost/);
  await bob.type("/allow alice@localhost");
  await alice.waitFor(/1 \* bob@localhost/);
  await bob.waitFor(/1 \* alice@localhost/);

  // --- Alice opens the conversation: not encrypted yet, and says so.
  await alice.type("/open 1");
  await alice.waitFor(/NOT ENCRYPTED/);
  // Typing a message negotiates first; it is never sent in the clear.
  await alice.type("hello Bob, this is Alice");
  await alice.waitFor(/ENCRYPTED \(ESession: X25519, AES256-CTR, SHA512\)/);
  const aliceSas = (await alice.waitFor(/SAS: (\S{5}) /))[1];
  await bob.waitFor(/alice@localhost: hello Bob, this is Alice/);
  const bobSas = (await bob.waitFor(/SAS: (\S{5}) /))[1];
  assert.ok(aliceSas && aliceSas === bobSas, `both see the same SAS (${aliceSas} / ${bobSas})`);
  await alice.waitFor(/UNVERIFIED: compare SAS/);
  await alice.waitFor(/me: hello Bob, this is Alice/);

  // --- They compare the SAS and confirm it.
  await alice.type("/confirm");
  await bob.type("/confirm");
  await alice.waitFor(/ENCRYPTED \(ESession[^\n]*\| VERIFIED/);
  await bob.waitFor(/ENCRYPTED \(ESession[^\n]*\| VERIFIED/);
  await bob.type("hi Alice, SAS matched");
  await alice.waitFor(/bob@localhost: hi Alice, SAS matched/);

  // --- Object encryption (RFC 3923): one message signed and encrypted with S/MIME, the
  // certificate fetched from Bob's PEP node; both sides show the "[object]" indicator.
  await alice.type("/object signed and sealed with S/MIME");
  await alice.waitFor(/me \[object\]: signed and sealed with S\/MIME/, 30_000);
  await bob.waitFor(/alice@localhost \[object\]: signed and sealed with S\/MIME/, 30_000);
  await bob.type("/object and back, as an object");
  await alice.waitFor(/bob@localhost \[object\]: and back, as an object/, 30_000);

  // --- A file over XTLS: Bob accepts it, both take the certificate leap of faith.
  const file = join(dir, "report.bin");
  const data = randomBytes(48 * 1024);
  writeFileSync(file, data);
  await alice.type(`/send ${file}`);
  const offer = (await bob.waitFor(/\[(\d+)\] \/accept \d+ \| \/dismiss \d+ :: alice@localhost\/tui wants to send you a file/))[1];
  await bob.type(`/accept ${offer}`);
  const bobCert = (await bob.waitFor(/\[(\d+)\] \/trust-cert \d+ \| \/dismiss \d+ :: alice@localhost\/tui's XTLS certificate is not verified/))[1];
  await bob.type(`/trust-cert ${bobCert}`);
  const aliceCert = (await alice.waitFor(/\[(\d+)\] \/trust-cert \d+ \| \/dismiss \d+ :: bob@localhost\/tui's XTLS certificate is not verified/))[1];
  await alice.type(`/trust-cert ${aliceCert}`);
  await alice.waitFor(/XTLS tunnel open \(encrypted by: XTLS TLS\S* x509/, 40_000);
  await bob.waitFor(/XTLS tunnel open \(encrypted by: XTLS TLS\S* x509/, 40_000);
  await alice.waitFor(/sending report\.bin \[#+\] 100% 49152\/49152 B done/, 40_000);
  await alice.waitFor(/sent report\.bin \(49152 bytes\) over XTLS/);
  await bob.waitFor(/received report\.bin/, 40_000);
  const downloads = join(dir, "bob1", "downloads");
  const got = readFileSync(join(downloads, readdirSync(downloads)[0] ?? "missing"));
  assert.equal(createHash("sha256").update(got).digest("hex"), createHash("sha256").update(data).digest("hex"));

  // --- Bob quits and comes back on a fresh installation: a new key. Alice is alerted.
  await bob.type("/quit");
  await bob.waitFor(/\[exited 0\]/);
  await alice.waitFor(/encrypted session ended by bob@localhost/);
  const bob2 = await bobTerminal("bob2", join(dir, "bob2"));
  await bob2.type("/allow alice@localhost");
  await alice.waitFor(/1 \* bob@localhost/);
  await alice.type("are you still there?");
  const alert = (await alice.waitFor(/\[(\d+)\] \/trust \d+ \| \/dismiss \d+ :: bob@localhost presented a different public key/))[1];
  await alice.waitFor(/NOT sent \(no encrypted session\): are you still there\?/);
  await alice.waitFor(/alerts?: \/alerts/);
  // She checks the fingerprint with Bob, then trusts the new key and encrypts again.
  await alice.type(`/trust ${alert}`);
  await alice.waitFor(/accepted for bob@localhost; \/encrypt to start a new session/);
  await alice.type("/encrypt");
  await alice.waitFor(/ENCRYPTED \(ESession[^\n]*\| UNVERIFIED: compare SAS/);
  await alice.type("welcome back");
  await bob2.waitFor(/alice@localhost: welcome back/);

  await alice.type("/quit");
  await alice.waitFor(/\[exited 0\]/);
  assert.ok(existsSync(join(dir, "alice", "alice@localhost.db")));
}
