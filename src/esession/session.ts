/**
 * One Encrypted Session: the XEP-0217 simplified negotiation (4 messages, hash commitment,
 * SIGMA MACs with identity hiding, retained secrets, SAS) followed by XEP-0200 stanza
 * encryption, re-keying and XEP-0155-style termination.
 *
 * Spec: XEP-0217 v0.1 (all sections), XEP-0116 v0.16 sections 4-5 and 13 where XEP-0217
 * defers to it, XEP-0155 v1.2 section 6 (termination), XEP-0200 v0.2 (via StanzaChannel).
 * Ambiguities: ../shared/docs/esession-interpretation.md.
 *
 * Sans-IO: inputs are parsed stanzas, commands and timer ticks; outputs (stanzas to send
 * and events) are drained with poll(). Crypto, Random, Clock and the retained secrets are
 * passed in; new retained secrets leave as events for the wiring to persist.
 */
import { equalBytes, utf8, wipe } from "../core/bytes.js";
import { Outbox, type Output } from "../core/machine.js";
import { assertNever, type Clock, type FullJid, type Random, type ThreadId } from "../core/types.js";
import { CryptoError, HASH_BYTES, type CipherAlg, type CryptoProvider, type DhGroupId, type HashAlg, isDhGroup } from "../crypto/provider.js";
import { formToXml, type DataForm } from "../forms/codec.js";
import { negotiationErrorStanza } from "../negotiation/codec.js";
import { el, type Element, NS, normalize, serialize } from "../xml/index.js";
import { StanzaChannel, type StanzaKind } from "./channel.js";
import {
  type AnySigningIdentity,
  IdentityError,
  type KeyVerifier,
  type MacInput,
  type PeerKey,
  type Proof,
  type ProofMac,
  proofMac,
  type ProveArgs,
  type PubkeyMethod,
  sealProof,
  verify,
} from "./identity.js";
import {
  aliceIdentityForm,
  b64Field,
  b64Values,
  bobIdentityForm,
  carriedForm,
  fieldOrder,
  formChildren,
  isTermination,
  offered,
  requestForm,
  responseForm,
  terminateFeature,
  value,
  withIdentity,
  wrapFeature,
  wrapInit,
} from "./codec.js";
import { ESessionError } from "./errors.js";
import {
  BlockCounter,
  ctrCrypt,
  dhCommitment,
  dhPrivate,
  dhSecret,
  dhValueInRange,
  directionKeys,
  finalSecret,
  finalSessionKeys,
  identityMac,
  InitiatorKeys,
  newRetainedSecret,
  retainedSecretHash,
  sas28x5,
  sessionKeys,
  sharedRetainedSecretHash,
  type DirectionKeys,
  type SessionKeys,
  type Suite,
} from "./keys.js";
import { DETECTABLE_PROFILES, type Profile, SPEC_PROFILE } from "./profile.js";

/** A secret retained from an earlier session, as the wiring loaded it from the store. */
export interface RetainedSecretRef {
  readonly id: string;
  readonly secret: Uint8Array;
  /** The peer (bare JID) it was retained with. */
  readonly peer: string;
}

/** Secrets only the negotiation uses (see ESession.secrets). */
interface NegotiationSecrets {
  readonly retained: readonly RetainedSecretRef[];
  readonly retainedOther: readonly RetainedSecretRef[];
  /** The caller's (shared across sessions): dropped, not wiped. */
  readonly otherSecret?: Uint8Array;
}

export interface Policy {
  /** DH groups we offer (initiator, in preference order) or accept (responder): MODP groups and "x25519". */
  readonly groups: readonly DhGroupId[];
  /** Block ciphers we offer / accept, in preference order (XEP-0116 "crypt_algs"). */
  readonly cryptAlgs?: readonly CipherAlg[];
  /** Hash algorithms we offer / accept, in preference order (XEP-0116 "hash_algs"). */
  readonly hashAlgs?: readonly HashAlg[];
  readonly stanzas: readonly StanzaKind[];
  /** Our preference for the XEP-0155 logging field. */
  readonly logging: readonly ("mustnot" | "may")[];
  /** The minimum rekey_freq we ask for / accept. */
  readonly rekeyFreq: number;
  /** Re-key on our own every N stanzas sent (undefined = only when needed). */
  readonly autoRekeyEvery?: number;
  /** Negotiation timeout. */
  readonly timeoutMs: number;
  /** For tests: XEP-0200 block limit. */
  readonly blockLimit?: number;
  /** Private exponent length in bytes (default 64 = 512 bits; 0 = the prime's full length). */
  readonly exponentBytes?: number;
  /**
   * Values of the peer's 'disclosure' we tolerate (XEP-0116 section 8), "never" first.
   * We always answer "never" ourselves: this implementation has no mechanism that could
   * divulge identities, keys or content to a third party.
   */
  readonly acceptDisclosure?: readonly ("never" | "disabled" | "enabled")[];
  /** Protocol versions we offer, in preference order (XEP-0210 3.10); we speak "1.0". */
  readonly versions?: readonly string[];
  /** Initiator: 4-message SIGMA-R with hash commitment (default) or 3-message SIGMA-I. */
  readonly messages?: 3 | 4;
  /**
   * Add XEP-0280 `<private/>` + XEP-0334 `<no-copy/>` (and `<no-permanent-store/>` when
   * logging is 'mustnot') in the clear next to `<c/>` on messages, so that a server with
   * carbons never copies them to a device that cannot decrypt them (default false: only
   * routing data stays in the clear, XEP-0210 3.1).
   */
  readonly hints?: boolean;
  /** Responder: accept 3-message requests (XEP-0116 4.2; default true). */
  readonly allowThreeMessage?: boolean;
  /** Identification methods we can provide (default: key, hash, none with an identity; else none). */
  readonly offerPubkey?: readonly PubkeyMethod[];
  /** Identification methods we accept from the peer, in preference order (default: key, none with a verifier). */
  readonly acceptPubkey?: readonly PubkeyMethod[];
}

/** Versions of the negotiation protocol this implementation speaks (XEP-0116 "ver"). */
export const SUPPORTED_VERSIONS: readonly string[] = ["1.0"];

/** What node:crypto serves for XEP-0116 "crypt_algs" and "hash_algs". */
export const SUPPORTED_CIPHERS: readonly CipherAlg[] = ["aes256-ctr", "aes192-ctr", "aes128-ctr"];
export const SUPPORTED_HASHES: readonly HashAlg[] = ["sha256", "sha384", "sha512"];

/**
 * Defaults: the modern suite (X25519, AES-256-CTR, SHA-512/HKDF) is preferred; the 2007
 * values follow, so a peer that only knows those still negotiates (docs/modern-suite.md).
 */
export const DEFAULT_POLICY: Policy = {
  groups: ["x25519", 14, 5],
  cryptAlgs: ["aes256-ctr", "aes128-ctr"],
  hashAlgs: ["sha512", "sha256"],
  stanzas: ["message", "presence", "iq"],
  logging: ["mustnot", "may"],
  rekeyFreq: 1,
  timeoutMs: 60_000,
};

export interface SessionParams {
  readonly crypto: CryptoProvider;
  readonly random: Random;
  readonly clock: Clock;
  readonly local: FullJid;
  readonly peer: FullJid;
  readonly thread: ThreadId;
  readonly policy?: Policy;
  /** The initiator's profile; a responder detects the peer's (interpretation note). */
  readonly profile?: Profile;
  /**
   * Retained secrets shared with the peer's bare JID (most recent per client). The session
   * takes the `secret` arrays over: it overwrites them with zeros when the negotiation ends
   * (established, failed, terminated or aborted), so pass copies (the stores hand out copies).
   */
  readonly retained?: readonly RetainedSecretRef[];
  /** Responder: retained secrets with every other JID, for the extended search (taken over like `retained`). */
  readonly retainedOther?: readonly RetainedSecretRef[];
  /** The Other Shared Secret (a password agreed out of band), if any. */
  readonly otherSecret?: Uint8Array;
  /**
   * Our long-term signing key (XEP-0116 'key'/'hash' identification), if any. An
   * AsyncSigningIdentity (`async: true`) is never called by the session: the data to sign
   * leaves through takeSignRequest() and the signature comes back through
   * provideSignature() (docs/esession.md, "Asynchronous signing").
   */
  readonly identity?: AnySigningIdentity;
  /** Verifies the peer's signature and resolves fingerprints; `accept` applies trust. */
  readonly verifier?: KeyVerifier & { accept?(key: PeerKey): boolean };
}

export interface NegotiatedOptions {
  readonly group: DhGroupId;
  readonly cipher: CipherAlg;
  readonly hash: HashAlg;
  readonly messages: 3 | 4;
  readonly stanzas: readonly StanzaKind[];
  readonly logging: string;
  readonly disclosure: string;
  readonly rekeyFreq: number;
  readonly profile: Profile["name"];
}

export type NegotiationStep =
  | "request-sent"
  | "request-received"
  | "response-sent"
  | "response-received"
  | "identity-sent"
  | "identity-received"
  | "identity-verified";

export type ESessionEvent =
  | { readonly type: "progress"; readonly step: NegotiationStep }
  | {
      readonly type: "established";
      /** The Short Authentication String (4-message negotiations only). */
      readonly sas?: string;
      readonly options: NegotiatedOptions;
      readonly initPubkey: PubkeyMethod;
      readonly respPubkey: PubkeyMethod;
      /** The peer's verified public key, when it identified itself with one. */
      readonly peerKey?: PeerKey;
      /** Whether a retained secret from an earlier session was shared (MitM protection). */
      readonly retainedSecretMatched: boolean;
      /** The new retained secret to store, replacing `replaces` (4-message only; the old MUST be destroyed). */
      readonly newRetainedSecret?: Uint8Array;
      readonly replaces?: string;
      /** XEP-0187: this session was started offline (sender) or accepted from an offline start (receiver). */
      readonly offline?: OfflineRole;
    }
  | { readonly type: "stanza"; readonly stanza: Element; readonly unauthenticated: readonly Element[] }
  | { readonly type: "rekeyed"; readonly by: "us" | "peer" }
  | { readonly type: "terminated"; readonly by: "us" | "peer"; readonly acknowledged: boolean }
  | { readonly type: "failed"; readonly error: ESessionError };

