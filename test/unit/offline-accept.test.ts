/**
 * Accepting XEP-0187 offline ESessions safely: the publisher's one-time options are used
 * only by a VERIFIED start (their nonce is public in PEP, so anyone who can read it can
 * send a junk <init/> naming it), exactly once (two verified starts for one set, even on
 * two devices sharing the store at the same instant: one wins), and the sender's cipher and
 * hash must be among those the publisher offered (stored with the set; sets stored before
 * that was recorded stay readable, in SQLite and in PostgreSQL after the migration).
 *
 * Spec: XEP-0187 v0.5 section 3.3 (Bob's values are chosen from Alice's options), 3.4
 * (verify Bob's identity; use the stored x once, then destroy it), 6.1 (replay); XEP-0116
 * v0.16 (a response with a value that was not offered is not-acceptable).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import pg from "pg";
import { Switchboard } from "../../src/adapters/switchboard.js";
import { keyVerifier, signingIdentity } from "../../src/client/keys.js";
import { type ClientEvent, SecureClient } from "../../src/client/secure-client.js";
import { toBase64 } from "../../src/core/bytes.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { type FullJid, type Jid, parseFullJid, type ThreadId } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import type { SigningIdentity } from "../../src/esession/identity.js";
import { DEFAULT_POLICY, type Policy } from "../../src/esession/session.js";
import { createIdentityKey } from "../../src/identity/keyfile.js";
import { offlineInitOf, parseOfflineInit, parseOfflineOptions, type ParsedOfflineOptions } from "../../src/offline/codec.js";
import { OfflineError } from "../../src/offline/errors.js";
import { acceptOfflineSession, createOfflineOptions, type OfflineSecret, startOfflineSession, verifyOfflineOptions } from "../../src/offline/session.js";
import { MemoryStore } from "../../src/store/memory.js";
import { LEGACY_OFFERED_CRYPT_ALGS, MemoryOfflineStore, type OfflineStore } from "../../src/store/offline.js";
import { openSqliteOfflineStore } from "../../src/store/offline-sqlite.js";
import { openPgOfflineStore } from "../../src/store/postgres.js";
import { el, type Element, parseXml, serialize } from "../../src/xml/index.js";
import { startPostgres, type PostgresInstance } from "../harness/postgres.js";

const crypto = nodeCrypto;
const verifier = keyVerifier();
const aliceId = signingIdentity(createIdentityKey("ed25519", 0));
const bobId = signingIdentity(createIdentityKey("ed25519", 0));
const carolId = signingIdentity(createIdentityKey("ed25519", 0));
const malloryId = signingIdentity(createIdentityKey("ed25519", 0));
const ALICE = "alice@example.org" as Jid;
const T0 = Date.UTC(2026, 0, 1);

/** Alice's one-time options, as published (wire form) and as kept (secret). */
function publish(seed: string, clock: VirtualClock, policy: Policy = DEFAULT_POLICY) {
  const { x, secret } = createOfflineOptions({ crypto, random: new SeededRandom(crypto, seed), clock, identity: aliceId, lifetimeMs: 86_400_000, policy });
  return { options: parseOfflineOptions(parseXml(serialize(x))), secret };
}

/** A sender's first stanza of an offline session built from `options` (carries the <init/>). */
function firstStanza(o: {
  seed: string;
  clock: VirtualClock;
  from: FullJid;
  to: FullJid;
  options: ParsedOfflineOptions;
  identity?: SigningIdentity;
  policy?: Policy;
  body: string;
}): Element {
  const s = startOfflineSession({
    crypto,
    random: new SeededRandom(crypto, o.seed),
    clock: o.clock,
    local: o.from,
    peer: o.to,
    thread: `t-${o.seed}` as ThreadId,
    options: o.options,
    ...(o.policy ? { policy: o.policy } : {}),
    ...(o.identity ? { identity: o.identity } : {}),
    verifier,
  });
  s.send(el("message", { type: "chat" }, el("body", {}, o.body)));
  const out = s.drain().flatMap((x) => (x.kind === "send" ? [parseXml(serialize(x.stanza))] : []));
  const first = out[0];
  assert.ok(first && offlineInitOf(first), "the first stanza carries the init");
  return first;
}

