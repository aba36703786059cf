/**
 * RFC 5054 (SRP for TLS) Appendix A groups and Appendix B test vectors for the SRP-6a
 * computations of src/tls-srp/srp.ts, the SRP base64 codec and the tpasswd reader
 * (checked against files written by GnuTLS's srptool).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkPrimeSync, getDiffieHellman } from "node:crypto";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromHex, toHex } from "../../src/core/bytes.js";
import { SRP_GROUP_BITS, knownGroup, srpGroup } from "../../src/tls-srp/groups.js";
import {
  bigintToBytes,
  isValidPublic,
  srpClientPremaster,
  srpClientPublic,
  srpK,
  srpServerPremaster,
  srpServerPublic,
  srpU,
  srpVerifier,
  srpX,
} from "../../src/tls-srp/srp.js";
import { nodeTlsCrypto } from "../../src/tls-srp/node-crypto.js";
import { decodeSrpBase64, encodeSrpBase64 } from "../../src/tls-srp/srp-base64.js";
import { createVerifier, formatTpasswd, parseTpasswd } from "../../src/tls-srp/verifiers.js";
import { systemRandom } from "../../src/crypto/node.js";

const sha1 = (...p: readonly Uint8Array[]) => nodeTlsCrypto.hash("sha1", ...p);
const big = (s: string) => BigInt(`0x${s.replace(/\s+/g, "")}`);

// RFC 5054 Appendix B.
const B_VEC = {
  I: "alice",
  P: "password123",
  s: "BEB25379 D1A8581E B5A72767 3A2441EE",
  k: "7556AA04 5AEF2CDD 07ABAF0F 665C3E81 8913186F",
  x: "94B7555A ABE9127C C58CCF49 93DB6CF8 4D16C124",
  v:
    "7E273DE8 696FFC4F 4E337D05 B4B375BE B0DDE156 9E8FA00A 9886D812 9BADA1F1 822223CA 1A605B53 0E379BA4 729FDC59" +
    "F105B478 7E5186F5 C671085A 1447B52A 48CF1970 B4FB6F84 00BBF4CE BFBB1681 52E08AB5 EA53D15C 1AFF87B2 B9DA6E04" +
    "E058AD51 CC72BFC9 033B564E 26480D78 E955A5E2 9E7AB245 DB2BE315 E2099AFB",
  a: "60975527 035CF2AD 1989806F 0407210B C81EDC04 E2762A56 AFD529DD DA2D4393",
  b: "E487CB59 D31AC550 471E81F0 0F6928E0 1DDA08E9 74A004F4 9E61F5D1 05284D20",
  A:
    "61D5E490 F6F1B795 47B0704C 436F523D D0E560F0 C64115BB 72557EC4 4352E890 3211C046 92272D8B 2D1A5358 A2CF1B6E" +
    "0BFCF99F 921530EC 8E393561 79EAE45E 42BA92AE ACED8251 71E1E8B9 AF6D9C03 E1327F44 BE087EF0 6530E69F 66615261" +
    "EEF54073 CA11CF58 58F0EDFD FE15EFEA B349EF5D 76988A36 72FAC47B 0769447B",
  B:
    "BD0C6151 2C692C0C B6D041FA 01BB152D 4916A1E7 7AF46AE1 05393011 BAF38964 DC46A067 0DD125B9 5A981652 236F99D9" +
    "B681CBF8 7837EC99 6C6DA044 53728610 D0C6DDB5 8B318885 D7D82C7F 8DEB75CE 7BD4FBAA 37089E6F 9C6059F3 88838E7A" +
    "00030B33 1EB76840 910440B1 B27AAEAE EB4012B7 D7665238 A8E3FB00 4B117B58",
  u: "CE38B959 3487DA98 554ED47D 70A7AE5F 462EF019",
  S:
    "B0DC82BA BCF30674 AE450C02 87745E79 90A3381F 63B387AA F271A10D 233861E3 59B48220 F7C4693C 9AE12B0A 6F67809F" +
    "0876E2D0 13800D6C 41BB59B6 D5979B5C 00A172B4 A2A5903A 0BDCAF8A 709585EB 2AFAFA8F 3499B200 210DCC1F 10EB3394" +
    "3CD67FC8 8A2F39A4 BE5BEC4E C0A3212D C346D7E4 74B29EDE 8A469FFE CA686E5A",
};

test("RFC 5054 Appendix B: x, v, k, A, B, u and the premaster secret on both sides", () => {
  const g = srpGroup(1024);
  const salt = fromHex(B_VEC.s.replace(/\s+/g, ""));
  const x = srpX(sha1, salt, B_VEC.I, B_VEC.P);
  assert.equal(x, big(B_VEC.x));
  const v = srpVerifier(g, x);
  assert.equal(v, big(B_VEC.v));
  const k = srpK(sha1, g);
  assert.equal(k, big(B_VEC.k));
  const A = srpClientPublic(g, big(B_VEC.a));
  assert.equal(A, big(B_VEC.A));
  const B = srpServerPublic(g, k, v, big(B_VEC.b));
  assert.equal(B, big(B_VEC.B));
  const u = srpU(sha1, g, A, B);
  assert.equal(u, big(B_VEC.u));
  const sClient = srpClientPremaster(g, k, x, big(B_VEC.a), u, B);
  const sServer = srpServerPremaster(g, v, u, A, big(B_VEC.b));
  assert.equal(sClient, big(B_VEC.S));
  assert.equal(sServer, big(B_VEC.S));
  assert.equal(toHex(bigintToBytes(sClient)).toUpperCase(), B_VEC.S.replace(/\s+/g, ""));
});

test("Appendix A groups: primes, safe primes, RFC 3526 agreement, generators", () => {
  const modp: Record<number, string> = { 3072: "modp15", 4096: "modp16", 6144: "modp17", 8192: "modp18" };
  for (const bits of SRP_GROUP_BITS) {
    const g = srpGroup(bits);
    const N = bigintToBytes(g.N);
    assert.equal(N.length * 8, bits);
    if (bits <= 2048) {
      assert.ok(checkPrimeSync(N), `${bits} prime`);
      assert.ok(checkPrimeSync(bigintToBytes((g.N - 1n) / 2n)), `${bits} safe prime`);
    } else {
      const name = modp[bits];
      assert.ok(name);
      assert.equal(toHex(N), getDiffieHellman(name).getPrime().toString("hex"), `${bits} = RFC 3526`);
    }
    assert.equal(g.g, bits <= 2048 ? 2n : bits === 8192 ? 19n : 5n);
    assert.equal(knownGroup(g.N, g.g), g);
  }
  assert.equal(knownGroup(srpGroup(2048).N, 5n), undefined);
});

test("public values that are 0 mod N are rejected (RFC 5054 2.5.3, 2.5.4)", () => {
  const g = srpGroup(2048);
  for (const m of [0n, 1n, 2n, 5n]) assert.equal(isValidPublic(g, m * g.N), false);
  assert.equal(isValidPublic(g, g.N + 1n), true);
});

test("client and server agree for every group with fresh values", () => {
  for (const bits of [1024, 2048, 4096] as const) {
    const g = srpGroup(bits);
    const rec = createVerifier(sha1, systemRandom, "bob@example.org", "correct horse", bits);
    const x = srpX(sha1, rec.salt, "bob@example.org", "correct horse");
    const v = big(toHex(rec.verifier));
    const k = srpK(sha1, g);
    const a = big(toHex(systemRandom.bytes(32)));
    const b = big(toHex(systemRandom.bytes(32)));
    const A = srpClientPublic(g, a);
    const B = srpServerPublic(g, k, v, b);
    const u = srpU(sha1, g, A, B);
    assert.equal(srpClientPremaster(g, k, x, a, u, B), srpServerPremaster(g, v, u, A, b));
    const xWrong = srpX(sha1, rec.salt, "bob@example.org", "wrong");
    assert.notEqual(srpClientPremaster(g, k, xWrong, a, u, B), srpServerPremaster(g, v, u, A, b));
  }
});

test("SRP base64 round-trips and decodes like GnuTLS", () => {
  for (let n = 1; n < 40; n++) {
    const b = systemRandom.bytes(n);
    b[0] = (b[0] ?? 0) | 0x80;
    assert.deepEqual(decodeSrpBase64(encodeSrpBase64(b)), b);
  }
  assert.equal(decodeSrpBase64("ab!c"), undefined);
  assert.equal(decodeSrpBase64(""), undefined);
  assert.deepEqual(decodeSrpBase64("J"), Uint8Array.of(19));
  assert.deepEqual(decodeSrpBase64("2"), Uint8Array.of(2));
});

test("srptool's tpasswd: the verifier read back is g^x for the password (GnuTLS interop)", () => {
  const dir = mkdtempSync(join(tmpdir(), "srptool-"));
  try {
    const conf = join(dir, "tpasswd.conf");
    const passwd = join(dir, "tpasswd");
    execFileSync("srptool", [`--create-conf=${conf}`], { stdio: "ignore" });
    writeFileSync(passwd, "");
    for (const [user, index] of [["alice", "3"], ["carol@example.org", "2"], ["dave", "4"]] as const)
      execFileSync("srptool", ["--passwd", passwd, "--passwd-conf", conf, "-u", user, "-i", index], {
        input: "s3cret pass\ns3cret pass\n",
        stdio: ["pipe", "ignore", "ignore"],
      });
    const store = parseTpasswd(readFileSync(passwd, "utf8"), readFileSync(conf, "utf8"));
    assert.equal(store.size, 3);
    for (const [user, bits] of [["alice", 2048], ["carol@example.org", 1536], ["dave", 3072]] as const) {
      const rec = store.lookupSync(user);
      assert.ok(rec);
      assert.equal(rec.group.bits, bits);
      const v = srpVerifier(rec.group, srpX(sha1, rec.salt, user, "s3cret pass"));
      assert.equal(toHex(bigintToBytes(v)), toHex(rec.verifier), user);
    }
    // And what we write, GnuTLS's srptool verifies.
    const mine = new Map([["erin", createVerifier(sha1, systemRandom, "erin", "pw 1", 2048)]]);
    const f = formatTpasswd(mine);
    writeFileSync(passwd, f.tpasswd);
    writeFileSync(conf, f.tpasswdConf);
    const verify = (pw: string) =>
      spawnSync("srptool", ["--passwd", passwd, "--passwd-conf", conf, "-u", "erin", "--verify"], { input: `${pw}\n` });
    const ok = verify("pw 1");
    assert.equal(ok.status, 0);
    assert.match(`${ok.stdout.toString()}${ok.stderr.toString()}`, /Password verified/i);
    assert.notEqual(verify("pw 2").status, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
