/**
 * The CLI as a user runs it: `xmpp-e2e demo` (zero setup), `xmpp-e2e vectors FILE`.
 *
 * Spec: XEP-0217 SAS (both sides print the same string); the vectors file format of
 * ../shared/vectors/esession-gajim-profile.json.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

const BIN = new URL("../../bin/xmpp-e2e.js", import.meta.url).pathname;
const VECTORS = new URL("../../../shared/vectors/esession-gajim-profile.json", import.meta.url).pathname;

function run(...args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 60_000 });
}

test("demo: prints equal SAS lines for alice and bob, encrypted wire lines, and exits 0", () => {
  const r = run("demo");
  assert.equal(r.status, 0, r.stderr);
  const a = /^alice SAS: (\S+)$/m.exec(r.stdout)?.[1];
  const b = /^bob SAS: (\S+)$/m.exec(r.stdout)?.[1];
  assert.ok(a && b, r.stdout);
  assert.equal(a, b);
  assert.match(r.stdout, /\[wire alice→bob\] <message> <c><data>/);
  assert.match(r.stdout, /\[bob reads\] Hello Bob/);
  assert.match(r.stdout, /no plaintext crossed the server/);
});

test("demo --profile gajim works too", () => {
  const r = run("demo", "--profile", "gajim", "--quiet");
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^alice SAS: \S+$/m);
});

test("vectors: the shared Gajim vectors all match (both profiles)", () => {
  for (const profile of ["gajim", "spec"]) {
    const r = run("vectors", VECTORS, "--profile", profile);
    assert.equal(r.status, 0, r.stdout);
    assert.match(r.stdout, /^\d+ passed, 0 failed$/m);
    assert.doesNotMatch(r.stdout, /MISMATCH/);
  }
});

test("vectors: a mismatch is reported and exits 1", () => {
  const dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-vec-"));
  const v = JSON.parse(readFileSync(VECTORS, "utf8")) as Record<string, Record<string, unknown>>;
  const s = v.session2_with_retained_secret;
  if (s) s.new_retained_secret_hex = "ff".repeat(32);
  const f = join(dir, "bad.json");
  writeFileSync(f, JSON.stringify(v));
  const r = run("vectors", f);
  assert.equal(r.status, 1);
  assert.match(r.stdout, /MISMATCH session2_with_retained_secret new retained secret/);
  assert.match(r.stdout, /^\d+ passed, 1 failed$/m);
});

test("usage errors exit 2 with help", () => {
  const r = run("frobnicate");
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown command/);
});
