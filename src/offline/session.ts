/**
 * XEP-0187 Offline Encrypted Sessions: creating one-time offline options (the publisher,
 * "Alice", before she goes offline), starting an offline ESession from them (the sender,
 * "Bob", who finds her offline), and accepting it when she is back.
 *
 * Spec: XEP-0187 v0.5
 * - 3.1 Publishing: the options are an XEP-0116 request form without accept/pubkey, with
 *   'expires' and 'signs' (one signature per key others may authenticate her with); she
 *   "MUST store her value of N_A, all her values of x (one for each MODP group) and the
 *   time [they] expire in a secure way" (the caller persists {@link OfflineSecret}).
 * - 3.2 Requesting: Bob "MUST proceed no further" if no signature verifies with a key he
 *   trusts; he "MUST NOT send encrypted stanzas" if the options expired or he supports no
 *   value of some field.
 * - 3.3 Starting: XEP-0116 "Diffie-Hellman Preparation (Bob)", "Generating Session Keys",
 *   "Hiding Identity" (pubkey assumed 'key'); ID_B and M_B go into the form; "After sending
 *   formB to Alice, Bob can assume that the ESession negotiation is complete."
 * - 3.4 Accepting: select x by 'nonce' and 'modp'; refuse a d or N_B seen before (the
 *   caller's replay set); "Diffie-Hellman Preparation (Alice)" and "Verifying Bob's
 *   Identity" (pubkey 'key'); on any failure terminate "without sending an error".
 * - 6.1 Replay: this implementation goes further than the spec's single set of options:
 *   every published item is a ONE-TIME set (its own N_A and x values), destroyed when the
 *   first session that names it is accepted, so a replayed or second use finds nothing.
 * The key schedule is XEP-0116 3-message (SIGMA-I): mac_B = HMAC(KS_B, N_A, N_B, d,
 * pubKey_B, formB), ID_B = CIPHER(KC_B, C_B, ...), M_B = HMAC(KM_B, C_B, ID_B), with the
 * modern suite's HKDF expansion when the group is x25519 (docs/modern-suite.md).
 *
 * Extension (docs/offline-and-devices.md): a publisher without an identity key publishes
 * unsigned options and a sender without one identifies with 'none' (mac only); both are
 * refused unless the other side's policy allows unauthenticated offline sessions.
 *
 * Pure functions over injected crypto/random/clock: no I/O, no store access.
 */
import { equalBytes, toHex, wipe } from "../core/bytes.js";
import type { Clock, FullJid, Random, ThreadId } from "../core/types.js";
import { CIPHER_KEY_BYTES, type CipherAlg, CryptoError, type CryptoProvider, type DhGroupId, type HashAlg } from "../crypto/provider.js";
import { IdentityError, keyFingerprint, type KeyVerifier, type PeerKey, prove, type SigningIdentity, verify } from "../esession/identity.js";
import { BlockCounter, dhPrivate, dhSecret, dhValueInRange, sessionKeys, type Suite } from "../esession/keys.js";
import { SPEC_PROFILE } from "../esession/profile.js";
import { DEFAULT_POLICY, ESession, type NegotiatedOptions, type Policy, SUPPORTED_CIPHERS, SUPPORTED_HASHES, SUPPORTED_VERSIONS } from "../esession/session.js";
import type { StanzaKind } from "../esession/channel.js";
import { formToXml } from "../forms/codec.js";
import { type Element, normalize } from "../xml/index.js";
import {
  initElement,
  type OfflineOptionsContent,
  type ParsedOfflineInit,
  type ParsedOfflineOptions,
  responseFormFields,
  signedOptions,
  unsignedOptions,
} from "./codec.js";
import { OfflineError } from "./errors.js";

