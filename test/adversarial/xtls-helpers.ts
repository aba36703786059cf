/**
 * Support for the XTLS adversarial suite (test/adversarial/xtls.test.ts): two XtlsClients
 * on the in-memory switchboard with the attacker in it, a transcript of every relayed
 * stanza, what each application read from its tunnel, and the outcome of an attack as one
 * exact string: the IBB and Jingle error conditions each party sent, the session-terminate
 * reasons, how each tunnel ended (Jingle reason, XtlsError condition and the TLS error
 * code under it) and how many plaintext markers were delivered.
 *
 * Spec: draft-meyer-xmpp-e2e-encryption-02 sections 3 and 6 (security-error), XEP-0166
 * v1.1.2 sections 7.4 (reasons) and 9 (errors), XEP-0047 v2.0.1 section 2.2 (errors);
 * issue 9 step 1 (test support, no protocol logic here).
 */
import { parseFullJid, type FullJid } from "../../src/core/types.js";
import { Switchboard, type Adversary, type InFlight, type Relayed } from "../../src/adapters/switchboard.js";
import { attrOf } from "../../src/adapters/connection.js";
import { elements, parseXml, serialize, type Element } from "../../src/xml/index.js";
import { errorCondition, ibbChild, IbbError } from "../../src/ibb/index.js";
import { jingleChild, NS_JINGLE_ERRORS, parseJingle } from "../../src/jingle/index.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { SrpTlsError } from "../../src/tls-srp/index.js";
import {
  MemoryTrustStore,
  XtlsClient,
  XtlsDiscovery,
  XtlsError,
  generateIdentity,
  serveDisco,
  xtlsDiscoResponder,
  type XtlsNotice,
  type XtlsIdentity,
  type XtlsOptions,
  type XtlsTunnel,
} from "../../src/xtls/index.js";

export const ALICE = parseFullJid("alice@example.org/laptop");
export const BOB = parseFullJid("bob@example.net/desk");
export const MALLORY = parseFullJid("mallory@evil.example/lair");
export const SECRET = "XTLS-ADV-SECRET";

/** TLS alert descriptions (RFC 8446 section 6 / RFC 5246 section 7.2). */
const ALERTS: Record<number, string> = {
  0: "close_notify",
  10: "unexpected_message",
  20: "bad_record_mac",
  40: "handshake_failure",
  42: "bad_certificate",
  47: "illegal_parameter",
  50: "decode_error",
  51: "decrypt_error",
  70: "protocol_version",
  80: "internal_error",
  116: "certificate_required",
};

export interface Identities {
  readonly alice: XtlsIdentity;
  readonly bob: XtlsIdentity;
  readonly mallory: XtlsIdentity;
}

let ids: Promise<Identities> | undefined;
/** One ECDSA P-256 certificate per party for the whole file. */
export function identities(): Promise<Identities> {
  ids ??= (async () => ({
    alice: await generateIdentity("alice@example.org"),
    bob: await generateIdentity("bob@example.net"),
    mallory: await generateIdentity("mallory@evil.example"),
  }))();
  return ids;
}

export function nameOf(jid: string | undefined): string {
  if (jid === ALICE) return "alice";
  if (jid === BOB) return "bob";
  if (jid === MALLORY) return "mallory";
  return jid ?? "?";
}

export interface RunOptions {
  /** Pin each other's certificate beforehand (default true). */
  readonly pinned?: boolean;
  readonly alice?: Partial<XtlsOptions>;
  readonly bob?: Partial<XtlsOptions>;
  /**
   * Alice looks up XTLS support before initiating (draft section 7: caps, then
   * disco#info), and Bob answers disco#info advertising XTLS.
   */
  readonly discovery?: boolean;
}

/** Options, or a function of the file's identities that returns them. */
export type RunSpec = RunOptions | ((id: Identities) => RunOptions);

