/**
 * XEP-0200 Stanza Encryption: the encrypting/decrypting half of an established ESession,
 * with re-keying (value sets, `<key/>`, `<new/>`), publishing old MAC keys (`<old/>`) and
 * the 2^32-block re-key limit.
 *
 * Spec: XEP-0200 v0.2 sections 4 (what is not encrypted: wrapper, <error/>, <thread/>,
 * <amp/>), 5 (encrypting: serialize, pad, compress, CTR, m_content, a_mac), 6 (decrypting:
 * <new/> selects the value set, MAC check, decrypt, parse), 7 (re-key initiation and
 * acceptance), 8 (publishing old MAC values), 9 (security: re-key limits).
 * Interpretation rows 5, 14, 15, 16 of ../shared/docs/esession-interpretation.md.
 *
 * Sans-IO: no sockets or timers; Random and Clock are injected. Errors are returned, never
 * thrown at the caller for peer input.
 */
import { equalBytes, fromBase64, fromUtf8, toBase64, utf8, wipe } from "../core/bytes.js";
import type { Clock, Random } from "../core/types.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { deepClone, el, elements, type Element, NS, normalize, parseFragment, serializeAll, XmlError } from "../xml/index.js";
import { ESessionError } from "./errors.js";
import {
  BLOCK_BYTES,
  blocksFor,
  BlockCounter,
  ctrCrypt,
  dhPrivate,
  dhValueInRange,
  type DirectionKeys,
  rekeyKeys,
  macCounter,
  stanzaMac,
  type Suite,
} from "./keys.js";
import type { Profile } from "./profile.js";
import { getLimits } from "../limits.js";

export type StanzaKind = "message" | "presence" | "iq";

/** XEP-0200 section 9: at most 2^32 blocks per key before a re-key. */
export const REKEY_BLOCK_LIMIT = 2 ** 32;
/** XEP-0200 section 7: how long old value sets are kept for stanzas in flight. */
export const OLD_SET_LIFETIME_MS = 60_000;

/** Children that stay in the clear (XEP-0200 section 4). */
const CLEAR: ReadonlyArray<readonly [string, string]> = [
  ["thread", NS.client],
  ["error", NS.client],
  ["amp", NS.amp],
];

export const FALLBACK_BODY = "[This message is encrypted end-to-end (XEP-0200). Your client cannot decrypt it.]";

export interface ChannelParams {
  readonly crypto: CryptoProvider;
  readonly random: Random;
  readonly clock: Clock;
  readonly suite: Suite;
  readonly profile: Profile;
  readonly sendKeys: DirectionKeys;
  readonly recvKeys: DirectionKeys;
  readonly sendCounter: BlockCounter;
  readonly recvCounter: BlockCounter;
  /** Our current DH private value (x or y) and the peer's latest public value. */
  readonly myPrivate: Uint8Array;
  readonly peerPublic: Uint8Array;
  /** Negotiated rekey_freq: stanzas exchanged before we may initiate a re-key. */
  readonly rekeyFreq: number;
  readonly stanzas: ReadonlySet<StanzaKind>;
  /** For tests: a smaller block limit than 2^32. */
  readonly blockLimit?: number;
  /** Re-key on our own after this many stanzas sent (>= rekeyFreq); undefined = only when needed. */
  readonly autoRekeyEvery?: number;
  /** Private exponent length for re-keys (see dhPrivate). */
  readonly exponentBytes?: number;
}

/** One receive value set: XEP-0200's {x, KC_peer, KM_peer}. */
interface ValueSet {
  readonly x: Uint8Array;
  recv: DirectionKeys;
  /** When a newer set superseded this one (starts its 60 s expiry). */
  supersededAt?: number;
}

export interface Decrypted {
  /** The stanza with its protected content restored (thread and error kept). */
  readonly stanza: Element;
  /** Clear children that were not covered by the MAC (apart from thread/error/fallback body). */
  readonly unauthenticated: readonly Element[];
  /** The peer initiated a re-key in this stanza. */
  readonly peerRekeyed: boolean;
}

export type DecryptResult = { readonly ok: true; readonly value: Decrypted } | { readonly ok: false; readonly error: ESessionError };

/** A receive-only channel never draws padding: the pool starts empty and shared. */
const NO_PAD = new Uint8Array(0);

