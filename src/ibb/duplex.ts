/**
 * Node wiring for XEP-0047 in-band bytestreams: an endpoint that routes stanzas of a
 * StanzaConnection to IbbSession cores, and a `stream.Duplex` per bytestream (what
 * `tls.TLSSocket` and the end-to-end XML stream sit on).
 *
 * Spec: XEP-0047 v2.0.1 sections 2.1-2.3 (the cores in ./session.ts implement them);
 * section 2.2 "Because the session ID is unknown, the recipient returns an
 * item-not-found error" and section 2.3 (close of an unknown session: item-not-found)
 * are answered here, for stanzas no session claims; section 2.1 not-acceptable when the
 * application does not want an offered bytestream.
 *
 * Backpressure: Duplex writes complete while the core's unacknowledged bytes stay under
 * `highWaterBytes`; when the Duplex's readable buffer is full the core holds back its iq
 * acknowledgements (see ./session.ts "Flow control"). Timers and randomness live here,
 * never in the core.
 */
import { Duplex } from "node:stream";
import { toHex } from "../core/bytes.js";
import type { Clock, FullJid, Random } from "../core/types.js";
import { systemClock, systemRandom } from "../crypto/node.js";
import { attrOf, errorReply, mayReplyWithError, type StanzaConnection } from "../adapters/connection.js";
import type { Element } from "../xml/index.js";
import { ibbChild, parseIbb, type IbbStanzaKind } from "./codec.js";
import { IbbError } from "./errors.js";
import { IbbSession, type IbbEvent, type IbbSessionOptions } from "./session.js";

export interface IbbEndpointOptions {
  readonly random?: Random;
  readonly clock?: Clock;
  /** Largest block-size accepted for incoming opens. Default 8192 (slixmpp's maximum too). */
  readonly maxBlockSize?: number;
  /** Max unacknowledged data iqs per stream. Default 8. */
  readonly window?: number;
  readonly iqTimeoutMs?: number;
}

export interface IbbOpenOptions {
  readonly sid?: string;
  /** Default 4096 (XEP-0047 examples and slixmpp's default). */
  readonly blockSize?: number;
  readonly stanza?: IbbStanzaKind;
  /** Jingle (XEP-0261) fixed the block-size: do not retry smaller. */
  readonly exactBlockSize?: boolean;
}

export interface IbbOffer {
  readonly peer: FullJid;
  readonly sid: string;
  readonly blockSize: number;
  readonly stanza: IbbStanzaKind;
}

type WriteCallback = (error: Error | null | undefined) => void;

/** One open bytestream as a Node Duplex. `end()` flushes then sends <close/>. */
export class IbbStream extends Duplex {
  private timer: NodeJS.Timeout | undefined;
  private pendingWrite: (() => void) | undefined;
  private pendingFinal: ((e?: Error | null) => void) | undefined;
  private openWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private isOpen = false;
  private ended = false;
  private localFirst = false;
  /** Bytes this stream sent and received (for benchmarks and progress). */
  bytesWritten_ = 0;
  bytesRead_ = 0;

  constructor(
    readonly core: IbbSession,
    private readonly endpoint: IbbEndpoint,
    private readonly highWaterBytes: number,
  ) {
    super({ allowHalfOpen: false });
  }

  private holds = 0;
  /** The clean close (autoDestroy after 'end' and 'finish') waiting for the holds to go. */
  private heldClose: (() => void) | undefined;
  private tlsCarrier = false;
  private closedByPeer = false;

