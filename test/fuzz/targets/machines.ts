/**
 * Fuzz targets for the sans-IO state machines: random and mutated stanzas (or bytes) fed
 * into each core in its negotiating and established states. Properties: handle*() never
 * throws (bad peer input is a typed outcome: an error stanza, an event, a termination);
 * the retained state stays bounded after many junk inputs; for ESession, no junk input
 * is ever delivered as a decrypted message.
 *
 * Spec: ../shared/docs/architecture.md "Cores are sans-IO state machines" (handle never
 * throws on bad peer input); XEP-0200 v0.2 section 6 (a stanza whose MAC fails is never
 * delivered); XEP-0155 v1.2; XEP-0030 v2.5; XEP-0047 v2.0; XEP-0166 v1.1; RFC 1928
 * (SOCKS5); RFC 6120 section 4 (the XML stream parser).
 */
import fc from "fast-check";
import { SeededRandom, VirtualClock } from "../../../src/core/testing.js";
import { parseFullJid, type FullJid, type ThreadId } from "../../../src/core/types.js";
import { nodeCrypto } from "../../../src/crypto/node.js";
import { DiscoResponder } from "../../../src/disco/responder.js";
import { ESession, DEFAULT_POLICY, type Policy } from "../../../src/esession/session.js";
import { IbbSession } from "../../../src/ibb/session.js";
import { dataElement, iqSet, openElement, closeElement, messageWith } from "../../../src/ibb/codec.js";
import { JingleSession } from "../../../src/jingle/session.js";
import { buildJingle, jingleIq } from "../../../src/jingle/codec.js";
import { StanzaSessionCore } from "../../../src/negotiation/session.js";
import { buildRequest } from "../../../src/negotiation/codec.js";
import { f } from "../../../src/forms/codec.js";
import { loggingField } from "../../../src/negotiation/fields.js";
import { Socks5ClientNegotiator, Socks5ServerNegotiator } from "../../../src/socks5/negotiate.js";
import { XmlStreamParser } from "../../../src/streams/parser.js";
import { deepClone, el, NS, parseXml, serialize, type Element } from "../../../src/xml/index.js";
import { bytesArb, retainedSize, stanzaArb, target, type FuzzTarget } from "../lib.js";

/** A sans-IO core that takes stanzas and timers (IBB, Jingle). */
interface StanzaCore {
  handleStanza(s: Element): void;
  readonly outbox: { drain(): unknown };
  onTimer(now: number): void;
}

/**
 * Feeds every input to the responder `r` and the initiator `i` (outputs dropped), lets
 * `advanceMs` pass, fires their timers, and fails if the responder's retained state grew
 * by more than `slack` (JSON size) over where it started.
 */
function junkIntoBoth(name: string, r: StanzaCore, i: StanzaCore, inputs: readonly Element[], clock: VirtualClock, advanceMs: number, slack: number): void {
  const r0 = retainedSize(r);
  for (const s of inputs) {
    r.handleStanza(s);
    r.outbox.drain();
    i.handleStanza(s);
    i.outbox.drain();
  }
  clock.advance(advanceMs);
  r.onTimer(clock.now());
  i.onTimer(clock.now());
  if (retainedSize(r) > r0 + slack) throw new Error(`${name} state grew: ${r0} -> ${retainedSize(r)}`);
}

const A = parseFullJid("alice@example.org/pda");
const B = parseFullJid("bob@example.org/laptop");
const THREAD = "ffd7076498744578d10edabfe7f4a866" as ThreadId;

// ---- ESession -------------------------------------------------------------------------------

const POLICY: Policy = { ...DEFAULT_POLICY, groups: ["x25519"] };

function params(local: FullJid, peer: FullJid, seed: string, clock: VirtualClock) {
  return { crypto: nodeCrypto, random: new SeededRandom(nodeCrypto, seed), clock, local, peer, thread: THREAD, policy: POLICY };
}

/** Wire copy with the server's 'from' stamp. */
function wire(s: Element, from: FullJid): Element {
  const c = parseXml(serialize(s));
  c.attrs.from = from;
  return c;
}

function sends(s: ESession): Element[] {
  const out: Element[] = [];
  for (const o of s.drain()) if (o.kind === "send") out.push(o.stanza);
  return out;
}

interface Established {
  readonly alice: ESession;
  readonly bob: ESession;
  readonly clock: VirtualClock;
  /** Every stanza that crossed the wire while negotiating and exchanging messages. */
  readonly transcript: Element[];
}