/** One two-party XTLS setup on a fresh switchboard. */
export class XtlsRun {
  readonly sb = new Switchboard();
  readonly relayed: Relayed[] = [];
  /** What the applications read: `alice<-text` / `bob<-text`. */
  readonly delivered: string[] = [];
  readonly bobFailures: XtlsError[] = [];
  readonly trustA = new MemoryTrustStore();
  readonly trustB = new MemoryTrustStore();
  readonly incoming: Promise<XtlsTunnel>;
  readonly alice: XtlsClient;
  readonly bob: XtlsClient;
  /** Every stanza a party sent, as the switchboard accepted it (before the attacker). */
  readonly admitted: InFlight[] = [];
  private inner: Adversary | undefined;
  /** Extra outcome parts a case adds (e.g. what an injected stanza got). */
  readonly notes: string[] = [];
  ta: XtlsTunnel | undefined;
  tb: XtlsTunnel | undefined;
  /** The iq id of the stanza a case tampered with, if it says so. */
  attacked: string | undefined;
  aliceError: unknown;

  /** Draft section 8.3 downgrade warnings Alice was given. */
  readonly notices: XtlsNotice[] = [];

  private constructor(id: Identities, o: RunOptions) {
    this.sb.tap((r) => this.relayed.push(r));
    this.sb.setAdversary((item) => {
      this.admitted.push(item);
      return this.inner === undefined ? { action: "deliver" } : this.inner(item);
    });
    const common = { ackTimeoutMs: 4000, handshakeTimeoutMs: 6000, blockSize: 1024 } as const;
    const connA = this.sb.connect(ALICE);
    const connB = this.sb.connect(BOB);
    const discovery = o.discovery === true ? new XtlsDiscovery({ connection: connA, crypto: nodeCrypto, timeoutMs: 4000 }) : undefined;
    if (o.discovery === true) serveDisco(connB, xtlsDiscoResponder({ jid: BOB, crypto: nodeCrypto }));
    this.alice = new XtlsClient({ connection: connA, identity: id.alice, trust: this.trustA, ...common, ...(discovery === undefined ? {} : { discovery }), ...o.alice });
    this.alice.onNotice((n) => this.notices.push(n));
    this.bob = new XtlsClient({ connection: connB, identity: id.bob, trust: this.trustB, acceptSession: () => true, ...common, ...o.bob });
    this.incoming = new Promise<XtlsTunnel>((resolve) =>
      this.bob.on((e) => {
        if (e.type === "tunnel") {
          this.tb = e.tunnel;
          this.watch(e.tunnel, "bob");
          resolve(e.tunnel);
        } else this.bobFailures.push(e.error);
      }),
    );
  }

  static async create(spec: RunSpec = {}): Promise<XtlsRun> {
    const id = await identities();
    const o = typeof spec === "function" ? spec(id) : spec;
    const r = new XtlsRun(id, o);
    if (o.pinned !== false) {
      await r.trustA.pin("bob@example.net", id.bob.fingerprint);
      await r.trustB.pin("alice@example.org", id.alice.fingerprint);
    }
    return r;
  }

  /** The attacker's hook; every stanza a party sends is also recorded in {@link admitted}. */
  setAdversary(fn: Adversary | undefined): void {
    this.inner = fn;
  }

  /**
   * The next IBB seq `from` will use (what the receiver expects next), counted over every
   * stanza the switchboard accepted, delivered yet or not: an attacker in the path knows it.
   */
  nextSeq(from: FullJid): number {
    let n = 0;
    for (const r of this.admitted) {
      if (r.from !== from) continue;
      const c = ibbChild(r.stanza);
      if (c?.name === "data") n = (Number(attrOf(c, "seq")) + 1) % 65536;
    }
    return n;
  }

  /** Alice connects; resolves with both tunnels (throws if either side fails). */
  async establish(opts: Parameters<XtlsClient["connect"]>[1] = {}): Promise<{ ta: XtlsTunnel; tb: XtlsTunnel }> {
    this.ta = await this.alice.connect(BOB, opts);
    this.watch(this.ta, "alice");
    await this.until(() => this.tb !== undefined || this.bobFailures.length > 0, 10_000);
    if (this.tb === undefined) throw this.bobFailures[0] ?? new Error("no incoming tunnel");
    return { ta: this.ta, tb: this.tb };
  }

