/**
 * SIGMA identity proof and verification for ESession negotiation: mac, optional public key
 * and signature, encryption under KC with counter C, and the integrity value M.
 *
 * Spec: XEP-0116 v0.16 sections 4.3.3 "Hiding Bob's Identity", 4.4.2 "Verifying Bob's
 * Identity", 4.4.3 "Hiding Alice's Identity", 4.5.1 "Verifying Alice's Identity":
 *   mac  = HMAC(HASH, KS, {N1, N2, dh, pubKey, form1[, form2]})
 *   sign = SIGN(signKey, mac)                        (unless the method is 'none')
 *   pubKey -> '<fingerprint>' + HASH(pubKey) + '</fingerprint>'   (method 'hash')
 *   ID   = CIPHER(KC, C, {pubKey, <SignatureValue>sign</SignatureValue>})  or CIPHER(KC, C, mac)
 *   M    = HMAC(HASH, KM, C, ID)
 * pubKey is the Normalized <KeyValue/> (XML-DSig) in the MAC whatever the method; a zero
 * length string when the method is 'none' (so XEP-0217 is the 'none' case). Fingerprints
 * are Base64 on the wire (interpretation row 13).
 */
import { equalBytes, fromBase64, fromUtf8, toBase64, utf8 } from "../core/bytes.js";
import type { CryptoProvider, HashAlg } from "../crypto/provider.js";
import { el, type Element, normalize, parseFragment, XmlError } from "../xml/index.js";
import { BlockCounter, ctrCrypt, type DirectionKeys, identityMac, type Suite } from "./keys.js";
import type { Profile } from "./profile.js";

export type PubkeyMethod = "key" | "hash" | "none";
export const PUBKEY_METHODS: readonly PubkeyMethod[] = ["key", "hash", "none"];

export const NS_XMLDSIG = "http://www.w3.org/2000/09/xmldsig#";

/** Our long-term signing key, as the negotiation needs it: it signs synchronously. */
export interface SigningIdentity {
  /** The xmldsig algorithm URI it signs with (a `sign_algs` value). */
  readonly signAlg: string;
  /** Its public half as an XML-DSig `<KeyValue/>`. */
  readonly keyValue: Element;
  readonly async?: false;
  sign(data: Uint8Array): Uint8Array;
}

/**
 * A long-term signing key whose signatures arrive later: a WebCrypto key kept
 * non-extractable in the browser (crypto.subtle.sign returns a Promise), a hardware token,
 * a remote signer. `async: true` tells the ESession core never to call `sign` itself: it
 * hands the data to sign to its driver as a sign request (ESession.takeSignRequest) and
 * waits, in state "awaiting-signature", for ESession.provideSignature (docs/esession.md,
 * "Asynchronous signing").
 */
