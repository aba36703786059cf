/**
 * The archive layer: the sans-IO manager honours the negotiated XEP-0155 'logging'
 * (XEP-0136 v1.3.1 section 3.2: nothing archived in either direction when it is not
 * allowed), SecureClient sessions on the switchboard archived through attachArchive into
 * the SQLite cache (survives reopening, opens on a second device holding the archive key,
 * nothing on disk when logging is not allowed), and the two remote stores against
 * in-memory servers: XEP-0049 private storage (parts, per-device indexes) and XEP-0136
 * manual archiving with XEP-0059 paging.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { StanzaConnection } from "../../src/adapters/connection.js";
import { SeededRandom } from "../../src/core/testing.js";
import { type FullJid, parseFullJid } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { el, elements, type Element, NS } from "../../src/xml/index.js";
import {
  type Chat,
  ArchiveManager,
  attachArchive,
  chatToXml,
  discoverArchiveStore,
  exportArchiveKey,
  importArchiveKey,
  IqClient,
  MemoryArchiveStore,
  mergeItems,
  newArchiveKey,
  NS_ARCHIVE,
  NS_PRIVATE,
  openCollection,
  openSqliteArchiveCache,
  parseArchivePayload,
  PrivateStorageArchive,
  readArchive,
  refKey,
  Xep0136Archive,
  ArchiveError,
} from "../../src/archive/index.js";
import { makePair } from "../sim/pair.js";

const rnd = (s: string): SeededRandom => new SeededRandom(nodeCrypto, s);
const bodiesOf = (items: readonly { kind: string; bodies?: readonly string[] }[]): string[] => items.flatMap((i) => [...(i.bodies ?? [])]);

test("manager: logging 'may' emits encrypted saves; 'mustnot', unknown and ended sessions emit none", () => {
  const key = newArchiveKey(rnd("m-key"));
  const m = new ArchiveManager({ key, random: rnd("m") });
  m.sessionEstablished("bob@x/1", "t1", "may", 1_700_000_000_000);
  m.message("bob@x/1", "to", "secret plan", 1_700_000_001_000);
  m.message("bob@x/1", "from", "agreed", 1_700_000_002_000);
  const evs = m.drain();
  assert.deepEqual(
    evs.map((e) => e.type),
    ["recording", "store", "store"],
  );
  const saves = evs.flatMap((e) => (e.type === "store" ? [e.op.chat] : []));
  for (const c of saves) {
    assert.equal(c.crypt, true);
    assert.equal(c.subject, undefined);
    assert.ok(!chatToXml(c).toString().includes("secret plan"));
  }
  const store = new MemoryArchiveStore();
  const merged = saves.reduce<Chat>((a, c) => ({ ...a, items: mergeItems(a.items, c.items) }), { ...saves[0]!, items: [] });
  assert.equal(merged.items.filter((i) => i.kind === "encrypted-key").length, 1, "the data key is kept once");
  assert.deepEqual(bodiesOf(openCollection(merged, key).items), ["secret plan", "agreed"]);
  void store;

  m.sessionEstablished("carol@x/1", "t2", "mustnot", 1_700_000_003_000);
  m.message("carol@x/1", "to", "off the record", 1_700_000_004_000);
  m.message("carol@x/1", "from", "indeed", 1_700_000_004_500);
  m.message("dave@x/1", "from", "no session", 1_700_000_005_000);
  m.sessionEnded("bob@x/1");
  m.message("bob@x/1", "to", "after the end", 1_700_000_006_000);
  m.sessionEstablished("erin@x/1", "t3", "true", 1_700_000_007_000); // legacy/unknown: fail closed
  m.message("erin@x/1", "to", "legacy", 1_700_000_008_000);
  const rest = m.drain();
  assert.ok(rest.every((e) => e.type !== "store"), JSON.stringify(rest.map((e) => e.type)));
  assert.deepEqual(
    rest.filter((e) => e.type === "not-archived").map((e) => (e.type === "not-archived" ? e.reason : "")),
    ["off-the-record", "off-the-record", "no-session", "no-session", "off-the-record"],
  );
});

/** Every byte of the SQLite files (db, -wal, -shm) of `path`. */
function diskBytes(path: string): Buffer {
  return Buffer.concat([path, `${path}-wal`, `${path}-shm`].filter((p) => existsSync(p)).map((p) => readFileSync(p)));
}

