/**
 * Test support for the XEP-0047 in-band bytestream core (src/ibb/session.ts): moves stanzas
 * between two sans-IO IbbSession cores (initiator ALICE, responder BOB) until both are
 * quiet, with an optional tamper hook, and collects each side's events and the wire.
 *
 * Spec: XEP-0047 v2.0 sections 2-3 (open, data, close over iq or message).
 */
import { parseFullJid, type FullJid } from "../../src/core/types.js";
import type { IbbEvent, IbbSession } from "../../src/ibb/index.js";
import { parseXml, serialize, type Element } from "../../src/xml/index.js";

export const ALICE = parseFullJid("alice@example.org/a");
export const BOB = parseFullJid("bob@example.org/b");

/**
 * Relays until neither core has output. Each stanza is serialized and parsed again (as a
 * server would) unless `copy` is false, stamped with its sender's JID, passed through
 * `tamper` (undefined drops it) and recorded in `wire`.
 */
export function relay(
  a: IbbSession,
  b: IbbSession,
  tamper?: (from: FullJid, s: Element) => Element | undefined,
  copy = true,
): { a: IbbEvent[]; b: IbbEvent[]; wire: Element[] } {
  const ev = { a: [] as IbbEvent[], b: [] as IbbEvent[], wire: [] as Element[] };
  for (let guard = 0; guard < 10_000_000; guard++) {
    let moved = false;
    for (const [src, dst, from, evs] of [
      [a, b, ALICE, ev.a],
      [b, a, BOB, ev.b],
    ] as const) {
      const o = src.outbox.poll();
      if (o === undefined) continue;
      moved = true;
      if (o.kind === "event") {
        evs.push(o.event);
        continue;
      }
      let st: Element | undefined = copy ? parseXml(serialize(o.stanza)) : o.stanza;
      st.attrs.from = from;
      st = tamper ? tamper(from, st) : st;
      if (st === undefined) continue;
      if (copy) ev.wire.push(st);
      dst.handleStanza(st);
    }
    if (!moved) return ev;
  }
  throw new Error("relay did not settle");
}
