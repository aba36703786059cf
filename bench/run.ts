/**
 * `npm run bench`: the library's figures, each against a raw node:crypto baseline measured
 * in the same run (see ./baselines.ts), printed as a table and merged into
 * bench/results/latest.json. Figures and format: ../docs/benchmarks.md.
 *
 * Spec: XEP-0200 v0.2 sections 5-6 (stanza encryption and decryption: the "esession
 * stanza" figures) and XEP-0217 v0.1 section 4 / XEP-0116 v0.16 section 4 (the
 * 4-message Diffie-Hellman negotiation: the "negotiation MODP" figures).
 *
 * Everything runs in one process without a network: stanzas move between two ESession
 * objects through serialize() and parseXml(), as they would over a stream.
 */
import type { CryptoProvider, DhGroupId, ModpGroup } from "../src/crypto/provider.js";
import { keyVerifier, signingIdentity } from "../src/client/keys.js";
import { createIdentityKey } from "../src/identity/keyfile.js";
import type { SignAlg } from "../src/identity/keys.js";
import type { KeyVerifier, SigningIdentity } from "../src/esession/identity.js";
import { nodeCrypto } from "../src/crypto/node.js";
import { DEFAULT_POLICY, type Policy } from "../src/esession/session.js";
import { rawDh, rawHandshake, rawStanzaCrypto } from "./baselines.js";
import { negotiate, NO_REKEY_FREQ, stanzaRoundTrip as stanzaOp } from "./esession-ops.js";
import { compare, type Figure, measure, type Measurement, median, printTable, type Unit, writeResults } from "./lib.js";

/** The target for the 200-byte stanza ratio. */
const STANZA_200_TARGET = 0.4;
/** Issue 4: protocol overhead under 30% of the raw public-key work: ratio >= 1 / 1.3. */
const HANDSHAKE_TARGET = 1 / 1.3;

interface FigureOptions {
  readonly unit: Unit;
  /** Rounds; each takes one sample of the baseline and one of the subject. */
  readonly rounds: number;
  /** Minimum duration of one sample. */
  readonly sampleMs: number;
}

/** Stanza figures: tens of microseconds per op, so 200 ms samples hold thousands of ops. */
const STANZA_OPTS: FigureOptions = { unit: "ops/s", rounds: 9, sampleMs: 200 };
/** Negotiation figures: several ms per op (MODP 14), so longer samples keep the op count up. */
const NEGOTIATION_OPTS: FigureOptions = { unit: "ops/s", rounds: 9, sampleMs: 400 };

/**
 * The 2007 suite (AES-128-CTR, HMAC-SHA-256) that the stanza and MODP baselines measure;
 * spreading DEFAULT_POLICY keeps every other field (it has no autoRekeyEvery).
 */
function policyFor(group: DhGroupId): Policy {
  return { ...DEFAULT_POLICY, groups: [group], cryptAlgs: ["aes128-ctr"], hashAlgs: ["sha256"], rekeyFreq: NO_REKEY_FREQ };
}

/** One op = one stanza round trip through a pair negotiated with the 2007 suite and MODP 14. */
const stanzaRoundTrip = (size: number): (() => void) => stanzaOp(size, policyFor(14));

/** Returns one op = one complete negotiation with a single offered MODP group. */
function negotiation(group: ModpGroup): () => void {
  const policy = policyFor(group);
  const first = negotiate(policy);
  if (first.messages !== 4) throw new Error(`negotiation MODP ${group}: ${first.messages} messages, expected 4`);
  return () => {
    negotiate(policy);
  };
}

/**
 * One op = one complete authenticated 4-message negotiation (XEP-0116, both sides 'key'):
 * MODP 14 with RSA-2048 keys, or the modern suite (X25519, SHA-512/HKDF, AES-256) with
 * Ed25519 keys.
 */
function handshake(group: DhGroupId, alg: SignAlg): () => void {
  const keyOpts = alg === "rsa-sha256" ? { rsaBits: 2048 } : {};
  const ka = signingIdentity(createIdentityKey(alg, 0, keyOpts));
  const kb = signingIdentity(createIdentityKey(alg, 0, keyOpts));
  const verifier = keyVerifier();
  const modern = group === "x25519";
  const policy: Policy = {
    ...DEFAULT_POLICY,
    groups: [group],
    cryptAlgs: [modern ? "aes256-ctr" : "aes128-ctr"],
    hashAlgs: [modern ? "sha512" : "sha256"],
    rekeyFreq: NO_REKEY_FREQ,
    offerPubkey: ["key"],
    acceptPubkey: ["key"],
  };
  const run = () => negotiate(policy, { identity: ka, verifier }, { identity: kb, verifier });
  const first = run();
  if (first.messages !== 4) throw new Error(`handshake: ${first.messages} messages, expected 4`);
  checkPublicKeyWork(policy, ka, kb, verifier);
  return () => {
    run();
  };
}

