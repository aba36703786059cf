/**
 * Tests for src/negotiation (XEP-0155 v1.2; XEP-0136 section 3.1 logging choices;
 * XEP-0116 v0.16 section 4.4 error shapes): fields, codec, and two-party runs of the
 * plain stanza-session core over a serializing in-memory wire.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseFullJid, parseJid, type FullJid, type ThreadId } from "../../src/core/types.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { parseForm, f, type DataForm } from "../../src/forms/codec.js";
import { el, normalize, parseXml, NS, type Element } from "../../src/xml/index.js";
import { getThread } from "../../src/thread/index.js";
import {
  buildRequest,
  buildResponse,
  classifyForm,
  negotiationErrorStanza,
  parseNegotiationStanza,
  ssnForm,
} from "../../src/negotiation/codec.js";
import { NegotiationError } from "../../src/negotiation/errors.js";
import {
  chooseDisclosure,
  chooseLogging,
  chooseOption,
  chooseSecurity,
  loggingOffer,
  parseLogging,
  type OtrPreference,
} from "../../src/negotiation/fields.js";
import { StanzaSessionCore, type SessionEvent, type StanzaSessionConfig } from "../../src/negotiation/session.js";

const ROMEO = parseFullJid("romeo@montague.net/orchard");
const JULIET = parseFullJid("juliet@capulet.com/balcony");
const JULIET_BARE = parseJid("juliet@capulet.com");

// ---------------------------------------------------------------------------------------
// Harness

class Party {
  readonly events: SessionEvent[] = [];
  readonly sent: Element[] = [];
  constructor(readonly core: StanzaSessionCore) {}
  /** Drains the core: events are recorded, stanzas serialized and re-parsed (the wire). */
  flush(): Element[] {
    const out: Element[] = [];
    for (const o of this.core.drain()) {
      if (o.kind === "event") this.events.push(o.event);
      else {
        const wire = parseXml(o.stanza.toString());
        this.sent.push(wire);
        out.push(wire);
      }
    }
    return out;
  }
  take(): SessionEvent[] {
    this.flush();
    return this.events.splice(0, this.events.length);
  }
  deliver(stanza: Element): void {
    assert.doesNotThrow(() => this.core.handleStanza(stanza));
  }
}

/** Delivers stanzas back and forth until both sides are quiet. */
function run(a: Party, b: Party, rounds = 20): void {
  for (let i = 0; i < rounds; i++) {
    const ab = a.flush();
    for (const s of ab) b.deliver(s);
    const ba = b.flush();
    for (const s of ba) a.deliver(s);
    if (ab.length === 0 && ba.length === 0) return;
  }
  throw new Error("no quiescence");
}

type Overrides = Partial<Omit<StanzaSessionConfig, "policy">> & { policy?: Partial<StanzaSessionConfig["policy"]> };

function party(local: FullJid, seed: string, o: Overrides = {}): Party {
  const { policy, ...rest } = o;
  return new Party(
    new StanzaSessionCore({
      local,
      random: new SeededRandom(nodeCrypto, seed),
      revealPresence: true,
      ...rest,
      policy: { otr: "concede", ...policy },
    }),
  );
}

/** The state name, read through a function so that assertions do not narrow it. */
function stateOf(p: Party): string {
  return p.core.state.name;
}

function ofType<T extends SessionEvent["type"]>(events: readonly SessionEvent[], type: T): Extract<SessionEvent, { type: T }>[] {
  return events.filter((e): e is Extract<SessionEvent, { type: T }> => e.type === type);
}

function formOf(stanza: Element): DataForm {
  const x = stanza.getChild("feature", NS.featureNeg)?.getChild("x", NS.data);
  assert.ok(x, "no form");
  return parseForm(x);
}

function value(form: DataForm, name: string): string | undefined {
  return form.fields.find((x) => x.var === name)?.values[0];
}

/** Romeo (initiator) and Juliet (responder, accepting automatically) up to an active session. */
function activePair(romeoOpts: Overrides = {}, julietOpts: Overrides = {}) {
  const romeo = party(ROMEO, "romeo", romeoOpts);
  const juliet = party(JULIET, "juliet", { ...julietOpts, policy: { decide: "accept", ...julietOpts.policy } });
  romeo.core.request(JULIET_BARE);
  run(romeo, juliet);
  assert.equal(stateOf(romeo), "active");
  assert.equal(stateOf(juliet), "active");
  return { romeo, juliet };
}

// ---------------------------------------------------------------------------------------
// fields.ts

test("chooseLogging: the XEP-0136 section 3.1 responder table", () => {
  const columns: readonly (readonly string[])[] = [["mustnot"], ["mustnot", "may"], ["may", "mustnot"], ["may"]];
  const table: Record<OtrPreference, readonly (string | undefined)[]> = {
    require: ["mustnot", "mustnot", "mustnot", undefined],
    prefer: ["mustnot", "mustnot", "mustnot", "may"],
    approve: ["mustnot", "mustnot", "may", "may"],
    concede: ["mustnot", "mustnot", "may", "may"],
    oppose: ["mustnot", "may", "may", "may"],
    forbid: [undefined, "may", "may", "may"],
  };
  for (const [pref, row] of Object.entries(table) as [OtrPreference, readonly (string | undefined)[]][]) {
    columns.forEach((offered, i) => assert.equal(chooseLogging(offered, pref), row[i], `${pref} / ${offered.join(",")}`));
  }
  // Shorthands: 'mustnot' = require, 'may' = concede; garbage and empty offers fail.
  assert.equal(chooseLogging(["may"], "mustnot"), undefined);
  assert.equal(chooseLogging(["mustnot", "may"], "may"), "mustnot");
  assert.equal(chooseLogging(["true", "bogus"], "concede"), undefined);
  assert.equal(chooseLogging([], "forbid"), undefined);
});

test("loggingOffer: the XEP-0136 section 3.1 initiator table", () => {
  assert.deepEqual(loggingOffer("require"), ["mustnot"]);
  assert.deepEqual(loggingOffer("prefer"), ["mustnot", "may"]);
  assert.deepEqual(loggingOffer("approve"), ["mustnot", "may"]);
  assert.deepEqual(loggingOffer("concede"), ["may", "mustnot"]);
  assert.deepEqual(loggingOffer("oppose"), ["may", "mustnot"]);
  assert.deepEqual(loggingOffer("forbid"), ["may"]);
});

