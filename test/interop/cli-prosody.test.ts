/**
 * The CLI against a real Prosody, as a user runs it: `xmpp-e2e demo --server ...` and two
 * `xmpp-e2e chat` processes talking to each other through the server, confirming the SAS.
 *
 * Spec: XEP-0217 (both sides show the same SAS; confirmation is remembered), XEP-0200.
 */
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";

const BIN = new URL("../../bin/xmpp-e2e.js", import.meta.url).pathname;
let server: ProsodyInstance;
let dir: string;

before(async () => {
  server = await startProsody({ users: [["alice", "a-pw"], ["bob", "b-pw"]] });
  dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-cli-"));
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("demo --server runs the whole conversation through Prosody", () => {
  const r = spawnSync(
    process.execPath,
    [BIN, "demo", "--server", server.service, "--domain", "localhost", "--alice", "alice:a-pw", "--bob", "bob:b-pw"],
    { encoding: "utf8", timeout: 60_000 },
  );
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const a = /^alice SAS: (\S+)$/m.exec(r.stdout)?.[1];
  const b = /^bob SAS: (\S+)$/m.exec(r.stdout)?.[1];
  assert.ok(a && a === b, r.stdout);
  assert.match(r.stdout, /\[bob reads\] Hello Bob/);
  assert.match(r.stdout, /no plaintext crossed the server/);
});

class Proc {
  out = "";
  /** Captured at spawn: a process may exit before anyone waits for it. */
  readonly exited: Promise<number | null>;
  constructor(readonly p: ChildProcessWithoutNullStreams) {
    this.exited = new Promise((resolve) => p.once("exit", (code) => resolve(code)));
    p.stdout.on("data", (d: Buffer) => (this.out += d.toString()));
    p.stderr.on("data", (d: Buffer) => (this.out += d.toString()));
  }
  async waitFor(re: RegExp, ms = 20_000): Promise<RegExpExecArray> {
    const end = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.out);
      if (m) return m;
      if (Date.now() > end) throw new Error(`timed out waiting for ${re}; output:\n${this.out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  say(line: string): void {
    this.p.stdin.write(`${line}\n`);
  }
}

function chat(user: string, pass: string, extra: string[]): Proc {
  const p = spawn(
    process.execPath,
    [BIN, "chat", "--jid", `${user}@localhost/cli`, "--service", server.service, "--store", join(dir, `${user}.db`), ...extra],
    { env: { ...process.env, XMPP_E2E_PASSWORD: pass } },
  );
  return new Proc(p);
}

test("two chat processes: SAS shown on both sides, confirmed, messages exchanged, nothing in the clear", { timeout: 60_000 }, async () => {
  const bob = chat("bob", "b-pw", []);
  await bob.waitFor(/connected as bob@localhost\/cli/);
  const alice = chat("alice", "a-pw", ["--to", "bob@localhost/cli"]);
  try {
    const sa = (await alice.waitFor(/SAS: (\S+)/))[1];
    const sb = (await bob.waitFor(/SAS: (\S+)/))[1];
    assert.equal(sa, sb);
    alice.say("/yes");
    await alice.waitFor(/SAS confirmed and remembered/);
    alice.say("hello from the terminal");
    await bob.waitFor(/alice@localhost\/cli: hello from the terminal/);
    bob.say("hi alice");
    await alice.waitFor(/bob@localhost\/cli: hi alice/);
    assert.doesNotMatch(bob.out + alice.out, /\(unencrypted\)/);
    alice.say("/quit");
    await bob.waitFor(/session ended by peer/);
    bob.say("/quit");
    assert.deepEqual(await Promise.all([alice.exited, bob.exited]), [0, 0]);
  } finally {
    alice.p.kill();
    bob.p.kill();
  }
});

/** Creates an Ed25519 identity key for alice and bob in stores named by `tag`. */
function createKeys(tag: string): void {
  for (const user of ["alice", "bob"]) {
    const r = spawnSync(process.execPath, [BIN, "keys", "create", "--jid", `${user}@localhost`, "--alg", "ed25519", "--store", join(dir, `${user}-${tag}.db`)], {
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  }
}

/** A `chat` process for `user` on resource `tag`, with that tag's store. */
function keyedChat(user: string, pass: string, tag: string, extra: string[]): Proc {
  return new Proc(
    spawn(process.execPath, [BIN, "chat", "--jid", `${user}@localhost/${tag}`, "--service", server.service, "--store", join(dir, `${user}-${tag}.db`), ...extra], {
      env: { ...process.env, XMPP_E2E_PASSWORD: pass },
    }),
  );
}

/** Alice says `line`, Bob reads it, both quit cleanly. */
async function exchangeAndQuit(alice: Proc, bob: Proc, tag: string, line: string): Promise<void> {
  alice.say(line);
  await bob.waitFor(new RegExp(`alice@localhost/${tag}: ${line}`));
  alice.say("/quit");
  await bob.waitFor(/session ended by peer/);
  bob.say("/quit");
  assert.deepEqual(await Promise.all([alice.exited, bob.exited]), [0, 0]);
}

test("keys create + chat --messages 3: a key-authenticated SIGMA-I session through Prosody, keys recorded as trusted", { timeout: 60_000 }, async () => {
  createKeys("k");
  const bob = keyedChat("bob", "b-pw", "k", ["--messages", "3"]);
  await bob.waitFor(/connected as bob@localhost\/k/);
  const alice = keyedChat("alice", "a-pw", "k", ["--messages", "3", "--to", "bob@localhost/k"]);
  try {
    await alice.waitFor(/bob@localhost\/k's key: accepted \(/);
    await bob.waitFor(/alice@localhost\/k's key: accepted \(/);
    assert.doesNotMatch(alice.out, /SAS:/, "no SAS in a 3-message negotiation");
    await exchangeAndQuit(alice, bob, "k", "signed hello");
  } finally {
    alice.p.kill();
    bob.p.kill();
  }
});

test("chat publishes the user's key (XEP-0189) and a peer fetches it, so 'hash' identification works on first contact", { timeout: 60_000 }, async () => {
  createKeys("pep");
  // Bob logs in first and publishes his key; Alice has never seen it.
  const bob = keyedChat("bob", "b-pw", "pep", ["--auth", "hash"]);
  await bob.waitFor(/connected as bob@localhost\/pep/);
  await new Promise((r) => setTimeout(r, 500));
  const alice = keyedChat("alice", "a-pw", "pep", ["--auth", "hash", "--to", "bob@localhost/pep", "--messages", "3"]);
  try {
    await alice.waitFor(/bob@localhost\/pep's key: accepted \(/);
    await exchangeAndQuit(alice, bob, "pep", "hash-identified hello");
  } finally {
    alice.p.kill();
    bob.p.kill();
  }
});