export class StanzaChannel {
  // The scalars the channel needs, not ChannelParams: keeping the params object would keep
  // the first keys, counters and DH values reachable after a re-key (docs/scale.md).
  private readonly crypto: CryptoProvider;
  private readonly random: Random;
  private readonly clock: Clock;
  private readonly suite: Suite;
  private readonly profile: Profile;
  private readonly rekeyFreq: number;
  private readonly stanzas: ReadonlySet<StanzaKind>;
  private readonly autoRekeyEvery: number | undefined;
  private readonly exponentBytes: number | undefined;
  private sendKeys: DirectionKeys;
  private readonly sendCounter: BlockCounter;
  private readonly recvCounter: BlockCounter;
  private sets: ValueSet[];
  private peerPublic: Uint8Array;
  private keysReceivedSinceSend = 0;
  private blocksSinceRekey = 0;
  private stanzasSinceRekey = 0;
  private sentSinceRekey = 0;
  private rekeyRequested = false;
  /** MAC keys that became publishable (XEP-0200 section 8). */
  private publishable: Uint8Array[] = [];
  /** Our old send MAC keys waiting for the peer to confirm our new key. */
  private oldSendMacs: Uint8Array[] = [];
  private destroyed = false;
  private padPool: Uint8Array = NO_PAD;
  private padPos = 0;
  readonly blockLimit: number;
  /** Counts for observability and tests. */
  readonly stats = { sent: 0, received: 0, rekeysInitiated: 0, rekeysAccepted: 0, oldKeysPublished: 0 };

  /**
   * The channel takes its secrets over: the keys, counters and our DH private value are
   * copied into one buffer (one ArrayBuffer per session instead of one per value) and the
   * originals in `p` are overwritten with zeros, so the caller must not use them afterwards.
   */
  constructor(p: ChannelParams) {
    this.crypto = p.crypto;
    this.random = p.random;
    this.clock = p.clock;
    this.suite = p.suite;
    this.profile = p.profile;
    this.rekeyFreq = p.rekeyFreq;
    this.stanzas = p.stanzas;
    this.autoRekeyEvery = p.autoRekeyEvery;
    this.exponentBytes = p.exponentBytes;
    const parts = [p.sendKeys.kc, p.sendKeys.km, p.recvKeys.kc, p.recvKeys.km, p.myPrivate];
    let n = 2 * BLOCK_BYTES;
    for (const b of parts) n += b.length;
    const slab = new Uint8Array(n);
    let o = 0;
    const take = (b: Uint8Array): Uint8Array => {
      const v = slab.subarray(o, o + b.length);
      v.set(b);
      o += b.length;
      return v;
    };
    this.sendCounter = BlockCounter.over(slab.subarray(o, (o += BLOCK_BYTES)), p.sendCounter);
    this.recvCounter = BlockCounter.over(slab.subarray(o, (o += BLOCK_BYTES)), p.recvCounter);
    this.sendKeys = { kc: take(p.sendKeys.kc), km: take(p.sendKeys.km) };
    const recv = { kc: take(p.recvKeys.kc), km: take(p.recvKeys.km) };
    this.sets = [{ x: take(p.myPrivate), recv }];
    wipe(...parts);
    p.sendCounter.wipe();
    p.recvCounter.wipe();
    this.peerPublic = p.peerPublic;
    this.blockLimit = p.blockLimit ?? REKEY_BLOCK_LIMIT;
  }

  get active(): boolean {
    return !this.destroyed;
  }

  get valueSets(): number {
    return this.sets.length;
  }

  /**
   * XEP-0116 rekey_freq: "the minimum number of stanzas that MUST be exchanged before an
   * entity MAY initiate a key re-exchange (1 - every stanza)". The stanza that carries the
   * new key counts, so with 1 every stanza may carry one.
   */
  canRekey(): boolean {
    return this.stanzasSinceRekey + 1 >= this.rekeyFreq;
  }

  /** The next stanza we encrypt carries a `<key/>` (if rekey_freq allows by then). */
  requestRekey(): void {
    this.rekeyRequested = true;
  }

  /** Whether a stanza of this kind is protected by this session. */
  protects(kind: string): kind is StanzaKind {
    return (this.stanzas as ReadonlySet<string>).has(kind);
  }

