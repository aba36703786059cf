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

const CHUNK = 64 * 1024;
const BLOCK = 8192;

/** One op: write CHUNK on `a`, resolve when `b` has read CHUNK more bytes. */
function transfer(a: Duplex, b: Duplex): () => Promise<void> {
  const data = randomBytes(CHUNK);
  let pending = 0;
  let wake: (() => void) | undefined;
  b.on("data", (d: Buffer) => {
    pending -= d.length;
    if (pending <= 0 && wake !== undefined) {
      const w = wake;
      wake = undefined;
      w();
    }
  });
  return () =>
    new Promise<void>((resolve) => {
      pending += CHUNK;
      wake = resolve;
      a.write(data);
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
    const rawOp = transfer(rawOut, rawSink);
    const tlsOp = transfer(ta.socket, tb.socket);
    const opts = { unit: "MB/s" as const, bytesPerOp: CHUNK, minTimeMs: 400, samples: 5 };
    const rawM = await measure("IBB via Prosody, no TLS (8 KiB blocks)", rawOp, opts);
    const tlsM = await measure(`XTLS tunnel over IBB via Prosody (x509, ${ta.protocol ?? "TLS"})`, tlsOp, opts);
    rawOut.destroy();
    await ta.close();

    // SOCKS5: plain TCP through a SOCKS5 handshake vs XTLS over the nominated connection.
    const big = { unit: "MB/s" as const, bytesPerOp: CHUNK, minTimeMs: 400, samples: 5 };
    const listener = await Socks5Listener.listen();
    const addr = dstAddr("bench", a.jid, b.jid);
    const acc = listener.expect(addr);
    const s5out = await socks5Connect(listener.address.host, listener.address.port, addr);
    const s5in = await acc;
    s5in.resume();
    const s5RawM = await measure("SOCKS5 TCP on loopback, no TLS", transfer(s5out, s5in), big);
    s5out.destroy();
    s5in.destroy();
    listener.close();
    const [sa, sb] = await open("s5b");
    const s5TlsM = await measure(`XTLS tunnel over SOCKS5 (XEP-0260 direct, x509, ${sa.protocol ?? "TLS"})`, transfer(sa.socket, sb.socket), big);
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