  /**
   * Prepares the stream to carry a TLS socket (node:tls over this Duplex, as XTLS does);
   * returns the function that releases it. Until released, the stream does not emit
   * 'close' after its clean end: the TLS socket takes its transport's 'close' as its own
   * and would drop the plaintext its reader has not taken yet. And once the peer has
   * closed the bytestream (XEP-0047 section 2.3 closes both directions), late writes are
   * dropped instead of failing: they are the TLS layer answering the peer's close_notify
   * with its own, which has nowhere to go. Errors still close the stream at once.
   */
  carryTls(): () => void {
    this.tlsCarrier = true;
    this.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
      if (this.holds === 0 && this.heldClose !== undefined) {
        const close = this.heldClose;
        this.heldClose = undefined;
        close();
      }
    };
  }

  override write(chunk: unknown, encoding?: BufferEncoding | WriteCallback, cb?: WriteCallback): boolean {
    if (this.tlsCarrier && this.closedByPeer) {
      const done = typeof encoding === "function" ? encoding : cb;
      if (done !== undefined) process.nextTick(done, null);
      return true;
    }
    if (typeof encoding === "function") return super.write(chunk, encoding);
    if (encoding === undefined) return super.write(chunk, cb);
    return super.write(chunk, encoding, cb);
  }

  /**
   * True when our side had asked to end the bytestream (`end()`) before it closed; false
   * when the peer's <close/> came first (or the stream is still open). A reader that needs
   * to tell a truncation by the peer from its own close (XTLS) looks at this.
   */
  get endedLocallyFirst(): boolean {
    return this.localFirst;
  }

  get sid(): string {
    return this.core.sid;
  }
  get peer(): FullJid {
    return this.core.peer;
  }
  get blockSize(): number | undefined {
    return this.core.blockSize;
  }

  /** Resolves once the bytestream is open (XEP-0047 section 2.1 result received or sent). */
  opened(): Promise<void> {
    if (this.isOpen) return Promise.resolve();
    if (this.destroyed || this.ended) return Promise.reject(new IbbError("closed", "bytestream closed"));
    return new Promise((resolve, reject) => this.openWaiters.push({ resolve, reject }));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    try {
      this.core.write(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.bytesWritten_ += chunk.byteLength;
    } catch (e) {
      cb(e instanceof Error ? e : new IbbError("closed"));
      return;
    }
    this.endpoint.pump(this);
    if (this.core.bufferedAmount <= this.highWaterBytes) cb();
    else this.pendingWrite = () => cb();
  }

  override _final(cb: (e?: Error | null) => void): void {
    if (this.core.stateName === "closed") {
      cb();
      return;
    }
    this.pendingFinal = cb;
    this.core.close();
    this.endpoint.pump(this);
  }

  override _read(): void {
    this.core.resumeReading();
    this.endpoint.pump(this);
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    if (this.core.stateName !== "closed") {
      this.core.abort();
      this.endpoint.pump(this);
    }
    this.clearTimer();
    this.endpoint.forget(this);
    for (const w of this.openWaiters.splice(0)) w.reject(err ?? new IbbError("closed", "bytestream closed"));
    // The clean close (no error, both sides ended: Node's autoDestroy) of a stream that
    // carries TLS waits for the release; an abort does not.
    if (err === null && this.holds > 0 && this.readableEnded && this.writableFinished) this.heldClose = () => cb(null);
    else cb(err);
  }

  /** Called by the endpoint with each event the core produced. */
  onEvent(e: IbbEvent): void {
    switch (e.type) {
      case "opened":
        this.isOpen = true;
        for (const w of this.openWaiters.splice(0)) w.resolve();
        return;
      case "data":
        this.bytesRead_ += e.data.length;
        if (!this.push(Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength))) this.core.pauseReading();
        return;
      case "drain":
        if (this.pendingWrite !== undefined && this.core.bufferedAmount <= this.highWaterBytes) {
          const w = this.pendingWrite;
          this.pendingWrite = undefined;
          w();
        }
        return;
      case "closed": {
        this.ended = true;
        this.localFirst = e.by === "local" || this.writableEnded || this.pendingFinal !== undefined;
        this.closedByPeer = !this.localFirst;
        this.clearTimer();
        this.endpoint.forget(this);
        for (const w of this.openWaiters.splice(0)) w.reject(new IbbError("closed", "bytestream closed before it opened"));
        this.push(null);
        const f = this.pendingFinal;
        this.pendingFinal = undefined;
        if (f !== undefined) f();
        else if (e.by === "remote") {
          // The peer closed both directions (XEP-0047 is one session for both): finish ours.
          const w = this.pendingWrite;
          this.pendingWrite = undefined;
          if (w !== undefined) w();
          this.end();
        }
        return;
      }
      case "failed":
        this.ended = true;
        this.clearTimer();
        this.endpoint.forget(this);
        if (!this.isOpen) {
          // Nobody holds this stream yet: report through opened(), not an 'error' event.
          for (const w of this.openWaiters.splice(0)) w.reject(e.error);
          this.destroy();
        } else this.destroy(e.error);
        return;
    }
  }

  /** Re-arms the one timer on the core's next deadline. */
  schedule(clock: Clock): void {
    this.clearTimer();
    const d = this.core.nextDeadline();
    if (d === undefined) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.core.onTimer(clock.now());
        this.endpoint.pump(this);
      },
      Math.max(0, d - clock.now()),
    );
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** Routes one connection's IBB stanzas; opens and accepts bytestreams. */
export class IbbEndpoint {
  private readonly streams = new Set<IbbStream>();
  /** Sids the application announced (XEP-0261 Jingle) and waits for. */
  private readonly expected = new Map<string, { resolve: (s: IbbStream) => void; stream: IbbStream }>();
  private incomingHandler: ((offer: IbbOffer) => boolean) | undefined;
  private readonly incomingStreams: Array<(s: IbbStream) => void> = [];
  private readonly random: Random;
  private readonly clock: Clock;
  private readonly unsubscribe: () => void;
  private detached = false;

  constructor(
    readonly connection: StanzaConnection,
    private readonly opts: IbbEndpointOptions = {},
  ) {
    this.random = opts.random ?? systemRandom;
    this.clock = opts.clock ?? systemClock;
    this.unsubscribe = connection.onStanza((s) => this.dispatch(s));
  }

  /**
   * Decides on bytestreams offered with <open/> for sids nobody expects: return true to
   * accept; the accepted stream then goes to every `onStream` handler. Without a handler
   * every such offer gets not-acceptable (XEP-0047 section 2.1).
   */
  onOffer(decide: (offer: IbbOffer) => boolean): void {
    this.incomingHandler = decide;
  }