  /**
   * Alice connects; a rejection is recorded (for the outcome), not thrown. With TLS 1.3 the
   * client may hold a tunnel that the server then refuses: `write` is sent through it at once.
   */
  async tryEstablish(opts: Parameters<XtlsClient["connect"]>[1] = {}, write?: string): Promise<void> {
    try {
      this.ta = await this.alice.connect(BOB, opts);
      this.watch(this.ta, "alice");
      if (write !== undefined) this.ta.socket.write(write);
    } catch (e) {
      this.aliceError = e;
    }
    // Nothing to wait for when Alice refused before sending anything.
    if (!this.admitted.some((x) => jingleAction(x.stanza) === "session-initiate")) return;
    await this.until(() => this.tb !== undefined || this.bobFailures.length > 0, 3000);
  }

  private watch(t: XtlsTunnel, who: "alice" | "bob"): void {
    t.socket.on("data", (d: Buffer) => this.delivered.push(`${who}<-${d.toString("latin1")}`));
    t.socket.on("error", () => undefined);
  }

  /** Waits for deliveries to stop: the switchboard idle and a few event-loop turns. */
  async settle(ms = 60): Promise<void> {
    for (let i = 0; i < 4; i++) {
      await this.sb.idle();
      await sleep(ms / 4);
    }
    await this.sb.idle();
  }

