/**
 * Every resource limit of the library in one place: documented defaults that an embedding
 * application may override once at start-up ({@link configureLimits}) or per call where a
 * function takes a `limits` option.
 *
 * Spec: XEP-0210 v0.3 section 4.4 "Efficiency" (cryptographic work is expensive, so the
 * protocol must perform under constrained CPU: a peer must not make us do unbounded
 * work) and section 3.9 "Robustness"; RFC 6120 section 4.9.3.14 <policy-violation/>
 * (a stanza over the server's size limit) and section 11.1 (XML restrictions: no DTDs,
 * no entity declarations); XEP-0200 v0.2 section 9 (re-key limits); XEP-0047 v2.0 section
 * 2.1 (block-size at most 65535); XEP-0187 v0.2 (one-time offline values).
 *
 * Where each limit is enforced today is listed in docs/security.md ("Limits"); a limit
 * whose enforcement lives in a layer that reads {@link getLimits} takes effect for the
 * next input after {@link configureLimits}.
 */

export interface Limits {
  // ---- XML (src/xml parseXml, src/adapters stream parsers) ----
  /** Largest stanza (or parsed document) in characters. Prosody's c2s_stanza_size_limit. */
  readonly maxStanzaBytes: number;
  /** Deepest element nesting inside one stanza (the stanza itself is depth 1). */
  readonly maxXmlDepth: number;
  /** Most elements in one stanza. */
  readonly maxXmlElements: number;
  /** Most attributes on one element (xmlns declarations included). */
  readonly maxXmlAttributes: number;
  /** Longest attribute value in characters. */
  readonly maxXmlAttributeBytes: number;

  // ---- Data forms (src/forms parseForm) ----
  /** Most `<field/>` elements in one XEP-0004 form. */
  readonly maxFormFields: number;
  /** Most `<value/>` elements in one field. */
  readonly maxFieldValues: number;
  /** Most `<option/>` elements in one field. */
  readonly maxFieldOptions: number;
  /** Longest single `<value/>` in characters (Base64 DH values, keys, signatures). */
  readonly maxFieldValueBytes: number;

  // ---- Stanza session negotiation (src/negotiation, src/esession, src/client) ----
  /** Negotiations (XEP-0155 / ESession) waiting for an answer, per peer bare JID. */
  readonly maxPendingNegotiationsPerPeer: number;
  /** Negotiations waiting for an answer, all peers together. */
  readonly maxPendingNegotiations: number;
  /**
   * Inbound negotiation requests (and offline session starts) answered per peer bare JID
   * per minute: each costs a DH operation, so this bounds the rate, not only the state.
   * A token bucket: up to this many at once, refilled evenly over a minute.
   */
  readonly negotiationRequestsPerMinutePerPeer: number;
  /** The same for all peers together. */
  readonly negotiationRequestsPerMinute: number;

  // ---- Stanza encryption (src/esession/channel.ts) ----
  /** XEP-0200 value sets (our unconfirmed re-keys plus the current one) kept per session. */
  readonly maxValueSets: number;
  /** Peer re-keys (`<key/>`) accepted while we sent nothing: each one costs a DH. */
  readonly maxSkippedRekeys: number;

  // ---- In-band bytestreams (src/ibb) ----
  /** Largest IBB block-size we accept in an `<open/>` (XEP-0047 allows up to 65535). */
  readonly maxIbbBlockSize: number;
  /** Received IBB bytes buffered but not yet read by the application, per stream. */
  readonly ibbWindowBytes: number;

  // ---- Offline ESessions (src/offline) ----
  /** One-time option sets (XEP-0187) we keep published and stored, per audience. */
  readonly maxOfflineOneTimeValues: number;

  // ---- Service discovery (src/disco) ----
  /** Most `<identity/>` elements in a disco#info result. */
  readonly maxDiscoIdentities: number;
  /** Most `<feature/>` elements in a disco#info result. */
  readonly maxDiscoFeatures: number;
  /** Most extension forms (XEP-0128) in a disco#info result. */
  readonly maxDiscoForms: number;

  // ---- Public keys (src/pubkey) ----
  /** Most keys (or key-info entries) in one XEP-0189 payload. */
  readonly maxPubkeyEntries: number;
  /** Largest key material in one `<key/>` / `<KeyValue/>` / `<x509cert/>`, in characters. */
  readonly maxPubkeyBytes: number;
}

/** The defaults: generous for honest peers, small enough to bound a hostile one. */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxStanzaBytes: 256 * 1024,
  maxXmlDepth: 64,
  maxXmlElements: 10_000,
  maxXmlAttributes: 64,
  maxXmlAttributeBytes: 16 * 1024,

  maxFormFields: 256,
  maxFieldValues: 256,
  maxFieldOptions: 256,
  maxFieldValueBytes: 64 * 1024,

  maxPendingNegotiationsPerPeer: 4,
  maxPendingNegotiations: 256,
  negotiationRequestsPerMinutePerPeer: 30,
  negotiationRequestsPerMinute: 1200,

  maxValueSets: 8,
  maxSkippedRekeys: 16,

  maxIbbBlockSize: 65_535,
  ibbWindowBytes: 1024 * 1024,

  maxOfflineOneTimeValues: 32,

  maxDiscoIdentities: 64,
  maxDiscoFeatures: 1024,
  maxDiscoForms: 16,

  maxPubkeyEntries: 64,
  maxPubkeyBytes: 16 * 1024,
});

export class LimitsError extends Error {
  override readonly name = "LimitsError";
  readonly condition = "bad-limit" as const;
}

let current: Readonly<Limits> = DEFAULT_LIMITS;

/** The limits in force (the defaults unless {@link configureLimits} changed them). */
export function getLimits(): Readonly<Limits> {
  return current;
}

/**
 * Overrides some limits for the whole process (call it once at start-up, before the first
 * connection). Each value must be a positive safe integer. Returns the previous limits so
 * that a test can restore them.
 */
export function configureLimits(overrides: Partial<Limits>): Readonly<Limits> {
  const previous = current;
  current = resolveLimits(overrides, previous);
  return previous;
}

/** Restores the defaults (for tests). */
export function resetLimits(): void {
  current = DEFAULT_LIMITS;
}

/** `base` with `overrides` applied, validated; used by per-call `limits` options too. */
export function resolveLimits(overrides: Partial<Limits> | undefined, base: Readonly<Limits> = current): Readonly<Limits> {
  if (overrides === undefined) return base;
  const out: Record<string, number> = { ...base };
  for (const [k, v] of Object.entries(overrides)) {
    if (!(k in DEFAULT_LIMITS)) throw new LimitsError(`unknown limit ${k}`);
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) throw new LimitsError(`limit ${k} must be a positive integer`);
    out[k] = v;
  }
  return Object.freeze(out as unknown as Limits);
}
