/**
 * Adversarial suite, XEP-0200 stanza encryption inside an established ESession (spec and
 * modern suites), attacker in the switchboard: each child of `<c/>` (data, mac, key, new,
 * old) altered, removed, emptied, duplicated or truncated; stanzas replayed, reordered,
 * dropped, injected, reflected to their sender, swapped between sessions and threads;
 * unauthenticated extras next to `<c/>`; re-key stanzas replayed. Every case asserts the
 * exact outcome on the receiver and that the plaintext was neither delivered nor on the wire.
 *
 * Spec: XEP-0200 v0.2 section 6 (MAC before decryption; a bad MAC or unparsable content
 * terminates the session), section 7 (re-key), section 4 (what stays in the clear);
 * XEP-0210 4.1.1-4.1.3.
 */
import { fromBase64, toBase64 } from "../../src/core/bytes.js";
import { el, type Element, NS, parseXml, serialize } from "../../src/xml/index.js";
import { makePair, type Pair } from "../sim/pair.js";
import { sideSummary, SUITES } from "./esession-helpers.js";
import { AdversarialReport } from "./report.js";

const report = new AdversarialReport("esession-channel");
const SECRET = "ADV-CHANNEL-SECRET";

async function established(seed: string, suite: "spec" | "modern"): Promise<Pair> {
  const p = makePair({ seed, policy: SUITES[suite] });
  await Promise.all([p.alice.startSession(p.bobJid), p.settle()]);
  await p.settle();
  return p;
}

function copyOf(s: Element): Element {
  return parseXml(serialize(s));
}

function cOf(s: Element): Element | undefined {
  return s.getChild("c", NS.c);
}

function flip(b64: string, at: "first" | "last"): string {
  const b = fromBase64(b64) ?? new Uint8Array(1);
  const i = at === "first" ? 0 : b.length - 1;
  b[i] = (b[i] ?? 0) ^ 0x01;
  return toBase64(b);
}

/** Bob's view after the attack: his events until his session ended, and what he got. */
function outcome(p: Pair): { outcome: string; delivered: string[]; wire: string[] } {
  const bodies = p.bodies("bob");
  return {
    outcome: `bob[${sideSummary(p.bobEvents.filter((e) => e.type !== "established"))}] delivered:${bodies.filter((b) => b.includes(SECRET)).length}`,
    delivered: bodies,
    wire: p.relayed.map((r) => r.text),
  };
}

type Mut = (c: Element) => void;