  /**
   * Encrypts a stanza (XEP-0200 section 5). `extra` elements go inside the encrypted
   * content too (used for termination forms). Throws ESessionError("not-protected") if
   * the session cannot protect it: a protected stanza never leaves in the clear.
   */
  encrypt(stanza: Element, route: { readonly to?: string; readonly thread?: string } = {}): Element {
    if (this.destroyed) throw new ESessionError("not-protected", "session has ended");
    if (!this.protects(stanza.name)) throw new ESessionError("not-protected", `${stanza.name} stanzas were not negotiated`);
    const clear: Element[] = [];
    const secret: Element[] = [];
    for (const c of elements(stanza)) (isClear(c) ? clear : secret).push(c);
    // XEP-0201 threads are for messages; an iq carries exactly one payload (RFC 6120 8.2.3).
    if (route.thread !== undefined && stanza.name === "message" && !clear.some((c) => c.name === "thread"))
      clear.push(el("thread", {}, route.thread));
    const shell = route.to === undefined ? stanza : el(stanza.name, { ...stanza.attrs, to: route.to });
    const pad = " ".repeat(this.padLength());
    const m = utf8(serializeAll(secret) + pad);
    return this.seal(shell, clear, m, stanza.name === "message" && this.profile.fallbackBody);
  }

  /** 0-15 spaces of length padding (XEP-0200 section 6 step 1), from a pooled random draw. */
  private padLength(): number {
    if (this.padPos >= this.padPool.length) {
      this.padPool = this.random.bytes(64);
      this.padPos = 0;
    }
    return (this.padPool[this.padPos++] ?? 0) & 15;
  }

  /** An encrypted stanza with no content: used to send a re-key or publish old keys alone. */
  emptyStanza(to: string, thread: string, type = "chat"): Element {
    const shell = el("message", { to, type });
    return this.seal(shell, [el("thread", {}, thread)], new Uint8Array(0), false);
  }

  private seal(stanza: Element, clear: readonly Element[], m: Uint8Array, fallbackBody: boolean): Element {
    const blocks = blocksFor(m.length);
    // Section 9: never exceed the block limit under one key. Once half of it is used, the
    // next stanza carries a new key (if rekey_freq allows); past the limit nothing is sent.
    if (this.blocksSinceRekey + blocks > this.blockLimit) {
      throw new ESessionError("rekey-limit", "block limit reached without a re-key");
    }
    const mustRekey = (this.blocksSinceRekey + blocks) * 2 >= this.blockLimit;
    const wantRekey =
      this.rekeyRequested || mustRekey || (this.autoRekeyEvery !== undefined && this.sentSinceRekey >= this.autoRekeyEvery);
    let newSend: DirectionKeys | undefined;
    const cChildren: Element[] = [];
    const counterBefore = macCounter(this.sendCounter, this.profile.sendCounter);
    const data = ctrCrypt(this.crypto, this.profile, this.sendKeys.kc, this.sendCounter, m);
    if (m.length > 0) cChildren.push(el("data", {}, toBase64(data)));
    // Each re-key we send adds a value set that lives until the peer confirms it with
    // <new/>: a peer that never answers must not make them pile up (docs/security.md,
    // maxValueSets). A wanted re-key waits (rekeyRequested stays set); a needed one
    // (block limit) cannot, so nothing more is sent under this key.
    const setsFull = this.sets.length >= getLimits().maxValueSets;
    if (wantRekey && setsFull && mustRekey) throw new ESessionError("rekey-limit", "too many unconfirmed re-keys");
    if (wantRekey && this.canRekey() && !setsFull) {
      const x = dhPrivate(this.crypto, this.random, this.suite.group, this.exponentBytes);
      const e = this.crypto.dhPublic(this.suite.group, x);
      const k = this.crypto.dhShared(this.suite.group, x, this.peerPublic);
      const keys = rekeyKeys(this.crypto, this.suite, this.profile, k);
      wipe(k);
      cChildren.push(el("key", {}, toBase64(e)));
      const now = this.clock.now();
      const newest = this.sets[this.sets.length - 1];
      if (newest) newest.supersededAt = now;
      this.sets.push({ x, recv: keys.acceptor });
      newSend = keys.initiator;
      this.rekeyRequested = false;
      this.stats.rekeysInitiated++;
    }
    if (this.keysReceivedSinceSend > 0) cChildren.push(el("new", {}, String(this.keysReceivedSinceSend)));
    for (const old of this.publishable) cChildren.push(el("old", {}, toBase64(old)));
    this.stats.oldKeysPublished += this.publishable.length;
    this.publishable = [];
    const mContent = normalize(cChildren);
    const mac = stanzaMac(this.crypto, this.suite, this.sendKeys.km, mContent, counterBefore);
    const c = el("c", { xmlns: NS.c }, ...cChildren, el("mac", {}, toBase64(mac)));
    const out = el(stanza.name, { ...stanza.attrs });
    out.cnode(c);
    if (fallbackBody) out.cnode(el("body", {}, FALLBACK_BODY));
    for (const cl of clear) out.cnode(cl.parent === null ? cl : deepClone(cl));
    this.keysReceivedSinceSend = 0;
    this.blocksSinceRekey += blocks;
    this.stanzasSinceRekey++;
    this.sentSinceRekey++;
    this.stats.sent++;
    if (newSend) {
      this.oldSendMacs.push(this.sendKeys.km);
      wipe(this.sendKeys.kc);
      this.sendKeys = newSend;
      this.blocksSinceRekey = 0;
      this.stanzasSinceRekey = 0;
      this.sentSinceRekey = 0;
    }
    return out;
  }

