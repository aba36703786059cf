/**
 * Scale: many concurrent ESessions in one process (a gateway or bot farm holds one side of
 * each), their memory per session, and what throughput looks like with thousands of live
 * sessions instead of one.
 *
 * Spec: XEP-0217 v0.1 section 4 / XEP-0116 v0.16 section 4 (each session is negotiated:
 * 4-message SIGMA-R, no public keys, a fresh DH exchange per session), XEP-0200 v0.2
 * sections 5 and 6 (one encrypted stanza each way on every session, through the full XML
 * path: serialize, parse, MAC, CTR). Modern suite = X25519 / AES-256-CTR / SHA-512
 * (docs/modern-suite.md); spec suite = MODP 14 / AES-128-CTR / SHA-256 (the 2007 values).
 *
 * Both sides of every session live in this process, each side with its own copies of
 * every stanza (serialized and parsed back, as a stream would), so "per session" below
 * means per ESession object, i.e. per side: what one process pays per peer it talks to.
 *
 * Used by test/load/sessions-10k.test.ts (through the command line below, in a child
 * process started with --expose-gc) and by bench/run.ts through `figures()`.
 *
 *   node --expose-gc --import tsx bench/scale.ts [--sessions N] [--suite modern|spec] [--retained-probe]
 *
 * prints one JSON object (a {@link ScaleReport}) on stdout.
 */
import { pathToFileURL } from "node:url";
import type { Output } from "../src/core/machine.js";
import { type FullJid, parseFullJid, type ThreadId } from "../src/core/types.js";
import { nodeCrypto, systemClock, systemRandom } from "../src/crypto/node.js";
import { DEFAULT_POLICY, ESession, type ESessionEvent, type Policy, type RetainedSecretRef } from "../src/esession/session.js";
import { el, type Element, parseXml, serialize } from "../src/xml/index.js";
import { compare, measure, type Figure } from "./lib.js";

export type SuiteName = "modern" | "spec";

/** XEP-0116 rekey_freq maximum: no re-key during a measurement (re-keys are measured by the load test). */
const NO_REKEY = 2 ** 32 - 1;

export const POLICIES: Readonly<Record<SuiteName, Policy>> = {
  modern: { ...DEFAULT_POLICY, groups: ["x25519"], cryptAlgs: ["aes256-ctr"], hashAlgs: ["sha512"], rekeyFreq: NO_REKEY },
  spec: { ...DEFAULT_POLICY, groups: [14], cryptAlgs: ["aes128-ctr"], hashAlgs: ["sha256"], rekeyFreq: NO_REKEY },
};

/** The gateway's JID (the initiator of every session). */
export const GATEWAY = parseFullJid("gateway@example.org/gw");
export const peerJid = (i: number): FullJid => parseFullJid(`user${i}@example.com/r`);

export interface SessionPair {
  readonly alice: ESession;
  readonly bob: ESession;
  readonly aliceJid: FullJid;
  readonly bobJid: FullJid;
}

/** What a stream does to a stanza: serialize, parse back, stamp `from` as a server does. */
function wire(stanza: Element, from: FullJid): Element {
  const parsed = parseXml(serialize(stanza));
  parsed.attrs.from = from;
  return parsed;
}

function failure(o: Output<ESessionEvent>): string | undefined {
  if (o.kind !== "event") return undefined;
  if (o.event.type === "failed") return o.event.error.condition;
  if (o.event.type === "terminated") return `terminated by ${o.event.by}`;
  return undefined;
}

export interface NegotiateExtra {
  /** Responder: retained secrets with other JIDs, as SecureClient passes them (the probe). */
  readonly retainedOther?: () => readonly RetainedSecretRef[];
}

/**
 * Negotiates one session between the gateway and peer `i`: shuttles every stanza through
 * {@link wire} until both sides emitted "established". Throws on any failure.
 */
export function negotiatePair(i: number, policy: Policy, extra: NegotiateExtra = {}): SessionPair {
  const aliceJid = GATEWAY;
  const bobJid = peerJid(i);
  const thread = `scale-${i}` as ThreadId;
  const alice = ESession.initiate({ crypto: nodeCrypto, random: systemRandom, clock: systemClock, thread, policy, local: aliceJid, peer: bobJid });
  let bob: ESession | undefined;
  const toAlice: Element[] = [];
  const toBob: Element[] = [];
  let up = 0;
  const collect = (side: "alice" | "bob", outs: readonly Output<ESessionEvent>[]): void => {
    for (const o of outs) {
      const f = failure(o);
      if (f !== undefined) throw new Error(`negotiation ${i}: ${side} ${f}`);
      if (o.kind === "send") (side === "alice" ? toBob : toAlice).push(wire(o.stanza, side === "alice" ? aliceJid : bobJid));
      else if (o.event.type === "established") up++;
    }
  };
  collect("alice", alice.drain());
  for (;;) {
    const b = toBob.shift();
    if (b !== undefined) {
      if (bob === undefined) {
        const other = extra.retainedOther?.();
        const params = { crypto: nodeCrypto, random: systemRandom, clock: systemClock, thread, policy, local: bobJid, peer: aliceJid };
        bob = ESession.respond(other ? { ...params, retainedOther: other } : params, b);
      } else bob.handleStanza(b);
      collect("bob", bob.drain());
      continue;
    }
    const a = toAlice.shift();
    if (a !== undefined) {
      alice.handleStanza(a);
      collect("alice", alice.drain());
      continue;
    }
    break;
  }
  if (bob === undefined || up !== 2) throw new Error(`negotiation ${i}: stalled`);
  return { alice, bob, aliceJid, bobJid };
}

