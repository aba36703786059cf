/**
 * Adversarial suite, XEP-0187 offline ESessions (src/offline), driven through the sans-IO
 * functions the client uses: published options tampered field by field (the signature must
 * catch it), signed by another key, expired, carrying invalid DH values; Bob's `<init/>`
 * form tampered field by field, expired, replayed, naming used one-time values, carrying
 * invalid DH values; stanzas of the offline session replayed, reordered or tampered; the
 * receive-only rule. Every case asserts the typed outcome and that no plaintext was
 * delivered or readable on the wire.
 *
 * Spec: XEP-0187 v0.5 sections 3.2 ("MUST proceed no further" without a trusted
 * signature; "MUST NOT send" on expired options), 3.4 (terminate without an error), 4
 * (receive-only), 6.1 (replay: d and N_B seen before, one-time options); RFC 7748 6.1.
 */
import { keyVerifier, signingIdentity } from "../../src/client/keys.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { toHex } from "../../src/core/bytes.js";
import { parseFullJid, type ThreadId } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import type { ESession } from "../../src/esession/session.js";
import { createIdentityKey } from "../../src/identity/keyfile.js";
import { offlineInitOf, parseOfflineInit, parseOfflineOptions } from "../../src/offline/codec.js";
import { OfflineError } from "../../src/offline/errors.js";
import { acceptOfflineSession, createOfflineOptions, type OfflineSecret, startOfflineSession, verifyOfflineOptions } from "../../src/offline/session.js";
import { MemoryOfflineStore, type OfflineStore } from "../../src/store/offline.js";
import { el, type Element, NS, parseXml, serialize } from "../../src/xml/index.js";
import { fieldsOf, modpInvalid, mutateField, setField, SUITES, X25519_LOW_ORDER } from "./esession-helpers.js";
import { AdversarialReport } from "./report.js";
import { toBase64 } from "../../src/core/bytes.js";
import type { Policy } from "../../src/esession/session.js";
import { DEFAULT_POLICY } from "../../src/esession/session.js";

const report = new AdversarialReport("offline");
const SECRET = "ADV-OFFLINE-SECRET";
const crypto = nodeCrypto;
const publisher = signingIdentity(createIdentityKey("ed25519", 0));
const sender = signingIdentity(createIdentityKey("ed25519", 0));
const mallory = signingIdentity(createIdentityKey("ed25519", 0));
const verifier = keyVerifier();
const PUB = parseFullJid("alice@example.org/laptop");
const SND = parseFullJid("bob@example.org/phone");

function policyOf(suite: "spec" | "modern"): Policy {
  return { ...DEFAULT_POLICY, ...SUITES[suite] };
}

function publish(seed: string, suite: "spec" | "modern", lifetimeMs = 86_400_000, identity = publisher) {
  const clock = new VirtualClock(1_700_000_000_000);
  const random = new SeededRandom(crypto, seed);
  const { x, secret } = createOfflineOptions({ crypto, random, clock, identity, lifetimeMs, policy: policyOf(suite) });
  return { clock, random, wire: parseXml(serialize(x)), secret };
}

/** The wrapped form for the field helpers (they look for a feature-neg form). */
function asMessage(x: Element): Element {
  return el("message", {}, el("feature", { xmlns: NS.featureNeg }, x));
}
function unwrap(m: Element): Element {
  const x = m.getChild("feature", NS.featureNeg)?.getChild("x", NS.data);
  if (!x) throw new Error("no form");
  return x;
}

function condition(e: unknown): string {
  return e instanceof OfflineError ? e.condition : e instanceof Error ? `${e.name}` : "non-error";
}

function senderSession(seed: string, suite: "spec" | "modern", wire: Element, clock: VirtualClock, random: SeededRandom): ESession {
  const options = parseOfflineOptions(wire);
  const publisherKey = verifyOfflineOptions(options, [publisher.keyValue], verifier, false, crypto);
  return startOfflineSession({
    crypto, random, clock, local: SND, peer: parseFullJid("alice@example.org/x"), thread: `t-${seed}` as ThreadId,
    options, policy: policyOf(suite), identity: sender, verifier, ...(publisherKey ? { publisherKey } : {}),
  });
}

function sends(s: ESession): Element[] {
  return s.drain().flatMap((o) => (o.kind === "send" ? [parseXml(serialize(o.stanza))] : []));
}

/** Bob writes `n` messages offline; returns the wire stanzas. */
function offlineTraffic(seed: string, suite: "spec" | "modern", n = 3) {
  const pub = publish(seed, suite);
  const s = senderSession(seed, suite, pub.wire, pub.clock, pub.random);
  const wire: Element[] = [];
  for (let i = 0; i < n; i++) {
    s.send(el("message", { type: "chat" }, el("body", {}, `${SECRET} ${i}`)));
    wire.push(...sends(s));
  }
  return { ...pub, wire, options: pub.wire };
}

