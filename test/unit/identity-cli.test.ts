/**
 * `xmpp-e2e keys` (src/cli/keys.ts): create, show, export, import, as a user runs them.
 *
 * Spec: XEP-0116 v0.16 section 10.3 (algorithms), 7.3 (the full fingerprint is shown for
 * out-of-band comparison), 14 (keys at rest: 0600 files, passphrase sealing).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { run, type CliIo } from "../../src/cli/keys.js";
import { openSqliteStore } from "../../src/store/sqlite.js";
import { parseJid } from "../../src/core/types.js";

const dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-keys-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function io(env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const x: CliIo = { out: (l) => out.push(l), err: (l) => err.push(l), env, now: () => Date.UTC(2026, 0, 1) };
  return { x, out, err, text: () => out.join("\n"), errText: () => err.join("\n") };
}

describe("xmpp-e2e keys", () => {
  const store = join(dir, "a.db");
  const base = ["--jid", "alice@example.org/pda", "--store", store];

  it("create (ed25519) then show prints the full fingerprint; the store is 0600", async () => {
    const c = io();
    assert.equal(await run(["create", ...base, "--alg", "ed25519"], c.x), 0, c.errText());
    assert.match(c.text(), /algorithm: +ed25519/);
    const fp = /Base64 (\S+)\)/.exec(c.text())?.[1];
    assert.ok(fp);
    const s = io();
    assert.equal(await run(["show", ...base], s.x), 0);
    assert.ok(s.text().includes(fp));
    assert.match(s.text(), /fingerprint: ([0-9A-F]{4} ){15}[0-9A-F]{4}/);
    assert.equal(statSync(store).mode & 0o777, 0o600);
  });

  it("create --protect seals the key; export needs the passphrase; nothing secret is printed", async () => {
    const p = io({ XMPP_E2E_PASSPHRASE: "hunter2hunter2" });
    assert.equal(await run(["create", ...base, "--alg", "rsa-sha256", "--bits", "2048", "--protect"], p.x), 0, p.errText());
    assert.match(p.text(), /sealed under a passphrase/);
    const fp = /Base64 (\S+)\)/.exec(p.text())?.[1] ?? "";
    const noPass = io();
    assert.equal(await run(["export", ...base, "--key", fp], noPass.x), 2);
    assert.match(noPass.errText(), /passphrase is needed/);
    const wrong = io({ XMPP_E2E_PASSPHRASE: "nope" });
    assert.equal(await run(["export", ...base, "--key", fp], wrong.x), 1);
    assert.match(wrong.errText(), /bad-passphrase/);
    assert.ok(!wrong.errText().includes("nope"));
    const out = join(dir, "exported.pem");
    const ok = io({ XMPP_E2E_PASSPHRASE: "hunter2hunter2" });
    assert.equal(await run(["export", ...base, "--key", fp, "--format", "pem", "--encrypt", "--out", out], ok.x), 0, ok.errText());
    assert.equal(statSync(out).mode & 0o777, 0o600);
    assert.match(readFileSync(out, "utf8"), /BEGIN ENCRYPTED PRIVATE KEY/);
    // OpenSSL opens what we exported.
    const pub = execFileSync("openssl", ["pkey", "-in", out, "-passin", "pass:hunter2hunter2", "-pubout"]).toString();
    assert.match(pub, /BEGIN PUBLIC KEY/);
  });

  it("export public / keyvalue; import into another account, sealed", async () => {
    const pub = io();
    assert.equal(await run(["export", ...base, "--format", "keyvalue"], pub.x), 0);
    assert.match(pub.text(), /^<KeyValue xmlns="http:\/\/www.w3.org\/2000\/09\/xmldsig#">/);
    const file = join(dir, "k.json");
    // The current key is the sealed RSA key of the previous test: unlocking it needs the passphrase.
    const ex = io({ XMPP_E2E_PASSPHRASE: "hunter2hunter2" });
    assert.equal(await run(["export", ...base, "--out", file], ex.x), 0, ex.errText());
    const im = io({ XMPP_E2E_PASSPHRASE: "pw-for-bob-store" });
    const bobStore = join(dir, "b.db");
    assert.equal(await run(["import", file, "--jid", "bob@example.com", "--store", bobStore, "--protect"], im.x), 0, im.errText());
    assert.match(im.text(), /sealed/);
    const s = openSqliteStore(bobStore);
    const [k] = await s.listIdentities(parseJid("bob@example.com"));
    await s.close();
    assert.equal(k?.protection, "passphrase");
    assert.ok(!Buffer.from(k?.privateKey ?? new Uint8Array()).toString("utf8").includes("MC4CAQAw"), "sealed, not PKCS#8");
  });

  it("usage errors exit 2 with the usage text", async () => {
    const u = io();
    assert.equal(await run(["create", "--store", store], u.x), 2);
    assert.match(u.errText(), /--jid JID is required/);
    const a = io();
    assert.equal(await run(["create", ...base, "--alg", "rsa-sha1"], a.x), 2);
    const b = io();
    assert.equal(await run(["frobnicate", ...base], b.x), 2);
    const w = io();
    assert.equal(await run(["create", ...base, "--bits", "1024"], w.x), 1);
    assert.match(w.errText(), /weak-key/);
  });
});