/**
 * Honesty check of the handshake figures: one counted negotiation must do exactly the
 * public-key work rawHandshake does (2 dhPublic + 2 dhShared + 2 sign + 2 verify, both
 * parties together), so that the ratio compares like with like.
 */
function checkPublicKeyWork(policy: Policy, ka: SigningIdentity, kb: SigningIdentity, verifier: KeyVerifier): void {
  const n = { dhPublic: 0, dhShared: 0, sign: 0, verify: 0 };
  const crypto: CryptoProvider = {
    ...nodeCrypto,
    dhPublic: (g, x) => (n.dhPublic++, nodeCrypto.dhPublic(g, x)),
    dhShared: (g, x, peer) => (n.dhShared++, nodeCrypto.dhShared(g, x, peer)),
  };
  const counted = (k: SigningIdentity): SigningIdentity => ({ signAlg: k.signAlg, keyValue: k.keyValue, sign: (d) => (n.sign++, k.sign(d)) });
  const countedVerifier: KeyVerifier = {
    signAlgs: verifier.signAlgs,
    verify: (...a) => (n.verify++, verifier.verify(...a)),
    lookup: (fp, h) => verifier.lookup(fp, h),
  };
  negotiate(policy, { identity: counted(ka), verifier: countedVerifier, crypto }, { identity: counted(kb), verifier: countedVerifier, crypto });
  const want = { dhPublic: 2, dhShared: 2, sign: 2, verify: 2 };
  if (JSON.stringify(n) !== JSON.stringify(want))
    throw new Error(`handshake: public-key work ${JSON.stringify(n)} differs from the baseline's ${JSON.stringify(want)}`);
}

/** Untimed warmup before a figure's first round (JIT, caches, batch sizing). */
const FIRST_WARMUP_MS = 300;
/** Warmup of later rounds: only re-sizes the batch; the code is already hot. */
const ROUND_WARMUP_MS = 30;

function summarize(name: string, unit: Unit, rates: readonly number[]): Measurement {
  return { name, unit, median: median(rates), min: Math.min(...rates), max: Math.max(...rates) };
}

/**
 * Measures subject and baseline in interleaved rounds (one sample each per round, in
 * ABBA order), so that load from other processes on a shared machine affects both
 * alike; the medians over the rounds are then compared as usual.
 */
async function figure(
  name: string,
  subject: () => void,
  baselineName: string,
  baseline: () => void,
  opts: FigureOptions,
): Promise<Figure> {
  const subjectRates: number[] = [];
  const baselineRates: number[] = [];
  const sample = async (which: "subject" | "baseline", round: number): Promise<void> => {
    const m = await measure(which === "subject" ? name : baselineName, which === "subject" ? subject : baseline, {
      unit: opts.unit,
      minTimeMs: opts.sampleMs,
      samples: 1,
      warmupMs: round === 0 ? FIRST_WARMUP_MS : ROUND_WARMUP_MS,
    });
    (which === "subject" ? subjectRates : baselineRates).push(m.median);
  };
  for (let round = 0; round < opts.rounds; round++) {
    const order = round % 2 === 0 ? (["baseline", "subject"] as const) : (["subject", "baseline"] as const);
    for (const which of order) await sample(which, round);
  }
  const f = compare(summarize(name, opts.unit, subjectRates), summarize(baselineName, opts.unit, baselineRates));
  process.stdout.write(`  measured ${name}: ratio ${f.ratio.toFixed(3)}\n`);
  return f;
}