test("chooseOption / chooseDisclosure / chooseSecurity: our preference among offered values", () => {
  assert.equal(chooseOption(["a", "b", "c"], ["c", "a"]), "c");
  assert.equal(chooseOption(["a"], ["b"]), undefined);
  assert.equal(chooseDisclosure(["enabled", "disabled", "never"]), "never");
  assert.equal(chooseDisclosure(["enabled"]), undefined);
  assert.equal(chooseDisclosure(["enabled"], ["never", "disabled", "enabled"]), "enabled");
  assert.equal(chooseSecurity(["e2e", "c2s"]), "c2s");
  assert.equal(chooseSecurity(["e2e"]), undefined);
  assert.equal(chooseSecurity(["e2e", "c2s"], ["e2e", "c2s"]), "e2e");
});

test("parseLogging: 'logging', legacy 'otr', and XEP-0116's boolean 'logging'", () => {
  const form = (...fields: ReturnType<typeof f.list>[]): DataForm => ({ type: "form", fields });
  const current = parseLogging(form(f.list("logging", "list-single", ["mustnot", "may"])));
  assert.deepEqual([current?.var, current?.encoding, current?.offered], ["logging", "may-mustnot", ["mustnot", "may"]]);
  // XEP-0217 style: otr with false/true options; 'true' means 'mustnot'.
  const otr = parseLogging(form(f.list("otr", "list-single", ["false", "true"])));
  assert.deepEqual([otr?.var, otr?.encoding, otr?.offered], ["otr", "boolean", ["may", "mustnot"]]);
  // XEP-0116 v0.16 example: 'logging' with false/true options.
  const xep116 = parseLogging(form(f.list("logging", "list-single", ["false", "true"])));
  assert.deepEqual([xep116?.var, xep116?.encoding, xep116?.offered], ["logging", "boolean", ["may", "mustnot"]]);
  // An answer: <field var='otr'><value>true</value></field>.
  const answer = parseLogging({ type: "submit", fields: [f.value("otr", "true")] });
  assert.equal(answer?.value, "mustnot");
  // 'logging' wins when both are present.
  assert.equal(parseLogging(form(f.list("otr", "list-single", ["true"]), f.list("logging", "list-single", ["may"])))?.var, "logging");
  assert.equal(parseLogging({ type: "form", fields: [] }), undefined);
});

// ---------------------------------------------------------------------------------------
// codec.ts

test("classifyForm: the state chart transitions", () => {
  const c = (type: DataForm["type"], ...fields: ReturnType<typeof f.value>[]) => classifyForm(ssnForm(type, fields));
  assert.equal(c("form", f.value("accept", "true")), "request");
  assert.equal(c("submit", f.value("accept", "true")), "accept");
  assert.equal(c("submit", f.value("accept", "0")), "decline");
  assert.equal(c("result", f.value("accept", "1")), "complete");
  assert.equal(c("result", f.value("accept", "false")), "cancel");
  assert.equal(c("form", f.value("renegotiate", "1")), "renegotiate");
  assert.equal(c("submit", f.value("renegotiate", "1")), "renegotiate-accept");
  assert.equal(c("submit", f.value("renegotiate", "0")), "renegotiate-decline");
  assert.equal(c("submit", f.value("terminate", "1")), "terminate");
  assert.equal(c("result", f.value("terminate", "true")), "terminate-ack");
  assert.equal(c("submit", f.value("continue", "PDA")), "continue");
  assert.equal(c("result", f.value("continue", "PDA")), "continue-ack");
  const bad = (fn: () => unknown, condition: string) =>
    assert.throws(fn, (e: unknown) => e instanceof NegotiationError && e.condition === condition);
  bad(() => c("form", f.value("accept", "1"), f.value("renegotiate", "1")), "bad-request"); // section 6
  bad(() => c("submit", f.value("accept", "maybe")), "bad-request");
  bad(() => c("submit", f.value("terminate", "0")), "bad-request");
  bad(() => c("submit"), "bad-request");
  bad(() => classifyForm({ type: "form", fields: [f.value("accept", "1")] }), "service-unavailable");
  bad(() => classifyForm({ type: "form", fields: [f.hidden("FORM_TYPE", "urn:other"), f.value("accept", "1")] }), "service-unavailable");
});

test("parseNegotiationStanza: rejects what XEP-0155 forbids", () => {
  const req = buildRequest({ to: JULIET, from: ROMEO, thread: "t1" as ThreadId, fields: [] });
  assert.equal(parseNegotiationStanza(req).kind, "negotiation");
  const noThread = parseXml(req.toString().replace(/<thread>t1<\/thread>/, ""));
  assert.throws(() => parseNegotiationStanza(noThread), /thread/);
  const withBody = parseXml(req.toString().replace("</message>", "<body>hi</body></message>"));
  assert.throws(() => parseNegotiationStanza(withBody), /body/);
  const headline = parseXml(req.toString().replace('type="normal"', 'type="headline"'));
  assert.throws(() => parseNegotiationStanza(headline), /headline/);
});

const SPEC_REQUEST = `<message type='normal' from='romeo@montague.net/orchard' to='juliet@capulet.com'>
  <thread>ffd7076498744578d10edabfe7f4a866</thread>
  <feature xmlns='http://jabber.org/protocol/feature-neg'>
    <x xmlns='jabber:x:data' type='form'>
      <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:ssn</value></field>
      <field label='Accept this session?' type='boolean' var='accept'><value>true</value><required/></field>
      <field label='Minimum security level' type='list-single' var='security'>
        <value>c2s</value>
        <option label='Both parties must be securely connected to their servers'><value>c2s</value></option>
        <required/>
      </field>
    </x>
  </feature>
</message>`;

