/**
 * XTLS benchmarks through a real Prosody on loopback (draft-meyer-xmpp-e2e-encryption-02
 * over XEP-0047/XEP-0261 in-band bytestreams):
 * - tunnel throughput: application bytes through an x509 XTLS tunnel over IBB, as a ratio
 *   to the same IBB stream without TLS (same block-size, same window, same run);
 * - the same over SOCKS5 bytestreams (XEP-0260 direct candidate on loopback, negotiated
 *   through Prosody), as a ratio to a plain SOCKS5 TCP connection without TLS;
 * - handshake: the time from session-initiate to an open tunnel (Jingle initiate/accept,
 *   security-info, IBB open, TLS 1.3 or 1.2 handshake), against one iq round trip to the
 *   peer through the same server; the ratio is 1 / (handshake time in round trips).
 *
 * Figures are rates (MB/s, setups/s, round trips/s), see bench/lib.ts.
 */
import { randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import { compare, measure, median, type Figure, type Measurement } from "./lib.js";
import { startProsody } from "../test/harness/prosody.js";
import { connectXmpp } from "../src/adapters/xmpp-client.js";
import { attrOf, type StanzaConnection } from "../src/adapters/connection.js";
import { el, NS } from "../src/xml/index.js";
import { IbbEndpoint, type IbbStream } from "../src/ibb/index.js";
import { MemoryTrustStore, XtlsClient, generateIdentity, type XtlsTunnel } from "../src/xtls/index.js";
import { Socks5Listener, dstAddr, socks5Connect } from "../src/socks5/index.js";

/** Application write size: what sendFile's file stream hands the socket (fs read size). */
const CHUNK = 64 * 1024;
const BLOCK = 8192;

/**
 * One op: stream `bytes` from `a` to `b` in CHUNK writes, honouring backpressure (write
 * until it returns false, then wait for 'drain'), as a file transfer does; resolves when
 * `b` has read them all. The baseline and the TLS run use this same function, so both
 * move the same bytes the same way (same writes, same flowing reader, same socket
 * options); only the TLS layer differs.
 */
function streamOp(a: Duplex, b: Duplex, bytes: number): () => Promise<void> {
  const data = randomBytes(CHUNK);
  let target = 0;
  let got = 0;
  let wake: (() => void) | undefined;
  b.on("data", (d: Buffer) => {
    got += d.length;
    if (got >= target && wake !== undefined) {
      const w = wake;
      wake = undefined;
      w();
    }
  });
  // A SOCKS5 socket is handed over paused (src/socks5/node.ts); a 'data' listener alone
  // does not resume an explicitly paused stream.
  b.resume();
  return async () => {
    target += bytes;
    const arrived = new Promise<void>((r) => (got >= target ? r() : (wake = r)));
    for (let sent = 0; sent < bytes; sent += CHUNK) {
      if (!a.write(sent + CHUNK <= bytes ? data : data.subarray(0, bytes - sent))) await new Promise<void>((r) => a.once("drain", () => r()));
    }
    await arrived;
  };
}

/**
 * Measures several ops in interleaved rounds (A B, then B A, ...), so that a shared,
 * noisy machine slows baseline and subject alike (the finer the interleaving, the better
 * load bursts cancel: with `minTimeMs` 0 each round times a single op of each). Rates in
 * MB/s; median/min/max over the rounds.
 */
async function interleaved(ops: ReadonlyArray<{ name: string; op: () => Promise<void>; bytes: number }>, rounds: number, minTimeMs: number): Promise<Measurement[]> {
  for (const o of ops) await o.op(); // warmup (JIT, TCP windows, TLS buffers)
  const rates = ops.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    const order = ops.map((_, i) => i);
    if (r % 2 === 1) order.reverse();
    for (const i of order) {
      const o = ops[i] as (typeof ops)[number];
      const t0 = process.hrtime.bigint();
      let n = 0;
      let dt = 0;
      do {
        await o.op();
        n++;
        dt = Number(process.hrtime.bigint() - t0) / 1e6;
      } while (dt < minTimeMs);
      (rates[i] as number[]).push((n * o.bytes) / (dt / 1000) / 1e6);
    }
  }
  return ops.map((o, i) => {
    const r = rates[i] as number[];
    return { name: o.name, unit: "MB/s" as const, median: median(r), min: Math.min(...r), max: Math.max(...r) };
  });
}

function iqPing(from: StanzaConnection, to: StanzaConnection): () => Promise<void> {
  let n = 0;
  to.onStanza((s) => {
    if (s.name === "iq" && attrOf(s, "type") === "get" && String(attrOf(s, "id")).startsWith("bench-ping"))
      void to.send(el("iq", { type: "result", id: attrOf(s, "id"), to: attrOf(s, "from") }));
  });
  const waiting = new Map<string, () => void>();
  from.onStanza((s) => {
    const id = attrOf(s, "id");
    if (s.name === "iq" && id !== undefined) waiting.get(id)?.();
  });
  return () =>
    new Promise<void>((resolve) => {
      const id = `bench-ping-${n++}`;
      waiting.set(id, () => {
        waiting.delete(id);
        resolve();
      });
      void from.send(el("iq", { type: "get", id, to: to.jid }, el("ping", { xmlns: "urn:xmpp:ping" })));
    });
}

