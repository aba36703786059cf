/**
 * In-memory {@link Store}: the reference implementation of the store contract, for tests,
 * simulations and the demo. Nothing survives the process.
 *
 * Spec: XEP-0116 v0.16 sections 4.7.3 / 4.8.1 and XEP-0217 v0.1 sections 4.5.4 / 4.6.1
 * (retained secrets: one per peer client, the old one destroyed when the new one is
 * stored), section 4.7.2 / 4.5.3 (remembering SAS confirmation) and XEP-0116 section 7.3
 * (remembering whether the chain was validated by a SAS). See ./types.ts.
 *
 * Destroyed secrets are overwritten with zeros (best effort: JS may hold other copies).
 * Every secret is copied on the way in and on the way out.
 */
import { wipe } from "../core/bytes.js";
import { bareJid, type Clock, type Jid } from "../core/types.js";
import {
  makeRetainedSecret,
  StoreError,
  type ReplaceRetainedSecretArgs,
  type RetainedSecret,
  type SasState,
  type Store,
  validateReplaceArgs,
  validateTime,
} from "./types.js";

interface Row {
  id: string;
  account: Jid;
  peer: Jid;
  secret: Uint8Array;
  createdAt: number;
  verifiedChain: boolean;
  /** Insertion order, to break createdAt ties like the SQLite store (rowid). */
  seq: number;
}

export interface MemoryStoreOptions {
  /** Unused by the memory store; accepted for symmetry with `openSqliteStore`. */
  readonly clock?: Clock;
}

function out(r: Row): RetainedSecret {
  return makeRetainedSecret({
    id: r.id,
    account: r.account,
    peer: r.peer,
    secret: r.secret.slice(),
    createdAt: r.createdAt,
    verifiedChain: r.verifiedChain,
  });
}

function newestFirst(a: Row, b: Row): number {
  return b.createdAt - a.createdAt || b.seq - a.seq;
}

export class MemoryStore implements Store {
  private readonly rows = new Map<string, Row>();
  private readonly sas = new Map<string, number>();
  private seq = 0;
  private closed = false;

  constructor(_opts: MemoryStoreOptions = {}) {}

  private open(): void {
    if (this.closed) throw new StoreError("io", "store is closed");
  }

  async list(account: Jid, peer: Jid): Promise<RetainedSecret[]> {
    this.open();
    const a = bareJid(account);
    const p = bareJid(peer);
    return [...this.rows.values()]
      .filter((r) => r.account === a && r.peer === p)
      .sort(newestFirst)
      .map(out);
  }

  async listAll(account: Jid): Promise<RetainedSecret[]> {
    this.open();
    const a = bareJid(account);
    return [...this.rows.values()]
      .filter((r) => r.account === a)
      .sort(newestFirst)
      .map(out);
  }

  async replace(args: ReplaceRetainedSecretArgs): Promise<RetainedSecret> {
    this.open();
    validateReplaceArgs(args);
    const account = bareJid(args.account);
    let verifiedChain = args.verifiedChain;
    // Check first, mutate after: either both steps happen or neither does.
    if (args.oldSecretId !== undefined) {
      const old = this.rows.get(args.oldSecretId);
      if (old === undefined || old.account !== account)
        throw new StoreError("not-found", "replace: the old retained secret no longer exists");
      verifiedChain ||= old.verifiedChain;
      wipe(old.secret);
      this.rows.delete(old.id);
    }
    const row: Row = {
      id: globalThis.crypto.randomUUID(),
      account,
      peer: bareJid(args.peer),
      secret: args.secret.slice(),
      createdAt: args.now,
      verifiedChain,
      seq: this.seq++,
    };
    this.rows.set(row.id, row);
    return out(row);
  }

  async remove(id: string): Promise<boolean> {
    this.open();
    const r = this.rows.get(id);
    if (r === undefined) return false;
    wipe(r.secret);
    return this.rows.delete(id);
  }

  async expire(before: number): Promise<number> {
    this.open();
    let n = 0;
    for (const r of [...this.rows.values()]) {
      if (r.createdAt < before) {
        wipe(r.secret);
        this.rows.delete(r.id);
        n++;
      }
    }
    return n;
  }

  async markChainVerified(id: string): Promise<void> {
    this.open();
    const r = this.rows.get(id);
    if (r === undefined) throw new StoreError("not-found", "markChainVerified: no such retained secret");
    r.verifiedChain = true;
  }

  async getSasState(account: Jid, peer: Jid): Promise<SasState> {
    this.open();
    const at = this.sas.get(sasKey(account, peer));
    return at === undefined ? { confirmed: false } : { confirmed: true, confirmedAt: at };
  }

  async setSasConfirmed(account: Jid, peer: Jid, now: number): Promise<void> {
    this.open();
    validateTime(now);
    const k = sasKey(account, peer);
    this.sas.set(k, Math.max(now, this.sas.get(k) ?? now));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.rows.values()) wipe(r.secret);
    this.rows.clear();
    this.sas.clear();
  }
}

function sasKey(account: Jid, peer: Jid): string {
  // NUL cannot occur in a JID, so the key is unambiguous.
  return `${bareJid(account)}\u0000${bareJid(peer)}`;
}
