/**
 * One XEP-0047 in-band bytestream as a sans-IO state machine: stanzas, commands and
 * timer ticks in; stanzas to send and events out through an Outbox.
 *
 * Spec: XEP-0047 v2.0.1 (In-Band Bytestreams)
 * - 2.1 Creating: the initiator sends <open/>; the responder answers result, or
 *   resource-constraint ("would prefer a smaller block-size"; we retry with half the
 *   size down to `minBlockSize`, unless the size was fixed by Jingle, XEP-0261 v1.0
 *   section 2 "the initiator MUST use the negotiated values"), or not-acceptable.
 * - 2.2 Sending: "MUST NOT be larger than the 'block-size'"; 'seq' "starts at 0 ... MUST
 *   be incremented for each packet ... after value 65535 the 'seq' MUST start again at
 *   0"; for iq "if the packet can be processed then the recipient MUST reply with an IQ
 *   stanza of type result"; errors item-not-found / unexpected-request / bad-request; "Upon
 *   receiving an error related to the data packet, the sender MUST close the bytestream";
 *   "If an out-of-sequence packet is received ... The recipient MUST NOT process the data
 *   of such an out-of-sequence packet, nor any that follow it ... MUST close the
 *   bytestream".
 * - 2.3 Closing: <close/> answered by result (or item-not-found); "In either case, both
 *   parties MUST consider the bytestream to be closed".
 * - 3 Bidirectionality: independent 'seq' per direction.
 * - 4 Message stanzas: allowed; "the 'id' attribute SHOULD be used with message stanzas"
 *   (we always set it, so an error reply can be matched).
 *
 * Flow control (the reason XEP-0047 2.1 RECOMMENDS iq): outbound, at most `window` data
 * iqs are unacknowledged at a time; the rest waits in a queue and `bufferedAmount` lets
 * the wiring apply backpressure. Inbound, while the application is not reading
 * (`pauseReading()`), acknowledgements are held back, so a well-behaved sender slows down
 * too. In message mode there are no acknowledgements: chunks go out at once.
 *
 * Limits (../limits.ts, docs/security.md "Limits"; XEP-0210 v0.3 section 4.4): what a peer
 * makes us hold while reading is paused (the data not read plus the acknowledgements held
 * back) is at most `ibbWindowBytes`; the packet that would exceed it is refused with
 * <resource-constraint/> of type 'wait' (RFC 6120 8.3.3.18) and the bytestream fails with
 * IbbError("resource-constraint") (XEP-0047 2.2: the sender, on the error, closes too). An
 * <open/> whose block-size exceeds `maxIbbBlockSize` is refused like one over our own
 * size (section 2.1, resource-constraint).
 */
import { assertNever, type Clock, type FullJid, type Random } from "../core/types.js";
import { toHex } from "../core/bytes.js";
import { Outbox } from "../core/machine.js";
import { errorReply, attrOf } from "../adapters/connection.js";
import type { Element } from "../xml/index.js";
import {
  SEQ_MODULUS,
  closeElement,
  dataElement,
  errorCondition,
  ibbChild,
  iqResult,
  iqSet,
  messageWith,
  openElement,
  parseIbb,
  type IbbStanzaKind,
} from "./codec.js";
import { IbbError, isIbbCondition, type IbbCondition } from "./errors.js";
import { getLimits } from "../limits.js";

export type IbbRole = "initiator" | "responder";

export interface IbbSessionOptions {
  readonly self: FullJid;
  readonly peer: FullJid;
  readonly sid: string;
  readonly role: IbbRole;
  /**
   * Initiator: the block-size to propose. Responder: the largest block-size accepted
   * (or, with `exactBlockSize`, the only one: XEP-0261 v1.0 section 2).
   */
  readonly blockSize: number;
  readonly stanza?: IbbStanzaKind;
  readonly random: Random;
  readonly clock: Clock;
  /** Max unacknowledged data iqs. Default 8. */
  readonly window?: number;
  /** How long to wait for any iq reply. Default 30,000 ms. */
  readonly iqTimeoutMs?: number;
  /** Initiator: retry smaller on resource-constraint, down to this size. Default 512. */
  readonly minBlockSize?: number;
  /** Initiator: never retry smaller (Jingle fixed the size). Responder: require equality. */
  readonly exactBlockSize?: boolean;
}

export type IbbEvent =
  | { readonly type: "opened"; readonly blockSize: number; readonly stanza: IbbStanzaKind }
  | { readonly type: "data"; readonly data: Uint8Array }
  /** Outbound bytes were acknowledged (or sent, in message mode): `bufferedAmount` fell. */
  | { readonly type: "drain" }
  | { readonly type: "closed"; readonly by: "local" | "remote" }
  | { readonly type: "failed"; readonly error: IbbError };

