/**
 * Wiring of the archive to a SecureClient through its public API only: its events
 * (established, message, terminated, failed) feed the {@link ArchiveManager}, its send is
 * wrapped so that what we send in a session is archived after it left, and the manager's
 * store operations are written, in order, to every configured store (local cache and
 * server).
 *
 * Spec: XEP-0136 v1.3.1 section 3.2 (the negotiated 'logging' governs both directions)
 * and section 5 (manual archiving); XEP-0155 v1.2 section 8 ('logging'). See ./manager.ts.
 */
import type { SecureClient } from "../client/secure-client.js";
import type { Clock } from "../core/types.js";
import { systemClock } from "../crypto/node.js";
import type { Element } from "../xml/index.js";
import type { ArchiveEvent, ArchiveManager } from "./manager.js";
import type { ArchiveStore } from "./store.js";
import { ArchiveError } from "./errors.js";

export type AttachmentEvent = ArchiveEvent | { readonly type: "store-failed"; readonly peer: string; readonly store: number; readonly error: ArchiveError };

export interface AttachOptions {
  readonly manager: ArchiveManager;
  /** Written in order; e.g. [local SQLite cache, server store]. */
  readonly stores: readonly ArchiveStore[];
  readonly clock?: Clock;
  readonly onEvent?: (e: AttachmentEvent) => void;
}

export interface ArchiveAttachment {
  /** Resolves when every store operation issued so far has been attempted. */
  flushed(): Promise<void>;
  /** Stops archiving and restores the client's send. */
  detach(): void;
}

function toArchiveError(e: unknown): ArchiveError {
  if (e instanceof ArchiveError) return e;
  const c = e instanceof Error && "condition" in e ? String((e as { condition: unknown }).condition) : "error";
  return new ArchiveError("server", c);
}

export function attachArchive(client: SecureClient, o: AttachOptions): ArchiveAttachment {
  const clock = o.clock ?? systemClock;
  let writes: Promise<void> = Promise.resolve();
  let attached = true;

  const pump = (): void => {
    for (const e of o.manager.drain()) {
      o.onEvent?.(e);
      if (e.type !== "store") continue;
      const op = e.op;
      writes = writes.then(async () => {
        for (const [i, s] of o.stores.entries()) {
          try {
            await s.save(op.chat);
          } catch (err) {
            o.onEvent?.({ type: "store-failed", peer: e.peer, store: i, error: toArchiveError(err) });
          }
        }
      });
    }
  };

  const off = client.on((e) => {
    if (!attached) return;
    switch (e.type) {
      case "established":
        o.manager.sessionEstablished(e.peer, e.thread, e.options.logging, clock.now());
        break;
      case "message":
        if (e.body !== undefined) o.manager.message(e.peer, "from", e.body, clock.now());
        break;
      case "terminated":
      case "failed":
        o.manager.sessionEnded(e.peer);
        break;
      default:
        return;
    }
    pump();
  });

  // Wrap send: what we sent in a session is archived once it left (never if it was refused).
  const original = client.send.bind(client);
  const wrapped = async (peer: string, stanza: Element): Promise<void> => {
    await original(peer, stanza);
    if (!attached || stanza.name !== "message") return;
    const body = stanza.getChildText("body");
    if (body === null) return;
    o.manager.message(peer, "to", body, clock.now());
    pump();
  };
  client.send = wrapped;

  return {
    flushed: () => writes,
    detach() {
      if (!attached) return;
      attached = false;
      off();
      if (client.send === wrapped) client.send = original;
      o.manager.close();
    },
  };
}