export interface AsyncSigningIdentity {
  readonly signAlg: string;
  readonly keyValue: Element;
  readonly async: true;
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** Either kind of identity an ESession accepts. */
export type AnySigningIdentity = SigningIdentity | AsyncSigningIdentity;

/** Verifies peers' signatures and resolves fingerprints of keys we already hold. */
export interface KeyVerifier {
  /** The `sign_algs` values this verifier can check. */
  readonly signAlgs: readonly string[];
  /**
   * `normalized`, when given, is {@link normalizedKey}(keyValue), already computed by the
   * negotiation for the SIGMA mac (a verifier may use it to find the key it decoded before).
   */
  verify(signAlg: string, keyValue: Element, data: Uint8Array, signature: Uint8Array, normalized?: string): boolean;
  /** A key of the peer we hold whose fingerprint matches (for the 'hash' method). */
  lookup(fingerprint: Uint8Array, hash: HashAlg): Element | undefined;
}

/** What the verifier learned about the peer's key. */
export interface PeerKey {
  readonly keyValue: Element;
  /** HASH(Normalized KeyValue) with the negotiated hash. */
  readonly fingerprint: Uint8Array;
  readonly signAlg: string;
}

export function normalizedKey(keyValue: Element): string {
  return normalize([keyValue]);
}

/**
 * Our own key's Normalized form, computed once per `<KeyValue/>` element: a SigningIdentity
 * signs session after session with the same (readonly) element.
 */
const ownKeys = new WeakMap<Element, string>();

function ownNormalizedKey(keyValue: Element): string {
  let n = ownKeys.get(keyValue);
  if (n === undefined) {
    n = normalizedKey(keyValue);
    ownKeys.set(keyValue, n);
  }
  return n;
}

export function keyFingerprint(c: CryptoProvider, hash: HashAlg, keyValue: Element): Uint8Array {
  return c.hash(hash, utf8(normalizedKey(keyValue)));
}

export interface MacInput {
  readonly nonceFirst: Uint8Array;
  readonly nonceSecond: Uint8Array;
  readonly dh: Uint8Array;
  readonly forms: readonly string[];
}

/**
 * The SIGMA mac: HMAC(HASH, KS, N1 | N2 | dh | pubKey | forms...), with `dh` already an mpi
 * (MODP) or the raw X25519 value, and pubKey "" for the 'none' method (XEP-0217).
 */
export function sigma(c: CryptoProvider, s: Suite, ks: Uint8Array, m: MacInput, pubKey = ""): Uint8Array {
  return c.hmac(s.hash, ks, m.nonceFirst, m.nonceSecond, m.dh, pubKey, ...m.forms);
}

export interface ProveArgs {
  readonly crypto: CryptoProvider;
  readonly suite: Suite;
  readonly profile: Profile;
  readonly keys: DirectionKeys;
  /** Advanced past the identity blocks. */
  readonly counter: BlockCounter;
  readonly mac: MacInput;
  readonly method: PubkeyMethod;
  readonly identity?: SigningIdentity;
}

export interface Proof {
  readonly id: Uint8Array;
  readonly m: Uint8Array;
  /** The SIGMA mac (the SAS input for Alice is M, not this). */
  readonly sigmaMac: Uint8Array;
}

export class IdentityError extends Error {
  override readonly name = "IdentityError";
  constructor(
    readonly reason: "no-identity" | "bad-mac" | "bad-identity" | "unknown-key" | "bad-signature" | "untrusted-key",
  ) {
    super(reason);
  }
}

/** What {@link proofMac} computed: the SIGMA mac (what the identity key signs) and our key's Normalized form. */
export interface ProofMac {
  readonly mac: Uint8Array;
  readonly pubKey: string;
}

/**
 * The first half of {@link prove}: mac = HMAC(HASH, KS, {N1, N2, dh, pubKey, forms}) with
 * `keyValue` our identity's `<KeyValue/>` (ignored for the method 'none'). The second half,
 * {@link sealProof}, needs SIGN(signKey, mac) unless the method is 'none'; an asynchronous
 * signer produces it in between. Throws IdentityError("no-identity") if a key is required
 * but absent.
 */
export function proofMac(a: Omit<ProveArgs, "identity">, keyValue: Element | undefined): ProofMac {
  if (a.method !== "none" && !keyValue) throw new IdentityError("no-identity");
  const pubKey = a.method === "none" || !keyValue ? "" : ownNormalizedKey(keyValue);
  return { mac: sigma(a.crypto, a.suite, req(a.keys.ks), a.mac, pubKey), pubKey };
}

/**
 * The second half of {@link prove}: ID = CIPHER(KC, C, {pubKey or its fingerprint,
 * <SignatureValue>signature</SignatureValue>}) (or CIPHER(KC, C, mac) for 'none') and
 * M = HMAC(HASH, KM, C, ID); advances the counter past ID. `signature` is required unless
 * the method is 'none'.
 */
export function sealProof(a: Omit<ProveArgs, "identity">, pm: ProofMac, signature: Uint8Array | undefined): Proof {
  const { crypto: c, suite: s } = a;
  let plain: Uint8Array;
  if (a.method === "none") plain = pm.mac;
  else {
    if (!signature) throw new IdentityError("no-identity");
    const sig = el("SignatureValue", {}, toBase64(signature));
    const id = a.method === "key" ? pm.pubKey : normalize([el("fingerprint", {}, toBase64(c.hash(s.hash, utf8(pm.pubKey))))]);
    plain = utf8(id + normalize([sig]));
  }
  const before = a.counter.mpi();
  const id = ctrCrypt(c, a.profile, a.keys.kc, a.counter, plain);
  return { id, m: identityMac(c, s, a.keys.km, before, id), sigmaMac: pm.mac };
}

/** Builds ID and M for our side. Throws IdentityError("no-identity") if a key is required but absent. */
export function prove(a: ProveArgs): Proof {
  const pm = proofMac(a, a.identity?.keyValue);
  return sealProof(a, pm, a.method === "none" || !a.identity ? undefined : a.identity.sign(pm.mac));
}

export interface VerifyArgs {
  readonly crypto: CryptoProvider;
  readonly suite: Suite;
  readonly profile: Profile;
  readonly keys: DirectionKeys;
  readonly counter: BlockCounter;
  readonly mac: MacInput;
  readonly method: PubkeyMethod;
  readonly signAlg?: string;
  readonly verifier?: KeyVerifier;
  readonly id: Uint8Array;
  readonly m: Uint8Array;
  /** Skip the M check (already done by the caller for profile detection). */
  readonly mChecked?: boolean;
}

/** Checks M, decrypts ID, checks mac or signature. Returns the peer's key (if any). */
export function verify(a: VerifyArgs): { readonly peerKey?: PeerKey } {
  const { crypto: c, suite: s } = a;
  const before = a.counter.mpi();
  if (!a.mChecked && !equalBytes(identityMac(c, s, a.keys.km, before, a.id), a.m)) throw new IdentityError("bad-mac");
  const plain = ctrCrypt(c, a.profile, a.keys.kc, a.counter, a.id);
  if (a.method === "none") {
    if (!equalBytes(sigma(c, s, req(a.keys.ks), a.mac, ""), plain)) throw new IdentityError("bad-mac");
    return {};
  }
  if (!a.verifier || a.signAlg === undefined) throw new IdentityError("unknown-key");
  let parts: Element[];
  try {
    parts = parseFragment(fromUtf8(plain), NS_XMLDSIG).filter((x): x is Element => typeof x !== "string");
  } catch (e) {
    if (e instanceof XmlError || e instanceof TypeError) throw new IdentityError("bad-identity");
    throw e;
  }
  const [first, sigEl] = parts;
  if (!first || !sigEl || sigEl.name !== "SignatureValue" || parts.length !== 2) throw new IdentityError("bad-identity");
  const sig = fromBase64(sigEl.getText());
  if (!sig) throw new IdentityError("bad-identity");
  let keyValue: Element | undefined;
  if (a.method === "key") {
    if (first.name !== "KeyValue") throw new IdentityError("bad-identity");
    keyValue = first;
  } else {
    const fp = first.name === "fingerprint" ? fromBase64(first.getText()) : undefined;
    if (!fp) throw new IdentityError("bad-identity");
    keyValue = a.verifier.lookup(fp, s.hash);
    if (!keyValue) throw new IdentityError("unknown-key");
  }
  // The peer's key is normalized once: for the mac, the verifier and the fingerprint.
  const pubKey = normalizedKey(keyValue);
  const mac = sigma(c, s, req(a.keys.ks), a.mac, pubKey);
  if (!a.verifier.verify(a.signAlg, keyValue, mac, sig, pubKey)) throw new IdentityError("bad-signature");
  return { peerKey: { keyValue, fingerprint: c.hash(s.hash, utf8(pubKey)), signAlg: a.signAlg } };
}

function req(b: Uint8Array | undefined): Uint8Array {
  if (!b) throw new IdentityError("bad-mac");
  return b;
}
