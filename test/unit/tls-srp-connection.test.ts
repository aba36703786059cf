/**
 * The sans-IO TLS-SRP core (src/tls-srp/connection.ts) against itself: every suite,
 * data both ways, closure, a wrong password, an unknown or missing username, small
 * groups, B or A = 0 mod N, a tampered signature, a tampered record, byte-by-byte
 * delivery; the TLS 1.2 PRF known answer; and the Node adapter over an in-memory
 * duplex pair.
 *
 * Spec: RFC 5246 (TLS 1.2), RFC 5054 (SRP for TLS), RFC 7627 (extended master secret).
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Duplex, PassThrough } from "node:stream";
import { concat, fromHex, toHex } from "../../src/core/bytes.js";
import { SeededRandom } from "../../src/core/testing.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { SIGNATURE_SCHEMES } from "../../src/tls-srp/crypto.js";
import { SrpTlsConnection, type SrpTlsEvent } from "../../src/tls-srp/connection.js";
import { SrpTlsError } from "../../src/tls-srp/errors.js";
import { srpGroup } from "../../src/tls-srp/groups.js";
import { prf } from "../../src/tls-srp/keys.js";
import {
  ContentType,
  EMPTY_RENEGOTIATION_INFO_SCSV,
  ExtensionType,
  HandshakeType,
  SRP_SUITES,
  SRP_SUITE_NAMES,
  decodeServerKeyExchange,
  encodeClientHello,
  encodeClientKeyExchange,
  encodeServerKeyExchange,
  encodeSrpParams,
  type SrpSuiteName,
} from "../../src/tls-srp/messages.js";
import { nodeTlsCrypto } from "../../src/tls-srp/node-crypto.js";
import { pemCertificates, srpTlsOverDuplex } from "../../src/tls-srp/node.js";
import { bigintToBytes } from "../../src/tls-srp/srp.js";
import { MemoryVerifierStore, createVerifier } from "../../src/tls-srp/verifiers.js";

const sha1 = (...p: readonly Uint8Array[]) => nodeTlsCrypto.hash("sha1", ...p);
const enc = new TextEncoder();
const dec = new TextDecoder();

let certPem = "";
let keyPem = "";
let chain: Uint8Array[] = [];

before(() => {
  const dir = mkdtempSync(join(tmpdir(), "tls-srp-unit-"));
  try {
    execFileSync(
      "openssl",
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=test", "-days", "1", "-keyout", join(dir, "k.pem"), "-out", join(dir, "c.pem")],
      { stdio: "ignore" },
    );
    certPem = readFileSync(join(dir, "c.pem"), "utf8");
    keyPem = readFileSync(join(dir, "k.pem"), "utf8");
    chain = pemCertificates(certPem);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

type Tap = (from: "client" | "server", bytes: Uint8Array) => Uint8Array | undefined;

interface PairOptions {
  readonly password?: string;
  readonly username?: string;
  readonly suites?: readonly SrpSuiteName[];
  readonly serverSuites?: readonly SrpSuiteName[];
  readonly groupBits?: 1024 | 2048 | 4096;
  readonly minGroupBits?: number;
  readonly certificate?: boolean;
  readonly seed?: string;
  readonly signatureSchemes?: readonly (typeof SIGNATURE_SCHEMES)[keyof typeof SIGNATURE_SCHEMES][];
}

function pair(o: PairOptions = {}) {
  const random = new SeededRandom(nodeCrypto, o.seed ?? "tls-srp");
  const store = new MemoryVerifierStore().set("alice", createVerifier(sha1, random, "alice", "pw", o.groupBits ?? 2048));
  const client = new SrpTlsConnection({
    role: "client",
    crypto: nodeTlsCrypto,
    random,
    username: o.username ?? "alice",
    password: o.password ?? "pw",
    ...(o.suites ? { suites: o.suites } : {}),
    ...(o.minGroupBits !== undefined ? { minGroupBits: o.minGroupBits } : {}),
  });
  const server = new SrpTlsConnection({
    role: "server",
    crypto: nodeTlsCrypto,
    random,
    ...(o.serverSuites ? { suites: o.serverSuites } : {}),
    ...(o.certificate !== false ? { certificate: { chain, key: { pem: keyPem } } } : {}),
    ...(o.signatureSchemes ? { signatureSchemes: o.signatureSchemes } : {}),
  });
  const events = { client: [] as SrpTlsEvent[], server: [] as SrpTlsEvent[] };
  /** Moves bytes until both sides are quiet; `tap` may rewrite or drop a chunk. */
  const pump = (tap?: Tap, byteByByte = false) => {
    for (let moved = true; moved; ) {
      moved = false;
      for (const [from, to, name] of [
        [client, server, "client"],
        [server, client, "server"],
      ] as const) {
        for (let out = from.poll(); out; out = from.poll()) {
          moved = true;
          if (out.kind === "event") {
            events[name].push(out.event);
            if (out.event.type === "verifier-needed") from.provideVerifier(store.lookupSync(out.event.username));
            continue;
          }
          const bytes = tap ? tap(name, out.bytes) : out.bytes;
          if (!bytes) continue;
          if (byteByByte) for (const b of bytes) to.receive(Uint8Array.of(b));
          else to.receive(bytes);
        }
      }
    }
  };
  const errorOf = (side: "client" | "server"): SrpTlsError | undefined => {
    const e = events[side].find((x) => x.type === "error");
    return e?.type === "error" ? e.error : undefined;
  };
  const done = (side: "client" | "server") => events[side].find((x) => x.type === "handshake-done");
  const data = (side: "client" | "server") =>
    dec.decode(concat(...events[side].flatMap((x) => (x.type === "data" ? [x.data] : []))));
  return { client, server, events, pump, errorOf, done, data, store };
}