/**
 * A signature the negotiation needs from an asynchronous identity (AsyncSigningIdentity):
 * SIGN(signKey, mac) over the SIGMA mac (XEP-0116 4.3.3 / 4.4.3). The driver signs `data`
 * with the identity key and returns the result with ESession.provideSignature(id, sig).
 */
export interface SignRequest {
  /** Names this request in provideSignature / signatureFailed (unique within the session). */
  readonly id: string;
  /** The bytes to sign (a copy; the driver may keep it). */
  readonly data: Uint8Array;
  /** The xmldsig algorithm URI the identity signs with (its `signAlg`). */
  readonly signAlg: string;
}

/** Which side of an XEP-0187 offline ESession we are. */
export type OfflineRole = "sender" | "receiver";

/**
 * What src/offline computed for an XEP-0187 offline ESession: the 3-message key schedule
 * with the publisher as the initiator (Alice, offline) and the sender as the responder
 * (Bob, online). The session starts active.
 */
export interface OfflineActivation {
  readonly role: OfflineRole;
  readonly suite: Suite;
  readonly keys: SessionKeys;
  /** C_A (the publisher's counter, never used to send: XEP-0187 section 4). */
  readonly counterA: BlockCounter;
  /** C_B advanced past Bob's identity blocks. */
  readonly counterB: BlockCounter;
  readonly myPrivate: Uint8Array;
  readonly peerPublic: Uint8Array;
  readonly options: NegotiatedOptions;
  readonly initPubkey: PubkeyMethod;
  readonly respPubkey: PubkeyMethod;
  readonly peerKey?: PeerKey;
  /** Sender: the `<init/>` element that goes out next to the first `<c/>` (XEP-0187 3.3). */
  readonly init?: Element;
}

interface DhPair {
  readonly group: DhGroupId;
  readonly x: Uint8Array;
  readonly e: Uint8Array;
}

/**
 * What the negotiation does once our identity proof (ID, M) is complete: the rest of the
 * step that needed it, with the values that step computed before proving.
 */
type AfterProof =
  | {
      /** Alice, 4 messages: send her identity (message 3), then wait for Bob's. */
      readonly kind: "send-alice-identity";
      readonly a2: DataForm;
      readonly prov: DirectionKeys;
      readonly choice: Choice;
      readonly nonceA: Uint8Array;
      readonly nonceB: Uint8Array;
      readonly pair: DhPair;
      readonly d: Uint8Array;
      readonly k: Uint8Array;
      readonly counterA: BlockCounter;
      readonly counterB: BlockCounter;
      readonly responseX: Element;
      readonly deadline: number;
    }
  | {
      /** Alice, 3 messages: send her identity (message 3); the session is then active. */
      readonly kind: "send-alice-identity-3";
      readonly a2: DataForm;
      readonly choice: Choice;
      readonly keys: SessionKeys;
      readonly counterA: BlockCounter;
      readonly counterB: BlockCounter;
      readonly x: Uint8Array;
      readonly d: Uint8Array;
      readonly peerKey: PeerKey | undefined;
    }
  | {
      /** Bob, 4 messages: send his identity (message 4); the session is then active. */
      readonly kind: "send-bob-identity";
      readonly b2: DataForm;
      readonly choice: Choice;
      readonly keys: SessionKeys;
      readonly counterA: BlockCounter;
      readonly counterB: BlockCounter;
      readonly y: Uint8Array;
      readonly e: Uint8Array;
      readonly sas: string;
      readonly retained: Uint8Array;
      readonly srs: RetainedSecretRef | undefined;
      readonly peerKey: PeerKey | undefined;
    }
  | {
      /** Bob, 3 messages: send the response carrying his identity (message 2), then wait for Alice's. */
      readonly kind: "send-bob-response-3";
      readonly response: DataForm;
      readonly choice: Choice;
      readonly nonceA: Uint8Array;
      readonly nonceB: Uint8Array;
      readonly y: Uint8Array;
      readonly e: Uint8Array;
      readonly keys: SessionKeys;
      readonly counterA: BlockCounter;
      readonly counterB: BlockCounter;
      readonly requestX: Element;
    };

/** Session states, named for what each waits for. */
type State =
  | {
      readonly kind: "awaiting-response";
      readonly messages: 3 | 4;
      readonly nonceA: Uint8Array;
      readonly pairs: readonly DhPair[];
      readonly formA: string;
      readonly deadline: number;
    }
  | {
      readonly kind: "awaiting-alice-identity";
      readonly choice: Choice;
      readonly nonceA: Uint8Array;
      readonly nonceB: Uint8Array;
      readonly y: Uint8Array;
      readonly d: Uint8Array;
      readonly he: Uint8Array;
      readonly counterA: BlockCounter;
      readonly requestX: Element;
      readonly formB: string;
      readonly deadline: number;
    }
  | {
      readonly kind: "awaiting-alice-identity-3";
      readonly choice: Choice;
      readonly nonceA: Uint8Array;
      readonly nonceB: Uint8Array;
      readonly y: Uint8Array;
      readonly e: Uint8Array;
      readonly keys: SessionKeys;
      readonly counterA: BlockCounter;
      readonly counterB: BlockCounter;
      readonly requestX: Element;
      readonly deadline: number;
    }
  | {
      readonly kind: "awaiting-bob-identity";
      readonly choice: Choice;
      readonly nonceA: Uint8Array;
      readonly nonceB: Uint8Array;
      readonly pair: DhPair;
      readonly d: Uint8Array;
      readonly k: Uint8Array;
      readonly macA: Uint8Array;
      readonly counterA: BlockCounter;
      readonly counterB: BlockCounter;
      readonly responseX: Element;
      readonly deadline: number;
    }
  | {
      /** Our asynchronous identity key is signing the SIGMA mac (SignRequest). */
      readonly kind: "awaiting-signature";
      readonly request: SignRequest;
      /** The inputs of sealProof besides the signature. */
      readonly seal: Omit<ProveArgs, "identity">;
      readonly proofMac: ProofMac;
      readonly next: AfterProof;
      readonly deadline: number;
    }
  | { readonly kind: "active"; readonly channel: StanzaChannel; readonly options: NegotiatedOptions }
  | { readonly kind: "awaiting-terminate-ack"; readonly channel: StanzaChannel; readonly deadline: number }
  | { readonly kind: "terminated" };

interface Choice {
  readonly suite: Suite;
  readonly messages: 3 | 4;
  /** How Alice identifies herself / how Bob does. */
  readonly initPubkey: PubkeyMethod;
  readonly respPubkey: PubkeyMethod;
  readonly signAlg?: string;
  readonly options: NegotiatedOptions;
}

const TERMINATE_ACK_TIMEOUT_MS = 30_000;
/** XEP-0280 v1.0 section 7: excluding a message from carbons. */
export const NS_CARBONS = "urn:xmpp:carbons:2";
const MAX_REKEY_FREQ = 2 ** 32 - 1;

export class ESession {
  private state: State;
  private readonly out = new Outbox<ESessionEvent>();
  private profile: Profile;
  private readonly policy: Policy;
  /** XEP-0187: set for offline sessions; `init` until the first stanza carried it. */
  private offline: { readonly role: OfflineRole; init: Element | undefined } | undefined;
  private handlingId: string | undefined;
  /** The sign request the driver has not taken yet (see takeSignRequest). */
  private unsentSignRequest: SignRequest | undefined;
  private signRequestCount = 0;

  // What the session needs of SessionParams for its whole life. The params object itself is
  // not kept: its retained-secret lists would stay reachable for the session's life
  // (docs/scale.md).
  private readonly crypto: CryptoProvider;
  private readonly random: Random;
  private readonly clock: Clock;
  private readonly peerJid: FullJid;
  private readonly threadId: ThreadId;
  /** The profile the caller fixed (an initiator's), or undefined for a detecting responder. */
  private readonly fixedProfile: Profile | undefined;
  private readonly identity: AnySigningIdentity | undefined;
  private readonly verifier: SessionParams["verifier"];
  /**
   * Secrets only the negotiation uses: released when it ends (activation, failure,
   * termination, abort), the retained secrets overwritten with zeros then (XEP-0116 4.7.3 /
   * 4.8.1: a replaced retained secret is destroyed; the others have a copy in the store).
   */
  private secrets: NegotiationSecrets | undefined;
  /**
   * The peer's negotiation message processed last, so that a network duplicate of it is
   * ignored (its slot is `lastInSlot`); once active, only a digest of the message that
   * completed the negotiation is kept.
   */
  private lastIn: { readonly stanza: Element; readonly slot: string } | undefined;
  private lastInDigest: Uint8Array | undefined;

  private constructor(p: SessionParams, initial: (s: ESession) => State) {
    this.crypto = p.crypto;
    this.random = p.random;
    this.clock = p.clock;
    this.peerJid = p.peer;
    this.threadId = p.thread;
    this.fixedProfile = p.profile;
    this.identity = p.identity;
    this.verifier = p.verifier;
    this.secrets = {
      retained: p.retained ?? [],
      retainedOther: p.retainedOther ?? [],
      ...(p.otherSecret !== undefined ? { otherSecret: p.otherSecret } : {}),
    };
    this.profile = p.profile ?? SPEC_PROFILE;
    this.policy = p.policy ?? DEFAULT_POLICY;
    this.state = { kind: "terminated" };
    this.state = initial(this);
  }

  /** Alice: builds and queues the ESession request (message 1). */
  static initiate(p: SessionParams): ESession {
    return new ESession(p, (s) => s.startRequest());
  }

