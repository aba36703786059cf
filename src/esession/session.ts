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
import { equalBytes, wipe } from "../core/bytes.js";
import { Outbox, type Output } from "../core/machine.js";
import { assertNever, type Clock, type FullJid, type Random, type ThreadId } from "../core/types.js";
import { isModpGroup, type CipherAlg, type CryptoProvider, type HashAlg, type ModpGroup } from "../crypto/provider.js";
import { formToXml, type DataForm } from "../forms/codec.js";
import { negotiationErrorStanza } from "../negotiation/codec.js";
import { el, type Element, NS, normalize } from "../xml/index.js";
import { StanzaChannel, type StanzaKind } from "./channel.js";
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
  finalSecret,
  identityMac,
  newRetainedSecret,
  retainedSecretHash,
  sas28x5,
  sessionKeys,
  sharedRetainedSecretHash,
  sigmaMac,
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

export interface Policy {
  /** MODP groups we offer (initiator, in preference order) or accept (responder). */
  readonly groups: readonly ModpGroup[];
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
}

/** What node:crypto serves for XEP-0116 "crypt_algs" and "hash_algs". */
export const SUPPORTED_CIPHERS: readonly CipherAlg[] = ["aes256-ctr", "aes192-ctr", "aes128-ctr"];
export const SUPPORTED_HASHES: readonly HashAlg[] = ["sha256", "sha384", "sha512"];

export const DEFAULT_POLICY: Policy = {
  groups: [14, 5],
  cryptAlgs: ["aes128-ctr", "aes256-ctr"],
  hashAlgs: ["sha256", "sha512"],
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
  /** Retained secrets shared with the peer's bare JID (most recent per client). */
  readonly retained?: readonly RetainedSecretRef[];
  /** Responder: retained secrets with every other JID, for the extended search. */
  readonly retainedOther?: readonly RetainedSecretRef[];
  /** The Other Shared Secret (a password agreed out of band), if any. */
  readonly otherSecret?: Uint8Array;
}

export interface NegotiatedOptions {
  readonly group: ModpGroup;
  readonly cipher: CipherAlg;
  readonly hash: HashAlg;
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
      readonly sas: string;
      readonly options: NegotiatedOptions;
      /** Whether a retained secret from an earlier session was shared (MitM protection). */
      readonly retainedSecretMatched: boolean;
      /** The new retained secret to store, replacing `replaces` (XEP-0217 MUST destroy the old). */
      readonly newRetainedSecret: Uint8Array;
      readonly replaces?: string;
    }
  | { readonly type: "stanza"; readonly stanza: Element; readonly unauthenticated: readonly Element[] }
  | { readonly type: "rekeyed"; readonly by: "us" | "peer" }
  | { readonly type: "terminated"; readonly by: "us" | "peer"; readonly acknowledged: boolean }
  | { readonly type: "failed"; readonly error: ESessionError };

interface DhPair {
  readonly group: ModpGroup;
  readonly x: Uint8Array;
  readonly e: Uint8Array;
}