/** Splits a flight into records: [type, fragment]. */
function records(bytes: Uint8Array): [number, Uint8Array][] {
  const out: [number, Uint8Array][] = [];
  for (let o = 0; o < bytes.length; ) {
    const len = ((bytes[o + 3] ?? 0) << 8) | (bytes[o + 4] ?? 0);
    out.push([bytes[o] ?? 0, bytes.subarray(o + 5, o + 5 + len)]);
    o += 5 + len;
  }
  return out;
}
function record(type: number, fragment: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(type, 3, 3, fragment.length >> 8, fragment.length & 0xff), fragment);
}
/** Splits plaintext handshake bytes into [type, body] messages. */
function messages(bytes: Uint8Array): [number, Uint8Array][] {
  const out: [number, Uint8Array][] = [];
  for (let o = 0; o < bytes.length; ) {
    const len = ((bytes[o + 1] ?? 0) << 16) | ((bytes[o + 2] ?? 0) << 8) | (bytes[o + 3] ?? 0);
    out.push([bytes[o] ?? 0, bytes.subarray(o + 4, o + 4 + len)]);
    o += 4 + len;
  }
  return out;
}
function hsMessage(type: number, body: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(type, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff), body);
}

test("TLS 1.2 PRF (P_SHA256) known answer, also produced by OpenSSL's TLS1-PRF", () => {
  const out = prf(nodeTlsCrypto, fromHex("9bbe436ba940f017b17652849a71db35"), "test label", fromHex("a0ba9f936cda311827a6f796ffd5198c"), 100);
  assert.equal(
    toHex(out),
    "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66",
  );
});

describe("our client against our server (sans-IO)", () => {
  for (const suite of SRP_SUITE_NAMES) {
    test(`${suite}: handshake, data both ways, close_notify`, () => {
      const p = pair({ suites: [suite] });
      p.client.start();
      p.pump();
      const c = p.done("client");
      const s = p.done("server");
      assert.ok(c?.type === "handshake-done" && s?.type === "handshake-done");
      assert.equal(c.suite, suite);
      assert.equal(s.suite, suite);
      assert.equal(s.username, "alice");
      assert.equal(c.extendedMasterSecret, true);
      assert.equal(c.peerCertificates.length, SRP_SUITES[suite].rsa ? 1 : 0);
      p.client.write(enc.encode("hello server"));
      p.server.write(enc.encode("hello client"));
      p.pump();
      assert.equal(p.data("server"), "hello server");
      assert.equal(p.data("client"), "hello client");
      p.client.close();
      p.pump();
      assert.ok(p.events.server.some((e) => e.type === "closed"));
      assert.ok(p.events.client.some((e) => e.type === "closed"));
      assert.equal(p.client.stateName, "closed");
    });
  }

  test("the server prefers its own order; RSA suites need a certificate", () => {
    const p = pair({ certificate: false });
    p.client.start();
    p.pump();
    const s = p.done("server");
    assert.ok(s?.type === "handshake-done");
    assert.equal(s.suite, "TLS_SRP_SHA_WITH_AES_256_CBC_SHA");
    assert.throws(
      () => new SrpTlsConnection({ role: "server", crypto: nodeTlsCrypto, random: new SeededRandom(nodeCrypto, "x"), suites: ["TLS_SRP_SHA_RSA_WITH_AES_128_CBC_SHA"] }),
      RangeError,
    );
  });

  test("PKCS#1 v1.5 signatures when the server prefers them", () => {
    const p = pair({ suites: ["TLS_SRP_SHA_RSA_WITH_AES_128_CBC_SHA"], signatureSchemes: [SIGNATURE_SCHEMES.rsa_pkcs1_sha256] });
    p.client.start();
    p.pump();
    assert.ok(p.done("client"));
  });

  test("byte-by-byte delivery and 100 KB of data split into records", () => {
    const p = pair();
    p.client.start();
    p.pump(undefined, true);
    assert.ok(p.done("client") && p.done("server"));
    const big = "x".repeat(100_000);
    p.client.write(enc.encode(big));
    const sent: Uint8Array[] = [];
    p.pump((from, b) => {
      if (from === "client") sent.push(b);
      return b;
    });
    assert.equal(p.data("server"), big);
    assert.equal(sent.length, Math.ceil(100_000 / 16384));
  });

  test("groups 1024 and 4096 when the client allows them", () => {
    for (const bits of [1024, 4096] as const) {
      const p = pair({ groupBits: bits, minGroupBits: 1024 });
      p.client.start();
      p.pump();
      const c = p.done("client");
      assert.ok(c?.type === "handshake-done");
      assert.equal(c.groupBits, bits);
    }
  });
});

