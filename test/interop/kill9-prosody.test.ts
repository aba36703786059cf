/**
 * Crash recovery with real processes through a real Prosody (issue 7): Alice and Bob each
 * run in their own process (test/interop/peers/esession-peer.ts, SQLite store on disk);
 * the test SIGKILLs one of them mid-session or right after a re-key started, starts it
 * again on the same store, and checks by sequence number that the next messages flow in a
 * renegotiated session, that nothing the receiver had already received is lost and that
 * nothing is delivered twice.
 *
 * Spec: XEP-0200 v0.2 section 6 (a stanza that cannot be decrypted is never shown),
 * XEP-0217 section 4 (retained secrets in the store survive the crash), XEP-0160 (Prosody
 * keeps messages for an unavailable resource), RFC 6120 section 8.3 (error replies);
 * docs/offline-and-devices.md "Recovery".
 */
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";

const PEER = join(import.meta.dirname, "peers", "esession-peer.ts");
const ALICE = "alice@localhost/desk";
const BOB = "bob@localhost/phone";

interface PeerEvent {
  readonly type: string;
  readonly [k: string]: unknown;
}

class Peer {
  readonly events: PeerEvent[] = [];
  private readonly waiters = new Set<() => void>();
  private constructor(readonly proc: ChildProcessWithoutNullStreams) {
    createInterface({ input: proc.stdout }).on("line", (line) => {
      try {
        this.events.push(JSON.parse(line) as PeerEvent);
      } catch {
        this.events.push({ type: "stdout", line });
      }
      for (const w of [...this.waiters]) w();
    });
    proc.stderr.on("data", (d: Buffer) => this.events.push({ type: "stderr", text: d.toString() }));
  }

