/**
 * Node sockets for XEP-0065 direct candidates: a loopback/LAN listener that answers the
 * SOCKS5 handshake for the DST.ADDR values it expects, and a client connect.
 *
 * Spec: XEP-0065 v1.8.2 sections 5.3.2 and 6.3.2 (the handshake, ./negotiate.ts), XEP-0260
 * v1.0.3 section 2.3 (each party may offer direct candidates; the peer connects with
 * DST.ADDR = SHA1(SID + offering party's JID + other party's JID) per the note there).
 * Bytes that arrive right after the handshake are pushed back onto the socket, and the
 * socket is handed over paused: the consumer resumes it (or wraps it in TLS).
 */
import { createServer, connect as netConnect, type Server, type Socket } from "node:net";
import { Socks5ClientNegotiator, Socks5ServerNegotiator } from "./negotiate.js";

export class Socks5Error extends Error {
  override readonly name = "Socks5Error";
  constructor(readonly condition: "connect-failed" | "handshake-failed" | "timeout" | "closed", detail?: string) {
    super(detail === undefined ? condition : `${condition}: ${detail}`);
  }
}

function drive(sock: Socket, neg: Socks5ClientNegotiator | Socks5ServerNegotiator, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const flush = (): void => {
      for (const b of neg.out.splice(0)) sock.write(b);
    };
    const t = setTimeout(() => done(new Socks5Error("timeout", "SOCKS5 handshake")), timeoutMs);
    const done = (e: Error | undefined, addr?: string, rest?: Uint8Array): void => {
      clearTimeout(t);
      sock.removeListener("data", onData);
      sock.removeListener("error", onErr);
      sock.removeListener("close", onClose);
      if (e !== undefined) {
        sock.destroy();
        reject(e);
      } else {
        sock.pause();
        if (rest !== undefined && rest.length > 0) sock.unshift(Buffer.from(rest));
        resolve(addr ?? "");
      }
    };
    const onData = (d: Buffer): void => {
      const r = neg.feed(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      flush();
      if (r.kind === "failed") done(new Socks5Error("handshake-failed", r.reason));
      else if (r.kind === "done") done(undefined, r.addr, r.rest);
    };
    const onErr = (e: Error): void => done(new Socks5Error("connect-failed", e.message));
    const onClose = (): void => done(new Socks5Error("closed", "socket closed during the handshake"));
    sock.on("data", onData);
    sock.on("error", onErr);
    sock.on("close", onClose);
    flush();
  });
}

/** Connects to a candidate and completes CONNECT for `addr`; resolves with the socket. */
export function socks5Connect(host: string, port: number, addr: string, timeoutMs = 5000): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = netConnect({ host, port });
    sock.setNoDelay(true);
    const onErr = (e: Error): void => reject(new Socks5Error("connect-failed", e.message));
    sock.once("error", onErr);
    sock.once("connect", () => {
      sock.removeListener("error", onErr);
      drive(sock, new Socks5ClientNegotiator(addr), timeoutMs).then(() => resolve(sock), reject);
    });
  });
}

/** A direct-candidate listener: resolves `expect(addr)` with the socket that asked for it. */
export class Socks5Listener {
  private readonly server: Server;
  private readonly waiting = new Map<string, (s: Socket) => void>();

  private constructor(server: Server) {
    this.server = server;
  }

  static listen(host = "127.0.0.1", port = 0): Promise<Socks5Listener> {
    return new Promise((resolve, reject) => {
      const server = createServer();
      const l = new Socks5Listener(server);
      server.on("connection", (sock) => {
        sock.setNoDelay(true);
        drive(sock, new Socks5ServerNegotiator((a) => l.waiting.has(a)), 5000).then(
          (addr) => {
            const w = l.waiting.get(addr);
            l.waiting.delete(addr);
            if (w === undefined) sock.destroy();
            else w(sock);
          },
          () => undefined,
        );
      });
      server.once("error", reject);
      server.listen(port, host, () => resolve(l));
    });
  }

  get address(): { host: string; port: number } {
    const a = this.server.address();
    if (a === null || typeof a === "string") throw new Socks5Error("closed", "not listening");
    return { host: a.address, port: a.port };
  }

  /** Waits for a peer to CONNECT with `addr` (rejects after `timeoutMs`). */
  expect(addr: string, timeoutMs = 30_000): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting.delete(addr);
        reject(new Socks5Error("timeout", "nobody connected to our candidate"));
      }, timeoutMs);
      t.unref();
      this.waiting.set(addr, (s) => {
        clearTimeout(t);
        resolve(s);
      });
    });
  }

  close(): void {
    this.server.close();
    this.waiting.clear();
  }
}