describe("failures end cleanly on both sides", () => {
  test("a wrong password: bad_record_mac sent by the server, received by the client", () => {
    const p = pair({ password: "not pw" });
    p.client.start();
    p.pump();
    assert.equal(p.errorOf("server")?.condition, "bad_record_mac");
    assert.equal(p.errorOf("server")?.origin, "sent");
    assert.equal(p.errorOf("client")?.condition, "bad_record_mac");
    assert.equal(p.errorOf("client")?.origin, "received");
    assert.equal(p.done("client"), undefined);
    assert.equal(p.done("server"), undefined);
    assert.throws(() => p.client.write(enc.encode("x")), SrpTlsError);
  });

  test("an unknown username: unknown_psk_identity (RFC 5054 2.5.1.3)", () => {
    const p = pair({ username: "mallory" });
    p.client.start();
    p.pump();
    assert.equal(p.errorOf("server")?.condition, "unknown_psk_identity");
    assert.equal(p.errorOf("client")?.condition, "unknown_psk_identity");
  });

  test("a ClientHello without the SRP extension: unknown_psk_identity (RFC 5054 2.5.1.2)", () => {
    const p = pair();
    const hello = encodeClientHello({
      version: 0x0303,
      random: new Uint8Array(32),
      sessionId: new Uint8Array(0),
      cipherSuites: [SRP_SUITES.TLS_SRP_SHA_WITH_AES_128_CBC_SHA.code, EMPTY_RENEGOTIATION_INFO_SCSV],
      compressionMethods: Uint8Array.of(0),
      extensions: [],
    });
    p.server.receive(record(ContentType.handshake, hello));
    p.pump();
    assert.equal(p.errorOf("server")?.condition, "unknown_psk_identity");
  });

  test("a group below the client's minimum: insufficient_security", () => {
    const p = pair({ groupBits: 1024 });
    p.client.start();
    p.pump();
    assert.equal(p.errorOf("client")?.condition, "insufficient_security");
    assert.equal(p.errorOf("server")?.condition, "insufficient_security");
  });

  test("no common suite: handshake_failure", () => {
    const p = pair({ suites: ["TLS_SRP_SHA_WITH_AES_128_CBC_SHA"], serverSuites: ["TLS_SRP_SHA_WITH_AES_256_CBC_SHA"] });
    p.client.start();
    p.pump();
    assert.equal(p.errorOf("server")?.condition, "handshake_failure");
  });

  test("B = 0 mod N: the client aborts with illegal_parameter (RFC 5054 2.5.3)", () => {
    const p = pair({ suites: ["TLS_SRP_SHA_WITH_AES_128_CBC_SHA"] });
    p.client.start();
    p.pump((from, bytes) => {
      if (from !== "server" || bytes[0] !== ContentType.handshake) return bytes;
      const out = messages(records(bytes)[0]?.[1] ?? new Uint8Array(0)).map(([type, body]) => {
        if (type !== HandshakeType.server_key_exchange) return hsMessage(type, body);
        const ske = decodeServerKeyExchange(body, false);
        const N = srpGroup(2048).N;
        return encodeServerKeyExchange(encodeSrpParams(ske.params.N, ske.params.g, ske.params.s, bigintToBytes(N)));
      });
      return record(ContentType.handshake, concat(...out));
    });
    assert.equal(p.errorOf("client")?.condition, "illegal_parameter");
  });

  test("A = 0 mod N: the server aborts with illegal_parameter (RFC 5054 2.5.4)", () => {
    const p = pair();
    p.client.start();
    let replaced = false;
    p.pump((from, bytes) => {
      if (from !== "client" || replaced || bytes[0] !== ContentType.handshake) return bytes;
      const [[type]] = messages(records(bytes)[0]?.[1] ?? new Uint8Array(0)) as [[number, Uint8Array]];
      if (type !== HandshakeType.client_key_exchange) return bytes;
      replaced = true;
      return record(ContentType.handshake, encodeClientKeyExchange(bigintToBytes(2n * srpGroup(2048).N)));
    });
    assert.ok(replaced);
    assert.equal(p.errorOf("server")?.condition, "illegal_parameter");
  });

  test("a tampered ServerKeyExchange signature: decrypt_error", () => {
    const p = pair({ suites: ["TLS_SRP_SHA_RSA_WITH_AES_256_CBC_SHA"] });
    p.client.start();
    p.pump((from, bytes) => {
      if (from !== "server" || bytes[0] !== ContentType.handshake) return bytes;
      const out = messages(records(bytes)[0]?.[1] ?? new Uint8Array(0)).map(([type, body]) => {
        const b = body.slice();
        if (type === HandshakeType.server_key_exchange) b[b.length - 1] = (b[b.length - 1] ?? 0) ^ 1;
        return hsMessage(type, b);
      });
      return record(ContentType.handshake, concat(...out));
    });
    assert.equal(p.errorOf("client")?.condition, "decrypt_error");
  });

  test("a tampered handshake (salt changed): the Finished check fails", () => {
    const p = pair({ suites: ["TLS_SRP_SHA_WITH_AES_128_CBC_SHA"] });
    p.client.start();
    p.pump((from, bytes) => {
      if (from !== "server" || bytes[0] !== ContentType.handshake) return bytes;
      const out = messages(records(bytes)[0]?.[1] ?? new Uint8Array(0)).map(([type, body]) => {
        if (type !== HandshakeType.server_key_exchange) return hsMessage(type, body);
        const ske = decodeServerKeyExchange(body, false);
        const s = ske.params.s.slice();
        s[0] = (s[0] ?? 0) ^ 0x80;
        return encodeServerKeyExchange(encodeSrpParams(ske.params.N, ske.params.g, s, ske.params.B));
      });
      return record(ContentType.handshake, concat(...out));
    });
    assert.ok(p.errorOf("server") ?? p.errorOf("client"));
    assert.equal(p.done("client"), undefined);
  });

  for (const where of ["iv", "ciphertext", "last byte"] as const) {
    test(`a tampered application data record (${where}): bad_record_mac, nothing delivered`, () => {
      const p = pair();
      p.client.start();
      p.pump();
      p.client.write(enc.encode("attack at dawn"));
      p.pump((from, bytes) => {
        if (from !== "client" || bytes[0] !== ContentType.application_data) return bytes;
        const t = bytes.slice();
        const i = where === "iv" ? 5 : where === "ciphertext" ? 5 + 16 + 3 : t.length - 1;
        t[i] = (t[i] ?? 0) ^ 0x01;
        return t;
      });
      assert.equal(p.data("server"), "");
      assert.equal(p.errorOf("server")?.condition, "bad_record_mac");
      assert.equal(p.errorOf("client")?.condition, "bad_record_mac");
      assert.equal(p.errorOf("client")?.origin, "received");
    });
  }

  test("a replayed record: bad_record_mac (sequence numbers)", () => {
    const p = pair();
    p.client.start();
    p.pump();
    p.client.write(enc.encode("once"));
    p.pump((from, bytes) => (from === "client" && bytes[0] === ContentType.application_data ? concat(bytes, bytes) : bytes));
    assert.equal(p.data("server"), "once");
    assert.equal(p.errorOf("server")?.condition, "bad_record_mac");
  });

  test("application data before the handshake finished: unexpected_message", () => {
    const p = pair();
    p.server.receive(record(ContentType.application_data, enc.encode("hi")));
    p.pump();
    assert.equal(p.errorOf("server")?.condition, "unexpected_message");
  });

  test("a ChangeCipherSpec out of order: unexpected_message", () => {
    const p = pair();
    p.client.start();
    p.server.receive(record(ContentType.change_cipher_spec, Uint8Array.of(1)));
    const out: SrpTlsEvent[] = [];
    for (let o = p.server.poll(); o; o = p.server.poll()) if (o.kind === "event") out.push(o.event);
    assert.ok(out.some((e) => e.type === "error" && e.error.condition === "unexpected_message"));
  });

  test("an unsolicited ServerHello extension: unsupported_extension", () => {
    const p = pair({ suites: ["TLS_SRP_SHA_WITH_AES_128_CBC_SHA"] });
    p.client.start();
    p.pump((from, bytes) => {
      if (from !== "server" || bytes[0] !== ContentType.handshake) return bytes;
      const out = messages(records(bytes)[0]?.[1] ?? new Uint8Array(0)).map(([type, body]) => {
        if (type !== HandshakeType.server_hello) return hsMessage(type, body);
        // Append a session_ticket (35) extension to the extension block.
        const fixedLen = 2 + 32 + 1 + (body[34] ?? 0) + 2 + 1;
        const exts = body.subarray(fixedLen + 2);
        const added = concat(exts, Uint8Array.of(0, 35, 0, 0));
        return hsMessage(type, concat(body.subarray(0, fixedLen), Uint8Array.of(added.length >> 8, added.length & 0xff), added));
      });
      return record(ContentType.handshake, concat(...out));
    });
    assert.equal(p.errorOf("client")?.condition, "unsupported_extension");
  });

  test("an SRP extension type constant matches RFC 5054 section 2.8.1", () => {
    assert.equal(ExtensionType.srp, 12);
    assert.deepEqual(
      SRP_SUITE_NAMES.map((n) => SRP_SUITES[n].code.toString(16)),
      ["c01d", "c01e", "c020", "c021"],
    );
  });
});

