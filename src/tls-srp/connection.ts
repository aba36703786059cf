/**
 * SrpTlsConnection: a sans-IO TLS 1.2 client or server for the SRP cipher suites.
 * Bytes from the peer go in through `receive()`; bytes to send and events come out of
 * `poll()`. No sockets, timers or randomness inside: Random and TlsCrypto are injected.
 *
 * Spec: RFC 5246 (TLS 1.2) sections 6 (record protocol), 7.1 (ChangeCipherSpec), 7.2
 * (alerts), 7.3/7.4 (full handshake; Figure 1), 7.4.9 (Finished), E.1 (a client MAY send
 * the ClientHello record with version {03,01}); RFC 5054 (SRP): section 2.2 (message
 * flow: no server Certificate for SRP_SHA, a Certificate and a signed ServerKeyExchange
 * for SRP_SHA_RSA, no client certificate), 2.5.1.2/2.5.1.3 (missing or unknown username
 * -> unknown_psk_identity), 2.5.3 (B % N = 0 -> illegal_parameter; untrusted group ->
 * insufficient_security), 2.5.4 (A % N = 0 -> illegal_parameter), 2.6 (premaster
 * secret); RFC 5746 (secure renegotiation signalling; we never renegotiate); RFC 7627
 * (extended master secret, negotiated when both sides offer it).
 *
 * A wrong password gives the two sides different premaster secrets, so the first
 * record protected with the new keys (the client's Finished) fails its MAC at the
 * server: the server sends bad_record_mac (RFC 5054 section 2.5.1.3 names the same
 * alert for a simulated unknown user), and the client receives it.
 *
 * Session resumption is not offered or accepted: every connection runs the full SRP
 * exchange (the ServerHello carries an empty session_id).
 */
import { concat, fromUtf8, utf8 } from "../core/bytes.js";
import { assertNever, type Random } from "../core/types.js";
import { SIGNATURE_SCHEMES, constantTimeEqual, type SignatureScheme, type TlsCrypto, type TlsPrivateKey, signatureSchemeName } from "./crypto.js";
import { ALERTS, SrpTlsError, TlsAbort, alertName, type AlertName } from "./errors.js";
import { DEFAULT_GROUP_BITS, knownGroup, type SrpGroup } from "./groups.js";
import { keyBlock, masterSecret, verifyData, type DirectionKeys } from "./keys.js";
import {
  ContentType,
  EMPTY_RENEGOTIATION_INFO_SCSV,
  ExtensionType,
  HandshakeType,
  SRP_SUITES,
  SRP_SUITE_NAMES,
  TLS12,
  decodeCertificate,
  decodeClientHello,
  decodeClientKeyExchange,
  decodeServerHello,
  decodeServerKeyExchange,
  decodeSignatureAlgorithms,
  decodeSrpExtension,
  encodeCertificate,
  encodeClientHello,
  encodeClientKeyExchange,
  encodeServerHello,
  encodeServerKeyExchange,
  encodeSignatureAlgorithms,
  encodeSrpExtension,
  encodeSrpParams,
  handshake,
  suiteByCode,
  type Extension,
  type SrpSuiteName,
} from "./messages.js";
import { CipherState, MAX_CIPHERTEXT, MAX_PLAINTEXT } from "./record.js";
import {
  bigintToBytes,
  bytesToBigint,
  isValidPublic,
  srpClientPremaster,
  srpClientPublic,
  srpK,
  srpServerPremaster,
  srpServerPublic,
  srpU,
  srpX,
} from "./srp.js";
import type { VerifierRecord } from "./verifiers.js";

export type SrpTlsEvent =
  /** The handshake finished; application data may flow. */
  | {
      readonly type: "handshake-done";
      readonly suite: SrpSuiteName;
      readonly username: string;
      readonly groupBits: number;
      readonly extendedMasterSecret: boolean;
      /** The server's certificate chain (DER, leaf first) for the *_RSA_* suites, client side. */
      readonly peerCertificates: readonly Uint8Array[];
    }
  /** Server: look the username up and call provideVerifier() (undefined when unknown). */
  | { readonly type: "verifier-needed"; readonly username: string }
  | { readonly type: "data"; readonly data: Uint8Array }
  /** The peer sent close_notify: no more data will arrive. */
  | { readonly type: "closed" }
  /** A fatal alert was sent or received; the connection is dead. */
  | { readonly type: "error"; readonly error: SrpTlsError };

export type SrpTlsOutput = { readonly kind: "send"; readonly bytes: Uint8Array } | { readonly kind: "event"; readonly event: SrpTlsEvent };

