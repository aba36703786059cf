/**
 * A deterministic two-party harness: Alice and Bob as SecureClients on the in-memory
 * switchboard, seeded randomness, a virtual clock, in-memory stores, every relayed stanza
 * recorded for leak checks, and an adversary hook (the switchboard's).
 *
 * Spec: none (test support); see ../shared/docs/architecture.md "Tests, four kinds".
 */
import { Switchboard, type Relayed } from "../../src/adapters/switchboard.js";
import { type ClientEvent, SecureClient, type SecureClientOptions, type Timers } from "../../src/client/secure-client.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { type FullJid, parseFullJid } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import type { ProfileName } from "../../src/esession/profile.js";
import type { Policy } from "../../src/esession/session.js";
import { MemoryStore } from "../../src/store/memory.js";
import type { Store } from "../../src/store/types.js";

export interface PairOptions {
  readonly seed?: string;
  readonly aliceProfile?: ProfileName;
  readonly bobProfile?: ProfileName;
  readonly policy?: Partial<Policy>;
  /** Per-side overrides (policy, identity, verifier) merged over the shared ones. */
  readonly alice?: Partial<Pick<SecureClientOptions, "policy" | "identity" | "verifier" | "otherSecret">>;
  readonly bob?: Partial<Pick<SecureClientOptions, "policy" | "identity" | "verifier" | "otherSecret">>;
  readonly aliceStore?: Store;
  readonly bobStore?: Store;
  readonly board?: Switchboard;
  readonly clock?: VirtualClock;
  /** Alice's full JID (default alice@example.org/pda). */
  readonly aliceJid?: string;
}

/** Timers driven by the virtual clock: fire() runs every timer that is due. */
export class VirtualTimers implements Timers {
  private next = 1;
  private readonly due = new Map<number, { at: number; fn: () => void }>();
  constructor(private readonly clock: VirtualClock) {}
  set(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.due.set(id, { at: this.clock.now() + ms, fn });
    return id;
  }
  clear(h: unknown): void {
    this.due.delete(h as number);
  }
  fire(): void {
    for (const [id, t] of [...this.due]) {
      if (t.at <= this.clock.now()) {
        this.due.delete(id);
        t.fn();
      }
    }
  }
}

export interface Pair {
  readonly board: Switchboard;
  readonly clock: VirtualClock;
  readonly timers: VirtualTimers;
  readonly alice: SecureClient;
  readonly bob: SecureClient;
  readonly aliceJid: FullJid;
  readonly bobJid: FullJid;
  readonly aliceEvents: ClientEvent[];
  readonly bobEvents: ClientEvent[];
  readonly relayed: Relayed[];
  readonly aliceStore: Store;
  readonly bobStore: Store;
  /** Runs until no stanza is queued and both clients are idle. */
  settle(): Promise<void>;
  /** Bodies of the messages each side received, in order. */
  bodies(side: "alice" | "bob"): string[];
}

export function makePair(o: PairOptions = {}): Pair {
  const board = o.board ?? new Switchboard();
  const clock = o.clock ?? new VirtualClock();
  const timers = new VirtualTimers(clock);
  const aliceJid = parseFullJid(o.aliceJid ?? "alice@example.org/pda");
  const bobJid = parseFullJid("bob@example.com/laptop");
  const aliceStore = o.aliceStore ?? new MemoryStore();
  const bobStore = o.bobStore ?? new MemoryStore();
  const seed = o.seed ?? "pair";
  const mk = (jid: FullJid, store: Store, profile: ProfileName | undefined, who: "alice" | "bob") => {
    const side = o[who] ?? {};
    const policy = { ...o.policy, ...side.policy };
    return new SecureClient({
      connection: board.connect(jid),
      store,
      crypto: nodeCrypto,
      random: new SeededRandom(nodeCrypto, `${seed}/${who}`),
      clock,
      timers,
      ...(profile ? { profile } : {}),
      ...(Object.keys(policy).length ? { policy } : {}),
      ...(side.identity ? { identity: side.identity } : {}),
      ...(side.verifier ? { verifier: side.verifier } : {}),
      ...(side.otherSecret ? { otherSecret: side.otherSecret } : {}),
    });
  };
  const alice = mk(aliceJid, aliceStore, o.aliceProfile, "alice");
  const bob = mk(bobJid, bobStore, o.bobProfile, "bob");
  const aliceEvents: ClientEvent[] = [];
  const bobEvents: ClientEvent[] = [];
  alice.on((e) => aliceEvents.push(e));
  bob.on((e) => bobEvents.push(e));
  const relayed: Relayed[] = [];
  board.tap((r) => relayed.push(r));
  const settle = (): Promise<void> => settleBoard(board, [alice, bob]);
  const bodies = (side: "alice" | "bob") =>
    (side === "alice" ? aliceEvents : bobEvents).flatMap((e) => (e.type === "message" && e.body !== undefined ? [e.body] : []));
  return { board, clock, timers, alice, bob, aliceJid, bobJid, aliceEvents, bobEvents, relayed, aliceStore, bobStore, settle, bodies };
}

/**
 * Runs `board` and `clients` until nothing is in flight: no stanza pending on the board and
 * every client settled (the manual board is flushed). Throws when there is no quiescence.
 */
export async function settleBoard(board: Switchboard, clients: readonly { settled(): Promise<void> }[]): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (board.mode === "manual") board.flush();
    await board.idle();
    for (const c of clients) await c.settled();
    await new Promise((r) => setImmediate(r));
    if (board.pending().length === 0) {
      for (const c of clients) await c.settled();
      if (board.pending().length === 0) return;
    }
  }
  throw new Error("settle: no quiescence");
}
