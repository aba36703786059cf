/**
 * A gateway from standard input to one encrypted conversation, for scripts and monitoring:
 * every line read from stdin is sent to PEER inside an Encrypted Session; what PEER writes
 * back is printed on stdout. Nothing is sent before the session is established, and the
 * process exits non-zero if it cannot be.
 *
 *   echo "disk 91% full" | XMPP_E2E_PASSWORD=secret npx tsx examples/gateway.ts alerts@example.org xmpp://example.org:5222 ops@example.org/phone
 *
 * Spec: XEP-0217 v0.1, XEP-0200 v0.2 (send() refuses without a session: never in the clear).
 */
import { createInterface } from "node:readline";
import { connectXmpp } from "../src/adapters/xmpp-client.js";
import { SecureClient } from "../src/client/secure-client.js";
import { jidParts } from "../src/core/types.js";
import { MemoryStore } from "../src/store/memory.js";

const [jid = "", service = "", peer = ""] = process.argv.slice(2);
const password = process.env.XMPP_E2E_PASSWORD ?? "";
const { local, domain } = jidParts(jid);
if (!local || !service || !peer || !password) {
  console.error("usage: XMPP_E2E_PASSWORD=... tsx examples/gateway.ts user@domain xmpp://host:5222 peer@domain/resource");
  process.exit(2);
}
const conn = await connectXmpp({ service, domain, username: local, password, resource: "gateway" });
const client = new SecureClient({ connection: conn, store: new MemoryStore() });
client.on((e) => {
  if (e.type === "message" && e.body !== undefined) console.log(`${e.peer}: ${e.body}`);
});
let code = 0;
try {
  const est = await client.startSession(peer);
  console.error(`encrypted (SAS ${est.sas ?? "none"}: compare it with ${peer} once)`);
  for await (const line of createInterface({ input: process.stdin })) if (line.trim()) await client.sendMessage(peer, line);
} catch (e) {
  console.error(`not sent: ${e instanceof Error ? e.message : String(e)}`);
  code = 1;
}
await client.close();
await conn.close();
process.exit(code);
