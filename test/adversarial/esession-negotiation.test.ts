/**
 * Adversarial suite, ESession negotiation (XEP-0155 carrying XEP-0217 / XEP-0116 v0.16),
 * spec (MODP 14, AES-128, SHA-256) and modern (X25519, AES-256, SHA-512) suites, with the
 * attacker in the in-memory switchboard: every field of every one of the four messages
 * altered, removed or truncated; messages dropped, replayed, reflected, swapped between
 * sessions; options downgraded; invalid group elements (MODP 0, 1, p-1, p, above p; X25519
 * small-order, non-canonical, malformed and twist points) from a man in the middle and from
 * a hostile peer; an active man in the middle. Each case asserts the exact outcome on both
 * sides and that no marker sent afterwards was delivered unless both sides legitimately
 * share the session, nor ever crossed the wire in the clear.
 *
 * Spec: XEP-0217 v0.1 / XEP-0116 v0.16 section 4 (checks: offered options, 1 < e,d < p-1,
 * He = SHA256(e), M_A/M_B, mac_A/mac_B), section 7 (SAS, retained secrets); RFC 7748
 * section 6.1 (an all-zero X25519 shared secret MUST be refused); XEP-0210 3.3-3.7.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { after } from "node:test";
import type { Adversary } from "../../src/adapters/switchboard.js";
import { toBase64 } from "../../src/core/bytes.js";
import { browserCrypto } from "../../src/crypto/browser.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { CryptoError } from "../../src/crypto/provider.js";
import { parseFullJid } from "../../src/core/types.js";
import { el, type Element, NS, parseXml, serialize } from "../../src/xml/index.js";
import { installMitm } from "../sim/mitm.js";
import { makePair } from "../sim/pair.js";
import {
  type FieldMutation,
  hostileProvider,
  modpInvalid,
  mutateField,
  negotiateUnder,
  negotiationMessage,
  replaceDh,
  setField,
  SUITES,
  X25519_LOW_ORDER,
  X25519_MALFORMED,
  x25519TwistPoint,
} from "./esession-helpers.js";
import { AdversarialReport } from "./report.js";

const report = new AdversarialReport("esession-negotiation");
const MARK = "ADV-NEG-MARKER";

/** Expected outcomes of the field table, reviewed case by case (see the file's banner). */
const TABLE: Record<string, string> = JSON.parse(
  readFileSync(new URL("./expected/esession-negotiation.json", import.meta.url), "utf8"),
) as Record<string, string>;

const FIELDS: Record<1 | 2 | 3 | 4, readonly string[]> = {
  1: ["FORM_TYPE", "accept", "logging", "disclosure", "security", "crypt_algs", "hash_algs", "compress", "stanzas", "init_pubkey", "resp_pubkey", "ver", "rekey_freq", "sas_algs", "my_nonce", "modp", "dhhashes"],
  2: ["FORM_TYPE", "accept", "logging", "disclosure", "security", "crypt_algs", "hash_algs", "compress", "stanzas", "init_pubkey", "resp_pubkey", "ver", "rekey_freq", "sas_algs", "my_nonce", "modp", "dhkeys", "counter", "nonce"],
  3: ["FORM_TYPE", "accept", "nonce", "rshashes", "dhkeys", "identity", "mac"],
  4: ["FORM_TYPE", "nonce", "srshash", "identity", "mac"],
};
const BASE64 = new Set(["my_nonce", "dhhashes", "dhkeys", "counter", "nonce", "rshashes", "identity", "mac", "srshash"]);

/**
 * Tampering that both sides may survive with the same keys and SAS, and why: an unused
 * decoy is not part of any secret. Anything else that ends with a shared session is a bug.
 */
const BENIGN = new Set<string>([]);