interface CommonConfig {
  readonly crypto: TlsCrypto;
  readonly random: Random;
  /** Suites to offer (client) or accept in preference order (server). Default: all four. */
  readonly suites?: readonly SrpSuiteName[];
}

export interface SrpTlsClientConfig extends CommonConfig {
  readonly role: "client";
  readonly username: string;
  readonly password: string;
  /** Smallest RFC 5054 group accepted from the server (default 2048). */
  readonly minGroupBits?: number;
  /** Offer RFC 7627 extended master secret (default true). */
  readonly extendedMasterSecret?: boolean;
}

export interface SrpTlsServerConfig extends CommonConfig {
  readonly role: "server";
  /** For the *_RSA_* suites: chain (DER, leaf first, RSA key) and its private key. */
  readonly certificate?: { readonly chain: readonly Uint8Array[]; readonly key: TlsPrivateKey };
  /** Signature schemes in preference order (default: PSS then PKCS#1 v1.5, SHA-256 first). */
  readonly signatureSchemes?: readonly SignatureScheme[];
  readonly extendedMasterSecret?: boolean;
}

export type SrpTlsConfig = SrpTlsClientConfig | SrpTlsServerConfig;

const CLIENT_SIGNATURE_SCHEMES: readonly SignatureScheme[] = [
  SIGNATURE_SCHEMES.rsa_pss_rsae_sha256,
  SIGNATURE_SCHEMES.rsa_pss_rsae_sha384,
  SIGNATURE_SCHEMES.rsa_pss_rsae_sha512,
  SIGNATURE_SCHEMES.rsa_pkcs1_sha256,
  SIGNATURE_SCHEMES.rsa_pkcs1_sha384,
  SIGNATURE_SCHEMES.rsa_pkcs1_sha512,
  SIGNATURE_SCHEMES.rsa_pkcs1_sha1,
];

/** Handshake messages larger than this are refused (a certificate chain fits easily). */
const MAX_HANDSHAKE_MESSAGE = 1 << 17;

interface Negotiated {
  readonly clientRandom: Uint8Array;
  readonly serverRandom: Uint8Array;
  readonly suite: SrpSuiteName;
  readonly ems: boolean;
  readonly username: string;
}

interface Keys {
  readonly master: Uint8Array;
  readonly client: DirectionKeys;
  readonly server: DirectionKeys;
}

type State =
  | { readonly kind: "idle" }
  | { readonly kind: "awaiting-client-hello" }
  | { readonly kind: "awaiting-verifier"; readonly p: Negotiated; readonly scheme: SignatureScheme | undefined; readonly renegotiationInfo: boolean }
  | { readonly kind: "awaiting-server-hello"; readonly clientRandom: Uint8Array }
  | { readonly kind: "awaiting-certificate"; readonly p: Negotiated }
  | { readonly kind: "awaiting-server-key-exchange"; readonly p: Negotiated; readonly chain: readonly Uint8Array[] }
  | {
      readonly kind: "awaiting-server-hello-done";
      readonly p: Negotiated;
      readonly chain: readonly Uint8Array[];
      readonly A: Uint8Array;
      readonly premaster: Uint8Array;
      readonly groupBits: number;
    }
  | { readonly kind: "awaiting-client-key-exchange"; readonly p: Negotiated; readonly group: SrpGroup; readonly v: bigint; readonly b: bigint; readonly B: bigint }
  | { readonly kind: "awaiting-change-cipher-spec"; readonly p: Negotiated; readonly keys: Keys; readonly chain: readonly Uint8Array[]; readonly groupBits: number }
  | { readonly kind: "awaiting-finished"; readonly p: Negotiated; readonly keys: Keys; readonly chain: readonly Uint8Array[]; readonly groupBits: number }
  | { readonly kind: "established"; readonly suite: SrpSuiteName }
  | { readonly kind: "closed" }
  | { readonly kind: "failed"; readonly error: SrpTlsError };

export class SrpTlsConnection {
  private state: State;
  private readonly out: SrpTlsOutput[] = [];
  private inbuf: Uint8Array = new Uint8Array(0);
  private hsbuf: Uint8Array = new Uint8Array(0);
  private transcript: Uint8Array[] = [];
  private readCipher: CipherState | undefined;
  private writeCipher: CipherState | undefined;
  private sentCloseNotify = false;
  /** After the first ServerHello every record carries {3,3} (RFC 5246 appendix E.1). */
  private versionFixed = false;
  private readonly suites: readonly SrpSuiteName[];