/** Mutations of the `<c/>` of Alice's next protected stanza (table over the children). */
const C_MUTATIONS: Array<readonly [string, Mut, string]> = [
  ["data: one bit flipped (CTR would flip the plaintext bit)", (c) => { const d = c.getChild("data"); if (d) d.children = [flip(d.getText(), "first")]; }, "bob[fail:bad-mac] delivered:0"],
  ["data: last byte flipped", (c) => { const d = c.getChild("data"); if (d) d.children = [flip(d.getText(), "last")]; }, "bob[fail:bad-mac] delivered:0"],
  ["data: truncated by 16 bytes", (c) => { const d = c.getChild("data"); const b = fromBase64(d?.getText() ?? ""); if (d && b) d.children = [toBase64(b.subarray(0, b.length - 16))]; }, "bob[fail:bad-mac] delivered:0"],
  ["data: extended by one block", (c) => { const d = c.getChild("data"); const b = fromBase64(d?.getText() ?? ""); if (d && b) d.children = [toBase64(new Uint8Array([...b, ...new Uint8Array(16)]))]; }, "bob[fail:bad-mac] delivered:0"],
  ["data: removed", (c) => { c.children = c.children.filter((x) => typeof x === "string" || x.name !== "data"); }, "bob[fail:bad-mac] delivered:0"],
  ["data: emptied", (c) => { const d = c.getChild("data"); if (d) d.children = []; }, "bob[fail:bad-mac] delivered:0"],
  ["data: not Base64", (c) => { const d = c.getChild("data"); if (d) d.children = ["***not base64***"]; }, "bob[fail:bad-request] delivered:0"],
  ["data: duplicated element", (c) => { const d = c.getChild("data"); if (d) c.cnode(copyOf(d)); }, "bob[fail:bad-request] delivered:0"],
  ["mac: one bit flipped", (c) => { const m = c.getChild("mac"); if (m) m.children = [flip(m.getText(), "first")]; }, "bob[fail:bad-mac] delivered:0"],
  ["mac: truncated to 16 bytes", (c) => { const m = c.getChild("mac"); const b = fromBase64(m?.getText() ?? ""); if (m && b) m.children = [toBase64(b.subarray(0, 16))]; }, "bob[fail:bad-mac] delivered:0"],
  ["mac: removed", (c) => { c.children = c.children.filter((x) => typeof x === "string" || x.name !== "mac"); }, "bob[fail:bad-request] delivered:0"],
  ["mac: emptied", (c) => { const m = c.getChild("mac"); if (m) m.children = []; }, "bob[fail:bad-mac] delivered:0"],
  ["mac: all zero", (c) => { const m = c.getChild("mac"); const b = fromBase64(m?.getText() ?? ""); if (m && b) m.children = [toBase64(new Uint8Array(b.length))]; }, "bob[fail:bad-mac] delivered:0"],
  ["key: a forged re-key value added", (c) => { c.children.unshift(el("key", {}, toBase64(new Uint8Array(32).fill(9)))); }, "bob[fail:bad-mac] delivered:0"],
  ["new: a spurious <new>1</new> (a key never sent)", (c) => { c.children.unshift(el("new", {}, "1")); }, "bob[fail:bad-mac] delivered:0"],
  ["new: malformed <new>x</new>", (c) => { c.children.unshift(el("new", {}, "x")); }, "bob[fail:bad-request] delivered:0"],
  ["old: a forged old MAC key added", (c) => { c.children.unshift(el("old", {}, toBase64(new Uint8Array(32).fill(3)))); }, "bob[fail:bad-mac] delivered:0"],
  // The MAC covers the normalized children other than <mac/>: moving <mac/> changes nothing
  // authenticated, so the genuine stanza is (rightly) delivered.
  ["<mac/> moved before <data/> (authenticated content unchanged)", (c) => { c.children = [...c.children].reverse(); }, "bob[-] delivered:1"],
  ["<c/> emptied", (c) => { c.children = []; }, "bob[fail:bad-request] delivered:0"],
];

for (const suite of ["spec", "modern"] as const) {
  for (const [name, mut, expect] of C_MUTATIONS) {
    const delivers = /delivered:[1-9]/.test(expect);
    report.case(`${suite}: <c/> ${name}`, { expect, ...(delivers ? { wireOnlySecrets: [SECRET] } : { secrets: [SECRET] }) }, async () => {
      const p = await established(`c-${suite}-${name}`, suite);
      p.board.setAdversary((item) => {
        const s = copyOf(item.stanza);
        const c = cOf(s);
        if (!c || item.from !== p.aliceJid) return { action: "deliver" };
        mut(c);
        return { action: "replace", stanza: s };
      });
      await p.alice.sendMessage(p.bobJid, `${SECRET} 1`);
      await p.settle();
      return outcome(p);
    });
  }
}