test("negotiationErrorStanza: exactly the XEP-0155 section 4.3 not-acceptable shape", () => {
  const request = parseXml(SPEC_REQUEST);
  const err = negotiationErrorStanza(request, "not-acceptable", { fields: ["security"], from: JULIET });
  const expected = parseXml(`<message type='error' from='juliet@capulet.com/balcony' to='romeo@montague.net/orchard'>
  <thread>ffd7076498744578d10edabfe7f4a866</thread>
  ${request.getChild("feature", NS.featureNeg)?.toString() ?? ""}
  <error code='406' type='modify'>
    <not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
    <feature xmlns='http://jabber.org/protocol/feature-neg'>
      <field var='security'/>
    </feature>
  </error>
</message>`);
  assert.equal(normalize([parseXml(err.toString())]), normalize([expected]));
  // Namespaces on the wire, not only in the normalized form.
  const wire = parseXml(err.toString());
  assert.ok(wire.getChild("error")?.getChild("not-acceptable", NS.stanzas));
  assert.equal(wire.getChild("error")?.getChild("feature", NS.featureNeg)?.getChild("field")?.attrs.var, "security");
  assert.ok(wire.getChild("feature", NS.featureNeg)?.getChild("x", NS.data));
});

test("negotiationErrorStanza: 501 and 503 shapes; the XEP-0116 style; text; never answers an error", () => {
  const request = parseXml(SPEC_REQUEST);
  const e501 = negotiationErrorStanza(request, "feature-not-implemented", { fields: ["logging"] });
  assert.equal(e501.getChild("error")?.attrs.code, "501");
  assert.equal(e501.getChild("error")?.attrs.type, "cancel");
  assert.equal(e501.attrs.from, "juliet@capulet.com"); // defaults to the request's 'to'
  const e503 = negotiationErrorStanza(request, "service-unavailable");
  assert.equal(normalize([e503.getChild("error") ?? el("x")]), '<error code="503" type="cancel"><service-unavailable></service-unavailable></error>');

  // XEP-0116 v0.16 section 4.4: "<error type='cancel'>" without code, fields named.
  const e116 = negotiationErrorStanza(request, "not-acceptable", { fields: ["modp", "ver"], style: "xep-0116", from: JULIET });
  const expected116 = parseXml(`<error type='cancel'>
    <not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
    <feature xmlns='http://jabber.org/protocol/feature-neg'>
      <field var='modp'/>
      <field var='ver'/>
    </feature>
  </error>`);
  assert.equal(normalize([e116.getChild("error") ?? el("x")]), normalize([expected116]));

  const withText = negotiationErrorStanza(request, "bad-request", { text: "no thread" });
  assert.equal(withText.getChild("error")?.getChildText("text", NS.stanzas), "no thread");
  assert.equal(withText.getChild("error")?.attrs.type, "modify");

  const parsed = parseNegotiationStanza(parseXml(e116.toString()));
  assert.equal(parsed.kind, "error");
  if (parsed.kind === "error") assert.deepEqual(parsed.error, { type: "cancel", condition: "not-acceptable", fields: ["modp", "ver"] });

  assert.throws(() => negotiationErrorStanza(e116, "bad-request"), (e: unknown) => e instanceof NegotiationError && e.condition === "unexpected-request");
});

// ---------------------------------------------------------------------------------------
// Two-party runs

test("request / accept / complete: both sides active with the same parameters", () => {
  const romeo = party(ROMEO, "romeo", { policy: { otr: "prefer" } });
  const juliet = party(JULIET, "juliet", { policy: { otr: "approve" } });
  romeo.core.request(JULIET_BARE, { immediate: true, title: "Open chat with Romeo?" });
  const [req] = romeo.flush();
  assert.ok(req);
  // Section 4.1: type normal, a thread, no body, FORM_TYPE hidden, accept required, AMP.
  assert.equal(req.attrs.type, "normal");
  assert.equal(req.attrs.to, JULIET_BARE);
  assert.equal(req.attrs.from, ROMEO);
  assert.equal(req.getChild("body"), undefined);
  const thread = getThread(req);
  assert.match(thread ?? "", /^[0-9a-f]{40}$/);
  assert.ok(req.getChild("amp", NS.amp)?.getChild("rule"));
  const rf = formOf(req);
  assert.equal(rf.type, "form");
  assert.equal(rf.title, "Open chat with Romeo?");
  assert.deepEqual(rf.fields[0], { var: "FORM_TYPE", type: "hidden", values: ["urn:xmpp:ssn"], options: [] });
  assert.equal(rf.fields.find((x) => x.var === "accept")?.required, true);
  const logging = rf.fields.find((x) => x.var === "logging");
  assert.deepEqual(logging?.options.map((o) => o.value), ["mustnot", "may"]); // XEP-0136 'prefer'
  assert.equal(logging?.required, true); // XEP-0136: MUST include <required/>
  assert.equal(rf.fields.some((x) => x.var === "otr"), false); // we never send 'otr'

  juliet.deliver(req);
  const [ask] = juliet.take();
  assert.ok(ask && ask.type === "request");
  assert.equal(ask.phase, "initial");
  assert.equal(ask.peer, ROMEO);
  assert.equal(ask.thread, thread);
  assert.deepEqual(ask.answer, { logging: "mustnot", disclosure: "never", security: "c2s", multisession: false, extra: {} });
  assert.equal(stateOf(juliet), "awaiting-decision");
  juliet.core.accept();
  run(juliet, romeo);

  const [ra] = ofType(romeo.take(), "active");
  const [ja] = ofType(juliet.take(), "active");
  assert.ok(ra && ja);
  assert.deepEqual(ra.options, ja.options);
  assert.deepEqual(ra.options, { logging: "mustnot", disclosure: "never", security: "c2s", multisession: false, extra: {} });
  assert.equal(ra.role, "initiator");
  assert.equal(ja.role, "responder");
  // Section 4.2: the session is with the resource that replied.
  assert.equal(ra.peer, JULIET);
  assert.equal(ja.peer, ROMEO);
  assert.equal(ra.key, romeo.core.key);
  assert.notEqual(ra.key, ja.key);
  // Every message mirrored the thread; no message had a body.
  for (const s of [...romeo.sent, ...juliet.sent]) {
    assert.equal(getThread(s), thread);
    assert.equal(s.getChild("body"), undefined);
  }
  // Message 3 is a 'result' form with accept=1 (section 4.4).
  const complete = romeo.sent[1];
  assert.ok(complete);
  assert.equal(formOf(complete).type, "result");
  const parsed = parseNegotiationStanza(complete);
  assert.equal(parsed.kind === "negotiation" ? parsed.action : parsed.kind, "complete");
});

