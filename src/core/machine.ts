/**
 * The sans-IO shape shared by every protocol core (after quinn-proto): inputs go in
 * through `handle*` methods, outputs (stanzas to send, events for the application) are
 * drained with `poll()`, and `nextDeadline()` says when the wiring must call `onTimer`.
 *
 * Spec: none; see ../shared/docs/architecture.md "Cores are sans-IO state machines".
 */
import type { Element } from "../xml/index.js";

export type Output<E> = { readonly kind: "send"; readonly stanza: Element } | { readonly kind: "event"; readonly event: E };

/** FIFO of outputs a core produced; the wiring drains it after each input. */
export class Outbox<E> {
  private readonly queue: Output<E>[] = [];
  send(stanza: Element): void {
    this.queue.push({ kind: "send", stanza });
  }
  emit(event: E): void {
    this.queue.push({ kind: "event", event });
  }
  poll(): Output<E> | undefined {
    return this.queue.shift();
  }
  drain(): Output<E>[] {
    return this.queue.splice(0, this.queue.length);
  }
  get size(): number {
    return this.queue.length;
  }
}
