/**
 * The archive key from one of the user's devices to another, over an authenticated
 * Encrypted Session between the two devices (instead of only the passphrase-protected
 * export file of crypto.ts).
 *
 * Spec: XEP-0136 v1.3.1 (Message Archiving): its encryption section was split off (v0.17)
 * into XEP-0241 v0.1 (Encryption of Archived Messages), section 2: archived collections are
 * encrypted so that "every client of the user" can read them, which requires every client
 * to hold the key that unwraps the data keys; XEP-0241 leaves how that key reaches the
 * user's other clients to the implementation. We carry it inside an XEP-0200 v0.2 Encrypted
 * Session (stanza encryption: the payload is encrypted and MACed end to end, section 4),
 * negotiated by XEP-0116 v0.16 / XEP-0217 v0.1 between two resources of the same account,
 * and ONLY when that session is authenticated (XEP-0116 section 4.7.2 / XEP-0217: the users
 * compared the SAS, or the device's public key was verified, XEP-0116 section 7.3):
 * "accepting a key pushed by our own JID from an unverified session would let a server
 * plant its key" (docs/archive.md "Bringing the key to another device").
 *
 * Wire format (project namespace, inside the session's encrypted content only):
 *   <request xmlns='urn:xmpp-e2e:archive-key:0' id='ID'/>                 new device -> holder
 *   <key xmlns='urn:xmpp-e2e:archive-key:0' id='ID' name='archive-…'>BASE64</key>  holder -> new device
 *   <refused xmlns='urn:xmpp-e2e:archive-key:0' id='ID' reason='REASON'/>   holder -> new device
 * The key travels raw (Base64 of the 32 bytes): the XEP-0200 session encrypts and
 * authenticates it; `name` (crypto.ts archiveKeyFrom) lets the receiver check the key.
 *
 * The key never appears in an event, a log line or an error message; byte buffers we own
 * are wiped (a Base64 string cannot be: JavaScript strings are immutable).
 */
import { fromBase64, toBase64, toHex, wipe } from "../core/bytes.js";
import { bareJid, type Clock, type FullJid, parseFullJid, type Random } from "../core/types.js";
import { systemClock, systemRandom } from "../crypto/node.js";
import type { ClientEvent, Established, SecureClient, Timers } from "../client/secure-client.js";
import type { SasStore } from "../store/types.js";
import type { TrustVerdict } from "../trust/index.js";
import { el, type Element, elements } from "../xml/index.js";
import { type ArchiveCrypto, type ArchiveKey, archiveKeyFrom, nodeArchiveCrypto } from "./crypto.js";
import { ArchiveError } from "./errors.js";

export const NS_ARCHIVE_KEY = "urn:xmpp-e2e:archive-key:0";

