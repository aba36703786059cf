/**
 * Determining XTLS support through entity capabilities, with disco#info only on a cache
 * miss, and advertising our own support in our caps.
 *
 * Spec:
 * - draft-meyer-xmpp-e2e-encryption-02 section 7: a supporting entity "MUST report that
 *   by including a service discovery feature of 'urn:xmpp:jingle:security:xtls:1'" (we
 *   accept ':0' too, ./disco.ts); section 8.3: "the service discovery and entity
 *   capabilities information could be corrupted or intercepted ... convincing one party
 *   that the other party does not support XTLS": the wiring surfaces a missing feature as
 *   a warning and, under the "require XTLS" policy, refuses to continue (./client.ts).
 * - XEP-0115 v1.6.0 section 6.1 (`<c/>` in presence), section 6.2 (query node#ver on a
 *   miss), section 5.4 (verify the answer against 'ver' before caching it; a mismatch
 *   "MUST NOT" be cached, an unsupported hash is used for that JID only), section 8.4 /
 *   9.3 (cache by hash+ver; poisoning): only verified answers enter {@link CapsCache}.
 * - XEP-0030 v2.5.0 section 3.1 (the disco#info request and result).
 *
 * {@link CapsBook} is the pure part (presence caps per full JID, the cache, what to ask);
 * {@link XtlsDiscovery} sends the queries and owns the timer.
 */
import { toHex } from "../core/bytes.js";
import type { FullJid, Random } from "../core/types.js";
import { systemRandom } from "../crypto/node.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { attrOf, type StanzaConnection } from "../adapters/connection.js";
import { capsNode, isCapsHash, parseCaps, verifyCaps, type Caps } from "../disco/caps.js";
import { buildInfoQuery, parseInfoResult, type DiscoInfo } from "../disco/codec.js";
import { DiscoResponder } from "../disco/responder.js";
import { NS, type Element } from "../xml/index.js";
import { XTLS_FEATURES, xtlsSupport, type XtlsSupport } from "./disco.js";

/** Verified capabilities, keyed by hash and 'ver' (XEP-0115 section 8.4). */
export interface CapsCache {
  get(hash: string, ver: string): readonly string[] | undefined;
  set(hash: string, ver: string, features: readonly string[]): void;
}

export class MemoryCapsCache implements CapsCache {
  private readonly m = new Map<string, readonly string[]>();
  get(hash: string, ver: string): readonly string[] | undefined {
    return this.m.get(`${hash.toLowerCase()} ${ver}`);
  }
  set(hash: string, ver: string, features: readonly string[]): void {
    this.m.set(`${hash.toLowerCase()} ${ver}`, [...features]);
  }
}

export interface SupportLookup {
  readonly support: XtlsSupport;
  /** Where the answer came from: the verified caps cache (nothing sent) or a disco#info query. */
  readonly source: "caps-cache" | "disco";
  /** What happened to the peer's caps, when it announced any. */
  readonly caps?: "cached" | "mismatch" | "legacy" | "unsupported-hash" | "ill-formed" | "none";
}

/** What to do for a peer: answer from the cache, or ask disco#info (about `node`, if any). */
export type CapsPlan =
  | { readonly kind: "cached"; readonly features: readonly string[] }
  | { readonly kind: "query"; readonly node: string | undefined; readonly caps: Caps | undefined };

/** Pure bookkeeping: presence caps per full JID, the verified cache, and planning. */
export class CapsBook {
  private readonly byJid = new Map<string, Caps>();

  constructor(
    private readonly crypto: CryptoProvider,
    readonly cache: CapsCache = new MemoryCapsCache(),
  ) {}

  /** Feeds a presence; true if it changed what we know about its sender. */
  handlePresence(p: Element): boolean {
    if (p.name !== "presence") return false;
    const from = attrOf(p, "from");
    if (from === undefined || !from.includes("/")) return false;
    if (attrOf(p, "type") === "unavailable") return this.byJid.delete(from);
    if (attrOf(p, "type") !== undefined) return false;
    const caps = parseCaps(p);
    if (caps === undefined) return this.byJid.delete(from);
    this.byJid.set(from, caps);
    return true;
  }

  capsOf(peer: FullJid): Caps | undefined {
    return this.byJid.get(peer);
  }

  plan(peer: FullJid): CapsPlan {
    const caps = this.byJid.get(peer);
    if (caps?.hash !== undefined && isCapsHash(caps.hash.toLowerCase())) {
      const hit = this.cache.get(caps.hash, caps.ver);
      if (hit !== undefined) return { kind: "cached", features: hit };
    }
    return { kind: "query", node: caps === undefined ? undefined : capsNode(caps), caps };
  }