test("accept with choices: extra fields (language) and the example's 'it'", () => {
  const romeo = party(ROMEO, "romeo");
  const juliet = party(JULIET, "juliet", { policy: { extra: { language: ["en", "it"], "http://jabber.org/protocol/chatstates": ["may", "mustnot"] } } });
  romeo.core.request(JULIET_BARE, {
    fields: [
      { ...f.list("language", "list-single", ["en", "it"]), values: ["en"] },
      { ...f.list("http://jabber.org/protocol/chatstates", "list-single", ["may", "mustnot"]), values: ["may"] },
    ],
  });
  run(romeo, juliet);
  const [ask] = ofType(juliet.take(), "request");
  assert.deepEqual(ask?.answer.extra, { language: "en", "http://jabber.org/protocol/chatstates": "may" });
  assert.throws(() => juliet.core.accept({ extra: { language: "fr" } }), /not-acceptable/);
  assert.throws(() => juliet.core.accept({ security: "e2e" }), /not-acceptable/);
  juliet.core.accept({ extra: { language: "it" } });
  run(juliet, romeo);
  const [ra] = ofType(romeo.take(), "active");
  assert.equal(ra?.options.extra.language, "it");
  assert.equal(ra?.options.extra["http://jabber.org/protocol/chatstates"], "may");
  assert.equal(ofType(juliet.take(), "active")[0]?.options.extra.language, "it");
});

test("automatic acceptance by policy (section 9.1)", () => {
  const { romeo, juliet } = activePair();
  assert.equal(ofType(juliet.take(), "request").length, 0);
  assert.equal(ofType(romeo.take(), "active").length, 1);
});

test("reject: the contact declines with a reason (section 4.3)", () => {
  const romeo = party(ROMEO, "romeo");
  const juliet = party(JULIET, "juliet");
  romeo.core.request(JULIET_BARE);
  run(romeo, juliet);
  juliet.core.decline("Sorry, can't chat now! How about tonight?");
  const decline = juliet.flush()[0];
  assert.ok(decline);
  const df = formOf(decline);
  assert.deepEqual(
    df.fields.map((x) => x.var),
    ["FORM_TYPE", "accept", "reason"],
  ); // "RECOMMENDED that the form does not contain any other fields"
  romeo.deliver(decline);
  const [rej] = ofType(romeo.take(), "rejected");
  assert.deepEqual(rej, { type: "rejected", phase: "initial", by: "peer", reason: "declined", text: "Sorry, can't chat now! How about tonight?" });
  assert.equal(stateOf(romeo), "rejected");
  assert.equal(stateOf(juliet), "rejected");
  assert.throws(() => romeo.core.request(JULIET_BARE), /unexpected-request/);
});

test("error for a request without FORM_TYPE: service-unavailable, thread mirrored, feature echoed", () => {
  const juliet = party(JULIET, "juliet");
  const bad = parseXml(`<message from='romeo@montague.net/orchard' to='juliet@capulet.com'>
  <thread>abc123</thread>
  <feature xmlns='http://jabber.org/protocol/feature-neg'>
    <x xmlns='jabber:x:data' type='form'><field var='accept' type='boolean'><value>1</value></field></x>
  </feature>
</message>`);
  assert.equal(juliet.core.handleStanza(bad), "handled");
  const [err] = juliet.flush();
  assert.ok(err);
  assert.equal(err.attrs.type, "error");
  assert.equal(err.attrs.to, ROMEO);
  assert.equal(err.attrs.from, JULIET);
  assert.equal(getThread(err), "abc123");
  assert.ok(err.getChild("feature", NS.featureNeg)?.getChild("x", NS.data));
  assert.equal(err.getChild("error")?.attrs.code, "503");
  assert.ok(err.getChild("error")?.getChild("service-unavailable", NS.stanzas));
  const [ev] = ofType(juliet.take(), "error");
  assert.equal(ev?.condition, "service-unavailable");
  assert.equal(ev?.sent, true);

  // The initiator side: the error ends its negotiation.
  const romeo = party(ROMEO, "romeo", { thread: "abc123" as ThreadId });
  romeo.core.request(JULIET_BARE);
  romeo.flush();
  romeo.deliver(err);
  const [rev] = ofType(romeo.take(), "error");
  assert.deepEqual(rev, { type: "error", phase: "initial", origin: "remote", condition: "service-unavailable", fields: [], sent: false });
  assert.deepEqual(romeo.core.state, { name: "rejected", reason: "error", thread: "abc123", peer: JULIET_BARE, initiator: true });
});

test("presence leaks (section 10.1): no automatic answer and no error unless allowed", () => {
  const juliet = party(JULIET, "juliet", { revealPresence: false, policy: { decide: "accept" } });
  const romeo = party(ROMEO, "romeo");
  romeo.core.request(JULIET_BARE);
  run(romeo, juliet);
  assert.equal(juliet.sent.length, 0);
  assert.equal(ofType(juliet.take(), "request").length, 1); // the user decides
  juliet.core.accept();
  run(juliet, romeo);
  assert.equal(stateOf(romeo), "active");

  const quiet = party(JULIET, "quiet", { revealPresence: false });
  quiet.deliver(parseXml("<message from='romeo@montague.net/orchard'><thread>x</thread><feature xmlns='http://jabber.org/protocol/feature-neg'/></message>"));
  quiet.flush();
  assert.equal(quiet.sent.length, 0);
  assert.equal(ofType(quiet.events, "error")[0]?.sent, false);
});

