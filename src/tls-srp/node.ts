/**
 * Node adapter: runs an SrpTlsConnection over any Duplex carrying TLS records (a TCP
 * socket, an XEP-0047 in-band bytestream, a SOCKS5 stream) and resolves, once the
 * handshake finished, with a Duplex carrying the plaintext application data.
 *
 * Spec: RFC 5054 (TLS-SRP) over RFC 5246 (TLS 1.2); closure per RFC 5246 section 7.2.1
 * (ending the plaintext Duplex sends close_notify; the peer's close_notify ends its
 * readable side; a transport that ends without close_notify is reported as
 * "transport_closed", a possible truncation). Effects (sockets, randomness, files) live
 * here, never in the core.
 */
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { Duplex } from "node:stream";
import { fromBase64 } from "../core/bytes.js";
import { systemRandom } from "../crypto/node.js";
import { SrpTlsConnection, type SrpTlsConfig, type SrpTlsEvent } from "./connection.js";
import { SrpTlsError } from "./errors.js";
import { DEFAULT_GROUP_BITS, isSrpGroupBits } from "./groups.js";
import { isSrpSuiteName, type SrpSuiteName } from "./messages.js";
import { nodeTlsCrypto } from "./node-crypto.js";
import { MemoryVerifierStore, createVerifier, parseTpasswd, type VerifierStore } from "./verifiers.js";

export interface SrpTlsOptions {
  readonly role: "client" | "server";
  /** Client: the SRP username sent in the hello. Server: the account `password` is for. */
  readonly username: string;
  /** Client: required. Server without `verifiers`: a verifier for `username` is derived. */
  readonly password?: string;
  /** Server: where verifiers are looked up by the username the client sent. */
  readonly verifiers?: VerifierStore;
  /**
   * RFC 5054 group size (1024..8192, default 2048). Server: the group of a verifier it
   * derives from `password`. Client: the smallest group it accepts from the server.
   */
  readonly group?: number;
  /** Server: PEM certificate (chain, leaf first) and PEM private key for the *_RSA_* suites. */
  readonly certificate?: { readonly cert: string; readonly key: string };
  /** Cipher suite names (RFC 5054 section 2.7) to offer / accept, in preference order. */
  readonly suites?: readonly string[];
}

/** The plaintext stream, with what the handshake negotiated. */
export class SrpTlsDuplex extends Duplex {
  suite!: SrpSuiteName;
  username!: string;
  groupBits!: number;
  extendedMasterSecret!: boolean;
  /** Server certificate chain (DER, leaf first) for *_RSA_* suites, client side. */
  peerCertificates: readonly Uint8Array[] = [];
}

/** Splits PEM text into the DER of each CERTIFICATE block. */
export function pemCertificates(pem: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  const re = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g;
  for (let m = re.exec(pem); m; m = re.exec(pem)) {
    const der = fromBase64(m[1] ?? "");
    if (!der) throw new RangeError("bad PEM certificate");
    new X509Certificate(der); // throws on an unparsable certificate
    out.push(der);
  }
  if (out.length === 0) throw new RangeError("no PEM certificate");
  return out;
}

/** Reads srptool's tpasswd and tpasswd.conf files into a verifier store. */
export async function readTpasswdFiles(tpasswdPath: string, tpasswdConfPath: string): Promise<MemoryVerifierStore> {
  const [passwd, conf] = await Promise.all([readFile(tpasswdPath, "utf8"), readFile(tpasswdConfPath, "utf8")]);
  return parseTpasswd(passwd, conf);
}

function buildConfig(opts: SrpTlsOptions): { config: SrpTlsConfig; store: VerifierStore | undefined } {
  const suites = opts.suites?.map((s) => {
    if (!isSrpSuiteName(s)) throw new RangeError(`unknown SRP cipher suite ${s}`);
    return s;
  });
  const groupBits = opts.group ?? DEFAULT_GROUP_BITS;
  if (!isSrpGroupBits(groupBits)) throw new RangeError("group must be one of 1024, 1536, 2048, 3072, 4096, 6144, 8192");
  const common = { crypto: nodeTlsCrypto, random: systemRandom, ...(suites ? { suites } : {}) };
  if (opts.role === "client") {
    if (opts.password === undefined) throw new RangeError("a client needs a password");
    return { config: { role: "client", ...common, username: opts.username, password: opts.password, minGroupBits: groupBits }, store: undefined };
  }
  let store = opts.verifiers;
  if (!store) {
    if (opts.password === undefined) throw new RangeError("a server needs verifiers or a password");
    const sha1 = (...p: readonly Uint8Array[]) => nodeTlsCrypto.hash("sha1", ...p);
    store = new MemoryVerifierStore().set(opts.username, createVerifier(sha1, systemRandom, opts.username, opts.password, groupBits));
  }
  const certificate = opts.certificate ? { chain: pemCertificates(opts.certificate.cert), key: { pem: opts.certificate.key } } : undefined;
  return { config: { role: "server", ...common, ...(certificate ? { certificate } : {}) }, store };
}

