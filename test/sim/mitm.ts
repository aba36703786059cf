/**
 * An active man in the middle for the switchboard: Mallory intercepts Alice's ESession
 * request to Bob, answers Alice as "Bob" with one ESession and negotiates with Bob as
 * "Alice" with another, then relays (and can read) everything. This is the attack the
 * SAS, retained secrets, the Other Shared Secret and public keys exist to expose.
 *
 * Spec: XEP-0116 v0.16 section 7 / XEP-0217 (SAS, retained secrets), XEP-0210 3.6.
 */
import type { Switchboard } from "../../src/adapters/switchboard.js";
import { SeededRandom, type VirtualClock } from "../../src/core/testing.js";
import type { FullJid, ThreadId } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { ESession } from "../../src/esession/session.js";
import type { Element } from "../../src/xml/index.js";
import { NS } from "../../src/xml/index.js";

export interface Mitm {
  /** Plaintext bodies Mallory read, in order. */
  readonly read: string[];
  /** The SAS each of Mallory's sessions computed (towards Alice, towards Bob). */
  readonly sas: { alice?: string; bob?: string };
  readonly failures: string[];
}

export function installMitm(board: Switchboard, alice: FullJid, bob: FullJid, clock: VirtualClock, opts: { otherSecret?: Uint8Array } = {}): Mitm {
  const state: Mitm = { read: [], sas: {}, failures: [] };
  let asBob: ESession | undefined; // talks to Alice, pretending to be Bob
  let asAlice: ESession | undefined; // talks to Bob, pretending to be Alice
  const random = new SeededRandom(nodeCrypto, "mallory");
  const pump = (s: ESession, toward: "alice" | "bob"): void => {
    for (const o of s.drain()) {
      if (o.kind === "send") {
        o.stanza.attrs.to = toward === "alice" ? alice : bob;
        board.inject(toward === "alice" ? bob : alice, o.stanza);
        continue;
      }
      const e = o.event;
      if (e.type === "established" && e.sas !== undefined) state.sas[toward] = e.sas;
      if (e.type === "failed") state.failures.push(e.error.condition);
      if (e.type === "stanza") {
        const body = e.stanza.getChildText("body");
        if (body !== null) state.read.push(body);
        // Relay to the other side, re-encrypted under the other session.
        const other = toward === "alice" ? asAlice : asBob;
        if (other?.isActive) {
          other.send(e.stanza);
          pump(other, toward === "alice" ? "bob" : "alice");
        }
      }
    }
  };
  board.setAdversary((item) => {
    const s: Element = item.stanza;
    const fromAlice = item.from === alice && item.to === bob;
    const fromBob = item.from === bob && item.to === alice;
    if (!fromAlice && !fromBob) return { action: "deliver" };
    const thread = s.getChildText("thread") as ThreadId | null;
    const isRequest = s.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.attrs.type === "form";
    if (fromAlice && isRequest && thread) {
      const common = { crypto: nodeCrypto, random, clock, thread, ...(opts.otherSecret ? { otherSecret: opts.otherSecret } : {}) };
      asBob = ESession.respond({ ...common, local: bob, peer: alice }, s);
      pump(asBob, "alice");
      asAlice = ESession.initiate({ ...common, local: alice, peer: bob });
      pump(asAlice, "bob");
      return { action: "drop" };
    }
    if (fromAlice && asBob) {
      asBob.handleStanza(s);
      pump(asBob, "alice");
      return { action: "drop" };
    }
    if (fromBob && asAlice) {
      asAlice.handleStanza(s);
      pump(asAlice, "bob");
      return { action: "drop" };
    }
    return { action: "deliver" };
  });
  return state;
}
