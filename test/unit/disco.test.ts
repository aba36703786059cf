/**
 * Tests for src/disco: XEP-0115 v1.6.0 sections 5.2 and 5.3 (known answers), 5.4
 * (processing), 6.2 (node#ver), XEP-0030 v2.5.0 sections 3.1, 3.2, 7 (responder).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseFullJid } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { parseXml, NS } from "../../src/xml/index.js";
import {
  capsElement,
  capsNode,
  capsVer,
  octetCompare,
  parseCaps,
  verificationString,
  verifyCaps,
} from "../../src/disco/caps.js";
import { buildInfoQuery, infoToXml, parseInfo, parseInfoResult, type DiscoInfo } from "../../src/disco/codec.js";
import { ADVERTISED_FEATURES, FEATURES, REQUIRED_FEATURES } from "../../src/disco/features.js";
import { DiscoResponder } from "../../src/disco/responder.js";

const exodus: DiscoInfo = {
  identities: [{ category: "client", type: "pc", name: "Exodus 0.9.1" }],
  features: [
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "http://jabber.org/protocol/muc",
    "http://jabber.org/protocol/caps",
  ],
  forms: [],
};

test("XEP-0115 5.2 simple example: S and ver", () => {
  assert.equal(
    verificationString(exodus),
    "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<",
  );
  assert.equal(capsVer(nodeCrypto, exodus), "QgayPKawpkPSDYmwT/WM94uAlu0=");
});

// The section 5.3 disco#info result, verbatim (character references as in the XEP).
const psiResult = `<iq from='benvolio@capulet.lit/230193'
    id='disco1'
    to='juliet@capulet.lit/chamber'
    type='result'>
  <query xmlns='http://jabber.org/protocol/disco#info'
         node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
    <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
    <identity xml:lang='el' category='client' name='&#936; 0.11' type='pc'/>
    <feature var='http://jabber.org/protocol/caps'/>
    <feature var='http://jabber.org/protocol/disco#info'/>
    <feature var='http://jabber.org/protocol/disco#items'/>
    <feature var='http://jabber.org/protocol/muc'/>
    <x xmlns='jabber:x:data' type='result'>
      <field var='FORM_TYPE' type='hidden'>
        <value>urn:xmpp:dataforms:softwareinfo</value>
      </field>
      <field var='ip_version' type='text-multi' >
        <value>ipv4</value>
        <value>ipv6</value>
      </field>
      <field var='os'>
        <value>Mac</value>
      </field>
      <field var='os_version'>
        <value>10.5.1</value>
      </field>
      <field var='software'>
        <value>Psi</value>
      </field>
      <field var='software_version'>
        <value>0.11</value>
      </field>
    </x>
  </query>
</iq>`;

test("XEP-0115 5.3 complex example with an extended form", () => {
  const info = parseInfoResult(parseXml(psiResult));
  assert.equal(info.node, "http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w=");
  assert.equal(
    verificationString(info),
    "client/pc/el/\u03a8 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<" +
      "http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<" +
      "ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<",
  );
  assert.equal(capsVer(nodeCrypto, info), "q07IKJEyjvHSyhy//CH0CxmKi8w=");
  const c = { hash: "sha-1", node: "http://psi-im.org", ver: "q07IKJEyjvHSyhy//CH0CxmKi8w=" };
  assert.equal(capsNode(c), info.node);
  assert.deepEqual(verifyCaps(nodeCrypto, c, info), { status: "valid", ver: c.ver });
});

test("generation is order-independent (i;octet sorting of every factor)", () => {
  const shuffled: DiscoInfo = { ...exodus, features: [...exodus.features].reverse() };
  assert.equal(capsVer(nodeCrypto, shuffled), "QgayPKawpkPSDYmwT/WM94uAlu0=");
  // i;octet is UTF-8 byte order, not UTF-16 code unit order.
  assert.ok(octetCompare("\uffff", "\u{10000}") < 0);
  assert.ok("\uffff" > "\u{10000}"); // what naive JS comparison would say
  assert.ok(octetCompare("a", "ab") < 0 && octetCompare("b", "ab") > 0 && octetCompare("x", "x") === 0);
});

test("the '&lt;' warning: character data is hashed as-is, never unescaped", () => {
  const q = parseXml(
    `<query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='pc' name='SomeClient&amp;lt;http://jabber.org/protocol/muc'/></query>`,
  );
  const info = parseInfo(q);
  assert.equal(info.identities[0]?.name, "SomeClient&lt;http://jabber.org/protocol/muc");
  assert.equal(verificationString(info), "client/pc//SomeClient&lt;http://jabber.org/protocol/muc<");
});

test("verifyCaps: 5.4 processing outcomes", () => {
  const good = { hash: "sha-1", node: "http://code.google.com/p/exodus", ver: "QgayPKawpkPSDYmwT/WM94uAlu0=" };
  assert.equal(verifyCaps(nodeCrypto, good, exodus).status, "valid");
  assert.deepEqual(verifyCaps(nodeCrypto, { node: good.node, ver: good.ver }, exodus), { status: "legacy" });
  assert.deepEqual(verifyCaps(nodeCrypto, { ...good, hash: "md2" }, exodus), { status: "unsupported-hash", hash: "md2" });
  const fewer = { ...exodus, features: exodus.features.slice(1) };
  assert.equal(verifyCaps(nodeCrypto, good, fewer).status, "mismatch");
  const dupFeature = { ...exodus, features: [...exodus.features, exodus.features[0] ?? ""] };
  assert.equal(verifyCaps(nodeCrypto, good, dupFeature).status, "ill-formed");
  const dupIdentity = { ...exodus, identities: [...exodus.identities, ...exodus.identities] };
  assert.equal(verifyCaps(nodeCrypto, good, dupIdentity).status, "ill-formed");
  // The poisoning shape: a feature smuggling a '<' boundary.
  const poisoned = { ...exodus, features: ["http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info"] };
  assert.equal(verifyCaps(nodeCrypto, good, poisoned).status, "ill-formed");
  const ft = (type: "hidden" | undefined, ...values: string[]) => ({
    type: "result" as const,
    fields: [{ var: "FORM_TYPE", values, options: [], ...(type ? { type } : {}) }],
  });
  assert.equal(verifyCaps(nodeCrypto, good, { ...exodus, forms: [ft("hidden", "urn:a"), ft("hidden", "urn:a")] }).status, "ill-formed");
  assert.equal(verifyCaps(nodeCrypto, good, { ...exodus, forms: [ft("hidden", "urn:a", "urn:b")] }).status, "ill-formed");
  // A form whose FORM_TYPE is not hidden is ignored: the ver still matches.
  assert.equal(verifyCaps(nodeCrypto, good, { ...exodus, forms: [ft(undefined, "urn:a")] }).status, "valid");
});

test("caps element and parsing (XEP-0115 section 6.1 example)", () => {
  const c = capsElement({ hash: "sha-1", node: "http://code.google.com/p/exodus", ver: "QgayPKawpkPSDYmwT/WM94uAlu0=" });
  assert.equal(c.getNS(), NS.caps);
  const presence = parseXml(`<presence>
  <c xmlns='http://jabber.org/protocol/caps'
     hash='sha-1'
     node='http://code.google.com/p/exodus'
     ver='QgayPKawpkPSDYmwT/WM94uAlu0='/>
</presence>`);
  assert.deepEqual(parseCaps(presence), { hash: "sha-1", node: "http://code.google.com/p/exodus", ver: "QgayPKawpkPSDYmwT/WM94uAlu0=" });
  assert.deepEqual(parseCaps(c), parseCaps(presence));
  assert.equal(parseCaps(parseXml("<presence/>")), undefined);
  assert.equal(parseCaps(parseXml("<presence><c xmlns='http://jabber.org/protocol/caps' node='x'/></presence>")), undefined);
});

test("codec: info round trip and malformed input", () => {
  const x = infoToXml(exodus, "n#v");
  assert.deepEqual(parseInfo(parseXml(x.toString())), exodus);
  assert.throws(() => parseInfo(parseXml("<query xmlns='http://jabber.org/protocol/disco#info'><identity type='pc'/></query>")), /bad-request/);
  assert.throws(() => parseInfo(parseXml("<query xmlns='http://jabber.org/protocol/disco#info'><feature/></query>")), /bad-request/);
  assert.throws(() => parseInfo(parseXml("<query xmlns='jabber:iq:roster'/>")), /bad-request/);
});

test("features: what the specs say to advertise", () => {
  assert.equal(FEATURES.ssn, "urn:xmpp:ssn");
  assert.equal(FEATURES.esession, "http://www.xmpp.org/extensions/xep-0116.html#ns");
  assert.equal(FEATURES.esessionStanzaEncryption, "http://www.xmpp.org/extensions/xep-0200.html#ns");
  assert.deepEqual(
    [...ADVERTISED_FEATURES].sort(),
    [
      "http://jabber.org/protocol/caps",
      "http://jabber.org/protocol/disco#info",
      "http://www.xmpp.org/extensions/xep-0116.html#ns",
      "http://www.xmpp.org/extensions/xep-0200.html#ns",
      "urn:xmpp:ssn",
    ],
  );
  assert.ok(REQUIRED_FEATURES.every((f) => ADVERTISED_FEATURES.includes(f)));
});

const me = parseFullJid("romeo@montague.lit/orchard");
const juliet = parseFullJid("juliet@capulet.lit/balcony");

function responder(extra: Partial<ConstructorParameters<typeof DiscoResponder>[0]> = {}) {
  return new DiscoResponder({
    jid: me,
    crypto: nodeCrypto,
    capsNode: "http://code.google.com/p/exodus",
    identities: [{ category: "client", type: "pc", name: "Exodus 0.9.1" }],
    features: exodus.features,
    ...extra,
  });
}

function sent(r: DiscoResponder) {
  return r.drain().flatMap((o) => (o.kind === "send" ? [parseXml(o.stanza.toString())] : []));
}

test("responder: caps, plain query, node#ver query (XEP-0115 section 6.2)", () => {
  const r = responder();
  assert.equal(r.ver, "QgayPKawpkPSDYmwT/WM94uAlu0=");
  assert.equal(r.caps().attrs.ver, r.ver);
  assert.equal(r.node, "http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0=");

  assert.equal(r.handleStanza(buildInfoQuery({ id: "disco2", to: me, from: juliet })), "handled");
  const [res] = sent(r);
  assert.ok(res);
  assert.equal(res.attrs.type, "result");
  assert.equal(res.attrs.id, "disco2");
  assert.equal(res.attrs.to, juliet);
  assert.equal(res.attrs.from, me);
  const info = parseInfoResult(res);
  assert.equal(info.node, undefined);
  assert.equal(capsVer(nodeCrypto, info), r.ver);

  r.handleStanza(parseXml(`<iq from='juliet@capulet.lit/balcony' id='disco1' to='romeo@montague.lit/orchard' type='get'>
  <query xmlns='http://jabber.org/protocol/disco#info' node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='/>
</iq>`));
  const [res2] = sent(r);
  assert.ok(res2);
  const info2 = parseInfoResult(res2);
  assert.equal(info2.node, "http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0="); // mirrored (XEP-0030 3.2)
  assert.deepEqual(verifyCaps(nodeCrypto, { hash: "sha-1", node: "http://code.google.com/p/exodus", ver: r.ver }, info2), { status: "valid", ver: r.ver });
});

test("responder: unknown node -> item-not-found; refused -> service-unavailable; not ours -> ignored", () => {
  const r = responder({ allow: (from) => from !== parseFullJid("mallory@evil.lit/x") });
  r.handleStanza(buildInfoQuery({ id: "a", to: me, from: juliet, node: "http://code.google.com/p/exodus#OLDVER" }));
  const [e1] = sent(r);
  assert.equal(e1?.attrs.type, "error");
  assert.equal(e1?.attrs.id, "a");
  assert.ok(e1?.getChild("error")?.getChild("item-not-found", NS.stanzas));
  assert.equal(e1?.getChild("error")?.attrs.type, "cancel");
  assert.equal(e1?.getChild("query", NS.disco)?.attrs.node, "http://code.google.com/p/exodus#OLDVER");

  r.handleStanza(buildInfoQuery({ id: "b", to: me, from: parseFullJid("mallory@evil.lit/x") }));
  const [e2] = sent(r);
  assert.ok(e2?.getChild("error")?.getChild("service-unavailable", NS.stanzas));

  assert.equal(r.handleStanza(buildInfoQuery({ id: "c", to: juliet, from: me })), "ignored");
  assert.equal(r.handleStanza(parseXml("<iq type='result' id='x'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")), "ignored");
  assert.equal(r.handleStanza(parseXml("<iq type='error' id='x'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")), "ignored");
  assert.equal(r.handleStanza(parseXml("<iq type='get' id='x'><query xmlns='jabber:iq:version'/></iq>")), "ignored");
  assert.equal(r.handleStanza(parseXml("<message><body>x</body></message>")), "ignored");
  assert.equal(r.handleStanza(parseXml("<iq type='get'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")), "ignored");
  // A malformed from: answered with bad-request, never thrown.
  assert.equal(r.handleStanza(parseXml("<iq type='get' id='y' from='@@'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")), "handled");
  const [e3] = sent(r);
  assert.ok(e3?.getChild("error")?.getChild("bad-request", NS.stanzas));
  assert.equal(sent(r).length, 0);
});

test("responder: a throwing allow() predicate denies instead of escaping", () => {
  const r = responder({
    allow: () => {
      throw new Error("boom");
    },
  });
  assert.equal(r.handleStanza(buildInfoQuery({ id: "z", to: me, from: juliet })), "handled");
  const [e] = sent(r);
  assert.ok(e?.getChild("error")?.getChild("service-unavailable", NS.stanzas));
});

test("responder: duplicates in configuration are removed so our ver verifies", () => {
  const r = responder({ features: [...exodus.features, ...exodus.features] });
  assert.equal(r.ver, "QgayPKawpkPSDYmwT/WM94uAlu0=");
  assert.equal(r.info.features.length, 4);
});
