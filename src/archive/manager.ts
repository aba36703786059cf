/**
 * The archive manager: a sans-IO core that is told "session established with options X",
 * "message sent/received in that session" and "session ended", and emits the store
 * operations that keep an encrypted archive of sessions whose negotiated 'logging' allows
 * it, and nothing at all for the others.
 *
 * Spec: XEP-0155 v1.2 section 8 ('logging': "may" = the receiving party MAY log messages,
 * "mustnot" = MUST NOT); XEP-0136 v1.3.1 section 3.2: "If a Stanza Session Negotiation
 * agreed to enable OTR then the clients MUST NOT allow messages sent in *either* direction
 * to be archived in any way"; section 5 (manual archiving: a collection per conversation,
 * identified by 'with' + 'start', 'thread' = the XEP-0201 thread of the session; 5.3
 * absolute 'utc' times); section 6: with ESessions "use an archiving method other than
 * automatic, since ESession decryption keys are short-lived" (so we archive the plaintext
 * we sent or decrypted, re-encrypted under the user's archive key, never under session
 * keys). XEP-0241 v0.1 section 2 (encrypted collections: EncryptedData + EncryptedKey;
 * Security Considerations: no 'subject', which would stay in the clear).
 *
 * Fail closed: a message for a peer whose session options we did not see, or whose
 * 'logging' is anything but "may", is never archived (not even encrypted, not even
 * buffered). Plaintext exists here only for the duration of one call.
 */
import { Outbox } from "../core/machine.js";
import { assertNever, type Random } from "../core/types.js";
import { wipe } from "../core/bytes.js";
import type { Chat, Direction } from "./codec.js";
import { type ArchiveCrypto, type ArchiveKey, type DataKey, encryptItems, newDataKey, nodeArchiveCrypto, wrapDataKey } from "./crypto.js";

/** A store operation: append these encrypted items to the collection (XEP-0136 `<save/>`). */
export interface SaveOp {
  readonly kind: "save";
  readonly chat: Chat;
}

export type ArchiveEvent =
  /** The session's logging allows archiving: its collection is being recorded. */
  | { readonly type: "recording"; readonly peer: string; readonly with: string; readonly start: string }
  /** The session is off the record ('logging' is not "may"): nothing of it is stored. */
  | { readonly type: "off-the-record"; readonly peer: string; readonly logging: string }
  /** Store this (already encrypted) operation. */
  | { readonly type: "store"; readonly peer: string; readonly op: SaveOp }
  /** A message was not archived, and why. */
  | { readonly type: "not-archived"; readonly peer: string; readonly reason: "off-the-record" | "no-session" };

export interface ArchiveManagerOptions {
  readonly key: ArchiveKey;
  readonly random: Random;
  readonly crypto?: ArchiveCrypto;
}

type SessionRecord =
  | { readonly kind: "off-the-record"; readonly thread: string; readonly logging: string }
  | { readonly kind: "recording"; readonly thread: string; readonly with: string; readonly start: string; readonly dataKey: DataKey };

/** XEP-0082 DateTime in UTC with milliseconds (unique enough for 'start'). */
export function dateTime(ms: number): string {
  return new Date(ms).toISOString();
}

/** Only the XEP-0155 value "may" allows logging; anything else (mustnot, unknown) does not. */
export function loggingAllowed(logging: string): boolean {
  return logging === "may";
}

export class ArchiveManager {
  private readonly out = new Outbox<ArchiveEvent>();
  private readonly sessions = new Map<string, SessionRecord>();
  private readonly crypto: ArchiveCrypto;

  constructor(private readonly o: ArchiveManagerOptions) {
    this.crypto = o.crypto ?? nodeArchiveCrypto;
  }

  /** A session with `peer` was established (or renegotiated) with this 'logging' value. */
  sessionEstablished(peer: string, thread: string, logging: string, now: number): void {
    this.sessionEnded(peer);
    if (!loggingAllowed(logging)) {
      this.sessions.set(peer, { kind: "off-the-record", thread, logging });
      this.out.emit({ type: "off-the-record", peer, logging });
      return;
    }
    // A fresh data key per collection (XEP-0241 2), wrapped under the archive key when stored.
    const rec = { kind: "recording" as const, thread, with: peer, start: dateTime(now), dataKey: newDataKey(this.o.random) };
    this.sessions.set(peer, rec);
    this.out.emit({ type: "recording", peer, with: rec.with, start: rec.start });
  }

  /** The session with `peer` ended: its data key is destroyed; later messages are not archived. */
  sessionEnded(peer: string): void {
    const s = this.sessions.get(peer);
    if (s?.kind === "recording") wipe(s.dataKey.key);
    this.sessions.delete(peer);
  }

  /** A message body we sent (`to`) or received (`from`) in the session with `peer`. */
  message(peer: string, direction: Direction, body: string, now: number): void {
    const s = this.sessions.get(peer);
    if (!s) {
      this.out.emit({ type: "not-archived", peer, reason: "no-session" });
      return;
    }
    switch (s.kind) {
      case "off-the-record":
        this.out.emit({ type: "not-archived", peer, reason: "off-the-record" });
        return;
      case "recording": {
        const data = encryptItems([{ kind: direction, utc: dateTime(now), bodies: [body] }], s.dataKey, this.o.random, this.crypto);
        // Every save carries the wrapped data key: stores keep one copy (XEP-0241: "SHOULD
        // NOT resend" applies to what is stored), and a lost first save cannot orphan data.
        const key = wrapDataKey(s.dataKey, this.o.key, this.crypto);
        const chat: Chat = {
          with: s.with,
          start: s.start,
          thread: s.thread,
          crypt: true,
          items: [
            { kind: "encrypted-key", key },
            { kind: "encrypted-data", data },
          ],
        };
        this.out.emit({ type: "store", peer, op: { kind: "save", chat } });
        return;
      }
      default:
        assertNever(s, "session record");
    }
  }

  /** Whether messages with `peer` are being archived now. */
  isRecording(peer: string): boolean {
    return this.sessions.get(peer)?.kind === "recording";
  }

  drain(): ArchiveEvent[] {
    return this.out.drain().flatMap((o) => (o.kind === "event" ? [o.event] : []));
  }

  /** Forgets every session and destroys the data keys. */
  close(): void {
    for (const p of [...this.sessions.keys()]) this.sessionEnded(p);
  }
}