/** Whole-stanza attacks: [name, expected, attack]. */
const STANZA_ATTACKS: Array<readonly [string, string, (p: Pair) => Promise<void>]> = [
  ["replay: a delivered stanza sent again later", "bob[fail:bad-mac] delivered:1", async (p) => {
    let first: Element | undefined;
    p.board.setAdversary((item) => {
      if (cOf(item.stanza) && !first) first = copyOf(item.stanza);
      return { action: "deliver" };
    });
    await p.alice.sendMessage(p.bobJid, `${SECRET} 1`);
    await p.settle();
    if (first) p.board.inject(p.aliceJid, first);
    await p.settle();
  }],
  ["reorder: the second stanza arrives before the first", "bob[fail:bad-mac,fail:unexpected-request] delivered:0", async (p) => {
    let held: number | undefined;
    p.board.setAdversary((item) => {
      if (held === undefined && cOf(item.stanza)) {
        held = item.seq;
        return { action: "hold" };
      }
      return { action: "deliver" };
    });
    await p.alice.sendMessage(p.bobJid, `${SECRET} 1`);
    await p.alice.sendMessage(p.bobJid, `${SECRET} 2`);
    await p.settle();
    p.board.setAdversary(undefined);
    if (held !== undefined) p.board.release(held);
    await p.settle();
  }],
  ["drop: the first stanza is lost, the next one is refused", "bob[fail:bad-mac] delivered:0", async (p) => {
    let dropped = false;
    p.board.setAdversary((item) => {
      if (!dropped && cOf(item.stanza)) {
        dropped = true;
        return { action: "drop" };
      }
      return { action: "deliver" };
    });
    await p.alice.sendMessage(p.bobJid, `${SECRET} 1`);
    await p.alice.sendMessage(p.bobJid, `${SECRET} 2`);
    await p.settle();
  }],
  ["inject: a forged <c/> with random data and MAC", "bob[fail:bad-mac] delivered:0", async (p) => {
    const thread = p.alice.session(p.bobJid)?.thread ?? "";
    p.board.inject(p.aliceJid, el("message", { to: p.bobJid, type: "chat" }, el("c", { xmlns: NS.c }, el("data", {}, toBase64(new Uint8Array(48).fill(7))), el("mac", {}, toBase64(new Uint8Array(32).fill(1)))), el("thread", {}, thread)));
    await p.settle();
  }],
  ["inject: a clear <body/> on the session's thread", "bob[fail:not-protected] delivered:0", async (p) => {
    const thread = p.alice.session(p.bobJid)?.thread ?? "";
    p.board.inject(p.aliceJid, el("message", { to: p.bobJid, type: "chat" }, el("body", {}, "FORGED clear body"), el("thread", {}, thread)));
    await p.settle();
  }],
  ["inject: a clear <body/> replacing the fallback next to a valid <c/> (delivered: the decrypted body only)", "bob[-] delivered:1 forged-body:none", async (p) => {
    p.board.setAdversary((item) => {
      const s = copyOf(item.stanza);
      const b = s.getChild("body");
      if (!cOf(s) || !b) return { action: "deliver" };
      b.children = ["FORGED-CLEAR-BODY"];
      s.cnode(el("x", { xmlns: "urn:example:forged" }, "FORGED-EXTRA"));
      return { action: "replace", stanza: s };
    });
    await p.alice.sendMessage(p.bobJid, `${SECRET} 1`);
    await p.settle();
  }],
  ["truncate: the stanza's <c/> cut in half (children)", "bob[fail:bad-request] delivered:0", async (p) => {
    p.board.setAdversary((item) => {
      const s = copyOf(item.stanza);
      const c = cOf(s);
      if (!c) return { action: "deliver" };
      c.children = c.children.slice(0, 1);
      return { action: "replace", stanza: s };
    });
    await p.alice.sendMessage(p.bobJid, `${SECRET} 1`);
    await p.settle();
  }],
  ["reflect: Alice's stanza sent back to Alice as if from Bob", "alice[fail:bad-mac] bob[fail:not-acceptable] delivered:0", async (p) => {
    p.board.setAdversary((item) => {
      if (!cOf(item.stanza) || item.from !== p.aliceJid) return { action: "deliver" };
      const back = copyOf(item.stanza);
      back.attrs.to = p.aliceJid;
      p.board.inject(p.bobJid, back);
      return { action: "drop" };
    });
    await p.alice.sendMessage(p.bobJid, `${SECRET} 1`);
    await p.settle();
  }],
  ["thread swapped: a stanza moved to another (dead) thread", "bob[fail:unexpected-request] delivered:0", async (p) => {
    p.board.setAdversary((item) => {
      const s = copyOf(item.stanza);
      const t = s.getChild("thread");
      if (!cOf(s) || !t) return { action: "deliver" };
      t.children = ["0000000000000000000000000000000000000000"];
      return { action: "replace", stanza: s };
    });
    await p.alice.sendMessage(p.bobJid, `${SECRET} 1`);
    await p.settle();
  }],
  ["thread removed: a message without <thread/>", "bob[fail:unexpected-request] delivered:0", async (p) => {
    p.board.setAdversary((item) => {
      const s = copyOf(item.stanza);
      if (!cOf(s)) return { action: "deliver" };
      s.children = s.children.filter((x) => typeof x === "string" || x.name !== "thread");
      return { action: "replace", stanza: s };
    });
    await p.alice.sendMessage(p.bobJid, `${SECRET} 1`);
    await p.settle();
  }],
  ["replayed re-key: the stanza carrying <key/> is sent again", "bob[fail:bad-mac] delivered:1", async (p) => {
    let keyStanza: Element | undefined;
    p.board.setAdversary((item) => {
      if (cOf(item.stanza)?.getChild("key") && !keyStanza) keyStanza = copyOf(item.stanza);
      return { action: "deliver" };
    });
    await p.alice.rekey(p.bobJid);
    await p.alice.sendMessage(p.bobJid, `${SECRET} 1`);
    await p.settle();
    if (keyStanza) p.board.inject(p.aliceJid, keyStanza);
    await p.settle();
  }],
  ["presence: a tampered encrypted presence", "bob[fail:bad-mac] delivered:0", async (p) => {
    p.board.setAdversary((item) => {
      const s = copyOf(item.stanza);
      const d = cOf(s)?.getChild("data");
      if (s.name !== "presence" || !d) return { action: "deliver" };
      d.children = [flip(d.getText(), "first")];
      return { action: "replace", stanza: s };
    });
    await p.alice.send(p.bobJid, el("presence", {}, el("status", {}, `${SECRET} status`)));
    await p.settle();
  }],
];