  /** Bob: answers a received ESession request (message 2), or queues the spec's error. */
  static respond(p: SessionParams, request: Element): ESession {
    return new ESession(p, (s) => s.answerRequest(request));
  }

  /**
   * An XEP-0187 offline ESession, already established (src/offline did the key exchange).
   * The receiver's session decrypts only: "Alice MUST NOT send encrypted content within an
   * offline ESession started by Bob" (XEP-0187 section 4).
   */
  static fromOffline(p: SessionParams, a: OfflineActivation): ESession {
    return new ESession(p, (s) => {
      s.offline = { role: a.role, init: a.init };
      s.activate(
        {
          suite: a.suite,
          messages: 3,
          initPubkey: a.initPubkey,
          respPubkey: a.respPubkey,
          options: a.options,
        },
        a.keys,
        a.role === "sender" ? "responder" : "initiator",
        a.counterA,
        a.counterB,
        a.myPrivate,
        a.peerPublic,
        { peerKey: a.peerKey },
      );
      return s.state;
    });
  }

  /** The offline role, for XEP-0187 sessions. */
  get offlineRole(): OfflineRole | undefined {
    return this.offline?.role;
  }

  get thread(): ThreadId {
    return this.threadId;
  }

  get peer(): FullJid {
    return this.peerJid;
  }

  get stateKind(): State["kind"] {
    return this.state.kind;
  }

  get isActive(): boolean {
    return this.state.kind === "active";
  }

  /** The channel's counters for observability (tests, CLI); undefined before activation. */
  get channel(): StanzaChannel | undefined {
    return this.state.kind === "active" || this.state.kind === "awaiting-terminate-ack" ? this.state.channel : undefined;
  }

  poll(): Output<ESessionEvent> | undefined {
    return this.out.poll();
  }

  drain(): Output<ESessionEvent>[] {
    return this.out.drain();
  }

  nextDeadline(): number | undefined {
    const s = this.state;
    switch (s.kind) {
      case "awaiting-response":
      case "awaiting-alice-identity":
      case "awaiting-alice-identity-3":
      case "awaiting-bob-identity":
      case "awaiting-signature":
      case "awaiting-terminate-ack":
        return s.deadline;
      case "active":
        return s.channel.nextDeadline();
      case "terminated":
        return undefined;
      default:
        return assertNever(s, "state");
    }
  }

  onTimer(now: number): void {
    const s = this.state;
    switch (s.kind) {
      case "awaiting-response":
      case "awaiting-alice-identity":
      case "awaiting-alice-identity-3":
      case "awaiting-bob-identity":
      case "awaiting-signature":
        if (now >= s.deadline) this.fail(new ESessionError("unexpected-request", "negotiation timed out"), false);
        return;
      case "awaiting-terminate-ack":
        if (now >= s.deadline) this.finish("us", false);
        return;
      case "active":
        s.channel.onTimer(now);
        return;
      case "terminated":
        return;
      default:
        assertNever(s, "state");
    }
  }

  /**
   * Encrypts and queues an application stanza. Throws ESessionError("not-protected") when
   * the session cannot protect it (not active, or a stanza type not negotiated); the
   * caller must then not send it in the clear.
   */
  send(stanza: Element): void {
    const s = this.state;
    if (s.kind !== "active") throw new ESessionError("not-protected", `session is ${s.kind}`);
    if (this.offline?.role === "receiver") throw new ESessionError("not-protected", "an offline session we accepted is receive-only");
    const before = s.channel.stats.rekeysInitiated;
    const out = s.channel.encrypt(stanza, { to: this.peerJid, thread: this.threadId });
    if (out.name === "message" && this.policy.hints === true) {
      // XEP-0280 section 7 / XEP-0334: a copy for another resource could not be decrypted
      // there (the keys are this device pair's), so no carbon copy, no copy at all; and when
      // the negotiated logging is 'mustnot', no permanent store (archives), while temporary
      // offline storage (XEP-0160) stays allowed so that offline peers still get it.
      out.cnode(el("private", { xmlns: NS_CARBONS }));
      out.cnode(el("no-copy", { xmlns: NS.hints }));
      if (s.options.logging === "mustnot") out.cnode(el("no-permanent-store", { xmlns: NS.hints }));
    }
    if (this.offline?.init) {
      // XEP-0187 3.3: the <init/> form travels in the clear next to the first <c/>.
      out.children.unshift(this.offline.init);
      this.offline.init.parent = out;
      this.offline.init = undefined;
    }
    this.out.send(out);
    if (s.channel.stats.rekeysInitiated > before) this.out.emit({ type: "rekeyed", by: "us" });
  }

  /** Initiates a re-key: the next stanza carries a new DH value; sends an empty one now. */
  rekey(): void {
    const s = this.state;
    if (s.kind !== "active") throw new ESessionError("not-protected", `session is ${s.kind}`);
    if (this.offline) throw new ESessionError("rekey-limit", "offline sessions are not re-keyed");
    if (!s.channel.canRekey()) throw new ESessionError("rekey-limit", "rekey_freq does not allow a re-key yet");
    s.channel.requestRekey();
    this.out.send(s.channel.emptyStanza(this.peerJid, this.threadId));
    this.out.emit({ type: "rekeyed", by: "us" });
  }

  /** Terminates the session (XEP-0217 "ESession Termination"). */
  terminate(): void {
    const s = this.state;
    switch (s.kind) {
      case "active": {
        if (this.offline) {
          // XEP-0187 5: the receiver "SHOULD NOT send a termination stanza back"; a sender
          // that never sent anything has nothing to end on the peer's side.
          if (this.offline.role === "sender" && this.offline.init === undefined)
            this.out.send(s.channel.encrypt(this.terminationStanza(false)));
          this.finish("us", false);
          return;
        }
        if (this.profile.termination === "clear") {
          this.out.send(this.clearTerminate(false));
          this.finish("us", false);
          return;
        }
        this.out.send(s.channel.encrypt(this.terminationStanza(false)));
        this.state = { kind: "awaiting-terminate-ack", channel: s.channel, deadline: this.clock.now() + TERMINATE_ACK_TIMEOUT_MS };
        return;
      }
      case "awaiting-response":
      case "awaiting-alice-identity":
      case "awaiting-alice-identity-3":
      case "awaiting-bob-identity":
      case "awaiting-signature":
        this.out.send(this.clearTerminate(false));
        this.finish("us", false);
        return;
      case "awaiting-terminate-ack":
      case "terminated":
        return;
      default:
        assertNever(s, "state");
    }
  }

  /** Feeds a stanza of this session's thread received from the peer. Never throws. */
  handleStanza(stanza: Element): void {
    // The id of the stanza being handled goes into any error we answer it with, so that the
    // sender's client can tell which stanza was not delivered (docs/offline-and-devices.md).
    this.handlingId = typeof stanza.attrs.id === "string" ? stanza.attrs.id : undefined;
    try {
      this.dispatch(stanza);
    } catch (e) {
      const err =
        e instanceof ESessionError
          ? e
          : e instanceof CryptoError
            ? new ESessionError("bad-dh-value", "the peer's DH value was refused", ["dhkeys"])
            : new ESessionError("bad-request", "malformed negotiation message");
      this.fail(err, this.state.kind !== "terminated" && stanza.attrs.type !== "error");
    }
  }

  /**
   * The signature the negotiation waits for from an asynchronous identity
   * (AsyncSigningIdentity), handed out once: the driver signs `data` with the identity key
   * and calls provideSignature(id, signature) (or signatureFailed(id)). Undefined when
   * nothing is to be signed or the request was already taken. Check it after each input,
   * as the outbox is drained. A synchronous identity never produces one.
   */
  takeSignRequest(): SignRequest | undefined {
    const r = this.unsentSignRequest;
    this.unsentSignRequest = undefined;
    return r;
  }

  /**
   * Feeds the signature of sign request `id`; the negotiation then continues exactly as with
   * a synchronous signer (its outputs are in the outbox). Returns false, doing nothing, when
   * the session no longer waits for that request (ended, timed out, another id). The
   * signature is not checked here: a wrong one fails the peer's verification (XEP-0116
   * 4.4.2 / 4.5.1). Never throws.
   */
  provideSignature(id: string, signature: Uint8Array): boolean {
    const s = this.state;
    if (s.kind !== "awaiting-signature" || s.request.id !== id) return false;
    this.unsentSignRequest = undefined;
    this.handlingId = undefined;
    try {
      if (!(signature instanceof Uint8Array)) throw new ESessionError("not-acceptable", "the signature is not bytes", [this.identityField(s)]);
      this.resume(s.next, sealProof(s.seal, s.proofMac, signature));
    } catch (e) {
      const err = e instanceof ESessionError ? e : new ESessionError("bad-request", "could not complete the identity proof");
      this.fail(err, true);
    }
    return true;
  }

  /**
   * The driver could not sign request `id` (the key is gone, the user refused, the token
   * failed): the negotiation fails with not-acceptable and the peer is told. Returns false,
   * doing nothing, when the session no longer waits for that request.
   */
  signatureFailed(id: string): boolean {
    const s = this.state;
    if (s.kind !== "awaiting-signature" || s.request.id !== id) return false;
    this.handlingId = undefined;
    this.fail(new ESessionError("not-acceptable", "our identity key did not sign", [this.identityField(s)]), true);
    return true;
  }

  /** The form field naming the identification a pending proof is for. */
  private identityField(s: Extract<State, { kind: "awaiting-signature" }>): "init_pubkey" | "resp_pubkey" {
    return s.next.kind === "send-alice-identity" || s.next.kind === "send-alice-identity-3" ? "init_pubkey" : "resp_pubkey";
  }

