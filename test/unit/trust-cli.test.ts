/**
 * `xmpp-e2e trust` (src/cli/trust.ts): list, verify, petname, revoke over a store that
 * saw peers' keys.
 *
 * Spec: XEP-0116 v0.16 section 7.3 (the full fingerprint is compared out of band), 7.4
 * (JIDs per key; petnames shown before JIDs), XEP-0189 v0.14 section 4 (revocation).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import type { CliIo } from "../../src/cli/keys.js";
import { parseFingerprintInput, run } from "../../src/cli/trust.js";
import { parseJid } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { createIdentityKey } from "../../src/identity/index.js";
import { openSqliteStore } from "../../src/store/sqlite.js";
import { TrustManager } from "../../src/trust/index.js";

const dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-trust-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const T0 = Date.UTC(2026, 0, 1);
const alice = parseJid("alice@example.org");

function io() {
  const out: string[] = [];
  const err: string[] = [];
  const x: CliIo = { out: (l) => out.push(l), err: (l) => err.push(l), env: {}, now: () => T0 + 1000 };
  return { x, text: () => out.join("\n"), errText: () => err.join("\n") };
}

describe("xmpp-e2e trust", async () => {
  const store = join(dir, "t.db");
  const base = ["--jid", "alice@example.org", "--store", store];
  const bobKey = createIdentityKey("ed25519", T0).publicKey;
  const s = openSqliteStore(store);
  const tm = new TrustManager({ store: s, crypto: nodeCrypto });
  await tm.observe({ account: alice, jid: parseJid("bob@example.com/laptop"), publicKey: bobKey, now: T0 });
  await tm.observe({ account: alice, jid: parseJid("mallory@evil.example"), publicKey: bobKey, now: T0 });
  await s.close();
  const fp = tm.fingerprint(bobKey);
  const hex = Buffer.from(fp, "base64").toString("hex").toUpperCase().match(/.{4}/g)?.join(" ") ?? "";

  it("list shows the key, both JIDs (the second flagged), and NOT VERIFIED", async () => {
    const l = io();
    assert.equal(await run(["list", ...base], l.x), 0, l.errText());
    assert.ok(l.text().includes(hex));
    assert.match(l.text(), /jid: +bob@example.com +last seen/);
    assert.match(l.text(), /jid: +mallory@evil.example +\(not accepted: alert\)/);
    assert.match(l.text(), /NOT VERIFIED/);
    assert.match(l.text(), /peer bob@example.com: SAS never confirmed; retained-secret chain never verified/);
  });

  it("verify takes the full fingerprint (hex with spaces or Base64); a wrong one is a MISMATCH", async () => {
    const bad = io();
    const wrong = hex.replace(/^..../, "0000");
    assert.equal(await run(["verify", ...base, "bob@example.com", wrong], bad.x), 1);
    assert.match(bad.errText(), /MISMATCH/);
    assert.match(bad.errText(), new RegExp(`bob@example.com presented ${hex}`));
    const short = io();
    assert.equal(await run(["verify", ...base, "bob@example.com", fp.slice(0, 10)], short.x), 2, "a prefix is not a verification");
    const ok = io();
    assert.equal(await run(["verify", ...base, "bob@example.com", hex], ok.x), 0, ok.errText());
    const l = io();
    await run(["list", ...base], l.x);
    assert.match(l.text(), /fingerprint checked 2026-01-01T00:00:01.000Z/);
  });

  it("petname (by prefix), shown first; --clear; revoke", async () => {
    const p = io();
    assert.equal(await run(["petname", ...base, fp.slice(0, 12), "Bob (phone)"], p.x), 0, p.errText());
    const l = io();
    await run(["list", ...base], l.x);
    assert.match(l.text(), /^"Bob \(phone\)" {2}ed25519/m);
    const bad = io();
    assert.equal(await run(["petname", ...base, fp, "two\nlines"], bad.x), 2);
    const c = io();
    assert.equal(await run(["petname", ...base, fp, "--clear"], c.x), 0);
    const r = io();
    assert.equal(await run(["revoke", ...base, fp], r.x), 0);
    const l2 = io();
    await run(["list", ...base], l2.x);
    assert.match(l2.text(), /REVOKED 2026-01-01T00:00:01.000Z/);
    const none = io();
    assert.equal(await run(["revoke", ...base, "AAAAAAAAAAAA"], none.x), 2);
  });

  it("parseFingerprintInput: hex with colons or spaces, Base64; anything else refused", () => {
    assert.equal(parseFingerprintInput(hex), fp);
    assert.equal(parseFingerprintInput(hex.replace(/ /g, ":").toLowerCase()), fp);
    assert.equal(parseFingerprintInput(fp), fp);
    assert.throws(() => parseFingerprintInput("abc"));
  });
});