  /** Waits until `pred` holds (polling), at most `ms`. */
  async until(pred: () => boolean, ms = 8000): Promise<boolean> {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) return false;
      await sleep(10);
    }
    return true;
  }

  /** Alice writes the marker into her tunnel; waits (at most 5 s) until Bob read it. */
  async deliverSecret(ta: XtlsTunnel): Promise<void> {
    ta.socket.write(SECRET);
    await this.until(() => this.count() > 0, 5000);
  }

  /** The clean ending of a case: the marker delivered, Alice closes, both tunnels end. */
  async deliverAndClose(ta: XtlsTunnel): Promise<void> {
    await this.deliverSecret(ta);
    await ta.close();
    await this.ends();
  }

  /** Waits for each existing tunnel to end (bounded), then for the wire to settle. */
  async ends(ms = 8000): Promise<void> {
    await Promise.all([this.ta, this.tb].map((t) => (t === undefined ? undefined : withTimeout(t.ended, ms, "").catch(() => undefined))));
    await this.settle();
  }

  /** Every text that crossed the wire: stanzas and decoded IBB payloads. */
  wire(): string[] {
    return this.relayed.flatMap((r) => {
      const c = ibbChild(r.stanza);
      return c?.name === "data" ? [r.text, Buffer.from(c.getText(), "base64").toString("latin1")] : [r.text];
    });
  }

  /** Deliveries that carry `marker`. */
  count(marker = SECRET): number {
    return this.delivered.filter((d) => d.includes(marker)).length;
  }

  /**
   * The exact outcome: the wire events up to the first session-terminate (and every
   * reply to an injected stanza), then how each side ended, then the number of
   * deliveries of `marker`. The party that terminated first is reported in full (its
   * XtlsError condition and the TLS code or IBB condition under it); the other one by its
   * Jingle reason only, because whether the first party's TLS alert or its
   * session-terminate reaches it first is a race that changes nothing.
   */
  async outcome(marker = SECRET): Promise<string> {
    const events = wireEvents(this.relayed);
    const first = firstTerminator(this.relayed);
    const full = (who: string): boolean => first === undefined || first === who;
    const parts = [...events, ...this.notes];
    for (const n of this.notices) parts.push(`alice:notice(${n.type}${n.type === "downgrade-warning" ? `,refused:${n.refused}` : ""})`);
    if (this.aliceError !== undefined) parts.push(`alice:rejected(${full("alice") ? errText(this.aliceError) : reasonOf(this.aliceError)})`);
    for (const f of this.bobFailures) parts.push(`bob:failed(${full("bob") ? errText(f) : reasonOf(f)})`);
    if (this.ta !== undefined) parts.push(`alice:${await endText(this.ta, full("alice"))}`);
    if (this.tb !== undefined) parts.push(`bob:${await endText(this.tb, full("bob"))}`);
    parts.push(`delivered:${this.count(marker)}`);
    return parts.join(" ");
  }

  /** Where the stanza with iq id `id` is in the transcript (its last relay), or the end. */
  indexOfId(id: string | undefined): number {
    for (let i = this.relayed.length - 1; i >= 0; i--) {
      const r = this.relayed[i];
      if (id !== undefined && r !== undefined && attrOf(r.stanza, "id") === id) return i;
    }
    return this.relayed.length;
  }

  /**
   * The TLS records `from` sent after relayed stanza number `index`, as outer content type
   * and length (RFC 8446 section 5.1; RFC 5246 section 6.2.1); a plaintext alert is shown
   * with its description (RFC 8446 section 6): `alert(2,decrypt_error)`. An encrypted alert
   * is `21/26` under TLS 1.2 AES-128-GCM and `23/19` under TLS 1.3.
   */
  recordsAfter(from: FullJid, index: number, alertsOnly = false): string[] {
    const bytes = Buffer.concat(this.relayed.slice(index).flatMap((r) => (r.from === from && !r.injected && isIbbData(r.stanza) ? [ibbPayload(r.stanza)] : [])));
    const out: string[] = [];
    for (let o = 0; o + 5 <= bytes.length; ) {
      const type = bytes[o] ?? 0;
      const len = bytes.readUInt16BE(o + 3);
      if (type === 21 && len === 2) out.push(`alert(${bytes[o + 5] ?? "?"},${ALERTS[bytes[o + 6] ?? -1] ?? bytes[o + 6] ?? "?"})`);
      else if (!alertsOnly || type === 21) out.push(`${type}/${len}`);
      o += 5 + len;
    }
    return out;
  }

  detach(): void {
    this.alice.detach();
    this.bob.detach();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout: ${what}`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/**
 * What lies under an XtlsError: the TLS error code (e.g. ERR_SSL_..._BAD_RECORD_MAC, or
 * ERR_SSL_SSLV3_ALERT_... for an alert received from the peer), `srp:<alert>(sent|received)`
 * from the TLS-SRP layer, or `ibb:<condition>` when the bytestream underneath failed.
 */
export function tlsCode(e: unknown): string | undefined {
  let c: unknown = e;
  for (let i = 0; i < 4 && c instanceof Error; i++) {
    if (c instanceof IbbError) return `ibb:${c.condition}`;
    if (c instanceof SrpTlsError) return `srp:${c.condition}(${c.origin})`;
    const code = (c as { code?: unknown }).code;
    if (typeof code === "string") return code;
    c = c.cause;
  }
  return undefined;
}

function errText(e: unknown): string {
  if (e instanceof XtlsError) {
    const code = tlsCode(e.cause);
    return `${e.condition},${e.reason}${code === undefined ? "" : `/${code}`}`;
  }
  return e instanceof Error ? e.name : "non-error";
}

/** How a tunnel ended, reason only ("open" while it has not). */
export async function endReason(t: XtlsTunnel | undefined): Promise<string> {
  if (t === undefined) return "none";
  const e = await Promise.race([t.ended, sleep(0).then(() => undefined)]);
  return e === undefined ? "open" : `${e.by},${e.reason?.condition ?? "-"}`;
}

function reasonOf(e: unknown): string {
  return e instanceof XtlsError ? e.reason : e instanceof Error ? e.name : "non-error";
}

async function endText(t: XtlsTunnel, full: boolean): Promise<string> {
  const e = await Promise.race([t.ended, sleep(0).then(() => undefined)]);
  if (e === undefined) return "open";
  if (!full) return `end(${e.reason?.condition ?? "-"})`;
  const code = e.error === undefined ? undefined : tlsCode(e.error.cause);
  const err = e.error === undefined ? "" : `,${e.error.condition}${code === undefined ? "" : `/${code}`}`;
  return `end(${e.by},${e.reason?.condition ?? "-"}${err})`;
}


/** The XMPP condition of an error stanza, or its Jingle-specific condition when present. */
function conditionOf(s: Element): string {
  const err = elements(s).find((c) => c.name === "error");
  const jc = err === undefined ? undefined : elements(err).find((c) => c.attrs.xmlns === NS_JINGLE_ERRORS);
  return jc?.name ?? errorCondition(s) ?? "?";
}

/** A stanza of one of the two parties (not injected, not from a third party). */
function fromParty(r: Relayed): boolean {
  return !r.injected && (r.from === ALICE || r.from === BOB);
}

/** Which party sent the first session-terminate, if one did. */
export function firstTerminator(relayed: readonly Relayed[]): string | undefined {
  const t = relayed.find((r) => fromParty(r) && attrOf(r.stanza, "type") === "set" && jingleAction(r.stanza) === "session-terminate");
  return t === undefined ? undefined : nameOf(t.from);
}

/**
 * IBB/Jingle error replies and session-terminates on the wire, in the order of first
 * appearance, up to the first session-terminate of a party; after it only the replies to
 * the attacker's stanzas (the teardown's own item-not-found replies depend on what was in
 * flight). A terminate the attacker sent is listed but does not close the window.
 */
export function wireEvents(relayed: readonly Relayed[]): string[] {
  const kindOfId = new Map<string, "ibb" | "jingle">();
  const attackerIds = new Set<string>();
  const out: string[] = [];
  let ended = false;
  const add = (s: string): void => {
    if (!out.includes(s)) out.push(s);
  };
  for (const r of relayed) {
    const s = r.stanza;
    const id = attrOf(s, "id");
    const type = attrOf(s, "type");
    if (s.name === "iq" && type === "set" && id !== undefined) {
      if (!fromParty(r)) attackerIds.add(id);
      if (ibbChild(s) !== undefined) kindOfId.set(id, "ibb");
      const j = jingleChild(s);
      if (j !== undefined) {
        kindOfId.set(id, "jingle");
        if (attrOf(j, "action") === "session-terminate" && (!ended || !fromParty(r))) {
          const p = parseJingle(j);
          add(`${fromParty(r) ? "" : "forged-"}${nameOf(r.from)}:terminate(${p.ok ? (p.value.reason?.condition ?? "-") : "?"})`);
          if (fromParty(r)) ended = true;
        }
      }
    }
    if (type === "error" && s.name === "iq" && (!ended || (id !== undefined && attackerIds.has(id)))) {
      const kind = id === undefined ? undefined : kindOfId.get(id);
      add(`${nameOf(r.from)}:${kind ?? "iq"}-error(${conditionOf(s)})`);
    }
  }
  return out;
}

// ---- stanza surgery ----

export function copyOf(s: Element): Element {
  return parseXml(serialize(s));
}

export function isIbbData(s: Element): boolean {
  return ibbChild(s)?.name === "data";
}

export function jingleAction(s: Element): string | undefined {
  const j = jingleChild(s);
  return j === undefined ? undefined : attrOf(j, "action");
}

export function ibbPayload(s: Element): Buffer {
  return Buffer.from(ibbChild(s)?.getText() ?? "", "base64");
}

/** A copy of an IBB data stanza with its payload, seq or sid replaced. */
export function withIbb(s: Element, o: { payload?: Uint8Array; text?: string; seq?: number | string; sid?: string }): Element {
  const c = copyOf(s);
  const d = ibbChild(c);
  if (d === undefined) return c;
  if (o.payload !== undefined) d.children = [Buffer.from(o.payload).toString("base64")];
  if (o.text !== undefined) d.children = [o.text];
  if (o.seq !== undefined) d.attrs.seq = String(o.seq);
  if (o.sid !== undefined) d.attrs.sid = o.sid;
  return c;
}

/** The seq of an IBB data stanza. */
export function seqOf(s: Element): number {
  return Number(attrOf(ibbChild(s) ?? s, "seq"));
}

/** The IBB sid of the session on the wire (from the first <open/>). */
export function ibbSid(relayed: readonly Relayed[]): string | undefined {
  for (const r of relayed) {
    const c = ibbChild(r.stanza);
    if (c?.name === "open") return attrOf(c, "sid");
  }
  return undefined;
}
