/**
 * Interop: the archive key from device one to device two over an Encrypted Session through
 * a real Prosody 0.12 (`xmpp-e2e archive serve-key` / `request-key`, src/archive/key-transfer.ts).
 * Device one archives a conversation (XEP-0049 private storage), serves its key; device two
 * (no key, no cache) negotiates an ESession with device one, both users compare the SAS,
 * device one's user approves, device two stores the key and reads the server's archive.
 *
 * Spec: XEP-0241 v0.1 section 2 (every client of the user reads the archive); XEP-0200 v0.2
 * (the key travels inside the session); XEP-0116 v0.16 section 4.7.2 (SAS); XEP-0049 v1.2.
 * docs/archive.md "Bringing the key to another device". Everything on 127.0.0.1.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { nodeCrypto } from "../../src/crypto/node.js";
import { SeededRandom } from "../../src/core/testing.js";
import { MemoryStore } from "../../src/store/memory.js";
import { ARCHIVE_POLICY, archiveFor, type ArchiveCliIo, run } from "../../src/cli/archive.js";
import type { ProsodyInstance } from "../harness/prosody.js";
import { bodies, privateStorageProsody, shut, side, waitFor } from "./offline-helpers.js";

let server: ProsodyInstance;
let root: string;
privateStorageProsody("archive-key-transfer-interop-", ["alice", "bob"], (s, d) => {
  server = s;
  root = d;
});

interface Cli {
  readonly done: Promise<number>;
  readonly out: string[];
  readonly err: string[];
  readonly questions: string[];
}

function cli(argv: string[], o: { env?: Record<string, string>; answer?: (q: string) => string | undefined; interrupted?: Promise<void> } = {}): Cli {
  const out: string[] = [];
  const err: string[] = [];
  const questions: string[] = [];
  const io: ArchiveCliIo = {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    env: o.env ?? {},
    now: () => Date.now(),
    secret: async () => undefined,
    random: new SeededRandom(nodeCrypto, `cli-${argv.join(" ")}`),
    ask: async (q) => {
      questions.push(q);
      return o.answer?.(q);
    },
    interrupted: () => o.interrupted ?? new Promise<void>(() => undefined),
  };
  return { done: run(argv, io), out, err, questions };
}

async function until(f: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${server.logTail(15)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("device two obtains the archive key from device one over an ESession through Prosody and opens the archive", { timeout: 120_000 }, async () => {
  const one = join(root, "one");
  const two = join(root, "two");
  const account = "alice@localhost";
  const env = { XMPP_E2E_PASSWORD: "alice-pw" };
  assert.equal(await cli(["init", "--account", account, "--dir", one]).done, 0);

  // Device one archives a conversation with Bob (both sides allow logging).
  const alice = await side(server, "alice", "one", { store: new MemoryStore(), policy: { logging: [...ARCHIVE_POLICY.logging] } });
  const bob = await side(server, "bob", "desk", { store: new MemoryStore(), policy: { logging: [...ARCHIVE_POLICY.logging] } });
  const archive = await archiveFor(alice.client, account, { dir: one, connection: alice.conn, domain: server.domain, notice: () => undefined });
  await alice.client.startSession(bob.conn.jid);
  await alice.client.sendMessage(bob.conn.jid, "KEY-TRANSFER one");
  await waitFor(bob, (e) => bodies(e).length >= 1, "first message at bob", server);
  await bob.client.sendMessage(alice.conn.jid, "KEY-TRANSFER two");
  await waitFor(alice, (e) => bodies(e).length >= 1, "reply at alice", server);
  await archive.close();
  await shut(alice, bob);

  // Device two has no key: it cannot read anything yet.
  const before = await cli(["list", "--account", account, "--dir", two, "--server", server.service], { env }).done;
  assert.equal(before, 1);

  // Device one serves; device two requests. Both users compare the SAS and say yes.
  const holder = cli(["serve-key", "--account", account, "--dir", one, "--server", server.service, "--resource", "holder", "--once"], { env, answer: () => "y" });
  await until(() => holder.out.some((l) => l.startsWith("serving archive key")), "serve-key to be online");
  const asker = cli(["request-key", "--from", "holder", "--account", account, "--dir", two, "--server", server.service, "--resource", "newphone", "--timeout", "60"], {
    env,
    answer: () => "y",
  });
  const code = await asker.done;
  assert.equal(code, 0, `${asker.err.join("\n")}\n${asker.out.join("\n")}\n${holder.out.join("\n")}\n${server.logTail(15)}`);
  assert.equal(await holder.done, 0, holder.err.join("\n"));
  const sasAsker = asker.out.find((l) => l.startsWith("SAS of the session"))?.split(": ").pop();
  const sasHolder = holder.out.find((l) => l.startsWith("SAS of the session"))?.split(": ").pop();
  assert.ok(sasAsker !== undefined && sasAsker === sasHolder, "both devices showed the same SAS");
  assert.ok(holder.questions.some((q) => q.startsWith("Send archive key")), "the holder's user approved");
  assert.ok(holder.out.some((l) => l.startsWith("sent archive key")));
  const k1 = JSON.parse(readFileSync(join(one, `${account}.archive-key.json`), "utf8")) as { name: string; key: string };
  const k2 = JSON.parse(readFileSync(join(two, `${account}.archive-key.json`), "utf8")) as { name: string; key: string };
  assert.equal(k2.name, k1.name);
  assert.equal(k2.key, k1.key);
  for (const l of [...asker.out, ...asker.err, ...holder.out, ...holder.err]) assert.ok(!l.includes(k1.key), "the key is never printed");

  // Device two opens the archive from the server's private storage.
  const list = cli(["list", "--account", account, "--dir", two, "--server", server.service, "--json"], { env });
  assert.equal(await list.done, 0, list.err.join("\n"));
  const rows = JSON.parse(list.out.join("\n")) as { id: string; messages: number; readable: boolean }[];
  assert.equal(rows.length, 1);
  assert.equal(rows[0]!.readable, true);
  assert.equal(rows[0]!.messages, 2);
  const show = cli(["show", rows[0]!.id, "--account", account, "--dir", two, "--server", server.service, "--json"], { env });
  assert.equal(await show.done, 0, show.err.join("\n"));
  const shown = JSON.parse(show.out.join("\n")) as { messages: { direction: string; body: string }[] };
  assert.deepEqual(
    shown.messages.map((m) => [m.direction, m.body]),
    [
      ["sent", "KEY-TRANSFER one"],
      ["received", "KEY-TRANSFER two"],
    ],
  );
});