  /** Decrypts and verifies a stanza carrying `<c/>` (XEP-0200 section 6). */
  decrypt(stanza: Element): DecryptResult {
    if (this.destroyed) return fail("unexpected-request", "session has ended");
    const c = stanza.getChild("c", NS.c);
    if (!c) return fail("bad-request", "no encrypted content");
    const parts = parseC(c);
    if (!parts) return fail("bad-request", "malformed <c/>");
    // Section 6 step 1: <new/> selects the value set; older sets are destroyed.
    const index = parts.newCount ?? 0;
    const set = this.sets[index];
    if (!set) return fail("bad-mac", "stanza refers to a key we never sent");
    // Step 2-3: MAC over the received content (verbatim Base64) and our receive counter.
    // The MAC is checked before the counter advances (the receiver always appends an mpi).
    const macMpi = stanzaMac(this.crypto, this.suite, set.recv.km, parts.mContent, macCounter(this.recvCounter, "mpi"));
    if (!equalBytes(macMpi, parts.mac)) return fail("bad-mac", "MAC mismatch");
    if (index > 0) this.confirmNewerSet(index);
    // Step 4-6: decrypt, decode, parse.
    const data = parts.data ?? new Uint8Array(0);
    const m = ctrCrypt(this.crypto, this.profile, set.recv.kc, this.recvCounter, data);
    let children: Element[] = [];
    try {
      const text = fromUtf8(m).trim();
      children = parseFragment(text, NS.client).filter((x): x is Element => typeof x !== "string");
    } catch (e) {
      if (e instanceof XmlError || e instanceof TypeError) return fail("bad-content", "decrypted content is not well-formed XML");
      throw e;
    }
    this.stats.received++;
    this.stanzasSinceRekey++;
    let peerRekeyed = false;
    if (parts.key) {
      // Section 7 "Re-Key Acceptance". Each one costs a DH: an honest peer keeps at most
      // maxValueSets unconfirmed re-keys (see seal()), so many more without a reply from
      // us is a peer making us compute (docs/security.md, maxSkippedRekeys).
      if (this.keysReceivedSinceSend >= getLimits().maxSkippedRekeys) return fail("rekey-limit", "too many peer re-keys without a reply");
      if (!dhValueInRange(this.crypto, this.suite.group, parts.key)) return fail("bad-dh-value", "re-key value out of range");
      const oldest = this.sets[0];
      if (!oldest) return fail("unexpected-request", "no value set");
      let k: Uint8Array;
      try {
        k = this.crypto.dhShared(this.suite.group, oldest.x, parts.key);
      } catch {
        return fail("bad-dh-value", "re-key value refused");
      }
      const keys = rekeyKeys(this.crypto, this.suite, this.profile, k);
      wipe(k);
      // The peer's old MAC keys may be published once its re-key arrived (section 8).
      for (const km of new Set(this.sets.map((s) => s.recv.km))) this.publishable.push(km);
      // Published with our next stanza; while we send nothing, keep only the newest
      // (publishing is for repudiability, XEP-0200 section 8; an old key left out is wiped).
      const keep = getLimits().maxValueSets * 2;
      if (this.publishable.length > keep) wipe(...this.publishable.splice(0, this.publishable.length - keep));
      // Each set gets its own copy: destroying a superseded set must not wipe a live key.
      for (const s of this.sets) s.recv = { kc: keys.initiator.kc.slice(), km: keys.initiator.km.slice() };
      if (this.sets.length === 1) {
        wipe(this.sendKeys.kc);
        this.sendKeys = keys.acceptor;
        this.blocksSinceRekey = 0;
        this.sentSinceRekey = 0;
      }
      this.stanzasSinceRekey = 0;
      this.peerPublic = parts.key;
      this.keysReceivedSinceSend++;
      this.stats.rekeysAccepted++;
      peerRekeyed = true;
    }
    // Rebuild the stanza: decrypted content plus the clear thread/error (section 4).
    const out = el(stanza.name, { ...stanza.attrs });
    const unauthenticated: Element[] = [];
    for (const ch of children) out.cnode(ch);
    for (const ch of elements(stanza)) {
      if (ch === c) continue;
      if (ch.name === "body" && ch.getNS() === NS.client && stanza.name === "message") continue; // fallback
      if (ch.name === "thread" || ch.name === "error") out.cnode(deepClone(ch));
      else unauthenticated.push(deepClone(ch));
    }
    return { ok: true, value: { stanza: out, unauthenticated, peerRekeyed } };
  }