/** `stanza` with the Base64 value of init field `name` changed by one bit. */
function flipInitField(stanza: Element, name: string): Element {
  const copy = parseXml(serialize(stanza));
  const x = offlineInitOf(copy);
  const v = x?.getChildren("field").find((f) => f.attrs.var === name)?.getChild("value");
  assert.ok(v, name);
  const bytes = new Uint8Array(Buffer.from(v.getText(), "base64"));
  bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
  v.children = [toBase64(bytes)];
  return copy;
}

interface Publisher {
  readonly client: SecureClient;
  readonly events: ClientEvent[];
}

function publisher(board: Switchboard, jid: FullJid, store: OfflineStore, clock: VirtualClock, seed: string): Publisher {
  const client = new SecureClient({
    connection: board.connect(jid),
    store: new MemoryStore(),
    random: new SeededRandom(crypto, seed),
    clock,
    identity: aliceId,
    verifier,
    iqTimeoutMs: 1000,
    offline: { store, allowUnauthenticated: false },
  });
  const events: ClientEvent[] = [];
  client.on((e) => events.push(e));
  return { client, events };
}

function reasons(events: readonly ClientEvent[]): string[] {
  return events.flatMap((e) => (e.type === "undecryptable" ? [e.reason] : []));
}
function bodies(events: readonly ClientEvent[]): string[] {
  return events.flatMap((e) => (e.type === "message" && e.body !== undefined ? [e.body] : []));
}

async function settle(board: Switchboard, clients: readonly SecureClient[]): Promise<void> {
  for (let i = 0; i < 100; i++) {
    await board.idle();
    for (const c of clients) await c.settled();
    await new Promise((r) => setImmediate(r));
    if (board.pending().length === 0) return;
  }
  throw new Error("no quiescence");
}

test("a junk <init/> naming the public nonce does not consume the one-time options; the genuine start then works; its replay fails", async () => {
  const clock = new VirtualClock(T0);
  const board = new Switchboard();
  const store = new MemoryOfflineStore();
  const aliceJid = parseFullJid("alice@example.org/laptop");
  const alice = publisher(board, aliceJid, store, clock, "junk");
  const { options, secret } = publish("junk-options", clock);
  await store.put(ALICE, secret);
  const held = async () => (await store.list(ALICE)).map((s) => s.id);
  assert.deepEqual(await held(), [secret.id]);

  // Mallory reads the options in PEP and sends junk starts that name them.
  const mallory = board.connect(parseFullJid("mallory@evil.example/x"));
  const malloryJid = parseFullJid("mallory@evil.example/x");
  const mine = firstStanza({ seed: "m1", clock, from: malloryJid, to: aliceJid, options, identity: malloryId, body: "junk" });
  const junk: [string, Element][] = [
    ["M_B flipped", flipInitField(mine, "mac")],
    ["ID_B flipped", flipInitField(mine, "identity")],
    ["d replaced (in range, not hers)", flipInitField(mine, "dhkeys")],
    ["no identity (pubkey none) while Alice requires one", firstStanza({ seed: "m2", clock, from: malloryJid, to: aliceJid, options, body: "junk" })],
  ];
  for (const [, st] of junk) {
    delete st.attrs.from;
    await mallory.send(st);
    await settle(board, [alice.client]);
  }
  assert.deepEqual(reasons(alice.events), ["identity-mismatch", "identity-mismatch", "identity-mismatch", "identity-mismatch"]);
  assert.deepEqual(await held(), [secret.id], "the one-time options are still there");
  assert.deepEqual(bodies(alice.events), []);

  // Bob, the genuine sender, starts with the same options: accepted, his message read.
  const bobJid = parseFullJid("bob@example.com/phone");
  const bob = board.connect(bobJid);
  const pk = verifyOfflineOptions(options, [aliceId.keyValue], verifier, false, crypto);
  assert.ok(pk);
  const genuine = firstStanza({ seed: "b", clock, from: bobJid, to: aliceJid, options, identity: bobId, body: "from bob, offline" });
  await bob.send(parseXml(serialize(genuine)));
  await settle(board, [alice.client]);
  assert.deepEqual(bodies(alice.events), ["from bob, offline"]);
  assert.ok(alice.events.some((e) => e.type === "established" && e.offline === "receiver"));
  assert.ok(!(await held()).includes(secret.id), "used once: gone (a fresh set replaces it)");

  // Replayed (after Alice restarted, e.g. on her other device sharing the store): refused.
  const desk = publisher(board, parseFullJid("alice@example.org/desk"), store, clock, "desk");
  const replay = parseXml(serialize(genuine));
  replay.attrs.to = "alice@example.org/desk";
  await bob.send(replay);
  await settle(board, [alice.client, desk.client]);
  assert.deepEqual(reasons(desk.events), ["unknown-options"]);
  assert.deepEqual(bodies(desk.events), []);
});