/** Two Duplexes joined back to back in memory. */
function duplexPair(): [Duplex, Duplex, PassThrough, PassThrough] {
  const ab = new PassThrough();
  const ba = new PassThrough();
  return [Duplex.from({ readable: ba, writable: ab }), Duplex.from({ readable: ab, writable: ba }), ab, ba];
}

describe("Node adapter over an in-memory duplex pair", () => {
  for (const suite of SRP_SUITE_NAMES) {
    test(`${suite}: srpTlsOverDuplex both roles`, async () => {
      const [a, b] = duplexPair();
      const [c, s] = await Promise.all([
        srpTlsOverDuplex(a, { role: "client", username: "bob@example.org", password: "hunter2", suites: [suite] }),
        srpTlsOverDuplex(b, { role: "server", username: "bob@example.org", password: "hunter2", certificate: { cert: certPem, key: keyPem } }),
      ]);
      assert.equal(c.suite, suite);
      assert.equal(s.suite, suite);
      const got = new Promise<string>((resolve) => s.once("data", (d: Buffer) => resolve(d.toString())));
      c.write("over the tunnel");
      assert.equal(await got, "over the tunnel");
      const back = new Promise<string>((resolve) => c.once("data", (d: Buffer) => resolve(d.toString())));
      s.write("and back");
      assert.equal(await back, "and back");
      const ended = new Promise<void>((resolve) => s.once("end", () => resolve()));
      s.resume();
      c.end();
      await ended;
    });
  }

  test("a wrong password rejects on both ends with typed errors", async () => {
    const [a, b] = duplexPair();
    const [c, s] = await Promise.allSettled([
      srpTlsOverDuplex(a, { role: "client", username: "bob", password: "wrong" }),
      srpTlsOverDuplex(b, { role: "server", username: "bob", password: "right" }),
    ]);
    assert.ok(c.status === "rejected" && c.reason instanceof SrpTlsError && c.reason.condition === "bad_record_mac");
    assert.ok(s.status === "rejected" && s.reason instanceof SrpTlsError && s.reason.condition === "bad_record_mac");
    assert.ok(!String(c.reason.message).includes("wrong") && !String(s.reason.message).includes("right"));
  });

  test("a transport that ends mid-handshake rejects with transport_closed", async () => {
    const [a, , , toA] = duplexPair();
    const p = srpTlsOverDuplex(a, { role: "client", username: "bob", password: "pw" });
    toA.end(); // the peer's side ends before any answer
    await assert.rejects(p, (e: unknown) => e instanceof SrpTlsError && e.condition === "transport_closed");
  });

  test("bad options are refused", async () => {
    const [a] = duplexPair();
    await assert.rejects(srpTlsOverDuplex(a, { role: "client", username: "bob" }), RangeError);
    await assert.rejects(srpTlsOverDuplex(a, { role: "client", username: "bob", password: "x", suites: ["TLS_RSA_WITH_NULL_MD5"] }), RangeError);
    await assert.rejects(srpTlsOverDuplex(a, { role: "server", username: "bob", password: "x", group: 1000 }), RangeError);
  });
});