function rates(name: string, unit: string, seconds: number[]): Measurement {
  const r = seconds.map((s) => 1 / s);
  return { name, unit: unit as Measurement["unit"], median: median(r), min: Math.min(...r), max: Math.max(...r) };
}

export async function figures(): Promise<Figure[]> {
  const prosody = await startProsody({ users: [["benchr", "pw1"], ["benchj", "pw2"]] });
  const conns: StanzaConnection[] = [];
  const clients: XtlsClient[] = [];
  try {
    const a = await connectXmpp({ service: prosody.service, domain: "localhost", username: "benchr", password: "pw1", resource: "a" });
    const b = await connectXmpp({ service: prosody.service, domain: "localhost", username: "benchj", password: "pw2", resource: "b" });
    conns.push(a, b);
    const [idA, idB] = await Promise.all([generateIdentity("benchr@localhost"), generateIdentity("benchj@localhost")]);
    const ibbA = new IbbEndpoint(a, { maxBlockSize: BLOCK });
    const ibbB = new IbbEndpoint(b, { maxBlockSize: BLOCK });
    const ca = new XtlsClient({ connection: a, identity: idA, trust: new MemoryTrustStore(), leapOfFaith: () => true, blockSize: BLOCK, ibb: ibbA });
    const cb = new XtlsClient({ connection: b, identity: idB, trust: new MemoryTrustStore(), leapOfFaith: () => true, acceptSession: () => true, blockSize: BLOCK, ibb: ibbB });
    clients.push(ca, cb);
    let nextTunnel: ((t: XtlsTunnel) => void) | undefined;
    cb.on((e) => {
      if (e.type === "tunnel") nextTunnel?.(e.tunnel);
    });
    const open = async (transport: "ibb" | "s5b" = "ibb"): Promise<[XtlsTunnel, XtlsTunnel]> => {
      const inc = new Promise<XtlsTunnel>((r) => (nextTunnel = r));
      const t = await ca.connect(b.jid, { transport });
      return [t, await inc];
    };

    // Throughput: raw IBB vs XTLS over IBB (interleaved so both see the same server load).
    ibbB.onOffer(() => true);
    const rawIn = new Promise<IbbStream>((r) => ibbB.onStream(r));
    const rawOut = await ibbA.open(b.jid, { blockSize: BLOCK });
    const rawSink = await rawIn;
    const [ta, tb] = await open();
    const IBB_OP = 256 * 1024;
    const [rawM, tlsM] = (await interleaved(
      [
        { name: "IBB via Prosody, no TLS (8 KiB blocks)", op: streamOp(rawOut, rawSink, IBB_OP), bytes: IBB_OP },
        { name: `XTLS tunnel over IBB via Prosody (x509, ${ta.protocol ?? "TLS"})`, op: streamOp(ta.socket, tb.socket, IBB_OP), bytes: IBB_OP },
      ],
      9,
      0,
    )) as [Measurement, Measurement];
    rawOut.destroy();
    await ta.close();

    // SOCKS5: a plain SOCKS5 TCP connection (same listener, handshake and socket options
    // as a direct candidate) vs XTLS over the Jingle-nominated connection, interleaved.
    // 64 MiB per op: well above what loopback socket buffers absorb (several MiB), so the
    // baseline is not a memcpy into the kernel but the same steady state the TLS run sees.
    const listener = await Socks5Listener.listen();
    const addr = dstAddr("bench", a.jid, b.jid);
    const acc = listener.expect(addr);
    const s5out = await socks5Connect(listener.address.host, listener.address.port, addr);
    const s5in = await acc;
    listener.close();
    const [sa, sb] = await open("s5b");
    const S5_OP = 64 << 20;
    const [s5RawM, s5TlsM] = (await interleaved(
      [
        { name: "SOCKS5 TCP on loopback, no TLS", op: streamOp(s5out, s5in, S5_OP), bytes: S5_OP },
        { name: `XTLS tunnel over SOCKS5 (XEP-0260 direct, x509, ${sa.protocol ?? "TLS"})`, op: streamOp(sa.socket, sb.socket, S5_OP), bytes: S5_OP },
      ],
      7,
      0,
    )) as [Measurement, Measurement];
    s5out.destroy();
    s5in.destroy();
    await sa.close();

    // Handshake in round trips.
    const ping = iqPing(a, b);
    const pingM = await measure("iq round trip to the peer via Prosody", ping, { unit: "ops/s", minTimeMs: 200, samples: 5 });
    const secs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = process.hrtime.bigint();
      const [t] = await open();
      secs.push(Number(process.hrtime.bigint() - t0) / 1e9);
      await t.close();
    }
    const hsM = rates("XTLS setup (Jingle + IBB open + TLS 1.3 x509), 1/round trips", "ops/s", secs);
    return [compare(tlsM, rawM), compare(s5TlsM, s5RawM), compare(hsM, pingM)];
  } finally {
    for (const c of clients) c.detach();
    await Promise.all(conns.map((c) => c.close().catch(() => undefined)));
    await prosody.stop();
  }
}

/** Allows `tsx bench/xtls.ts` on its own. */
if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split("/").pop() ?? "")) {
  void figures().then((f) => {
    for (const x of f) console.log(`${x.name}: ${x.median.toFixed(2)} ${x.unit} = ${(x.ratio * 100).toFixed(1)}% of ${x.baseline} (${x.baselineMedian.toFixed(2)} ${x.unit})`);
    void NS;
  });
}