  private dispatch(stanza: Element): void {
    const s = this.state;
    if (stanza.attrs.type === "error") {
      if (s.kind !== "terminated") this.fail(new ESessionError("not-acceptable", "peer returned an error"), false);
      return;
    }
    // A network duplicate of the negotiation message we processed last is ignored: no second
    // answer and no failure (the first copy was answered). Anything else in that slot is
    // handled, and refused, as before.
    if (this.isDuplicate(stanza)) return;
    if (s.kind !== "active" && s.kind !== "awaiting-terminate-ack" && s.kind !== "terminated") this.remember(stanza);
    switch (s.kind) {
      case "awaiting-response":
        return this.onResponse(s, stanza);
      case "awaiting-alice-identity":
        return this.onAliceIdentity(s, stanza);
      case "awaiting-alice-identity-3":
        return this.onAliceIdentity3(s, stanza);
      case "awaiting-bob-identity":
        return this.onBobIdentity(s, stanza);
      case "awaiting-signature":
        return this.onStanzaWhileSigning(stanza);
      case "active":
      case "awaiting-terminate-ack":
        return this.onEncrypted(s, stanza);
      case "terminated":
        return;
      default:
        assertNever(s, "state");
    }
  }

  /** Whether `stanza` is an exact copy of the peer's negotiation message processed last. */
  private isDuplicate(stanza: Element): boolean {
    const last = this.lastIn;
    if (last !== undefined) {
      // Cheap checks first: a different slot (the next message) or id is no duplicate.
      if (last.stanza.attrs.id !== stanza.attrs.id || slotOf(stanza) !== last.slot) return false;
      return serialize(stanza) === serialize(last.stanza);
    }
    if (this.lastInDigest !== undefined && !stanza.getChild("c", NS.c) && slotOf(stanza) !== undefined)
      return equalBytes(this.digest(stanza), this.lastInDigest);
    return false;
  }

  /** Records the peer's negotiation message about to be processed (see isDuplicate). */
  private remember(stanza: Element): void {
    const slot = slotOf(stanza);
    if (slot !== undefined) this.lastIn = { stanza, slot };
  }

  private digest(stanza: Element): Uint8Array {
    return this.crypto.hash("sha256", utf8(serialize(stanza)));
  }

  /** Drops the negotiation secrets, overwriting the retained secrets with zeros. */
  private releaseSecrets(): void {
    const s = this.secrets;
    this.secrets = undefined;
    if (!s) return;
    for (const r of s.retained) r.secret.fill(0);
    for (const r of s.retainedOther) r.secret.fill(0);
  }

  private ciphers(): readonly CipherAlg[] {
    return (this.policy.cryptAlgs ?? ["aes128-ctr"]).filter((c) => SUPPORTED_CIPHERS.includes(c));
  }

  private hashes(): readonly HashAlg[] {
    return (this.policy.hashAlgs ?? ["sha256"]).filter((h) => SUPPORTED_HASHES.includes(h));
  }

  /** Identification methods we can provide (init_pubkey as Alice, resp_pubkey as Bob). */
  private canProvide(messages: 3 | 4): PubkeyMethod[] {
    const wanted = this.policy.offerPubkey ?? (this.identity ? ["key", "hash", "none"] : ["none"]);
    return wanted.filter((m) => (m === "none" ? messages === 4 : this.identity !== undefined));
  }

  /** Identification methods we accept from the peer, in preference order. */
  private acceptable(messages: 3 | 4): PubkeyMethod[] {
    const wanted = this.policy.acceptPubkey ?? (this.verifier ? ["key", "none"] : ["none"]);
    return wanted.filter((m) => (m === "none" ? messages === 4 : this.verifier !== undefined));
  }

  /** sign_algs we can use: our key's algorithm first, then those we can verify. */
  private signAlgs(): string[] {
    const out: string[] = [];
    if (this.identity) out.push(this.identity.signAlg);
    for (const a of this.verifier?.signAlgs ?? []) if (!out.includes(a)) out.push(a);
    return out;
  }

  // ---- Alice: message 1 -------------------------------------------------------------

  private startRequest(): State {
    const { crypto, random } = this;
    const messages = this.policy.messages ?? 4;
    const nonceA = random.bytes(16);
    // Gajim knows only MODP groups; the modern suite is never offered in its profile.
    const groups = gajimProfile(this.profile) ? this.policy.groups.filter((g) => g !== "x25519") : this.policy.groups;
    const pairs = groups.map((group): DhPair => {
      const x = dhPrivate(crypto, random, group, this.policy.exponentBytes);
      return { group, x, e: crypto.dhPublic(group, x) };
    });
    const gajim = this.profile.name === "gajim";
    const initPubkey = gajim ? ["none", "key", "hash"] : this.canProvide(messages);
    const respPubkey = gajim ? ["none", "key"] : this.acceptable(messages);
    if (initPubkey.length === 0 || respPubkey.length === 0) {
      // XEP-0116 4.2: 'none' MUST NOT be used with 3-message negotiation.
      throw new ESessionError("not-acceptable", "a 3-message negotiation needs public keys on both sides", ["init_pubkey"]);
    }
    const usesKeys = [...initPubkey, ...respPubkey].some((m) => m !== "none");
    const signAlgs = gajim ? ["http://www.w3.org/2000/09/xmldsig#rsa-sha256"] : usesKeys ? this.signAlgs() : [];
    const form = requestForm(
      {
        logging: this.policy.logging,
        disclosure: gajimProfile(this.profile) ? ["never"] : (this.policy.acceptDisclosure ?? ["never"]),
        security: ["e2e"],
        cryptAlgs: gajim ? ["aes128-ctr"] : this.ciphers(),
        hashAlgs: gajim ? ["sha256"] : this.hashes(),
        compress: ["none"],
        stanzas: this.policy.stanzas,
        initPubkey,
        respPubkey,
        ver: gajim ? ["1.0"] : (this.policy.versions ?? SUPPORTED_VERSIONS),
        rekeyFreq: String(gajim ? MAX_REKEY_FREQ : this.policy.rekeyFreq),
        ...(messages === 4 ? { sasAlgs: ["sas28x5"] } : {}),
        ...(signAlgs.length ? { signAlgs } : {}),
        myNonce: nonceA,
        modp: pairs.map((x) => String(x.group)),
        dh:
          messages === 4
            ? { field: "dhhashes", values: pairs.map((x) => dhCommitment(crypto, x.e, x.group)) }
            : { field: "dhkeys", values: pairs.map((x) => x.e) },
      },
      this.profile.formStyle,
    );
    const x = formToXml(form);
    this.out.send(this.stanza(el("feature", { xmlns: NS.featureNeg }, x)));
    this.out.emit({ type: "progress", step: "request-sent" });
    return {
      kind: "awaiting-response",
      messages,
      nonceA,
      pairs,
      formA: normalize(x.children, this.profile.formStyle),
      deadline: this.clock.now() + this.policy.timeoutMs,
    };
  }

  // ---- Bob: message 2 ---------------------------------------------------------------

  private answerRequest(request: Element): State {
    this.out.emit({ type: "progress", step: "request-received" });
    const carried = carriedForm(request);
    this.remember(request);
    try {
      if (!carried || carried.kind !== "feature" || carried.form.type !== "form" || value(carried.form, "FORM_TYPE") !== NS.ssn)
        throw new ESessionError("bad-request", "not an ESession request");
      return this.buildResponse(carried.x, carried.form);
    } catch (e) {
      const err = e instanceof ESessionError ? e : new ESessionError("bad-request", "malformed ESession request");
      // RFC 6120 8.3.1: an error is never answered with an error.
      if (request.attrs.type !== "error") this.out.send(this.errorStanza(request, err));
      this.out.emit({ type: "failed", error: err });
      return { kind: "terminated" };
    }
  }