test("exactly once: two verified starts for one set on two devices at the same instant, one is accepted", async () => {
  const clock = new VirtualClock(T0);
  const board = new Switchboard();
  const shared = new MemoryOfflineStore();
  // Both devices have read the set (verification in progress) before either takes it.
  let waiting: (() => void)[] = [];
  const store: OfflineStore = {
    put: (a, s) => shared.put(a, s),
    list: (a) => shared.list(a),
    take: (a, id) => shared.take(a, id),
    markSeen: (a, k) => shared.markSeen(a, k),
    expire: (a, now) => shared.expire(a, now),
    close: () => shared.close(),
    get: async (a, id) => {
      const got = await shared.get(a, id);
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        if (waiting.length === 2) {
          for (const w of waiting) w();
          waiting = [];
        }
      });
      return got;
    },
  };
  const laptop = publisher(board, parseFullJid("alice@example.org/laptop"), store, clock, "l");
  const desk = publisher(board, parseFullJid("alice@example.org/desk"), store, clock, "d");
  const { options, secret } = publish("race-options", clock);
  await shared.put(ALICE, secret);
  const bobJid = parseFullJid("bob@example.com/phone");
  const carolJid = parseFullJid("carol@example.net/pc");
  const bob = board.connect(bobJid);
  const carol = board.connect(carolJid);
  await bob.send(firstStanza({ seed: "rb", clock, from: bobJid, to: parseFullJid("alice@example.org/laptop"), options, identity: bobId, body: "bob" }));
  await carol.send(firstStanza({ seed: "rc", clock, from: carolJid, to: parseFullJid("alice@example.org/desk"), options, identity: carolId, body: "carol" }));
  await settle(board, [laptop.client, desk.client]);
  const read = [...bodies(laptop.events), ...bodies(desk.events)];
  const refused = [...reasons(laptop.events), ...reasons(desk.events)];
  assert.equal(read.length, 1, `exactly one accepted (read ${JSON.stringify(read)})`);
  assert.deepEqual(refused, ["unknown-options"]);
  assert.ok(!(await shared.list(ALICE)).some((s) => s.id === secret.id));
});