function accept(t: { clock: VirtualClock; random: SeededRandom; secret: OfflineSecret }, first: Element, suite: "spec" | "modern"): ESession {
  const x = offlineInitOf(first);
  if (!x) throw new Error("no init");
  return acceptOfflineSession({
    crypto, random: t.random, clock: t.clock, local: PUB, peer: SND, thread: "t" as ThreadId,
    init: parseOfflineInit(x), secret: t.secret, policy: policyOf(suite), verifier, allowUnauthenticated: false,
  });
}

function read(s: ESession, stanzas: readonly Element[]): { bodies: string[]; failures: string[] } {
  const bodies: string[] = [];
  const failures: string[] = [];
  for (const st of stanzas) {
    s.handleStanza(st);
    for (const o of s.drain()) {
      if (o.kind !== "event") continue;
      if (o.event.type === "stanza") bodies.push(o.event.stanza.getChildText("body") ?? "");
      if (o.event.type === "failed") failures.push(o.event.error.condition);
    }
  }
  return { bodies, failures };
}

/** Init fields whose tampering is caught before the identity check, and how. */
const EXPECT_INIT: Record<string, string> = {
  "FORM_TYPE/alter": "refused: bad-init",
  "FORM_TYPE/remove": "refused: bad-init",
  "logging/remove": "refused: bad-init",
  "disclosure/alter": "refused: unsupported",
  "disclosure/remove": "refused: bad-init",
  "security/alter": "refused: unsupported",
  "security/remove": "refused: bad-init",
  "modp/alter": "refused: bad-init",
  "modp/remove": "refused: bad-init",
  "crypt_algs/alter": "refused: unsupported",
  "crypt_algs/remove": "refused: bad-init",
  "hash_algs/alter": "refused: unsupported",
  "hash_algs/remove": "refused: bad-init",
  "compress/alter": "refused: unsupported",
  "compress/remove": "refused: bad-init",
  "ver/alter": "refused: unsupported",
  "ver/remove": "refused: bad-init",
  "rekey_freq/alter": "refused: bad-init",
  "rekey_freq/remove": "refused: bad-init",
  "my_nonce/remove": "refused: bad-init",
  "dhkeys/remove": "refused: bad-init",
  "nonce/alter": "refused: unknown-options",
  "nonce/remove": "refused: bad-init",
  "counter/remove": "refused: bad-init",
  "identity/remove": "refused: bad-init",
  "mac/remove": "refused: bad-init",
  "logging/alter": "refused: unsupported",
  "stanzas/alter": "refused: unsupported",
  "stanzas/remove": "refused: unsupported",
};

const OPTION_FIELDS = ["logging", "disclosure", "security", "modp", "crypt_algs", "hash_algs", "sign_algs", "compress", "stanzas", "ver", "rekey_freq", "expires", "my_nonce", "dhkeys"];

