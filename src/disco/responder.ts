/**
 * Sans-IO disco#info responder: answers the disco#info gets addressed to us, including
 * the XEP-0115 node#ver query, and provides the `<c/>` element for our presence.
 *
 * Spec: XEP-0030 v2.5.0 section 3.1 (answer with identities and features, or an error),
 * section 3.2 (mirror 'node'), section 7 "Error Conditions" (item-not-found for a node we
 * do not know; service-unavailable when policy forbids answering). XEP-0115 v1.6.0
 * section 6.1 (caps with every presence), section 6.2 (the caps node is node '#' ver and
 * MUST be answered with all identities), section 9.4 "Information Exposure" (an entity MAY
 * restrict who gets answers). RFC 6120 section 8.2.3 (an IQ get gets exactly one result or
 * error; never answer a result or an error).
 */
import type { FullJid, Jid } from "../core/types.js";
import { Outbox, type Output } from "../core/machine.js";
import type { CryptoProvider } from "../crypto/provider.js";
import type { DataForm } from "../forms/codec.js";
import type { Element } from "../xml/index.js";
import { capsElement, capsNode, capsVer, type CapsHash } from "./caps.js";
import { buildInfoResult, discoErrorStanza, DiscoError, parseInfoQuery, type DiscoInfo, type Identity, type InfoQuery } from "./codec.js";
import { ADVERTISED_FEATURES, DEFAULT_IDENTITY } from "./features.js";

export interface DiscoResponderConfig {
  /** Our full JID: queries addressed elsewhere are not ours. */
  readonly jid: FullJid;
  readonly crypto: CryptoProvider;
  /** XEP-0115 section 4: a URI identifying the software (e.g. its project URL). */
  readonly capsNode: string;
  readonly identities?: readonly Identity[];
  /** Defaults to {@link ADVERTISED_FEATURES}. */
  readonly features?: readonly string[];
  /** XEP-0128 extended information. */
  readonly forms?: readonly DataForm[];
  readonly hash?: CapsHash;
  /**
   * Who may see our information (XEP-0115 section 9.4); others get service-unavailable
   * (XEP-0030 section 3.1). Defaults to everyone.
   */
  readonly allow?: (from: Jid | undefined) => boolean;
}

export type DiscoEvent = {
  readonly type: "info-query";
  readonly from: Jid | undefined;
  readonly node: string | undefined;
  readonly answer: "result" | "item-not-found" | "service-unavailable" | "bad-request";
};

export type DiscoHandleResult = "handled" | "ignored";

/** Our information with duplicates removed (XEP-0115 section 5.4 would reject them). */
function normalizeInfo(c: DiscoResponderConfig): DiscoInfo {
  const features = [...new Set(c.features ?? ADVERTISED_FEATURES)];
  const identities: Identity[] = [];
  for (const i of c.identities ?? [DEFAULT_IDENTITY]) {
    if (!identities.some((j) => j.category === i.category && j.type === i.type && j.lang === i.lang && j.name === i.name)) identities.push(i);
  }
  if (identities.length === 0) throw new RangeError("XEP-0030: an entity has at least one identity");
  return { identities, features, forms: [...(c.forms ?? [])] };
}

export class DiscoResponder {
  private readonly out = new Outbox<DiscoEvent>();
  readonly info: DiscoInfo;
  /** Our XEP-0115 verification string. */
  readonly ver: string;
  private readonly hash: CapsHash;

  constructor(private readonly config: DiscoResponderConfig) {
    this.info = normalizeInfo(config);
    this.hash = config.hash ?? "sha-1";
    this.ver = capsVer(config.crypto, this.info, this.hash);
  }

  /** The `<c/>` to put in every presence we send (XEP-0115 section 6.1). */
  caps(): Element {
    return capsElement({ hash: this.hash, node: this.config.capsNode, ver: this.ver });
  }

  /** The node peers query after seeing our caps: node '#' ver. */
  get node(): string {
    return capsNode({ node: this.config.capsNode, ver: this.ver });
  }

  poll(): Output<DiscoEvent> | undefined {
    return this.out.poll();
  }

  drain(): Output<DiscoEvent>[] {
    return this.out.drain();
  }

  /**
   * Answers a disco#info get addressed to us (no 'to', or exactly our full JID); returns
   * "ignored" for every other stanza. Never throws.
   */
  handleStanza(stanza: Element): DiscoHandleResult {
    let q: InfoQuery | undefined;
    try {
      q = parseInfoQuery(stanza);
    } catch (e) {
      // A disco#info get without an id cannot be answered; other malformations can.
      if (!(e instanceof DiscoError)) return "ignored";
      const id = stanza.attrs.id as unknown;
      if (typeof id !== "string") return "ignored";
      const from = typeof stanza.attrs.from === "string" ? (stanza.attrs.from as Jid) : undefined;
      this.out.send(discoErrorStanza({ id, ...(from !== undefined ? { from } : {}) }, "bad-request", this.config.jid));
      this.out.emit({ type: "info-query", from, node: undefined, answer: "bad-request" });
      return "handled";
    }
    if (!q) return "ignored";
    if (q.to !== undefined && q.to !== this.config.jid) return "ignored";
    const answer = this.answer(q);
    if (answer === "result") this.out.send(buildInfoResult(q, this.info, this.config.jid));
    else this.out.send(discoErrorStanza(q, answer, this.config.jid));
    this.out.emit({ type: "info-query", from: q.from, node: q.node, answer });
    return "handled";
  }

  private answer(q: InfoQuery): "result" | "item-not-found" | "service-unavailable" {
    let allowed: boolean;
    try {
      allowed = this.config.allow ? this.config.allow(q.from) : true;
    } catch {
      allowed = false;
    }
    if (!allowed) return "service-unavailable";
    // XEP-0115 section 6.2: the caps node (node#ver) answers with everything we support.
    if (q.node === undefined || q.node === this.node) return "result";
    return "item-not-found";
  }
}