  constructor(private readonly config: SrpTlsConfig) {
    const suites = config.suites ?? SRP_SUITE_NAMES;
    if (suites.length === 0) throw new RangeError("no cipher suites");
    if (config.role === "server") {
      // Without a certificate the server cannot choose an *_RSA_* suite; with one, it
      // prefers them by default (the client then also authenticates the server's key).
      const usable = suites.filter((s) => !SRP_SUITES[s].rsa || config.certificate !== undefined);
      if (usable.length === 0) throw new RangeError("the *_RSA_* suites need a certificate");
      this.suites = config.suites ? usable : [...usable].sort((a, b) => Number(SRP_SUITES[b].rsa) - Number(SRP_SUITES[a].rsa) || SRP_SUITES[b].keyLength - SRP_SUITES[a].keyLength);
      const leaf = config.certificate?.chain[0];
      if (config.certificate && (!leaf || config.crypto.certificateKeyType(leaf) !== "rsa"))
        throw new RangeError("the certificate must carry an RSA key");
      this.state = { kind: "awaiting-client-hello" };
    } else {
      if (utf8(config.username).length < 1 || utf8(config.username).length > 255) throw new RangeError("SRP username must be 1..255 octets");
      this.suites = suites;
      this.state = { kind: "idle" };
    }
  }

  get role(): "client" | "server" {
    return this.config.role;
  }

  /** The state's name, for diagnostics and tests. */
  get stateName(): State["kind"] {
    return this.state.kind;
  }

  /** Whether we sent close_notify (close() or in answer to the peer's). */
  get closeNotifySent(): boolean {
    return this.sentCloseNotify;
  }

  get established(): boolean {
    return this.state.kind === "established";
  }

  /** Client: sends the ClientHello. */
  start(): void {
    const c = this.config;
    if (c.role !== "client" || this.state.kind !== "idle") throw new Error("start() is for a client, once");
    const clientRandom = this.config.random.bytes(32);
    const extensions: Extension[] = [{ type: ExtensionType.srp, data: encodeSrpExtension(utf8(c.username)) }];
    if (this.suites.some((s) => SRP_SUITES[s].rsa))
      extensions.push({ type: ExtensionType.signature_algorithms, data: encodeSignatureAlgorithms(CLIENT_SIGNATURE_SCHEMES) });
    if (c.extendedMasterSecret !== false) extensions.push({ type: ExtensionType.extended_master_secret, data: new Uint8Array(0) });
    const hello = encodeClientHello({
      version: TLS12,
      random: clientRandom,
      sessionId: new Uint8Array(0),
      // RFC 5746 section 3.4: a client may signal secure renegotiation with the SCSV.
      cipherSuites: [...this.suites.map((s) => SRP_SUITES[s].code), EMPTY_RENEGOTIATION_INFO_SCSV],
      compressionMethods: Uint8Array.of(0),
      extensions,
    });
    this.sendHandshake(hello);
    this.state = { kind: "awaiting-server-hello", clientRandom };
  }

  /** Server: the answer to a "verifier-needed" event. */
  provideVerifier(record: VerifierRecord | undefined): void {
    if (this.state.kind !== "awaiting-verifier") return;
    this.guard(() => this.onVerifier(record));
  }

  /** Bytes from the peer. Never throws on peer input; failures become an "error" event. */
  receive(bytes: Uint8Array): void {
    if (this.state.kind === "failed" || this.state.kind === "closed") return;
    this.inbuf = this.inbuf.length === 0 ? bytes.slice() : concat(this.inbuf, bytes);
    this.guard(() => this.processRecords());
  }

  /** Application data to protect and send (only once established). */
  write(data: Uint8Array): void {
    if (this.state.kind !== "established" || this.sentCloseNotify) throw new SrpTlsError("internal_error", "local", "not established");
    for (let o = 0; o < data.length; o += MAX_PLAINTEXT) this.sendRecord(ContentType.application_data, data.subarray(o, o + MAX_PLAINTEXT));
  }

  /** Sends close_notify (RFC 5246 section 7.2.1). Data may still arrive until the peer's. */
  close(): void {
    if (this.sentCloseNotify || this.state.kind === "failed" || this.state.kind === "closed") return;
    this.sentCloseNotify = true;
    this.sendRecord(ContentType.alert, Uint8Array.of(1, ALERTS.close_notify));
    if (this.state.kind !== "established") this.state = { kind: "closed" };
  }

  poll(): SrpTlsOutput | undefined {
    return this.out.shift();
  }

  // -------------------------------------------------------------------------------------

  private emit(event: SrpTlsEvent): void {
    this.out.push({ kind: "event", event });
  }

