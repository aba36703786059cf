/**
 * Adversarial suite, main paths through a real server: Alice reaches Prosody through the
 * hostile proxy (test/adversarial/hostile-proxy.ts), Bob connects directly; ESessions are
 * negotiated and used through Prosody while the proxy tampers, replays, drops, downgrades
 * and substitutes invalid X25519 points. Each case asserts the exact outcome and that no
 * plaintext marker crossed the proxy in either direction (raw bytes scanned) or reached
 * the application when it must not.
 *
 * Spec: XEP-0200 v0.2 section 6, XEP-0217 / XEP-0116 v0.16 section 4, RFC 7748 6.1,
 * RFC 6120 section 4 (the proxy's stream splitting).
 */
import { after, before } from "node:test";
import { connectXmpp } from "../../src/adapters/xmpp-client.js";
import type { StanzaConnection } from "../../src/adapters/connection.js";
import { type ClientEvent, SecureClient } from "../../src/client/secure-client.js";
import { fromBase64, toBase64 } from "../../src/core/bytes.js";
import { MemoryStore } from "../../src/store/memory.js";
import { NS, parseXml, serialize } from "../../src/xml/index.js";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";
import { negotiationMessage, setField, X25519_LOW_ORDER } from "./esession-helpers.js";
import { type HostileProxy, startHostileProxy } from "./hostile-proxy.js";
import { AdversarialReport } from "./report.js";

const report = new AdversarialReport("prosody-proxy");
const SECRET = "ADV-PROXY-SECRET";
let prosody: ProsodyInstance;
let proxy: HostileProxy;
let n = 0;

before(async () => {
  const users: Array<[string, string]> = [];
  for (let i = 0; i < 8; i++) users.push([`alice${i}`, "pw"], [`bob${i}`, "pw"]);
  prosody = await startProsody({ users });
  const port = Number(new URL(prosody.service.replace("xmpp://", "http://")).port);
  proxy = await startHostileProxy({ host: "127.0.0.1", port });
});
after(async () => {
  await proxy?.close();
  await prosody?.stop();
});

interface Duo {
  readonly alice: SecureClient;
  readonly bob: SecureClient;
  readonly aEvents: ClientEvent[];
  readonly bEvents: ClientEvent[];
  readonly conns: StanzaConnection[];
}