/** The invariant behind every expectation: a tampered transcript never yields a working session. */
/** ADV_RECORD=1 rewrites the expectations file from what was observed (then review the diff). */
const RECORD = process.env.ADV_RECORD === "1";
const observed: Record<string, string> = {};
after(() => {
  if (RECORD) writeFileSync(new URL("./expected/esession-negotiation.json", import.meta.url), `${JSON.stringify({ ...TABLE, ...observed }, null, 2)}\n`);
});
function expect(key: string): string {
  return TABLE[key] ?? "UNSET";
}
function seen(key: string, outcome: string): string {
  observed[key] = outcome;
  return outcome;
}

function checkInvariant(key: string, outcome: string): void {
  const delivered = Number(/delivered:(\d+)/.exec(outcome)?.[1] ?? "0");
  if (BENIGN.has(key)) return;
  // A session both sides renegotiated after the attacked one failed (XEP-0187-style recovery
  // in SecureClient, after the adversary left) may share a SAS: it is a new, clean session.
  const recovered = /alice\[[^\]]*fail:[^\]]*,est\]/.test(outcome) && /bob\[[^\]]*fail:[^\]]*,est\]/.test(outcome);
  if (recovered && delivered === 0) return;
  assert.equal(delivered, 0, `${key}: a tampered negotiation carried traffic (${outcome})`);
  assert.ok(!/sas:equal/.test(outcome), `${key}: both sides established with the same SAS (${outcome})`);
}

function at(n: 1 | 2 | 3 | 4, f: (s: Element) => Element): Adversary {
  return (item) => (negotiationMessage(item.stanza)?.n === n ? { action: "replace", stanza: f(item.stanza) } : { action: "deliver" });
}

// ---- 1. every field of every message ------------------------------------------------------

for (const suite of ["spec", "modern"] as const) {
  for (const n of [1, 2, 3, 4] as const) {
    for (const field of FIELDS[n]) {
      // 'empty' Base64 values behave the same in both suites; once (modern) keeps the run short.
      const muts: FieldMutation[] = BASE64.has(field) && suite === "modern" ? ["alter", "remove", "empty"] : ["alter", "remove"];
      for (const m of muts) {
        const key = `${suite}/m${n}/${field}/${m}`;
        report.case(`tamper ${suite} message ${n} field ${field}: ${m}`, { expect: expect(key), wireOnlySecrets: [MARK] }, async () => {
          const r = await negotiateUnder(`t-${key}`, { policy: SUITES[suite] }, at(n, (s) => mutateField(s, field, m)), MARK);
          checkInvariant(key, r.outcome);
          return { outcome: seen(key, r.outcome), wire: r.wire };
        });
      }
    }
  }
}

// ---- 2. whole messages: drop, replay, reflect, truncate, swap ----------------------------