/** Encrypts `body` on `from`, carries it over the wire, decrypts on `to`; returns the decrypted body. */
export function deliver(from: ESession, fromJid: FullJid, to: ESession, body: string, id: string): string | undefined {
  from.send(el("message", { type: "chat", id }, el("body", {}, body)));
  let sent: Element | undefined;
  for (const o of from.drain()) {
    const f = failure(o);
    if (f !== undefined) throw new Error(`encrypt: ${f}`);
    if (o.kind === "send") sent = o.stanza;
  }
  if (sent === undefined) throw new Error("encrypt: nothing sent");
  to.handleStanza(wire(sent, fromJid));
  let got: string | undefined;
  for (const o of to.drain()) {
    const f = failure(o);
    if (f !== undefined) throw new Error(`decrypt: ${f}`);
    if (o.kind === "event" && o.event.type === "stanza") got = o.event.stanza.getChildText("body") ?? undefined;
  }
  return got;
}

/** One message each way on every pair; throws if any body does not come back intact. */
export function exchangeAll(pairs: readonly SessionPair[]): number {
  let n = 0;
  for (const [i, p] of pairs.entries()) {
    const ping = `ping ${i}`;
    if (deliver(p.alice, p.aliceJid, p.bob, ping, `a${i}`) !== ping) throw new Error(`session ${i}: ping lost`);
    const pong = `pong ${i}`;
    if (deliver(p.bob, p.bobJid, p.alice, pong, `b${i}`) !== pong) throw new Error(`session ${i}: pong lost`);
    n += 2;
  }
  return n;
}

export interface ScaleReport {
  readonly suite: SuiteName;
  /** Session pairs established (both sides in this process). */
  readonly pairs: number;
  /** ESession objects alive at the measurement (2 per pair). */
  readonly sessions: number;
  readonly established: number;
  readonly messagesDelivered: number;
  readonly negotiationMs: number;
  readonly exchangeMs: number;
  /** Per ESession object (per side), after a full GC, all pairs still referenced. */
  readonly heapBytesPerSession: number;
  /** ArrayBuffer backing stores (key bytes, counters) per session: outside the JS heap. */
  readonly arrayBufferBytesPerSession: number;
  /** Everything else outside the JS heap (native crypto objects, ...) per session. */
  readonly otherExternalBytesPerSession: number;
  readonly rssBytesPerSession: number;
  /** Every session still active after the exchange. */
  readonly allActive: boolean;
  /** Responder retained-secret probe (see {@link retainedProbe}), when asked for. */
  readonly retainedProbe?: RetainedProbe;
}

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g === undefined) throw new Error("run node with --expose-gc");
  g();
  g();
}

/**
 * Establishes `n` pairs with `suite`, exchanges one message each way on every one, and
 * measures memory per ESession: (usage after - usage before) / (2n), each after a full GC.
 */
export function sessionMemory(n: number, suite: SuiteName): ScaleReport {
  const policy = POLICIES[suite];
  negotiatePair(-1, policy); // warm up code paths and caches outside the measurement
  gc();
  const before = process.memoryUsage();
  const t0 = performance.now();
  const pairs: SessionPair[] = [];
  for (let i = 0; i < n; i++) pairs.push(negotiatePair(i, policy));
  const t1 = performance.now();
  const delivered = exchangeAll(pairs);
  const t2 = performance.now();
  gc();
  const after = process.memoryUsage();
  const sessions = pairs.length * 2;
  const per = (k: keyof NodeJS.MemoryUsage): number => Math.round((after[k] - before[k]) / sessions);
  const allActive = pairs.every((p) => p.alice.isActive && p.bob.isActive);
  return {
    suite,
    pairs: pairs.length,
    sessions,
    established: pairs.length,
    messagesDelivered: delivered,
    negotiationMs: Math.round(t1 - t0),
    exchangeMs: Math.round(t2 - t1),
    heapBytesPerSession: per("heapUsed"),
    arrayBufferBytesPerSession: per("arrayBuffers"),
    otherExternalBytesPerSession: per("external") - per("arrayBuffers"),
    rssBytesPerSession: per("rss"),
    allActive,
  };
}