/** Session states, named for what each waits for. */
type State =
  | {
      readonly kind: "awaiting-response";
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
  | { readonly kind: "active"; readonly channel: StanzaChannel; readonly options: NegotiatedOptions }
  | { readonly kind: "awaiting-terminate-ack"; readonly channel: StanzaChannel; readonly deadline: number }
  | { readonly kind: "terminated" };

interface Choice {
  readonly suite: Suite;
  readonly options: NegotiatedOptions;
}

const TERMINATE_ACK_TIMEOUT_MS = 30_000;
const MAX_REKEY_FREQ = 2 ** 32 - 1;

export class ESession {
  private state: State;
  private readonly out = new Outbox<ESessionEvent>();
  private profile: Profile;
  private readonly policy: Policy;

  private constructor(
    private readonly p: SessionParams,
    initial: (s: ESession) => State,
  ) {
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

  get thread(): ThreadId {
    return this.p.thread;
  }

  get peer(): FullJid {
    return this.p.peer;
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
      case "awaiting-bob-identity":
        return s.deadline;
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
      case "awaiting-bob-identity":
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
    const before = s.channel.stats.rekeysInitiated;
    this.out.send(s.channel.encrypt(stanza, { to: this.p.peer, thread: this.p.thread }));
    if (s.channel.stats.rekeysInitiated > before) this.out.emit({ type: "rekeyed", by: "us" });
  }

  /** Initiates a re-key: the next stanza carries a new DH value; sends an empty one now. */
  rekey(): void {
    const s = this.state;
    if (s.kind !== "active") throw new ESessionError("not-protected", `session is ${s.kind}`);
    if (!s.channel.canRekey()) throw new ESessionError("rekey-limit", "rekey_freq does not allow a re-key yet");
    s.channel.requestRekey();
    this.out.send(s.channel.emptyStanza(this.p.peer, this.p.thread));
    this.out.emit({ type: "rekeyed", by: "us" });
  }

  /** Terminates the session (XEP-0217 "ESession Termination"). */
  terminate(): void {
    const s = this.state;
    switch (s.kind) {
      case "active": {
        if (this.profile.termination === "clear") {
          this.out.send(this.clearTerminate(false));
          this.finish("us", false);
          return;
        }
        this.out.send(s.channel.encrypt(this.terminationStanza(false)));
        this.state = { kind: "awaiting-terminate-ack", channel: s.channel, deadline: this.p.clock.now() + TERMINATE_ACK_TIMEOUT_MS };
        return;
      }
      case "awaiting-response":
      case "awaiting-alice-identity":
      case "awaiting-bob-identity":
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
    try {
      this.dispatch(stanza);
    } catch (e) {
      const err = e instanceof ESessionError ? e : new ESessionError("bad-request", "malformed negotiation message");
      this.fail(err, this.state.kind !== "terminated" && stanza.attrs.type !== "error");
    }
  }

  private dispatch(stanza: Element): void {
    const s = this.state;
    if (stanza.attrs.type === "error") {
      if (s.kind !== "terminated") this.fail(new ESessionError("not-acceptable", "peer returned an error"), false);
      return;
    }
    switch (s.kind) {
      case "awaiting-response":
        return this.onResponse(s, stanza);
      case "awaiting-alice-identity":
        return this.onAliceIdentity(s, stanza);
      case "awaiting-bob-identity":
        return this.onBobIdentity(s, stanza);
      case "active":
      case "awaiting-terminate-ack":
        return this.onEncrypted(s, stanza);
      case "terminated":
        return;
      default:
        assertNever(s, "state");
    }
  }

  private ciphers(): readonly CipherAlg[] {
    return (this.policy.cryptAlgs ?? ["aes128-ctr"]).filter((c) => SUPPORTED_CIPHERS.includes(c));
  }

  private hashes(): readonly HashAlg[] {
    return (this.policy.hashAlgs ?? ["sha256"]).filter((h) => SUPPORTED_HASHES.includes(h));
  }

  // ---- Alice: message 1 -------------------------------------------------------------

  private startRequest(): State {
    const { crypto, random } = this.p;
    const nonceA = random.bytes(16);
    const pairs = this.policy.groups.map((group): DhPair => {
      const x = dhPrivate(crypto, random, group, this.policy.exponentBytes);
      return { group, x, e: crypto.dhPublic(group, x) };
    });
    const gajim = this.profile.name === "gajim";
    const form = requestForm(
      {
        logging: this.policy.logging,
        disclosure: ["never"],
        security: ["e2e"],
        cryptAlgs: gajim ? ["aes128-ctr"] : this.ciphers(),
        hashAlgs: gajim ? ["sha256"] : this.hashes(),
        compress: ["none"],
        stanzas: this.policy.stanzas,
        initPubkey: gajim ? ["none", "key", "hash"] : ["none"],
        respPubkey: gajim ? ["none", "key"] : ["none"],
        ver: ["1.0"],
        rekeyFreq: String(gajim ? MAX_REKEY_FREQ : this.policy.rekeyFreq),
        sasAlgs: ["sas28x5"],
        ...(gajim ? { signAlgs: ["http://www.w3.org/2000/09/xmldsig#rsa-sha256"] } : {}),
        myNonce: nonceA,
        modp: pairs.map((x) => String(x.group)),
        dhhashes: pairs.map((x) => dhCommitment(crypto, x.e)),
      },
      this.profile.formStyle,
    );
    const x = formToXml(form);
    this.out.send(this.stanza(el("feature", { xmlns: NS.featureNeg }, x)));
    this.out.emit({ type: "progress", step: "request-sent" });
    return {
      kind: "awaiting-response",
      nonceA,
      pairs,
      formA: normalize(x.children, this.profile.formStyle),
      deadline: this.p.clock.now() + this.policy.timeoutMs,
    };
  }

  // ---- Bob: message 2 ---------------------------------------------------------------

  private answerRequest(request: Element): State {
    this.out.emit({ type: "progress", step: "request-received" });
    const carried = carriedForm(request);
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
    const { crypto, random } = this.p;
    const bad: string[] = [];
    const pick = (name: string, ours: readonly string[]): string => {
      const o = offered(form.fields.find((fd) => fd.var === name));
      const c = o.find((v) => ours.includes(v));
      if (c === undefined) bad.push(name);
      return c ?? "";
    };
    // Fixed parameters (XEP-0217 table) and negotiable fields (modp, stanzas, ver).
    const accept = value(form, "accept");
    if (accept !== "1" && accept !== "true") bad.push("accept");
    const security = pick("security", ["e2e"]);
    const disclosure = pick("disclosure", ["never"]);
    const loggingOffered = offered(form.fields.find((fd) => fd.var === "logging"));
    const otr = value(form, "otr");
    let logging = this.policy.logging.find((l) => loggingOffered.includes(l));
    if (logging === undefined && loggingOffered.length === 0 && otr !== undefined) logging = "mustnot";
    if (logging === undefined) bad.push("logging");
    const cryptAlgs = pick("crypt_algs", this.ciphers());
    const hashAlgs = pick("hash_algs", this.hashes());
    const compress = pick("compress", ["none"]);
    const initPubkey = pick("init_pubkey", ["none"]);
    const respPubkey = pick("resp_pubkey", ["none"]);
    const ver = pick("ver", ["1.0"]);
    const sasAlgs = pick("sas_algs", ["sas28x5"]);
    const stanzasOffered = offered(form.fields.find((fd) => fd.var === "stanzas"));
    const stanzas = this.policy.stanzas.filter((k) => stanzasOffered.includes(k));
    if (stanzas.length === 0) bad.push("stanzas");
    const modpOffered = offered(form.fields.find((fd) => fd.var === "modp"));
    const groupIndex = modpOffered.findIndex((g) => isModpGroup(Number(g)) && this.policy.groups.includes(Number(g) as ModpGroup));
    if (groupIndex < 0) bad.push("modp");
    const rekeyOffered = Number(value(form, "rekey_freq") ?? "1");
    if (!Number.isInteger(rekeyOffered) || rekeyOffered < 1 || rekeyOffered > MAX_REKEY_FREQ) bad.push("rekey_freq");
    if (bad.length) {
      const unsupported = bad.some((b) => ["crypt_algs", "hash_algs", "compress", "sas_algs", "init_pubkey", "resp_pubkey"].includes(b));
      throw new ESessionError(unsupported ? "feature-not-implemented" : "not-acceptable", "unsupported options", bad);
    }
    const group = Number(modpOffered[groupIndex]) as ModpGroup;
    const hes = b64Values(form, "dhhashes");
    const he = hes[groupIndex];
    if (!he || he.length !== 32) throw new ESessionError("bad-request", "dhhashes do not match modp", ["dhhashes"]);
    const nonceA = b64Field(form, "my_nonce");
    const signAlgs = value(form, "sign_algs");
    // Our nonce mirrors the initiator's length (Gajim used 8 bytes), within 8..32 bytes.
    const nonceB = random.bytes(Math.min(32, Math.max(8, nonceA.length)));
    const counterA = random.bytes(16);
    const y = dhPrivate(crypto, random, group, this.policy.exponentBytes);
    const d = crypto.dhPublic(group, y);
    const rekeyFreq = Math.max(rekeyOffered, this.policy.rekeyFreq);
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
        initPubkey,
        respPubkey,
        ver,
        rekeyFreq: String(rekeyFreq),
        sasAlgs,
        ...(signAlgs !== undefined ? { signAlgs } : {}),
        modp: String(group),
        myNonce: nonceB,
        dhkeys: d,
        counter: counterA,
        nonce: nonceA,
      },
      fieldOrder(x),
    );
    const rx = formToXml(response);
    this.out.send(this.stanza(el("feature", { xmlns: NS.featureNeg }, rx)));
    this.out.emit({ type: "progress", step: "response-sent" });
    return {
      kind: "awaiting-alice-identity",
      choice: {
        suite: { hash: hashAlgs as HashAlg, cipher: cryptAlgs as CipherAlg, group },
        options: {
          group,
          cipher: cryptAlgs as CipherAlg,
          hash: hashAlgs as HashAlg,
          stanzas,
          logging: logging ?? "mustnot",
          disclosure,
          rekeyFreq,
          profile: this.profile.name,
        },
      },
      nonceA,
      nonceB,
      y,
      d,
      he,
      counterA: BlockCounter.fromBytes(counterA),
      requestX: x,
      formB: normalize(rx.children, "spec"),
      deadline: this.p.clock.now() + this.policy.timeoutMs,
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
    const { crypto } = this.p;
    const bad: string[] = [];
    const check = (name: string, allowed: readonly string[]): string => {
      const v = value(form, name);
      if (v === undefined || !allowed.includes(v)) bad.push(name);
      return v ?? "";
    };
    check("security", ["e2e"]);
    const disclosure = check("disclosure", ["never"]);
    const logging = check("logging", this.policy.logging);
    const cipher = check("crypt_algs", this.profile.name === "gajim" ? ["aes128-ctr"] : this.ciphers()) as CipherAlg;
    const hash = check("hash_algs", this.profile.name === "gajim" ? ["sha256"] : this.hashes()) as HashAlg;
    check("compress", ["none"]);
    check("sas_algs", ["sas28x5"]);
    check("ver", ["1.0"]);
    check("init_pubkey", ["none"]);
    check("resp_pubkey", ["none"]);
    const groupStr = check(
      "modp",
      s.pairs.map((x) => String(x.group)),
    );
    const stanzas = (form.fields.find((fd) => fd.var === "stanzas")?.values ?? []) as string[];
    if (stanzas.length === 0 || !stanzas.every((k) => (this.policy.stanzas as readonly string[]).includes(k))) bad.push("stanzas");
    const rekeyFreq = Number(value(form, "rekey_freq") ?? "");
    const askedRekey = this.profile.name === "gajim" ? MAX_REKEY_FREQ : this.policy.rekeyFreq;
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
    const k = dhSecret(crypto, suite, pair.x, d);
    const prov = sessionKeys(crypto, suite, this.profile, k);
    // Hiding Alice's identity: mac_A, ID_A, M_A.
    const rshashes = this.rshashes(suite, s.nonceA);
    const a2 = aliceIdentityForm({ nonce: nonceB, rshashes, dhkeys: pair.e });
    const a2x = formToXml(a2);
    const formA2 = normalize(a2x.children, this.profile.formStyle);
    const macA = sigmaMac(crypto, suite, req(prov.initiator.ks), nonceB, s.nonceA, pair.e, s.formA, formA2);
    const cBefore = counterA.mpi();
    const idA = ctrCrypt(crypto, this.profile, prov.initiator.kc, counterA, macA);
    const mA = identityMac(crypto, suite, prov.initiator.km, cBefore, idA);
    this.out.send(this.stanza(wrapFeature(withIdentity(a2, idA, mA))));
    this.out.emit({ type: "progress", step: "identity-sent" });
    for (const other of s.pairs) if (other !== pair) wipe(other.x);
    this.state = {
      kind: "awaiting-bob-identity",
      choice: {
        suite,
        options: {
          group: pair.group,
          cipher,
          hash,
          stanzas: stanzas as StanzaKind[],
          logging,
          disclosure,
          rekeyFreq,
          profile: this.profile.name,
        },
      },
      nonceA: s.nonceA,
      nonceB,
      pair,
      d,
      k,
      macA: mA,
      counterA,
      counterB,
      responseX: carried.x,
      deadline: s.deadline,
    };
  }

  /** rshashes: HMAC(N_A, RS) per retained secret, plus random decoys (row 12). */
  private rshashes(suite: Suite, nonceA: Uint8Array): Uint8Array[] {
    const { crypto, random } = this.p;
    const real = (this.p.retained ?? []).map((r) => retainedSecretHash(crypto, suite, nonceA, r.secret));
    const decoys =
      this.profile.rshashDecoys === "gajim" ? (real.length ? 0 : 1) : 2 + ((random.bytes(1)[0] ?? 0) % 2);
    const all = [...real];
    for (let i = 0; i < decoys; i++) all.push(random.bytes(32));
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

  // ---- Bob: message 4 ---------------------------------------------------------------

  private onAliceIdentity(s: Extract<State, { kind: "awaiting-alice-identity" }>, stanza: Element): void {
    const carried = carriedForm(stanza);
    if (!carried || carried.kind !== "feature" || carried.form.type !== "result")
      throw new ESessionError("unexpected-request", "expected Alice's identity");
    const form = carried.form;
    this.out.emit({ type: "progress", step: "identity-received" });
    const { crypto } = this.p;
    const suite = s.choice.suite;
    if (!equalBytes(b64Field(form, "nonce"), s.nonceB)) throw new ESessionError("bad-request", "nonce", ["nonce"]);
    const e = b64Field(form, "dhkeys");
    if (!equalBytes(dhCommitment(crypto, e), s.he)) throw new ESessionError("bad-dh-value", "e does not match its commitment", ["dhkeys"]);
    if (!dhValueInRange(crypto, suite.group, e)) throw new ESessionError("bad-dh-value", "e out of range", ["dhkeys"]);
    const idA = b64Field(form, "identity");
    const mA = b64Field(form, "mac");
    const k = dhSecret(crypto, suite, s.y, e);
    // M_A is profile-independent (KM is the full HMAC): check it before anything else.
    const provKm = sessionKeys(crypto, suite, SPEC_PROFILE, k).initiator.km;
    const cBefore = s.counterA.mpi();
    if (!equalBytes(identityMac(crypto, suite, provKm, cBefore, idA), mA))
      throw new ESessionError("identity-mismatch", "M_A does not verify", ["mac"]);
    // Detect the initiator's profile: accept only the reading whose mac_A matches.
    let found: { profile: Profile; counter: BlockCounter } | undefined;
    for (const profile of this.p.profile ? [this.p.profile] : DETECTABLE_PROFILES) {
      const prov = sessionKeys(crypto, suite, profile, k);
      const counter = s.counterA.clone();
      const macA = ctrCrypt(crypto, profile, prov.initiator.kc, counter, idA);
      const formA = normalize(s.requestX.children, profile.formStyle);
      const formA2 = normalize(formChildren(carried.x, ["identity", "mac"]), profile.formStyle);
      const expect = sigmaMac(crypto, suite, req(prov.initiator.ks), s.nonceB, s.nonceA, e, formA, formA2);
      if (equalBytes(expect, macA)) {
        found = { profile, counter };
        break;
      }
    }
    if (!found) throw new ESessionError("identity-mismatch", "mac_A does not verify", ["identity"]);
    this.profile = found.profile;
    // Shared retained secret: this JID's secrets first, then every other JID's.
    const rshashes = b64Values(form, "rshashes");
    const srs = this.findRetained(suite, s.nonceA, rshashes);
    const kf = finalSecret(crypto, suite, k, srs?.secret, this.p.otherSecret);
    wipe(k);
    const keys = sessionKeys(crypto, suite, this.profile, kf);
    const srshash = srs ? sharedRetainedSecretHash(crypto, suite, srs.secret) : this.p.random.bytes(32);
    const b2 = bobIdentityForm({ nonce: s.nonceA, srshash });
    const b2x = formToXml(b2);
    const formB2 = normalize(b2x.children, this.profile.formStyle);
    const formB = s.formB;
    const macB = sigmaMac(crypto, suite, req(keys.responder.ks), s.nonceA, s.nonceB, s.d, formB, formB2);
    const counterB = s.counterA.flipTopBit();
    const cbBefore = counterB.mpi();
    const idB = ctrCrypt(crypto, this.profile, keys.responder.kc, counterB, macB);
    const mB = identityMac(crypto, suite, keys.responder.km, cbBefore, idB);
    this.out.send(this.stanza(wrapInit(withIdentity(b2, idB, mB))));
    const sas = sas28x5(crypto, this.profile, mA, formB);
    const rs = newRetainedSecret(crypto, suite, kf);
    wipe(kf);
    this.activate(
      { ...s.choice, options: { ...s.choice.options, profile: this.profile.name } },
      keys,
      "responder",
      found.counter,
      counterB,
      s.y,
      e,
      sas,
      rs,
      srs,
    );
  }

  private findRetained(suite: Suite, nonceA: Uint8Array, rshashes: readonly Uint8Array[]): RetainedSecretRef | undefined {
    const { crypto } = this.p;
    for (const list of [this.p.retained ?? [], this.p.retainedOther ?? []]) {
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
    const { crypto } = this.p;
    const suite = s.choice.suite;
    if (!equalBytes(b64Field(form, "nonce"), s.nonceA)) throw new ESessionError("bad-request", "nonce", ["nonce"]);
    const srshash = b64Field(form, "srshash");
    const srs = (this.p.retained ?? []).find((r) => equalBytes(sharedRetainedSecretHash(crypto, suite, r.secret), srshash));
    const kf = finalSecret(crypto, suite, s.k, srs?.secret, this.p.otherSecret);
    wipe(s.k);
    const keys = sessionKeys(crypto, suite, this.profile, kf);
    const idB = b64Field(form, "identity");
    const mB = b64Field(form, "mac");
    const cbBefore = s.counterB.mpi();
    if (!equalBytes(identityMac(crypto, suite, keys.responder.km, cbBefore, idB), mB))
      throw new ESessionError("identity-mismatch", "M_B does not verify", ["mac"]);
    const counterB = s.counterB.clone();
    const macB = ctrCrypt(crypto, this.profile, keys.responder.kc, counterB, idB);
    const formB = normalize(s.responseX.children, this.profile.formStyle);
    const formB2 = normalize(formChildren(carried.x, ["identity", "mac"]), this.profile.formStyle);
    const expect = sigmaMac(crypto, suite, req(keys.responder.ks), s.nonceA, s.nonceB, s.d, formB, formB2);
    if (!equalBytes(expect, macB)) throw new ESessionError("identity-mismatch", "mac_B does not verify", ["identity"]);
    const sas = sas28x5(crypto, this.profile, s.macA, formB);
    const rs = newRetainedSecret(crypto, suite, kf);
    wipe(kf);
    this.activate(s.choice, keys, "initiator", s.counterA, counterB, s.pair.x, s.d, sas, rs, srs);
  }

  private activate(
    choice: Choice,
    keys: SessionKeys,
    role: "initiator" | "responder",
    counterA: BlockCounter,
    counterB: BlockCounter,
    myPrivate: Uint8Array,
    peerPublic: Uint8Array,
    sas: string,
    retained: Uint8Array,
    srs: RetainedSecretRef | undefined,
  ): void {
    const mine = role === "initiator" ? keys.initiator : keys.responder;
    const theirs = role === "initiator" ? keys.responder : keys.initiator;
    wipe(keys.initiator.ks, keys.responder.ks);
    const channel = new StanzaChannel({
      crypto: this.p.crypto,
      random: this.p.random,
      clock: this.p.clock,
      suite: choice.suite,
      profile: this.profile,
      sendKeys: { kc: mine.kc, km: mine.km },
      recvKeys: { kc: theirs.kc, km: theirs.km },
      sendCounter: role === "initiator" ? counterA : counterB,
      recvCounter: role === "initiator" ? counterB : counterA,
      myPrivate: copy(myPrivate),
      peerPublic,
      rekeyFreq: choice.options.rekeyFreq,
      stanzas: new Set(choice.options.stanzas),
      ...(this.policy.blockLimit !== undefined ? { blockLimit: this.policy.blockLimit } : {}),
      ...(this.policy.exponentBytes !== undefined ? { exponentBytes: this.policy.exponentBytes } : {}),
      ...(this.policy.autoRekeyEvery !== undefined ? { autoRekeyEvery: this.policy.autoRekeyEvery } : {}),
    });
    this.state = { kind: "active", channel, options: choice.options };
    this.out.emit({ type: "progress", step: "identity-verified" });
    this.out.emit({
      type: "established",
      sas,
      options: choice.options,
      retainedSecretMatched: srs !== undefined,
      newRetainedSecret: retained,
      ...(srs ? { replaces: srs.id } : {}),
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
    if (hasContent) this.out.emit({ type: "stanza", stanza: r.value.stanza, unauthenticated: r.value.unauthenticated });
  }

  // ---- helpers ----------------------------------------------------------------------

  private terminationStanza(ack: boolean): Element {
    return el("message", { to: this.p.peer, type: "chat" }, terminateFeature(ack), el("thread", {}, this.p.thread));
  }

  private clearTerminate(ack: boolean): Element {
    return this.stanza(terminateFeature(ack));
  }

  private stanza(payload: Element): Element {
    return el("message", { to: this.p.peer }, payload, el("thread", {}, this.p.thread));
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
      this.out.send(el("message", { to: this.p.peer, type: "error" }, el("thread", {}, this.p.thread), e));
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
        break;
      case "awaiting-bob-identity":
        wipe(s.k, s.pair.x);
        break;
      case "terminated":
        break;
      default:
        assertNever(s, "state");
    }
    this.state = { kind: "terminated" };
  }
}

function req(b: Uint8Array | undefined): Uint8Array {
  if (!b) throw new ESessionError("bad-request", "missing SIGMA key");
  return b;
}

function copy(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}
