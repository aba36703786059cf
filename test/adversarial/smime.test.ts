/**
 * Adversarial suite, object encryption (RFC 3923 / draft-ietf-xmpp-e2e-03, src/smime),
 * driven through the sans-IO ObjectSession with the attacker between the two sessions:
 * tampered CMS (ciphertext, signature, truncation, Base64), a wrong signer, an object
 * replayed or stale, a downgrade to unsigned, an object for someone else forwarded, an
 * unencrypted copy substituted. Each case asserts the typed rejection, the RFC 3923
 * section 7 error reply (or silence for replays) and that no plaintext was delivered.
 *
 * Spec: RFC 3923 sections 6.3 (signer address), 6.9 (replay window), 7 (errors); RFC 2779
 * 2.5.1-2.5.3.
 */
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { type FullJid, parseFullJid } from "../../src/core/types.js";
import { nodeCrypto, systemClock, systemRandom } from "../../src/crypto/node.js";
import { generateIdentity } from "../../src/smime/certs.js";
import { MemoryCertificateStore } from "../../src/smime/certstore.js";
import type { SmimeIdentity } from "../../src/smime/cms.js";
import { findE2e, NS_E2E } from "../../src/smime/e2e.js";
import { type ObjectEvent, ObjectSession } from "../../src/smime/session.js";
import { MemoryReplayCache } from "../../src/store/replay.js";
import { el, type Element, parseXml } from "../../src/xml/index.js";
import { AdversarialReport } from "./report.js";

const report = new AdversarialReport("smime");
const SECRET = "ADV-SMIME-SECRET";
const ALICE = parseFullJid("alice@example.org/phone");
const BOB = parseFullJid("bob@example.net/desk");
const EVE = parseFullJid("eve@example.com/lair");
const CAROL = parseFullJid("carol@example.com/home");
const env = { random: systemRandom, clock: systemClock };
let ids: Promise<Record<"alice" | "bob" | "eve" | "carol", SmimeIdentity>> | undefined;
function identities() {
  ids ??= (async () => ({
    alice: await generateIdentity({ jid: ALICE, keyType: "ec-p256" }, env),
    bob: await generateIdentity({ jid: BOB, keyType: "ec-p256" }, env),
    eve: await generateIdentity({ jid: EVE, keyType: "ec-p256" }, env),
    carol: await generateIdentity({ jid: CAROL, keyType: "ec-p256" }, env),
  }))();
  return ids;
}

interface Party {
  readonly jid: FullJid;
  readonly session: ObjectSession;
  readonly events: ObjectEvent[];
  readonly sent: Element[];
}

async function party(jid: FullJid, id: SmimeIdentity, trusted: SmimeIdentity[], clock: VirtualClock): Promise<Party> {
  const certs = new MemoryCertificateStore();
  for (const t of trusted) await certs.add(t.certificate, { anchor: true });
  const session = new ObjectSession({ self: jid, identity: id, certificates: certs, replay: new MemoryReplayCache(), clock, random: new SeededRandom(nodeCrypto, jid) });
  return { jid, session, events: [], sent: [] };
}

function drain(p: Party): void {
  for (const o of p.session.drain()) if (o.kind === "send") p.sent.push(o.stanza);
  else p.events.push(o.event);
}

/** The server: serialize, parse (CRLF becomes LF), stamp 'from'. */
function wire(s: Element, from: FullJid, to: FullJid): Element {
  const x = parseXml(s.toString().replace(/\r\n/g, "\n"));
  x.attrs.from = from;
  x.attrs.to = to;
  return x;
}

async function world() {
  const k = await identities();
  const clock = new VirtualClock(Date.now());
  const a = await party(ALICE, k.alice, [k.bob, k.eve, k.carol], clock);
  const b = await party(BOB, k.bob, [k.alice, k.eve], clock);
  const e = await party(EVE, k.eve, [k.alice, k.bob, k.carol], clock);
  const c = await party(CAROL, k.carol, [k.alice], clock);
  return { k, clock, a, b, e, c };
}

async function protectedMessage(from: Party, to: FullJid, opts: { sign?: boolean; encrypt?: boolean } = {}): Promise<Element> {
  await from.session.sendMessage(to, el("message", { xmlns: "jabber:client", type: "chat" }, el("body", {}, `${SECRET} from ${from.jid}`)), opts);
  drain(from);
  const s = from.sent.shift();
  if (!s) throw new Error("nothing sent");
  return s;
}