test("a stored request (XEP-0203 delay) is not answered automatically (section 4.2)", () => {
  const juliet = party(JULIET, "juliet", { policy: { decide: "accept" } });
  const req = buildRequest({ to: JULIET_BARE, from: ROMEO, thread: "stored" as ThreadId, fields: [] });
  req.cnode(el("delay", { xmlns: "urn:xmpp:delay", stamp: "2026-01-01T00:00:00Z" }));
  juliet.deliver(parseXml(req.toString()));
  const [ask] = ofType(juliet.take(), "request");
  assert.equal(ask?.proposal.delayed, true);
  assert.equal(juliet.sent.length, 0);
});

test("not-acceptable naming the fields (section 4.3)", () => {
  const romeo = party(ROMEO, "romeo", { policy: { otr: "require" } });
  const juliet = party(JULIET, "juliet", { policy: { otr: "forbid", decide: "accept" } });
  romeo.core.request(JULIET_BARE, { security: ["e2e"] });
  run(romeo, juliet);
  const err = juliet.sent[0];
  assert.ok(err);
  assert.equal(err.attrs.type, "error");
  const e = err.getChild("error");
  assert.equal(e?.attrs.code, "406");
  assert.equal(e?.attrs.type, "modify");
  assert.ok(e?.getChild("not-acceptable", NS.stanzas));
  assert.deepEqual(
    e?.getChild("feature", NS.featureNeg)?.getChildren("field").map((x) => x.attrs.var),
    ["logging", "security"],
  );
  const [local] = ofType(juliet.take(), "error");
  assert.deepEqual(local?.fields, ["logging", "security"]);
  const [remote] = ofType(romeo.take(), "error");
  assert.deepEqual(remote, { type: "error", phase: "initial", origin: "remote", condition: "not-acceptable", fields: ["logging", "security"], sent: false });
  assert.equal(stateOf(romeo), "rejected");
});

test("feature-not-implemented for an unknown required field; unknown optional fields are ignored", () => {
  const romeo = party(ROMEO, "romeo");
  const juliet = party(JULIET, "juliet", { policy: { decide: "accept" } });
  romeo.core.request(JULIET_BARE, {
    fields: [
      { ...f.list("urn:example:required", "list-single", ["x"]), required: true },
      f.list("urn:example:optional", "list-single", ["y"]),
    ],
  });
  run(romeo, juliet);
  const e = juliet.sent[0]?.getChild("error");
  assert.equal(e?.attrs.code, "501");
  assert.ok(e?.getChild("feature-not-implemented", NS.stanzas));
  assert.deepEqual(e?.getChild("feature", NS.featureNeg)?.getChildren("field").map((x) => x.attrs.var), ["urn:example:required"]);

  const romeo2 = party(ROMEO, "romeo2");
  const juliet2 = party(JULIET, "juliet2", { policy: { decide: "accept" } });
  romeo2.core.request(JULIET_BARE, { fields: [f.list("urn:example:optional", "list-single", ["y"])] });
  run(romeo2, juliet2);
  assert.equal(stateOf(romeo2), "active");
  const accept = juliet2.sent[0];
  assert.ok(accept);
  assert.equal(value(formOf(accept), "urn:example:optional"), undefined);
});

test("XEP-0136: a request without 'logging' is refused when OTR is required", () => {
  const juliet = party(JULIET, "juliet", { policy: { otr: "require", decide: "accept" } });
  juliet.deliver(buildRequest({ to: JULIET_BARE, from: ROMEO, thread: "t" as ThreadId, fields: [] }));
  const [decline] = juliet.flush();
  assert.ok(decline);
  assert.equal(value(formOf(decline), "accept"), "0");
  assert.equal(ofType(juliet.take(), "rejected")[0]?.by, "us");
});

test("legacy 'otr' requests are answered in kind ('true' = mustnot)", () => {
  const juliet = party(JULIET, "juliet", { policy: { otr: "prefer", decide: "accept" } });
  // XEP-0217 v0.1 section 4.3 style request field.
  const req = parseXml(`<message from='alice@example.org/pda' to='juliet@capulet.com'>
  <thread>legacy1</thread>
  <feature xmlns='http://jabber.org/protocol/feature-neg'>
    <x type='form' xmlns='jabber:x:data'>
      <field type='hidden' var='FORM_TYPE'><value>urn:xmpp:ssn</value></field>
      <field type='boolean' var='accept'><value>1</value><required/></field>
      <field type='list-single' var='otr'>
        <option><value>false</value></option>
        <option><value>true</value></option>
        <required/>
      </field>
    </x>
  </feature>
</message>`);
  juliet.deliver(req);
  const [accept] = juliet.flush();
  assert.ok(accept);
  const af = formOf(accept);
  assert.equal(value(af, "otr"), "true");
  assert.equal(value(af, "logging"), undefined);
  juliet.deliver(
    parseXml(`<message from='alice@example.org/pda' to='juliet@capulet.com/balcony'><thread>legacy1</thread>
      <feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='result'>
      <field var='FORM_TYPE'><value>urn:xmpp:ssn</value></field><field var='accept'><value>1</value></field></x></feature></message>`),
  );
  const [active] = ofType(juliet.take(), "active");
  assert.equal(active?.options.logging, "mustnot");

  // And as initiator: a peer answering our 'logging' with a legacy 'otr' value.
  const romeo = party(ROMEO, "romeo", { thread: "legacy2" as ThreadId, policy: { otr: "concede" } });
  romeo.core.request(JULIET_BARE);
  romeo.flush();
  romeo.deliver(buildResponse({ to: ROMEO, from: JULIET, thread: "legacy2" as ThreadId, accept: true, fields: [f.value("otr", "true"), f.value("disclosure", "never"), f.value("security", "c2s")] }));
  assert.equal(ofType(romeo.take(), "active")[0]?.options.logging, "mustnot");
});