for (const suite of ["spec", "modern"] as const) {
  for (const n of [1, 2, 3, 4] as const) {
    const key = `${suite}/drop/m${n}`;
    report.case(`drop ${suite} message ${n}, then the negotiation timeout`, { expect: expect(key), wireOnlySecrets: [MARK] }, async () => {
      const r = await negotiateUnder(`drop-${key}`, { policy: SUITES[suite] }, (item) => (negotiationMessage(item.stanza)?.n === n ? { action: "drop" } : { action: "deliver" }), MARK, { advanceMs: 61_000 });
      checkInvariant(key, r.outcome);
      return { outcome: seen(key, r.outcome), wire: r.wire };
    });
  }
  for (const n of [1, 2, 3, 4] as const) {
    const key = `${suite}/replay/m${n}`;
    report.case(`replay ${suite} message ${n} (duplicated in flight)`, { expect: expect(key), wireOnlySecrets: [MARK] }, async () => {
      let done = false;
      const r = await negotiateUnder(`dup-${key}`, { policy: SUITES[suite] }, (item) => {
        if (!done && negotiationMessage(item.stanza)?.n === n) {
          done = true;
          return { action: "duplicate" };
        }
        return { action: "deliver" };
      }, MARK);
      // A duplicate of a message the receiver already processed must not break the session
      // nor be taken for a new negotiation; the exact outcome is in the table.
      return { outcome: seen(key, r.outcome), wire: r.wire };
    });
  }
  for (const n of [1, 2, 3, 4] as const) {
    const key = `${suite}/reflect/m${n}`;
    report.case(`reflect ${suite} message ${n} back to its sender (as if from the peer)`, { expect: expect(key), wireOnlySecrets: [MARK] }, async () => {
      let done = false;
      const r = await negotiateUnder(`refl-${key}`, { policy: SUITES[suite] }, () => ({ action: "deliver" }), MARK, { hook: (p) => {
        p.board.setAdversary((item) => {
          if (!done && negotiationMessage(item.stanza)?.n === n) {
            done = true;
            const back = parseXml(serialize(item.stanza));
            back.attrs.to = item.from;
            p.board.inject(item.to, back);
            return { action: "drop" };
          }
          return { action: "deliver" };
        });
      } });
      checkInvariant(key, r.outcome);
      return { outcome: seen(key, r.outcome), wire: r.wire };
    });
  }
  for (const n of [2, 3, 4] as const) {
    const key = `${suite}/swap/m${n}`;
    report.case(`swap sessions ${suite}: message ${n} of another session (same JIDs, re-threaded) replaces the real one`, { expect: expect(key), wireOnlySecrets: [MARK] }, async () => {
      // Session A runs to completion and is recorded; session B is then attacked with A's message.
      const a = await negotiateUnder(`swapA-${key}`, { policy: SUITES[suite] }, undefined, "A");
      const fromA = a.pair.relayed.map((x) => x.stanza).find((s) => negotiationMessage(s)?.n === n);
      assert.ok(fromA);
      const r = await negotiateUnder(`swapB-${key}`, { policy: SUITES[suite] }, at(n, (s) => {
        const swapped = parseXml(serialize(fromA));
        const t = swapped.getChild("thread");
        if (t) t.children = [s.getChildText("thread") ?? ""];
        return swapped;
      }), MARK);
      checkInvariant(key, r.outcome);
      return { outcome: seen(key, r.outcome), wire: r.wire };
    });
  }
  for (const n of [1, 2, 3, 4] as const) {
    const key = `${suite}/truncate/m${n}`;
    report.case(`truncate ${suite} message ${n} (form cut after its first half)`, { expect: expect(key), wireOnlySecrets: [MARK] }, async () => {
      const r = await negotiateUnder(`trunc-${key}`, { policy: SUITES[suite] }, at(n, (s) => {
        const c = parseXml(serialize(s));
        const x = negotiationMessage(c)?.x;
        if (x) x.children = x.children.slice(0, Math.ceil(x.children.length / 2));
        return c;
      }), MARK);
      checkInvariant(key, r.outcome);
      return { outcome: seen(key, r.outcome), wire: r.wire };
    });
  }
}

// ---- 3. downgrades ---------------------------------------------------------------------