/** What the publisher keeps (secretly) for one published set of one-time options. */
export interface OfflineSecret {
  /** Hex of N_A: the PEP item id and the lookup key. */
  readonly id: string;
  readonly nonce: Uint8Array;
  readonly pairs: readonly { readonly group: DhGroupId; readonly x: Uint8Array }[];
  readonly createdAt: number;
  readonly expiresAt: number;
  /** The offered stanza kinds and logging values (what a sender may choose from). */
  readonly stanzas: readonly string[];
  readonly logging: readonly string[];
  /** The offered crypt_algs and hash_algs (a sender's choice must be one of them). */
  readonly cryptAlgs: readonly string[];
  readonly hashAlgs: readonly string[];
}

export interface OfflineParams {
  readonly crypto: CryptoProvider;
  readonly random: Random;
  readonly clock: Clock;
  readonly policy?: Policy;
}

/** The rekey_freq offered: offline sessions are never re-keyed (the publisher cannot answer). */
export const OFFLINE_REKEY_FREQ = 2 ** 32 - 1;

/** Publisher: one set of one-time options, signed with `identity` when there is one. */
export function createOfflineOptions(
  p: OfflineParams & {
    readonly identity?: SigningIdentity;
    readonly lifetimeMs: number;
    readonly matchResource?: string;
  },
): { readonly x: Element; readonly secret: OfflineSecret } {
  const { crypto, random, clock } = p;
  const policy = p.policy ?? DEFAULT_POLICY;
  const nonce = random.bytes(16);
  const pairs = policy.groups.map((group) => ({ group, x: dhPrivate(crypto, random, group, policy.exponentBytes) }));
  const now = clock.now();
  // XEP-0082 carries seconds: the expiry is rounded down so both sides read the same instant.
  const expiresAt = Math.floor((now + p.lifetimeMs) / 1000) * 1000;
  // XEP-0187 3.1: 'stanzas' MUST NOT include 'iq' (the publisher could not answer it).
  const stanzas = policy.stanzas.filter((s) => s !== "iq");
  const content: OfflineOptionsContent = {
    logging: policy.logging,
    disclosure: ["never"],
    security: ["e2e"],
    modp: pairs.map((x) => x.group),
    cryptAlgs: (policy.cryptAlgs ?? ["aes128-ctr"]).filter((c) => SUPPORTED_CIPHERS.includes(c)),
    hashAlgs: (policy.hashAlgs ?? ["sha256"]).filter((h) => SUPPORTED_HASHES.includes(h)),
    signAlgs: p.identity ? [p.identity.signAlg] : [],
    compress: ["none"],
    stanzas,
    ver: policy.versions ?? SUPPORTED_VERSIONS,
    rekeyFreq: OFFLINE_REKEY_FREQ,
    expiresAt,
    myNonce: nonce,
    dhkeys: pairs.map((x) => crypto.dhPublic(x.group, x.x)),
    ...(p.matchResource !== undefined ? { matchResource: p.matchResource } : {}),
  };
  const { signed } = unsignedOptions(content);
  const signs = p.identity ? [p.identity.sign(signed)] : [];
  return {
    x: signedOptions(content, signs),
    secret: {
      id: toHex(nonce),
      nonce,
      pairs,
      createdAt: now,
      expiresAt,
      stanzas,
      logging: policy.logging,
      cryptAlgs: content.cryptAlgs,
      hashAlgs: content.hashAlgs,
    },
  };
}

/**
 * Sender: checks the options' signatures against the publisher's keys we trust (XEP-0187
 * 3.2). Returns the key that verified, undefined for unsigned options we were told to
 * accept; throws OfflineError("unsigned") otherwise.
 */
export function verifyOfflineOptions(
  o: ParsedOfflineOptions,
  keys: readonly Element[],
  verifier: KeyVerifier | undefined,
  allowUnsigned: boolean,
  crypto: CryptoProvider,
): PeerKey | undefined {
  if (verifier) {
    for (const alg of o.signAlgs) {
      if (!verifier.signAlgs.includes(alg)) continue;
      for (const key of keys)
        for (const sig of o.signs)
          if (verifier.verify(alg, key, o.signed, sig)) {
            return { keyValue: key, fingerprint: keyFingerprint(crypto, "sha256", key), signAlg: alg };
          }
    }
  }
  if (allowUnsigned) return undefined;
  throw new OfflineError("unsigned", o.signs.length ? "no signature verifies with a trusted key" : "the options are not signed");
}