describe("the sender's cipher and hash must be among those offered", () => {
  const clock = new VirtualClock(T0);
  const strict: Policy = { ...DEFAULT_POLICY, cryptAlgs: ["aes256-ctr"], hashAlgs: ["sha512"] };
  const aliceJid = parseFullJid("alice@example.org/laptop");
  const bobJid = parseFullJid("bob@example.com/phone");

  /** A sender that rewrote the (signed) options it read and picks what Alice left out. */
  function hostileStart(seed: string, changes: Partial<ParsedOfflineOptions>, secret: OfflineSecret, options: ParsedOfflineOptions) {
    const forged = { ...options, ...changes };
    const first = firstStanza({ seed, clock, from: bobJid, to: aliceJid, options: forged, identity: bobId, policy: DEFAULT_POLICY, body: "x" });
    const x = offlineInitOf(first);
    assert.ok(x);
    return () =>
      acceptOfflineSession({
        crypto,
        random: new SeededRandom(crypto, `${seed}-accept`),
        clock,
        local: aliceJid,
        peer: bobJid,
        thread: "t" as ThreadId,
        init: parseOfflineInit(x),
        secret,
        policy: strict,
        verifier,
        allowUnauthenticated: false,
      });
  }

  test("offered values are kept with the secret; an honest sender is accepted", () => {
    const { options, secret } = publish("strict", clock, strict);
    assert.deepEqual([...secret.cryptAlgs], ["aes256-ctr"]);
    assert.deepEqual([...secret.hashAlgs], ["sha512"]);
    const ok = hostileStart("honest", {}, secret, options)();
    assert.equal(ok.isActive, true);
  });

  for (const [name, changes, field] of [
    ["a cipher Alice did not offer (aes128-ctr)", { cryptAlgs: ["aes128-ctr"] }, "crypt_algs"],
    ["a hash Alice did not offer (sha256)", { hashAlgs: ["sha256"] }, "hash_algs"],
  ] as const) {
    test(`${name}: OfflineError not-offered (not-acceptable), even with a valid identity`, () => {
      const { options, secret } = publish(`strict-${field}`, clock, strict);
      assert.throws(hostileStart(`h-${field}`, changes, secret, options), (e: unknown) => {
        return e instanceof OfflineError && e.condition === "not-offered" && e.stanzaCondition === "not-acceptable" && e.message.includes(field);
      });
    });
  }

  test("through SecureClient: refused, and the options stay usable by an honest sender", async () => {
    const board = new Switchboard();
    const store = new MemoryOfflineStore();
    const alice = new SecureClient({
      connection: board.connect(aliceJid),
      store: new MemoryStore(),
      random: new SeededRandom(crypto, "sc"),
      clock,
      identity: aliceId,
      verifier,
      policy: strict,
      iqTimeoutMs: 1000,
      offline: { store, allowUnauthenticated: false },
    });
    const events: ClientEvent[] = [];
    alice.on((e) => events.push(e));
    const { options, secret } = publish("sc-options", clock, strict);
    await store.put(ALICE, secret);
    const bob = board.connect(bobJid);
    await bob.send(firstStanza({ seed: "sc-h", clock, from: bobJid, to: aliceJid, options: { ...options, cryptAlgs: ["aes128-ctr"] }, identity: bobId, body: "downgraded" }));
    await settle(board, [alice]);
    assert.deepEqual(reasons(events), ["not-offered"]);
    assert.equal((await store.list(ALICE)).length, 1);
    await bob.send(firstStanza({ seed: "sc-ok", clock, from: bobJid, to: aliceJid, options, identity: bobId, body: "honest" }));
    await settle(board, [alice]);
    assert.deepEqual(bodies(events), ["honest"]);

    // A set stored by an older version (offered algorithms not recorded): any cipher and
    // hash we support is accepted, as that version did (LEGACY_OFFERED_*).
    const older = publish("sc-legacy", clock, strict);
    const { cryptAlgs: _c, hashAlgs: _h, ...legacy } = older.secret;
    await store.put(ALICE, legacy);
    assert.ok(LEGACY_OFFERED_CRYPT_ALGS.includes("aes128-ctr"));
    await bob.send(firstStanza({ seed: "sc-l", clock, from: bobJid, to: aliceJid, options: { ...older.options, cryptAlgs: ["aes128-ctr"] }, identity: bobId, body: "legacy set" }));
    await settle(board, [alice]);
    assert.deepEqual(bodies(events), ["honest", "legacy set"]);
  });
});

