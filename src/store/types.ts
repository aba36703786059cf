/**
 * Persistent state of the Encrypted Sessions layer, behind async interfaces that any
 * database can implement (SQLite by default, see ./sqlite.ts; in memory, see ./memory.ts;
 * a server may back them with PostgreSQL).
 *
 * Spec:
 * - XEP-0116 v0.16 section 4.7.3 "Generating Bob's Final Session Keys" (#init-finalbob)
 *   and 4.8.1 "Generating Alice's Final Session Keys" (#init-finalalice); XEP-0217 v0.1
 *   sections 4.5.4 and 4.6.1 (same anchors): the retained secrets. Each client keeps, per
 *   peer bare JID, "the most recent shared secret for each of [the peer's] clients"; after
 *   a negotiation it "MUST destroy all [its] copies of the old retained secret (SRS)" and
 *   "MUST securely store the new value" HMAC(HASH, K, "New Retained Secret"). Bob "SHOULD
 *   search through all the retained secrets that have not expired [...] for all the other
 *   JIDs" when none of the current JID matches (the extended search: `listAll`). A secret
 *   expires when it "is older than an implementation-defined period of time" (`expire`).
 * - XEP-0116 section 4.7.2 / XEP-0217 section 4.5.3 "Short Authentication String"
 *   (#init-acceptbob-sas): clients "MAY remember (in a secure way) that a SAS match has not
 *   yet been confirmed and remind [the users] at the start of each ESession" (`SasStore`).
 * - XEP-0116 section 7.3 "Verifying Keys" (#sec-keys) / XEP-0217 section 7: "entities
 *   SHOULD remember whether or not the whole chain of retained secrets (and the associated
 *   sessions) has ever been validated by the user verifying a SAS" (`verifiedChain`).
 *
 * Every method returns a Promise so that a networked database can implement it; callers
 * must not assume a method settles synchronously. JIDs are stored as BARE JIDs: an
 * implementation strips a resource it is given (RFC 6122 section 2; the spec matches
 * "sessions where the bareJID was the same"). JIDs are compared exactly as given
 * (no stringprep); the caller passes them in one canonical form.
 */
import type { Jid } from "../core/types.js";

/** One secret retained from a previous ESession with one client of `peer`. */
export interface RetainedSecret {
  /** Opaque id of this secret (a new id for every stored secret). */
  readonly id: string;
  /** Our own bare JID (the store may serve several accounts). */
  readonly account: Jid;
  /** The peer's bare JID that the session which produced this secret was negotiated with. */
  readonly peer: Jid;
  /** The secret bytes. A copy: wiping it does not change the store. */
  readonly secret: Uint8Array;
  /** When the secret was stored (ms since the epoch, from the caller's clock). */
  readonly createdAt: number;
  /**
   * Whether the whole chain of retained secrets that led to this one has ever been
   * validated by the user verifying a SAS (XEP-0116 section 7.3). Once true along a
   * chain it stays true for every later link (see {@link ReplaceRetainedSecretArgs}).
   */
  readonly verifiedChain: boolean;
}

export interface ReplaceRetainedSecretArgs {
  /** Our bare JID. */
  readonly account: Jid;
  /** The peer's bare JID of THIS session (may differ from the old secret's peer when the
   * SRS was found by the extended search over other JIDs). */
  readonly peer: Jid;
  /**
   * The id of the shared retained secret (SRS) this session used, if one was found. It is
   * destroyed in the same transaction that stores the new secret. It must belong to
   * `account`; if it no longer exists (a concurrent session already replaced or removed
   * it, or it expired) the call rejects with `StoreError("not-found")` and stores nothing.
   * Omit it when no SRS was found: the new secret starts a new chain (a new peer client).
   */
  readonly oldSecretId?: string;
  /** HMAC(HASH, K, "New Retained Secret"). Copied by the store; non-empty. */
  readonly secret: Uint8Array;
  /** The time to record as `createdAt`. */
  readonly now: number;
  /**
   * Whether this session's SAS was verified by the user (or the chain is otherwise known
   * to be verified). The stored flag is `verifiedChain || old.verifiedChain`: a chain
   * that was ever validated stays validated, since each later link was keyed by the SRS.
   */
  readonly verifiedChain: boolean;
}