/** Alice and Bob negotiate over direct delivery, then exchange a few encrypted messages. */
function establish(seed: string): Established {
  const clock = new VirtualClock();
  const alice = ESession.initiate(params(A, B, `a${seed}`, clock));
  const transcript: Element[] = [];
  let bob: ESession | undefined;
  let toBob = sends(alice).map((s) => wire(s, A));
  for (let round = 0; round < 10 && toBob.length > 0; round++) {
    const toAlice: Element[] = [];
    for (const s of toBob) {
      transcript.push(s);
      if (bob === undefined) bob = ESession.respond(params(B, A, `b${seed}`, clock), s);
      else bob.handleStanza(s);
      toAlice.push(...sends(bob).map((x) => wire(x, B)));
    }
    toBob = [];
    for (const s of toAlice) {
      transcript.push(s);
      alice.handleStanza(s);
      toBob.push(...sends(alice).map((x) => wire(x, A)));
    }
  }
  if (bob === undefined || !alice.isActive || !bob.isActive) throw new Error("test setup: negotiation did not complete");
  for (let i = 0; i < 3; i++) {
    alice.send(el("message", { to: B, type: "chat" }, el("body", {}, `hello ${i}`)));
    for (const s of sends(alice)) {
      const w = wire(s, A);
      transcript.push(w);
      bob.handleStanza(deepClone(w));
      bob.drain();
    }
  }
  return { alice, bob, clock, transcript };
}

const base = establish("seed");
const esSeeds = base.transcript;

/** Delivered message bodies in a drained output list. */
function delivered(s: ESession): string[] {
  const bodies: string[] = [];
  for (const o of s.drain()) {
    if (o.kind !== "event") continue;
    const ev = o.event as { type: string; stanza?: Element };
    if (ev.type === "stanza" || ev.type === "message") {
      const b = ev.stanza?.getChildText("body");
      if (b !== undefined && b !== null) bodies.push(b);
    }
  }
  return bodies;
}

// ---- the other cores ------------------------------------------------------------------------

const negRequest = buildRequest({ to: B, from: A, thread: THREAD, id: "r1", fields: [loggingField(["may", "mustnot"]), f.value("otr", "true")] });

const ibbSeeds: Element[] = [
  iqSet(B, "i1", openElement("s1", 4096, "iq")),
  iqSet(B, "i2", dataElement("s1", 0, Uint8Array.of(1, 2, 3))),
  iqSet(B, "i3", dataElement("s1", 1, new Uint8Array(100))),
  messageWith(B, "m1", dataElement("s1", 2, Uint8Array.of(9))),
  iqSet(B, "i4", closeElement("s1")),
  el("iq", { type: "result", id: "i1", from: B }),
].map((s) => {
  s.attrs.from = A;
  return s;
});

const jingleSeeds: Element[] = [
  jingleIq(B, "j1", { action: "session-initiate", sid: "sid1", initiator: A, contents: [{ creator: "initiator", name: "c", description: { kind: "xmlstream" }, transport: { kind: "ibb", ns: "urn:xmpp:jingle:transports:ibb:1", sid: "t", blockSize: 4096 }, security: { kind: "xtls", methods: ["x509"] } }] }),
  jingleIq(B, "j2", { action: "session-accept", sid: "sid1", responder: B, contents: [] }),
  jingleIq(B, "j3", { action: "session-terminate", sid: "sid1", contents: [], reason: { condition: "success" } }),
  el("iq", { type: "result", id: "j1" }),
].map((s) => {
  s.attrs.from = A;
  return s;
});
void buildJingle;

function junkRounds(feed: (s: Element) => void, inputs: readonly Element[]): void {
  for (const s of inputs) feed(s);
}

const JUNK = 120;

