/**
 * `xmpp-e2e archive` (src/cli/archive.ts): the archive key at rest (0600, optionally
 * sealed), export / import between two config directories, list and show of a cache
 * filled through the archive API (archiveFor on a SecureClient pair on the switchboard),
 * the errors a user meets (wrong passphrase, no key yet, unknown id, a collection under
 * another key), nothing archived with logging not allowed, and never a key or an escape
 * sequence on the terminal.
 *
 * Spec: XEP-0136 v1.3.1 section 3.2 (logging), 7.1/7.2 (list/retrieve); XEP-0241 v0.1
 * section 2; XEP-0116 v0.16 section 14 (keys at rest).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SeededRandom } from "../../src/core/testing.js";
import { fromBase64, toHex } from "../../src/core/bytes.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { ArchiveManager, newArchiveKey, openSqliteArchiveCache } from "../../src/archive/index.js";
import { ARCHIVE_POLICY, archiveFor, archivePaths, type ArchiveCliIo, collectionId, printable, run } from "../../src/cli/archive.js";
import type { Jid } from "../../src/core/types.js";
import { makePair } from "../sim/pair.js";

const ALICE = "alice@example.org";
const PASS = "correct horse battery";
/** Fast PBKDF2 for tests (the layer's minimum); the default (600,000) is the layer's own test. */
const FAST = ["--iterations", "10000"];

interface Result {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

function io(env: Record<string, string | undefined> = {}, answers: (string | undefined)[] = [], seed = "cli"): { io: ArchiveCliIo; asked: string[]; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  const asked: string[] = [];
  return {
    out,
    err,
    asked,
    io: {
      out: (l) => out.push(l),
      err: (l) => err.push(l),
      env,
      now: () => Date.UTC(2026, 0, 2),
      secret: async (q) => {
        asked.push(q);
        return answers.length > 0 ? answers.shift() : undefined;
      },
      random: new SeededRandom(nodeCrypto, seed),
    },
  };
}

async function cli(argv: string[], env: Record<string, string | undefined> = {}, answers: (string | undefined)[] = [], seed = "cli"): Promise<Result & { asked: string[] }> {
  const t = io(env, answers, seed);
  const code = await run(argv, t.io);
  return { code, out: t.out.join("\n"), err: t.err.join("\n"), asked: t.asked };
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), "archive-cli-"));
}

function keyFileOf(dir: string, account = ALICE): string {
  return archivePaths(dir, account as Jid).keyFile;
}