for (const suite of ["spec", "modern"] as const) {
  // ---- published options ----
  for (const field of OPTION_FIELDS) {
    // modp, rekey_freq and expires altered to text no longer parse: refused before the signature.
    const expect = ["modp", "rekey_freq", "expires"].includes(field) ? "sender refuses: bad-options" : "sender refuses: unsigned";
    report.case(`${suite}: published options, field ${field} altered: refused (signature or parse)`, { expect }, () => {
      const { wire } = publish(`o-${suite}-${field}`, suite);
      const tampered = unwrap(mutateField(asMessage(wire), field, "alter"));
      try {
        verifyOfflineOptions(parseOfflineOptions(tampered), [publisher.keyValue], verifier, false, crypto);
        return { outcome: "sender accepted the options" };
      } catch (e) {
        return { outcome: `sender refuses: ${condition(e)}` };
      }
    });
  }
  report.case(`${suite}: options signed by another key (Mallory's, not the publisher's)`, { expect: "sender refuses: unsigned" }, () => {
    const { wire } = publish(`o-${suite}-mallory`, suite, 86_400_000, mallory);
    try {
      verifyOfflineOptions(parseOfflineOptions(wire), [publisher.keyValue], verifier, false, crypto);
      return { outcome: "sender accepted the options" };
    } catch (e) {
      return { outcome: `sender refuses: ${condition(e)}` };
    }
  });
  report.case(`${suite}: options with the signature removed`, { expect: "sender refuses: unsigned" }, () => {
    const { wire } = publish(`o-${suite}-nosig`, suite);
    const stripped = unwrap(mutateField(asMessage(wire), "signs", "remove"));
    try {
      verifyOfflineOptions(parseOfflineOptions(stripped), [publisher.keyValue], verifier, false, crypto);
      return { outcome: "sender accepted the options" };
    } catch (e) {
      return { outcome: `sender refuses: ${condition(e)}` };
    }
  });
  report.case(`${suite}: expired options (signed, replayed after their expiry)`, { expect: "sender refuses: expired" }, () => {
    const { wire, clock, random } = publish(`o-${suite}-exp`, suite, 60_000);
    clock.advance(61_000);
    try {
      senderSession("exp", suite, wire, clock, random);
      return { outcome: "sender started a session" };
    } catch (e) {
      return { outcome: `sender refuses: ${condition(e)}` };
    }
  });

  // ---- Bob's <init/> form, field by field ----
  const initFields = (() => {
    const t = offlineTraffic(`i-${suite}-probe`, suite, 1);
    const x = offlineInitOf(t.wire[0] ?? el("x"));
    return x ? fieldsOf(x) : [];
  })();
  for (const field of initFields) {
    for (const m of ["alter", "remove"] as const) {
      report.case(`${suite}: <init/> field ${field} ${m}`, { expect: EXPECT_INIT[`${field}/${m}`] ?? "refused: identity-mismatch", secrets: [SECRET] }, () => {
        const t = offlineTraffic(`i-${suite}-${field}-${m}`, suite);
        const first = t.wire[0];
        if (!first) throw new Error("no traffic");
        const init = first.getChild("init", NS.esessionInit);
        const x = init?.getChild("x", NS.data);
        if (!init || !x) throw new Error("no init");
        const tx = unwrap(mutateField(asMessage(x), field, m));
        init.children = [tx];
        try {
          const s = accept(t, first, suite);
          const r = read(s, t.wire);
          return { outcome: `accepted; failures:${r.failures.join(",") || "none"}`, delivered: r.bodies, wire: t.wire.map((w) => serialize(w)) };
        } catch (e) {
          return { outcome: `refused: ${condition(e)}`, delivered: [], wire: t.wire.map((w) => serialize(w)) };
        }
      });
    }
  }

  // ---- one-time values, replay, expiry, tamper of the session's stanzas ----
  report.case(`${suite}: the offline start accepted, then replayed: the one-time options are gone`, { expect: "first:3 replay:unknown-options", wireOnlySecrets: [SECRET] }, async () => {
    const t = offlineTraffic(`r-${suite}`, suite);
    const store = new MemoryOfflineStore();
    const account = "alice@example.org" as never;
    await store.put(account, { ...t.secret, pairs: t.secret.pairs.map((p) => ({ ...p, x: new Uint8Array(p.x) })) } as never);
    const take = async () => {
      const init = parseOfflineInit(offlineInitOf(t.wire[0] ?? el("x")) ?? el("x"));
      const secret = await store.take(account, toHex(init.response.nonce));
      if (!secret) throw new OfflineError("unknown-options", "used");
      return secret as unknown as OfflineSecret;
    };
    const s1 = acceptOfflineSession({ crypto, random: t.random, clock: t.clock, local: PUB, peer: SND, thread: "t" as ThreadId, init: parseOfflineInit(offlineInitOf(t.wire[0] ?? el("x")) ?? el("x")), secret: await take(), policy: policyOf(suite), verifier, allowUnauthenticated: false });
    const first = read(s1, t.wire).bodies.length;
    let replay = "accepted";
    try {
      await take();
    } catch (e) {
      replay = condition(e);
    }
    return { outcome: `first:${first} replay:${replay}`, wire: t.wire.map((w) => serialize(w)) };
  });
  report.case(`${suite}: a second sender reusing the same d / N_B is refused by the replay set`, { expect: "d:fresh,seen n:fresh,seen" }, async () => {
    const t = offlineTraffic(`rs-${suite}`, suite, 1);
    const init = parseOfflineInit(offlineInitOf(t.wire[0] ?? el("x")) ?? el("x"));
    const store: OfflineStore = new MemoryOfflineStore();
    const account = "alice@example.org" as never;
    const d = `d:${toHex(crypto.hash("sha256", init.response.dhkeys))}`;
    const n = `n:${toHex(init.response.myNonce)}`;
    const r = [await store.markSeen(account, d, 1), await store.markSeen(account, d, 2), await store.markSeen(account, n, 1), await store.markSeen(account, n, 2)];
    const w = (b: boolean | undefined) => (b ? "fresh" : "seen");
    return { outcome: `d:${w(r[0])},${w(r[1])} n:${w(r[2])},${w(r[3])}` };
  });
  report.case(`${suite}: the offline start arrives after the options expired`, { expect: "refused: expired", secrets: [SECRET] }, () => {
    const t = offlineTraffic(`e-${suite}`, suite);
    t.clock.advance(2 * 86_400_000);
    try {
      const r = read(accept(t, t.wire[0] ?? el("x"), suite), t.wire);
      return { outcome: "accepted", delivered: r.bodies };
    } catch (e) {
      return { outcome: `refused: ${condition(e)}`, delivered: [], wire: t.wire.map((w) => serialize(w)) };
    }
  });
  for (const [name, attack, expect] of [
    ["a later stanza replayed", (w: Element[]) => [...w, parseXml(serialize(w[1] ?? el("x")))], "delivered:3 failures:bad-mac"],
    ["stanzas 2 and 3 reordered", (w: Element[]) => [w[0] ?? el("x"), w[2] ?? el("x"), w[1] ?? el("x")], "delivered:1 failures:bad-mac"],
    ["stanza 2 tampered (data bit flip)", (w: Element[]) => {
      const s = parseXml(serialize(w[1] ?? el("x")));
      const d = s.getChild("c", NS.c)?.getChild("data");
      if (d) d.children = [toBase64(new Uint8Array(Buffer.from(d.getText(), "base64").map((b, i) => (i === 0 ? b ^ 1 : b))))];
      return [w[0] ?? el("x"), s, w[2] ?? el("x")];
    }, "delivered:1 failures:bad-mac"],
    ["stanza 2 dropped", (w: Element[]) => [w[0] ?? el("x"), w[2] ?? el("x")], "delivered:1 failures:bad-mac"],
  ] as const) {
    report.case(`${suite}: offline session: ${name}`, { expect, wireOnlySecrets: [SECRET] }, () => {
      const t = offlineTraffic(`s-${suite}-${name}`, suite);
      const r = read(accept(t, t.wire[0] ?? el("x"), suite), attack(t.wire));
      return { outcome: `delivered:${r.bodies.length} failures:${r.failures.join(",") || "none"}`, wire: t.wire.map((w) => serialize(w)) };
    });
  }
  report.case(`${suite}: the receiver of an offline session never sends in it (XEP-0187 4)`, { expect: "send refused: not-protected" }, () => {
    const t = offlineTraffic(`ro-${suite}`, suite, 1);
    const s = accept(t, t.wire[0] ?? el("x"), suite);
    try {
      s.send(el("message", {}, el("body", {}, "reply")));
      return { outcome: "sent" };
    } catch (e) {
      return { outcome: `send refused: ${e instanceof Error && "condition" in e ? String((e as { condition: string }).condition) : "?"}` };
    }
  });
}

