/**
 * Load through a real Prosody (loopback only): 10 client pairs (20 TCP connections, 20
 * accounts) each negotiate an ESession and then exchange encrypted messages in both
 * directions for a fixed, bounded time while re-keying every few stanzas from both sides
 * (re-keys cross in flight). Afterwards every message sent was received and decrypted
 * exactly once: sent = received = decrypted per direction, ids compared as sets, no
 * duplicates, no losses, no failure or undecryptable event.
 *
 * Spec: XEP-0217 v0.1 (negotiation), XEP-0200 v0.2 sections 5-7 (encryption, decryption,
 * re-key initiation and acceptance with value sets, so stanzas encrypted under the old key
 * still decrypt while a re-key is in flight), RFC 6120 (c2s streams).
 *
 * Bounded: PAIRS pairs, DURATION_MS of sending with at most WINDOW messages in flight per
 * direction; nothing here asserts a rate (the machine may be loaded).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connectXmpp, type XmppConnection } from "../../src/adapters/xmpp-client.js";
import { type ClientEvent, SecureClient } from "../../src/client/secure-client.js";
import { MemoryStore } from "../../src/store/memory.js";
import { el, NS } from "../../src/xml/index.js";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";

const PAIRS = 10;
const DURATION_MS = 15_000;
/** Messages a sender may have in flight (sent, not yet decrypted by the peer). */
const WINDOW = 100;
/** Each side re-keys on its own every this many stanzas sent (XEP-0200 section 7). */
const REKEY_EVERY = 20;

interface Side {
  readonly name: string;
  readonly conn: XmppConnection;
  readonly client: SecureClient;
  readonly events: ClientEvent[];
  /** Encrypted message stanzas that arrived on the connection (before decryption). */
  received: number;
  /** Ids of messages decrypted, in order. */
  readonly decrypted: string[];
  readonly sent: string[];
  rekeys: number;
}

let server: ProsodyInstance;
const sides: Side[] = [];

const users = Array.from({ length: PAIRS }, (_, i) => [
  [`a${i}`, `pw-a${i}`],
  [`b${i}`, `pw-b${i}`],
]).flat() as [string, string][];

before(async () => {
  server = await startProsody();
  // prosodyctl costs a Lua start each: a few at a time.
  for (let i = 0; i < users.length; i += 5) await Promise.all(users.slice(i, i + 5).map(([u, p]) => server.register(u, p)));
});

after(async () => {
  for (const s of sides) {
    await s.client.close().catch(() => {});
    s.conn.close();
  }
  await server?.stop();
});

async function connect(user: string, pass: string): Promise<Side> {
  const conn = await connectXmpp({ service: server.service, domain: server.domain, username: user, password: pass, resource: "load", timeoutMs: 30_000 });
  const client = new SecureClient({
    connection: conn,
    store: new MemoryStore(),
    // Modern suite, and a low re-key threshold: rekey_freq 1 lets every stanza carry a key.
    policy: { groups: ["x25519"], rekeyFreq: 1, autoRekeyEvery: REKEY_EVERY },
  });
  const side: Side = { name: user, conn, client, events: [], received: 0, decrypted: [], sent: [], rekeys: 0 };
  conn.onStanza((s) => {
    if (s.name === "message" && s.getChild("c", NS.c) !== undefined) side.received++;
  });
  client.on((e) => {
    if (e.type === "message" && e.body !== undefined) side.decrypted.push(e.body);
    else if (e.type === "rekeyed") side.rekeys++;
    else if (e.type !== "progress" && e.type !== "stanza") side.events.push(e);
  });
  sides.push(side);
  return side;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(pred: () => boolean, ms: number, what: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out: ${what()}\n${server.logTail(10)}`);
    await sleep(20);
  }
}

/** Sends numbered messages from `from` to `to` until `stopAt`, keeping at most WINDOW in flight. */
async function pump(from: Side, to: Side, stopAt: number): Promise<void> {
  let seq = 0;
  while (Date.now() < stopAt) {
    if (from.sent.length - to.decrypted.filter((id) => id.startsWith(`${from.name}#`)).length >= WINDOW) {
      await sleep(5);
      continue;
    }
    const id = `${from.name}#${String(seq++).padStart(6, "0")}`;
    await from.client.send(to.conn.jid, el("message", { type: "chat", id }, el("body", {}, id)));
    from.sent.push(id);
    if (seq % 10 === 0) await new Promise((r) => setImmediate(r)); // let inbound stanzas in
  }
}

describe("load through Prosody", () => {
  it(`${PAIRS} pairs exchange encrypted messages for ${DURATION_MS / 1000} s while re-keying: none lost or duplicated`, { timeout: 180_000 }, async () => {
    const all = await Promise.all(users.map(([u, p]) => connect(u, p)));
    const pairs = Array.from({ length: PAIRS }, (_, i) => [all[2 * i], all[2 * i + 1]] as const).map(([a, b]) => {
      if (a === undefined || b === undefined) throw new Error("missing side");
      return { a, b };
    });
    await Promise.all(pairs.map(({ a, b }) => a.client.startSession(b.conn.jid)));

    const stopAt = Date.now() + DURATION_MS;
    await Promise.all(pairs.flatMap(({ a, b }) => [pump(a, b, stopAt), pump(b, a, stopAt)]));
    // Drain: everything sent must arrive and decrypt.
    await until(
      () => pairs.every(({ a, b }) => b.decrypted.length === a.sent.length && a.decrypted.length === b.sent.length),
      60_000,
      () => pairs.map(({ a, b }) => `${a.name}->${b.name} ${a.sent.length}/${b.decrypted.length} ${b.name}->${a.name} ${b.sent.length}/${a.decrypted.length}`).join("; "),
    );

    let sent = 0;
    let received = 0;
    let decrypted = 0;
    let rekeys = 0;
    for (const { a, b } of pairs) {
      for (const [from, to] of [
        [a, b],
        [b, a],
      ] as const) {
        assert.ok(from.sent.length > 0, `${from.name} sent nothing`);
        assert.equal(new Set(to.decrypted).size, to.decrypted.length, `${to.name}: a duplicated message`);
        assert.deepEqual(to.decrypted, from.sent, `${from.name} -> ${to.name}: every id once, in order`);
        assert.equal(to.received, from.sent.length, `${to.name}: encrypted stanzas on the wire = sent`);
        sent += from.sent.length;
        received += to.received;
        decrypted += to.decrypted.length;
      }
      for (const s of [a, b]) {
        const bad = s.events.filter((e) => e.type === "failed" || e.type === "undecryptable" || e.type === "terminated");
        assert.deepEqual(bad.map((e) => e.type), [], `${s.name}: no failure, undecryptable stanza or termination`);
      }
      rekeys += a.rekeys + b.rekeys;
    }
    assert.ok(rekeys >= PAIRS * 2, `re-keys happened (${rekeys})`);
    console.log(`# load: ${PAIRS} pairs, ${DURATION_MS / 1000} s: sent ${sent} = received ${received} = decrypted ${decrypted}; lost 0, duplicated 0; re-keys ${rekeys}`);
  });
});