export interface RetainedProbe {
  /** Retained secrets the responder's account holds with other JIDs. */
  readonly otherSecrets: number;
  readonly pairs: number;
  /** Responder-side heap per session with no retained secrets passed. */
  readonly baselineBytesPerResponder: number;
  /** Responder-side heap per session when `retainedOther` is built per session as SecureClient does. */
  readonly withRetainedBytesPerResponder: number;
}

/**
 * Measures what a responder session keeps when it is given the account's other retained
 * secrets the way SecureClient gives them (a fresh list of fresh copies per session, from
 * `store.listAll`): established sessions still reference `SessionParams.retainedOther`.
 */
export function retainedProbe(pairsN: number, otherSecrets: number, suite: SuiteName = "modern"): RetainedProbe {
  const policy = POLICIES[suite];
  const perResponder = (extra: NegotiateExtra): number => {
    gc();
    const before = process.memoryUsage();
    const bobs: ESession[] = [];
    for (let i = 0; i < pairsN; i++) {
      const p = negotiatePair(i, policy, extra);
      bobs.push(p.bob); // keep only the responder side
    }
    gc();
    const after = process.memoryUsage();
    const bytes = (after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers) / bobs.length;
    if (!bobs.every((b) => b.isActive)) throw new Error("probe: a session is not active");
    return Math.round(bytes);
  };
  const retainedOther = (): RetainedSecretRef[] =>
    Array.from({ length: otherSecrets }, (_, k) => ({ id: `rs-${k}`, secret: systemRandom.bytes(64), peer: `other${k}@example.net` }));
  return {
    otherSecrets,
    pairs: pairsN,
    baselineBytesPerResponder: perResponder({}),
    withRetainedBytesPerResponder: perResponder({ retainedOther }),
  };
}

// ---- bench/run.ts figures -----------------------------------------------------------

/** The DH work one modern negotiation cannot avoid: two X25519 key pairs, two agreements. */
function rawX25519Exchange(): () => void {
  return () => {
    const x = systemRandom.bytes(32);
    const y = systemRandom.bytes(32);
    const e = nodeCrypto.dhPublic("x25519", x);
    const d = nodeCrypto.dhPublic("x25519", y);
    nodeCrypto.dhShared("x25519", x, d);
    nodeCrypto.dhShared("x25519", y, e);
  };
}

/**
 * Figures (every one a ratio to a baseline measured in the same run):
 * - negotiations/s while 1,000 sessions are alive, vs the raw X25519 work of one
 *   negotiation (how much of the cost is protocol around the DH);
 * - stanza round trips/s round-robin over 1,000 live sessions, vs on one session (whether
 *   many live sessions degrade throughput: cache misses, GC of a larger heap).
 */
export async function figures(): Promise<Figure[]> {
  const policy = POLICIES.modern;
  const LIVE = 1_000;
  const live: SessionPair[] = [];
  for (let i = 0; i < LIVE; i++) live.push(negotiatePair(i, policy));
  let next = LIVE;
  const opts = { unit: "negotiations/s" as const, minTimeMs: 300, samples: 5 };
  const negM = await measure(`ESession negotiation with ${LIVE} live sessions (X25519, 4 messages, XML)`, () => {
    negotiatePair(next++, policy);
  }, opts);
  const rawM = await measure("raw X25519: 2 key pairs + 2 agreements (node:crypto)", rawX25519Exchange(), opts);

  let k = 0;
  const one = live[0];
  if (one === undefined) throw new Error("no session");
  const rt = { unit: "round trips/s" as const, minTimeMs: 300, samples: 5 };
  const manyM = await measure(`stanza round trip, round-robin over ${LIVE} live sessions (200 B)`, () => {
    const p = live[k++ % LIVE];
    if (p !== undefined) deliver(p.alice, p.aliceJid, p.bob, BODY_200, "m");
  }, rt);
  const oneM = await measure("stanza round trip on one session (200 B)", () => {
    deliver(one.alice, one.aliceJid, one.bob, BODY_200, "m");
  }, rt);
  return [compare(negM, rawM), compare(manyM, oneM)];
}

const BODY_200 = "x".repeat(200);

// ---- command line -------------------------------------------------------------------

function arg(argv: readonly string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i === -1 ? undefined : argv[i + 1];
}

async function main(argv: readonly string[]): Promise<void> {
  const n = Number(arg(argv, "--sessions") ?? "10000");
  const suite = (arg(argv, "--suite") ?? "modern") as SuiteName;
  if (!Number.isInteger(n) || n < 1 || (suite !== "modern" && suite !== "spec")) throw new Error("usage: --sessions N --suite modern|spec");
  const report: ScaleReport = sessionMemory(n, suite);
  const probe = argv.includes("--retained-probe") ? retainedProbe(200, 500, suite) : undefined;
  process.stdout.write(`${JSON.stringify({ ...report, ...(probe ? { retainedProbe: probe } : {}) })}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