const downgrades: Array<readonly [string, number, (s: Element) => Element]> = [
  // Strip the modern suite from Alice's offer: Bob would pick MODP 14 and AES-128 / SHA-256.
  ["strip x25519/aes256/sha512 from the offer", 1, (s) => {
    const c = parseXml(serialize(s));
    const x = negotiationMessage(c)?.x;
    for (const f of x?.getChildren("field") ?? []) {
      const drop = (v: string) => ["x25519", "aes256-ctr", "sha512"].includes(v);
      f.children = f.children.filter((o) => typeof o === "string" || o.name !== "option" || !drop(o.getChildText("value") ?? ""));
      if (f.attrs.var === "dhhashes") f.children = f.children.slice(1);
    }
    return c;
  }],
  // Bob's answer rewritten to the weakest values Alice offered.
  ["answer rewritten to MODP 5 / AES-128 / SHA-256 (all offered)", 2, (s) => setField(setField(setField(s, "crypt_algs", ["aes128-ctr"]), "hash_algs", ["sha256"]), "modp", ["5"])],
  ["answer's logging rewritten to 'may'", 2, (s) => setField(s, "logging", ["may"])],
  ["answer's rekey_freq rewritten to 2^32-1 (never re-key)", 2, (s) => setField(s, "rekey_freq", ["4294967295"])],
  ["answer's disclosure rewritten to 'enabled'", 2, (s) => setField(s, "disclosure", ["enabled"])],
  ["offer's disclosure rewritten to 'enabled'", 1, (s) => setField(s, "disclosure", ["enabled"])],
  ["offer made 3-message (dhhashes renamed dhkeys)", 1, (s) => {
    const c = parseXml(serialize(s));
    const f = negotiationMessage(c)?.x.getChildren("field").find((x) => x.attrs.var === "dhhashes");
    if (f) f.attrs.var = "dhkeys";
    return c;
  }],
  ["offer's stanzas reduced to 'message' (presence/iq would go in the clear)", 1, (s) => {
    const c = parseXml(serialize(s));
    const f = negotiationMessage(c)?.x.getChildren("field").find((x) => x.attrs.var === "stanzas");
    if (f) f.children = [el("option", {}, el("value", {}, "message"))];
    return c;
  }],
];
for (const [name, n, f] of downgrades) {
  const key = `downgrade/${name}`;
  report.case(`downgrade: ${name}`, { expect: expect(key), wireOnlySecrets: [MARK] }, async () => {
    const r = await negotiateUnder(`dg-${name}`, {}, at(n as 1 | 2 | 3 | 4, f), MARK);
    checkInvariant(key, r.outcome);
    return { outcome: seen(key, r.outcome), wire: r.wire };
  });
}

// ---- 4. invalid group elements ------------------------------------------------------------

for (const [name, v] of modpInvalid(nodeCrypto, 14)) {
  report.case(`MODP 14: a man in the middle replaces Bob's d with ${name}`, { expect: "alice[fail:bad-dh-value] bob[fail:not-acceptable] delivered:0", wireOnlySecrets: [MARK] }, async () => {
    const r = await negotiateUnder(`modp-d-${name}`, { policy: SUITES.spec }, replaceDh(2, v), MARK);
    return { outcome: r.outcome, wire: r.wire };
  });
  report.case(`MODP 14: a hostile initiator commits to and sends e = ${name}`, { expect: "alice[fail:not-acceptable] bob[fail:bad-dh-value] delivered:0", wireOnlySecrets: [MARK] }, async () => {
    return negotiateWithHostileAlice(`modp-e-${name}`, SUITES.spec, () => v, 1);
  });
  report.case(`MODP 14: a hostile peer re-keys with ${name}`, { expect: "bob[est,fail:bad-dh-value] delivered:0", secrets: [MARK] }, () => rekeyWithHostileAlice(`modp-rk-${name}`, SUITES.spec, () => v));
}

for (const [name, v] of [...X25519_LOW_ORDER, ...X25519_MALFORMED]) {
  report.case(`X25519: a man in the middle replaces Bob's d with ${name}`, { expect: "alice[fail:bad-dh-value] bob[fail:not-acceptable] delivered:0", wireOnlySecrets: [MARK] }, async () => {
    const r = await negotiateUnder(`x-d-${name}`, { policy: SUITES.modern }, replaceDh(2, v), MARK);
    return { outcome: r.outcome, wire: r.wire };
  });
  report.case(`X25519: a hostile initiator commits to and sends e = ${name}`, { expect: "alice[fail:not-acceptable] bob[fail:bad-dh-value] delivered:0", wireOnlySecrets: [MARK] }, () =>
    negotiateWithHostileAlice(`x-e-${name}`, SUITES.modern, () => v, 1),
  );
  report.case(`X25519: a hostile peer re-keys with ${name}`, { expect: "bob[est,fail:bad-dh-value] delivered:0", secrets: [MARK] }, () =>
    rekeyWithHostileAlice(`x-rk-${name}`, SUITES.modern, () => v),
  );
}

