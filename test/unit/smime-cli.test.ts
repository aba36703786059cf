/**
 * `xmpp-e2e object` on files: keygen, sign, verify, encrypt (sign-then-encrypt),
 * decrypt; a tampered file fails with exit code 1; a usage error exits 2.
 *
 * Spec: draft-ietf-xmpp-e2e-03 sections 2-4 (RFC 3923 section 6.5 order), RFC 5751.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { run } from "../../src/cli/object.js";

const dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-object-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const f = (n: string) => join(dir, n);

test("object keygen / sign / verify / encrypt / decrypt on files", async () => {
  const quiet = process.stderr.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    assert.equal(await run(["keygen", "--jid", "alice@localhost", "--out", f("alice")]), 0);
    assert.equal(await run(["keygen", "--jid", "bob@localhost", "--out", f("bob"), "--key", "rsa-2048"]), 0);
    const cpim = "Content-type: Message/CPIM\r\n\r\nFrom: <im:alice@localhost>\r\nTo: <im:bob@localhost>\r\nDateTime: 2026-01-01T00:00:00Z\r\n\r\nContent-type: text/plain; charset=utf-8\r\n\r\nhi";
    writeFileSync(f("msg.cpim"), cpim);
    assert.equal(await run(["sign", "--cert", f("alice.crt"), "--key", f("alice.key"), "--in", f("msg.cpim"), "--out", f("msg.signed")]), 0);
    assert.equal(await run(["verify", "--in", f("msg.signed"), "--ca", f("alice.crt"), "--out", f("msg.verified")]), 0);
    assert.equal(readFileSync(f("msg.verified"), "utf8"), cpim);
    assert.equal(await run(["verify", "--in", f("msg.signed"), "--ca", f("bob.crt")]), 1, "untrusted signer");
    writeFileSync(f("msg.tampered"), readFileSync(f("msg.signed"), "utf8").replace("\r\n\r\nhi\r\n", "\r\n\r\nho\r\n"));
    assert.equal(await run(["verify", "--in", f("msg.tampered")]), 1);
    assert.equal(
      await run(["encrypt", "--to", f("bob.crt"), "--to", f("alice.crt"), "--cert", f("alice.crt"), "--key", f("alice.key"), "--cipher", "aes-256-gcm", "--in", f("msg.cpim"), "--out", f("msg.p7m")]),
      0,
    );
    assert.equal(await run(["decrypt", "--cert", f("bob.crt"), "--key", f("bob.key"), "--in", f("msg.p7m"), "--ca", f("alice.crt"), "--out", f("msg.out")]), 0);
    assert.equal(readFileSync(f("msg.out"), "utf8"), cpim);
    assert.equal(await run(["encrypt", "--in", f("msg.cpim")]), 2);
    assert.equal(await run(["bogus"]), 2);
  } finally {
    process.stderr.write = quiet;
  }
});