test("init: a 0600 key file, its name printed and never the key; a second init refuses; --protect seals it", async () => {
  const root = tmp();
  try {
    const a = join(root, "a");
    const r = await cli(["init", "--account", ALICE, "--dir", a]);
    assert.equal(r.code, 0, r.err);
    const file = keyFileOf(a);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(a).mode & 0o777, 0o700);
    const json = JSON.parse(readFileSync(file, "utf8")) as { name: string; key?: string; sealed?: string };
    assert.match(json.name, /^archive-[0-9a-f]{32}$/);
    assert.ok(r.out.includes(json.name), r.out);
    const raw = fromBase64(json.key ?? "");
    assert.equal(raw?.length, 32);
    for (const s of [json.key!, toHex(raw!), Buffer.from(raw!).toString("base64url")]) assert.ok(!r.out.includes(s) && !r.err.includes(s), "the key is never printed");

    const again = await cli(["init", "--account", ALICE, "--dir", a]);
    assert.equal(again.code, 1);
    assert.match(again.err, /already has archive key archive-/);
    assert.ok(again.err.includes(json.name));
    assert.equal((JSON.parse(readFileSync(file, "utf8")) as { name: string }).name, json.name, "the key is not replaced");

    // --protect: sealed under the passphrase from the environment; a short one is refused.
    const b = join(root, "b");
    const short = await cli(["init", "--account", ALICE, "--dir", b, "--protect", ...FAST], { XMPP_E2E_ARCHIVE_PASSPHRASE: "short" });
    assert.equal(short.code, 2);
    assert.match(short.err, /at least 8 characters/);
    const p = await cli(["init", "--account", ALICE, "--dir", b, "--protect", ...FAST], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS });
    assert.equal(p.code, 0, p.err);
    assert.match(p.out, /sealed under your passphrase/);
    const sealed = JSON.parse(readFileSync(keyFileOf(b), "utf8")) as { key?: string; sealed?: string };
    assert.equal(sealed.key, undefined);
    assert.match(sealed.sealed ?? "", /^<EncryptedKey /);
    assert.ok(!readFileSync(keyFileOf(b), "utf8").includes(PASS));

    // Typed twice at a prompt: different answers are refused.
    const c = join(root, "c");
    const differ = await cli(["init", "--account", ALICE, "--dir", c, "--protect", ...FAST], {}, [PASS, `${PASS}!`]);
    assert.equal(differ.code, 2);
    assert.match(differ.err, /differ/);
    assert.equal(differ.asked.length, 2);
    const typed = await cli(["init", "--account", ALICE, "--dir", c, "--protect", ...FAST], {}, [PASS, PASS]);
    assert.equal(typed.code, 0, typed.err);

    // A key file others can read is refused, as identity keys are.
    const { chmodSync } = await import("node:fs");
    chmodSync(file, 0o644);
    const loose = await cli(["list", "--account", ALICE, "--dir", a]);
    assert.equal(loose.code, 1);
    assert.match(loose.err, /chmod 600/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("export-key / import-key move the key between two config directories", async () => {
  const root = tmp();
  try {
    const a = join(root, "a");
    const b = join(root, "b");
    const exp = join(root, "alice-archive-key.xml");
    assert.equal((await cli(["init", "--account", ALICE, "--dir", a, "--protect", ...FAST], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS })).code, 0);
    const name = (JSON.parse(readFileSync(keyFileOf(a), "utf8")) as { name: string }).name;

    const noOut = await cli(["export-key", "--account", ALICE, "--dir", a], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS });
    assert.equal(noOut.code, 2);
    assert.match(noOut.err, /--out FILE/);

    // The sealed key is opened and the export protected with the same environment value.
    const e = await cli(["export-key", "--account", ALICE, "--dir", a, "--out", exp, ...FAST], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS });
    assert.equal(e.code, 0, e.err);
    assert.equal(statSync(exp).mode & 0o777, 0o600);
    assert.ok(e.out.includes(name));
    assert.match(readFileSync(exp, "utf8"), /PBKDF2-params/);
    const exists = await cli(["export-key", "--account", ALICE, "--dir", a, "--out", exp, ...FAST], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS });
    assert.equal(exists.code, 2);
    assert.match(exists.err, /--force/);

    // The second device: the passphrase typed at the prompt; no --account (the only config).
    writeFileSync(join(root, "config.json"), JSON.stringify({ jid: ALICE }));
    const i = await cli(["import-key", exp, "--dir", b], { XMPP_E2E_CONFIG: join(root, "config.json") }, [PASS]);
    assert.equal(i.code, 0, i.err);
    assert.equal(i.asked.length, 1);
    assert.ok(i.out.includes(name));
    const imported = JSON.parse(readFileSync(keyFileOf(b), "utf8")) as { name: string; key?: string; device: string };
    assert.equal(imported.name, name);
    assert.equal(statSync(keyFileOf(b)).mode & 0o777, 0o600);
    assert.notEqual(imported.device, (JSON.parse(readFileSync(keyFileOf(a), "utf8")) as { device: string }).device, "each device has its own id");

    const twice = await cli(["import-key", exp, "--dir", b, "--account", ALICE], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS });
    assert.equal(twice.code, 0);
    assert.match(twice.out, /already holds/);

    // Another key for the same account is not silently put over the first.
    const c = join(root, "c");
    const other = join(root, "other.xml");
    assert.equal((await cli(["init", "--account", ALICE, "--dir", c], {}, [], "other")).code, 0);
    assert.equal((await cli(["export-key", "--account", ALICE, "--dir", c, "--out", other, ...FAST], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS })).code, 0);
    const clash = await cli(["import-key", other, "--dir", b, "--account", ALICE], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS });
    assert.equal(clash.code, 1);
    assert.match(clash.err, /already has another archive key/);
    assert.equal((JSON.parse(readFileSync(keyFileOf(b), "utf8")) as { name: string }).name, name);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("wrong passphrase, no terminal, no key yet: typed errors that say what to do", async () => {
  const root = tmp();
  try {
    const a = join(root, "a");
    const exp = join(root, "k.xml");
    assert.equal((await cli(["init", "--account", ALICE, "--dir", a, "--protect", ...FAST], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS })).code, 0);
    assert.equal((await cli(["export-key", "--account", ALICE, "--dir", a, "--out", exp, ...FAST], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS })).code, 0);

    const wrongImport = await cli(["import-key", exp, "--dir", join(root, "b"), "--account", ALICE], { XMPP_E2E_ARCHIVE_PASSPHRASE: "not the passphrase" });
    assert.equal(wrongImport.code, 1);
    assert.match(wrongImport.err, /wrong passphrase/);
    const wrongList = await cli(["list", "--dir", a, "--account", ALICE], { XMPP_E2E_ARCHIVE_PASSPHRASE: "not the passphrase" });
    assert.equal(wrongList.code, 1);
    assert.match(wrongList.err, /wrong passphrase for the archive key of alice@example.org/);
    const wrongTyped = await cli(["show", "abcd", "--dir", a, "--account", ALICE], {}, ["not the passphrase"]);
    assert.equal(wrongTyped.code, 1);
    assert.match(wrongTyped.err, /wrong passphrase/);
    const noTty = await cli(["list", "--dir", a, "--account", ALICE]);
    assert.equal(noTty.code, 1);
    assert.match(noTty.err, /XMPP_E2E_ARCHIVE_PASSPHRASE/);
    for (const r of [wrongImport, wrongList, wrongTyped, noTty]) assert.ok(!r.err.includes(PASS));

    const notAnExport = join(root, "junk.xml");
    writeFileSync(notAnExport, "<hello/>");
    const junk = await cli(["import-key", notAnExport, "--dir", join(root, "b"), "--account", ALICE], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS });
    assert.equal(junk.code, 1);
    assert.match(junk.err, /not an exported archive key/);

    const empty = join(root, "empty");
    for (const argv of [["list"], ["show", "abcdef"], ["export-key", "--out", join(root, "x.xml")]]) {
      const r = await cli([...argv, "--dir", empty, "--account", ALICE], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS });
      assert.equal(r.code, 1, argv.join(" "));
      assert.match(r.err, /no archive key for alice@example.org on this device: create one with `xmpp-e2e archive init --account alice@example.org`/);
      assert.match(r.err, /archive import-key FILE/);
    }
    const noAccount = await cli(["list", "--dir", empty]);
    assert.equal(noAccount.code, 2);
    assert.match(noAccount.err, /--account JID is required/);
    const unknown = await cli(["frobnicate", "--dir", empty]);
    assert.equal(unknown.code, 2);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("list and show read a cache filled by archiveFor on a SecureClient; --json; ids; another key; no escape sequences", async () => {
  const root = tmp();
  try {
    const a = join(root, "a");
    assert.equal((await cli(["init", "--account", ALICE, "--dir", a])).code, 0);
    const pair = makePair({ seed: "archive-cli", policy: { logging: [...ARCHIVE_POLICY.logging] } });
    const notices: string[] = [];
    const t = io({}, [], "archive-for");
    const archive = await archiveFor(pair.alice, ALICE, { dir: a, clock: pair.clock, io: t.io, notice: (l) => notices.push(l) });
    assert.equal(archive.server, undefined);
    const started = pair.alice.startSession(pair.bobJid);
    await pair.settle();
    await started;
    pair.clock.advance(1000);
    await pair.alice.sendMessage(pair.bobJid, "hello bob");
    await pair.settle();
    pair.clock.advance(1000);
    await pair.bob.sendMessage(pair.aliceJid, "hi alice\nsecond line \u001b[2J\u001b]0;pwned\u0007 \u202eevil");
    await pair.settle();
    pair.clock.advance(1000);
    await pair.alice.sendMessage(pair.bobJid, "bye");
    await pair.settle();
    await archive.close();
    assert.ok(notices.some((n) => n.includes("archiving this session with bob@example.com/laptop") && n.includes(archive.keyName)), notices.join("\n"));

    // A collection written by a device holding another archive key.
    const cachePath = archivePaths(a, ALICE as Jid).cache;
    {
      const foreign = newArchiveKey(new SeededRandom(nodeCrypto, "foreign"));
      const m = new ArchiveManager({ key: foreign, random: new SeededRandom(nodeCrypto, "foreign-m") });
      m.sessionEstablished("carol@example.net/home", "th-carol", "may", Date.UTC(2026, 0, 3));
      m.message("carol@example.net/home", "from", "you cannot read this", Date.UTC(2026, 0, 3, 0, 0, 1));
      const cache = openSqliteArchiveCache(cachePath);
      for (const e of m.drain()) if (e.type === "store") await cache.save(e.op.chat);
      cache.close();
    }
    const cacheBytes = readFileSync(cachePath);
    assert.ok(!cacheBytes.includes("hello bob") && !cacheBytes.includes("hi alice"), "only ciphertext in the cache");

    const list = await cli(["list", "--dir", a, "--account", ALICE]);
    assert.equal(list.code, 0, list.err);
    const lines = list.out.split("\n");
    assert.match(lines[0]!, /^ID\s+STARTED \(UTC\)\s+MESSAGES\s+PEER$/);
    assert.match(lines[1]!, /^[0-9a-f]{12}  2026-01-01 00:00:00Z\s+3  bob@example.com\/laptop$/);
    assert.match(lines[2]!, /^[0-9a-f]{12}  2026-01-03 00:00:00Z\s+\?  carol@example.net\/home  \(written under archive key archive-[0-9a-f]{32}, not archive-/);
    assert.equal(lines[3], `2 conversations in ${cachePath}`);

    const json = await cli(["list", "--dir", a, "--account", ALICE, "--json"]);
    const rows = JSON.parse(json.out) as { id: string; with: string; start: string; thread?: string; messages: number | null; readable: boolean; sources: string[]; problem?: string }[];
    assert.equal(rows.length, 2);
    const bob = rows[0]!;
    assert.equal(bob.with, "bob@example.com/laptop");
    assert.equal(bob.messages, 3);
    assert.equal(bob.readable, true);
    assert.deepEqual(bob.sources, ["cache"]);
    assert.equal(bob.id, collectionId(bob));
    assert.equal(rows[1]!.readable, false);
    assert.equal(rows[1]!.problem, "wrong-key");
    assert.equal(rows[1]!.messages, null);

    const onlyBob = await cli(["list", "--dir", a, "--account", ALICE, "--peer", "bob@example.com", "--json"]);
    assert.deepEqual((JSON.parse(onlyBob.out) as { id: string }[]).map((r) => r.id), [bob.id]);
    const nobody = await cli(["list", "--dir", a, "--account", ALICE, "--peer", "dave@example.org"]);
    assert.equal(nobody.code, 0);
    assert.match(nobody.out, /no archived conversations with dave@example.org/);

    // show by a prefix of the id: a transcript with time, direction, peer, body.
    const show = await cli(["show", bob.id.slice(0, 6), "--dir", a, "--account", ALICE]);
    assert.equal(show.code, 0, show.err);
    const tl = show.out.split("\n");
    assert.equal(tl[0], `conversation ${bob.id} with bob@example.com/laptop, started 2026-01-01 00:00:00Z`);
    assert.equal(tl[1], "2026-01-01 00:00:01Z  me → bob@example.com/laptop: hello bob");
    assert.equal(tl[2], "2026-01-01 00:00:02Z  bob@example.com/laptop → me: hi alice");
    assert.equal(tl[3], `${" ".repeat(22)}second line \uFFFD[2J\uFFFD]0;pwned\uFFFD \uFFFDevil`);
    assert.equal(tl[4], "2026-01-01 00:00:03Z  me → bob@example.com/laptop: bye");
    assert.ok(!/[\u001b\u0007\u202e]/.test(show.out), "no control characters reach the terminal");

    const sj = await cli(["show", bob.id, "--dir", a, "--account", ALICE, "--json"]);
    const shown = JSON.parse(sj.out) as { id: string; with: string; messages: { time: string; direction: string; peer: string; body: string }[] };
    assert.equal(shown.id, bob.id);
    assert.deepEqual(
      shown.messages.map((m) => [m.time, m.direction, m.peer, m.body]),
      [
        ["2026-01-01T00:00:01.000Z", "sent", "bob@example.com/laptop", "hello bob"],
        ["2026-01-01T00:00:02.000Z", "received", "bob@example.com/laptop", "hi alice\nsecond line \u001b[2J\u001b]0;pwned\u0007 \u202eevil"],
        ["2026-01-01T00:00:03.000Z", "sent", "bob@example.com/laptop", "bye"],
      ],
    );

    const foreignShow = await cli(["show", rows[1]!.id, "--dir", a, "--account", ALICE]);
    assert.equal(foreignShow.code, 1);
    assert.match(foreignShow.err, /written under archive key archive-/);
    const missing = await cli(["show", "000000", "--dir", a, "--account", ALICE]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /no archived conversation 000000/);
    const bad = await cli(["show", "zz", "--dir", a, "--account", ALICE]);
    assert.equal(bad.code, 2);

    // The second device: the imported key reads the same cache (e.g. a replica).
    const b = join(root, "b");
    const exp = join(root, "k.xml");
    assert.equal((await cli(["export-key", "--dir", a, "--account", ALICE, "--out", exp, ...FAST], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS })).code, 0);
    assert.equal((await cli(["import-key", exp, "--dir", b, "--account", ALICE], { XMPP_E2E_ARCHIVE_PASSPHRASE: PASS })).code, 0);
    const second = await cli(["show", bob.id, "--dir", b, "--account", ALICE, "--cache", cachePath, "--json"]);
    assert.equal(second.code, 0, second.err);
    assert.deepEqual(JSON.parse(second.out), shown);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("archiveFor: a session with logging not allowed leaves nothing in the cache", async () => {
  const root = tmp();
  try {
    const a = join(root, "a");
    assert.equal((await cli(["init", "--account", ALICE, "--dir", a])).code, 0);
    const pair = makePair({ seed: "archive-cli-otr" }); // default policy prefers 'mustnot'
    const notices: string[] = [];
    const archive = await archiveFor(pair.alice, ALICE, { dir: a, clock: pair.clock, io: io({}, [], "otr").io, notice: (l) => notices.push(l) });
    const started = pair.alice.startSession(pair.bobJid);
    await pair.settle();
    await started;
    await pair.alice.sendMessage(pair.bobJid, "OFF-THE-RECORD-1");
    await pair.bob.sendMessage(pair.aliceJid, "OFF-THE-RECORD-2");
    await pair.settle();
    await archive.close();
    assert.ok(notices.some((n) => n.includes("off the record with bob@example.com/laptop (logging: mustnot)")), notices.join("\n"));
    const list = await cli(["list", "--dir", a, "--account", ALICE, "--json"]);
    assert.deepEqual(JSON.parse(list.out), []);
    const cachePath = archivePaths(a, ALICE as Jid).cache;
    for (const f of [cachePath, `${cachePath}-wal`]) {
      try {
        assert.ok(!readFileSync(f).includes("OFF-THE-RECORD"));
      } catch (e) {
        if ((e as { code?: string }).code !== "ENOENT") throw e;
      }
    }

    // No key for the account: archiveFor says how to make one.
    await assert.rejects(archiveFor(pair.alice, "nobody@example.org", { dir: a }), (e: Error & { condition?: string }) => e.condition === "no-key" && /archive init/.test(e.message));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("printable keeps text, newlines and tabs, replaces controls and bidi overrides", () => {
  assert.equal(printable("plain é 漢字\tand\nlines"), "plain é 漢字\tand\nlines");
  assert.equal(printable("\u001b[31mred\u0000\u009b\u202e\u2066"), "\uFFFD[31mred\uFFFD\uFFFD\uFFFD\uFFFD");
});
