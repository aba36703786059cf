/**
 * An echo bot that only talks encrypted: it answers Encrypted Session requests
 * (XEP-0217), echoes what it reads inside a session, and answers anything sent in the
 * clear with one line telling the sender to encrypt (never the content back).
 *
 *   XMPP_E2E_PASSWORD=secret npx tsx examples/encrypted-bot.ts bot@example.org xmpp://example.org:5222
 *
 * Spec: XEP-0217 v0.1, XEP-0200 v0.2, XEP-0116 v0.16 section 12 (the store).
 */
import { connectXmpp } from "../src/adapters/xmpp-client.js";
import { SecureClient } from "../src/client/secure-client.js";
import { jidParts } from "../src/core/types.js";
import { openSqliteStore } from "../src/store/sqlite.js";
import { el } from "../src/xml/index.js";

const [jid = "", service = ""] = process.argv.slice(2);
const password = process.env.XMPP_E2E_PASSWORD ?? "";
const { local, domain } = jidParts(jid);
if (!local || !service || !password) {
  console.error("usage: XMPP_E2E_PASSWORD=... tsx examples/encrypted-bot.ts user@domain xmpp://host:5222");
  process.exit(2);
}
const conn = await connectXmpp({ service, domain, username: local, password, resource: "bot", presence: false });
const store = openSqliteStore(`${local}-bot.db`);
const client = new SecureClient({ connection: conn, store });
client.on((e) => {
  if (e.type === "established") console.log(`encrypted session with ${e.peer}, SAS ${e.sas ?? "(none)"}`);
  if (e.type === "message" && e.body !== undefined) void client.sendMessage(e.peer, `you said: ${e.body}`).catch(() => undefined);
  if (e.type === "unprotected" && e.stanza.name === "message" && e.stanza.getChildText("body"))
    void conn.send(el("message", { to: e.peer, type: "chat" }, el("body", {}, "I only talk encrypted: start an Encrypted Session (XEP-0217) and write again."))).catch(() => undefined);
});
await client.announce(); // presence with caps: clients discover that we speak ESessions
console.log(`${conn.jid} is listening; Ctrl-C stops`);
process.once("SIGINT", () => {
  void client.close().then(() => conn.close()).then(() => store.close()).then(() => process.exit(0));
});