  /** The peer used our key number `index`: drop older sets and publish their MAC keys. */
  private confirmNewerSet(index: number): void {
    const dropped = this.sets.splice(0, index);
    for (const d of dropped) {
      this.publishable.push(d.recv.km);
      wipe(d.x, d.recv.kc);
    }
    // Our old send MAC keys are now safe to publish too: the peer has our new key.
    this.publishable.push(...this.oldSendMacs);
    this.oldSendMacs = [];
  }

  /** When old value sets expire (60 s after a newer one was created). */
  nextDeadline(): number | undefined {
    const first = this.sets[0];
    return this.sets.length > 1 && first?.supersededAt !== undefined ? first.supersededAt + OLD_SET_LIFETIME_MS : undefined;
  }

  onTimer(now: number): void {
    while (this.sets.length > 1) {
      const first = this.sets[0];
      if (first?.supersededAt === undefined || first.supersededAt + OLD_SET_LIFETIME_MS > now) break;
      this.sets.shift();
      wipe(first.x, first.recv.kc);
    }
  }

  /**
   * Destroys every key, counter and DH secret it holds (XEP-0116/0217 termination:
   * "securely destroy all keys").
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    wipe(this.sendKeys.kc, this.sendKeys.km, this.padPool);
    for (const s of this.sets) wipe(s.x, s.recv.kc, s.recv.km);
    wipe(...this.publishable, ...this.oldSendMacs);
    this.sendCounter.wipe();
    this.recvCounter.wipe();
    this.sets = [];
    this.publishable = [];
    this.oldSendMacs = [];
    this.padPool = NO_PAD;
  }
}

function fail(condition: ESessionError["condition"], detail: string): DecryptResult {
  return { ok: false, error: new ESessionError(condition, detail) };
}

function isClear(c: Element): boolean {
  const ns = c.getNS();
  return CLEAR.some(([name, n]) => c.name === name && (ns === n || (n === NS.client && ns === undefined)));
}

interface CParts {
  readonly data?: Uint8Array;
  readonly key?: Uint8Array;
  readonly newCount?: number;
  readonly mac: Uint8Array;
  readonly mContent: string;
}

/** Splits `<c/>`: m_content is every child except `<mac/>`, normalized (row 15). */
function parseC(c: Element): CParts | undefined {
  let macEl: Element | undefined;
  let dataEl: Element | undefined;
  let keyEl: Element | undefined;
  let newEl: Element | undefined;
  const content: Element[] = [];
  for (const k of c.children) {
    if (typeof k === "string") continue;
    // At most one of each (XEP-0200 schema), any number of <old/>.
    if (k.name === "mac") {
      if (macEl) return undefined;
      macEl = k;
      continue;
    }
    if (k.name === "data") {
      if (dataEl) return undefined;
      dataEl = k;
    } else if (k.name === "key") {
      if (keyEl) return undefined;
      keyEl = k;
    } else if (k.name === "new") {
      if (newEl) return undefined;
      newEl = k;
    }
    content.push(k);
  }
  const mac = macEl ? fromBase64(macEl.getText()) : undefined;
  if (!mac) return undefined;
  let data: Uint8Array | undefined;
  if (dataEl) {
    data = fromBase64(dataEl.getText());
    if (!data) return undefined;
  }
  let key: Uint8Array | undefined;
  if (keyEl) {
    key = fromBase64(keyEl.getText());
    if (!key) return undefined;
  }
  let newCount: number | undefined;
  if (newEl) {
    const t = newEl.getText().trim();
    if (!/^[1-9][0-9]{0,5}$/.test(t)) return undefined;
    newCount = Number(t);
  }
  // m_content: every child except <mac/>, normalized (row 15).
  const mContent = normalize(content);
  return {
    mac,
    mContent,
    ...(data ? { data } : {}),
    ...(key ? { key } : {}),
    ...(newCount !== undefined ? { newCount } : {}),
  };
}