  private buildResponse(x: Element, form: DataForm): State {
    const { crypto, random } = this;
    const messages: 3 | 4 = form.fields.some((fd) => fd.var === "dhhashes") ? 4 : 3;
    if (messages === 3 && (this.policy.allowThreeMessage ?? true) === false)
      throw new ESessionError("feature-not-implemented", "only 4-message negotiations are accepted", ["dhkeys"]);
    const bad: string[] = [];
    const offeredIn = (name: string) => offered(form.fields.find((fd) => fd.var === name));
    const pick = (name: string, ours: readonly string[]): string => {
      const c = offeredIn(name).find((v) => ours.includes(v));
      if (c === undefined) bad.push(name);
      return c ?? "";
    };
    // Fixed parameters (XEP-0217 table) and negotiable fields (modp, stanzas, ver).
    const accept = value(form, "accept");
    if (accept !== "1" && accept !== "true") bad.push("accept");
    const security = pick("security", ["e2e"]);
    const disclosure = pick("disclosure", ["never"]);
    const loggingOffered = offeredIn("logging");
    const otr = value(form, "otr");
    let logging = this.policy.logging.find((l) => loggingOffered.includes(l));
    if (logging === undefined && loggingOffered.length === 0 && otr !== undefined) logging = "mustnot";
    if (logging === undefined) bad.push("logging");
    const cryptAlgs = pick("crypt_algs", this.ciphers());
    const hashAlgs = pick("hash_algs", this.hashes());
    const compress = pick("compress", ["none"]);
    // resp_pubkey: the first of Alice's acceptable methods we can provide; init_pubkey: what we
    // require of Alice, the first of our acceptable methods she offered (XEP-0116 4.3.2).
    const respOffered = offeredIn("resp_pubkey");
    let respPubkey = respOffered.find((m) => (this.canProvide(messages) as string[]).includes(m));
    const initOffered = offeredIn("init_pubkey");
    let initPubkey = this.acceptable(messages).find((m) => initOffered.includes(m));
    if (respPubkey === undefined) bad.push("resp_pubkey");
    if (initPubkey === undefined) bad.push("init_pubkey");
    // One sign_algs value serves both signatures (XEP-0116 4.2). If none fits the key
    // methods chosen above (e.g. a browser that verifies only Ed25519/P-256 and an
    // RSA-only peer), a 4-message negotiation falls back to 'none' for the direction(s)
    // both sides accept it for, and the users compare the SAS instead; 'none' MUST NOT be
    // used with 3 messages, so there it stays an error.
    const offeredAlgs = offeredIn("sign_algs");
    const mine = this.identity?.signAlg;
    const canVerify = this.verifier?.signAlgs ?? [];
    // Alice signs with the algorithm she lists first (her key's: our offers and Gajim's both
    // put it there; XEP-0116 leaves the order open), so a value we could verify but her key
    // cannot produce is not chosen for her signature.
    const aliceSigns = offeredAlgs[0];
    const algFor = (resp: string, init: string): string | undefined =>
      resp === "none" && init === "none"
        ? value(form, "sign_algs")
        : offeredAlgs.find((a) => (resp === "none" || a === mine) && (init === "none" || (a === aliceSigns && canVerify.includes(a))));
    let signAlgs = respPubkey !== undefined && initPubkey !== undefined ? algFor(respPubkey, initPubkey) : value(form, "sign_algs");
    if (respPubkey !== undefined && initPubkey !== undefined && (respPubkey !== "none" || initPubkey !== "none") && signAlgs === undefined) {
      const noneForInit = initOffered.includes("none") && this.acceptable(messages).includes("none");
      const noneForResp = respOffered.includes("none") && (this.canProvide(messages) as string[]).includes("none");
      const fallbacks: Array<[string, string]> = [];
      if (messages === 4 && noneForInit) fallbacks.push([respPubkey, "none"]);
      if (messages === 4 && noneForResp) fallbacks.push(["none", initPubkey]);
      if (messages === 4 && noneForInit && noneForResp) fallbacks.push(["none", "none"]);
      const usable = fallbacks.find(([r, i]) => (r === "none" && i === "none") || algFor(r, i) !== undefined);
      if (usable) {
        [respPubkey, initPubkey] = usable as [PubkeyMethod, PubkeyMethod];
        signAlgs = algFor(respPubkey, initPubkey);
      } else bad.push("sign_algs");
    }
    const ver = pick("ver", SUPPORTED_VERSIONS);
    const sasAlgs = messages === 4 ? pick("sas_algs", ["sas28x5"]) : undefined;
    const stanzasOffered = offeredIn("stanzas");
    const stanzas = this.policy.stanzas.filter((k) => stanzasOffered.includes(k));
    if (stanzas.length === 0) bad.push("stanzas");
    const modpOffered = offeredIn("modp");
    const groupIndex = modpOffered.findIndex((g) => {
      const id = isDhGroup(g);
      return id !== undefined && this.policy.groups.includes(id);
    });
    if (groupIndex < 0) bad.push("modp");
    const rekeyOffered = Number(value(form, "rekey_freq") ?? "1");
    if (!Number.isInteger(rekeyOffered) || rekeyOffered < 1 || rekeyOffered > MAX_REKEY_FREQ) bad.push("rekey_freq");
    if (bad.length) {
      const unsupported = bad.some((b) => ["crypt_algs", "hash_algs", "compress", "sas_algs", "sign_algs"].includes(b));
      throw new ESessionError(unsupported ? "feature-not-implemented" : "not-acceptable", "unsupported options", bad);
    }
    const group = isDhGroup(modpOffered[groupIndex] ?? "") ?? 14;
    const dhValues = b64Values(form, messages === 4 ? "dhhashes" : "dhkeys");
    const alicesDh = dhValues[groupIndex];
    if (!alicesDh || (messages === 4 && alicesDh.length !== 32))
      throw new ESessionError("bad-request", "dh values do not match modp", [messages === 4 ? "dhhashes" : "dhkeys"]);
    if (messages === 3 && !dhValueInRange(crypto, group, alicesDh)) throw new ESessionError("feature-not-implemented", "e out of range", ["dhkeys"]);
    const nonceA = b64Field(form, "my_nonce");
    // Our nonce mirrors the initiator's length (Gajim used 8 bytes), within 8..32 bytes.
    const nonceB = random.bytes(Math.min(32, Math.max(8, nonceA.length)));
    const counterA = random.bytes(16);
    const y = dhPrivate(crypto, random, group, this.policy.exponentBytes);
    const d = crypto.dhPublic(group, y);
    const rekeyFreq = Math.max(rekeyOffered, this.policy.rekeyFreq);
    const suite: Suite = { hash: hashAlgs as HashAlg, cipher: cryptAlgs as CipherAlg, group };
    const choice: Choice = {
      suite,
      messages,
      initPubkey: initPubkey ?? "none",
      respPubkey: (respPubkey ?? "none") as PubkeyMethod,
      ...(signAlgs !== undefined ? { signAlg: signAlgs } : {}),
      options: {
        group,
        cipher: suite.cipher,
        hash: suite.hash,
        messages,
        stanzas,
        logging: logging ?? "mustnot",
        disclosure,
        rekeyFreq,
        profile: this.profile.name,
      },
    };
    const response = responseForm(
      {
        accept: true,
        logging: logging ?? "mustnot",
        disclosure,
        security,
        cryptAlgs,
        hashAlgs,
        compress,
        stanzas,
        initPubkey: choice.initPubkey,
        respPubkey: choice.respPubkey,
        ver,
        rekeyFreq: String(rekeyFreq),
        ...(sasAlgs !== undefined ? { sasAlgs } : {}),
        ...(signAlgs !== undefined ? { signAlgs } : {}),
        modp: String(group),
        myNonce: nonceB,
        dhkeys: d,
        counter: counterA,
        nonce: nonceA,
      },
      fieldOrder(x),
    );
    const formB = normalize(formToXml(response).children, "spec");
    const cA = BlockCounter.fromBytes(counterA);
    if (messages === 3) {
      // SIGMA-I (XEP-0116 4.3.3-4.3.4): keys now, Bob's identity in the response.
      const k = dhSecret(crypto, suite, y, alicesDh);
      const keys = sessionKeys(crypto, suite, this.profile, k);
      wipe(k);
      const counterB = cA.flipTopBit();
      this.proveThen(
        choice,
        keys.responder,
        counterB,
        { mac: { nonceFirst: nonceA, nonceSecond: nonceB, dh: d, forms: [formB] }, method: choice.respPubkey, field: "resp_pubkey" },
        this.clock.now() + this.policy.timeoutMs,
        { kind: "send-bob-response-3", response, choice, nonceA, nonceB, y, e: alicesDh, keys, counterA: cA, counterB, requestX: x },
      );
      return this.state;
    }
    this.out.send(this.stanza(wrapFeature(response)));
    this.out.emit({ type: "progress", step: "response-sent" });
    return {
      kind: "awaiting-alice-identity",
      choice,
      nonceA,
      nonceB,
      y,
      d,
      he: alicesDh,
      counterA: cA,
      requestX: x,
      formB,
      deadline: this.clock.now() + this.policy.timeoutMs,
    };
  }

  // ---- Alice: message 3 -------------------------------------------------------------

  private onResponse(s: Extract<State, { kind: "awaiting-response" }>, stanza: Element): void {
    const carried = carriedForm(stanza);
    if (!carried || carried.kind !== "feature") throw new ESessionError("unexpected-request", "expected an ESession response");
    const form = carried.form;
    if (value(form, "FORM_TYPE") !== NS.ssn) throw new ESessionError("bad-request", "FORM_TYPE");
    const accept = value(form, "accept");
    if (accept === "0" || accept === "false") {
      this.fail(new ESessionError("not-acceptable", "peer declined the session"), false);
      return;
    }
    this.out.emit({ type: "progress", step: "response-received" });
    const { crypto } = this;
    const gajim = this.profile.name === "gajim";
    const bad: string[] = [];
    const check = (name: string, allowed: readonly string[]): string => {
      const v = value(form, name);
      if (v === undefined || !allowed.includes(v)) bad.push(name);
      return v ?? "";
    };
    check("security", ["e2e"]);
    const disclosure = check("disclosure", this.policy.acceptDisclosure ?? ["never"]);
    const logging = check("logging", this.policy.logging);
    const cipher = check("crypt_algs", gajim ? ["aes128-ctr"] : this.ciphers()) as CipherAlg;
    const hash = check("hash_algs", gajim ? ["sha256"] : this.hashes()) as HashAlg;
    check("compress", ["none"]);
    if (s.messages === 4) check("sas_algs", ["sas28x5"]);
    check("ver", (this.policy.versions ?? SUPPORTED_VERSIONS).filter((v) => SUPPORTED_VERSIONS.includes(v)));
    // init_pubkey is what Bob requires of us; resp_pubkey what he provides.
    const initPubkey = check("init_pubkey", gajim ? ["none"] : this.canProvide(s.messages)) as PubkeyMethod;
    const respPubkey = check("resp_pubkey", gajim ? ["none"] : this.acceptable(s.messages)) as PubkeyMethod;
    let signAlg: string | undefined;
    if (initPubkey !== "none" || respPubkey !== "none") {
      signAlg = value(form, "sign_algs");
      const okSign = initPubkey === "none" || signAlg === this.identity?.signAlg;
      const okVerify = respPubkey === "none" || (signAlg !== undefined && (this.verifier?.signAlgs ?? []).includes(signAlg));
      if (signAlg === undefined || !okSign || !okVerify) bad.push("sign_algs");
    }
    const groupStr = check(
      "modp",
      s.pairs.map((x) => String(x.group)),
    );
    const stanzas = (form.fields.find((fd) => fd.var === "stanzas")?.values ?? []) as string[];
    if (stanzas.length === 0 || !stanzas.every((k) => (this.policy.stanzas as readonly string[]).includes(k))) bad.push("stanzas");
    const rekeyFreq = Number(value(form, "rekey_freq") ?? "");
    const askedRekey = gajim ? MAX_REKEY_FREQ : this.policy.rekeyFreq;
    if (!Number.isInteger(rekeyFreq) || rekeyFreq < askedRekey || rekeyFreq > MAX_REKEY_FREQ) bad.push("rekey_freq");
    if (bad.length) throw new ESessionError("not-acceptable", "response options were not offered", bad);
    const nonce = b64Field(form, "nonce");
    if (!equalBytes(nonce, s.nonceA)) throw new ESessionError("bad-request", "nonce does not echo ours", ["nonce"]);
    const pair = s.pairs.find((x) => String(x.group) === groupStr);
    if (!pair) throw new ESessionError("not-acceptable", "modp", ["modp"]);
    const d = b64Field(form, "dhkeys");
    if (!dhValueInRange(crypto, pair.group, d)) throw new ESessionError("bad-dh-value", "d out of range", ["dhkeys"]);
    const counterBytes = b64Field(form, "counter");
    if (counterBytes.length !== 16) throw new ESessionError("bad-request", "counter must be 128 bits", ["counter"]);
    const nonceB = b64Field(form, "my_nonce");
    const suite: Suite = { hash, cipher, group: pair.group };
    const counterA = BlockCounter.fromBytes(counterBytes);
    const counterB = counterA.flipTopBit();
    const choice: Choice = {
      suite,
      messages: s.messages,
      initPubkey,
      respPubkey,
      ...(signAlg !== undefined ? { signAlg } : {}),
      options: { group: pair.group, cipher, hash, messages: s.messages, stanzas: stanzas as StanzaKind[], logging, disclosure, rekeyFreq, profile: this.profile.name },
    };
    for (const other of s.pairs) if (other !== pair) wipe(other.x);
    const k = dhSecret(crypto, suite, pair.x, d);
    if (s.messages === 3) {
      // SIGMA-I: verify Bob's identity now, then prove ours; the session is then active.
      const keys = sessionKeys(crypto, suite, this.profile, k);
      wipe(k);
      const formB = normalize(formChildren(carried.x, ["identity", "mac"]), this.profile.formStyle);
      const peer = this.verifyPeer(choice, keys.responder, counterB, {
        mac: { nonceFirst: s.nonceA, nonceSecond: nonceB, dh: d, forms: [formB] },
        method: respPubkey,
        id: b64Field(form, "identity"),
        m: b64Field(form, "mac"),
      });
      const a2 = aliceIdentityForm({ nonce: nonceB });
      this.proveAlice(choice, keys.initiator, counterA, a2, s, nonceB, pair.e, initPubkey, {
        kind: "send-alice-identity-3",
        a2,
        choice,
        keys,
        counterA,
        counterB,
        x: pair.x,
        d,
        peerKey: peer,
      });
      return;
    }
    // Hiding Alice's identity: mac_A, ID_A, M_A with her keys of the first K (Bob's are
    // never used in a 4-message negotiation: he proves himself with the final keys).
    const prov = directionKeys(crypto, suite, this.profile, k, "Initiator");
    const rshashes = this.rshashes(suite, s.nonceA);
    const a2 = aliceIdentityForm({ nonce: nonceB, rshashes, dhkeys: pair.e });
    this.proveAlice(choice, prov, counterA, a2, s, nonceB, pair.e, initPubkey, {
      kind: "send-alice-identity",
      a2,
      prov,
      choice,
      nonceA: s.nonceA,
      nonceB,
      pair,
      d,
      k,
      counterA,
      counterB,
      responseX: carried.x,
      deadline: s.deadline,
    });
  }