interface Pending {
  readonly id: string;
  readonly deadline: number;
  readonly bytes: number;
}

interface OpenData {
  readonly blockSize: number;
  readonly stanza: IbbStanzaKind;
  sendSeq: number;
  recvSeq: number;
  readonly queue: Uint8Array[];
  queuedBytes: number;
  readonly inflight: Map<string, Pending>;
  /** Acks held back while reading is paused (iq ids). */
  readonly heldAcks: string[];
  /** What we hold since reading was paused: data bytes delivered unread plus held ack ids. */
  heldBytes: number;
  /** close() was asked for: send <close/> once everything is acknowledged. */
  endRequested: boolean;
  /** The peer's <close/> iq id, answered once our outbound data is flushed (section 2.3). */
  remoteCloseId: string | undefined;
  /** Ids of recent data messages (message mode), to match error replies. */
  readonly messageIds: Set<string>;
}

type State =
  | { readonly name: "idle" }
  | { readonly name: "awaiting-open-result"; readonly id: string; readonly deadline: number; readonly blockSize: number }
  | { readonly name: "awaiting-open" }
  | ({ readonly name: "open" } & OpenData)
  | ({ readonly name: "awaiting-close-result"; readonly id: string; readonly deadline: number } & OpenData)
  | { readonly name: "closed" };

export class IbbSession {
  readonly outbox = new Outbox<IbbEvent>();
  private state: State;
  private readonly window: number;
  private readonly iqTimeoutMs: number;
  private readonly minBlockSize: number;
  private readonly stanzaKind: IbbStanzaKind;
  private paused = false;

  constructor(private readonly opts: IbbSessionOptions) {
    if (!Number.isInteger(opts.blockSize) || opts.blockSize < 1 || opts.blockSize > 65535)
      throw new RangeError("block-size must be 1..65535 (XEP-0047 section 2.1)");
    this.window = opts.window ?? 8;
    this.iqTimeoutMs = opts.iqTimeoutMs ?? 30_000;
    this.minBlockSize = opts.minBlockSize ?? 512;
    this.stanzaKind = opts.stanza ?? "iq";
    this.state = opts.role === "initiator" ? { name: "idle" } : { name: "awaiting-open" };
  }

  get sid(): string {
    return this.opts.sid;
  }
  get peer(): FullJid {
    return this.opts.peer;
  }
  get stateName(): State["name"] {
    return this.state.name;
  }
  get blockSize(): number | undefined {
    return this.state.name === "open" || this.state.name === "awaiting-close-result" ? this.state.blockSize : undefined;
  }
  /** Bytes written but not yet acknowledged (queued + in flight). */
  get bufferedAmount(): number {
    const s = this.state;
    if (s.name !== "open" && s.name !== "awaiting-close-result") return 0;
    let n = s.queuedBytes;
    for (const p of s.inflight.values()) n += p.bytes;
    return n;
  }

  // ---- commands ----

  /** Initiator: sends <open/> (XEP-0047 section 2.1). */
  open(): void {
    if (this.state.name !== "idle") return;
    this.sendOpen(this.opts.blockSize);
  }

  /**
   * Queues bytes; they are split into blocks of at most the negotiated block-size. A
   * queued (not yet sent) block that is not full is topped up first, so writes that do
   * not align with the block-size (a TLS record is 16,406 bytes: two 8 KiB blocks and a
   * 22-byte one) do not spend a whole iq of the window on a sliver.
   */
  write(bytes: Uint8Array): void {
    const s = this.state;
    if (s.name !== "open" || s.endRequested) throw new IbbError("closed", "bytestream is not open for writing");
    if (bytes.length === 0) return;
    const last = s.queue[s.queue.length - 1];
    if (last !== undefined && last.length < s.blockSize) {
      const take = Math.min(s.blockSize - last.length, bytes.length);
      const merged = new Uint8Array(last.length + take);
      merged.set(last);
      merged.set(bytes.subarray(0, take), last.length);
      s.queue[s.queue.length - 1] = merged;
      s.queuedBytes += take;
      bytes = bytes.subarray(take);
    }
    for (let o = 0; o < bytes.length; o += s.blockSize) {
      const chunk = bytes.subarray(o, Math.min(bytes.length, o + s.blockSize));
      s.queue.push(chunk);
      s.queuedBytes += chunk.length;
    }
    this.pump(s);
  }