async function chat(logging: readonly ("may" | "mustnot")[], dir: string, seed: string) {
  const pair = makePair({ seed, policy: { logging } });
  const key = newArchiveKey(rnd(`${seed}/key`));
  const dbPath = join(dir, "alice-archive.db");
  const cache = openSqliteArchiveCache(dbPath);
  const server = new MemoryArchiveStore();
  const events: string[] = [];
  const att = attachArchive(pair.alice, {
    manager: new ArchiveManager({ key, random: rnd(`${seed}/m`) }),
    stores: [cache, server],
    clock: pair.clock,
    onEvent: (e) => events.push(e.type),
  });
  const started = pair.alice.startSession(pair.bobJid);
  await pair.settle();
  await started;
  await pair.alice.sendMessage(pair.bobJid, "PLAINTEXT-alpha from alice");
  await pair.settle();
  await pair.bob.sendMessage(pair.aliceJid, "PLAINTEXT-beta from bob");
  await pair.settle();
  await pair.alice.sendMessage(pair.bobJid, "PLAINTEXT-gamma from alice");
  await pair.settle();
  await att.flushed();
  assert.deepEqual(pair.bodies("bob"), ["PLAINTEXT-alpha from alice", "PLAINTEXT-gamma from alice"]);
  assert.deepEqual(pair.bodies("alice"), ["PLAINTEXT-beta from bob"]);
  return { pair, key, dbPath, cache, server, events, att };
}