  /**
   * Hiding Alice's identity (XEP-0116 4.4.3): mac_A over N_B, N_A, e, formA and formA2 (her
   * completion form without identity and mac), ID_A and M_A, sent in that form by `next`.
   */
  private proveAlice(
    choice: Choice,
    keys: DirectionKeys,
    counterA: BlockCounter,
    a2: DataForm,
    s: Extract<State, { kind: "awaiting-response" }>,
    nonceB: Uint8Array,
    e: Uint8Array,
    method: PubkeyMethod,
    next: Extract<AfterProof, { kind: "send-alice-identity" | "send-alice-identity-3" }>,
  ): void {
    const formA2 = normalize(formToXml(a2).children, this.profile.formStyle);
    this.proveThen(
      choice,
      keys,
      counterA,
      { mac: { nonceFirst: nonceB, nonceSecond: s.nonceA, dh: e, forms: [s.formA, formA2] }, method, field: "init_pubkey" },
      s.deadline,
      next,
    );
  }

  /**
   * Proves our identity (XEP-0116 4.3.3 / 4.4.3: mac, SIGN(signKey, mac), ID, M), then
   * continues with `next`. A synchronous identity signs here and `next` runs at once; an
   * asynchronous one (AsyncSigningIdentity) is never called: the mac leaves as a
   * SignRequest and the session waits in "awaiting-signature" (until `deadline`) for
   * provideSignature(), which runs `next`.
   */
  private proveThen(
    choice: Choice,
    keys: DirectionKeys,
    counter: BlockCounter,
    a: { readonly mac: MacInput; readonly method: PubkeyMethod; readonly field: "init_pubkey" | "resp_pubkey" },
    deadline: number,
    next: AfterProof,
  ): void {
    const identity = this.identity;
    const seal = { crypto: this.crypto, suite: choice.suite, profile: this.profile, keys, counter, mac: a.mac, method: a.method };
    let pm: ProofMac;
    try {
      pm = proofMac(seal, identity?.keyValue);
    } catch (e) {
      if (e instanceof IdentityError) throw new ESessionError("not-acceptable", "we have no key for the requested identification", [a.field]);
      throw e;
    }
    if (a.method === "none" || !identity) {
      this.resume(next, sealProof(seal, pm, undefined));
      return;
    }
    if (identity.async === true) {
      this.signRequestCount++;
      const request: SignRequest = { id: `sig-${this.signRequestCount}`, data: pm.mac.slice(), signAlg: identity.signAlg };
      this.unsentSignRequest = request;
      this.state = { kind: "awaiting-signature", request, seal, proofMac: pm, next, deadline };
      return;
    }
    const signature: unknown = identity.sign(pm.mac);
    if (!(signature instanceof Uint8Array)) {
      // A signer that returns a Promise without declaring `async: true`: never leave the
      // rejection unhandled, and say what is wrong (no secret is involved).
      if (signature instanceof Promise) signature.catch(() => undefined);
      throw new ESessionError("not-acceptable", "identity.sign returned no bytes (an asynchronous signer must declare async: true)", [a.field]);
    }
    this.resume(next, sealProof(seal, pm, signature));
  }

  /** The rest of the step that needed our identity proof. */
  private resume(next: AfterProof, proof: Proof): void {
    switch (next.kind) {
      case "send-alice-identity":
        this.out.send(this.stanza(wrapFeature(withIdentity(next.a2, proof.id, proof.m))));
        this.out.emit({ type: "progress", step: "identity-sent" });
        wipe(next.prov.kc, next.prov.km, next.prov.ks);
        this.state = {
          kind: "awaiting-bob-identity",
          choice: next.choice,
          nonceA: next.nonceA,
          nonceB: next.nonceB,
          pair: next.pair,
          d: next.d,
          k: next.k,
          macA: proof.m,
          counterA: next.counterA,
          counterB: next.counterB,
          responseX: next.responseX,
          deadline: next.deadline,
        };
        return;
      case "send-alice-identity-3":
        this.out.send(this.stanza(wrapFeature(withIdentity(next.a2, proof.id, proof.m))));
        this.out.emit({ type: "progress", step: "identity-sent" });
        this.activate(next.choice, next.keys, "initiator", next.counterA, next.counterB, next.x, next.d, { peerKey: next.peerKey });
        return;
      case "send-bob-identity":
        this.out.send(this.stanza(wrapInit(withIdentity(next.b2, proof.id, proof.m))));
        this.activate(next.choice, next.keys, "responder", next.counterA, next.counterB, next.y, next.e, {
          sas: next.sas,
          retained: next.retained,
          srs: next.srs,
          peerKey: next.peerKey,
        });
        return;
      case "send-bob-response-3":
        this.out.send(this.stanza(wrapFeature(withIdentity(next.response, proof.id, proof.m))));
        this.out.emit({ type: "progress", step: "response-sent" });
        this.state = {
          kind: "awaiting-alice-identity-3",
          choice: next.choice,
          nonceA: next.nonceA,
          nonceB: next.nonceB,
          y: next.y,
          e: next.e,
          keys: next.keys,
          counterA: next.counterA,
          counterB: next.counterB,
          requestX: next.requestX,
          deadline: this.clock.now() + this.policy.timeoutMs,
        };
        return;
      default:
        assertNever(next, "after-proof step");
    }
  }

  /** Secrets a pending step holds, destroyed if the session ends before it runs. */
  private wipePending(s: Extract<State, { kind: "awaiting-signature" }>): void {
    const next = s.next;
    wipe(s.seal.keys.kc, s.seal.keys.km, s.seal.keys.ks);
    s.seal.counter.wipe();
    next.counterA.wipe();
    next.counterB.wipe();
    switch (next.kind) {
      case "send-alice-identity":
        wipe(next.k, next.pair.x);
        return;
      case "send-alice-identity-3":
        wipe(next.x);
        wipeKeys(next.keys);
        return;
      case "send-bob-identity":
        wipe(next.y, next.retained);
        wipeKeys(next.keys);
        return;
      case "send-bob-response-3":
        wipe(next.y);
        wipeKeys(next.keys);
        return;
      default:
        assertNever(next, "after-proof step");
    }
  }

  /**
   * While our signature is pending the peer has nothing to send: a termination ends the
   * session, anything else is out of order (XEP-0155 / XEP-0217 message sequence).
   */
  private onStanzaWhileSigning(stanza: Element): void {
    const carried = carriedForm(stanza);
    if (carried && isTermination([el("feature", { xmlns: NS.featureNeg }, carried.x)]).terminate) {
      this.finish("peer", false);
      return;
    }
    throw new ESessionError("unexpected-request", "a negotiation message arrived while our signature was pending");
  }