  /** Graceful close: flushes what was written, then sends <close/> (section 2.3). */
  close(): void {
    const s = this.state;
    switch (s.name) {
      case "idle":
      case "awaiting-open":
        this.state = { name: "closed" };
        this.outbox.emit({ type: "closed", by: "local" });
        return;
      case "awaiting-open-result":
        // The peer may still answer result; a later close of an unknown sid is harmless.
        this.state = { name: "closed" };
        this.outbox.send(iqSet(this.opts.peer, this.newId(), closeElement(this.opts.sid)));
        this.outbox.emit({ type: "closed", by: "local" });
        return;
      case "open":
        s.endRequested = true;
        this.pump(s);
        return;
      case "awaiting-close-result":
      case "closed":
        return;
      default:
        assertNever(s, "ibb state");
    }
  }

  /** Abort without flushing: sends <close/> at once, drops queued data. */
  abort(): void {
    const s = this.state;
    if (s.name === "open") {
      s.queue.length = 0;
      s.queuedBytes = 0;
      s.endRequested = true;
      this.sendClose(s);
    } else this.close();
  }

  /** Backpressure from the reader: hold iq acknowledgements until resumeReading(). */
  pauseReading(): void {
    this.paused = true;
  }

  resumeReading(): void {
    this.paused = false;
    const s = this.state;
    if (s.name === "open" || s.name === "awaiting-close-result") {
      s.heldBytes = 0;
      for (const id of s.heldAcks.splice(0)) this.outbox.send(iqResult(this.opts.peer, id));
    }
  }

  /** The connection underneath is gone: fail without sending anything. */
  connectionLost(): void {
    if (this.state.name === "closed") return;
    this.state = { name: "closed" };
    this.outbox.emit({ type: "failed", error: new IbbError("closed", "stanza connection closed") });
  }

  nextDeadline(): number | undefined {
    const s = this.state;
    switch (s.name) {
      case "awaiting-open-result":
        return s.deadline;
      case "open":
      case "awaiting-close-result": {
        let d = s.name === "awaiting-close-result" ? s.deadline : Infinity;
        for (const p of s.inflight.values()) d = Math.min(d, p.deadline);
        return d === Infinity ? undefined : d;
      }
      case "idle":
      case "awaiting-open":
      case "closed":
        return undefined;
      default:
        return assertNever(s, "ibb state");
    }
  }

  onTimer(now: number): void {
    const d = this.nextDeadline();
    if (d === undefined || now < d) return;
    const s = this.state;
    if (s.name === "open") this.outbox.send(iqSet(this.opts.peer, this.newId(), closeElement(this.opts.sid)));
    this.fail(new IbbError("timeout", "no reply from the peer"));
  }

  // ---- input ----

  /**
   * Offers a stanza to this session. Returns false if it is not ours (the wiring then
   * tries others or answers item-not-found); never throws on bad peer input.
   */
  handleStanza(stanza: Element): boolean {
    if (attrOf(stanza, "from") !== this.opts.peer) return false;
    const type = attrOf(stanza, "type");
    const id = attrOf(stanza, "id");
    if (stanza.name === "iq" && (type === "result" || type === "error")) {
      return id !== undefined && this.handleReply(id, type === "error" ? stanza : undefined);
    }
    if (stanza.name === "message" && type === "error") {
      return id !== undefined && this.handleReply(id, stanza);
    }
    const child = ibbChild(stanza);
    if (child === undefined) return false;
    const p = parseIbb(child);
    const sid = p.kind === "malformed" ? p.sid : p.sid;
    if (sid !== this.opts.sid) return false;
    const isIq = stanza.name === "iq" && type === "set";
    if (!isIq && stanza.name !== "message") return false;
    if (stanza.name === "iq" && !isIq) return false;
    if (p.kind === "malformed") {
      if (isIq) this.outbox.send(errorReply(stanza, "bad-request", p.element === "open" ? "modify" : "cancel"));
      if (p.element === "data") this.protocolError(new IbbError("bad-request", p.reason));
      return true;
    }
    switch (p.kind) {
      case "open":
        if (isIq) this.onOpen(stanza, p.blockSize, p.stanza);
        return true;
      case "data":
        this.onData(stanza, isIq, p.seq, p.data);
        return true;
      case "close":
        if (isIq) this.onClose(stanza);
        return true;
      default:
        return assertNever(p, "ibb payload");
    }
  }

  // ---- internals ----

  private newId(): string {
    return `ibb-${toHex(this.opts.random.bytes(8))}`;
  }

  private sendOpen(blockSize: number): void {
    const id = this.newId();
    this.state = { name: "awaiting-open-result", id, deadline: this.opts.clock.now() + this.iqTimeoutMs, blockSize };
    this.outbox.send(iqSet(this.opts.peer, id, openElement(this.opts.sid, blockSize, this.stanzaKind)));
  }

