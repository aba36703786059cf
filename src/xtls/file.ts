/**
 * Encrypted file transfer over an XTLS tunnel: a Jingle File Transfer offer (XEP-0234)
 * whose transport is secured by XTLS, with progress reporting and an integrity check.
 *
 * Spec: XEP-0234 v0.19.1 section 6 (sending a file: the initiator offers <file/> with
 * name, size and hash; the bytes flow over the negotiated transport; XEP-0300 hashes in
 * 'urn:xmpp:hashes:2', Base64), section 8 (the receiver checks the hash); the transport is
 * opened only after the TLS handshake (draft-meyer-xmpp-e2e-encryption-02 section 3), so
 * file bytes never travel unencrypted unless the user allowed plain (initiator rule 1).
 * The transfer ends with TLS close_notify, IBB <close/> and session-terminate <success/>.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, statSync, rmSync } from "node:fs";
import { basename } from "node:path";
import { pipeline } from "node:stream/promises";
import { Transform } from "node:stream";
import type { FullJid } from "../core/types.js";
import type { FileOffer } from "../jingle/file.js";
import type { XtlsClient, XtlsTunnel } from "./client.js";
import { XtlsError } from "./errors.js";

export type Progress = (done: number, total: number) => void;

export interface FileResult {
  readonly bytes: number;
  /** Base64 SHA-256 of the content (the XEP-0300 value). */
  readonly sha256: string;
  readonly tunnel: XtlsTunnel;
}

function counter(total: number, onProgress: Progress | undefined, hash: ReturnType<typeof createHash>): Transform & { count: number } {
  const t = new Transform({
    transform(chunk: Buffer, _e, cb) {
      t.count += chunk.length;
      hash.update(chunk);
      onProgress?.(t.count, total);
      cb(null, chunk);
    },
  }) as Transform & { count: number };
  t.count = 0;
  return t;
}

/** Hashes a file (SHA-256, Base64). */
export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("base64");
}

/** Offers `path` to `peer` over XTLS and sends it; resolves once the session ended cleanly. */
export async function sendFile(
  client: XtlsClient,
  peer: FullJid,
  path: string,
  opts: { onProgress?: Progress; allowPlain?: boolean; mediaType?: string; transport?: "ibb" | "s5b" } = {},
): Promise<FileResult> {
  const size = statSync(path).size;
  const sha256 = await sha256File(path);
  const file: FileOffer = {
    name: basename(path),
    size,
    ...(opts.mediaType === undefined ? {} : { mediaType: opts.mediaType }),
    hashes: [{ algo: "sha-256", value: sha256 }],
  };
  const tunnel = await client.connect(peer, {
    application: { kind: "file", file },
    ...(opts.allowPlain === undefined ? {} : { allowPlain: opts.allowPlain }),
    ...(opts.transport === undefined ? {} : { transport: opts.transport }),
  });
  const hash = createHash("sha256");
  const count = counter(size, opts.onProgress, hash);
  const socket = tunnel.socket;
  await pipeline(createReadStream(path), count, async function* (source: AsyncIterable<Buffer>) {
    for await (const chunk of source) {
      if (!socket.write(chunk)) await new Promise<void>((r) => socket.once("drain", () => r()));
      yield* [];
    }
  });
  await tunnel.close();
  const end = await tunnel.ended;
  if (end.reason?.condition !== "success") throw end.error ?? new XtlsError("terminated", "the transfer did not end cleanly", end.reason?.condition ?? "general-error");
  return { bytes: count.count, sha256, tunnel };
}

/**
 * Receives the file of an accepted tunnel into `outPath`; checks size and SHA-256 (when
 * offered) and deletes the partial file on any mismatch or failure.
 */
export async function receiveFile(tunnel: XtlsTunnel, outPath: string, opts: { onProgress?: Progress } = {}): Promise<FileResult> {
  const d = tunnel.description;
  if (d.kind !== "file") throw new XtlsError("unsupported", "this tunnel does not carry a file");
  const hash = createHash("sha256");
  const count = counter(d.file.size, opts.onProgress, hash);
  try {
    await pipeline(tunnel.socket, count, createWriteStream(outPath, { mode: 0o600 }));
  } catch (e) {
    rmSync(outPath, { force: true });
    throw new XtlsError("transport-failed", "the transfer broke off", undefined, { cause: e });
  }
  const sha256 = hash.digest("base64");
  const offered = d.file.hashes.find((h) => h.algo === "sha-256")?.value;
  if (count.count !== d.file.size || (offered !== undefined && offered !== sha256)) {
    rmSync(outPath, { force: true });
    throw new XtlsError("transport-failed", "size or SHA-256 differs from the offer");
  }
  return { bytes: count.count, sha256, tunnel };
}