  private verifyPeer(
    choice: Choice,
    keys: DirectionKeys,
    counter: BlockCounter,
    a: { readonly mac: MacInput; readonly method: PubkeyMethod; readonly id: Uint8Array; readonly m: Uint8Array; readonly mChecked?: boolean; readonly profile?: Profile },
  ): PeerKey | undefined {
    try {
      const r = verify({
        crypto: this.crypto,
        suite: choice.suite,
        profile: a.profile ?? this.profile,
        keys,
        counter,
        mac: a.mac,
        method: a.method,
        id: a.id,
        m: a.m,
        ...(a.mChecked ? { mChecked: true } : {}),
        ...(choice.signAlg !== undefined ? { signAlg: choice.signAlg } : {}),
        ...(this.verifier ? { verifier: this.verifier } : {}),
      });
      if (r.peerKey && this.verifier?.accept && !this.verifier.accept(r.peerKey))
        throw new ESessionError("identity-mismatch", "the peer's key is not trusted", ["identity"]);
      return r.peerKey;
    } catch (e) {
      if (e instanceof IdentityError) throw new ESessionError("identity-mismatch", e.reason, [e.reason === "bad-mac" ? "mac" : "identity"]);
      throw e;
    }
  }

  /** rshashes: HMAC(N_A, RS) per retained secret, plus random decoys (row 12). */
  private rshashes(suite: Suite, nonceA: Uint8Array): Uint8Array[] {
    const { crypto, random } = this;
    const real = (this.secrets?.retained ?? []).map((r) => retainedSecretHash(crypto, suite, nonceA, r.secret));
    const decoys =
      this.profile.rshashDecoys === "gajim" ? (real.length ? 0 : 1) : 2 + ((random.bytes(1)[0] ?? 0) % 2);
    const all = [...real];
    for (let i = 0; i < decoys; i++) all.push(random.bytes(HASH_BYTES[suite.hash]));
    // Shuffle so that position reveals nothing.
    for (let i = all.length - 1; i > 0; i--) {
      const j = (random.bytes(1)[0] ?? 0) % (i + 1);
      const t = all[i];
      const u = all[j];
      if (t && u) {
        all[i] = u;
        all[j] = t;
      }
    }
    return this.profile.rshashDecoys === "gajim" ? [...real, ...all.filter((x) => !real.includes(x))] : all;
  }

  // ---- Bob: 3-message, verifying Alice ------------------------------------------------

  private onAliceIdentity3(s: Extract<State, { kind: "awaiting-alice-identity-3" }>, stanza: Element): void {
    const carried = carriedForm(stanza);
    if (!carried || carried.kind !== "feature" || carried.form.type !== "result")
      throw new ESessionError("unexpected-request", "expected Alice's identity");
    const form = carried.form;
    this.out.emit({ type: "progress", step: "identity-received" });
    if (!equalBytes(b64Field(form, "nonce"), s.nonceB)) throw new ESessionError("bad-request", "nonce", ["nonce"]);
    const formA = normalize(s.requestX.children, this.profile.formStyle);
    const formA2 = normalize(formChildren(carried.x, ["identity", "mac"]), this.profile.formStyle);
    const counterA = s.counterA.clone();
    const peer = this.verifyPeer(s.choice, s.keys.initiator, counterA, {
      mac: { nonceFirst: s.nonceB, nonceSecond: s.nonceA, dh: s.e, forms: [formA, formA2] },
      method: s.choice.initPubkey,
      id: b64Field(form, "identity"),
      m: b64Field(form, "mac"),
    });
    this.activate(s.choice, s.keys, "responder", counterA, s.counterB, s.y, s.e, { peerKey: peer });
  }

  // ---- Bob: message 4 ---------------------------------------------------------------

  private onAliceIdentity(s: Extract<State, { kind: "awaiting-alice-identity" }>, stanza: Element): void {
    const carried = carriedForm(stanza);
    if (!carried || carried.kind !== "feature" || carried.form.type !== "result")
      throw new ESessionError("unexpected-request", "expected Alice's identity");
    const form = carried.form;
    this.out.emit({ type: "progress", step: "identity-received" });
    const { crypto } = this;
    const suite = s.choice.suite;
    if (!equalBytes(b64Field(form, "nonce"), s.nonceB)) throw new ESessionError("bad-request", "nonce", ["nonce"]);
    const e = b64Field(form, "dhkeys");
    if (!equalBytes(dhCommitment(crypto, e, suite.group), s.he)) throw new ESessionError("bad-dh-value", "e does not match its commitment", ["dhkeys"]);
    if (!dhValueInRange(crypto, suite.group, e)) throw new ESessionError("bad-dh-value", "e out of range", ["dhkeys"]);
    const idA = b64Field(form, "identity");
    const mA = b64Field(form, "mac");
    const k = dhSecret(crypto, suite, s.y, e);
    // Alice's keys of the first K, derived once for every candidate profile.
    const prov = new InitiatorKeys(crypto, suite, k, suite.cipher);
    // M_A is profile-independent (KM is the full HMAC): check it before anything else.
    if (!equalBytes(identityMac(crypto, suite, prov.km, s.counterA.mpi(), idA), mA)) {
      prov.wipe();
      wipe(k);
      throw new ESessionError("identity-mismatch", "M_A does not verify", ["mac"]);
    }
    // Detect the initiator's profile: accept only the reading whose mac_A verifies.
    let found: { profile: Profile; counter: BlockCounter; peerKey: PeerKey | undefined } | undefined;
    let lastError: ESessionError | undefined;
    // Gajim only ever spoke SHA-256 / AES-128 over MODP groups: only then is its reading possible.
    const gajimSuite = suite.hash === "sha256" && suite.cipher === "aes128-ctr" && suite.group !== "x25519";
    const candidates = this.fixedProfile ? [this.fixedProfile] : DETECTABLE_PROFILES.filter((pr) => gajimSuite || pr.name !== "gajim");
    for (const profile of candidates) {
      const counter = s.counterA.clone();
      const formA = normalize(s.requestX.children, profile.formStyle);
      const formA2 = normalize(formChildren(carried.x, ["identity", "mac"]), profile.formStyle);
      try {
        const peerKey = this.verifyPeer(s.choice, prov.forProfile(profile), counter, {
          mac: { nonceFirst: s.nonceB, nonceSecond: s.nonceA, dh: e, forms: [formA, formA2] },
          method: s.choice.initPubkey,
          id: idA,
          m: mA,
          mChecked: true,
          profile,
        });
        found = { profile, counter, peerKey };
        break;
      } catch (err) {
        if (!(err instanceof ESessionError)) throw err;
        lastError = err;
      }
    }
    prov.wipe();
    if (!found) {
      wipe(k);
      throw lastError ?? new ESessionError("identity-mismatch", "mac_A does not verify", ["identity"]);
    }
    this.profile = found.profile;
    // Shared retained secret: this JID's secrets first, then every other JID's.
    const rshashes = b64Values(form, "rshashes");
    const srs = this.findRetained(suite, s.nonceA, rshashes);
    const kf = finalSecret(crypto, suite, k, srs?.secret, this.secrets?.otherSecret);
    wipe(k);
    const keys = finalSessionKeys(crypto, suite, this.profile, kf);
    const hashLen = HASH_BYTES[suite.hash];
    const srshash = srs ? sharedRetainedSecretHash(crypto, suite, srs.secret) : this.random.bytes(hashLen);
    const b2 = bobIdentityForm({ nonce: s.nonceA, srshash });
    const formB2 = normalize(formToXml(b2).children, this.profile.formStyle);
    const counterB = s.counterA.flipTopBit();
    const sas = sas28x5(crypto, this.profile, mA, s.formB);
    const retained = newRetainedSecret(crypto, suite, kf);
    wipe(kf);
    this.proveThen(
      s.choice,
      keys.responder,
      counterB,
      { mac: { nonceFirst: s.nonceA, nonceSecond: s.nonceB, dh: s.d, forms: [s.formB, formB2] }, method: s.choice.respPubkey, field: "resp_pubkey" },
      s.deadline,
      {
        kind: "send-bob-identity",
        b2,
        choice: { ...s.choice, options: { ...s.choice.options, profile: this.profile.name } },
        keys,
        counterA: found.counter,
        counterB,
        y: s.y,
        e,
        sas,
        retained,
        srs,
        peerKey: found.peerKey,
      },
    );
  }

  private findRetained(suite: Suite, nonceA: Uint8Array, rshashes: readonly Uint8Array[]): RetainedSecretRef | undefined {
    const { crypto } = this;
    for (const list of [this.secrets?.retained ?? [], this.secrets?.retainedOther ?? []]) {
      for (const r of list) {
        const h = retainedSecretHash(crypto, suite, nonceA, r.secret);
        if (rshashes.some((x) => equalBytes(x, h))) return r;
      }
    }
    return undefined;
  }

  // ---- Alice: verifying Bob ---------------------------------------------------------

  private onBobIdentity(s: Extract<State, { kind: "awaiting-bob-identity" }>, stanza: Element): void {
    const carried = carriedForm(stanza);
    if (!carried || carried.kind !== "init") throw new ESessionError("unexpected-request", "expected Bob's identity");
    const form = carried.form;
    this.out.emit({ type: "progress", step: "identity-received" });
    const { crypto } = this;
    const suite = s.choice.suite;
    if (!equalBytes(b64Field(form, "nonce"), s.nonceA)) throw new ESessionError("bad-request", "nonce", ["nonce"]);
    const srshash = b64Field(form, "srshash");
    const srs = (this.secrets?.retained ?? []).find((r) => equalBytes(sharedRetainedSecretHash(crypto, suite, r.secret), srshash));
    const kf = finalSecret(crypto, suite, s.k, srs?.secret, this.secrets?.otherSecret);
    wipe(s.k);
    const keys = finalSessionKeys(crypto, suite, this.profile, kf);
    const counterB = s.counterB.clone();
    const formB = normalize(s.responseX.children, this.profile.formStyle);
    const formB2 = normalize(formChildren(carried.x, ["identity", "mac"]), this.profile.formStyle);
    const peerKey = this.verifyPeer(s.choice, keys.responder, counterB, {
      mac: { nonceFirst: s.nonceA, nonceSecond: s.nonceB, dh: s.d, forms: [formB, formB2] },
      method: s.choice.respPubkey,
      id: b64Field(form, "identity"),
      m: b64Field(form, "mac"),
    });
    const sas = sas28x5(crypto, this.profile, s.macA, formB);
    const rs = newRetainedSecret(crypto, suite, kf);
    wipe(kf);
    this.activate(s.choice, keys, "initiator", s.counterA, counterB, s.pair.x, s.d, { sas, retained: rs, srs, peerKey });
  }