for (const suite of ["spec", "modern"] as const) {
  for (const [name, expect, attack] of STANZA_ATTACKS) {
    const delivers = /delivered:[1-9]/.test(expect);
    report.case(`${suite}: ${name}`, { expect, ...(delivers ? { wireOnlySecrets: [SECRET] } : { secrets: [SECRET] }) }, async () => {
      const p = await established(`s-${suite}-${name}`, suite);
      await attack(p);
      const o = outcome(p);
      const alice = sideSummary(p.aliceEvents.filter((e) => e.type !== "established"));
      const forged = p.bobEvents.some((e) => e.type === "message" && serialize(e.stanza).includes("FORGED")) ? "delivered" : "none";
      const extra = name.startsWith("inject: a clear <body/> replacing") ? ` forged-body:${forged}` : "";
      return { ...o, outcome: name.startsWith("reflect") ? `alice[${alice}] ${o.outcome}` : `${o.outcome}${extra}` };
    });
  }
}

report.case("swap sessions: a stanza of session A (same JIDs) injected into session B, thread rewritten", { expect: "bob[fail:bad-mac] delivered:0", secrets: [SECRET] }, async () => {
  const a = await established("swap-a", "modern");
  await a.alice.sendMessage(a.bobJid, `${SECRET} for session A`);
  await a.settle();
  const fromA = a.relayed.find((r) => cOf(r.stanza) && r.from === a.aliceJid)?.stanza;
  const b = await established("swap-b", "modern");
  const thread = b.alice.session(b.bobJid)?.thread ?? "";
  if (fromA) {
    const s = copyOf(fromA);
    const t = s.getChild("thread");
    if (t) t.children = [thread];
    b.board.inject(b.aliceJid, s);
  }
  await b.settle();
  return outcome(b);
});
