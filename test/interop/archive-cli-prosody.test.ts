/**
 * Interop: `xmpp-e2e archive` against a real Prosody 0.12 (XEP-0049 private storage via
 * mod_private). Device one archives a conversation through archiveFor (attachArchive on
 * its SecureClient, local cache + server store), exports its archive key; device two, a
 * separate config directory with no cache, imports the key and lists and shows the
 * conversation from the server; device one lists cache + server without doubling a
 * message.
 *
 * Spec: XEP-0136 v1.3.1 sections 3.2, 7.1, 7.2, 8; XEP-0241 v0.1 section 2; XEP-0049 v1.2.
 * Everything runs on 127.0.0.1 with a private Prosody.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { nodeCrypto } from "../../src/crypto/node.js";
import { SeededRandom } from "../../src/core/testing.js";
import { MemoryStore } from "../../src/store/memory.js";
import { ARCHIVE_POLICY, archiveFor, type ArchiveCliIo, run } from "../../src/cli/archive.js";
import type { ProsodyInstance } from "../harness/prosody.js";
import { bodies, privateStorageProsody, shut, side, waitFor } from "./offline-helpers.js";

let server: ProsodyInstance;
let root: string;
privateStorageProsody("archive-cli-interop-", ["alice", "bob"], (s, d) => {
  server = s;
  root = d;
});

const PASS = "two devices, one key";

async function cli(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: ArchiveCliIo = {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    env,
    now: () => Date.now(),
    secret: async () => undefined,
    random: new SeededRandom(nodeCrypto, `cli-${argv.join(" ")}`),
  };
  const code = await run(argv, io);
  return { code, out: out.join("\n"), err: err.join("\n") };
}

test("two devices: one archives through Prosody, the other imports the key and reads the server", { timeout: 120_000 }, async () => {
  const one = join(root, "one");
  const two = join(root, "two");
  const account = "alice@localhost";
  assert.equal((await cli(["init", "--account", account, "--dir", one])).code, 0);

  // Device one: a chat that archives (both sides allow logging).
  const alice = await side(server, "alice", "one", { store: new MemoryStore(), policy: { logging: [...ARCHIVE_POLICY.logging] } });
  const bob = await side(server, "bob", "desk", { store: new MemoryStore(), policy: { logging: [...ARCHIVE_POLICY.logging] } });
  const notices: string[] = [];
  const archive = await archiveFor(alice.client, account, { dir: one, connection: alice.conn, domain: server.domain, notice: (l) => notices.push(l) });
  assert.equal(archive.server, "private", "Prosody 0.12 offers XEP-0049 private storage");
  await alice.client.startSession(bob.conn.jid);
  await alice.client.sendMessage(bob.conn.jid, "ARCHIVE-CLI one");
  await waitFor(bob, (e) => bodies(e).length >= 1, "first message at bob", server);
  await bob.client.sendMessage(alice.conn.jid, "ARCHIVE-CLI two");
  await waitFor(alice, (e) => bodies(e).length >= 1, "reply at alice", server);
  await alice.client.sendMessage(bob.conn.jid, "ARCHIVE-CLI three");
  await waitFor(bob, (e) => bodies(e).length >= 2, "third message at bob", server);
  await archive.close();
  await shut(alice, bob);
  assert.ok(notices.some((n) => n.includes("archiving this session")), notices.join("\n"));
  assert.ok(!notices.some((n) => n.includes("could not save")), notices.join("\n"));

  // Device one moves its key; device two (no cache) reads the server's store.
  const exp = join(root, "alice-key.xml");
  const e = await cli(["export-key", "--account", account, "--dir", one, "--out", exp, "--iterations", "10000"], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS });
  assert.equal(e.code, 0, e.err);
  const i = await cli(["import-key", exp, "--account", account, "--dir", two], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS });
  assert.equal(i.code, 0, i.err);

  const env = { XMPP_E2E_PASSWORD: "alice-pw" };
  const noServer = await cli(["list", "--account", account, "--dir", two, "--json"]);
  assert.deepEqual(JSON.parse(noServer.out), [], "device two has no local cache");
  const list = await cli(["list", "--account", account, "--dir", two, "--server", server.service, "--json"], env);
  assert.equal(list.code, 0, `${list.err}\n${server.logTail(10)}`);
  const rows = JSON.parse(list.out) as { id: string; with: string; messages: number; sources: string[] }[];
  assert.equal(rows.length, 1);
  assert.equal(rows[0]!.with, bob.conn.jid);
  assert.equal(rows[0]!.messages, 3);
  assert.deepEqual(rows[0]!.sources, ["server"]);

  const show = await cli(["show", rows[0]!.id, "--account", account, "--dir", two, "--server", server.service, "--json"], env);
  assert.equal(show.code, 0, show.err);
  const shown = JSON.parse(show.out) as { messages: { direction: string; body: string }[] };
  assert.deepEqual(
    shown.messages.map((m) => [m.direction, m.body]),
    [
      ["sent", "ARCHIVE-CLI one"],
      ["received", "ARCHIVE-CLI two"],
      ["sent", "ARCHIVE-CLI three"],
    ],
  );
  const text = await cli(["show", rows[0]!.id.slice(0, 5), "--account", account, "--dir", two, "--server", server.service], env);
  assert.match(text.out, /me → bob@localhost\/desk: ARCHIVE-CLI one/);
  assert.match(text.out, /bob@localhost\/desk → me: ARCHIVE-CLI two/);

  // Device one reads its cache and the server: the same conversation, each message once.
  const both = await cli(["list", "--account", account, "--dir", one, "--server", server.service, "--json"], env);
  assert.equal(both.code, 0, both.err);
  const bothRows = JSON.parse(both.out) as { id: string; messages: number; sources: string[] }[];
  assert.equal(bothRows.length, 1);
  assert.equal(bothRows[0]!.id, rows[0]!.id);
  assert.deepEqual(bothRows[0]!.sources, ["cache", "server"]);
  assert.equal(bothRows[0]!.messages, 3);

  // A wrong password is a typed, readable error.
  const wrong = await cli(["list", "--account", account, "--dir", two, "--server", server.service], { XMPP_E2E_PASSWORD: "not-it" });
  assert.equal(wrong.code, 1);
  assert.match(wrong.err, /refused the login of alice@localhost/);
  assert.ok(!wrong.err.includes("not-it"));
});
