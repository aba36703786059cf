/**
 * `xmpp-e2e object ...`: RFC 3923 object encryption on files and through a server.
 *
 *   object keygen  --jid JID --out PREFIX [--key ec-p256|rsa-2048]    PREFIX.crt + PREFIX.key (0600)
 *   object sign    --cert C --key K --in FILE [--out FILE]            multipart/signed
 *   object encrypt --to CERT [--to CERT...] --in FILE [--cipher C] [--cert C --key K] [--out FILE]
 *                                                                     (signs first when --cert/--key are given)
 *   object decrypt --cert C --key K --in FILE [--ca CERT...] [--out FILE]
 *   object verify  --in FILE [--ca CERT...] [--out FILE]
 *   object chat    --jid JID --to JID --cert C --key K --peer-cert CERT [--service URL]
 *                  (password from --password or XMPP_E2E_PASSWORD; lines from stdin)
 *
 * Spec: draft-ietf-xmpp-e2e-03 sections 2-4 (S/MIME signing then encryption of CPIM
 * objects), RFC 5751 (the S/MIME files read and written, the same format as `openssl cms`
 * in S/MIME mode), RFC 3923 section 6.3 (certificates bound to the XMPP address). Exit
 * codes: 0 success, 1 verification or decryption failure, 2 usage error.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { connectXmpp } from "../adapters/xmpp-client.js";
import { fromUtf8 } from "../core/bytes.js";
import { jidParts, parseJid } from "../core/types.js";
import { systemClock, systemRandom } from "../crypto/node.js";
import { generateIdentity, importCertificates, importPrivateKey, type KeyType as CertKeyType, toPem, validateChain, xmppAddrs } from "../smime/certs.js";
import { MemoryCertificateStore } from "../smime/certstore.js";
import { CONTENT_CIPHERS, type ContentCipher, type SmimeIdentity } from "../smime/cms.js";
import { isSmimeError } from "../smime/errors.js";
import { protectEntity, unprotectEntity } from "../smime/protect.js";
import { ObjectClient } from "../smime/session.js";
import { MemoryReplayCache } from "../store/replay.js";

const USAGE = `usage: xmpp-e2e object <keygen|sign|encrypt|decrypt|verify|chat> [options]
  keygen  --jid JID --out PREFIX [--key ec-p256|rsa-2048]
  sign    --cert FILE --key FILE --in FILE [--out FILE]
  encrypt --to CERT [--to CERT ...] --in FILE [--cipher aes-128-cbc|aes-256-cbc|aes-128-gcm|aes-256-gcm]
          [--cert FILE --key FILE] [--out FILE]
  decrypt --cert FILE --key FILE --in FILE [--ca CERT ...] [--out FILE]
  verify  --in FILE [--ca CERT ...] [--out FILE]
  chat    --jid JID --to JID --cert FILE --key FILE --peer-cert FILE [--service URL] [--password P]
`;

const env = { random: systemRandom, clock: systemClock };

class UsageError extends Error {}

function need(v: string | undefined, name: string): string {
  if (v === undefined || v.length === 0) throw new UsageError(`--${name} is required`);
  return v;
}

function identity(cert: string | undefined, key: string | undefined): SmimeIdentity {
  const [c, ...chain] = importCertificates(readFileSync(need(cert, "cert")));
  if (c === undefined) throw new UsageError("no certificate in --cert");
  return { certificate: c, privateKey: importPrivateKey(readFileSync(need(key, "key"))), ...(chain.length > 0 ? { chain } : {}) };
}

function output(text: string, out: string | undefined): void {
  if (out === undefined) process.stdout.write(text);
  else writeFileSync(out, text);
}

async function report(smime: string, identities: SmimeIdentity[], cas: string[], out: string | undefined): Promise<number> {
  const r = await unprotectEntity(smime, { identities });
  if (r.signature !== undefined) {
    const addrs = xmppAddrs(r.signature.signer);
    if (cas.length > 0) {
      const anchors = cas.flatMap((f) => importCertificates(readFileSync(f)));
      await validateChain(r.signature.signer, { anchors, intermediates: r.signature.certificates, at: systemClock.now() });
      process.stderr.write(`signature verified; signer ${addrs.join(", ") || "(no id-on-xmppAddr)"} trusted\n`);
    } else process.stderr.write(`signature verified; signer ${addrs.join(", ") || "(no id-on-xmppAddr)"} (not checked against a CA: pass --ca)\n`);
  }
  if (r.encryption !== undefined) process.stderr.write(`decrypted (${r.encryption.cipher})\n`);
  output(r.entity, out);
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    const { values: v } = parseArgs({
      args: rest,
      options: {
        jid: { type: "string" },
        out: { type: "string" },
        key: { type: "string" },
        cert: { type: "string" },
        in: { type: "string" },
        to: { type: "string", multiple: true },
        cipher: { type: "string" },
        ca: { type: "string", multiple: true },
        "peer-cert": { type: "string" },
        service: { type: "string" },
        password: { type: "string" },
      },
    });
    switch (cmd) {
      case "keygen": {
        const kt = (v.key ?? "ec-p256") as CertKeyType;
        if (!["ec-p256", "ec-p384", "rsa-2048", "rsa-3072"].includes(kt)) throw new UsageError("--key must be ec-p256 or rsa-2048");
        const id = await generateIdentity({ jid: parseJid(need(v.jid, "jid")), keyType: kt }, env);
        const prefix = need(v.out, "out");
        writeFileSync(`${prefix}.crt`, toPem(id.certificate, "CERTIFICATE"));
        writeFileSync(`${prefix}.key`, toPem(id.privateKey, "PRIVATE KEY"), { mode: 0o600 });
        process.stderr.write(`wrote ${prefix}.crt and ${prefix}.key\n`);
        return 0;
      }
      case "sign": {
        const text = fromUtf8(readFileSync(need(v.in, "in")));
        output(await protectEntity(text, { signer: identity(v.cert, v.key) }, env), v.out);
        return 0;
      }
      case "encrypt": {
        const cipher = (v.cipher ?? "aes-128-cbc") as ContentCipher;
        if (!CONTENT_CIPHERS.includes(cipher)) throw new UsageError(`--cipher must be one of ${CONTENT_CIPHERS.join(", ")}`);
        const recipients = (v.to ?? []).flatMap((f) => importCertificates(readFileSync(f)));
        if (recipients.length === 0) throw new UsageError("--to CERT is required");
        const text = fromUtf8(readFileSync(need(v.in, "in")));
        const signer = v.cert !== undefined || v.key !== undefined ? identity(v.cert, v.key) : undefined;
        output(await protectEntity(text, { recipients, cipher, ...(signer ? { signer } : {}) }, env), v.out);
        return 0;
      }
      case "decrypt":
        return await report(fromUtf8(readFileSync(need(v.in, "in"))), [identity(v.cert, v.key)], v.ca ?? [], v.out);
      case "verify":
        return await report(fromUtf8(readFileSync(need(v.in, "in"))), [], v.ca ?? [], v.out);
      case "chat":
        return await chat(v);
      default:
        process.stderr.write(USAGE);
        return cmd === undefined || cmd === "help" ? 0 : 2;
    }
  } catch (e) {
    if (e instanceof UsageError || (e instanceof TypeError && "code" in e)) {
      process.stderr.write(`${e.message}\n${USAGE}`);
      return 2;
    }
    if (isSmimeError(e)) {
      process.stderr.write(`${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

async function chat(v: Record<string, string | string[] | boolean | undefined>): Promise<number> {
  const str = (k: string) => (typeof v[k] === "string" ? (v[k] as string) : undefined);
  const jid = parseJid(need(str("jid"), "jid"));
  const to = parseJid(need(str("to"), "to"));
  const password = str("password") ?? process.env.XMPP_E2E_PASSWORD;
  if (password === undefined) throw new UsageError("--password or XMPP_E2E_PASSWORD is required");
  const me = identity(str("cert"), str("key"));
  const certificates = new MemoryCertificateStore();
  for (const c of importCertificates(readFileSync(need(str("peer-cert"), "peer-cert")))) await certificates.add(c, { anchor: true });
  const { local, domain, resource } = jidParts(jid);
  const conn = await connectXmpp({
    service: str("service") ?? `xmpp://${domain}:5222`,
    domain,
    username: need(local, "jid local part"),
    password,
    ...(resource === undefined ? {} : { resource }),
  });
  const client = new ObjectClient({ connection: conn, identity: me, certificates, replay: new MemoryReplayCache(), clock: systemClock, random: systemRandom });
  client.on((e) => {
    if (e.type === "message") process.stdout.write(`${e.from}${e.signedBy ? " (signed)" : ""}${e.encrypted ? " (encrypted)" : ""}: ${e.stanza.getChildText("body") ?? ""}\n`);
    else if (e.type === "rejected") process.stdout.write(`rejected from ${e.from ?? "?"}: ${e.error.condition}\n`);
    else if (e.type === "peer-error") process.stdout.write(`peer error: ${e.condition}${e.unsupported ? " (peer does not support object encryption)" : ""}\n`);
  });
  process.stdout.write(`connected as ${conn.jid}; lines you type go to ${to} signed and encrypted; /quit leaves\n`);
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line === "/quit") break;
    if (line.length === 0) continue;
    try {
      await client.sendMessage(to, line);
    } catch (e) {
      process.stdout.write(`not sent: ${isSmimeError(e) ? e.condition : String(e)}\n`);
    }
  }
  await client.idle();
  await client.close();
  await conn.close();
  return 0;
}