test("the initiator cancels an answer outside its offer (section 4.4 [5])", () => {
  const romeo = party(ROMEO, "romeo", { thread: "t9" as ThreadId, policy: { otr: "require" } });
  romeo.core.request(JULIET_BARE);
  romeo.flush();
  romeo.deliver(buildResponse({ to: ROMEO, from: JULIET, thread: "t9" as ThreadId, accept: true, fields: [f.value("logging", "may"), f.value("disclosure", "never"), f.value("security", "c2s")] }));
  const [cancel] = romeo.flush();
  assert.ok(cancel);
  const cf = formOf(cancel);
  assert.equal(cf.type, "result");
  assert.equal(value(cf, "accept"), "0");
  const [rej] = ofType(romeo.take(), "rejected");
  assert.equal(rej?.reason, "invalid-response");
  // A required field left unanswered is as bad.
  const romeo2 = party(ROMEO, "romeo2", { thread: "t10" as ThreadId });
  romeo2.core.request(JULIET_BARE);
  romeo2.flush();
  romeo2.deliver(buildResponse({ to: ROMEO, from: JULIET, thread: "t10" as ThreadId, accept: true, fields: [f.value("logging", "may")] }));
  assert.equal(stateOf(romeo2), "rejected");
});

test("review before completing (section 4.4): review event, then complete() or cancel()", () => {
  const romeo = party(ROMEO, "romeo", { policy: { review: "non-default", otr: "concede" } });
  const juliet = party(JULIET, "juliet", { policy: { otr: "prefer", decide: "accept" } });
  romeo.core.request(JULIET_BARE);
  run(romeo, juliet);
  const [review] = ofType(romeo.take(), "review");
  assert.deepEqual(review?.nonDefault, ["logging"]); // we preferred 'may', Juliet chose 'mustnot'
  assert.equal(stateOf(romeo), "awaiting-review");
  romeo.core.complete();
  run(romeo, juliet);
  assert.equal(stateOf(juliet), "active");

  const romeo2 = party(ROMEO, "romeo2", { policy: { review: "ask" } });
  const juliet2 = party(JULIET, "juliet2", { policy: { decide: "accept" } });
  romeo2.core.request(JULIET_BARE);
  run(romeo2, juliet2);
  romeo2.core.cancel();
  run(romeo2, juliet2);
  assert.equal(ofType(juliet2.take(), "rejected")[0]?.reason, "canceled");
  assert.equal(stateOf(juliet2), "rejected");
});

test("renegotiation accepted by either party (section 6)", () => {
  const { romeo, juliet } = activePair({ policy: { otr: "concede" } }, { policy: { otr: "concede" } });
  romeo.take();
  juliet.take();
  assert.equal(romeo.core.state.name === "active" && romeo.core.state.options.logging, "may");
  // Juliet asks for no logging; Romeo's policy accepts renegotiations automatically.
  juliet.core.renegotiate({ logging: ["mustnot"] });
  const [reneg] = juliet.flush();
  assert.ok(reneg);
  const rf = formOf(reneg);
  assert.equal(rf.type, "form");
  assert.equal(value(rf, "renegotiate"), "1");
  assert.equal(rf.fields.some((x) => x.var === "accept"), false); // section 6: MUST NOT
  assert.equal(stateOf(juliet), "renegotiating");
  romeo.deliver(reneg);
  run(romeo, juliet);
  const [ra] = ofType(romeo.take(), "active");
  const [ja] = ofType(juliet.take(), "active");
  assert.equal(ra?.phase, "renegotiation");
  assert.equal(ja?.phase, "renegotiation");
  assert.equal(ra?.options.logging, "mustnot");
  assert.deepEqual(ra?.options, ja?.options);
  // Parameters not renegotiated are kept.
  assert.equal(ra?.options.disclosure, "never");
  assert.equal(ra?.options.security, "c2s");
  // Section 6: "SHOULD NOT send a renegotiation completion": two messages only.
  assert.equal(juliet.sent.length, 2); // accept (initial) + renegotiation
});

test("renegotiation declined or failing keeps the old parameters (section 6, [8])", () => {
  const { romeo, juliet } = activePair({}, { policy: { renegotiation: "decline" } });
  romeo.take();
  romeo.core.renegotiate({ logging: ["mustnot"] });
  run(romeo, juliet);
  const [rej] = ofType(romeo.take(), "rejected");
  assert.deepEqual(rej, { type: "rejected", phase: "renegotiation", by: "peer", reason: "declined" });
  assert.equal(romeo.core.state.name === "active" && romeo.core.state.options.logging, "may");

  // Not acceptable to Juliet's policy: an error, old parameters kept on both sides.
  const p = activePair({}, { policy: { otr: "forbid" } });
  p.romeo.take();
  p.juliet.take();
  p.romeo.core.renegotiate({ logging: ["mustnot"] });
  run(p.romeo, p.juliet);
  const [err] = ofType(p.romeo.take(), "error");
  assert.deepEqual([err?.phase, err?.origin, err?.condition, err?.fields], ["renegotiation", "remote", "not-acceptable", ["logging"]]);
  assert.equal(stateOf(p.romeo), "active");
  assert.equal(stateOf(p.juliet), "active");
  assert.equal(ofType(p.juliet.take(), "error")[0]?.sent, true);
});

test("renegotiation the user decides; glare declines both", () => {
  const { romeo, juliet } = activePair({}, { policy: { renegotiation: "ask" } });
  juliet.take();
  romeo.core.renegotiate({ security: ["c2s", "none"] });
  run(romeo, juliet);
  const [ask] = ofType(juliet.take(), "request");
  assert.equal(ask?.phase, "renegotiation");
  assert.equal(stateOf(juliet), "awaiting-renegotiation-decision");
  juliet.core.accept({ security: "none" });
  run(juliet, romeo);
  const ra = ofType(romeo.take(), "active").at(-1);
  assert.equal(ra?.options.security, "none");

  const g = activePair();
  g.romeo.take();
  g.juliet.take();
  g.romeo.core.renegotiate({ logging: ["mustnot"] });
  g.juliet.core.renegotiate({ logging: ["mustnot"] });
  const r1 = g.romeo.flush();
  const j1 = g.juliet.flush();
  for (const s of r1) g.juliet.deliver(s);
  for (const s of j1) g.romeo.deliver(s);
  run(g.romeo, g.juliet);
  assert.equal(stateOf(g.romeo), "active");
  assert.equal(stateOf(g.juliet), "active");
  assert.equal(ofType(g.romeo.take(), "rejected").length, 1);
  assert.equal(ofType(g.juliet.take(), "rejected").length, 1);
});