describe("stores keep the offered algorithms; older sets stay readable", () => {
  const dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-offline-accept-"));
  let server: PostgresInstance | undefined;
  before(async () => {
    server = await startPostgres();
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const clock = new VirtualClock(T0);
  const stored = () => {
    const { secret } = publish("stored", clock, { ...DEFAULT_POLICY, cryptAlgs: ["aes128-ctr"], hashAlgs: ["sha256"] });
    return secret;
  };

  async function roundTrip(s: OfflineStore): Promise<void> {
    const secret = stored();
    await s.put(ALICE, secret);
    const got = await s.get(ALICE, secret.id);
    assert.deepEqual(got?.cryptAlgs, ["aes128-ctr"]);
    assert.deepEqual(got?.hashAlgs, ["sha256"]);
    assert.deepEqual(got?.pairs.map((p) => p.group), secret.pairs.map((p) => p.group));
    assert.equal((await s.list(ALICE)).length, 1, "get does not use the set");
    const taken = await s.take(ALICE, secret.id);
    assert.deepEqual(taken?.cryptAlgs, ["aes128-ctr"]);
    assert.equal(await s.get(ALICE, secret.id), undefined, "gone once taken");
    assert.equal(await s.take(ALICE, secret.id), undefined);
    await s.close();
  }

  test("memory", () => roundTrip(new MemoryOfflineStore()));
  test("SQLite, and a set written before the field existed", async () => {
    const path = join(dir, "offline.db");
    await roundTrip(openSqliteOfflineStore(path));
    // A body as the previous version wrote it (no cryptAlgs / hashAlgs).
    const s = stored();
    const legacy = JSON.stringify({
      nonce: toBase64(s.nonce),
      pairs: s.pairs.map((p) => ({ group: String(p.group), x: toBase64(p.x) })),
      createdAt: s.createdAt,
      expiresAt: s.expiresAt,
      stanzas: s.stanzas,
      logging: s.logging,
    });
    const db = new Database(path);
    db.prepare("INSERT INTO offline_secrets (account, id, body, expires_at) VALUES (?, ?, ?, ?)").run(ALICE, "legacy", legacy, s.expiresAt);
    db.close();
    const again = openSqliteOfflineStore(path);
    const got = await again.take(ALICE, "legacy");
    assert.ok(got, "readable");
    assert.equal(got.cryptAlgs, undefined, "not recorded: the reader applies LEGACY_OFFERED_*");
    assert.equal(got.hashAlgs, undefined);
    assert.deepEqual(got.pairs.map((p) => toBase64(p.x)), s.pairs.map((p) => toBase64(p.x)));
    await again.close();
  });
  test("PostgreSQL, and a database migrated from schema version 4 with sets in it", async () => {
    assert.ok(server);
    const config = server.config({ max: 2 });
    await roundTrip(await openPgOfflineStore({ connection: config, schema: "accept_rt" }));
    // A schema as version 4 left it, holding a set; then this code opens it.
    const first = await openPgOfflineStore({ connection: config, schema: "accept_v4" });
    await first.close();
    const client = new pg.Client(config);
    await client.connect();
    try {
      await client.query(`ALTER TABLE "accept_v4".offline_secrets DROP COLUMN crypt_algs, DROP COLUMN hash_algs`);
      await client.query(`DELETE FROM "accept_v4".schema_version WHERE version >= 5`);
      const s = stored();
      await client.query(
        `INSERT INTO "accept_v4".offline_secrets (account, id, nonce, pairs, created_at, expires_at, stanzas, logging)
         VALUES ($1, 'legacy', $2, $3::jsonb, $4, $5, $6::jsonb, $7::jsonb)`,
        [ALICE, Buffer.from(s.nonce), JSON.stringify(s.pairs.map((p) => ({ group: String(p.group), x: toBase64(p.x) }))), s.createdAt, s.expiresAt, JSON.stringify(s.stanzas), JSON.stringify(s.logging)],
      );
    } finally {
      await client.end();
    }
    const upgraded = await openPgOfflineStore({ connection: config, schema: "accept_v4" });
    const got = await upgraded.take(ALICE, "legacy");
    assert.ok(got, "readable after the migration");
    assert.equal(got.cryptAlgs, undefined, "NULL: the reader applies LEGACY_OFFERED_*");
    assert.equal(got.hashAlgs, undefined);
    await upgraded.close();
  });
});
