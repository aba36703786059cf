/**
 * Known-answer tests: ../shared/vectors/esession-gajim-profile.json (two sessions recorded
 * from Gajim's ESession code) reproduced by this project's key schedule, and the recorded
 * wire messages replayed through our responder state machine.
 *
 * Spec: XEP-0217 v0.1, XEP-0200 v0.2; interpretation note rows 1-17.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fromBase64, fromHex, mpi, toHex } from "../../src/core/bytes.js";
import { ScriptedRandom, VirtualClock } from "../../src/core/testing.js";
import { parseFullJid, type ThreadId } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { ESession, type ESessionEvent } from "../../src/esession/session.js";
import { checkVectorFile } from "../../src/esession/vectors.js";
import { parseXml } from "../../src/xml/index.js";

const FILE = new URL("../../../shared/vectors/esession-gajim-profile.json", import.meta.url);
const vectors = JSON.parse(readFileSync(FILE, "utf8")) as Record<string, Record<string, unknown>>;

test("every value of the Gajim vectors is reproduced in the gajim profile", () => {
  const r = checkVectorFile(nodeCrypto, vectors, "gajim");
  assert.ok(r.length >= 60, `checked ${r.length} values`);
  assert.deepEqual(
    r.filter((x) => !x.ok),
    [],
  );
});

test("the values both profiles share are reproduced in the spec profile", () => {
  const r = checkVectorFile(nodeCrypto, vectors, "spec");
  const names = new Set(r.map((x) => x.name));
  for (const n of ["e", "d", "K (Alice, d^x)", "provisory KM_A", "provisory KS_A", "K final", "final KM_B", "final KS_B", "mac_A", "mac_B", "new retained secret", "srshash"])
    assert.ok(names.has(n), `spec profile checks ${n}`);
  assert.ok(!names.has("ID_A") && !names.has("final KC_A"), "profile-specific values are not compared");
  assert.deepEqual(
    r.filter((x) => !x.ok),
    [],
  );
});

test("a corrupted vector is reported as a mismatch", () => {
  const bad = structuredClone(vectors);
  const s = bad.session1_first_contact as Record<string, unknown>;
  s.K_final_hex = "00".repeat(32);
  const r = checkVectorFile(nodeCrypto, bad, "gajim");
  assert.ok(r.some((x) => !x.ok && x.name === "K final"));
});

for (const name of ["session1_first_contact", "session2_with_retained_secret"]) {
  test(`${name}: our responder detects the gajim profile, verifies Alice and decrypts her stanza`, () => {
    const v = vectors[name] as {
      modp_group: 5 | 14;
      y_hex: string;
      N_B_b64: string;
      C_A_hex: string;
      SRS_hex: string;
      srshash_b64: string;
      wire: string[];
      xep0200: { stanza: string }[];
    };
    const y = mpi(fromHex(v.y_hex));
    const srshashRandom = v.SRS_hex ? [] : [fromBase64(v.srshash_b64) ?? new Uint8Array()];
    const random = new ScriptedRandom([fromBase64(v.N_B_b64) ?? new Uint8Array(), fromHex(v.C_A_hex), y, ...srshashRandom]);
    const retained = v.SRS_hex ? [{ id: "rs-1", secret: fromHex(v.SRS_hex), peer: "alice@example.org" }] : [];
    const request = parseXml(v.wire[0] ?? "");
    request.attrs.from = "alice@example.org/pda";
    const bob = ESession.respond(
      {
        crypto: nodeCrypto,
        random,
        clock: new VirtualClock(),
        local: parseFullJid("bob@example.com/laptop"),
        peer: parseFullJid("alice@example.org/pda"),
        thread: "iKZWeqhFWCEPyYngFbyBMWXaSCrUZoLg" as ThreadId,
        policy: { groups: [v.modp_group], stanzas: ["message"], logging: ["mustnot", "may"], rekeyFreq: 1, timeoutMs: 60_000, exponentBytes: 0 },
        retained,
      },
      request,
    );
    const out1 = bob.drain();
    const response = out1.find((o) => o.kind === "send");
    assert.ok(response && response.kind === "send");
    // Bob's response carries the scripted d, nonce and counter exactly as Gajim's Bob did.
    const wire1 = parseXml(v.wire[1] ?? "");
    const fieldValue = (m: typeof wire1, n: string) =>
      m.getChild("feature")?.getChild("x")?.getChildren("field").find((f) => f.attrs.var === n)?.getChildText("value");
    for (const f of ["dhkeys", "my_nonce", "counter", "nonce", "modp"])
      assert.equal(fieldValue(response.stanza, f), fieldValue(wire1, f), `field ${f}`);
    // Alice's identity (recorded) must verify only under the gajim reading.
    bob.handleStanza(parseXml(v.wire[2] ?? ""));
    const events = bob.drain();
    const est = events.find((o) => o.kind === "event" && o.event.type === "established");
    assert.ok(est && est.kind === "event" && est.event.type === "established", JSON.stringify(events.map((e) => (e.kind === "event" ? e.event.type : "send"))));
    const ev = est.event as Extract<ESessionEvent, { type: "established" }>;
    assert.equal(ev.options.profile, "gajim");
    assert.equal(ev.retainedSecretMatched, Boolean(v.SRS_hex));
    assert.equal(toHex(ev.newRetainedSecret ?? new Uint8Array()), (vectors[name] as { new_retained_secret_hex: string }).new_retained_secret_hex);
    // Bob's srshash is Gajim's (random value or HMAC of the SRS).
    const msg4 = events.find((o) => o.kind === "send");
    assert.ok(msg4 && msg4.kind === "send");
    const srsField = msg4.stanza.getChild("init")?.getChild("x")?.getChildren("field").find((f) => f.attrs.var === "srshash");
    assert.equal(srsField?.getChildText("value"), v.srshash_b64);
    // The recorded XEP-0200 stanza from Alice decrypts with the final keys and counters.
    const st = parseXml(v.xep0200[0]?.stanza ?? "");
    bob.handleStanza(st);
    const got = bob.drain().find((o) => o.kind === "event" && o.event.type === "stanza");
    assert.ok(got && got.kind === "event" && got.event.type === "stanza");
    const body = got.event.stanza.getChildText("body");
    assert.ok(body === "Hello, Bob!" || body === "second session", `decrypted body: ${body}`);
  });
}