  private guard(f: () => void): void {
    try {
      f();
    } catch (e) {
      if (e instanceof TlsAbort) this.fail(e.alert, e.detail);
      // Anything else is our bug: report internal_error without details of the input.
      else this.fail("internal_error", "unexpected failure");
    }
  }

  private fail(alert: AlertName, detail: string): void {
    if (this.state.kind === "failed" || this.state.kind === "closed") return;
    try {
      this.sendRecord(ContentType.alert, Uint8Array.of(2, ALERTS[alert]));
    } catch {
      // Nothing more we can do; the event below still reports the failure.
    }
    const error = new SrpTlsError(alert, "sent", detail);
    this.enterFailed(error);
  }

  private enterFailed(error: SrpTlsError): void {
    this.state = { kind: "failed", error };
    this.inbuf = new Uint8Array(0);
    this.hsbuf = new Uint8Array(0);
    this.transcript = [];
    this.readCipher = undefined;
    this.emit({ type: "error", error });
  }

  private sendRecord(type: number, content: Uint8Array): void {
    // RFC 5246 appendix E.1: the ClientHello record may carry {3,1} for compatibility.
    const version = this.versionFixed || this.config.role === "server" ? TLS12 : 0x0301;
    const fragment = this.writeCipher ? this.writeCipher.protect(this.config.random, type, version, content) : content;
    const header = Uint8Array.of(type, version >> 8, version & 0xff, fragment.length >> 8, fragment.length & 0xff);
    this.out.push({ kind: "send", bytes: concat(header, fragment) });
  }

  private sendHandshake(...messages: readonly Uint8Array[]): void {
    for (const m of messages) this.transcript.push(m);
    const all = concat(...messages);
    for (let o = 0; o < all.length; o += MAX_PLAINTEXT) this.sendRecord(ContentType.handshake, all.subarray(o, o + MAX_PLAINTEXT));
  }

  private transcriptHash(): Uint8Array {
    return this.config.crypto.hash("sha256", ...this.transcript);
  }

  private processRecords(): void {
    while (this.inbuf.length >= 5 && this.state.kind !== "failed" && this.state.kind !== "closed") {
      const type = this.inbuf[0] ?? 0;
      const version = ((this.inbuf[1] ?? 0) << 8) | (this.inbuf[2] ?? 0);
      const length = ((this.inbuf[3] ?? 0) << 8) | (this.inbuf[4] ?? 0);
      if (type < ContentType.change_cipher_spec || type > ContentType.application_data)
        throw new TlsAbort("unexpected_message", "unknown record type");
      if (version >> 8 !== 3 || (this.versionFixed && version !== TLS12)) throw new TlsAbort("protocol_version", "record version");
      if (length > (this.readCipher ? MAX_CIPHERTEXT : MAX_PLAINTEXT)) throw new TlsAbort("record_overflow", "record too long");
      if (this.inbuf.length < 5 + length) return;
      const fragment = this.inbuf.subarray(5, 5 + length);
      this.inbuf = this.inbuf.subarray(5 + length);
      const content = this.readCipher ? this.readCipher.unprotect(type, version, fragment) : fragment;
      if (content.length > MAX_PLAINTEXT) throw new TlsAbort("record_overflow", "plaintext too long");
      this.onRecord(type, content);
    }
  }

  private onRecord(type: number, content: Uint8Array): void {
    // Handshake messages may span records, but no other content type may interleave
    // with a partial one (RFC 5246 section 6.2.1).
    if (type !== ContentType.handshake && this.hsbuf.length > 0) throw new TlsAbort("unexpected_message", "interleaved record");
    switch (type) {
      case ContentType.alert:
        return this.onAlert(content);
      case ContentType.change_cipher_spec:
        return this.onChangeCipherSpec(content);
      case ContentType.handshake:
        if (content.length === 0) throw new TlsAbort("unexpected_message", "empty handshake record");
        this.hsbuf = this.hsbuf.length === 0 ? content.slice() : concat(this.hsbuf, content);
        return this.drainHandshake();
      case ContentType.application_data:
        if (this.state.kind !== "established") throw new TlsAbort("unexpected_message", "application data before the handshake finished");
        if (content.length > 0) this.emit({ type: "data", data: content.slice() });
        return;
      default:
        throw new TlsAbort("unexpected_message", "unknown record type");
    }
  }