  onStream(handler: (s: IbbStream) => void): void {
    this.incomingStreams.push(handler);
  }

  /** Opens a bytestream to `peer` (we are the XEP-0047 initiator). */
  async open(peer: FullJid, o: IbbOpenOptions = {}): Promise<IbbStream> {
    const stream = this.create({
      self: this.connection.jid,
      peer,
      sid: o.sid ?? `s${toHex(this.random.bytes(8))}`,
      role: "initiator",
      blockSize: o.blockSize ?? 4096,
      stanza: o.stanza ?? "iq",
      ...(o.exactBlockSize === undefined ? {} : { exactBlockSize: o.exactBlockSize }),
    });
    stream.core.open();
    this.pump(stream);
    await stream.opened();
    return stream;
  }

  /**
   * Waits for the peer's <open/> for a sid negotiated elsewhere (XEP-0261: Jingle
   * replaces the offer, the initiator still sends <open/> with the negotiated size).
   */
  expect(peer: FullJid, sid: string, blockSize: number): Promise<IbbStream> {
    const stream = this.create({ self: this.connection.jid, peer, sid, role: "responder", blockSize, exactBlockSize: true });
    return new Promise((resolve, reject) => {
      this.expected.set(`${peer} ${sid}`, { resolve, stream });
      stream.opened().then(
        () => resolve(stream),
        (e: unknown) => reject(e instanceof Error ? e : new IbbError("closed")),
      );
    });
  }

  /** Stops routing; open streams are destroyed. */
  detach(): void {
    if (this.detached) return;
    this.detached = true;
    this.unsubscribe();
    // Streams nobody listens to (not yet handed out) end without an 'error' event.
    for (const s of [...this.streams]) s.destroy(s.listenerCount("error") > 0 ? new IbbError("closed", "endpoint detached") : undefined);
  }

  /** Gives up waiting for an expected bytestream (the negotiation that announced it ended). */
  cancel(peer: FullJid, sid: string): void {
    const key = `${peer} ${sid}`;
    const e = this.expected.get(key);
    if (e === undefined) return;
    this.expected.delete(key);
    e.stream.destroy();
  }

  /** @internal */
  forget(stream: IbbStream): void {
    this.streams.delete(stream);
    const key = `${stream.peer} ${stream.sid}`;
    if (this.expected.get(key)?.stream === stream) this.expected.delete(key);
  }

  /** @internal Drains the core's outbox: stanzas to the connection, events to the stream. */
  pump(stream: IbbStream): void {
    for (;;) {
      const out = stream.core.outbox.poll();
      if (out === undefined) break;
      if (out.kind === "send") {
        this.connection.send(out.stanza).catch(() => {
          stream.core.connectionLost();
          this.pump(stream);
        });
      } else stream.onEvent(out.event);
    }
    if (!stream.destroyed) stream.schedule(this.clock);
  }

  private create(o: Omit<IbbSessionOptions, "random" | "clock">): IbbStream {
    const core = new IbbSession({
      ...o,
      random: this.random,
      clock: this.clock,
      ...(this.opts.window === undefined ? {} : { window: this.opts.window }),
      ...(this.opts.iqTimeoutMs === undefined ? {} : { iqTimeoutMs: this.opts.iqTimeoutMs }),
    });
    const high = Math.max(o.blockSize * (this.opts.window ?? 8), 16 * 1024);
    const stream = new IbbStream(core, this, high);
    this.streams.add(stream);
    return stream;
  }

  private dispatch(stanza: Element): void {
    if (this.detached) return;
    for (const s of [...this.streams]) {
      if (s.core.handleStanza(stanza)) {
        this.pump(s);
        return;
      }
    }
    const child = ibbChild(stanza);
    if (child === undefined || attrOf(stanza, "type") === "error" || attrOf(stanza, "type") === "result") return;
    const p = parseIbb(child);
    const from = attrOf(stanza, "from");
    if (p.kind === "open" && stanza.name === "iq" && from !== undefined && from.includes("/")) {
      const offer: IbbOffer = { peer: from as FullJid, sid: p.sid, blockSize: p.blockSize, stanza: p.stanza };
      if (this.incomingHandler?.(offer) === true) {
        const stream = this.create({
          self: this.connection.jid,
          peer: offer.peer,
          sid: offer.sid,
          role: "responder",
          blockSize: this.opts.maxBlockSize ?? 8192,
        });
        stream.core.handleStanza(stanza);
        this.pump(stream);
        if (stream.core.stateName === "open") for (const h of this.incomingStreams) h(stream);
        else stream.destroy();
        return;
      }
      void this.connection.send(errorReply(stanza, "not-acceptable", "cancel")).catch(() => undefined);
      return;
    }
    // Section 2.2 / 2.3: data or close for an unknown session.
    if (mayReplyWithError(stanza) && stanza.name === "iq")
      void this.connection.send(errorReply(stanza, "item-not-found", "cancel")).catch(() => undefined);
  }
}