report.case("X25519 twist point from a man in the middle (d): the SIGMA MAC catches it", { expect: "alice[fail:not-acceptable] bob[fail:identity-mismatch] delivered:0", wireOnlySecrets: [MARK] }, async () => {
  const r = await negotiateUnder("x-twist-d", { policy: SUITES.modern }, replaceDh(2, await x25519TwistPoint()), MARK);
  return { outcome: r.outcome, wire: r.wire };
});
report.case("X25519 twist point from a hostile initiator (e): the keys differ, Bob refuses her identity", { expect: "alice[fail:not-acceptable] bob[fail:identity-mismatch] delivered:0", wireOnlySecrets: [MARK] }, async () => {
  const t = await x25519TwistPoint();
  return negotiateWithHostileAlice("x-twist-e", SUITES.modern, () => t, 1);
});

report.case("X25519: both crypto providers refuse every small-order point (all-zero shared secret)", { expect: `refused ${X25519_LOW_ORDER.length * 2}/${X25519_LOW_ORDER.length * 2}` }, () => {
  const x = nodeCrypto.hash("sha256", new Uint8Array([1]));
  let refused = 0;
  for (const provider of [nodeCrypto, browserCrypto]) {
    for (const [, point] of X25519_LOW_ORDER) {
      try {
        provider.dhShared("x25519", x, point);
      } catch (e) {
        if (e instanceof CryptoError) refused++;
      }
    }
  }
  return { outcome: `refused ${refused}/${X25519_LOW_ORDER.length * 2}` };
});

// ---- 5. active man in the middle ------------------------------------------------------------

report.case("active man in the middle (two sessions, relaying): both sessions work but the SAS differ", { expect: "mallory-read:1 sas:differ", wireOnlySecrets: [] }, async () => {
  const p = makePair({ seed: "adv-mitm" });
  const m = installMitm(p.board, p.aliceJid, p.bobJid, p.clock);
  const est = p.alice.startSession(p.bobJid);
  await p.settle();
  const a = await est;
  const b = p.bobEvents.find((e) => e.type === "established");
  await p.alice.sendMessage(p.bobJid, "to bob, read by mallory");
  await p.settle();
  const sas = b?.type === "established" && a.sas !== b.sas ? "differ" : "equal";
  return { outcome: `mallory-read:${m.read.length} sas:${sas}` };
});
report.case("active man in the middle after an earlier session: retained secrets do not match and both sides raise the alert", { expect: "alice-alert:retained-secret-mismatch bob-alert:retained-secret-mismatch" }, async () => {
  const p = makePair({ seed: "adv-mitm-rs" });
  const e1 = p.alice.startSession(p.bobJid);
  await p.settle();
  await e1;
  await Promise.all([p.alice.terminate(p.bobJid), p.settle()]);
  await p.settle();
  installMitm(p.board, p.aliceJid, p.bobJid, p.clock);
  const e2 = p.alice.startSession(p.bobJid);
  await p.settle();
  await e2;
  const alerts = (evs: typeof p.aliceEvents) => evs.flatMap((e) => (e.type === "alert" && e.alert === "retained-secret-mismatch" ? [e.alert] : []));
  return { outcome: `alice-alert:${alerts(p.aliceEvents).join(",") || "none"} bob-alert:${alerts(p.bobEvents).join(",") || "none"}` };
});
report.case("active man in the middle against an Other Shared Secret: Alice refuses Mallory; Bob (SIGMA-R: he verifies first) holds keys Mallory cannot compute until Mallory's error ends it", { expect: "alice[fail:identity-mismatch] bob[est,fail:not-acceptable] mallory-read:0" }, async () => {
  const oss = new TextEncoder().encode("correct horse battery staple");
  const p = makePair({ seed: "adv-mitm-oss", alice: { otherSecret: oss }, bob: { otherSecret: oss } });
  const m = installMitm(p.board, p.aliceJid, p.bobJid, p.clock);
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await p.settle();
  const { sideSummary } = await import("./esession-helpers.js");
  return { outcome: `alice[${sideSummary(p.aliceEvents)}] bob[${sideSummary(p.bobEvents)}] mallory-read:${m.read.length}` };
});