  private onAlert(content: Uint8Array): void {
    if (content.length !== 2) throw new TlsAbort("decode_error", "alert length");
    const level = content[0] ?? 0;
    const code = content[1] ?? 0;
    if (code === ALERTS.close_notify) {
      // RFC 5246 section 7.2.1: answer with our own close_notify and stop reading.
      if (!this.sentCloseNotify && this.state.kind === "established") {
        this.sentCloseNotify = true;
        this.sendRecord(ContentType.alert, Uint8Array.of(1, ALERTS.close_notify));
      }
      const wasEstablished = this.state.kind === "established";
      this.state = { kind: "closed" };
      if (wasEstablished) this.emit({ type: "closed" });
      else this.enterFailed(new SrpTlsError("handshake_failure", "received", "peer closed during the handshake"));
      return;
    }
    if (level === 1 && this.state.kind === "established") return; // warnings (e.g. no_renegotiation)
    if (level === 1 && code === ALERTS.no_renegotiation) return;
    // Any other alert during the handshake, and every fatal alert, ends the connection.
    this.enterFailed(new SrpTlsError(alertName(code) ?? "unknown_alert", "received"));
  }

  private onChangeCipherSpec(content: Uint8Array): void {
    if (content.length !== 1 || content[0] !== 1) throw new TlsAbort("decode_error", "bad ChangeCipherSpec");
    const s = this.state;
    if (s.kind !== "awaiting-change-cipher-spec") throw new TlsAbort("unexpected_message", "unexpected ChangeCipherSpec");
    const peer = this.config.role === "client" ? s.keys.server : s.keys.client;
    this.readCipher = new CipherState(this.config.crypto, peer);
    this.state = { kind: "awaiting-finished", p: s.p, keys: s.keys, chain: s.chain, groupBits: s.groupBits };
  }

  private drainHandshake(): void {
    while (this.hsbuf.length >= 4 && this.state.kind !== "failed" && this.state.kind !== "closed") {
      const type = this.hsbuf[0] ?? 0;
      const length = ((this.hsbuf[1] ?? 0) << 16) | ((this.hsbuf[2] ?? 0) << 8) | (this.hsbuf[3] ?? 0);
      if (length > MAX_HANDSHAKE_MESSAGE) throw new TlsAbort("decode_error", "handshake message too long");
      if (this.hsbuf.length < 4 + length) return;
      const message = this.hsbuf.subarray(0, 4 + length);
      this.hsbuf = this.hsbuf.subarray(4 + length);
      if (this.hsbuf.length === 0) this.hsbuf = new Uint8Array(0);
      this.onHandshake(type, message.subarray(4), message);
    }
  }

  private onHandshake(type: number, body: Uint8Array, message: Uint8Array): void {
    const s = this.state;
    // HelloRequest is not part of the transcript; we never renegotiate (RFC 5746).
    if (type === HandshakeType.hello_request && this.config.role === "client") {
      if (body.length !== 0) throw new TlsAbort("decode_error", "HelloRequest body");
      if (s.kind === "established") this.sendRecord(ContentType.alert, Uint8Array.of(1, ALERTS.no_renegotiation));
      return;
    }
    if (s.kind === "established") {
      if (type === HandshakeType.client_hello && this.config.role === "server") {
        this.sendRecord(ContentType.alert, Uint8Array.of(1, ALERTS.no_renegotiation));
        return;
      }
      throw new TlsAbort("unexpected_message", "handshake message after the handshake");
    }
    // Finished is verified against the transcript *before* it, then appended.
    if (type === HandshakeType.finished && s.kind === "awaiting-finished") return this.onFinished(s, body, message);
    this.transcript.push(message.slice());
    switch (s.kind) {
      case "awaiting-client-hello":
        if (type !== HandshakeType.client_hello) break;
        return this.onClientHello(body);
      case "awaiting-server-hello":
        if (type !== HandshakeType.server_hello) break;
        return this.onServerHello(s, body);
      case "awaiting-certificate":
        if (type !== HandshakeType.certificate) break;
        return this.onCertificate(s, body);
      case "awaiting-server-key-exchange":
        if (type !== HandshakeType.server_key_exchange) break;
        return this.onServerKeyExchange(s, body);
      case "awaiting-server-hello-done":
        if (type !== HandshakeType.server_hello_done) break;
        if (body.length !== 0) throw new TlsAbort("decode_error", "ServerHelloDone body");
        return this.onServerHelloDone(s);
      case "awaiting-client-key-exchange":
        if (type !== HandshakeType.client_key_exchange) break;
        return this.onClientKeyExchange(s, body);
      case "idle":
      case "awaiting-verifier":
      case "awaiting-change-cipher-spec":
      case "awaiting-finished":
        break;
      case "closed":
      case "failed":
        return;
      default:
        return assertNever(s, "state");
    }
    throw new TlsAbort("unexpected_message", `handshake message ${type} in ${s.kind}`);
  }

