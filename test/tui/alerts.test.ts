/**
 * Every alert the clients show, with the commands that resolve it, checked on the
 * controller shared by the terminal and the web client (src/tui/app.ts) without a server:
 * each SecureClient alert and trust alert becomes one visible alert whose actions are
 * commands that work, and object-encryption (certificate) key alerts are routed to the
 * certificate trust store. The tmux and browser tests show the same alerts end to end.
 *
 * Spec: XEP-0116 v0.16 section 4.7.2 (SAS reminder), 7.4 ("MUST alert the user": key
 * changed, missing, shared, revoked), section 8 (disclosure: "immediately and clearly
 * inform"), XEP-0217 v0.1 4.6 (retained secret mismatch); RFC 3923 via ObjectChannel.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Switchboard } from "../../src/adapters/switchboard.js";
import type { ClientEvent } from "../../src/client/secure-client.js";
import type { FullJid, Jid } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { MemoryStore } from "../../src/store/memory.js";
import { type TrustAlert, TrustManager } from "../../src/trust/index.js";
import { TuiApp } from "../../src/tui/app.js";
import type { ObjectChannel, ObjectChannelEvent } from "../../src/tui/objects.js";

const ALICE = "alice@example.org/tui" as FullJid;
const BOB = "bob@example.org/tui" as FullJid;
const bob = "bob@example.org" as Jid;
const account = "alice@example.org" as Jid;

class FakeObjects implements ObjectChannel {
  readonly fingerprint = "cert-fp";
  readonly accepted: Array<[Jid, string]> = [];
  readonly sent: Array<[Jid, string]> = [];
  private h: ((e: ObjectChannelEvent) => void) | undefined;
  async start(): Promise<void> {}
  async send(to: Jid, text: string): Promise<void> {
    this.sent.push([to, text]);
  }
  async receive(): Promise<void> {}
  async accept(jid: Jid, fp: string): Promise<void> {
    this.accepted.push([jid, fp]);
  }
  on(h: (e: ObjectChannelEvent) => void): void {
    this.h = h;
  }
  fire(e: ObjectChannelEvent): void {
    this.h?.(e);
  }
  async close(): Promise<void> {}
}

function setup(): { app: TuiApp; store: MemoryStore; objects: FakeObjects; fire: (e: ClientEvent) => void } {
  const board = new Switchboard();
  const store = new MemoryStore();
  const objects = new FakeObjects();
  const app = new TuiApp({ connection: board.connect(ALICE), store, trust: new TrustManager({ store, crypto: nodeCrypto }), objects, downloads: "/nonexistent" });
  const fire = (e: ClientEvent): void => (app as unknown as { onClientEvent(e: ClientEvent): void }).onClientEvent(e);
  return { app, store, objects, fire };
}

const trustAlert = (alert: TrustAlert): ClientEvent => ({ type: "trust-alert", peer: BOB, alert });

test("every alert is shown once with the commands that resolve it", async () => {
  const { app, fire } = setup();
  const m = app.model;
  fire({ type: "alert", peer: BOB, alert: "sas-never-confirmed" });
  fire({ type: "alert", peer: BOB, alert: "sas-never-confirmed" });
  fire({ type: "alert", peer: BOB, alert: "retained-secret-mismatch" });
  fire({ type: "alert", peer: BOB, alert: "disclosure" });
  fire(trustAlert({ kind: "key-changed", account, jid: bob, presented: "fp-new", previous: ["fp-old"] }));
  fire(trustAlert({ kind: "key-missing", account, jid: bob, previous: ["fp-old"] }));
  fire(trustAlert({ kind: "key-shared", account, jid: bob, fingerprint: "fp-shared", otherJids: ["carol@example.org" as Jid] }));
  fire(trustAlert({ kind: "key-revoked", account, jid: bob, fingerprint: "fp-revoked", revokedAt: 1 }));
  const byKind = new Map(m.alerts.map((a) => [a.kind, a]));
  assert.equal(m.alerts.length, 7, "one alert per kind, a reminder is not repeated");
  const actions = (k: string): string[] => [...(byKind.get(k as never)?.actions ?? [])].map((a) => a.replace(/\d+/, "N"));
  assert.deepEqual(actions("sas-never-confirmed"), ["/confirm", "/reject"]);
  assert.deepEqual(actions("retained-secret-mismatch"), ["/confirm", "/reject"]);
  assert.deepEqual(actions("disclosure"), ["/end", "/dismiss N"]);
  assert.deepEqual(actions("key-changed"), ["/trust N", "/dismiss N"]);
  assert.deepEqual(actions("key-missing"), ["/end", "/dismiss N"]);
  assert.deepEqual(actions("key-shared"), ["/trust N", "/dismiss N"]);
  assert.deepEqual(actions("key-revoked"), ["/dismiss N"]);
  assert.match(byKind.get("disclosure")?.text ?? "", /may disclose/);
  assert.match(byKind.get("key-shared")?.text ?? "", /carol@example\.org/);
  // Each alert is also a line in the conversation, with its commands.
  assert.ok(m.conversation(bob).lines.some((l) => l.kind === "warn" && l.text.includes("/trust")));

  // /dismiss closes one; /trust records the decision in the trust store.
  const disclosure = byKind.get("disclosure");
  assert.ok(disclosure);
  await app.submit(`/dismiss ${disclosure.id}`);
  assert.ok(!m.alerts.some((a) => a.kind === "disclosure"));
  await app.submit(`/dismiss ${disclosure.id}`);
  assert.match(m.console.at(-1)?.text ?? "", /no alert/);
});

test("/trust N accepts the key in the trust store; certificate alerts go to the certificate store", async () => {
  const { app, store, objects, fire } = setup();
  await store.recordKeySeen({ account, jid: bob, fingerprint: "fp-new", alg: "ed25519", publicKey: new Uint8Array([1, 2, 3]), now: 1, accepted: false });
  fire(trustAlert({ kind: "key-changed", account, jid: bob, presented: "fp-new", previous: ["fp-old"] }));
  const a = app.model.alerts.find((x) => x.kind === "key-changed");
  assert.ok(a);
  await app.submit(`/trust ${a.id}`);
  assert.equal(app.model.alerts.length, 0);
  assert.equal((await store.getPeerKey(account, "fp-new"))?.jids.find((l) => l.jid === bob)?.accepted, true);

  objects.fire({ type: "alert", peer: bob, alert: { kind: "key-changed", account, jid: bob, presented: "cert-new", previous: ["cert-old"] } });
  const c = app.model.alerts.find((x) => x.scope === "object");
  assert.ok(c);
  assert.match(c.text, /S\/MIME certificate/);
  await app.submit(`/trust ${c.id}`);
  assert.deepEqual(objects.accepted, [[bob, "cert-new"]]);
  assert.equal(app.model.alerts.length, 0);
});

test("object messages carry the [object] indicator; /object needs an open conversation", async () => {
  const { app, objects } = setup();
  await app.submit("/object hi");
  assert.match(app.model.console.at(-1)?.text ?? "", /open a conversation first/);
  await app.submit(`/open ${bob}`);
  await app.submit("/object sealed");
  assert.deepEqual(objects.sent, [[bob, "sealed"]]);
  const out = app.model.conversation(bob).lines.at(-1);
  assert.equal(out?.via, "object");
  objects.fire({ type: "message", from: bob, body: "sealed back", signed: true, encrypted: true });
  const last = app.model.conversation(bob).lines.at(-1);
  assert.equal(last?.via, "object");
  assert.equal(last?.kind, "in");
  objects.fire({ type: "message", from: bob, body: "only signed", signed: true, encrypted: false });
  assert.match(app.model.conversation(bob).lines.at(-1)?.text ?? "", /only signed: others could read it/);
  const { lineText } = await import("../../src/tui/screen.js");
  assert.match(lineText(out ?? { at: 0, kind: "out", text: "" }, bob), /me \[object\]: sealed/);
});
