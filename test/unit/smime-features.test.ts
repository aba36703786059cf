/**
 * Disco advertisement of object encryption: the features src/smime exports, added to a
 * DiscoResponder's defaults, are answered in disco#info and change the caps 'ver'.
 *
 * Spec: RFC 3923 section 10.1 / draft-ietf-xmpp-e2e-03 section 6 (the namespace);
 * XEP-0030 v2.5.0 section 3.1; XEP-0115 v1.6.0 section 5 (ver over the features);
 * XEP-0189 v0.14 section 11.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseFullJid } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { buildInfoQuery } from "../../src/disco/codec.js";
import { ADVERTISED_FEATURES } from "../../src/disco/features.js";
import { DiscoResponder } from "../../src/disco/responder.js";
import { CERTIFICATE_PUBLISHING_FEATURES, NS_E2E, OBJECT_ENCRYPTION_FEATURES } from "../../src/smime/index.js";
import { parseXml } from "../../src/xml/index.js";

const me = parseFullJid("alice@example.org/phone");
const peer = parseFullJid("bob@example.net/desk");

test("OBJECT_ENCRYPTION_FEATURES is the RFC 3923 namespace; an application adds it to DiscoResponder", () => {
  assert.deepEqual(OBJECT_ENCRYPTION_FEATURES, ["urn:ietf:params:xml:ns:xmpp-e2e"]);
  assert.deepEqual(CERTIFICATE_PUBLISHING_FEATURES, ["urn:xmpp:pubkey:2"]);
  const plain = new DiscoResponder({ jid: me, crypto: nodeCrypto, capsNode: "https://example.org/xmpp-e2e" });
  const r = new DiscoResponder({
    jid: me,
    crypto: nodeCrypto,
    capsNode: "https://example.org/xmpp-e2e",
    features: [...ADVERTISED_FEATURES, ...OBJECT_ENCRYPTION_FEATURES, ...CERTIFICATE_PUBLISHING_FEATURES],
  });
  assert.notEqual(r.ver, plain.ver, "the caps hash covers the new features");
  assert.equal(r.handleStanza(buildInfoQuery({ id: "d1", to: me, from: peer })), "handled");
  const out = r.drain().flatMap((o) => (o.kind === "send" ? [parseXml(o.stanza.toString())] : []));
  const vars = (out[0]?.getChild("query")?.getChildren("feature") ?? []).map((f) => f.attrs.var);
  assert.ok(vars.includes(NS_E2E));
  assert.ok(vars.includes("urn:xmpp:pubkey:2"));
  for (const f of ADVERTISED_FEATURES) assert.ok(vars.includes(f));
});