/** Delivers `s` to `to` as coming from `from`; the outcome is the event and the reply. */
async function receive(to: Party, s: Element, from: FullJid): Promise<{ outcome: string; delivered: string[] }> {
  const before = to.events.length;
  const sentBefore = to.sent.length;
  await to.session.receive(wire(s, from, to.jid));
  drain(to);
  const evs = to.events.slice(before);
  const delivered = evs.flatMap((e) => (e.type === "message" ? [e.stanza.toString()] : []));
  const ev = evs.map((e) => (e.type === "rejected" ? `rejected:${e.error.condition}` : e.type)).join(",") || "none";
  const reply = to.sent.slice(sentBefore)[0]?.getChild("error");
  const r = reply ? reply.children.flatMap((c) => (typeof c === "string" ? [] : [c.attrs.xmlns === NS_E2E ? `e2e:${c.name}` : c.name])).join("+") : "silent";
  return { outcome: `${ev} reply:${r}`, delivered };
}

/** Flips one character of the S/MIME text (inside the Base64 of the CMS). */
function tamperE2e(s: Element, where: number, how: "flip" | "truncate" | "garbage"): Element {
  const x = parseXml(s.toString());
  const e2e = findE2e(x);
  if (!e2e) throw new Error("no e2e");
  const text = e2e.getText();
  // Point into the Base64 body after the MIME headers.
  const body = text.indexOf("\n\n") + 2 + Math.floor((text.length - text.indexOf("\n\n")) * where);
  let t = text;
  if (how === "flip") t = text.slice(0, body) + (text[body] === "A" ? "B" : "A") + text.slice(body + 1);
  if (how === "truncate") t = text.slice(0, body);
  if (how === "garbage") t = text.slice(0, body) + "!!!" + text.slice(body + 3);
  e2e.children = [t];
  return x;
}