/** A fresh pair of accounts: Alice through the proxy, Bob direct. */
async function duo(): Promise<Duo> {
  const i = n++;
  const ac = await connectXmpp({ service: proxy.service, domain: prosody.domain, username: `alice${i}`, password: "pw", resource: "a" });
  const bc = await connectXmpp({ service: prosody.service, domain: prosody.domain, username: `bob${i}`, password: "pw", resource: "b" });
  const alice = new SecureClient({ connection: ac, store: new MemoryStore() });
  const bob = new SecureClient({ connection: bc, store: new MemoryStore() });
  const aEvents: ClientEvent[] = [];
  const bEvents: ClientEvent[] = [];
  alice.on((e) => aEvents.push(e));
  bob.on((e) => bEvents.push(e));
  return { alice, bob, aEvents, bEvents, conns: [ac, bc] };
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function done(d: Duo): Promise<void> {
  proxy.setHook(undefined);
  for (const c of d.conns) await c.close().catch(() => undefined);
}

const failed = (evs: ClientEvent[]) => evs.flatMap((e) => (e.type === "failed" ? [e.error.condition] : []));
const bodies = (evs: ClientEvent[]) => evs.flatMap((e) => (e.type === "message" && e.body !== undefined ? [e.body] : []));
const wire = () => [proxy.transcript.c2s, proxy.transcript.s2c];

function onC(s: import("../../src/xml/index.js").Element): import("../../src/xml/index.js").Element | undefined {
  return s.getChild("c", NS.c);
}

report.case("baseline through the proxy: negotiated, message delivered, no plaintext in the raw bytes", { expect: "sas:equal delivered:1", wireOnlySecrets: [SECRET] }, async () => {
  const d = await duo();
  const a = await d.alice.startSession(d.bob.jid);
  const b = d.bEvents.find((e) => e.type === "established");
  await d.alice.sendMessage(d.bob.jid, `${SECRET} hello`);
  await until(() => bodies(d.bEvents).length > 0);
  await done(d);
  return { outcome: `sas:${b?.type === "established" && b.sas === a.sas ? "equal" : "differ"} delivered:${bodies(d.bEvents).length}`, wire: wire() };
});

report.case("proxy flips a ciphertext bit (c2s): Bob refuses with bad-mac, nothing delivered", { expect: "bob:bad-mac delivered:0", secrets: [SECRET] }, async () => {
  const d = await duo();
  await d.alice.startSession(d.bob.jid);
  proxy.setHook((p) => {
    const data = onC(p.stanza)?.getChild("data");
    if (p.direction !== "c2s" || !data) return { action: "deliver" };
    const b = fromBase64(data.getText()) ?? new Uint8Array(1);
    b[0] = (b[0] ?? 0) ^ 1;
    data.children = [toBase64(b)];
    return { action: "replace", stanzas: [p.stanza] };
  });
  await d.alice.sendMessage(d.bob.jid, `${SECRET} pay 100`);
  await until(() => failed(d.bEvents).length > 0);
  await done(d);
  return { outcome: `bob:${failed(d.bEvents).join(",")} delivered:${bodies(d.bEvents).length}`, delivered: bodies(d.bEvents), wire: wire() };
});

report.case("proxy replays an encrypted stanza (c2s duplicate): delivered once, the copy ends the session", { expect: "bob:bad-mac delivered:1", wireOnlySecrets: [SECRET] }, async () => {
  const d = await duo();
  await d.alice.startSession(d.bob.jid);
  let once = false;
  proxy.setHook((p) => {
    if (p.direction !== "c2s" || !onC(p.stanza) || once) return { action: "deliver" };
    once = true;
    return { action: "duplicate" };
  });
  await d.alice.sendMessage(d.bob.jid, `${SECRET} once`);
  await until(() => failed(d.bEvents).length > 0);
  await done(d);
  return { outcome: `bob:${failed(d.bEvents).join(",")} delivered:${bodies(d.bEvents).length}`, wire: wire() };
});

report.case("proxy drops an encrypted stanza: the next one is refused (no silent gap)", { expect: "bob:bad-mac delivered:0", secrets: [SECRET] }, async () => {
  const d = await duo();
  await d.alice.startSession(d.bob.jid);
  let dropped = false;
  proxy.setHook((p) => {
    if (p.direction !== "c2s" || !onC(p.stanza) || dropped) return { action: "deliver" };
    dropped = true;
    return { action: "drop" };
  });
  await d.alice.sendMessage(d.bob.jid, `${SECRET} lost`);
  await d.alice.sendMessage(d.bob.jid, `${SECRET} after`);
  await until(() => failed(d.bEvents).length > 0);
  await done(d);
  return { outcome: `bob:${failed(d.bEvents).join(",")} delivered:${bodies(d.bEvents).length}`, delivered: bodies(d.bEvents), wire: wire() };
});

report.case("proxy downgrades the offer (x25519 and the strong algorithms stripped): Bob refuses Alice's identity", { expect: "bob:identity-mismatch alice:not-acceptable", secrets: [SECRET] }, async () => {
  const d = await duo();
  proxy.setHook((p) => {
    if (p.direction !== "c2s" || negotiationMessage(p.stanza)?.n !== 1) return { action: "deliver" };
    const x = negotiationMessage(p.stanza)?.x;
    for (const f of x?.getChildren("field") ?? []) {
      f.children = f.children.filter((o) => typeof o === "string" || o.name !== "option" || !["x25519", "aes256-ctr", "sha512"].includes(o.getChildText("value") ?? ""));
      if (f.attrs.var === "dhhashes") f.children = f.children.slice(1);
    }
    return { action: "replace", stanzas: [p.stanza] };
  });
  await d.alice.startSession(d.bob.jid).catch(() => undefined);
  await until(() => failed(d.bEvents).length > 0 && failed(d.aEvents).length > 0);
  await done(d);
  return { outcome: `bob:${failed(d.bEvents).join(",")} alice:${failed(d.aEvents).join(",")}`, wire: wire() };
});

const lowOrder = X25519_LOW_ORDER[2];
report.case(`proxy replaces Bob's X25519 value with a small-order point (${lowOrder?.[0] ?? ""}, s2c): Alice refuses it`, { expect: "alice:bad-dh-value bob:not-acceptable", secrets: [SECRET] }, async () => {
  const d = await duo();
  proxy.setHook((p) => {
    if (p.direction !== "s2c" || negotiationMessage(p.stanza)?.n !== 2 || !lowOrder) return { action: "deliver" };
    return { action: "replace", stanzas: [setField(p.stanza, "dhkeys", [toBase64(lowOrder[1])])] };
  });
  await d.alice.startSession(d.bob.jid).catch(() => undefined);
  await until(() => failed(d.bEvents).length > 0 && failed(d.aEvents).length > 0);
  await done(d);
  return { outcome: `alice:${failed(d.aEvents).join(",")} bob:${failed(d.bEvents).join(",")}`, wire: wire() };
});

report.case("proxy reflects Alice's encrypted stanza back to her (as if from Bob): she refuses it", { expect: "alice:bad-mac delivered:0", secrets: [SECRET] }, async () => {
  const d = await duo();
  await d.alice.startSession(d.bob.jid);
  proxy.setHook((p) => {
    if (p.direction !== "c2s" || !onC(p.stanza)) return { action: "deliver" };
    const back = parseXml(serialize(p.stanza));
    back.attrs.from = String(p.stanza.attrs.to);
    back.attrs.to = d.alice.jid;
    proxy.inject(p.conn, "s2c", back);
    return { action: "drop" };
  });
  await d.alice.sendMessage(d.bob.jid, `${SECRET} reflected`);
  await until(() => failed(d.aEvents).length > 0);
  await done(d);
  return { outcome: `alice:${failed(d.aEvents).join(",")} delivered:${bodies(d.aEvents).length + bodies(d.bEvents).length}`, delivered: [...bodies(d.aEvents), ...bodies(d.bEvents)], wire: wire() };
});