// ---- helpers that need a hostile peer -----------------------------------------------------

async function negotiateWithHostileAlice(seed: string, policy: (typeof SUITES)["spec"], bad: () => Uint8Array, from: number) {
  const { SecureClient } = await import("../../src/client/secure-client.js");
  const { SeededRandom } = await import("../../src/core/testing.js");
  const { MemoryStore } = await import("../../src/store/memory.js");
  const { sideSummary } = await import("./esession-helpers.js");
  const p = makePair({ seed, policy });
  // Replace Alice by a client whose crypto provider lies about her public value.
  await p.alice.close();
  const conn = p.board.connect(parseFullJid("alice@example.org/hostile"));
  const evil = new SecureClient({
    connection: conn,
    store: new MemoryStore(),
    crypto: hostileProvider(() => bad(), from),
    random: new SeededRandom(nodeCrypto, `${seed}/evil`),
    clock: p.clock,
    timers: p.timers,
    policy,
  });
  const evilEvents: Parameters<Parameters<typeof evil.on>[0]>[0][] = [];
  evil.on((e) => evilEvents.push(e));
  const est = evil.startSession(p.bobJid);
  est.catch(() => undefined);
  await p.settle();
  await evil.settled();
  await p.settle();
  if (evil.session(p.bobJid)?.isActive) await evil.sendMessage(p.bobJid, `${MARK} from evil`).catch(() => undefined);
  await p.settle();
  const delivered = p.bodies("bob");
  return { outcome: `alice[${sideSummary(evilEvents)}] bob[${sideSummary(p.bobEvents)}] delivered:${delivered.length}`, delivered, wire: p.relayed.map((r) => r.text) };
}

async function rekeyWithHostileAlice(seed: string, policy: (typeof SUITES)["spec"], bad: () => Uint8Array) {
  const { SecureClient } = await import("../../src/client/secure-client.js");
  const { SeededRandom } = await import("../../src/core/testing.js");
  const { MemoryStore } = await import("../../src/store/memory.js");
  const { sideSummary } = await import("./esession-helpers.js");
  const p = makePair({ seed, policy });
  await p.alice.close();
  const conn = p.board.connect(parseFullJid("alice@example.org/hostile"));
  // The first public value is honest (the negotiation succeeds); the re-key's is not.
  const evil = new SecureClient({
    connection: conn,
    store: new MemoryStore(),
    crypto: hostileProvider(() => bad(), 2),
    random: new SeededRandom(nodeCrypto, `${seed}/evil`),
    clock: p.clock,
    timers: p.timers,
    policy,
  });
  const evilEvents: Parameters<Parameters<typeof evil.on>[0]>[0][] = [];
  evil.on((e) => evilEvents.push(e));
  await Promise.all([evil.startSession(p.bobJid), p.settle()]);
  await p.settle();
  await evil.rekey(p.bobJid);
  await evil.sendMessage(p.bobJid, `${MARK} after the hostile re-key`).catch(() => undefined);
  await p.settle();
  // Bob's session up to its end (the hostile client's recovery then renegotiates, refused too).
  const end = p.bobEvents.findIndex((e) => e.type === "terminated");
  const bob = sideSummary(p.bobEvents.slice(0, end === -1 ? undefined : end + 1));
  const delivered = p.bodies("bob");
  return {
    outcome: `bob[${bob}] delivered:${delivered.length}`,
    delivered,
    wire: p.relayed.map((r) => r.text),
  };
}

void toBase64;
void NS;