  private openData(blockSize: number, stanza: IbbStanzaKind): OpenData {
    return {
      blockSize,
      stanza,
      sendSeq: 0,
      recvSeq: 0,
      queue: [],
      queuedBytes: 0,
      inflight: new Map(),
      heldAcks: [],
      heldBytes: 0,
      endRequested: false,
      remoteCloseId: undefined,
      messageIds: new Set(),
    };
  }

  private onOpen(stanza: Element, blockSize: number, kind: IbbStanzaKind): void {
    const s = this.state;
    if (s.name !== "awaiting-open") {
      // A second <open/> for a live sid: XEP-0047 gives no meaning to it.
      this.outbox.send(errorReply(stanza, "not-acceptable", "cancel"));
      return;
    }
    const max = this.opts.blockSize;
    const tooBig = blockSize > getLimits().maxIbbBlockSize || (this.opts.exactBlockSize === true ? blockSize !== max : blockSize > max);
    if (tooBig) {
      // Section 2.1: "would prefer a smaller block-size" -> resource-constraint (modify);
      // XEP-0261 v1.0 section 2: a size other than the negotiated one "SHOULD" get it too.
      this.outbox.send(errorReply(stanza, "resource-constraint", "modify"));
      return;
    }
    this.state = { name: "open", ...this.openData(blockSize, kind) };
    this.outbox.send(iqResult(this.opts.peer, attrOf(stanza, "id") ?? ""));
    this.outbox.emit({ type: "opened", blockSize, stanza: kind });
  }

  private onData(stanza: Element, isIq: boolean, seq: number, data: Uint8Array): void {
    const s = this.state;
    if (s.name !== "open" && s.name !== "awaiting-close-result") {
      if (isIq) this.outbox.send(errorReply(stanza, "item-not-found", "cancel"));
      return;
    }
    if (data.length > s.blockSize) {
      if (isIq) this.outbox.send(errorReply(stanza, "bad-request", "cancel"));
      this.protocolError(new IbbError("bad-request", "block larger than the negotiated block-size"));
      return;
    }
    if (seq !== s.recvSeq) {
      // Section 2.2: already-used or lost sequence number; process neither it nor any
      // later packet, and close the bytestream.
      if (isIq) this.outbox.send(errorReply(stanza, "unexpected-request", "cancel"));
      this.protocolError(new IbbError("unexpected-request", `expected seq ${s.recvSeq}, got ${seq}`));
      return;
    }
    if (this.paused) {
      // The application is not reading: everything it receives now (and each ack we hold
      // back, an iq id, at least 1 so that empty packets count) stays in memory. A sender
      // that ignores the withheld acks, or any sender in message mode, is stopped here.
      const held = data.length + (isIq ? Math.max((attrOf(stanza, "id") ?? "").length, 1) : 0);
      if (s.heldBytes + held > getLimits().ibbWindowBytes) {
        this.outbox.send(errorReply(stanza, "resource-constraint", "wait"));
        this.protocolError(new IbbError("resource-constraint", "more data than the receive window while reading is paused"));
        return;
      }
      s.heldBytes += held;
    }
    s.recvSeq = (s.recvSeq + 1) % SEQ_MODULUS;
    if (data.length > 0) this.outbox.emit({ type: "data", data });
    if (isIq) {
      const id = attrOf(stanza, "id") ?? "";
      if (this.paused) s.heldAcks.push(id);
      else this.outbox.send(iqResult(this.opts.peer, id));
    }
  }

  private onClose(stanza: Element): void {
    const s = this.state;
    const id = attrOf(stanza, "id") ?? "";
    switch (s.name) {
      case "open":
        for (const held of s.heldAcks.splice(0)) this.outbox.send(iqResult(this.opts.peer, held));
        // Section 2.3: "the receiving party might wait until it has had a chance to send
        // any remaining data in the other direction": answer once ours is acknowledged.
        s.remoteCloseId = id;
        s.endRequested = true;
        this.pump(s);
        return;
      case "awaiting-close-result":
        // Both sides closed at once: answer theirs; ours completes with its own result.
        for (const held of s.heldAcks.splice(0)) this.outbox.send(iqResult(this.opts.peer, held));
        this.outbox.send(iqResult(this.opts.peer, id));
        this.state = { name: "closed" };
        this.outbox.emit({ type: "closed", by: "remote" });
        return;
      case "awaiting-open":
      case "awaiting-open-result":
      case "idle":
        this.outbox.send(iqResult(this.opts.peer, id));
        this.state = { name: "closed" };
        this.outbox.emit({ type: "closed", by: "remote" });
        return;
      case "closed":
        this.outbox.send(errorReply(stanza, "item-not-found", "cancel"));
        return;
      default:
        assertNever(s, "ibb state");
    }
  }