test("termination and its acknowledgement (section 7)", () => {
  const { romeo, juliet } = activePair();
  romeo.take();
  juliet.take();
  juliet.core.terminate();
  const [term] = juliet.flush();
  assert.ok(term);
  const tf = formOf(term);
  assert.deepEqual([tf.type, value(tf, "terminate")], ["submit", "1"]);
  assert.equal(stateOf(juliet), "awaiting-terminate-ack");
  assert.deepEqual(ofType(juliet.take(), "terminated"), [{ type: "terminated", by: "us" }]);
  romeo.deliver(term);
  const [ack] = romeo.flush();
  assert.ok(ack);
  const af = formOf(ack);
  assert.deepEqual([af.type, value(af, "terminate")], ["result", "1"]);
  assert.equal(getThread(ack), getThread(term));
  assert.deepEqual(ofType(romeo.take(), "terminated"), [{ type: "terminated", by: "peer" }]);
  juliet.deliver(ack);
  assert.equal(stateOf(juliet), "terminated");
  assert.equal(stateOf(romeo), "terminated");
  // Stray messages after the end do not revive anything.
  juliet.deliver(term);
  assert.equal(stateOf(juliet), "terminated");
});

test("termination without acknowledgement ends by timer; simultaneous termination", () => {
  const clock = new VirtualClock();
  const { romeo, juliet } = activePair({ clock, policy: { timeoutMs: 30_000 } }, { policy: { acknowledgeTermination: false } });
  romeo.core.terminate();
  run(romeo, juliet);
  assert.equal(stateOf(romeo), "awaiting-terminate-ack");
  const d = romeo.core.nextDeadline();
  assert.equal(d, clock.now() + 30_000);
  romeo.core.handleTimer(clock.now() + 29_999);
  assert.equal(stateOf(romeo), "awaiting-terminate-ack");
  clock.advance(30_000);
  romeo.core.handleTimer(clock.now());
  assert.equal(stateOf(romeo), "terminated");
  assert.equal(romeo.core.nextDeadline(), undefined);

  const p = activePair();
  p.romeo.core.terminate();
  p.juliet.core.terminate();
  const a = p.romeo.flush();
  const b = p.juliet.flush();
  for (const s of a) p.juliet.deliver(s);
  for (const s of b) p.romeo.deliver(s);
  run(p.romeo, p.juliet);
  assert.equal(stateOf(p.romeo), "terminated");
  assert.equal(stateOf(p.juliet), "terminated");
  assert.equal(ofType(p.romeo.take(), "terminated").length, 1);
});

test("no response: timeout, then a late acceptance is canceled", () => {
  const clock = new VirtualClock();
  const romeo = party(ROMEO, "romeo", { clock, policy: { timeoutMs: 60_000 } });
  const juliet = party(JULIET, "juliet", { policy: { decide: "accept" } });
  romeo.core.request(JULIET_BARE);
  const [req] = romeo.flush();
  assert.ok(req);
  clock.advance(60_000);
  romeo.core.handleTimer(clock.now());
  assert.deepEqual(ofType(romeo.take(), "rejected")[0], { type: "rejected", phase: "initial", by: "us", reason: "timeout" });
  juliet.deliver(req);
  run(juliet, romeo);
  const cancel = romeo.sent.at(-1);
  assert.ok(cancel);
  assert.deepEqual([formOf(cancel).type, value(formOf(cancel), "accept")], ["result", "0"]);
  assert.equal(stateOf(juliet), "rejected");
  assert.equal(ofType(juliet.take(), "rejected")[0]?.reason, "canceled");
});

test("moving a session to another resource (section 5)", () => {
  const { romeo, juliet } = activePair();
  romeo.take();
  juliet.take();
  juliet.core.moveTo("PDA");
  const [cont] = juliet.flush();
  assert.ok(cont);
  assert.deepEqual([formOf(cont).type, value(formOf(cont), "continue")], ["submit", "PDA"]);
  romeo.deliver(cont);
  const [ack] = romeo.flush();
  assert.ok(ack);
  assert.equal(ack.attrs.to, JULIET); // to the old resource
  assert.deepEqual([formOf(ack).type, value(formOf(ack), "continue")], ["result", "PDA"]);
  const [rm] = ofType(romeo.take(), "moved");
  assert.equal(rm?.jid, "juliet@capulet.com/PDA");
  juliet.deliver(ack);
  const [jm] = ofType(juliet.take(), "moved");
  assert.equal(jm?.party, "us");
  assert.equal(juliet.core.localJid, "juliet@capulet.com/PDA");
  assert.equal(jm?.key, juliet.core.key);
  // From now on only the new resource speaks for Juliet.
  const forged = juliet.core; // old resource's stanzas are ignored by Romeo
  void forged;
  const oldTerm = parseXml(
    `<message from='juliet@capulet.com/balcony' to='romeo@montague.net/orchard'><thread>${romeo.core.thread ?? ""}</thread><feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:ssn</value></field><field var='terminate'><value>1</value></field></x></feature></message>`,
  );
  assert.equal(romeo.core.handleStanza(oldTerm), "ignored");
  juliet.core.terminate();
  run(juliet, romeo);
  assert.equal(stateOf(romeo), "terminated");
});

test("third parties and other threads cannot touch a session", () => {
  const { romeo, juliet } = activePair();
  romeo.take();
  const thread = romeo.core.thread ?? "";
  const term = (from: string, t: string) =>
    parseXml(
      `<message from='${from}' to='romeo@montague.net/orchard'><thread>${t}</thread><feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:ssn</value></field><field var='terminate'><value>1</value></field></x></feature></message>`,
    );
  assert.equal(romeo.core.handleStanza(term("mallory@evil.lit/x", thread)), "ignored");
  assert.equal(romeo.core.handleStanza(term("juliet@capulet.com/other", thread)), "ignored");
  assert.equal(romeo.core.handleStanza(term("juliet@capulet.com", thread)), "ignored");
  assert.equal(romeo.core.handleStanza(term("juliet@capulet.com/balcony", "another-thread")), "ignored");
  assert.equal(romeo.flush().length, 0);
  assert.equal(stateOf(romeo), "active");
  void juliet;
});

