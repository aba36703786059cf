/**
 * Message threads: ThreadID generation, reading and writing `<thread/>`, and the key that
 * identifies a stanza session.
 *
 * Spec: XEP-0201 v1.0 "Best Practices for Message Threads": section 3.2 (New Threads: a
 * ThreadID is newly generated for a new conversation), section 3.3 (Child Threads: the
 * 'parent' attribute), section 4 (Handling: the ThreadID is the session identifier).
 * RFC 6121 section 5.2.5: the value is opaque and only exact comparisons are made.
 * XEP-0155 v1.2 section 4.1: "The stanza MUST contain a <thread/> element ... where the
 * newly-generated ThreadID is unique to the proposed session".
 */
import { toHex } from "../core/bytes.js";
import type { Brand, FullJid, Random, ThreadId } from "../core/types.js";
import { el, type Element } from "../xml/index.js";

/** Random bytes in a new ThreadID: 160 bits, like the XEP-0201 example (40 hex digits). */
export const THREAD_ID_BYTES = 20;

/**
 * Longest ThreadID we accept from a peer. RFC 6121 sets no limit; a bound keeps hostile
 * input cheap (session tables are keyed by it). Longer values are treated as absent.
 */
export const MAX_THREAD_LENGTH = 1024;

/** Namespaces a `<thread/>` child may be in (the stanza's default namespace). */
const STANZA_NAMESPACES: readonly (string | undefined)[] = [undefined, "", "jabber:client", "jabber:server"];

/**
 * A new, unguessable ThreadID (XEP-0201 section 3.2): {@link THREAD_ID_BYTES} bytes from
 * the injected Random, lower-case hex (URL-safe, no whitespace, no XML escaping needed).
 */
export function newThreadId(random: Random): ThreadId {
  const b = random.bytes(THREAD_ID_BYTES);
  if (b.length !== THREAD_ID_BYTES) throw new RangeError("Random returned the wrong number of bytes");
  return toHex(b) as ThreadId;
}

/**
 * Checks a string received or configured as a ThreadID. Surrounding XML whitespace is
 * removed (the XEP-0201 example is pretty-printed; our own ids never contain whitespace);
 * empty or over-long values are rejected.
 */
export function asThreadId(s: string): ThreadId | undefined {
  const t = s.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, "");
  if (t.length === 0 || t.length > MAX_THREAD_LENGTH) return undefined;
  return t as ThreadId;
}

function threadElement(stanza: Element): Element | undefined {
  for (const c of stanza.children) {
    if (typeof c === "string" || c.name !== "thread") continue;
    if (STANZA_NAMESPACES.includes(c.getNS())) return c;
  }
  return undefined;
}

/** The stanza's ThreadID, or undefined if it has none (or an unusable one). */
export function getThread(stanza: Element): ThreadId | undefined {
  const t = threadElement(stanza);
  return t ? asThreadId(t.getText()) : undefined;
}

/** The 'parent' attribute of the stanza's `<thread/>` (XEP-0201 section 3.3). */
export function getThreadParent(stanza: Element): ThreadId | undefined {
  const p = threadElement(stanza)?.attrs.parent as unknown;
  return typeof p === "string" ? asThreadId(p) : undefined;
}

/**
 * Sets the stanza's `<thread/>`, replacing any existing one in place (all duplicates are
 * removed); appended when the stanza had none.
 */
export function setThread(stanza: Element, id: ThreadId, parent?: ThreadId): void {
  const t = el("thread", { parent }, id);
  t.parent = stanza;
  let placed = false;
  const kept: (Element | string)[] = [];
  for (const c of stanza.children) {
    if (typeof c !== "string" && c.name === "thread" && STANZA_NAMESPACES.includes(c.getNS())) {
      c.parent = null;
      if (!placed) {
        kept.push(t);
        placed = true;
      }
      continue;
    }
    kept.push(c);
  }
  if (!placed) kept.push(t);
  stanza.children = kept;
}

/**
 * Identifies one stanza session: XEP-0155 sessions are between two full JIDs (section 4.2:
 * "Both entities MUST assume the session is being established with the resource of the
 * contact that sends the reply") and tracked by ThreadID (XEP-0201 section 4.1).
 */
export type StanzaSessionKey = Brand<string, "StanzaSessionKey">;

/**
 * The key of the session (local full JID, peer full JID, thread). Unambiguous for any
 * strings (a JSON array); JIDs are compared as given, so callers pass the JIDs as the
 * server stamped them.
 */
export function sessionKey(local: FullJid, peer: FullJid, thread: ThreadId): StanzaSessionKey {
  return JSON.stringify([local, peer, thread]) as StanzaSessionKey;
}