async function main(): Promise<void> {
  const started = process.hrtime.bigint();
  process.stdout.write(
    [
      "xmpp-e2e benchmarks (higher is better; every figure is a rate).",
      "ratio = subject median rate / baseline median rate, the baseline being the raw node:crypto",
      "work the operation cannot avoid, measured in this same run (bench/baselines.ts):",
      "  esession stanza N     one message through Alice's ESession.send, serialize + parse, and",
      "                        Bob's handleStanza   vs  rawStanzaCrypto(N): AES-128-CTR + HMAC-SHA256",
      "                        + Base64, encrypt + decrypt",
      "  negotiation MODP G    one full 4-message XEP-0217 negotiation, both parties  vs  rawDh(G):",
      "                        2 dhPublic + 2 dhShared",
      "  smime ...             RFC 3923 sign+encrypt / decrypt+verify of a 500 B CPIM object vs the raw",
      "                        RSA/EC + AES operations (bench/smime.ts, docs/object-encryption.md)",
      "  xtls ...              tunnel throughput over IBB (and SOCKS5) through Prosody vs the same",
      "                        transport without TLS; handshake round trips (bench/xtls.ts, docs/xtls.md)",
      "  esession 200B vs X    one 200 B message through an established ESession vs the same through",
      "                        Signal (TypeScript and native libsignal) and OpenPGP.js (bench/compare.ts)",
      "  handshake 4-msg ...   one authenticated XEP-0116 negotiation (both sides sign with 'key')",
      "                        vs  rawHandshake: 2 dhPublic + 2 dhShared + 2 sign + 2 verify through the",
      "                        same providers, identity keys decoded once (as the protocol keeps them)",
      `Targets (issues): esession stanza 200B ratio >= ${STANZA_200_TARGET.toFixed(2)}; handshakes >= ${HANDSHAKE_TARGET.toFixed(2)} (overhead < 30%).`,
      "",
    ].join("\n") + "\n",
  );

  const figures: Figure[] = [];
  figures.push(await figure("esession stanza 200B", stanzaRoundTrip(200), "rawStanzaCrypto(200)", rawStanzaCrypto(200), STANZA_OPTS));
  figures.push(await figure("esession stanza 4KiB", stanzaRoundTrip(4096), "rawStanzaCrypto(4096)", rawStanzaCrypto(4096), STANZA_OPTS));
  figures.push(await figure("negotiation MODP 5", negotiation(5), "rawDh(5)", rawDh(5), NEGOTIATION_OPTS));
  figures.push(await figure("negotiation MODP 14", negotiation(14), "rawDh(14)", rawDh(14), NEGOTIATION_OPTS));
  figures.push(
    await figure("handshake 4-msg MODP 14 + RSA-2048", handshake(14, "rsa-sha256"), "rawHandshake(14, rsa-2048)", rawHandshake(14, "rsa-sha256"), NEGOTIATION_OPTS),
  );
  figures.push(
    await figure("handshake 4-msg modern (X25519 + Ed25519)", handshake("x25519", "ed25519"), "rawHandshake(x25519, ed25519)", rawHandshake("x25519", "ed25519"), NEGOTIATION_OPTS),
  );

  // Figures of the other layers, each module measuring its own baselines in this run.
  const layers: Array<[string, () => Promise<Figure[]>]> = [
    ["smime (RFC 3923)", async () => (await import("./smime.js")).figures()],
    ["xtls (TLS over Jingle)", async () => (await import("./xtls.js")).figures()],
    ["other protocols (Signal, OpenPGP.js)", async () => (await import("./compare.js")).figures()],
    ["scale (1,000 live sessions)", async () => (await import("./scale.js")).figures()],
  ];
  for (const [label, run] of layers) {
    process.stdout.write(`  measuring ${label} ...\n`);
    figures.push(...(await run()));
  }

  process.stdout.write("\n");
  printTable(figures);
  const s200 = figures.find((f) => f.name === "esession stanza 200B");
  if (s200) {
    const verdict = s200.ratio >= STANZA_200_TARGET ? "meets" : "BELOW";
    process.stdout.write(`\nesession stanza 200B ratio ${s200.ratio.toFixed(3)} ${verdict} the target ${STANZA_200_TARGET.toFixed(2)}.\n`);
  }
  for (const f of figures.filter((x) => x.name.startsWith("handshake"))) {
    process.stdout.write(`${f.name} ratio ${f.ratio.toFixed(3)} ${f.ratio >= HANDSHAKE_TARGET ? "meets" : "BELOW"} the target ${HANDSHAKE_TARGET.toFixed(2)}.\n`);
  }
  const signalTs = figures.find((f) => f.name.startsWith("esession 200B vs signal-ts"));
  if (signalTs) {
    process.stdout.write(`${signalTs.name} ratio ${signalTs.ratio.toFixed(3)} ${signalTs.ratio >= 5 ? "meets" : "BELOW"} the target 5.00.\n`);
  }
  const doc = writeResults(figures);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  process.stdout.write(`Wrote bench/results/latest.json (${doc.figures.length} figures, node ${doc.node}) in ${seconds.toFixed(1)} s.\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
