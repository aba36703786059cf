/**
 * The replay cache for object encryption: which (sender, object id) pairs were already
 * accepted, behind an async interface (SQLite in ./replay-sqlite.ts, memory here).
 *
 * Spec: draft-ietf-xmpp-e2e-03 section 2 requirement 1, RFC 2779 section 2.5.2 ("The
 * protocol MUST provide means to ensure confidence that a received message has not been
 * recorded and played back by an adversary"); RFC 3923 section 6.9 (the DateTime of the
 * object bounds how long an id must be remembered: an object older than the window is
 * rejected on its timestamp, so entries older than the window can be forgotten).
 *
 * Ids are the object's Content-ID (RFC 2045 section 7, globally unique) or a digest of
 * the object when it has none; the sender is a bare JID; `account` is our bare JID (one
 * cache may serve several accounts).
 */

export interface ReplayCache {
  /**
   * Records that `id` from `sender` was accepted at `now` (ms since the epoch). Resolves
   * false, recording nothing, when the pair was already recorded: a replay.
   */
  checkAndRecord(account: string, sender: string, id: string, now: number): Promise<boolean>;
  /** Forgets every entry recorded before `before`; resolves how many were removed. */
  expire(before: number): Promise<number>;
  close(): Promise<void>;
}

/** In-memory cache, bounded: beyond `maxEntries` the oldest entries are forgotten. */
export class MemoryReplayCache implements ReplayCache {
  private readonly seen = new Map<string, number>();
  constructor(private readonly maxEntries = 100_000) {}

  private key(account: string, sender: string, id: string): string {
    return JSON.stringify([account, sender, id]);
  }

  async checkAndRecord(account: string, sender: string, id: string, now: number): Promise<boolean> {
    const k = this.key(account, sender, id);
    if (this.seen.has(k)) return false;
    this.seen.set(k, now);
    while (this.seen.size > this.maxEntries) {
      const oldest = this.seen.keys().next();
      if (oldest.done === true) break;
      this.seen.delete(oldest.value);
    }
    return true;
  }

  async expire(before: number): Promise<number> {
    let n = 0;
    for (const [k, t] of this.seen) if (t < before && this.seen.delete(k)) n++;
    return n;
  }

  async close(): Promise<void> {
    this.seen.clear();
  }

  get size(): number {
    return this.seen.size;
  }
}