  private activate(
    choice: Choice,
    keys: SessionKeys,
    role: "initiator" | "responder",
    counterA: BlockCounter,
    counterB: BlockCounter,
    myPrivate: Uint8Array,
    peerPublic: Uint8Array,
    result: {
      readonly sas?: string;
      readonly retained?: Uint8Array;
      readonly srs?: RetainedSecretRef | undefined;
      readonly peerKey?: PeerKey | undefined;
    },
  ): void {
    const mine = role === "initiator" ? keys.initiator : keys.responder;
    const theirs = role === "initiator" ? keys.responder : keys.initiator;
    wipe(keys.initiator.ks, keys.responder.ks);
    const channel = new StanzaChannel({
      crypto: this.crypto,
      random: this.random,
      clock: this.clock,
      suite: choice.suite,
      profile: this.profile,
      sendKeys: { kc: mine.kc, km: mine.km },
      recvKeys: { kc: theirs.kc, km: theirs.km },
      sendCounter: role === "initiator" ? counterA : counterB,
      recvCounter: role === "initiator" ? counterB : counterA,
      // The channel takes the keys, counters and our DH private value over (and wipes these).
      myPrivate,
      peerPublic,
      rekeyFreq: choice.options.rekeyFreq,
      stanzas: stanzaSet(choice.options.stanzas),
      ...(this.policy.blockLimit !== undefined ? { blockLimit: this.policy.blockLimit } : {}),
      ...(this.policy.autoRekeyEvery !== undefined && !this.offline ? { autoRekeyEvery: this.policy.autoRekeyEvery } : {}),
      ...(this.policy.exponentBytes !== undefined ? { exponentBytes: this.policy.exponentBytes } : {}),
    });
    this.state = { kind: "active", channel, options: choice.options };
    this.releaseSecrets();
    if (this.lastIn !== undefined) {
      // Only a digest of the message that completed the negotiation stays (duplicates).
      this.lastInDigest = this.digest(this.lastIn.stanza);
      this.lastIn = undefined;
    }
    this.out.emit({ type: "progress", step: "identity-verified" });
    this.out.emit({
      type: "established",
      options: choice.options,
      initPubkey: choice.initPubkey,
      respPubkey: choice.respPubkey,
      retainedSecretMatched: result.srs !== undefined,
      ...(result.sas !== undefined ? { sas: result.sas } : {}),
      ...(result.retained ? { newRetainedSecret: result.retained } : {}),
      ...(result.srs ? { replaces: result.srs.id } : {}),
      ...(result.peerKey ? { peerKey: result.peerKey } : {}),
      ...(this.offline ? { offline: this.offline.role } : {}),
    });
  }

  // ---- Active: XEP-0200 -------------------------------------------------------------

  private onEncrypted(s: Extract<State, { kind: "active" | "awaiting-terminate-ack" }>, stanza: Element): void {
    if (!stanza.getChild("c", NS.c)) {
      // Gajim terminates in the clear (row 17); anything else unencrypted is not accepted.
      const carried = carriedForm(stanza);
      if (carried && isTermination([el("feature", { xmlns: NS.featureNeg }, carried.x)]).terminate) {
        this.finish("peer", false);
        return;
      }
      this.out.emit({
        type: "failed",
        error: new ESessionError("not-protected", `dropped an unencrypted ${stanza.name} inside the session`),
      });
      return;
    }
    const r = s.channel.decrypt(stanza);
    if (!r.ok) {
      this.fail(r.error, true);
      return;
    }
    if (r.value.peerRekeyed) this.out.emit({ type: "rekeyed", by: "peer" });
    const kids = r.value.stanza.children.filter((c): c is Element => typeof c !== "string");
    const t = isTermination(kids);
    if (t.terminate && this.offline) {
      this.finish("peer", false);
      return;
    }
    if (t.terminate) {
      if (t.ack) {
        if (s.kind === "awaiting-terminate-ack") this.finish("us", true);
        return;
      }
      if (s.kind === "active") {
        this.out.send(s.channel.encrypt(this.terminationStanza(true)));
        this.finish("peer", true);
      } else {
        // Both ended at once: acknowledge and finish.
        this.out.send(s.channel.encrypt(this.terminationStanza(true)));
        this.finish("us", true);
      }
      return;
    }
    const hasContent = kids.some((k) => k.name !== "thread");
    // Processing hints and the carbons opt-out we add ourselves are for servers; the offline
    // <init/> was checked when the session was accepted. Anything else stays reported.
    const unauthenticated = r.value.unauthenticated.filter(
      (u) => !((u.name === "init" && u.getNS() === NS.esessionInit && this.offline) || u.getNS() === NS.hints || (u.name === "private" && u.getNS() === NS_CARBONS)),
    );
    if (hasContent) this.out.emit({ type: "stanza", stanza: r.value.stanza, unauthenticated });
  }

  // ---- helpers ----------------------------------------------------------------------

  private terminationStanza(ack: boolean): Element {
    return el("message", { to: this.peerJid, type: "chat" }, terminateFeature(ack), el("thread", {}, this.threadId));
  }

  private clearTerminate(ack: boolean): Element {
    return this.stanza(terminateFeature(ack));
  }

  private stanza(payload: Element): Element {
    return el("message", { to: this.peerJid }, payload, el("thread", {}, this.threadId));
  }

  /** XEP-0116 section 4.4 error (shape shared with XEP-0155, naming the fields). */
  private errorStanza(request: Element, err: ESessionError): Element {
    return negotiationErrorStanza(request, err.stanzaCondition, { style: "xep-0116", fields: err.fields });
  }

  private fail(error: ESessionError, notifyPeer: boolean): void {
    const s = this.state;
    if (s.kind === "terminated") return;
    if (notifyPeer) {
      const e = el("error", { type: "cancel" }, el(error.stanzaCondition, { xmlns: NS.stanzas }));
      this.out.send(el("message", { to: this.peerJid, type: "error", id: this.handlingId }, el("thread", {}, this.threadId), e));
    }
    this.destroy();
    this.out.emit({ type: "failed", error });
    this.out.emit({ type: "terminated", by: "us", acknowledged: false });
  }

  private finish(by: "us" | "peer", acknowledged: boolean): void {
    this.destroy();
    this.out.emit({ type: "terminated", by, acknowledged });
  }

  private destroy(): void {
    const s = this.state;
    switch (s.kind) {
      case "active":
      case "awaiting-terminate-ack":
        s.channel.destroy();
        break;
      case "awaiting-response":
        for (const x of s.pairs) wipe(x.x);
        break;
      case "awaiting-alice-identity":
        wipe(s.y);
        s.counterA.wipe();
        break;
      case "awaiting-alice-identity-3":
        wipe(s.y);
        wipeKeys(s.keys);
        s.counterA.wipe();
        s.counterB.wipe();
        break;
      case "awaiting-bob-identity":
        wipe(s.k, s.pair.x);
        s.counterA.wipe();
        s.counterB.wipe();
        break;
      case "awaiting-signature":
        this.wipePending(s);
        break;
      case "terminated":
        break;
      default:
        assertNever(s, "state");
    }
    this.state = { kind: "terminated" };
    this.unsentSignRequest = undefined;
    this.releaseSecrets();
    this.lastIn = undefined;
    this.lastInDigest?.fill(0);
    this.lastInDigest = undefined;
  }

  /**
   * Discards the session at once, without a word to the peer (a session dropped for a
   * device that went offline, a client shutting down): every key, block counter and
   * Diffie-Hellman secret it holds is overwritten with zeros (XEP-0116 / XEP-0217 "securely
   * destroy all keys"), the retained secrets it was given too, and the state becomes
   * "terminated". Nothing is queued: no stanza, no event; outputs not yet drained are
   * dropped (a new retained secret among them is wiped). Idempotent; never throws.
   */
  abort(): void {
    this.destroy();
    for (const o of this.out.drain()) {
      if (o.kind === "event" && o.event.type === "established" && o.event.newRetainedSecret) o.event.newRetainedSecret.fill(0);
    }
  }
}

/**
 * The slot of a negotiation message: its wrapper and form type (`feature/form` for a
 * request, `feature/submit` a response, `feature/result` Alice's identity, `init/result`
 * Bob's); undefined for anything else.
 */
function slotOf(stanza: Element): string | undefined {
  for (const c of stanza.children) {
    if (typeof c === "string" || (c.name !== "feature" && c.name !== "init")) continue;
    const x = c.getChild("x", NS.data);
    if (x) return `${c.name}/${String(x.attrs.type)}`;
  }
  return undefined;
}

/** One frozen set per combination of stanza kinds, shared by every channel (docs/scale.md). */
const stanzaSets = new Map<string, ReadonlySet<StanzaKind>>();

function stanzaSet(kinds: readonly StanzaKind[]): ReadonlySet<StanzaKind> {
  const key = kinds.join(" ");
  let set = stanzaSets.get(key);
  if (!set) stanzaSets.set(key, (set = new Set(kinds)));
  return set;
}

function gajimProfile(p: Profile): boolean {
  return p.name === "gajim";
}

function req(b: Uint8Array | undefined): Uint8Array {
  if (!b) throw new ESessionError("bad-request", "missing SIGMA key");
  return b;
}

function wipeKeys(k: SessionKeys): void {
  for (const d of [k.initiator, k.responder]) wipe(d.kc, d.km, d.ks);
}