export const machineTargets: readonly FuzzTarget[] = [
  target("esession: junk into an established session never throws and is never delivered", 40, () =>
    fc.property(fc.array(stanzaArb(esSeeds), { minLength: 1, maxLength: 8 }), fc.nat(1000), (inputs, seed) => {
      const { bob } = establish(`e${seed % 5}`);
      bob.drain();
      for (const s of inputs) {
        bob.handleStanza(s);
        const got = delivered(bob);
        // Replayed originals are refused by the counter; mutated ones by the MAC. Only a
        // verbatim original (never delivered before to this fresh session) may decrypt.
        for (const b of got) if (!/^hello [0-2]$/.test(b)) throw new Error(`junk delivered: ${b.slice(0, 40)}`);
      }
    }),
  ),
  target("esession: junk into a negotiating responder and initiator never throws", 60, () =>
    fc.property(stanzaArb(esSeeds), stanzaArb(esSeeds), (req, resp) => {
      const clock = new VirtualClock();
      const bob = ESession.respond(params(B, A, "nb", clock), req);
      bob.drain();
      bob.handleStanza(resp);
      bob.drain();
      const alice = ESession.initiate(params(A, B, "na", clock));
      alice.drain();
      alice.handleStanza(resp);
      alice.drain();
      clock.advance(120_000);
      alice.onTimer(clock.now());
      bob.onTimer(clock.now());
    }),
  ),
  target("esession: state stays bounded after many junk stanzas (established)", 5, () =>
    fc.property(fc.array(stanzaArb(esSeeds), { minLength: JUNK, maxLength: JUNK }), (inputs) => {
      const { bob } = establish("bounded");
      bob.drain();
      const before = retainedSize(bob);
      junkRounds((s) => {
        bob.handleStanza(s);
        bob.drain();
      }, inputs);
      const after = retainedSize(bob);
      if (after > before + 200) throw new Error(`esession state grew from ${before} to ${after}`);
    }),
  ),
  target("negotiation: junk into a StanzaSessionCore (responder and initiator) never throws; state bounded", 150, () =>
    fc.property(fc.array(stanzaArb([negRequest]), { minLength: 1, maxLength: 30 }), (inputs) => {
      const mk = (local: FullJid) => new StanzaSessionCore({ local, random: new SeededRandom(nodeCrypto, "n"), clock: new VirtualClock(), revealPresence: true, policy: { otr: "prefer", timeoutMs: 1000 } });
      const bob = mk(B);
      const alice = mk(A);
      alice.request(B);
      alice.drain();
      const b0 = retainedSize(bob);
      const a0 = retainedSize(alice);
      for (const s of inputs) {
        bob.handleStanza(s);
        bob.drain();
        alice.handleStanza(s);
        alice.drain();
      }
      bob.handleTimer(10_000);
      alice.handleTimer(10_000);
      if (retainedSize(bob) > b0 + 400 || retainedSize(alice) > a0 + 400) throw new Error("negotiation state grew");
    }),
  ),
  target("disco: the responder answers junk without throwing and keeps no state", 300, () => {
    const r = new DiscoResponder({ jid: B, crypto: nodeCrypto, capsNode: "http://x" });
    const seed = el("iq", { type: "get", id: "q", from: A, to: B }, el("query", { xmlns: NS.disco, node: `http://x#${r.ver}` }));
    const size0 = retainedSize(r);
    return fc.property(stanzaArb([seed]), (s) => {
      r.handleStanza(s);
      r.drain();
      if (retainedSize(r) > size0 + 50) throw new Error("disco responder state grew");
    });
  }),
  target("ibb: junk into responder and initiator sessions never throws; state bounded", 200, () =>
    fc.property(fc.array(stanzaArb(ibbSeeds), { minLength: 1, maxLength: 40 }), (inputs) => {
      const clock = new VirtualClock();
      const mk = (role: "initiator" | "responder") =>
        new IbbSession({ self: role === "initiator" ? A : B, peer: role === "initiator" ? B : A, sid: "s1", role, blockSize: 4096, random: new SeededRandom(nodeCrypto, role), clock });
      const r = mk("responder");
      const i = mk("initiator");
      i.open();
      i.outbox.drain();
      junkIntoBoth("ibb", r, i, inputs, clock, 60_000, 400);
    }),
  ),
  target("jingle: junk into sessions never throws; state bounded", 200, () =>
    fc.property(fc.array(stanzaArb(jingleSeeds), { minLength: 1, maxLength: 30 }), (inputs) => {
      const clock = new VirtualClock();
      const mk = (role: "initiator" | "responder") =>
        new JingleSession({ self: role === "initiator" ? A : B, peer: role === "initiator" ? B : A, role, sid: "sid1", random: new SeededRandom(nodeCrypto, role), clock });
      const r = mk("responder");
      const i = mk("initiator");
      i.initiate([]);
      i.outbox.drain();
      junkIntoBoth("jingle", r, i, inputs, clock, 300_000, 600);
    }),
  ),
  target("streams: the XML stream parser takes any bytes in any chunking without throwing", 400, () =>
    fc.property(
      fc.array(fc.oneof(bytesArb, fc.constantFrom("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>", "<message><body>x</body></message>", "</stream:stream>", "<!--", "<?pi?>", "&lol;", "<a><a><a>").map((s) => new TextEncoder().encode(s))), { maxLength: 12 }),
      (chunks) => {
        const p = new XmlStreamParser(4096);
        let failed = false;
        for (const c of chunks) {
          for (const ev of p.write(c)) {
            if (failed) throw new Error("events after an error");
            if (ev.type === "error") failed = true;
          }
        }
      },
    ),
  ),
  target("socks5: both negotiators take any bytes without throwing; buffers stay bounded", 600, () =>
    fc.property(fc.array(bytesArb, { minLength: 1, maxLength: 20 }), (chunks) => {
      const server = new Socks5ServerNegotiator(() => true);
      const client = new Socks5ClientNegotiator("a".repeat(40));
      let total = 0;
      for (const c of chunks) {
        total += c.length;
        server.feed(c);
        client.feed(c);
      }
      const size = retainedSize(server) + retainedSize(client);
      // A negotiation needs at most 2 + 255 + 7 + 255 bytes; nothing beyond that may pile up.
      if (size > 100 + Math.min(total, 2000) / 16) throw new Error(`socks5 buffers grew to ${size}`);
    }),
  ),
];
