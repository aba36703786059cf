/**
 * Interop of our TLS-SRP (RFC 5054 over RFC 5246 TLS 1.2) with GnuTLS, an independent
 * implementation: we are the client against `gnutls-serv --echo`, and the server
 * against `gnutls-cli`, for each SRP suite, with application data both ways and a wrong
 * password failing cleanly on both ends. Verifier files come from GnuTLS's `srptool`;
 * the certificate for the *_RSA_* suites from `openssl req`. Loopback only.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SrpTlsError } from "../../src/tls-srp/errors.js";
import { SRP_SUITE_NAMES, type SrpSuiteName } from "../../src/tls-srp/messages.js";
import { readTpasswdFiles, srpTlsOverDuplex, type SrpTlsDuplex } from "../../src/tls-srp/node.js";
import type { VerifierStore } from "../../src/tls-srp/verifiers.js";

const USER = "alice@localhost"; // a JID works as the SRP username
const PASSWORD = "correct horse battery";

/** GnuTLS priority fragments selecting exactly one of our suites. */
const GNUTLS: Record<SrpSuiteName, { kx: string; cipher: string }> = {
  TLS_SRP_SHA_WITH_AES_128_CBC_SHA: { kx: "SRP", cipher: "AES-128-CBC" },
  TLS_SRP_SHA_WITH_AES_256_CBC_SHA: { kx: "SRP", cipher: "AES-256-CBC" },
  TLS_SRP_SHA_RSA_WITH_AES_128_CBC_SHA: { kx: "SRP-RSA", cipher: "AES-128-CBC" },
  TLS_SRP_SHA_RSA_WITH_AES_256_CBC_SHA: { kx: "SRP-RSA", cipher: "AES-256-CBC" },
};

let dir = "";
let tpasswd = "";
let tpasswdConf = "";
let certPem = "";
let keyPem = "";

before(() => {
  dir = mkdtempSync(join(tmpdir(), "tls-srp-gnutls-"));
  tpasswd = join(dir, "tpasswd");
  tpasswdConf = join(dir, "tpasswd.conf");
  execFileSync("srptool", [`--create-conf=${tpasswdConf}`], { stdio: "ignore" });
  writeFileSync(tpasswd, "");
  execFileSync("srptool", ["--passwd", tpasswd, "--passwd-conf", tpasswdConf, "-u", USER], {
    input: `${PASSWORD}\n${PASSWORD}\n`,
    stdio: ["pipe", "ignore", "ignore"],
  });
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=test", "-days", "1", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")],
    { stdio: "ignore" },
  );
  certPem = readFileSync(join(dir, "cert.pem"), "utf8");
  keyPem = readFileSync(join(dir, "key.pem"), "utf8");
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function tcp(port: number): Promise<Socket> {
  const sock = connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    sock.once("connect", resolve);
    sock.once("error", reject);
  });
  return sock;
}

/** Reads from the plaintext stream until `n` bytes arrived (one listener, nothing lost). */
function readBytes(s: SrpTlsDuplex, n: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= n) {
        s.off("data", onData);
        s.off("error", onErr);
        s.pause();
        resolve(Buffer.concat(chunks));
      }
    };
    const onErr = (e: Error) => {
      s.off("data", onData);
      reject(e);
    };
    s.on("data", onData);
    s.once("error", onErr);
  });
}