  // ---- server ----------------------------------------------------------------------

  private onClientHello(body: Uint8Array): void {
    const c = this.config;
    if (c.role !== "server") throw new TlsAbort("unexpected_message", "ClientHello at a client");
    const hello = decodeClientHello(body);
    // We speak TLS 1.2 only; a client offering less cannot be served (RFC 5246 E.1).
    if (hello.version < TLS12) throw new TlsAbort("protocol_version", "client version below TLS 1.2");
    if (!hello.compressionMethods.includes(0)) throw new TlsAbort("illegal_parameter", "no null compression");
    const suite = this.suites.find((s) => hello.cipherSuites.includes(SRP_SUITES[s].code));
    if (!suite) throw new TlsAbort("handshake_failure", "no common SRP cipher suite");
    const ext = new Map(hello.extensions.map((e) => [e.type, e.data]));
    // RFC 5746 section 3.6: an initial handshake's renegotiation_info must be empty.
    const ri = ext.get(ExtensionType.renegotiation_info);
    if (ri && !(ri.length === 1 && ri[0] === 0)) throw new TlsAbort("handshake_failure", "non-empty renegotiation_info");
    const renegotiationInfo = ri !== undefined || hello.cipherSuites.includes(EMPTY_RENEGOTIATION_INFO_SCSV);
    const srp = ext.get(ExtensionType.srp);
    // RFC 5054 section 2.5.1.2: SRP suites without the SRP extension -> unknown_psk_identity.
    if (!srp) throw new TlsAbort("unknown_psk_identity", "no SRP extension");
    let username: string;
    try {
      username = fromUtf8(decodeSrpExtension(srp));
    } catch (e) {
      if (e instanceof TlsAbort) throw e;
      throw new TlsAbort("illegal_parameter", "SRP username is not UTF-8");
    }
    const emsData = ext.get(ExtensionType.extended_master_secret);
    if (emsData && emsData.length !== 0) throw new TlsAbort("decode_error", "extended_master_secret body");
    const ems = emsData !== undefined && c.extendedMasterSecret !== false;
    let scheme: SignatureScheme | undefined;
    if (SRP_SUITES[suite].rsa) {
      // RFC 5246 section 7.4.1.4.1: without signature_algorithms, assume {sha1, rsa}.
      const sigAlgs = ext.has(ExtensionType.signature_algorithms)
        ? decodeSignatureAlgorithms(ext.get(ExtensionType.signature_algorithms) ?? new Uint8Array(0))
        : [SIGNATURE_SCHEMES.rsa_pkcs1_sha1];
      const prefs = c.signatureSchemes ?? CLIENT_SIGNATURE_SCHEMES;
      scheme = prefs.find((p) => sigAlgs.includes(p));
      if (scheme === undefined) throw new TlsAbort("handshake_failure", "no common signature algorithm");
    }
    const p: Negotiated = { clientRandom: hello.random.slice(), serverRandom: c.random.bytes(32), suite, ems, username };
    this.state = { kind: "awaiting-verifier", p, scheme, renegotiationInfo };
    this.emit({ type: "verifier-needed", username });
  }

  private onVerifier(record: VerifierRecord | undefined): void {
    const s = this.state;
    const c = this.config;
    if (s.kind !== "awaiting-verifier" || c.role !== "server") return;
    // RFC 5054 section 2.5.1.3: unknown username -> unknown_psk_identity.
    if (!record) throw new TlsAbort("unknown_psk_identity", "unknown SRP username");
    const group = record.group;
    const v = bytesToBigint(record.verifier);
    const k = srpK((...parts) => c.crypto.hash("sha1", ...parts), group);
    const b = bytesToBigint(c.random.bytes(32)); // RFC 5054 section 2.5.3: at least 256 bits
    const B = srpServerPublic(group, k, v, b);
    const extensions: Extension[] = [];
    if (s.renegotiationInfo) extensions.push({ type: ExtensionType.renegotiation_info, data: Uint8Array.of(0) });
    if (s.p.ems) extensions.push({ type: ExtensionType.extended_master_secret, data: new Uint8Array(0) });
    const messages: Uint8Array[] = [
      encodeServerHello({
        version: TLS12,
        random: s.p.serverRandom,
        sessionId: new Uint8Array(0),
        cipherSuite: SRP_SUITES[s.p.suite].code,
        compressionMethod: 0,
        extensions,
      }),
    ];
    const params = encodeSrpParams(bigintToBytes(group.N), bigintToBytes(group.g), record.salt, bigintToBytes(B));
    if (SRP_SUITES[s.p.suite].rsa) {
      const cert = c.certificate;
      if (!cert || s.scheme === undefined) throw new TlsAbort("internal_error", "no certificate");
      messages.push(encodeCertificate(cert.chain));
      const signed = concat(s.p.clientRandom, s.p.serverRandom, params);
      messages.push(encodeServerKeyExchange(params, { scheme: s.scheme, value: c.crypto.sign(s.scheme, cert.key, signed) }));
    } else {
      messages.push(encodeServerKeyExchange(params));
    }
    messages.push(handshake(HandshakeType.server_hello_done, new Uint8Array(0)));
    this.versionFixed = true;
    this.sendHandshake(...messages);
    this.state = { kind: "awaiting-client-key-exchange", p: s.p, group, v, b, B };
  }

