/**
 * The transport-agnostic stanza connection every layer above the adapters uses, the one
 * typed adapter error, and the small helpers both adapters share.
 *
 * Spec: RFC 6120 (XMPP Core) section 8 "XML Stanzas" (message, presence, iq; the 'from'
 * stamping of 8.1.2.1), section 8.3 "Stanza Errors" (error replies: 8.3.1 "an entity
 * that receives an error stanza MUST NOT respond with a further error"; 8.3.2 syntax;
 * 8.3.3.19 <service-unavailable/>), section 4.9 (stream errors end a connection, which
 * the adapters report as `closed`).
 *
 * Adapters implement {@link StanzaConnection}: the in-memory switchboard
 * (./switchboard.ts) and the @xmpp/client adapter (./xmpp-client.ts, TCP and RFC 7395
 * WebSocket). Stanzas are ltx Elements from src/xml; an adapter never hands the same
 * object to two parties.
 */
import type { FullJid } from "../core/types.js";
import { el, NS, type Element } from "../xml/index.js";

/** What the rest of the library needs from an XMPP session: send, receive, close. */
export interface StanzaConnection {
  /** Our bound full JID (RFC 6120 section 7, resource binding). */
  readonly jid: FullJid;
  /**
   * Sends a message, presence or iq stanza. The adapter adds only what the transport
   * needs (the server stamps 'from'). Rejects with {@link AdapterError} `closed` after
   * close() or once the transport is gone.
   */
  send(stanza: Element): Promise<void>;
  /**
   * Registers a handler for every inbound stanza (message, presence, iq); returns a
   * function that unsubscribes it. Stanzas that arrive before the first handler is
   * registered are buffered (bounded) and delivered to that first handler.
   */
  onStanza(handler: (stanza: Element) => void): () => void;
  /** Ends the session (an adapter that had sent presence sends unavailable first). */
  close(): Promise<void>;
}

export const ADAPTER_ERROR_CONDITIONS = ["connection-failed", "auth-failed", "timeout", "closed"] as const;
export type AdapterErrorCondition = (typeof ADAPTER_ERROR_CONDITIONS)[number];

/**
 * The one error class of the adapter layer. `message` never contains a password or any
 * other credential; `cause` may carry the transport's own error for debugging.
 */
export class AdapterError extends Error {
  override readonly name = "AdapterError";
  readonly condition: AdapterErrorCondition;
  constructor(condition: AdapterErrorCondition, detail?: string, options?: { cause?: unknown }) {
    super(detail === undefined ? condition : `${condition}: ${detail}`, options);
    this.condition = condition;
  }
}

export function isAdapterError(e: unknown): e is AdapterError {
  return e instanceof AdapterError;
}

/** A string attribute of `e`, or undefined (ltx types attribute values loosely). */
export function attrOf(e: Element, name: string): string | undefined {
  const v: unknown = e.attrs[name];
  return typeof v === "string" ? v : undefined;
}

/** RFC 6120 section 8.3.2 error types. */
export type StanzaErrorType = "auth" | "cancel" | "continue" | "modify" | "wait";

/** The stanza kinds of RFC 6120 section 8 (anything else is not a stanza). */
export function isStanza(e: Element): boolean {
  return e.name === "message" || e.name === "presence" || e.name === "iq";
}

/**
 * Whether RFC 6120 allows answering `stanza` with an error: never for an error stanza
 * (section 8.3.1), nor for an iq result (nothing waits for a reply to it).
 */
export function mayReplyWithError(stanza: Element): boolean {
  const type = attrOf(stanza, "type");
  if (type === "error") return false;
  if (stanza.name === "iq") return type === "get" || type === "set";
  return stanza.name === "message" || stanza.name === "presence";
}

/**
 * Builds the error reply to `stanza` (RFC 6120 section 8.3.1/8.3.2): same element name
 * and id, 'to' the original sender, 'from' the original recipient, type='error', and an
 * <error/> with the defined condition in urn:ietf:params:xml:ns:xmpp-stanzas. For iq the
 * payload is not echoed (the spec says MAY; not echoing keeps private payloads off the
 * wire).
 */
export function errorReply(
  stanza: Element,
  condition: string,
  type: StanzaErrorType = "cancel",
  opts: { from?: string; to?: string; text?: string } = {},
): Element {
  const to = opts.to ?? attrOf(stanza, "from");
  const from = opts.from ?? attrOf(stanza, "to");
  return el(
    stanza.name,
    { xmlns: NS.client, type: "error", id: attrOf(stanza, "id"), to, from },
    el(
      "error",
      { type },
      el(condition, { xmlns: NS.stanzas }),
      opts.text === undefined ? undefined : el("text", { xmlns: NS.stanzas }, opts.text),
    ),
  );
}

/** Handler fan-out shared by the adapters: subscribe, unsubscribe, buffer-until-first. */
export class StanzaFanout {
  private readonly handlers: Array<(stanza: Element) => void> = [];
  private buffer: Element[] | undefined = [];

  constructor(private readonly maxBuffered = 1000) {}

  subscribe(handler: (stanza: Element) => void): () => void {
    this.handlers.push(handler);
    const waiting = this.buffer;
    this.buffer = undefined;
    if (waiting !== undefined && waiting.length > 0) {
      // Never re-enter the caller of onStanza(); hand the backlog over right after it.
      queueMicrotask(() => {
        for (const s of waiting) if (this.handlers.includes(handler)) handler(s);
      });
    }
    return () => {
      const i = this.handlers.indexOf(handler);
      if (i !== -1) this.handlers.splice(i, 1);
    };
  }

  /**
   * Gives `make()`'s stanza to every handler (each gets its own object from `make`).
   * Every handler runs even if one throws; the first exception is then rethrown.
   */
  dispatch(make: () => Element): void {
    if (this.buffer !== undefined) {
      this.buffer.push(make());
      if (this.buffer.length > this.maxBuffered) this.buffer.shift();
      return;
    }
    let first: { error: unknown } | undefined;
    for (const h of [...this.handlers]) {
      try {
        h(make());
      } catch (error) {
        first ??= { error };
      }
    }
    if (first !== undefined) throw first.error;
  }

  get size(): number {
    return this.handlers.length;
  }
}
