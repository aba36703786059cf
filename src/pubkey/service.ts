/**
 * Promise-based wiring of the XEP-0189 core (./client.ts) to a StanzaConnection: owns
 * the timer, sends what the core emits, resolves each request with its answer.
 *
 * Spec: XEP-0189 v0.14 sections 6 (PEP), 8 (direct request), 9 (key in a message),
 * 10 (generating) and 12 ("each client SHOULD maintain its own secure library of the
 * public keys it associates with other users": retrieved keys are checked with
 * ./keys.ts verifyPubKey before they are returned; the caller records them in src/trust/).
 */
import type { StanzaConnection } from "../adapters/connection.js";
import type { Clock, FullJid, Jid, Random } from "../core/types.js";
import type { Element } from "../xml/index.js";
import type { Attestation, LegacyPubKeys, PubKey, Revocation } from "./codec.js";
import { PubkeyClient, type AccessModel, type PubkeyEvent, type PubkeyItem, type PubkeyNodeKind, type PubkeyResponder } from "./client.js";
import { PubkeyError } from "./errors.js";

export interface PubkeyServiceOptions {
  readonly connection: StanzaConnection;
  readonly random: Random;
  readonly clock: Clock;
  readonly timeoutMs?: number;
  readonly responder?: PubkeyResponder;
  /** Events that are not answers to our requests (notifications, generating, answered, key-message). */
  readonly onEvent?: (e: PubkeyEvent) => void;
}

type Waiter = { resolve: (e: PubkeyEvent) => void; reject: (e: PubkeyError) => void };

export class PubkeyService {
  readonly core: PubkeyClient;
  private readonly conn: StanzaConnection;
  private readonly waiters = new Map<string, Waiter>();
  private readonly onEvent: ((e: PubkeyEvent) => void) | undefined;
  private readonly clock: Clock;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly off: () => void;

  constructor(opts: PubkeyServiceOptions) {
    this.conn = opts.connection;
    this.clock = opts.clock;
    this.onEvent = opts.onEvent;
    this.core = new PubkeyClient({
      jid: opts.connection.jid,
      random: opts.random,
      clock: opts.clock,
      ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
      ...(opts.responder === undefined ? {} : { responder: opts.responder }),
    });
    this.off = this.conn.onStanza((s: Element) => {
      if (this.core.handleStanza(s)) this.flush();
    });
  }

  private flush(): void {
    for (const o of this.core.drain()) {
      if (o.kind === "send") {
        this.conn.send(o.stanza).catch(() => {
          this.core.handleClosed();
          this.flush();
        });
        continue;
      }
      const e = o.event;
      const id = "requestId" in e ? e.requestId : undefined;
      const w = id === undefined ? undefined : this.waiters.get(id);
      if (id !== undefined && w !== undefined) {
        this.waiters.delete(id);
        if (e.type === "failed") w.reject(e.error);
        else w.resolve(e);
      } else this.onEvent?.(e);
    }
    this.arm();
  }

  private arm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const d = this.core.nextDeadline();
    if (d === undefined) return;
    this.timer = setTimeout(() => {
      this.core.handleTimer(this.clock.now());
      this.flush();
    }, Math.max(0, d - this.clock.now()));
    this.timer.unref?.();
  }

  private wait(start: () => string): Promise<PubkeyEvent> {
    return new Promise((resolve, reject) => {
      const id = start();
      this.waiters.set(id, { resolve, reject });
      this.flush();
    });
  }

  async publish(payload: PubKey | Revocation | Attestation, opts: { itemId?: string; accessModel?: AccessModel; maxItems?: number } = {}): Promise<string> {
    const e = await this.wait(() => this.core.publish(payload, opts));
    if (e.type !== "published") throw new PubkeyError("bad-request", "unexpected answer");
    return e.itemId;
  }

  async retract(kind: PubkeyNodeKind, itemId: string): Promise<void> {
    await this.wait(() => this.core.retract(kind, itemId));
  }

  /** `owner`'s items on a key node (undefined: ours). */
  async retrieve(owner: Jid | undefined, kind: PubkeyNodeKind, opts: { itemId?: string; maxItems?: number } = {}): Promise<readonly PubkeyItem[]> {
    const e = await this.wait(() => this.core.retrieve(owner, kind, opts));
    if (e.type !== "items") throw new PubkeyError("bad-request", "unexpected answer");
    return e.items;
  }

  async request(peer: FullJid): Promise<PubKey> {
    const e = await this.wait(() => this.core.request(peer));
    if (e.type !== "key") throw new PubkeyError("bad-request", "unexpected answer");
    return e.pubkey;
  }

  async requestLegacy(peer: FullJid): Promise<LegacyPubKeys> {
    const e = await this.wait(() => this.core.request(peer, { legacy: true }));
    if (e.type !== "legacy-keys") throw new PubkeyError("bad-request", "unexpected answer");
    return e.pubkeys;
  }

  /** Stops listening; pending requests fail with "closed". */
  close(): void {
    this.off();
    this.core.handleClosed();
    this.flush();
    if (this.timer !== undefined) clearTimeout(this.timer);
  }
}