export interface StartOfflineParams extends OfflineParams {
  readonly local: FullJid;
  /** Where the session's stanzas go: the bare JID, or bare/match_resource. */
  readonly peer: FullJid;
  readonly thread: ThreadId;
  readonly options: ParsedOfflineOptions;
  /** The publisher's key that signed the options (from verifyOfflineOptions). */
  readonly publisherKey?: PeerKey;
  readonly identity?: SigningIdentity;
  readonly verifier?: KeyVerifier & { accept?(key: PeerKey): boolean };
}

function pickFirst<T extends string>(offered: readonly string[], ours: readonly T[], name: string): T {
  const c = offered.find((v): v is T => (ours as readonly string[]).includes(v));
  if (c === undefined) throw new OfflineError("unsupported", name);
  return c;
}

/**
 * Sender: starts an offline ESession from verified options (XEP-0187 3.3). The returned
 * session is active; its first stanza carries the `<init/>` form.
 */
export function startOfflineSession(p: StartOfflineParams): ESession {
  const { crypto, random, clock, options: o } = p;
  const policy = p.policy ?? DEFAULT_POLICY;
  if (clock.now() >= o.expiresAt) throw new OfflineError("expired", "the options have expired");
  const groupIndex = o.modp.findIndex((g) => policy.groups.includes(g));
  const group = o.modp[groupIndex];
  const e = o.dhkeys[groupIndex];
  if (group === undefined || e === undefined) throw new OfflineError("unsupported", "modp");
  // XEP-0187 3.3 note: "If the value of e he selected is not valid, Bob SHOULD terminate".
  if (!dhValueInRange(crypto, group, e)) throw new OfflineError("bad-options", "e out of range");
  const cipher = pickFirst<CipherAlg>(o.cryptAlgs, (policy.cryptAlgs ?? ["aes128-ctr"]).filter((c) => SUPPORTED_CIPHERS.includes(c)), "crypt_algs");
  const hash = pickFirst<HashAlg>(o.hashAlgs, (policy.hashAlgs ?? ["sha256"]).filter((h) => SUPPORTED_HASHES.includes(h)), "hash_algs");
  const logging = pickFirst(o.logging, policy.logging, "logging");
  pickFirst(o.security, ["e2e"], "security");
  pickFirst(o.disclosure, ["never"], "disclosure");
  pickFirst(o.compress, ["none"], "compress");
  const ver = pickFirst(o.ver, policy.versions ?? SUPPORTED_VERSIONS, "ver");
  const stanzas = policy.stanzas.filter((k) => k !== "iq" && o.stanzas.includes(k));
  if (stanzas.length === 0) throw new OfflineError("unsupported", "stanzas");
  // We prove with 'key' when we have an identity (XEP-0187 3.3: "MUST assume its value is
  // 'key'"); without one, with 'none' (our extension, see the file banner).
  const method = p.identity ? "key" : "none";
  const signAlg = p.identity?.signAlg;
  if (signAlg !== undefined && o.signAlgs.length && !o.signAlgs.includes(signAlg)) throw new OfflineError("unsupported", "sign_algs");
  const suite: Suite = { hash, cipher, group };
  const nonceB = random.bytes(16);
  const counter = random.bytes(16);
  const y = dhPrivate(crypto, random, group, policy.exponentBytes);
  const d = crypto.dhPublic(group, y);
  const form = responseFormFields({
    logging,
    disclosure: "never",
    security: "e2e",
    modp: group,
    cryptAlgs: cipher,
    hashAlgs: hash,
    ...(signAlg !== undefined ? { signAlgs: signAlg } : {}),
    compress: "none",
    stanzas,
    ver,
    rekeyFreq: OFFLINE_REKEY_FREQ,
    myNonce: nonceB,
    dhkeys: d,
    nonce: o.myNonce,
    counter,
  });
  const formB = normalize(formToXml(form).children);
  const k = offlineSecret(crypto, suite, y, e, () => new OfflineError("bad-options", "the published DH value was refused"));
  const keys = sessionKeys(crypto, suite, SPEC_PROFILE, k);
  wipe(k);
  const counterA = BlockCounter.fromBytes(counter);
  const counterB = counterA.flipTopBit();
  const proof = prove({
    crypto,
    suite,
    profile: SPEC_PROFILE,
    keys: keys.responder,
    counter: counterB,
    mac: { nonceFirst: o.myNonce, nonceSecond: nonceB, dh: d, forms: [formB] },
    method,
    ...(p.identity ? { identity: p.identity } : {}),
  });
  const negotiated: NegotiatedOptions = {
    group,
    cipher,
    hash,
    messages: 3,
    stanzas: stanzas as StanzaKind[],
    logging,
    disclosure: "never",
    rekeyFreq: OFFLINE_REKEY_FREQ,
    profile: "spec",
  };
  return ESession.fromOffline(
    { crypto, random, clock, local: p.local, peer: p.peer, thread: p.thread, policy },
    {
      role: "sender",
      suite,
      keys,
      counterA,
      counterB,
      myPrivate: y,
      peerPublic: e,
      options: negotiated,
      initPubkey: p.publisherKey ? "key" : "none",
      respPubkey: method,
      ...(p.publisherKey ? { peerKey: p.publisherKey } : {}),
      init: initElement(form, proof.id, proof.m),
    },
  );
}