describe("we are the TLS-SRP client, gnutls-serv is the server", () => {
  let serv: ChildProcessWithoutNullStreams | undefined;
  let port = 0;
  let log = "";

  before(async () => {
    port = await freePort();
    serv = spawn("gnutls-serv", [
      "--echo",
      "-p",
      String(port),
      "--srppasswd",
      tpasswd,
      "--srppasswdconf",
      tpasswdConf,
      "--x509certfile",
      join(dir, "cert.pem"),
      "--x509keyfile",
      join(dir, "key.pem"),
      "--priority",
      "NORMAL:-VERS-TLS1.3:+SRP:+SRP-RSA:+SRP-DSS",
    ]);
    // Never leave the server behind, even when the run is cancelled before after().
    const child = serv;
    process.once("exit", () => child.kill());
    serv.stdout.on("data", (d: Buffer) => (log += d.toString()));
    serv.stderr.on("data", (d: Buffer) => (log += d.toString()));
    // gnutls-serv listens on all interfaces; we only ever connect to 127.0.0.1.
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        (await tcp(port)).destroy();
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`gnutls-serv did not start: ${log.slice(-500)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });

  after(async () => {
    if (serv && serv.exitCode === null) {
      const exited = new Promise((r) => serv?.once("exit", r));
      serv.kill();
      await exited;
    }
  });

  for (const suite of SRP_SUITE_NAMES) {
    test(`${suite}: handshake and echoed data`, { timeout: 20_000 }, async () => {
      const sock = await tcp(port);
      try {
        const t = await srpTlsOverDuplex(sock, { role: "client", username: USER, password: PASSWORD, suites: [suite] });
        assert.equal(t.suite, suite);
        assert.equal(t.groupBits, 2048);
        assert.equal(t.peerCertificates.length, suite.includes("_RSA_") ? 1 : 0);
        const msg = Buffer.from(`ping over ${suite}\n`);
        t.write(msg);
        assert.deepEqual(await readBytes(t, msg.length), msg);
        t.end();
      } finally {
        sock.destroy();
      }
    });

    test(`${suite}: a wrong password fails with bad_record_mac`, { timeout: 20_000 }, async () => {
      const sock = await tcp(port);
      try {
        await assert.rejects(
          srpTlsOverDuplex(sock, { role: "client", username: USER, password: "wrong password", suites: [suite] }),
          (e: unknown) => e instanceof SrpTlsError && e.condition === "bad_record_mac" && e.origin === "received",
        );
      } finally {
        sock.destroy();
      }
    });
  }

  test("60 KB of lines are fragmented into full-size records and come back intact", { timeout: 20_000 }, async () => {
    const sock = await tcp(port);
    try {
      const t = await srpTlsOverDuplex(sock, { role: "client", username: USER, password: PASSWORD });
      // gnutls-serv --echo answers line by line (it is a text "command" echo), so send lines.
      let text = "";
      for (let i = 0; i < 60; i++) text += `${i}:${randomBytes(500).toString("hex")}\n`;
      const data = Buffer.from(text);
      t.write(data);
      assert.deepEqual(await readBytes(t, data.length), data);
      t.end();
    } finally {
      sock.destroy();
    }
  });

  test("an unknown username fails cleanly (GnuTLS simulates a verifier)", { timeout: 20_000 }, async () => {
    const sock = await tcp(port);
    try {
      await assert.rejects(srpTlsOverDuplex(sock, { role: "client", username: "mallory", password: PASSWORD }), (e: unknown) => e instanceof SrpTlsError);
    } finally {
      sock.destroy();
    }
  });
});

describe("we are the TLS-SRP server, gnutls-cli is the client", () => {
  let store: VerifierStore;
  before(async () => {
    store = await readTpasswdFiles(tpasswd, tpasswdConf);
  });

  interface Run {
    readonly code: number | null;
    readonly output: string;
    readonly server: SrpTlsDuplex | SrpTlsError;
    readonly received: string;
  }

  /** Starts our server, runs gnutls-cli against it, echoes what it sends and greets it. */
  async function run(suite: SrpSuiteName, password: string): Promise<Run> {
    const greeting = `hello from node over ${suite}\n`;
    let received = "";
    let serverResult!: Promise<SrpTlsDuplex | SrpTlsError>;
    const srv = createServer((sock) => {
      serverResult = srpTlsOverDuplex(sock, {
        role: "server",
        username: USER,
        verifiers: store,
        certificate: { cert: certPem, key: keyPem },
        suites: [suite],
      }).then(
        (t) => {
          t.write(greeting);
          t.on("data", (d: Buffer) => {
            received += d.toString();
            t.write(d); // echo
          });
          t.on("end", () => t.end());
          t.on("error", () => undefined);
          return t;
        },
        (e: unknown) => (e instanceof SrpTlsError ? e : Promise.reject(e)),
      );
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as AddressInfo).port;
    try {
      const { kx, cipher } = GNUTLS[suite];
      const cli = spawn("gnutls-cli", [
        "-p",
        String(port),
        "127.0.0.1",
        "--srpusername",
        USER,
        "--srppasswd",
        password,
        "--insecure",
        "--priority",
        `NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+${kx}:-CIPHER-ALL:+${cipher}:-MAC-ALL:+SHA1`,
      ]);
      let output = "";
      let stdout = "";
      let sent = false;
      cli.stdout.on("data", (d: Buffer) => {
        stdout += d.toString();
        output += d.toString();
        if (!sent && stdout.includes(greeting)) {
          sent = true;
          cli.stdin.write("ping from gnutls-cli\n");
        }
        if (sent && stdout.split(greeting)[1]?.includes("ping from gnutls-cli\n")) cli.stdin.end();
      });
      cli.stderr.on("data", (d: Buffer) => (output += d.toString()));
      const timer = setTimeout(() => cli.kill(), 15_000);
      const code = await new Promise<number | null>((r) => cli.once("exit", (c) => r(c)));
      clearTimeout(timer);
      const server = await serverResult;
      return { code, output, server, received };
    } finally {
      srv.close();
    }
  }

  for (const suite of SRP_SUITE_NAMES) {
    test(`${suite}: handshake, greeting and echo both ways`, { timeout: 20_000 }, async () => {
      const r = await run(suite, PASSWORD);
      assert.equal(r.code, 0, r.output.slice(-800));
      assert.ok(!(r.server instanceof SrpTlsError), String(r.server));
      assert.equal(r.server.suite, suite);
      assert.equal(r.server.username, USER);
      const { kx, cipher } = GNUTLS[suite];
      assert.ok(r.output.includes(`(${kx})-(${cipher})-(SHA1)`), r.output.slice(0, 800));
      assert.match(r.output, new RegExp(`hello from node over ${suite}\\n[\\s\\S]*ping from gnutls-cli`));
      assert.equal(r.received, "ping from gnutls-cli\n");
    });

    test(`${suite}: a wrong password fails on both ends`, { timeout: 20_000 }, async () => {
      const r = await run(suite, "wrong password");
      assert.notEqual(r.code, 0);
      assert.ok(r.server instanceof SrpTlsError);
      assert.equal(r.server.condition, "bad_record_mac");
      assert.equal(r.server.origin, "sent");
      assert.match(r.output, /fatal alert/i);
    });
  }

  test("an unknown username is refused with unknown_psk_identity", { timeout: 20_000 }, async () => {
    const srv = createServer();
    let result!: Promise<unknown>;
    srv.on("connection", (sock) => {
      result = srpTlsOverDuplex(sock, { role: "server", username: USER, verifiers: store }).catch((e: unknown) => e);
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    try {
      const cli = spawn("gnutls-cli", [
        "-p",
        String((srv.address() as AddressInfo).port),
        "127.0.0.1",
        "--srpusername",
        "mallory",
        "--srppasswd",
        PASSWORD,
        "--priority",
        "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+SRP",
      ]);
      cli.stdin.end();
      const code = await new Promise<number | null>((r) => cli.once("exit", (c) => r(c)));
      assert.notEqual(code, 0);
      const e = await result;
      assert.ok(e instanceof SrpTlsError);
      assert.equal(e.condition, "unknown_psk_identity");
    } finally {
      srv.close();
    }
  });
});
