/**
 * The limits of src/limits.ts enforced by the layers this suite owns: forms, disco,
 * pubkey and the negotiation admission counter. Counts, never timings.
 *
 * Spec: ../../src/limits.ts; XEP-0004, XEP-0030, XEP-0189, XEP-0155 section 4.3 and
 * RFC 6120 section 8.3.3.18 (resource-constraint).
 */
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { parseJid, type ThreadId } from "../../src/core/types.js";
import { DiscoError, parseInfo } from "../../src/disco/codec.js";
import { FormError, parseForm } from "../../src/forms/codec.js";
import { configureLimits, DEFAULT_LIMITS, resetLimits } from "../../src/limits.js";
import { busyErrorStanza, PendingNegotiations } from "../../src/negotiation/admission.js";
import { buildRequest } from "../../src/negotiation/codec.js";
import { parsePubkeyPayload } from "../../src/pubkey/codec.js";
import { PubkeyError } from "../../src/pubkey/errors.js";
import { el, NS } from "../../src/xml/index.js";

afterEach(() => resetLimits());

test("forms: too many fields, values, options or an oversized value is a FormError", () => {
  const form = (...c: ReturnType<typeof el>[]) => el("x", { xmlns: NS.data, type: "form" }, ...c);
  const fields = Array.from({ length: DEFAULT_LIMITS.maxFormFields + 1 }, (_, i) => el("field", { var: `f${i}` }));
  assert.throws(() => parseForm(form(...fields)), FormError);
  assert.equal(parseForm(form(...fields.slice(1))).fields.length, DEFAULT_LIMITS.maxFormFields);
  const values = Array.from({ length: DEFAULT_LIMITS.maxFieldValues + 1 }, () => el("value", {}, "v"));
  assert.throws(() => parseForm(form(el("field", { var: "a" }, ...values))), FormError);
  const options = Array.from({ length: DEFAULT_LIMITS.maxFieldOptions + 1 }, () => el("option", {}, el("value", {}, "o")));
  assert.throws(() => parseForm(form(el("field", { var: "a" }, ...options))), FormError);
  assert.throws(() => parseForm(form(el("field", { var: "dhkeys" }, el("value", {}, "A".repeat(DEFAULT_LIMITS.maxFieldValueBytes + 1))))), FormError);
  configureLimits({ maxFormFields: 2 });
  assert.throws(() => parseForm(form(...fields.slice(0, 3))), FormError);
});

test("disco: too many identities, features or forms is a DiscoError", () => {
  const q = (...c: ReturnType<typeof el>[]) => el("query", { xmlns: NS.disco }, ...c);
  const feats = Array.from({ length: DEFAULT_LIMITS.maxDiscoFeatures + 1 }, (_, i) => el("feature", { var: `f${i}` }));
  assert.throws(() => parseInfo(q(...feats)), DiscoError);
  const ids = Array.from({ length: DEFAULT_LIMITS.maxDiscoIdentities + 1 }, (_, i) => el("identity", { category: "client", type: `t${i}` }));
  assert.throws(() => parseInfo(q(...ids)), DiscoError);
  const forms = Array.from({ length: DEFAULT_LIMITS.maxDiscoForms + 1 }, () => el("x", { xmlns: NS.data, type: "result" }));
  assert.throws(() => parseInfo(q(...forms)), DiscoError);
});

test("pubkey: oversized key material and too many legacy keys are PubkeyErrors", () => {
  const big = el("pubkey", { xmlns: "urn:xmpp:pubkey:2" }, el("key", {}, "A".repeat(DEFAULT_LIMITS.maxPubkeyBytes + 1)));
  assert.throws(() => parsePubkeyPayload(big), (e: unknown) => e instanceof PubkeyError && e.condition === "bad-request");
  const rsa = el("pubkey", { xmlns: "urn:xmpp:pubkey:2" }, el("rsakey", {}, el("modulus", {}, "9".repeat(DEFAULT_LIMITS.maxPubkeyBytes + 1)), el("publicExponent", {}, "3")));
  assert.throws(() => parsePubkeyPayload(rsa), PubkeyError);
  const legacy = el("pubkeys", { xmlns: "urn:xmpp:pubkey:0" }, ...Array.from({ length: DEFAULT_LIMITS.maxPubkeyEntries + 1 }, () => el("keyinfo", {})));
  assert.throws(() => parsePubkeyPayload(legacy), PubkeyError);
});

test("negotiation admission: per-peer and total caps, release, retransmission, and the busy error", () => {
  const p = new PendingNegotiations({ maxPendingNegotiationsPerPeer: 2, maxPendingNegotiations: 3 });
  assert.equal(p.admit("eve@evil.example/1", "k1"), "admitted");
  assert.equal(p.admit("eve@evil.example/2", "k2"), "admitted");
  assert.equal(p.admit("eve@evil.example/3", "k3"), "peer-limit");
  assert.equal(p.admit("eve@evil.example/1", "k1"), "admitted"); // the same negotiation again
  assert.equal(p.countFor("eve@evil.example"), 2);
  assert.equal(p.admit("bob@example.org/a", "k4"), "admitted");
  assert.equal(p.admit("carol@example.org/a", "k5"), "total-limit");
  p.release("k1");
  p.release("k1");
  assert.equal(p.countFor("eve@evil.example"), 1);
  assert.equal(p.admit("carol@example.org/a", "k5"), "admitted");
  assert.equal(p.size, 3);
  // Defaults come from src/limits.ts.
  const d = new PendingNegotiations();
  for (let i = 0; i < DEFAULT_LIMITS.maxPendingNegotiationsPerPeer; i++) assert.equal(d.admit(`m@x/${i}`, `r${i}`), "admitted");
  assert.equal(d.admit("m@x/z", "rz"), "peer-limit");
  const req = buildRequest({ to: parseJid("bob@example.org"), from: parseJid("eve@evil.example/1"), thread: "t1234567" as ThreadId, id: "r", fields: [] });
  const err = busyErrorStanza(req);
  assert.equal(err.attrs.type, "error");
  assert.equal(err.getChild("error")?.attrs.type, "wait");
  assert.ok(err.getChild("error")?.getChild("resource-constraint", NS.stanzas));
});
