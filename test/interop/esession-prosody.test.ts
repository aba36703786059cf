/**
 * ESessions through a real Prosody server: negotiation, equal SAS, 1,000 encrypted
 * messages plus presence and iq, re-keys from both sides (including crossing in flight),
 * acknowledged termination, and a second session (over WebSocket) that finds the retained
 * secret persisted in SQLite. Everything the server relayed is checked for plaintext.
 *
 * Spec: XEP-0217 v0.1, XEP-0200 v0.2, XEP-0155 termination; RFC 6120 (TCP), RFC 7395
 * (WebSocket). XEP-0210 4.1.1 confidentiality (nothing relayed contains the plaintext).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { connectXmpp, type XmppConnection } from "../../src/adapters/xmpp-client.js";
import { type ClientEvent, SecureClient, type SecureClientOptions } from "../../src/client/secure-client.js";
import { keyVerifier, signingIdentity } from "../../src/client/keys.js";
import { createIdentityKey } from "../../src/identity/keyfile.js";
import { MemoryStore } from "../../src/store/memory.js";
import { openSqliteStore } from "../../src/store/sqlite.js";
import type { Store } from "../../src/store/types.js";
import { el } from "../../src/xml/index.js";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";

let server: ProsodyInstance;
let dir: string;
let aliceStore: Store;
let bobStore: Store;

before(async () => {
  server = await startProsody({ users: [["alice", "alice-pw"], ["bob", "bob-pw"]], websocket: true });
  dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-stores-"));
  aliceStore = openSqliteStore(join(dir, "alice.db"));
  bobStore = openSqliteStore(join(dir, "bob.db"));
});

after(async () => {
  await aliceStore?.close();
  await bobStore?.close();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Side {
  readonly conn: XmppConnection;
  readonly client: SecureClient;
  readonly events: ClientEvent[];
  readonly relayed: string[];
}

async function side(
  user: string,
  pass: string,
  store: Store,
  service: string,
  resource: string,
  extra: Partial<SecureClientOptions> = { policy: { groups: [14, 5] } },
): Promise<Side> {
  const conn = await connectXmpp({ service, domain: server.domain, username: user, password: pass, resource });
  const relayed: string[] = [];
  conn.onStanza((s) => relayed.push(s.toString()));
  const client = new SecureClient({ connection: conn, store, ...extra });
  const events: ClientEvent[] = [];
  client.on((e) => events.push(e));
  return { conn, client, events, relayed };
}

function waitFor(s: Side, pred: (evs: readonly ClientEvent[]) => boolean, what: string, ms = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (pred(s.events)) return resolve();
    const t = setTimeout(() => {
      off();
      const summary = JSON.stringify({ bodies: bodies(s.events).length, failed: failed(s.events), types: [...new Set(s.events.map((x) => x.type))] });
      reject(new Error(`timed out waiting for ${what}: ${summary}; prosody log:\n${server.logTail(8)}`));
    }, ms);
    const off = s.client.on(() => {
      if (pred(s.events)) {
        clearTimeout(t);
        off();
        resolve();
      }
    });
  });
}

const bodies = (evs: readonly ClientEvent[]) => evs.flatMap((e) => (e.type === "message" && e.body ? [e.body] : []));
const failed = (evs: readonly ClientEvent[]) => evs.flatMap((e) => (e.type === "failed" ? [e.error.message] : []));

test("through Prosody: negotiate, equal SAS, 1,000 messages + presence + iq, re-keys both ways, terminate", { timeout: 120_000 }, async () => {
  const alice = await side("alice", "alice-pw", aliceStore, server.service, "laptop");
  const bob = await side("bob", "bob-pw", bobStore, server.service, "phone");
  const est = await alice.client.startSession(bob.conn.jid);
  await waitFor(bob, (e) => e.some((x) => x.type === "established"), "bob established");
  const bobEst = bob.events.find((x) => x.type === "established");
  assert.ok(bobEst && bobEst.type === "established");
  assert.equal(est.sas, bobEst.sas);
  assert.equal(est.retainedSecretMatched, false);

  const N = 500;
  const sendAll = async (from: Side, to: string, tag: string, rekeyEvery: number) => {
    for (let i = 0; i < N; i++) {
      if (i > 0 && i % rekeyEvery === 0) await from.client.rekey(to);
      await from.client.sendMessage(to, `${tag} secret-payload #${i}`);
    }
  };
  // Both directions at once, each re-keying on its own schedule: re-keys cross in flight.
  await Promise.all([sendAll(alice, bob.conn.jid, "A", 100), sendAll(bob, alice.conn.jid, "B", 125)]);
  // And one explicit crossing: both re-key before either key arrives.
  await Promise.all([alice.client.rekey(bob.conn.jid), bob.client.rekey(alice.conn.jid)]);
  await alice.client.send(bob.conn.jid, el("presence", {}, el("status", {}, "secret-presence-status")));
  await bob.client.send(alice.conn.jid, el("iq", { type: "get", id: "e2e-iq-1" }, el("query", { xmlns: "urn:example:secret-query" })));
  await waitFor(bob, (e) => bodies(e).length === N && e.some((x) => x.type === "stanza" && x.stanza.name === "presence"), "bob's 500 messages");
  await waitFor(alice, (e) => bodies(e).length === N && e.some((x) => x.type === "stanza" && x.stanza.name === "iq"), "alice's 500 messages");
  assert.deepEqual(failed(alice.events), []);
  assert.deepEqual(failed(bob.events), []);
  assert.deepEqual(bodies(bob.events), Array.from({ length: N }, (_, i) => `A secret-payload #${i}`));
  assert.deepEqual(bodies(alice.events), Array.from({ length: N }, (_, i) => `B secret-payload #${i}`));
  const ac = alice.client.session(bob.conn.jid)?.channel;
  const bc = bob.client.session(alice.conn.jid)?.channel;
  assert.ok(ac && bc);
  assert.ok(ac.stats.rekeysInitiated >= 5 && bc.stats.rekeysInitiated >= 4, JSON.stringify([ac.stats, bc.stats]));
  assert.ok(ac.stats.rekeysAccepted >= 4 && bc.stats.rekeysAccepted >= 5);

  await alice.client.terminate(bob.conn.jid);
  await waitFor(bob, (e) => e.some((x) => x.type === "terminated"), "bob terminated");
  const at = alice.events.find((x) => x.type === "terminated");
  assert.ok(at && at.type === "terminated" && at.acknowledged);

  // What the server relayed: encrypted, never the plaintext.
  const relayed = [...alice.relayed, ...bob.relayed];
  assert.ok(relayed.filter((s) => s.includes("xep-0200.html#ns")).length >= 2 * N);
  for (const s of relayed) {
    assert.ok(!s.includes("secret-payload"), "message plaintext relayed");
    assert.ok(!s.includes("secret-presence-status"), "presence plaintext relayed");
    assert.ok(!s.includes("urn:example:secret-query"), "iq plaintext relayed");
  }
  await alice.client.close();
  await bob.client.close();
  await alice.conn.close();
  await bob.conn.close();
});

test("through Prosody over WebSocket: the next session finds the retained secret kept in SQLite", { timeout: 60_000 }, async () => {
  assert.ok(server.wsService);
  const alice = await side("alice", "alice-pw", aliceStore, server.wsService, "laptop");
  const bob = await side("bob", "bob-pw", bobStore, server.service, "phone");
  const est = await alice.client.startSession(bob.conn.jid);
  await waitFor(bob, (e) => e.some((x) => x.type === "established"), "bob established");
  const bobEst = bob.events.find((x) => x.type === "established");
  assert.ok(bobEst && bobEst.type === "established");
  assert.equal(est.sas, bobEst.sas);
  assert.equal(est.retainedSecretMatched, true, "alice found the SRS");
  assert.equal(bobEst.retainedSecretMatched, true, "bob found the SRS");
  await alice.client.sendMessage(bob.conn.jid, "over websocket");
  await waitFor(bob, (e) => bodies(e).includes("over websocket"), "ws message");
  await alice.client.close();
  await bob.client.close();
  await alice.conn.close();
  await bob.conn.close();
});

test("through Prosody: the modern suite with RSA-2048 keys on both sides (XEP-0116 4-message, 'key')", { timeout: 60_000 }, async () => {
  const ka = signingIdentity(createIdentityKey("rsa-sha256", 0, { rsaBits: 2048 }));
  const kb = signingIdentity(createIdentityKey("rsa-sha256", 0, { rsaBits: 2048 }));
  const alice = await side("alice", "alice-pw", new MemoryStore(), server.service, "keyed", {
    identity: ka,
    verifier: keyVerifier(),
    policy: { offerPubkey: ["key"], acceptPubkey: ["key"] },
  });
  const bob = await side("bob", "bob-pw", new MemoryStore(), server.service, "keyed", {
    identity: kb,
    verifier: keyVerifier(),
    policy: { acceptPubkey: ["key"] },
  });
  const est = await alice.client.startSession(bob.conn.jid);
  await waitFor(bob, (e) => e.some((x) => x.type === "established"), "bob established");
  assert.deepEqual([est.options.group, est.options.cipher, est.options.hash], ["x25519", "aes256-ctr", "sha512"]);
  assert.equal(est.initPubkey, "key");
  assert.equal(est.respPubkey, "key");
  assert.ok(est.peerKey);
  await alice.client.sendMessage(bob.conn.jid, "modern and signed");
  await waitFor(bob, (e) => bodies(e).includes("modern and signed"), "message");
  const modulus = ka.keyValue.getChild("RSAKeyValue")?.getChildText("Modulus") ?? "";
  for (const s of [...alice.relayed, ...bob.relayed]) {
    assert.ok(!s.includes("modern and signed"));
    assert.ok(!s.includes(modulus.slice(0, 40)), "a public key crossed the server in the clear");
  }
  await alice.client.close();
  await bob.client.close();
  await alice.conn.close();
  await bob.conn.close();
});
