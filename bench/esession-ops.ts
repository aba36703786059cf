/**
 * Benchmark operations on two in-process ESession cores: a complete negotiation, and one
 * stanza round trip through an established pair, with the wire simulated by
 * serialize() + parseXml() (what a stream does to a stanza).
 *
 * Spec: XEP-0217 v0.1 section 4 / XEP-0116 v0.16 section 4 (the negotiation), XEP-0200
 * v0.2 sections 6 and 8 (encrypting and decrypting a stanza).
 */
import { type FullJid, parseFullJid, type ThreadId } from "../src/core/types.js";
import { nodeCrypto, systemClock, systemRandom } from "../src/crypto/node.js";
import type { Output } from "../src/core/machine.js";
import { ESession, type ESessionEvent, type Policy, type SessionParams } from "../src/esession/session.js";
import { el, type Element, parseXml, serialize } from "../src/xml/index.js";

export const ALICE = parseFullJid("alice@example.org/bench");
export const BOB = parseFullJid("bob@example.com/bench");
const THREAD = "bench-thread-0001" as ThreadId;
/** XEP-0116 rekey_freq maximum: neither side may initiate a re-key during the run. */
export const NO_REKEY_FREQ = 2 ** 32 - 1;

export type Extra = Pick<SessionParams, "identity" | "verifier" | "crypto">;

function params(local: FullJid, peer: FullJid, policy: Policy, extra: Partial<Extra> = {}): SessionParams {
  return { crypto: nodeCrypto, random: systemRandom, clock: systemClock, local, peer, thread: THREAD, policy, ...extra };
}

/** What the wire does to a stanza: serialize it, parse it back, stamp `from` as a server would. */
export function wire(stanza: Element, from: FullJid): Element {
  const parsed = parseXml(serialize(stanza));
  parsed.attrs.from = from;
  return parsed;
}

function describeFailure(o: Output<ESessionEvent>): string | undefined {
  if (o.kind !== "event") return undefined;
  if (o.event.type === "failed") return o.event.error.message;
  if (o.event.type === "terminated") return `terminated by ${o.event.by}`;
  return undefined;
}

export interface EstablishedPair {
  readonly alice: ESession;
  readonly bob: ESession;
  /** Stanzas that crossed the wire during the negotiation. */
  readonly messages: number;
}

/**
 * Runs one complete negotiation between two fresh sessions, shuttling every drained
 * stanza through {@link wire}, until both emitted "established". Throws on any failure.
 */
export function negotiate(policy: Policy, extraA: Partial<Extra> = {}, extraB: Partial<Extra> = {}): EstablishedPair {
  const alice = ESession.initiate(params(ALICE, BOB, policy, extraA));
  let bob: ESession | undefined;
  const toAlice: Element[] = [];
  const toBob: Element[] = [];
  let aliceUp = false;
  let bobUp = false;
  let messages = 0;

  const collect = (side: "alice" | "bob", outputs: readonly Output<ESessionEvent>[]): void => {
    for (const o of outputs) {
      const failure = describeFailure(o);
      if (failure !== undefined) throw new Error(`negotiation: ${side} ${failure}`);
      if (o.kind === "send") {
        messages++;
        if (side === "alice") toBob.push(wire(o.stanza, ALICE));
        else toAlice.push(wire(o.stanza, BOB));
      } else if (o.event.type === "established") {
        if (side === "alice") aliceUp = true;
        else bobUp = true;
      }
    }
  };

  collect("alice", alice.drain());
  for (;;) {
    const forBob = toBob.shift();
    if (forBob) {
      if (bob) bob.handleStanza(forBob);
      else bob = ESession.respond(params(BOB, ALICE, policy, extraB), forBob);
      collect("bob", bob.drain());
      continue;
    }
    const forAlice = toAlice.shift();
    if (forAlice) {
      alice.handleStanza(forAlice);
      collect("alice", alice.drain());
      continue;
    }
    break;
  }
  if (!bob || !aliceUp || !bobUp) throw new Error("negotiation: stalled before both sides were established");
  return { alice, bob, messages };
}

/** `n` bytes of ASCII text that needs no XML escaping. */
export function bodyText(n: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let s = "";
  for (let i = 0; i < n; i++) s += alphabet[i % alphabet.length] ?? "x";
  return s;
}

/**
 * Returns one op = one stanza round trip through an established pair negotiated with
 * `policy`: build the message, Alice encrypts it (send + drain), the wire, Bob decrypts it
 * (handleStanza + drain the "stanza" event). Strictly in order, so the XEP-0200 counters
 * stay in step. The decrypted body is checked once before returning.
 */
export function stanzaRoundTrip(size: number, policy: Policy): () => void {
  const { alice, bob } = negotiate(policy);
  const text = bodyText(size);

  const op = (): Element => {
    alice.send(el("message", { type: "chat" }, el("body", {}, text)));
    let encrypted: Element | undefined;
    for (const o of alice.drain()) {
      const failure = describeFailure(o);
      if (failure !== undefined) throw new Error(`encrypt: ${failure}`);
      if (o.kind === "send") encrypted = o.stanza;
    }
    if (!encrypted) throw new Error("encrypt: Alice sent nothing");
    bob.handleStanza(wire(encrypted, ALICE));
    let decrypted: Element | undefined;
    for (const o of bob.drain()) {
      const failure = describeFailure(o);
      if (failure !== undefined) throw new Error(`decrypt: ${failure}`);
      if (o.kind === "event" && o.event.type === "stanza") decrypted = o.event.stanza;
    }
    if (!decrypted) throw new Error("decrypt: Bob emitted no stanza");
    return decrypted;
  };

  if (op().getChildText("body") !== text) throw new Error(`stanza ${size} B: round trip changed the body`);
  return () => {
    op();
  };
}