  private onClientKeyExchange(s: Extract<State, { kind: "awaiting-client-key-exchange" }>, body: Uint8Array): void {
    const c = this.config;
    const A = bytesToBigint(decodeClientKeyExchange(body));
    // RFC 5054 section 2.5.4: "The server MUST abort the handshake with an
    // illegal_parameter alert if A % N = 0."
    if (!isValidPublic(s.group, A)) throw new TlsAbort("illegal_parameter", "A % N = 0");
    const sha1 = (...parts: readonly Uint8Array[]) => c.crypto.hash("sha1", ...parts);
    const u = srpU(sha1, s.group, A, s.B);
    const premaster = bigintToBytes(srpServerPremaster(s.group, s.v, u, A, s.b));
    const keys = this.deriveKeys(s.p, premaster);
    this.state = { kind: "awaiting-change-cipher-spec", p: s.p, keys, chain: [], groupBits: s.group.bits || bigintToBytes(s.group.N).length * 8 };
  }

  // ---- client ----------------------------------------------------------------------

  private onServerHello(s: Extract<State, { kind: "awaiting-server-hello" }>, body: Uint8Array): void {
    const c = this.config;
    if (c.role !== "client") throw new TlsAbort("unexpected_message", "ServerHello at a server");
    const hello = decodeServerHello(body);
    if (hello.version !== TLS12) throw new TlsAbort("protocol_version", "server version is not TLS 1.2");
    const suite = suiteByCode(hello.cipherSuite);
    if (!suite || !this.suites.includes(suite)) throw new TlsAbort("illegal_parameter", "cipher suite not offered");
    if (hello.compressionMethod !== 0) throw new TlsAbort("illegal_parameter", "compression not offered");
    let ems = false;
    for (const e of hello.extensions) {
      if (e.type === ExtensionType.renegotiation_info) {
        if (!(e.data.length === 1 && e.data[0] === 0)) throw new TlsAbort("handshake_failure", "bad renegotiation_info");
      } else if (e.type === ExtensionType.extended_master_secret && c.extendedMasterSecret !== false) {
        if (e.data.length !== 0) throw new TlsAbort("decode_error", "extended_master_secret body");
        ems = true;
      } else {
        // RFC 5246 section 7.4.1.4: an extension we did not offer -> unsupported_extension.
        throw new TlsAbort("unsupported_extension", "unsolicited extension");
      }
    }
    this.versionFixed = true;
    const p: Negotiated = { clientRandom: s.clientRandom, serverRandom: hello.random.slice(), suite, ems, username: c.username };
    this.state = SRP_SUITES[suite].rsa ? { kind: "awaiting-certificate", p } : { kind: "awaiting-server-key-exchange", p, chain: [] };
  }

  private onCertificate(s: Extract<State, { kind: "awaiting-certificate" }>, body: Uint8Array): void {
    const chain = decodeCertificate(body).map((c) => c.slice());
    const leaf = chain[0];
    if (!leaf) throw new TlsAbort("bad_certificate", "empty certificate list");
    const type = this.config.crypto.certificateKeyType(leaf);
    if (type === undefined) throw new TlsAbort("bad_certificate", "unparsable certificate");
    if (type !== "rsa") throw new TlsAbort("unsupported_certificate", "not an RSA key");
    this.state = { kind: "awaiting-server-key-exchange", p: s.p, chain };
  }