export interface RetainedSecretStore {
  /** Secrets shared with `peer`'s clients (one per client), most recent first. */
  list(account: Jid, peer: Jid): Promise<RetainedSecret[]>;
  /** Every secret `account` holds, for all peers (the extended search), most recent first. */
  listAll(account: Jid): Promise<RetainedSecret[]>;
  /** Atomically destroys `oldSecretId` (if given) and stores the new secret. */
  replace(args: ReplaceRetainedSecretArgs): Promise<RetainedSecret>;
  /** Destroys one secret. Resolves to whether it existed. */
  remove(id: string): Promise<boolean>;
  /** Destroys every secret with `createdAt < before` (all accounts). Resolves to the count. */
  expire(before: number): Promise<number>;
  /** Records that the chain ending in `id` was validated by a SAS. Rejects "not-found". */
  markChainVerified(id: string): Promise<void>;
}

export interface SasState {
  readonly confirmed: boolean;
  /** Present iff `confirmed`. */
  readonly confirmedAt?: number;
}

export interface SasStore {
  /** `{ confirmed: false }` when the users never confirmed a SAS match. */
  getSasState(account: Jid, peer: Jid): Promise<SasState>;
  /** Records a confirmed SAS match (keeps the latest time). */
  setSasConfirmed(account: Jid, peer: Jid, now: number): Promise<void>;
}

export type Store = RetainedSecretStore &
  SasStore & {
    /** Releases the database. Idempotent; later calls on the store reject with "io". */
    close(): Promise<void>;
  };

export const STORE_ERROR_CONDITIONS = ["io", "corrupt", "not-found"] as const;
export type StoreErrorCondition = (typeof STORE_ERROR_CONDITIONS)[number];

/**
 * The one error class of the store layer. Its message never contains secret bytes (nor
 * any stored value): only the operation, the condition and, for database errors, the
 * driver's error code.
 */
export class StoreError extends Error {
  override readonly name = "StoreError";
  constructor(
    readonly condition: StoreErrorCondition,
    message: string,
    /** The driver's or the OS's error code (e.g. SQLITE_CORRUPT, EACCES), if any. */
    readonly code?: string,
  ) {
    super(`${condition}: ${message}${code === undefined ? "" : ` (${code})`}`);
  }
}

/** Throws a RangeError (never mentioning the secret) on malformed `replace` arguments. */
export function validateReplaceArgs(args: ReplaceRetainedSecretArgs): void {
  if (!(args.secret instanceof Uint8Array) || args.secret.length === 0)
    throw new RangeError("retained secret must be a non-empty Uint8Array");
  validateTime(args.now);
}

/** Times are integer milliseconds since the epoch. */
export function validateTime(t: number): void {
  if (!Number.isSafeInteger(t)) throw new RangeError("time must be an integer number of ms since the epoch");
}

const REDACTED = "[RetainedSecret redacted]";

/**
 * Builds a {@link RetainedSecret} whose secret cannot leak through `console.log`,
 * `util.inspect` or `JSON.stringify` (non-enumerable hooks; structural equality and
 * property access are unaffected). Implementations of the interface should use it.
 */
export function makeRetainedSecret(fields: RetainedSecret): RetainedSecret {
  const r: RetainedSecret = {
    id: fields.id,
    account: fields.account,
    peer: fields.peer,
    secret: fields.secret,
    createdAt: fields.createdAt,
    verifiedChain: fields.verifiedChain,
  };
  const describe = () => ({
    id: r.id,
    account: r.account,
    peer: r.peer,
    secret: REDACTED,
    createdAt: r.createdAt,
    verifiedChain: r.verifiedChain,
  });
  Object.defineProperty(r, "toJSON", { value: describe, enumerable: false });
  Object.defineProperty(r, Symbol.for("nodejs.util.inspect.custom"), {
    value: () => describe(),
    enumerable: false,
  });
  return r;
}