  private handleReply(id: string, error: Element | undefined): boolean {
    const s = this.state;
    const cond = error === undefined ? undefined : errorCondition(error);
    const ibbCond = (c: string | undefined): IbbCondition => (c !== undefined && isIbbCondition(c) ? c : "undefined-condition");
    switch (s.name) {
      case "awaiting-open-result": {
        if (id !== s.id) return false;
        if (error === undefined) {
          this.state = { name: "open", ...this.openData(s.blockSize, this.stanzaKind) };
          this.outbox.emit({ type: "opened", blockSize: s.blockSize, stanza: this.stanzaKind });
          return true;
        }
        const next = Math.floor(s.blockSize / 2);
        if (cond === "resource-constraint" && this.opts.exactBlockSize !== true && next >= this.minBlockSize) {
          this.sendOpen(next);
          return true;
        }
        this.fail(new IbbError(ibbCond(cond), "open refused", true));
        return true;
      }
      case "open":
      case "awaiting-close-result": {
        if (s.name === "awaiting-close-result" && id === s.id) {
          // Section 2.3: result or item-not-found, "in either case" closed.
          this.state = { name: "closed" };
          this.outbox.emit({ type: "closed", by: "local" });
          return true;
        }
        if (error !== undefined && s.messageIds.has(id)) {
          this.fail(new IbbError(ibbCond(cond), "data message refused", true));
          return true;
        }
        const p = s.inflight.get(id);
        if (p === undefined) return false;
        s.inflight.delete(id);
        if (error !== undefined) {
          // Section 2.2: "the sender MUST close the bytestream".
          const e = new IbbError(ibbCond(cond), "data refused", true);
          if (s.name === "open") this.outbox.send(iqSet(this.opts.peer, this.newId(), closeElement(this.opts.sid)));
          this.fail(e);
          return true;
        }
        this.outbox.emit({ type: "drain" });
        this.pump(s);
        return true;
      }
      case "idle":
      case "awaiting-open":
      case "closed":
        return false;
      default:
        return assertNever(s, "ibb state");
    }
  }

  private pump(s: OpenData & { readonly name: "open" | "awaiting-close-result" }): void {
    if (s.name !== "open") return;
    const now = this.opts.clock.now();
    let sentMessages = false;
    while (s.queue.length > 0 && (s.stanza === "message" || s.inflight.size < this.window)) {
      const chunk = s.queue.shift() as Uint8Array;
      s.queuedBytes -= chunk.length;
      const id = this.newId();
      const data = dataElement(this.opts.sid, s.sendSeq, chunk);
      s.sendSeq = (s.sendSeq + 1) % SEQ_MODULUS;
      if (s.stanza === "iq") {
        s.inflight.set(id, { id, deadline: now + this.iqTimeoutMs, bytes: chunk.length });
        this.outbox.send(iqSet(this.opts.peer, id, data));
      } else {
        this.outbox.send(messageWith(this.opts.peer, id, data));
        s.messageIds.add(id);
        if (s.messageIds.size > 1024) s.messageIds.delete(s.messageIds.values().next().value as string);
        sentMessages = true;
      }
    }
    if (sentMessages) this.outbox.emit({ type: "drain" });
    if (s.endRequested && s.queue.length === 0 && s.inflight.size === 0) {
      if (s.remoteCloseId !== undefined) {
        this.outbox.send(iqResult(this.opts.peer, s.remoteCloseId));
        this.state = { name: "closed" };
        this.outbox.emit({ type: "closed", by: "remote" });
      } else this.sendClose(s);
    }
  }

  private sendClose(s: OpenData): void {
    const id = this.newId();
    this.state = { ...s, name: "awaiting-close-result", id, deadline: this.opts.clock.now() + this.iqTimeoutMs };
    this.outbox.send(iqSet(this.opts.peer, id, closeElement(this.opts.sid)));
  }

  /** We detected a protocol violation on inbound data: close (section 2.2) and fail. */
  private protocolError(e: IbbError): void {
    const s = this.state;
    if (s.name === "open") this.outbox.send(iqSet(this.opts.peer, this.newId(), closeElement(this.opts.sid)));
    this.fail(e);
  }

  private fail(e: IbbError): void {
    if (this.state.name === "closed") return;
    this.state = { name: "closed" };
    this.outbox.emit({ type: "failed", error: e });
  }
}