  private onServerKeyExchange(s: Extract<State, { kind: "awaiting-server-key-exchange" }>, body: Uint8Array): void {
    const c = this.config;
    if (c.role !== "client") throw new TlsAbort("unexpected_message", "ServerKeyExchange at a server");
    const rsa = SRP_SUITES[s.p.suite].rsa;
    const ske = decodeServerKeyExchange(body, rsa);
    if (rsa) {
      const sig = ske.signature;
      const leaf = s.chain[0];
      if (!sig || !leaf) throw new TlsAbort("decode_error", "missing signature");
      if (signatureSchemeName(sig.scheme) === undefined || !CLIENT_SIGNATURE_SCHEMES.includes(sig.scheme as SignatureScheme))
        throw new TlsAbort("illegal_parameter", "signature algorithm not offered");
      const signed = concat(s.p.clientRandom, s.p.serverRandom, ske.params.encoded);
      if (!c.crypto.verify(sig.scheme as SignatureScheme, leaf, signed, sig.value)) throw new TlsAbort("decrypt_error", "bad ServerKeyExchange signature");
    }
    // RFC 5054 section 2.5.3 / 3.2: accept only the Appendix A groups (at least the
    // configured size); anything else -> insufficient_security.
    const group = knownGroup(bytesToBigint(ske.params.N), bytesToBigint(ske.params.g));
    if (!group || group.bits < (c.minGroupBits ?? DEFAULT_GROUP_BITS)) throw new TlsAbort("insufficient_security", "untrusted SRP group");
    const B = bytesToBigint(ske.params.B);
    if (!isValidPublic(group, B)) throw new TlsAbort("illegal_parameter", "B % N = 0");
    const sha1 = (...parts: readonly Uint8Array[]) => c.crypto.hash("sha1", ...parts);
    const a = bytesToBigint(c.random.bytes(32));
    const A = srpClientPublic(group, a);
    const u = srpU(sha1, group, A, B);
    const x = srpX(sha1, ske.params.s, c.username, c.password);
    const premaster = bigintToBytes(srpClientPremaster(group, srpK(sha1, group), x, a, u, B));
    this.state = { kind: "awaiting-server-hello-done", p: s.p, chain: s.chain, A: bigintToBytes(A), premaster, groupBits: group.bits };
  }

  private onServerHelloDone(s: Extract<State, { kind: "awaiting-server-hello-done" }>): void {
    this.sendHandshake(encodeClientKeyExchange(s.A));
    const keys = this.deriveKeys(s.p, s.premaster);
    this.sendChangeCipherSpec(keys.client);
    this.sendFinished(keys.master, "client finished");
    this.state = { kind: "awaiting-change-cipher-spec", p: s.p, keys, chain: s.chain, groupBits: s.groupBits };
  }

  // ---- both ------------------------------------------------------------------------

  private deriveKeys(p: Negotiated, premaster: Uint8Array): Keys {
    const crypto = this.config.crypto;
    // RFC 7627 section 3: session_hash covers the transcript through ClientKeyExchange.
    const master = masterSecret(crypto, premaster, p.clientRandom, p.serverRandom, p.ems ? this.transcriptHash() : undefined);
    premaster.fill(0);
    const kb = keyBlock(crypto, master, p.clientRandom, p.serverRandom, SRP_SUITES[p.suite].keyLength);
    return { master, client: kb.client, server: kb.server };
  }

  private sendChangeCipherSpec(ours: DirectionKeys): void {
    this.sendRecord(ContentType.change_cipher_spec, Uint8Array.of(1));
    this.writeCipher = new CipherState(this.config.crypto, ours);
  }

  private sendFinished(master: Uint8Array, label: "client finished" | "server finished"): void {
    this.sendHandshake(handshake(HandshakeType.finished, verifyData(this.config.crypto, master, label, this.transcriptHash())));
  }

  private onFinished(s: Extract<State, { kind: "awaiting-finished" }>, body: Uint8Array, message: Uint8Array): void {
    const client = this.config.role === "client";
    const expected = verifyData(this.config.crypto, s.keys.master, client ? "server finished" : "client finished", this.transcriptHash());
    // RFC 5246 section 7.4.9: a wrong verify_data -> decrypt_error.
    if (!constantTimeEqual(body, expected)) throw new TlsAbort("decrypt_error", "Finished does not verify");
    this.transcript.push(message.slice());
    if (!client) {
      this.sendChangeCipherSpec(s.keys.server);
      this.sendFinished(s.keys.master, "server finished");
    }
    if (this.hsbuf.length > 0) throw new TlsAbort("unexpected_message", "data after Finished in the same flight");
    s.keys.master.fill(0);
    this.transcript = [];
    this.state = { kind: "established", suite: s.p.suite };
    this.emit({
      type: "handshake-done",
      suite: s.p.suite,
      username: s.p.username,
      groupBits: s.groupBits,
      extendedMasterSecret: s.p.ems,
      peerCertificates: s.chain,
    });
  }
}

