/**
 * Interop: the encrypted history of Encrypted Sessions through a real Prosody 0.12, which
 * has no XEP-0136 module but offers XEP-0049 private XML storage (mod_private).
 * - logging allowed (XEP-0155 'logging' = may): device one archives a conversation into
 *   its SQLite cache and the server, restarts (new connection, reopened cache) and reads
 *   it back from both; device two, holding the archive key (imported from a
 *   passphrase-protected export), reads it from the server;
 * - logging not allowed ('mustnot'): nothing of the content and no archive entry is on
 *   disk: the client's SQLite files (db, -wal, -shm) and Prosody's whole data directory
 *   are scanned (the first test's entries are the positive control of the scan).
 *
 * Spec: XEP-0136 v1.3.1 section 3.2 (OTR: "MUST NOT allow messages sent in either
 * direction to be archived in any way"), XEP-0241 v0.1 section 2 (encrypted collections),
 * XEP-0049 v1.2 (private storage). Everything runs on 127.0.0.1 with a private Prosody.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { systemRandom } from "../../src/crypto/node.js";
import { MemoryStore } from "../../src/store/memory.js";
import {
  ArchiveManager,
  type ArchiveKey,
  attachArchive,
  discoverArchiveStore,
  exportArchiveKey,
  importArchiveKey,
  IqClient,
  newArchiveKey,
  openSqliteArchiveCache,
  readArchive,
  type AttachmentEvent,
} from "../../src/archive/index.js";
import type { ProsodyInstance } from "../harness/prosody.js";
import { bodies, privateStorageProsody, shut, side, type Side, waitFor } from "./offline-helpers.js";

let server: ProsodyInstance;
let dir: string;
privateStorageProsody("archive-interop-", ["alice", "bob", "carol", "dave"], (s, d) => {
  server = s;
  dir = d;
});

/** Every file under `root`, recursively. */
function files(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root).flatMap((n) => {
    const p = join(root, n);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

function sqliteFiles(path: string): string[] {
  return [path, `${path}-wal`, `${path}-shm`].filter((p) => existsSync(p));
}

function filesContaining(paths: readonly string[], needle: string): string[] {
  return paths.filter((p) => readFileSync(p).includes(needle));
}

async function archivingSide(user: string, resource: string, logging: readonly ("may" | "mustnot")[], key: ArchiveKey, dbPath: string) {
  const s = await side(server, user, resource, { store: new MemoryStore(), policy: { logging } });
  const iq = new IqClient(s.conn, systemRandom);
  const remote = await discoverArchiveStore(iq, server.domain, { deviceId: resource });
  assert.equal(remote?.kind, "private", "Prosody 0.12 offers private storage, not XEP-0136");
  const cache = openSqliteArchiveCache(dbPath);
  const events: AttachmentEvent[] = [];
  const att = attachArchive(s.client, {
    manager: new ArchiveManager({ key, random: systemRandom }),
    stores: [cache, remote!.store],
    onEvent: (e) => events.push(e),
  });
  return { s, iq, remote: remote!.store, cache, att, events };
}

async function converse(a: Side, b: Side, lines: readonly [who: "a" | "b", text: string][]): Promise<void> {
  const est = a.client.startSession(b.conn.jid);
  await est;
  let toB = 0;
  let toA = 0;
  for (const [who, text] of lines) {
    if (who === "a") {
      await a.client.sendMessage(b.conn.jid, text);
      toB++;
      await waitFor(b, (evs) => bodies(evs).length >= toB, `message ${toB} at ${b.conn.jid}`, server);
    } else {
      await b.client.sendMessage(a.conn.jid, text);
      toA++;
      await waitFor(a, (evs) => bodies(evs).length >= toA, `message ${toA} at ${a.conn.jid}`, server);
    }
  }
}

const LINES: readonly ["a" | "b", string][] = [
  ["a", "ARCHIVE-PLAIN-1 shall I compare thee"],
  ["b", "ARCHIVE-PLAIN-2 to a summer's day"],
  ["a", "ARCHIVE-PLAIN-3 thou art more lovely"],
  ["b", "ARCHIVE-PLAIN-4 and more temperate"],
];

test("logging allowed: the encrypted archive survives a restart and opens on the second device", { timeout: 120_000 }, async () => {
  const key = newArchiveKey(systemRandom);
  const dbPath = join(dir, "alice-one.db");
  const one = await archivingSide("alice", "one", ["may", "mustnot"], key, dbPath);
  const bob = await side(server, "bob", "desk", { store: new MemoryStore(), policy: { logging: ["may", "mustnot"] } });
  await converse(one.s, bob, LINES);
  await one.att.flushed();
  assert.deepEqual(
    one.events.filter((e) => e.type === "store-failed"),
    [],
  );
  assert.ok(one.events.some((e) => e.type === "recording"));
  one.att.detach();
  one.iq.close();
  one.cache.close();
  await shut(one.s, bob);
  const expected = LINES.map(([, t]) => t);

  // Only ciphertext reached the disk, on both sides of the wire.
  const prosodyFiles = files(join(server.dir, "data"));
  assert.deepEqual(filesContaining([...sqliteFiles(dbPath), ...prosodyFiles], "ARCHIVE-PLAIN"), []);
  assert.ok(filesContaining(prosodyFiles, "EncryptedData").length > 0, "the collection is in Prosody's private storage");

  // Device one restarts: a new connection and the reopened cache.
  const oneAgain = await side(server, "alice", "one", { store: new MemoryStore() });
  const cacheAgain = openSqliteArchiveCache(dbPath);
  const fromCache = await readArchive(cacheAgain, key);
  assert.deepEqual(fromCache.length, 1);
  assert.deepEqual(
    fromCache[0]!.items.flatMap((i) => (i.kind === "to" || i.kind === "from" ? i.bodies : [])),
    expected,
  );
  assert.deepEqual(
    fromCache[0]!.items.map((i) => i.kind),
    ["to", "from", "to", "from"],
  );
  const iqAgain = new IqClient(oneAgain.conn, systemRandom);
  const remoteAgain = (await discoverArchiveStore(iqAgain, server.domain, { deviceId: "one" }))!.store;
  const fromServer = await readArchive(remoteAgain, key);
  assert.deepEqual(
    fromServer[0]!.items.flatMap((i) => (i.kind === "to" || i.kind === "from" ? i.bodies : [])),
    expected,
  );
  cacheAgain.close();
  iqAgain.close();

  // Device two: gets the key from a passphrase-protected export, reads from the server.
  const exported = exportArchiveKey(key, "a long passphrase for device two", systemRandom, { iterations: 20_000 });
  const two = await side(server, "alice", "two", { store: new MemoryStore() });
  const iqTwo = new IqClient(two.conn, systemRandom);
  const remoteTwo = (await discoverArchiveStore(iqTwo, server.domain, { deviceId: "two" }))!.store;
  const keyTwo = importArchiveKey(exported, "a long passphrase for device two");
  const onTwo = await readArchive(remoteTwo, keyTwo);
  assert.equal(onTwo.length, 1);
  assert.equal(onTwo[0]!.with, bob.conn.jid);
  assert.deepEqual(
    onTwo[0]!.items.flatMap((i) => (i.kind === "to" || i.kind === "from" ? i.bodies : [])),
    expected,
  );
  // Without the key, device two sees collections it cannot open.
  await assert.rejects(readArchive(remoteTwo, newArchiveKey(systemRandom)));
  iqTwo.close();
  await shut(oneAgain, two);
});

test("logging not allowed: nothing of the content, and no archive entry, is on disk", { timeout: 120_000 }, async () => {
  const key = newArchiveKey(systemRandom);
  const dbPath = join(dir, "carol.db");
  const carol = await archivingSide("carol", "pc", ["mustnot"], key, dbPath);
  const dave = await side(server, "dave", "pad", { store: new MemoryStore(), policy: { logging: ["may", "mustnot"] } });
  const lines: ["a" | "b", string][] = [
    ["a", "OTR-PLAIN-1 meet me at midnight"],
    ["b", "OTR-PLAIN-2 by the old oak"],
    ["a", "OTR-PLAIN-3 come alone"],
  ];
  await converse(carol.s, dave, lines);
  await carol.att.flushed();
  assert.ok(carol.events.some((e) => e.type === "off-the-record"));
  assert.ok(!carol.events.some((e) => e.type === "store"));
  assert.equal(carol.events.filter((e) => e.type === "not-archived").length, 3);
  assert.deepEqual(await carol.remote.list(), []);
  carol.att.detach();
  carol.iq.close();
  carol.cache.close();
  await shut(carol.s, dave);

  const onDisk = [...sqliteFiles(dbPath), ...files(join(server.dir, "data"))];
  assert.ok(onDisk.length > 0);
  assert.deepEqual(filesContaining(onDisk, "OTR-PLAIN"), [], "no plaintext anywhere");
  const carolFiles = onDisk.filter((p) => p.startsWith(dbPath) || /carol/i.test(p));
  for (const needle of ["EncryptedData", "EncryptedKey", "urn:xmpp-e2e:archive", "urn:xmpp:archive"])
    assert.deepEqual(filesContaining(carolFiles, needle), [], `no archive entry (${needle})`);
  assert.ok(!files(join(server.dir, "data")).some((p) => p.includes("private") && /carol/i.test(p)), "no private storage for carol");
});
