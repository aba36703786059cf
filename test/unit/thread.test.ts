/**
 * Tests for src/thread (XEP-0201 v1.0 sections 3.2, 3.3, 4.1; RFC 6121 section 5.2.5).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseFullJid, type ThreadId } from "../../src/core/types.js";
import { SeededRandom, ScriptedRandom } from "../../src/core/testing.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { parseXml, el } from "../../src/xml/index.js";
import {
  asThreadId,
  getThread,
  getThreadParent,
  MAX_THREAD_LENGTH,
  newThreadId,
  sessionKey,
  setThread,
  THREAD_ID_BYTES,
} from "../../src/thread/index.js";

test("newThreadId: 160 bits of the injected Random, lower-case hex", () => {
  const bytes = new Uint8Array(THREAD_ID_BYTES).map((_, i) => i * 13);
  const id = newThreadId(new ScriptedRandom([bytes]));
  assert.equal(id, Buffer.from(bytes).toString("hex"));
  assert.ok(THREAD_ID_BYTES * 8 >= 128);
  assert.match(id, /^[0-9a-f]{40}$/);
});

test("newThreadId: distinct values from a random source, URL-safe", () => {
  const r = new SeededRandom(nodeCrypto, "threads");
  const seen = new Set<string>();
  for (let i = 0; i < 1000; i++) {
    const id = newThreadId(r);
    assert.equal(encodeURIComponent(id), id);
    seen.add(id);
  }
  assert.equal(seen.size, 1000);
});

test("getThread / getThreadParent: the XEP-0201 section 3.3 example", () => {
  const m = parseXml(`<message
    to='romeo@example.net/orchard'
    from='juliet@example.com/balcony'
    id='asiwe8289ljfdalk'
    type='chat'
    xml:lang='en'>
  <body>Art thou not Romeo, and a Montague?</body>
  <thread parent='7edac73ab41e45c4aafa7b2d7b749080'>
    e0ffe42b28561960c6b12b944a092794b9683a38
  </thread>
</message>`);
  assert.equal(getThread(m), "e0ffe42b28561960c6b12b944a092794b9683a38");
  assert.equal(getThreadParent(m), "7edac73ab41e45c4aafa7b2d7b749080");
});

test("getThread: absent, empty, foreign namespace, over-long", () => {
  assert.equal(getThread(parseXml("<message><body>x</body></message>")), undefined);
  assert.equal(getThread(parseXml("<message><thread>  </thread></message>")), undefined);
  assert.equal(getThread(parseXml("<message><thread xmlns='urn:example'>abc</thread></message>")), undefined);
  assert.equal(getThread(parseXml("<message xmlns='jabber:client'><thread>abc</thread></message>")), "abc");
  const long = "a".repeat(MAX_THREAD_LENGTH + 1);
  assert.equal(getThread(parseXml(`<message><thread>${long}</thread></message>`)), undefined);
  assert.equal(asThreadId("a".repeat(MAX_THREAD_LENGTH)), "a".repeat(MAX_THREAD_LENGTH));
});

test("setThread: adds, replaces in place, removes duplicates, sets parent", () => {
  const m = el("message", { to: "a@b/c" }, el("body", {}, "hi"));
  setThread(m, "t1" as ThreadId);
  assert.equal(getThread(m), "t1");
  assert.equal(m.toString(), "<message to=\"a@b/c\"><body>hi</body><thread>t1</thread></message>");

  const m2 = parseXml("<message><thread>old</thread><body>x</body><thread>dup</thread></message>");
  setThread(m2, "new" as ThreadId, "parent1" as ThreadId);
  assert.equal(m2.toString(), "<message><thread parent=\"parent1\">new</thread><body>x</body></message>");
  assert.equal(getThreadParent(m2), "parent1");
  assert.equal(m2.getChildren("thread").length, 1);
  assert.equal(m2.getChild("thread")?.parent, m2);
});

test("sessionKey: identifies (local, peer, thread) unambiguously", () => {
  const a = parseFullJid("romeo@montague.net/orchard");
  const b = parseFullJid("juliet@capulet.com/balcony");
  const t = "ffd7076498744578d10edabfe7f4a866" as ThreadId;
  assert.equal(sessionKey(a, b, t), sessionKey(a, b, t));
  assert.notEqual(sessionKey(a, b, t), sessionKey(b, a, t));
  assert.notEqual(sessionKey(a, b, t), sessionKey(a, b, "other" as ThreadId));
  // No separator games: a thread containing the separator cannot collide.
  const x = sessionKey(parseFullJid("a@b/c"), parseFullJid("d@e/f"), '","x' as ThreadId);
  const y = sessionKey(parseFullJid("a@b/c"), parseFullJid("d@e/f\",\""), "x" as ThreadId);
  assert.notEqual(x, y);
});