const W = { secrets: [SECRET] } as const;
const CASES: Array<readonly [string, string, () => Promise<{ outcome: string; delivered: string[] }>]> = [
  ["baseline: signed + encrypted message is delivered", "message reply:silent", async () => {
    const w = await world();
    const r = await receive(w.b, await protectedMessage(w.a, BOB), ALICE);
    return { outcome: r.outcome, delivered: [] };
  }],
  ["tampered CMS: one Base64 character changed early (recipient infos)", "rejected:decryption-failed reply:bad-request+e2e:decryption-failed", async () => {
    const w = await world();
    return receive(w.b, tamperE2e(await protectedMessage(w.a, BOB), 0.1, "flip"), ALICE);
  }],
  // AES-CBC has no integrity of its own: depending on where the garbled block lands the
  // padding fails (decryption-failed), the MIME does not parse (malformed) or the inner
  // signature fails (signature-unverified); all three are rejections with a section 7 reply.
  ["tampered CMS (AES-128-CBC): one Base64 character changed in the encrypted content", "rejected (CBC tamper caught by padding, parse or signature)", async () => {
    const w = await world();
    const r = await receive(w.b, tamperE2e(await protectedMessage(w.a, BOB), 0.8, "flip"), ALICE);
    const ok = /^rejected:(decryption-failed|malformed|signature-unverified) reply:(bad-request|not-acceptable)/.test(r.outcome);
    return { outcome: ok ? "rejected (CBC tamper caught by padding, parse or signature)" : r.outcome, delivered: r.delivered };
  }],
  ["tampered CMS (AES-256-GCM): one Base64 character changed in the encrypted content", "rejected:decryption-failed reply:bad-request+e2e:decryption-failed", async () => {
    const w = await world();
    await w.a.session.sendMessage(BOB, el("message", { xmlns: "jabber:client", type: "chat" }, el("body", {}, `${SECRET} gcm`)), { cipher: "aes-256-gcm" });
    drain(w.a);
    return receive(w.b, tamperE2e(w.a.sent.shift() ?? el("x"), 0.8, "flip"), ALICE);
  }],
  ["tampered CMS: truncated", "rejected:malformed reply:bad-request", async () => {
    const w = await world();
    return receive(w.b, tamperE2e(await protectedMessage(w.a, BOB), 0.5, "truncate"), ALICE);
  }],
  ["tampered CMS: garbage in the Base64", "rejected:malformed reply:bad-request", async () => {
    const w = await world();
    return receive(w.b, tamperE2e(await protectedMessage(w.a, BOB), 0.5, "garbage"), ALICE);
  }],
  ["tampered signed-only object: one character of the signed text", "rejected:signature-unverified reply:not-acceptable+e2e:signature-unverified", async () => {
    const w = await world();
    const s = await protectedMessage(w.a, BOB, { encrypt: false });
    const x = parseXml(s.toString());
    const e2e = findE2e(x);
    if (e2e) e2e.children = [e2e.getText().replace(SECRET, SECRET.replace("S", "Z"))];
    return receive(w.b, x, ALICE);
  }],
  ["wrong signer: Eve signs and encrypts as herself, the server delivers it as from Alice", "rejected:address-mismatch reply:not-acceptable+e2e:signature-unverified", async () => {
    const w = await world();
    return receive(w.b, await protectedMessage(w.e, BOB), ALICE);
  }],
  ["wrong signer: an untrusted key (Carol, not in Bob's store) signs for carol", "rejected:untrusted-certificate reply:not-acceptable+e2e:signature-unverified", async () => {
    const w = await world();
    const k = await identities();
    await w.c.session.sendMessage(BOB, el("message", { xmlns: "jabber:client", type: "chat" }, el("body", {}, `${SECRET} carol`)), { encrypt: false });
    drain(w.c);
    void k;
    return receive(w.b, w.c.sent.shift() ?? el("x"), CAROL);
  }],
  ["replayed message: the same object delivered twice (second is dropped silently)", "rejected:replayed reply:silent", async () => {
    const w = await world();
    const s = await protectedMessage(w.a, BOB);
    await receive(w.b, s, ALICE);
    return receive(w.b, s, ALICE);
  }],
  ["stale message: delivered 10 minutes after it was written", "rejected:bad-timestamp reply:not-acceptable+e2e:bad-timestamp", async () => {
    const w = await world();
    const s = await protectedMessage(w.a, BOB);
    w.clock.advance(10 * 60_000);
    return receive(w.b, s, ALICE);
  }],
  ["message from the future: dated 10 minutes ahead", "rejected:bad-timestamp reply:not-acceptable+e2e:bad-timestamp", async () => {
    const w = await world();
    w.clock.advance(10 * 60_000);
    const s = await protectedMessage(w.a, BOB);
    w.clock.advance(-10 * 60_000);
    return receive(w.b, s, ALICE);
  }],
  ["downgrade to unsigned: encrypted but not signed (policy requires a signature)", "rejected:not-protected reply:bad-request", async () => {
    const w = await world();
    return receive(w.b, await protectedMessage(w.a, BOB, { sign: false }), ALICE);
  }],
  ["forwarded: an object signed for Carol replayed to Bob (wrongly addressed)", "rejected:wrong-recipient reply:not-acceptable", async () => {
    const w = await world();
    return receive(w.b, await protectedMessage(w.a, CAROL, { encrypt: false }), ALICE);
  }],
  ["encrypted for Carol only, delivered to Bob: he holds no key for it", "rejected:decryption-failed reply:bad-request+e2e:decryption-failed", async () => {
    const w = await world();
    return receive(w.b, await protectedMessage(w.a, CAROL), ALICE);
  }],
  ["<e2e/> removed, the clear fallback body left (not claimed as protected)", "none reply:silent", async () => {
    const w = await world();
    const s = parseXml((await protectedMessage(w.a, BOB)).toString());
    s.children = s.children.filter((c) => typeof c === "string" || c.name !== "e2e");
    return receive(w.b, s, ALICE);
  }],
];

for (const [name, expect, attack] of CASES) {
  const baseline = name.startsWith("baseline");
  report.case(name, { expect, ...(baseline ? {} : W) }, async () => {
    const r = await attack();
    return { outcome: r.outcome, delivered: r.delivered };
  });
}

report.case("no plaintext on the wire: signed+encrypted message and directed presence", { expect: "clean" }, async () => {
  const w = await world();
  const m = await protectedMessage(w.a, BOB);
  await w.a.session.sendPresence(el("presence", { xmlns: "jabber:client" }, el("status", {}, `${SECRET} status`)), BOB);
  drain(w.a);
  const texts = [m.toString(), ...w.a.sent.map((s) => s.toString())];
  return { outcome: texts.some((t) => t.includes(SECRET)) ? "leaked" : "clean", wire: texts };
}, );
