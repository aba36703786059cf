/**
 * Core types shared by every layer: branded identifiers and the injected effects
 * (Random, Clock) that keep protocol cores sans-IO.
 *
 * Spec: RFC 6122 (XMPP addresses) for the JID shape; DEVELOPERS.md "How we write code"
 * for the injection rule (no sockets, timers, Date.now or randomness inside a core).
 */

declare const brand: unique symbol;
/** A nominal type: a `T` that has been checked to be a `B`. */
export type Brand<T, B extends string> = T & { readonly [brand]: B };

/** A JID (bare or full) that passed {@link parseJid}. */
export type Jid = Brand<string, "Jid">;
/** A full JID (with a resource part). */
export type FullJid = Brand<Jid, "FullJid">;
/** A XEP-0201 thread id: opaque, compared exactly. */
export type ThreadId = Brand<string, "ThreadId">;

export interface JidParts {
  readonly local: string | undefined;
  readonly domain: string;
  readonly resource: string | undefined;
}

export class JidError extends Error {
  override readonly name = "JidError";
  readonly condition = "jid-malformed" as const;
  constructor(reason: string) {
    super(`jid-malformed: ${reason}`);
  }
}

/** Splits a JID into parts (RFC 6122 section 2) without normalising it. */
export function jidParts(s: string): JidParts {
  const slash = s.indexOf("/");
  const bare = slash === -1 ? s : s.slice(0, slash);
  const resource = slash === -1 ? undefined : s.slice(slash + 1);
  const at = bare.indexOf("@");
  const local = at === -1 ? undefined : bare.slice(0, at);
  const domain = at === -1 ? bare : bare.slice(at + 1);
  return { local, domain, resource };
}

/** Validates the shape of a JID and brands it. Throws {@link JidError}. */
export function parseJid(s: string): Jid {
  if (s.length === 0 || s.length > 3071) throw new JidError("length out of range");
  const { local, domain, resource } = jidParts(s);
  if (domain.length === 0 || domain.length > 1023) throw new JidError("bad domain part");
  if (/[\s@/]/.test(domain)) throw new JidError("bad domain part");
  if (local !== undefined && (local.length === 0 || local.length > 1023 || /[\s"&'/:<>@]/.test(local)))
    throw new JidError("bad local part");
  if (resource !== undefined && (resource.length === 0 || resource.length > 1023))
    throw new JidError("bad resource part");
  return s as Jid;
}

export function parseFullJid(s: string): FullJid {
  const j = parseJid(s);
  if (jidParts(j).resource === undefined) throw new JidError("a full JID needs a resource");
  return j as FullJid;
}

export function bareJid(j: Jid): Jid {
  const slash = j.indexOf("/");
  return (slash === -1 ? j : j.slice(0, slash)) as Jid;
}

export function isFullJid(j: Jid): j is FullJid {
  return j.includes("/");
}

/** Source of cryptographically strong random bytes (a seeded one in tests). */
export interface Random {
  bytes(n: number): Uint8Array;
}

/** Milliseconds since the epoch (a virtual clock in tests). */
export interface Clock {
  now(): number;
}

export function assertNever(x: never, what = "value"): never {
  throw new Error(`unexpected ${what}: ${JSON.stringify(x)}`);
}
