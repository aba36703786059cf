/**
 * Interop: the @xmpp/client adapter (src/adapters/xmpp-client.ts) against a real
 * Prosody 0.12 started by test/harness/prosody.ts, over TCP and WebSocket.
 *
 * Spec: RFC 6120 sections 6-8 (SASL, binding, stanzas; 8.3.3.19 service-unavailable),
 * RFC 6121 section 4.6 (directed presence, and unavailable presence to its recipients
 * when the session ends), RFC 7395 (WebSocket), XEP-0199 (ping, answered by Prosody).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { el, NS, type Element } from "../../src/xml/index.js";
import { AdapterError, attrOf, type StanzaConnection } from "../../src/adapters/connection.js";
import { connectXmpp, type XmppConnection } from "../../src/adapters/xmpp-client.js";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";

/** Resolves with the first stanza `pred` accepts; rejects after `ms`. Subscribe first, then act. */
function next(c: StanzaConnection, pred: (s: Element) => boolean, ms = 5000): Promise<Element> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching stanza for ${c.jid} within ${ms} ms`));
    }, ms);
    const off = c.onStanza((s) => {
      if (!pred(s)) return;
      clearTimeout(timer);
      off();
      resolve(s);
    });
  });
}

/** Answers every iq get from a peer with a result carrying a disco#info identity. */
function answerIqs(c: StanzaConnection): () => void {
  return c.onStanza((s) => {
    if (s.name !== "iq" || attrOf(s, "type") !== "get") return;
    void c.send(
      el(
        "iq",
        { type: "result", id: attrOf(s, "id"), to: attrOf(s, "from") },
        el("query", { xmlns: NS.disco }, el("identity", { category: "client", type: "pc", name: String(c.jid) })),
      ),
    );
  });
}

function errorCondition(s: Element): string | undefined {
  const e = s.getChild("error");
  const c = e?.children.find((x): x is Element => typeof x !== "string" && x.attrs["xmlns"] === NS.stanzas);
  return c?.name;
}

const isAdapterError =
  (condition: AdapterError["condition"]) =>
  (e: unknown): boolean =>
    e instanceof AdapterError && e.condition === condition;

describe("Prosody + @xmpp/client adapter", () => {
  let prosody: ProsodyInstance;

  before(async () => {
    prosody = await startProsody({
      users: [
        ["alice", "alice-pw"],
        ["bob", "bob-pw"],
      ],
      websocket: true,
    });
  });

  after(async () => {
    await prosody?.stop();
  });

  for (const transport of ["tcp", "websocket"] as const) {
    test(`${transport}: login, presence, message and iq both ways, close`, async (t) => {
      const service = transport === "tcp" ? prosody.service : prosody.wsService;
      assert.ok(service !== undefined);
      const alice = await connectXmpp({
        service,
        domain: prosody.domain,
        username: "alice",
        password: "alice-pw",
        resource: `${transport}-a`,
      });
      const bob = await connectXmpp({ service, domain: prosody.domain, username: "bob", password: "bob-pw" });
      t.after(async () => {
        await alice.close();
        await bob.close();
      });
      assert.equal(alice.jid, `alice@localhost/${transport}-a`);
      assert.match(bob.jid, /^bob@localhost\/.+/);
      assert.equal(alice.transport, transport);

      // initial presence came back to its sender (RFC 6121 section 4.2.2); it arrived
      // before any handler and was kept for the first one
      const self = await next(alice, (s) => s.name === "presence" && attrOf(s, "from") === alice.jid);
      assert.equal(self.attrs["xmlns"], NS.client);

      // directed presence (no roster subscription needed)
      const presence = next(bob, (s) => s.name === "presence" && attrOf(s, "from") === alice.jid);
      await alice.send(el("presence", { to: bob.jid }));
      assert.equal((await presence).attrs["type"], undefined);

      // messages both ways
      const toBob = next(bob, (s) => s.name === "message");
      await alice.send(el("message", { to: bob.jid, type: "chat", id: "m1" }, el("body", {}, "hello bob")));
      const m1 = await toBob;
      assert.equal(m1.attrs["from"], alice.jid);
      assert.equal(m1.getChildText("body"), "hello bob");
      assert.equal(m1.attrs["xmlns"], NS.client);
      const toAlice = next(alice, (s) => s.name === "message");
      await bob.send(el("message", { to: alice.jid, type: "chat", id: "m2" }, el("body", {}, "hello alice <&>")));
      assert.equal((await toAlice).getChildText("body"), "hello alice <&>");

      // iq round trips both ways: our handlers answer, nobody else does
      answerIqs(bob);
      answerIqs(alice);
      for (const [from, to] of [
        [alice, bob],
        [bob, alice],
      ] as const) {
        const id = `q-${from.jid}`;
        const reply = next(from, (s) => s.name === "iq" && attrOf(s, "id") === id);
        await from.send(el("iq", { type: "get", id, to: to.jid }, el("query", { xmlns: NS.disco })));
        const r = await reply;
        assert.equal(r.attrs["type"], "result", `reply to ${id}: ${r.toString()}`);
        assert.equal(r.attrs["from"], to.jid);
        assert.equal(r.getChild("query", NS.disco)?.getChild("identity")?.attrs["name"], to.jid);
      }

      // an iq nobody on our side answers gets exactly one reply: Prosody's pong
      const pong = next(alice, (s) => attrOf(s, "id") === "ping1");
      await alice.send(el("iq", { type: "get", id: "ping1", to: "localhost" }, el("ping", { xmlns: "urn:xmpp:ping" })));
      assert.equal((await pong).attrs["type"], "result");

      // closing: Bob, who got Alice's directed presence, hears she is gone
      const gone = next(bob, (s) => s.name === "presence" && attrOf(s, "from") === alice.jid && attrOf(s, "type") === "unavailable");
      await alice.close();
      await gone;
      assert.equal(alice.isOpen, false);
      await assert.rejects(alice.send(el("message", { to: bob.jid }, el("body", {}, "late"))), isAdapterError("closed"));
      await alice.close(); // idempotent
    });
  }

  test("Prosody answers an iq to an unknown account with service-unavailable (as the switchboard does)", async (t) => {
    const alice = await connectXmpp({ service: prosody.service, domain: "localhost", username: "alice", password: "alice-pw" });
    t.after(() => alice.close());
    const reply = next(alice, (s) => attrOf(s, "id") === "nobody1");
    await alice.send(el("iq", { type: "get", id: "nobody1", to: "nobody@localhost/x" }, el("query", { xmlns: NS.disco })));
    const r = await reply;
    assert.equal(r.attrs["type"], "error");
    assert.equal(errorCondition(r), "service-unavailable");
  });

  test("wrong password is auth-failed and the message carries no secret", async () => {
    await assert.rejects(
      connectXmpp({ service: prosody.service, domain: "localhost", username: "alice", password: "s3cret-wrong" }),
      (e: unknown) => isAdapterError("auth-failed")(e) && e instanceof Error && !e.message.includes("s3cret-wrong"),
    );
  });

  test("nothing listening is connection-failed, over TCP and WebSocket", async () => {
    const closedPort = prosody.c2sPort === 1 ? 2 : 1;
    await assert.rejects(
      connectXmpp({ service: `xmpp://127.0.0.1:${closedPort}`, domain: "localhost", username: "a", password: "b" }),
      isAdapterError("connection-failed"),
    );
    await assert.rejects(
      connectXmpp({ service: `ws://127.0.0.1:${closedPort}/xmpp-websocket`, domain: "localhost", username: "a", password: "b" }),
      isAdapterError("connection-failed"),
    );
    await assert.rejects(
      connectXmpp({ service: "http://127.0.0.1/", domain: "localhost", username: "a", password: "b" }),
      isAdapterError("connection-failed"),
    );
  });

  test("a server that never answers is a timeout", async () => {
    const { createServer } = await import("node:net");
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const addr = silent.address();
    assert.ok(typeof addr === "object" && addr !== null);
    try {
      await assert.rejects(
        connectXmpp({ service: `xmpp://127.0.0.1:${addr.port}`, domain: "localhost", username: "a", password: "b", timeoutMs: 300 }),
        isAdapterError("timeout"),
      );
    } finally {
      silent.close();
    }
  });

  test("SCRAM-SHA-1 login and a user registered while Prosody runs", async () => {
    await prosody.register("carol", "carol-pw");
    const carol = await connectXmpp({
      service: prosody.service,
      domain: "localhost",
      username: "carol",
      password: "carol-pw",
      mechanism: "SCRAM-SHA-1",
      presence: false,
    });
    assert.match(carol.jid, /^carol@localhost\//);
    await carol.close();
  });

  test("the server going away surfaces as closed", async () => {
    const p2 = await startProsody({ users: [["dave", "dave-pw"]] });
    let conn: XmppConnection | undefined;
    try {
      conn = await connectXmpp({ service: p2.service, domain: "localhost", username: "dave", password: "dave-pw" });
      const c = conn;
      const closed = new Promise<AdapterError | undefined>((r) => c.onClose(r));
      await p2.stop();
      const why = await closed;
      assert.ok(why instanceof AdapterError && why.condition === "closed");
      await assert.rejects(c.send(el("presence", {})), isAdapterError("closed"));
    } finally {
      await conn?.close();
      await p2.stop();
    }
  });
});