/**
 * Runs the TLS-SRP handshake over `stream`. Resolves with the plaintext Duplex after
 * both Finished messages verified; rejects with {@link SrpTlsError} (its `condition` is
 * the TLS alert) when the handshake fails, e.g. "bad_record_mac" for a wrong password.
 */
export function srpTlsOverDuplex(stream: Duplex, opts: SrpTlsOptions): Promise<SrpTlsDuplex> {
  let built: ReturnType<typeof buildConfig>;
  try {
    built = buildConfig(opts);
  } catch (e) {
    return Promise.reject(e);
  }
  const { config, store } = built;
  const conn = new SrpTlsConnection(config);

  return new Promise<SrpTlsDuplex>((resolve, reject) => {
    let settled = false;
    let finished = false;
    let endSent = false;
    let paused = false;

    const plain = new SrpTlsDuplex({
      read() {
        if (paused) {
          paused = false;
          stream.resume();
        }
      },
      write(chunk: Buffer, _enc, cb) {
        try {
          conn.write(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          // Backpressure from the transport reaches the plaintext writer: wait for
          // 'drain' when the transport's buffer is full.
          if (pump()) cb();
          else stream.once("drain", () => cb());
        } catch (e) {
          cb(e instanceof Error ? e : new Error(String(e)));
        }
      },
      final(cb) {
        conn.close();
        pump();
        endTransport();
        cb();
      },
      destroy(err, cb) {
        detach();
        if (!finished) {
          finished = true;
          conn.close();
          pump();
          endTransport();
        }
        cb(err);
      },
    });

    const endTransport = () => {
      if (!endSent && !stream.writableEnded && !stream.destroyed) {
        endSent = true;
        stream.end();
      }
    };

    const fail = (err: SrpTlsError | Error) => {
      if (finished) return;
      finished = true;
      detach();
      endTransport();
      if (!settled) {
        settled = true;
        reject(err);
      } else plain.destroy(err);
    };

    const onEvent = (e: SrpTlsEvent) => {
      switch (e.type) {
        case "verifier-needed":
          if (!store) return fail(new SrpTlsError("internal_error", "local", "no verifier store"));
          store.lookup(e.username).then(
            (rec) => {
              conn.provideVerifier(rec);
              pump();
            },
            () => {
              conn.provideVerifier(undefined);
              pump();
            },
          );
          return;
        case "handshake-done":
          plain.suite = e.suite;
          plain.username = e.username;
          plain.groupBits = e.groupBits;
          plain.extendedMasterSecret = e.extendedMasterSecret;
          plain.peerCertificates = e.peerCertificates;
          settled = true;
          resolve(plain);
          return;
        case "data":
          if (!plain.push(Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength)) && !paused) {
            paused = true;
            stream.pause();
          }
          return;
        case "closed":
          finished = true;
          detach();
          plain.push(null);
          endTransport();
          return;
        case "error":
          return fail(e.error);
      }
    };

    /** Drains the core; false when the transport asked us to wait for 'drain'. */
    function pump(): boolean {
      let ok = true;
      for (let o = conn.poll(); o; o = conn.poll()) {
        if (o.kind === "send") {
          if (!stream.writableEnded && !stream.destroyed) ok = stream.write(Buffer.from(o.bytes.buffer, o.bytes.byteOffset, o.bytes.byteLength)) && ok;
        } else onEvent(o.event);
      }
      return ok || stream.writableEnded || stream.destroyed;
    }

    const onData = (chunk: Buffer | string) => {
      const b = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      conn.receive(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
      pump();
    };
    // After we sent close_notify ourselves, the transport going away is the expected
    // end of the connection (RFC 5246 section 7.2.1 lets the closer not wait for the
    // answer); before that it may be a truncation attack and is reported as an error.
    const onGone = (detail: string) => {
      if (settled && conn.closeNotifySent && !finished) {
        finished = true;
        detach();
        plain.push(null);
        return;
      }
      fail(new SrpTlsError("transport_closed", "local", detail));
    };
    const onEnd = () => onGone("the transport ended without close_notify");
    const onError = () => onGone("transport error");
    const onClose = () => onGone("the transport closed");
    function detach(): void {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("error", onError);
      stream.off("close", onClose);
      // The transport is ours until the end: a late error on it (e.g. the AbortError of
      // a destroyed Duplex) must not become an uncaught exception.
      stream.on("error", () => undefined);
      if (paused) {
        paused = false;
        stream.resume();
      }
    }
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("error", onError);
    stream.on("close", onClose);

    if (config.role === "client") conn.start();
    pump();
  });
}