  static async start(server: ProsodyInstance, user: string, resource: string, storePath: string): Promise<Peer> {
    const proc = spawn(process.execPath, ["--import", "tsx", PEER, server.service, user, `${user}-pw`, resource, storePath], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    const p = new Peer(proc);
    live.add(p);
    await p.until((e) => e.some((x) => x.type === "ready"), "ready");
    return p;
  }

  command(c: Record<string, string>): void {
    this.proc.stdin.write(`${JSON.stringify(c)}\n`);
  }

  /** Sends a command and waits until the peer reports it done (or failed). */
  async run(c: Record<string, string>): Promise<void> {
    const before = this.events.filter((e) => (e.type === "done" || e.type === "error") && e.cmd === c.cmd).length;
    this.command(c);
    await this.until((e) => e.filter((x) => (x.type === "done" || x.type === "error") && x.cmd === c.cmd).length > before, `${c.cmd} done`);
    const last = this.events.filter((e) => e.type === "error" && e.cmd === c.cmd).at(-1);
    const n = this.events.filter((e) => (e.type === "done" || e.type === "error") && e.cmd === c.cmd);
    if (n.at(-1)?.type === "error") throw new Error(`${c.cmd}: ${String(last?.message)}`);
  }

  until(pred: (e: readonly PeerEvent[]) => boolean, what: string, ms = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (pred(this.events)) {
          clearTimeout(t);
          this.waiters.delete(check);
          resolve();
        }
      };
      const t = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}: ${JSON.stringify(this.events.slice(-15))}`));
      }, ms);
      this.waiters.add(check);
      check();
    });
  }

  bodies(): string[] {
    return this.events.flatMap((e) => (e.type === "message" && typeof e.body === "string" ? [e.body] : []));
  }

  /** SIGKILL: no termination stanza, no store flush beyond what SQLite already committed. */
  async kill(): Promise<void> {
    const exited = new Promise<void>((r) => this.proc.once("exit", () => r()));
    this.proc.kill("SIGKILL");
    await exited;
    live.delete(this);
  }
}

const live = new Set<Peer>();
let server: ProsodyInstance;
let dir: string;

before(async () => {
  server = await startProsody({ users: [["alice", "alice-pw"], ["bob", "bob-pw"]] });
  dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-kill9-"));
});

after(async () => {
  for (const p of live) p.proc.kill("SIGKILL");
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const seq = (tag: string, from: number, to: number): string[] => Array.from({ length: to - from }, (_, i) => `${tag}-${from + i}`);

async function sendAll(from: Peer, to: string, bodies: readonly string[]): Promise<void> {
  for (const body of bodies) await from.run({ cmd: "send", to, body });
}

/** Every file under `root`, for the plaintext scan of Prosody's storage. */
function filesUnder(root: string): string[] {
  return readdirSync(root).flatMap((n) => {
    const p = join(root, n);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

function assertNoClearBodies(...peers: Peer[]): void {
  // The only clear body allowed is the XEP-0200 fallback text for clients without ESessions.
  const leaked = (e: PeerEvent): boolean => e.type === "clear" && /kill9-/.test(String(e.body));
  for (const p of peers) assert.deepEqual(p.events.filter(leaked), [], "a body arrived outside encryption");
  for (const f of filesUnder(server.dir)) assert.ok(!/kill9-[a-z]+-\d+/.test(readFileSync(f, "latin1")), `plaintext in Prosody storage ${f}`);
}

test("SIGKILL the receiver mid-session and right after a re-key: renegotiated, nothing received is lost, nothing twice", { timeout: 120_000 }, async () => {
  const aliceStore = join(dir, "a1.sqlite");
  const bobStore = join(dir, "b1.sqlite");
  const alice = await Peer.start(server, "alice", "desk", aliceStore);
  let bob = await Peer.start(server, "bob", "phone", bobStore);
  await alice.run({ cmd: "start", to: BOB });
  await sendAll(alice, BOB, seq("kill9-a", 0, 5));
  await bob.until((e) => e.filter((x) => x.type === "message").length === 5, "first five");
  const acknowledged = bob.bodies();

  // Mid-session: Bob dies; Alice keeps sending (Prosody stores them for Bob).
  await bob.kill();
  await sendAll(alice, BOB, seq("kill9-a", 5, 8));
  bob = await Peer.start(server, "bob", "phone", bobStore);
  await bob.until((e) => e.filter((x) => x.type === "message").length === 3, "the three sent while Bob was dead");
  await sendAll(alice, BOB, seq("kill9-a", 8, 10));
  await bob.until((e) => e.filter((x) => x.type === "message").length === 5, "the next messages");
  const afterFirstCrash = [...acknowledged, ...bob.bodies()];
  assert.deepEqual(afterFirstCrash, seq("kill9-a", 0, 10), "each message exactly once, in order");
  assert.ok(alice.events.some((e) => e.type === "recovery" && e.state === "renegotiated"), "Alice renegotiated on her own");

  // Mid-re-key: Alice starts a re-key and Bob dies before he answers anything more.
  await alice.run({ cmd: "rekey", to: BOB });
  await bob.kill();
  await sendAll(alice, BOB, seq("kill9-a", 10, 12));
  bob = await Peer.start(server, "bob", "phone", bobStore);
  await bob.until((e) => e.filter((x) => x.type === "message").length === 2, "the two sent across the re-key crash");
  await sendAll(alice, BOB, seq("kill9-a", 12, 13));
  await bob.until((e) => e.filter((x) => x.type === "message").length === 3, "the next message");
  assert.deepEqual(bob.bodies(), seq("kill9-a", 10, 13));
  assert.ok(
    bob.events.some((e) => e.type === "established" && e.retained === true),
    "the retained secret from before the crash was found in the SQLite store",
  );
  assertNoClearBodies(alice, bob);
  await alice.run({ cmd: "close" }).catch(() => undefined);
  await bob.run({ cmd: "close" }).catch(() => undefined);
});

test("SIGKILL the sender mid-session and mid-re-key: her next messages reach Bob in a new session, nothing twice", { timeout: 120_000 }, async () => {
  const aliceStore = join(dir, "a2.sqlite");
  const bobStore = join(dir, "b2.sqlite");
  let alice = await Peer.start(server, "alice", "desk", aliceStore);
  const bob = await Peer.start(server, "bob", "phone", bobStore);
  await alice.run({ cmd: "start", to: BOB });
  await sendAll(alice, BOB, seq("kill9-b", 0, 4));
  await bob.until((e) => e.filter((x) => x.type === "message").length === 4, "first four");

  // Mid-session.
  await alice.kill();
  alice = await Peer.start(server, "alice", "desk", aliceStore);
  await sendAll(alice, BOB, seq("kill9-b", 4, 7));
  await bob.until((e) => e.filter((x) => x.type === "message").length === 7, "messages after Alice's restart");

  // Mid-re-key: Alice's re-key goes out, she dies before sending anything under the new keys.
  await alice.run({ cmd: "rekey", to: BOB });
  await alice.kill();
  alice = await Peer.start(server, "alice", "desk", aliceStore);
  await sendAll(alice, BOB, seq("kill9-b", 7, 10));
  await bob.until((e) => e.filter((x) => x.type === "message").length === 10, "messages after the re-key crash");
  assert.deepEqual(bob.bodies(), seq("kill9-b", 0, 10), "each message exactly once, in order");
  assert.ok(bob.events.filter((e) => e.type === "established").length >= 3, "a new session after each restart");
  assertNoClearBodies(alice, bob);
  await alice.run({ cmd: "close" }).catch(() => undefined);
  await bob.run({ cmd: "close" }).catch(() => undefined);
});
