/**
 * A standalone ESession peer for crash tests: one SecureClient with the SQLite store on a
 * real Prosody connection, in its own process so that a test can SIGKILL it mid-session
 * and start it again on the same store file.
 *
 * Spec: XEP-0200 v0.2 (sessions, re-keys), XEP-0217 (retained secrets survive in the
 * SQLite store), XEP-0160 (Prosody stores what arrives while the peer is down);
 * docs/offline-and-devices.md "Recovery".
 *
 * Usage: node --import tsx esession-peer.ts SERVICE USER PASSWORD RESOURCE STORE_PATH
 * stdin, one JSON object a line: {"cmd":"start","to":JID} {"cmd":"send","to":JID,"body":S}
 *   {"cmd":"rekey","to":JID} {"cmd":"close"}
 * stdout, one JSON object a line: {"type":"ready","jid":J}, the client's events
 *   (established, message {body}, undecryptable, undelivered, resent, recovery, failed,
 *   terminated), {"type":"done","cmd":C} after each command, {"type":"error","cmd":C,"message":M},
 *   and {"type":"clear","body":B} if a stanza ever arrived with a body outside encryption.
 */
import { createInterface } from "node:readline";
import { connectXmpp } from "../../../src/adapters/xmpp-client.js";
import { SecureClient } from "../../../src/client/secure-client.js";
import { openSqliteStore } from "../../../src/store/sqlite.js";

const [service, user, password, resource, storePath] = process.argv.slice(2);
if (!service || !user || !password || !resource || !storePath) {
  process.stderr.write("usage: esession-peer SERVICE USER PASSWORD RESOURCE STORE_PATH\n");
  process.exit(2);
}

const out = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

const conn = await connectXmpp({ service, domain: "localhost", username: user, password, resource, presence: false });
const store = openSqliteStore(storePath);
const client = new SecureClient({ connection: conn, store, recovery: { resend: true } });
conn.onStanza((s) => {
  // A body outside <c/> would be content that went out unencrypted.
  if (s.name === "message" && s.getChild("body") && !s.getChild("error")) out({ type: "clear", body: s.getChildText("body") });
});
client.on((e) => {
  switch (e.type) {
    case "established":
      out({ type: e.type, peer: e.peer, retained: e.retainedSecretMatched });
      break;
    case "message":
      out({ type: e.type, peer: e.peer, body: e.body });
      break;
    case "undecryptable":
      out({ type: e.type, peer: e.peer, reason: e.reason });
      break;
    case "undelivered":
      out({ type: e.type, peer: e.peer, id: e.id, willResend: e.willResend });
      break;
    case "resent":
      out({ type: e.type, peer: e.peer, id: e.id });
      break;
    case "recovery":
      out({ type: e.type, peer: e.peer, state: e.state });
      break;
    case "failed":
      out({ type: e.type, peer: e.peer, condition: e.error.condition });
      break;
    case "terminated":
      out({ type: e.type, peer: e.peer, by: e.by });
      break;
    case "rekeyed":
      out({ type: e.type, peer: e.peer, by: e.by });
      break;
    default:
      break;
  }
});
await client.announce();
out({ type: "ready", jid: conn.jid });

interface Command {
  readonly cmd: "start" | "send" | "rekey" | "close";
  readonly to?: string;
  readonly body?: string;
}

// Commands run one at a time, in order.
let queue: Promise<void> = Promise.resolve();
const run = async (c: Command): Promise<void> => {
  try {
    switch (c.cmd) {
      case "start":
        await client.startSession(c.to ?? "");
        break;
      case "send":
        // After a restart there is no session: negotiate one first (the user's client
        // would do the same before sending anything it was asked to protect).
        if (!client.session(c.to ?? "")?.isActive) await client.startSession(c.to ?? "");
        await client.sendMessage(c.to ?? "", c.body ?? "");
        break;
      case "rekey":
        await client.rekey(c.to ?? "");
        break;
      case "close":
        await client.close();
        await conn.close();
        store.close();
        out({ type: "done", cmd: c.cmd });
        process.exit(0);
    }
    out({ type: "done", cmd: c.cmd });
  } catch (e) {
    out({ type: "error", cmd: c.cmd, message: e instanceof Error ? e.message : String(e) });
  }
};
createInterface({ input: process.stdin }).on("line", (line) => {
  const c = JSON.parse(line) as Command;
  queue = queue.then(() => run(c));
});