/** Why a holder refused to send the key (the `reason` attribute of `<refused/>`). */
export const REFUSAL_REASONS = [
  /** The request came from another account: the archive key is only for the user's own devices. */
  "not-own-account",
  /** The session is not authenticated: compare the SAS (or verify the device's key) first. */
  "not-authenticated",
  /** The user on the holder device said no. */
  "declined",
  /** The holder has no archive key. */
  "no-key",
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

// ---- codec -------------------------------------------------------------------------------

export type KeyTransferPayload =
  | { readonly kind: "request"; readonly id: string }
  | { readonly kind: "key"; readonly id: string; readonly name: string | undefined; readonly value: string }
  | { readonly kind: "refused"; readonly id: string; readonly reason: RefusalReason | "other" };

/** Request ids: what we generate (hex) and what we accept (short, printable, no spaces). */
const ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

export function keyTransferToXml(p: KeyTransferPayload): Element {
  switch (p.kind) {
    case "request":
      return el("request", { xmlns: NS_ARCHIVE_KEY, id: p.id });
    case "key":
      return el("key", { xmlns: NS_ARCHIVE_KEY, id: p.id, ...(p.name !== undefined ? { name: p.name } : {}) }, p.value);
    case "refused":
      return el("refused", { xmlns: NS_ARCHIVE_KEY, id: p.id, reason: p.reason });
    default: {
      const never: never = p;
      return never;
    }
  }
}

/** Parses one payload element; undefined when it is not ours or is malformed. */
export function parseKeyTransfer(e: Element): KeyTransferPayload | undefined {
  if (e.getNS() !== NS_ARCHIVE_KEY) return undefined;
  const id = e.attrs.id;
  if (typeof id !== "string" || !ID_RE.test(id)) return undefined;
  switch (e.name) {
    case "request":
      return { kind: "request", id };
    case "key": {
      const name = typeof e.attrs.name === "string" ? e.attrs.name : undefined;
      return { kind: "key", id, name, value: e.getText().trim() };
    }
    case "refused": {
      const r = e.attrs.reason;
      const reason = (REFUSAL_REASONS as readonly string[]).includes(String(r)) ? (r as RefusalReason) : "other";
      return { kind: "refused", id, reason };
    }
    default:
      return undefined;
  }
}

/** The first payload of ours among the (decrypted) children of `stanza`. */
export function findKeyTransfer(stanza: Element): KeyTransferPayload | undefined {
  for (const c of elements(stanza)) {
    const p = parseKeyTransfer(c);
    if (p) return p;
  }
  return undefined;
}

function payloadMessage(p: KeyTransferPayload): Element {
  // type 'normal' and no <body/>: the archive (attach.ts) keeps bodies only, so the key is
  // never archived, and chat UIs have no text to show.
  return el("message", { type: "normal" }, keyTransferToXml(p));
}

// ---- who is authenticated ----------------------------------------------------------------

/** What we know of the session with the other device, as SecureClient reported it. */
export interface SessionFacts {
  readonly established: Established;
  /** When we saw it established (the injected clock). */
  readonly establishedAt: number;
  /** The TrustManager's verdict for the device's key in this session, when one is configured. */
  readonly verdict?: TrustVerdict;
}

export type IsAuthenticated = (device: FullJid, facts: SessionFacts | undefined) => boolean | Promise<boolean>;

/**
 * The default rule, from what SecureClient exposes:
 * 1. the TrustManager's verdict on this session's key is "verified" (fingerprint checked
 *    or a SAS confirmed in a session authenticated by that key: per key, the strongest);
 * 2. else, with `store` (the SasStore given to the SecureClient), the users confirmed a
 *    SAS with the account (`getSasState(account, account)`) during this session (at or
 *    after its establishment);
 * 3. else: not authenticated.
 * The store's SAS state is per bare JID, i.e. for own devices per ACCOUNT: it says that
 * a SAS with one of the user's devices was confirmed, not with which. A SAS confirmed in
 * an earlier session, continued by a retained-secret chain, is therefore NOT enough here:
 * a device the server planted earlier holds a chain of its own with us, and the account's
 * "confirmed" flag may come from another device. Handing over the archive key needs this
 * session's SAS compared now (the CLI shows it in the approval prompt) or a verified key.
 */
export async function defaultIsAuthenticated(
  client: SecureClient,
  device: FullJid,
  facts: SessionFacts | undefined,
  store: SasStore | undefined,
): Promise<boolean> {
  if (!facts || facts.established.peer !== device) return false;
  if (facts.verdict?.trust === "verified") return true;
  if (facts.verdict && facts.verdict.trust !== "accepted" && facts.verdict.trust !== "no-key") return false;
  const account = bareJid(client.jid);
  if (store) {
    const s = await store.getSasState(account, account);
    if (!s.confirmed) return false;
    return (s.confirmedAt ?? -Infinity) >= facts.establishedAt;
  }
  return false;
}

/**
 * Follows `client`'s events and keeps, per device of the user, the facts of its current
 * session (established + trust verdict), dropped when the session ends.
 */
class SessionWatch {
  private readonly facts = new Map<string, { established: Established; establishedAt: number; verdict?: TrustVerdict }>();
  readonly off: () => void;
  constructor(client: SecureClient, clock: Clock) {
    this.off = client.on((e) => {
      if (e.type === "established") this.facts.set(e.peer, { established: e, establishedAt: clock.now() });
      else if (e.type === "trust") {
        const f = this.facts.get(e.peer);
        if (f) f.verdict = e.verdict;
      } else if (e.type === "terminated" || e.type === "failed") this.facts.delete(e.peer);
    });
  }
  get(device: string): SessionFacts | undefined {
    return this.facts.get(device);
  }
  seed(established: Established, at: number): void {
    if (!this.facts.has(established.peer)) this.facts.set(established.peer, { established, establishedAt: at });
  }
}

// ---- the holder --------------------------------------------------------------------------

export type ServeEvent =
  /** A request arrived inside a session with one of our devices (before any check). */
  | { readonly type: "request"; readonly device: FullJid; readonly id: string }
  /** The key was sent (its name only). */
  | { readonly type: "sent"; readonly device: FullJid; readonly id: string; readonly keyName: string }
  /** A `<refused/>` was sent. */
  | { readonly type: "refused"; readonly device: FullJid; readonly id: string; readonly reason: RefusalReason }
  /** A request we did not answer: outside any session, or the answer could not be sent. */
  | { readonly type: "ignored"; readonly peer: string; readonly reason: "not-encrypted" | "unauthenticated-part" | "send-failed" };

export interface ServeOptions {
  /** The archive key, a fresh copy each call (it is wiped after use); undefined: none here. */
  readonly key: () => Promise<ArchiveKey | undefined>;
  /** Asks the user whether to give the key to `device` (after the session is authenticated). */
  readonly approve: (device: FullJid, facts: SessionFacts | undefined) => Promise<boolean>;
  /** Replaces the default rule ({@link defaultIsAuthenticated}). */
  readonly isAuthenticated?: IsAuthenticated;
  /** The SasStore the SecureClient uses (for the default rule). */
  readonly store?: SasStore;
  readonly clock?: Clock;
  readonly onEvent?: (e: ServeEvent) => void;
}

/**
 * Holder side: answers `<request/>`s from the user's other devices. The key is sent only
 * when the request arrived inside an established ESession (a `message` event of the
 * SecureClient: decrypted and MAC-verified), from another resource of our own bare JID,
 * the session is authenticated and the user approved; every other in-session request gets
 * a `<refused/>` with a typed reason (inside the session, never the key). Requests outside
 * any session (plain messages) are never answered; they are reported as `ignored`.
 * Sessions established before this call count only if `isAuthenticated` says so.
 * Returns a function that stops serving.
 */
export function serveArchiveKey(client: SecureClient, o: ServeOptions): () => void {
  const clock = o.clock ?? systemClock;
  const watch = new SessionWatch(client, clock);
  const report = (e: ServeEvent): void => {
    try {
      o.onEvent?.(e);
    } catch {
      /* a listener's failure must not change what we answer */
    }
  };
  let stopped = false;
  const answer = async (device: FullJid, p: KeyTransferPayload): Promise<void> => {
    try {
      await client.send(device, payloadMessage(p));
    } catch {
      // The session ended (send refuses "not-protected"): nothing went out in the clear.
      report({ type: "ignored", peer: device, reason: "send-failed" });
      return;
    }
    if (p.kind === "refused" && p.reason !== "other") report({ type: "refused", device, id: p.id, reason: p.reason });
  };
  const handle = async (device: FullJid, id: string): Promise<void> => {
    report({ type: "request", device, id });
    const refuse = (reason: RefusalReason): Promise<void> => answer(device, { kind: "refused", id, reason });
    // The archive key is the user's own: another account never gets it (not even the question).
    if (bareJid(device) !== bareJid(client.jid)) return refuse("not-own-account");
    const s = client.session(device);
    if (!s?.isActive) return;
    const facts = watch.get(device);
    let authenticated = false;
    try {
      authenticated = await (o.isAuthenticated ? o.isAuthenticated(device, facts) : defaultIsAuthenticated(client, device, facts, o.store));
    } catch {
      authenticated = false;
    }
    if (stopped) return;
    if (!authenticated) return refuse("not-authenticated");
    let approved = false;
    try {
      approved = await o.approve(device, facts);
    } catch {
      approved = false;
    }
    if (stopped) return;
    if (!approved) return refuse("declined");
    const key = await o.key().catch(() => undefined);
    if (!key) return refuse("no-key");
    // The session may have ended or been replaced while the user was asked: only the same,
    // still active session carries the key.
    if (client.session(device) !== s || !s.isActive || stopped) {
      wipe(key.key);
      report({ type: "ignored", peer: device, reason: "send-failed" });
      return;
    }
    const name = key.name;
    const value = toBase64(key.key);
    wipe(key.key);
    try {
      await client.send(device, payloadMessage({ kind: "key", id, name, value }));
    } catch {
      report({ type: "ignored", peer: device, reason: "send-failed" });
      return;
    }
    report({ type: "sent", device, id, keyName: name });
  };
  const offEvents = client.on((e: ClientEvent) => {
    if (stopped) return;
    if (e.type === "message" || e.type === "stanza") {
      const p = findKeyTransfer(e.stanza);
      if (p?.kind === "request") {
        if (e.peer === client.jid) return;
        void handle(e.peer, p.id);
        return;
      }
      // A request placed beside the encrypted content (outside <c/>) is not authenticated.
      if (e.unauthenticated.some((u) => parseKeyTransfer(u)?.kind === "request")) report({ type: "ignored", peer: e.peer, reason: "unauthenticated-part" });
    } else if (e.type === "unprotected") {
      const p = findKeyTransfer(e.stanza);
      if (p?.kind === "request") report({ type: "ignored", peer: e.peer, reason: "not-encrypted" });
    }
  });
  return () => {
    stopped = true;
    offEvents();
    watch.off();
  };
}

// ---- the new device ----------------------------------------------------------------------

export type RequestEvent =
  /** A `<key/>` or `<refused/>` we did not ask for (wrong id, other device, outside the session); ignored. */
  {
    readonly type: "unsolicited";
    readonly peer: string;
    readonly kind: "key" | "refused";
    readonly reason: "wrong-id" | "other-device" | "not-encrypted" | "unauthenticated-part";
  };

export interface RequestOptions {
  /** How long to wait for the answer (default 120,000 ms: the holder's user must approve). */
  readonly timeoutMs?: number;
  readonly timers?: Timers;
  readonly random?: Random;
  readonly clock?: Clock;
  /** Replaces the default rule ({@link defaultIsAuthenticated}). */
  readonly isAuthenticated?: IsAuthenticated;
  /** The SasStore the SecureClient uses (for the default rule). */
  readonly store?: SasStore;
  /** The session's `established` facts when the caller started it (else we start it). */
  readonly established?: Established;
  readonly crypto?: ArchiveCrypto;
  readonly onEvent?: (e: RequestEvent) => void;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;

const defaultTimers: Timers = {
  set: (fn, ms) => setTimeout(fn, Math.max(0, Math.min(ms, 2 ** 31 - 1))),
  clear: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/**
 * New device: asks `device` (another resource of our account) for the archive key inside
 * the ESession with it. Without an active session we start one (client.startSession); with
 * one, pass its `established` facts (or an `isAuthenticated` that knows). The session must
 * be authenticated before anything is asked (else ArchiveError "not-authenticated"). A
 * `<key/>` is accepted only with the id of this request, from `device`, decrypted from that
 * session, and only if its bytes give the announced key name; anything else is ignored and
 * reported (`unsolicited`). Rejects with ArchiveError "refused" (`reason` on
 * {@link ArchiveKeyRefused}), "timeout", "not-authenticated" or "bad-format".
 */
export async function requestArchiveKey(client: SecureClient, deviceJid: string, o: RequestOptions = {}): Promise<ArchiveKey> {
  const device = parseFullJid(deviceJid);
  if (bareJid(device) !== bareJid(client.jid) || device === client.jid)
    throw new ArchiveError("not-authenticated", "the archive key is only requested from another device of the same account");
  const clock = o.clock ?? systemClock;
  const timers = o.timers ?? defaultTimers;
  const random = o.random ?? systemRandom;
  const watch = new SessionWatch(client, clock);
  try {
    if (o.established) watch.seed(o.established, clock.now());
    if (!client.session(device)?.isActive) {
      try {
        watch.seed(await client.startSession(device), clock.now());
      } catch {
        throw new ArchiveError("not-authenticated", "could not establish an encrypted session with the device");
      }
    }
    const session = client.session(device);
    if (!session?.isActive) throw new ArchiveError("not-authenticated", "no encrypted session with the device");
    const facts = watch.get(device);
    const ok = await (o.isAuthenticated ? o.isAuthenticated(device, facts) : defaultIsAuthenticated(client, device, facts, o.store));
    if (!ok) throw new ArchiveError("not-authenticated", "compare the SAS with the other device (or verify its key) first");
    return await exchange(client, device, session, toHex(random.bytes(16)), timers, o);
  } finally {
    watch.off();
  }
}

/** A refusal from the holder device, with its typed reason. */
export class ArchiveKeyRefused extends ArchiveError {
  constructor(readonly reason: RefusalReason | "other") {
    super("refused", `the other device refused: ${reason}`);
  }
}

function exchange(
  client: SecureClient,
  device: FullJid,
  session: NonNullable<ReturnType<SecureClient["session"]>>,
  id: string,
  timers: Timers,
  o: RequestOptions,
): Promise<ArchiveKey> {
  const crypto = o.crypto ?? nodeArchiveCrypto;
  const report = (e: RequestEvent): void => {
    try {
      o.onEvent?.(e);
    } catch {
      /* ignore */
    }
  };
  return new Promise<ArchiveKey>((resolve, reject) => {
    let done = false;
    const finish = (f: () => void): void => {
      if (done) return;
      done = true;
      off();
      timers.clear(timer);
      f();
    };
    const timer = timers.set(() => finish(() => reject(new ArchiveError("timeout", "the other device did not answer"))), o.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
    const off = client.on((e) => {
      if (done) return;
      if (e.type === "message" || e.type === "stanza") {
        const p = findKeyTransfer(e.stanza);
        if (!p || p.kind === "request") {
          const aside = e.unauthenticated.map(parseKeyTransfer).find((x) => x !== undefined && x.kind !== "request");
          if (aside) report({ type: "unsolicited", peer: e.peer, kind: aside.kind, reason: "unauthenticated-part" });
          return;
        }
        if (e.peer !== device) return report({ type: "unsolicited", peer: e.peer, kind: p.kind, reason: "other-device" });
        if (p.id !== id) return report({ type: "unsolicited", peer: e.peer, kind: p.kind, reason: "wrong-id" });
        // Decrypted from the very session we asked in (not a renegotiated or other one).
        if (client.session(device) !== session) return report({ type: "unsolicited", peer: e.peer, kind: p.kind, reason: "other-device" });
        if (p.kind === "refused") return finish(() => reject(new ArchiveKeyRefused(p.reason)));
        const raw = fromBase64(p.value);
        if (raw === undefined || raw.length !== 32) {
          if (raw) wipe(raw);
          return finish(() => reject(new ArchiveError("bad-format", "the other device sent a malformed key")));
        }
        const ak = archiveKeyFrom(raw, crypto);
        wipe(raw);
        if (p.name !== undefined && p.name !== ak.name) {
          wipe(ak.key);
          return finish(() => reject(new ArchiveError("bad-format", "the key does not match its name")));
        }
        finish(() => resolve(ak));
      } else if (e.type === "unprotected") {
        const p = findKeyTransfer(e.stanza);
        if (p && p.kind !== "request") report({ type: "unsolicited", peer: e.peer, kind: p.kind, reason: "not-encrypted" });
      } else if ((e.type === "terminated" || e.type === "failed") && e.peer === device) {
        finish(() => reject(new ArchiveError("not-authenticated", "the session with the other device ended")));
      }
    });
    client.send(device, payloadMessage({ kind: "request", id })).catch(() => finish(() => reject(new ArchiveError("not-authenticated", "the session with the other device ended"))));
  });
}