  /** Section 5.4: verifies an answer against the caps it was asked for; caches it only if valid. */
  learn(caps: Caps | undefined, info: DiscoInfo): NonNullable<SupportLookup["caps"]> {
    if (caps === undefined) return "none";
    const v = verifyCaps(this.crypto, caps, info);
    switch (v.status) {
      case "valid":
        this.cache.set(caps.hash ?? "", caps.ver, info.features);
        return "cached";
      case "mismatch":
        return "mismatch";
      case "legacy":
        return "legacy";
      case "unsupported-hash":
        return "unsupported-hash";
      case "ill-formed":
        return "ill-formed";
    }
  }
}

export interface XtlsDiscoveryOptions {
  readonly connection: StanzaConnection;
  readonly crypto: CryptoProvider;
  readonly cache?: CapsCache;
  readonly random?: Random;
  /** How long to wait for a disco#info answer. Default 10,000 ms. */
  readonly timeoutMs?: number;
}

/**
 * Looks up whether a peer supports XTLS: from its presence caps and the verified cache
 * when possible (no stanza sent), otherwise with one disco#info query to node#ver (or to
 * the plain JID when it announced no caps). A failed or unanswered query counts as "not
 * advertised", which the caller shows as the downgrade warning.
 */
export class XtlsDiscovery {
  readonly book: CapsBook;
  private readonly random: Random;
  private readonly unsubscribe: () => void;
  private readonly waiting = new Map<string, (s: Element) => void>();
  /** Concurrent lookups of the same caps share one query. */
  private readonly inflight = new Map<string, Promise<SupportLookup>>();

  constructor(private readonly o: XtlsDiscoveryOptions) {
    this.book = new CapsBook(o.crypto, o.cache);
    this.random = o.random ?? systemRandom;
    this.unsubscribe = o.connection.onStanza((s) => {
      if (s.name === "presence") this.book.handlePresence(s);
      else if (s.name === "iq") {
        const id = attrOf(s, "id");
        const t = attrOf(s, "type");
        if (id !== undefined && (t === "result" || t === "error")) this.waiting.get(id)?.(s);
      }
    });
  }

  detach(): void {
    this.unsubscribe();
  }

  lookup(peer: FullJid): Promise<SupportLookup> {
    const plan = this.book.plan(peer);
    if (plan.kind === "cached") return Promise.resolve({ support: xtlsSupport(plan.features), source: "caps-cache", caps: "cached" });
    const key = plan.caps?.hash !== undefined ? `${plan.caps.hash} ${plan.caps.ver}` : `jid ${peer}`;
    const running = this.inflight.get(key);
    if (running !== undefined) return running;
    const p = this.query(peer, plan.node, plan.caps).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private query(peer: FullJid, node: string | undefined, caps: Caps | undefined): Promise<SupportLookup> {
    const id = `xtls-disco-${toHex(this.random.bytes(6))}`;
    return new Promise((resolve) => {
      const done = (features: readonly string[], capsStatus?: NonNullable<SupportLookup["caps"]>): void => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve({ support: xtlsSupport(features), source: "disco", ...(capsStatus === undefined ? {} : { caps: capsStatus }) });
      };
      const timer = setTimeout(() => done([]), this.o.timeoutMs ?? 10_000);
      timer.unref();
      this.waiting.set(id, (s) => {
        if (attrOf(s, "from") !== peer) return;
        if (attrOf(s, "type") !== "result") {
          done([]);
          return;
        }
        try {
          const info = parseInfoResult(s);
          done(info.features, this.book.learn(caps, info));
        } catch {
          done([]);
        }
      });
      void this.o.connection
        .send(buildInfoQuery({ id, to: peer, ...(node === undefined ? {} : { node }) }))
        .catch(() => done([]));
    });
  }
}

/** The node URI in our caps (XEP-0115 section 4: identifies the software). */
export const XTLS_CAPS_NODE = "https://github.com/xmpp-e2e/xmpp-e2e";

/**
 * A disco#info responder that advertises XTLS (draft section 7) plus `extraFeatures`;
 * its `caps()` is the `<c/>` for our presence, so peers learn of XTLS from the cache.
 */
export function xtlsDiscoResponder(o: { jid: FullJid; crypto: CryptoProvider; capsNode?: string; extraFeatures?: readonly string[] }): DiscoResponder {
  return new DiscoResponder({
    jid: o.jid,
    crypto: o.crypto,
    capsNode: o.capsNode ?? XTLS_CAPS_NODE,
    identities: [{ category: "client", type: "pc", name: "xmpp-e2e" }],
    features: [NS.disco, NS.caps, ...XTLS_FEATURES, ...(o.extraFeatures ?? [])],
  });
}

/** Answers disco#info gets on `connection` with `responder`; returns an unsubscribe. */
export function serveDisco(connection: StanzaConnection, responder: DiscoResponder): () => void {
  return connection.onStanza((s) => {
    if (s.name !== "iq" || responder.handleStanza(s) !== "handled") return;
    for (const out of responder.drain()) if (out.kind === "send") void connection.send(out.stanza).catch(() => undefined);
  });
}