test("sessions with logging allowed are archived encrypted; the cache survives a restart and opens on a second device", async () => {
  const dir = mkdtempSync(join(tmpdir(), "archive-unit-"));
  try {
    const { key, dbPath, cache, server, events, att } = await chat(["may", "mustnot"], dir, "arch-may");
    assert.ok(events.includes("recording"), JSON.stringify(events));
    att.detach();
    const expected = ["PLAINTEXT-alpha from alice", "PLAINTEXT-beta from bob", "PLAINTEXT-gamma from alice"];
    const fromServer = await readArchive(server, key);
    assert.equal(fromServer.length, 1);
    assert.deepEqual(bodiesOf(fromServer[0]!.items), expected);
    assert.deepEqual(
      fromServer[0]!.items.map((i) => i.kind),
      ["to", "from", "to"],
    );
    cache.close();
    // Only ciphertext on disk.
    assert.ok(!diskBytes(dbPath).includes("PLAINTEXT"), "no plaintext in the SQLite files");
    // "Restart": reopen the file.
    const reopened = openSqliteArchiveCache(dbPath);
    assert.deepEqual(bodiesOf((await readArchive(reopened, key))[0]!.items), expected);
    // Second device: imports the key from a passphrase-protected export.
    const exported = exportArchiveKey(key, "device two passphrase", rnd("export"), { iterations: 10_000 });
    const key2 = importArchiveKey(exported, "device two passphrase");
    assert.deepEqual(bodiesOf((await readArchive(server, key2))[0]!.items), expected);
    // A device without the key reads nothing.
    await assert.rejects(readArchive(server, newArchiveKey(rnd("other"))), (e: unknown) => e instanceof ArchiveError && e.condition === "no-key");
    reopened.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("sessions with logging not allowed store nothing, not even encrypted", async () => {
  const dir = mkdtempSync(join(tmpdir(), "archive-unit-"));
  try {
    const { dbPath, cache, server, events, att, pair } = await chat(["mustnot"], dir, "arch-mustnot");
    att.detach();
    assert.ok(events.includes("off-the-record"), JSON.stringify(events));
    assert.ok(!events.includes("store"));
    assert.deepEqual(await server.list(), []);
    assert.deepEqual(await cache.list(), []);
    cache.close();
    const bytes = diskBytes(dbPath);
    assert.ok(!bytes.includes("PLAINTEXT"));
    assert.ok(!bytes.includes("EncryptedData") && !bytes.includes("EncryptedKey"), "no archive entry at all");
    // Nothing of the content crossed the switchboard in the clear either.
    assert.ok(pair.relayed.every((r) => !r.text.includes("PLAINTEXT")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("stores refuse plaintext items", async () => {
  const c: Chat = { with: "a@b/c", start: "2024-01-01T00:00:00Z", items: [{ kind: "to", utc: "x", bodies: ["hi"] }] };
  await assert.rejects(new MemoryArchiveStore().save(c), (e: unknown) => e instanceof ArchiveError && e.condition === "bad-format");
  const cache = openSqliteArchiveCache(":memory:");
  await assert.rejects(cache.save(c), (e: unknown) => e instanceof ArchiveError);
  cache.close();
});

// ---- remote stores against in-memory servers ------------------------------------------

/** A StanzaConnection whose iqs are answered by `serve` (null: no answer). */
function fakeServer(jid: string, serve: (iq: Element) => Element | null): StanzaConnection & { sent: Element[] } {
  const handlers = new Set<(s: Element) => void>();
  const sent: Element[] = [];
  return {
    jid: parseFullJid(jid) as FullJid,
    sent,
    send(s) {
      sent.push(s);
      const reply = serve(s);
      if (reply) setImmediate(() => handlers.forEach((h) => h(reply)));
      return Promise.resolve();
    },
    onStanza(h) {
      handlers.add(h);
      return () => handlers.delete(h);
    },
    close: () => Promise.resolve(),
  };
}

/** XEP-0049 in memory, keyed like Prosody's mod_private (name + namespace), per account. */
function privateStorage(db: Map<string, Element>, features: string[] = [NS_PRIVATE]) {
  return (iq: Element): Element | null => {
    const q = iq.getChild("query", NS_PRIVATE);
    if (iq.getChild("query", NS.disco)) {
      return el("iq", { type: "result", id: iq.attrs.id, from: "example.org" }, el("query", { xmlns: NS.disco }, ...features.map((v) => el("feature", { var: v }))));
    }
    const child = q ? elements(q)[0] : undefined;
    if (!q || !child) return el("iq", { type: "error", id: iq.attrs.id }, el("error", { type: "modify" }, el("bad-request", { xmlns: NS.stanzas })));
    const k = `${child.name}:${String(child.getNS())}`;
    if (iq.attrs.type === "get") {
      const stored = db.get(k);
      return el("iq", { type: "result", id: iq.attrs.id }, el("query", { xmlns: NS_PRIVATE }, stored ?? child));
    }
    db.set(k, child);
    return el("iq", { type: "result", id: iq.attrs.id });
  };
}

async function encryptedSaves(seed: string, peer: string, n: number, key = newArchiveKey(rnd(`${seed}/k`))) {
  const m = new ArchiveManager({ key, random: rnd(seed) });
  m.sessionEstablished(peer, `th-${seed}`, "may", 1_700_000_000_000);
  for (let i = 0; i < n; i++) m.message(peer, i % 2 ? "from" : "to", `message ${seed} ${i}`, 1_700_000_000_000 + i * 1000);
  return { key, saves: m.drain().flatMap((e) => (e.type === "store" ? [e.op.chat] : [])) };
}

test("XEP-0049 private storage: parts, per-device indexes, both devices' collections listed", async () => {
  const db = new Map<string, Element>();
  const c1 = fakeServer("alice@example.org/one", privateStorage(db));
  const c2 = fakeServer("alice@example.org/two", privateStorage(db));
  const iq1 = new IqClient(c1, rnd("iq1"));
  const iq2 = new IqClient(c2, rnd("iq2"));
  const found = await discoverArchiveStore(iq1, "example.org", { deviceId: "one", partBytes: 2048 });
  assert.equal(found?.kind, "private");
  const s1 = found!.store;
  const s2 = new PrivateStorageArchive(iq2, { deviceId: "two" });
  const { key, saves } = await encryptedSaves("d1", "bob@example.com/laptop", 12);
  for (const c of saves) await s1.save(c);
  const second = await encryptedSaves("d2", "carol@example.com/x", 2, key);
  for (const c of second.saves) await s2.save(c);
  assert.ok([...db.keys()].some((k) => k.endsWith(":1")), "the first collection was split into parts");
  // Nothing readable on the "server".
  for (const v of db.values()) assert.ok(!v.toString().includes("message d"), "no plaintext in private storage");
  // A third device (fresh process) with the key lists and opens both.
  const s3 = new PrivateStorageArchive(new IqClient(fakeServer("alice@example.org/three", privateStorage(db)), rnd("iq3")), { deviceId: "three" });
  const all = await readArchive(s3, key);
  assert.deepEqual(
    all.map((c) => bodiesOf(c.items).length),
    [12, 2],
  );
  assert.deepEqual(bodiesOf(all[0]!.items), Array.from({ length: 12 }, (_, i) => `message d1 ${i}`));
  // Device one restarts and appends to its collection: it reads its last part first.
  const s1b = new PrivateStorageArchive(new IqClient(fakeServer("alice@example.org/one", privateStorage(db)), rnd("iq1b")), { deviceId: "one", partBytes: 2048 });
  const more = await encryptedSaves("d1", "bob@example.com/laptop", 13, key);
  await s1b.save(more.saves[12]!);
  // (same seed: same collection; the 13th message is appended)
  const again = await readArchive(s3, key);
  assert.equal(bodiesOf(again[0]!.items).length, 13);
  iq1.close();
  iq2.close();
});

test("XEP-0136 server: manual save, list and retrieve with RSM paging; keys not resent", async () => {
  const collections = new Map<string, Chat>();
  const serve = (iq: Element): Element | null => {
    const id = iq.attrs.id;
    if (iq.getChild("query", NS.disco))
      return el("iq", { type: "result", id }, el("query", { xmlns: NS.disco }, ...["urn:xmpp:archive:manual", "urn:xmpp:archive:manage", NS_PRIVATE].map((v) => el("feature", { var: v }))));
    const p = parseArchivePayload(elements(iq)[0]!, iq.attrs.type as "get");
    if (p.kind === "save") {
      const k = refKey(p.chat);
      const old = collections.get(k);
      collections.set(k, { ...p.chat, items: [...(old?.items ?? []), ...p.chat.items] });
      return el("iq", { type: "result", id });
    }
    if (p.kind === "list") {
      const all = [...collections.values()];
      const from = p.set?.after !== undefined ? Number(p.set.after) + 1 : 0;
      const page = all.slice(from, from + (p.set?.max ?? 100));
      return el(
        "iq",
        { type: "result", id },
        el("list", { xmlns: NS_ARCHIVE }, ...page.map((c) => chatToXml({ ...c, items: [] }, false)), page.length > 0 && el("set", { xmlns: "http://jabber.org/protocol/rsm" }, el("first", { index: from }, String(from)), el("last", {}, String(from + page.length - 1)), el("count", {}, String(all.length)))),
      );
    }
    if (p.kind === "retrieve") {
      const c = collections.get(refKey(p));
      if (!c) return el("iq", { type: "error", id }, el("error", { type: "cancel" }, el("item-not-found", { xmlns: NS.stanzas })));
      const data = c.items.filter((i) => i.kind === "encrypted-data");
      const from = p.set?.after !== undefined ? Number(p.set.after) + 1 : 0;
      const page = data.slice(from, from + (p.set?.max ?? 100));
      // XEP-0241 5: with the page, every EncryptedKey its EncryptedData reference.
      const keys = c.items.filter((i) => i.kind === "encrypted-key");
      return el(
        "iq",
        { type: "result", id },
        chatToXml({ ...c, items: [...page, ...keys], set: { first: String(from), firstIndex: from, last: String(from + page.length - 1), count: data.length } }),
      );
    }
    return null;
  };
  const conn = fakeServer("alice@example.org/one", serve);
  const iq = new IqClient(conn, rnd("iq"));
  const found = await discoverArchiveStore(iq, "example.org", { deviceId: "one" });
  assert.equal(found?.kind, "xep-0136");
  const store = found!.store as Xep0136Archive;
  const a = await encryptedSaves("x1", "bob@example.com/laptop", 7);
  for (const c of a.saves) await store.save(c);
  const b = await encryptedSaves("x2", "carol@example.com/pda", 1, a.key);
  for (const c of b.saves) await store.save(c);
  const saveIqs = conn.sent.filter((s) => s.getChild("save", NS_ARCHIVE));
  assert.equal(saveIqs.filter((s) => s.toString().includes("EncryptedKey")).length, 2, "each collection's key is uploaded once");
  const paged = new Xep0136Archive(iq, 3);
  const all = await readArchive(paged, a.key);
  assert.deepEqual(
    all.map((c) => bodiesOf(c.items).length),
    [7, 1],
  );
  assert.equal(await paged.retrieve({ with: "nobody@x/y", start: "2000-01-01T00:00:00Z" }), undefined);
  iq.close();
});