test("commands in the wrong state throw NegotiationError (programming errors, not peer input)", () => {
  const romeo = party(ROMEO, "romeo");
  assert.throws(() => romeo.core.accept(), NegotiationError);
  assert.throws(() => romeo.core.decline(), NegotiationError);
  assert.throws(() => romeo.core.renegotiate({ logging: ["may"] }), NegotiationError);
  assert.throws(() => romeo.core.moveTo("x"), NegotiationError);
  assert.throws(() => romeo.core.complete(), NegotiationError);
  romeo.core.terminate(); // nothing to terminate: a no-op
  assert.equal(stateOf(romeo), "idle");
  assert.throws(() => romeo.core.request(JULIET_BARE, { fields: [f.value("logging", "may")] }), /own option/);
});

// ---------------------------------------------------------------------------------------
// Garbage never throws

const GARBAGE: readonly string[] = [
  "<iq type='get' id='1'/>",
  "<presence/>",
  "<message/>",
  "<message><body>hello</body></message>",
  "<message from='romeo@montague.net/orchard'><thread>T</thread><body>hi</body></message>",
  "<message from='romeo@montague.net/orchard'><thread>T</thread><feature xmlns='http://jabber.org/protocol/feature-neg'/></message>",
  "<message from='romeo@montague.net/orchard'><thread>T</thread><feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data'/></feature></message>",
  "<message from='romeo@montague.net/orchard'><thread>T</thread><feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='form'><field var='accept' type='nonsense'/></x></feature></message>",
  "<message from='romeo@montague.net/orchard'><thread>T</thread><feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='form'><field/></x></feature></message>",
  "<message from='romeo@montague.net/orchard'><thread>T</thread><feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:ssn</value></field><field var='accept'><value>perhaps</value></field></x></feature></message>",
  "<message from='romeo@montague.net/orchard'><feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='form'><field var='FORM_TYPE'><value>urn:xmpp:ssn</value></field><field var='accept'><value>1</value></field></x></feature></message>",
  "<message from='@@@' ><thread>T</thread><feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='form'><field var='FORM_TYPE'><value>urn:xmpp:ssn</value></field><field var='accept'><value>1</value></field></x></feature></message>",
  "<message from='romeo@montague.net'><thread>T</thread><feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='form'><field var='FORM_TYPE'><value>urn:xmpp:ssn</value></field><field var='accept'><value>1</value></field></x></feature></message>",
  "<message type='error' from='romeo@montague.net/orchard'><thread>T</thread><feature xmlns='http://jabber.org/protocol/feature-neg'/></message>",
  "<message type='error' from='romeo@montague.net/orchard'><thread>T</thread><feature xmlns='http://jabber.org/protocol/feature-neg'/><error type='bogus'><made-up xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
  "<message type='groupchat' from='romeo@montague.net/orchard'><thread>T</thread><feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='form'/></feature></message>",
  "<message from='romeo@montague.net/orchard'><thread>T</thread><feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'><value>urn:xmpp:ssn</value></field><field var='continue'><value></value></field></x></feature></message>",
];

/** Deterministic mutations of a valid stanza: drop, duplicate or empty random nodes/attributes. */
function mutate(stanza: Element, r: SeededRandom): Element {
  const copy = parseXml(stanza.toString());
  const nodes: Element[] = [];
  const walk = (e: Element) => {
    nodes.push(e);
    for (const c of e.children) if (typeof c !== "string") walk(c);
  };
  walk(copy);
  const [a = 0, b = 0] = r.bytes(2);
  const target = nodes[a % nodes.length];
  if (!target) return copy;
  switch (b % 5) {
    case 0:
      if (target.parent) target.parent.children = target.parent.children.filter((c) => c !== target);
      break;
    case 1:
      if (target.parent) target.parent.children.push(parseXml(target.toString()));
      break;
    case 2:
      target.children = [];
      break;
    case 3: {
      const keys = Object.keys(target.attrs);
      const k = keys[b % Math.max(1, keys.length)];
      if (k !== undefined) delete target.attrs[k];
      break;
    }
    default:
      target.children = ["x".repeat(b)];
  }
  return copy;
}

test("garbage and mutated input never throws, in every state", () => {
  const r = new SeededRandom(nodeCrypto, "fuzz");
  // Valid stanzas of every kind, to mutate.
  const { romeo, juliet } = activePair();
  romeo.core.renegotiate({ logging: ["mustnot"] });
  run(romeo, juliet);
  juliet.core.moveTo("PDA");
  run(romeo, juliet);
  romeo.core.terminate();
  run(romeo, juliet);
  const corpus = [...romeo.sent, ...juliet.sent];
  assert.ok(corpus.length >= 8);

  const makeCores = (): Party[] => {
    const idle = party(JULIET, "f-idle");
    const waiting = party(ROMEO, "f-wait", { thread: "T" as ThreadId });
    waiting.core.request(JULIET_BARE);
    const deciding = party(JULIET, "f-decide");
    deciding.deliver(buildRequest({ to: JULIET_BARE, from: ROMEO, thread: "T" as ThreadId, fields: [] }));
    const act = activePair();
    return [idle, waiting, deciding, act.romeo, act.juliet];
  };
  for (const p of makeCores()) {
    for (const g of GARBAGE) {
      const before = p.core.state.name;
      assert.doesNotThrow(() => p.core.handleStanza(parseXml(g)), g);
      p.flush();
      if (before === "active") assert.equal(stateOf(p), "active", g);
    }
    for (let i = 0; i < 300; i++) {
      const base = corpus[i % corpus.length];
      assert.ok(base);
      const m = mutate(base, r);
      assert.doesNotThrow(() => p.core.handleStanza(m));
      for (const o of p.core.drain()) {
        if (o.kind === "send") {
          // Whatever we send must itself be well-formed and never an error answering an error.
          const wire = parseXml(o.stanza.toString());
          if (m.attrs.type === "error") assert.notEqual(wire.attrs.type, "error");
        }
      }
    }
  }
});
