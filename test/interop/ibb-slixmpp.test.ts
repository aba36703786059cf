/**
 * Interop: our XEP-0047 v2.0.1 In-Band Bytestreams against slixmpp's independent
 * xep_0047 plugin, through a real Prosody on loopback. 1 MiB each way, checked by
 * SHA-256 (sections 2.1 open, 2.2 data with seq, 2.3 close); message mode (section 4)
 * from slixmpp to us; slixmpp receiving a stream whose seq wraps is not practical at
 * 1 MiB (16 Ki blocks) and is covered by the unit tests.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";
import { connectXmpp } from "../../src/adapters/xmpp-client.js";
import type { StanzaConnection } from "../../src/adapters/connection.js";
import { parseFullJid, type FullJid } from "../../src/core/types.js";
import { IbbEndpoint, type IbbStream } from "../../src/ibb/index.js";

const PEER = fileURLToPath(new URL("./peers/ibb_peer.py", import.meta.url));

let prosody: ProsodyInstance;
let conn: StanzaConnection;
let ep: IbbEndpoint;
let py: ChildProcessWithoutNullStreams;
let pyJid: FullJid;
const lines: string[] = [];
const waiters: Array<{ prefix: string; resolve: (l: string) => void }> = [];

function nextLine(prefix: string, timeoutMs = 30_000): Promise<string> {
  const i = lines.findIndex((l) => l.startsWith(prefix));
  if (i !== -1) return Promise.resolve(lines.splice(i, 1)[0] as string);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`slixmpp peer: no ${prefix} line in ${timeoutMs} ms`)), timeoutMs);
    waiters.push({
      prefix,
      resolve: (l) => {
        clearTimeout(t);
        resolve(l);
      },
    });
  });
}

const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

function collect(s: IbbStream): Promise<Buffer> {
  return new Promise((res, rej) => {
    const parts: Buffer[] = [];
    s.on("data", (d: Buffer) => parts.push(d));
    s.on("end", () => res(Buffer.concat(parts)));
    s.on("error", rej);
  });
}

before(async () => {
  prosody = await startProsody({ users: [["alice", "pw-a"], ["slix", "pw-s"]] });
  conn = await connectXmpp({ service: prosody.service, domain: "localhost", username: "alice", password: "pw-a", resource: "node" });
  ep = new IbbEndpoint(conn, { maxBlockSize: 8192 });
  const port = String(prosody.c2sPort);
  py = spawn("/usr/bin/python3", [PEER, "slix@localhost/py", "pw-s", "127.0.0.1", port], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  py.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  py.on("exit", (code) => {
    if (code !== 0 && code !== null) lines.push(`EXIT ${code} ${stderr}`);
  });
  createInterface({ input: py.stdout }).on("line", (l) => {
    const w = waiters.findIndex((x) => l.startsWith(x.prefix));
    if (w !== -1) waiters.splice(w, 1)[0]?.resolve(l);
    else lines.push(l);
  });
  const ready = await nextLine("READY", 20_000);
  pyJid = parseFullJid(ready.split(" ")[1] ?? "");
});

after(async () => {
  py?.stdin.write("quit\n");
  py?.kill();
  ep?.detach();
  await conn?.close().catch(() => undefined);
  await prosody?.stop();
});

test("we send 1 MiB to slixmpp over IBB (iq mode, block-size 4096): SHA-256 matches", async () => {
  const payload = randomBytes(1 << 20);
  const s = await ep.open(pyJid, { blockSize: 4096 });
  const received = nextLine("RECEIVED", 60_000);
  await new Promise<void>((res, rej) => {
    s.on("error", rej);
    s.end(payload, () => res());
  });
  const [, , n, digest] = (await received).split(" ");
  assert.equal(Number(n), payload.length);
  assert.equal(digest, sha(payload));
});

test("slixmpp sends 1 MiB to us over IBB (iq mode): SHA-256 matches", async () => {
  ep.onOffer((o) => o.peer === pyJid);
  const incoming = new Promise<IbbStream>((res) => ep.onStream(res));
  py.stdin.write(`send ${conn.jid} ${1 << 20} 4096 iq\n`);
  const s = await incoming;
  const got = await collect(s);
  const [, n, digest] = (await nextLine("SENT", 60_000)).split(" ");
  assert.equal(got.length, Number(n));
  assert.equal(sha(got), digest);
});

test("slixmpp sends 256 KiB in message mode at block-size 8192; a block-size over our maximum is refused", async () => {
  const incoming = new Promise<IbbStream>((res) => ep.onStream(res));
  py.stdin.write(`send ${conn.jid} ${256 * 1024} 8192 message\n`);
  const s = await incoming;
  assert.equal(s.blockSize, 8192);
  const got = await collect(s);
  const [, n, digest] = (await nextLine("SENT", 60_000)).split(" ");
  assert.equal(got.length, Number(n));
  assert.equal(sha(got), digest);
  // slixmpp does not retry on resource-constraint: an over-large offer is refused.
  py.stdin.write(`send ${conn.jid} 10 16384 iq\n`);
  assert.match(await nextLine("ERROR", 30_000), /ERROR/);
});