// ---- invalid DH values in the options (a hostile publisher) and in the init (a hostile sender) ----

const badValues = (suite: "spec" | "modern") => (suite === "spec" ? modpInvalid(crypto, 14) : X25519_LOW_ORDER.slice(0, 7));
for (const suite of ["spec", "modern"] as const) {
  for (const [name, v] of badValues(suite)) {
    report.case(`${suite}: a hostile publisher signs options with e = ${name}`, { expect: "sender refuses: bad-options" }, () => {
      const { wire, clock, random } = publish(`he-${suite}-${name}`, suite);
      // The publisher signs what it publishes: re-sign the altered form with its key.
      const altered = unwrap(setField(asMessage(wire), "dhkeys", [toBase64(v)]));
      const parsed = parseOfflineOptions(altered);
      const resigned = unwrap(setField(asMessage(altered), "signs", [toBase64(publisher.sign(parsed.signed))]));
      try {
        senderSession(`he-${name}`, suite, resigned, clock, random);
        return { outcome: "sender started a session" };
      } catch (e) {
        return { outcome: `sender refuses: ${condition(e)}` };
      }
    });
    report.case(`${suite}: a hostile sender's <init/> carries d = ${name}`, { expect: "refused: bad-init", secrets: [SECRET] }, () => {
      const t = offlineTraffic(`hd-${suite}-${name}`, suite);
      const first = t.wire[0] ?? el("x");
      const init = first.getChild("init", NS.esessionInit);
      const x = init?.getChild("x", NS.data);
      if (init && x) init.children = [unwrap(setField(asMessage(x), "dhkeys", [toBase64(v)]))];
      try {
        const r = read(accept(t, first, suite), t.wire);
        return { outcome: "accepted", delivered: r.bodies };
      } catch (e) {
        return { outcome: `refused: ${condition(e)}`, delivered: [] };
      }
    });
  }
}