export interface AcceptOfflineParams extends OfflineParams {
  readonly local: FullJid;
  readonly peer: FullJid;
  readonly thread: ThreadId;
  readonly init: ParsedOfflineInit;
  /**
   * The secret of the options the init names, read from the store but NOT yet used: the
   * caller takes it (atomically) only once this function returned a verified session, so
   * a junk init naming the public nonce cannot burn the options (SecureClient.acceptOffline).
   */
  readonly secret: OfflineSecret;
  readonly verifier?: KeyVerifier & { accept?(key: PeerKey): boolean };
  /** Accept a sender that identified with 'none' (no identity key). */
  readonly allowUnauthenticated: boolean;
}

/**
 * Publisher, back online: accepts an offline ESession (XEP-0187 3.4). Every check is made
 * here, cheap ones first (expiry, nonce, options offered, DH range), then the DH and the
 * sender's identity (M_B, then its signature); nothing is consumed. Throws OfflineError
 * when it cannot; the caller then drops the stanza "without sending an error" to the
 * session (it still tells its user and may tell the sender's client, see SecureClient).
 */
export function acceptOfflineSession(p: AcceptOfflineParams): ESession {
  const { crypto, clock, init, secret } = p;
  const r = init.response;
  const policy = p.policy ?? DEFAULT_POLICY;
  if (clock.now() >= secret.expiresAt) throw new OfflineError("expired", "the options had expired");
  if (!equalBytes(r.nonce, secret.nonce)) throw new OfflineError("unknown-options", "nonce");
  const pair = secret.pairs.find((x) => x.group === r.modp);
  if (!pair) throw new OfflineError("unknown-options", "modp");
  if (!dhValueInRange(crypto, r.modp, r.dhkeys)) throw new OfflineError("bad-init", "d out of range");
  const cipher = r.cryptAlgs as CipherAlg;
  const hash = r.hashAlgs as HashAlg;
  if (!(cipher in CIPHER_KEY_BYTES) || !SUPPORTED_CIPHERS.includes(cipher) || !SUPPORTED_HASHES.includes(hash))
    throw new OfflineError("unsupported", "crypt_algs/hash_algs");
  // XEP-0187 3.3: Bob's values are chosen from Alice's published options (an XEP-0116
  // response). Supported is not enough: a publisher whose policy left out a cipher or hash
  // must not get a session with it (a downgrade by a sender, or by whoever rewrote its form
  // before the identity check would have caught it).
  if (!secret.cryptAlgs.includes(cipher)) throw new OfflineError("not-offered", "crypt_algs");
  if (!secret.hashAlgs.includes(hash)) throw new OfflineError("not-offered", "hash_algs");
  if (r.security !== "e2e" || r.disclosure !== "never" || r.compress !== "none" || !SUPPORTED_VERSIONS.includes(r.ver))
    throw new OfflineError("unsupported", "fixed options");
  if (!secret.logging.includes(r.logging)) throw new OfflineError("unsupported", "logging");
  if (r.stanzas.length === 0 || !r.stanzas.every((k) => secret.stanzas.includes(k))) throw new OfflineError("unsupported", "stanzas");
  const suite: Suite = { hash, cipher, group: r.modp };
  const k = offlineSecret(crypto, suite, pair.x, r.dhkeys, () => new OfflineError("bad-init", "the sender's DH value was refused"));
  const keys = sessionKeys(crypto, suite, SPEC_PROFILE, k);
  wipe(k);
  const counterA = BlockCounter.fromBytes(r.counter);
  const counterB = counterA.flipTopBit();
  const method = r.signAlgs !== undefined ? "key" : "none";
  if (method === "none" && !p.allowUnauthenticated) throw new OfflineError("identity-mismatch", "the sender did not identify itself");
  let peerKey: PeerKey | undefined;
  try {
    const v = verify({
      crypto,
      suite,
      profile: SPEC_PROFILE,
      keys: keys.responder,
      counter: counterB,
      mac: { nonceFirst: secret.nonce, nonceSecond: r.myNonce, dh: r.dhkeys, forms: [init.formB] },
      method,
      id: init.identity,
      m: init.mac,
      ...(r.signAlgs !== undefined ? { signAlg: r.signAlgs } : {}),
      ...(p.verifier ? { verifier: p.verifier } : {}),
    });
    peerKey = v.peerKey;
  } catch (e) {
    if (e instanceof IdentityError) throw new OfflineError("identity-mismatch", e.reason);
    throw e;
  }
  if (peerKey && p.verifier?.accept && !p.verifier.accept(peerKey)) throw new OfflineError("identity-mismatch", "the sender's key is not trusted");
  const pairX = new Uint8Array(pair.x);
  const negotiated: NegotiatedOptions = {
    group: r.modp,
    cipher,
    hash,
    messages: 3,
    stanzas: r.stanzas as StanzaKind[],
    logging: r.logging,
    disclosure: r.disclosure,
    rekeyFreq: r.rekeyFreq,
    profile: "spec",
  };
  return ESession.fromOffline(
    { crypto, random: p.random, clock, local: p.local, peer: p.peer, thread: p.thread, policy },
    {
      role: "receiver",
      suite,
      keys,
      counterA,
      counterB,
      myPrivate: pairX,
      peerPublic: r.dhkeys,
      options: negotiated,
      initPubkey: "key",
      respPubkey: method,
      ...(peerKey ? { peerKey } : {}),
    },
  );
}

/**
 * The DH secret, with the provider's refusal as a typed OfflineError: an X25519 value of
 * small order gives an all-zero shared secret, which RFC 7748 section 6.1 says to refuse
 * (the providers throw CryptoError); "Throws OfflineError when it cannot" holds for it too.
 */
function offlineSecret(crypto: CryptoProvider, suite: Suite, x: Uint8Array, peer: Uint8Array, refused: () => OfflineError): Uint8Array {
  try {
    return dhSecret(crypto, suite, x, peer);
  } catch (e) {
    if (e instanceof CryptoError) throw refused();
    throw e;
  }
}

/** Destroys a secret's private values (XEP-0187 3.4: "destroy in a secure way"). */
export function destroySecret(s: OfflineSecret): void {
  for (const x of s.pairs) wipe(x.x);
}
