/**
 * `xmpp-e2e trust`: what we know about our peers' keys — list, verify (a fingerprint
 * compared out of band), petname, revoke.
 *
 * Spec: XEP-0116 v0.16 section 7.3 ("Bob could communicate the full SHA-256 fingerprint
 * of his public key to Alice via secure out-of-band communication": `verify` requires the
 * full fingerprint, never a prefix), section 7.4 (JIDs associated with each key; petnames
 * shown "more prominently than ... the JID": `list` prints the petname first), XEP-0189
 * v0.14 section 4 (revocation). See docs/identity-and-trust.md.
 */
import { parseArgs } from "node:util";
import { fromBase64, fromHex, toBase64 } from "../core/bytes.js";
import type { Jid } from "../core/types.js";
import { nodeCrypto } from "../crypto/node.js";
import { displayFingerprint } from "../identity/keyvalue.js";
import { openSqliteStore } from "../store/sqlite.js";
import type { PeerKey } from "../store/trust-types.js";
import { TrustManager } from "../trust/index.js";
import { defaultIo, jidOpt, reportError, UsageError, type CliIo } from "./keys.js";

const USAGE = `usage: xmpp-e2e trust <command> --jid YOURJID [--store FILE] [options]

commands:
  list                       every peer key: petname, fingerprint, JIDs, verification, revocation
  verify PEER FINGERPRINT    you compared PEER's full fingerprint out of band (Base64, or hex with or without spaces)
  petname FINGERPRINT NAME   name a key (--clear to remove the name)
  revoke FINGERPRINT         stop trusting a key

  FINGERPRINT for petname/revoke may be a unique prefix of the Base64 form (8+ characters).
  --store FILE               the identity and trust store (default ./xmpp-e2e.db)
`;

/** A fingerprint as typed by a person: Base64, or hex with optional spaces/colons. */
export function parseFingerprintInput(s: string): string {
  const t = s.replace(/[\s:]/g, "");
  if (/^[0-9A-Fa-f]{64}$/.test(t)) return toBase64(fromHex(t));
  if (fromBase64(t)?.length === 32) return t;
  throw new UsageError("a fingerprint is 32 bytes: 44 Base64 characters or 64 hex digits");
}

function state(k: PeerKey): string {
  const parts: string[] = [];
  if (k.fingerprintCheckedAt !== undefined) parts.push(`fingerprint checked ${new Date(k.fingerprintCheckedAt).toISOString()}`);
  if (k.sasConfirmedAt !== undefined) parts.push(`SAS confirmed ${new Date(k.sasConfirmedAt).toISOString()}`);
  if (parts.length === 0) parts.push("NOT VERIFIED");
  return parts.join(", ");
}

async function resolve(keys: readonly PeerKey[], ref: string): Promise<PeerKey> {
  let exact: string | undefined;
  try {
    exact = parseFingerprintInput(ref);
  } catch {
    exact = undefined;
  }
  const hit = keys.find((k) => k.fingerprint === (exact ?? ref));
  if (hit !== undefined) return hit;
  if (ref.length >= 8) {
    const m = keys.filter((k) => k.fingerprint.startsWith(ref));
    if (m.length === 1 && m[0] !== undefined) return m[0];
    if (m.length > 1) throw new UsageError(`${ref} matches ${m.length} keys; give more of the fingerprint`);
  }
  throw new UsageError(`no peer key ${ref}`);
}

export async function run(argv: string[], io: CliIo = defaultIo): Promise<number> {
  try {
    const [cmd, ...rest] = argv;
    if (cmd === undefined || cmd === "help" || cmd === "--help") {
      io.out(USAGE);
      return cmd === undefined ? 2 : 0;
    }
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: { jid: { type: "string" }, store: { type: "string", default: "xmpp-e2e.db" }, clear: { type: "boolean", default: false } },
    });
    const account: Jid = jidOpt(values.jid);
    const store = openSqliteStore(values.store ?? "xmpp-e2e.db");
    try {
      const tm = new TrustManager({ store, crypto: nodeCrypto });
      const now = io.now();
      switch (cmd) {
        case "list": {
          const keys = await store.listPeerKeys(account);
          if (keys.length === 0) io.out("no peer keys yet");
          for (const k of keys) {
            io.out(`${k.petname === undefined ? "(no petname)" : `"${k.petname}"`}  ${k.alg}${k.revokedAt === undefined ? "" : `  REVOKED ${new Date(k.revokedAt).toISOString()}`}`);
            io.out(`  fingerprint: ${displayFingerprint(k.fingerprint)}`);
            io.out(`               (Base64 ${k.fingerprint})`);
            io.out(`  verified:    ${state(k)}`);
            for (const l of k.jids) io.out(`  jid:         ${l.jid}${l.accepted ? "" : "  (not accepted: alert)"}  last seen ${new Date(l.lastSeen).toISOString()}`);
          }
          for (const p of await tm.list(account))
            io.out(`peer ${p.jid}: SAS ${p.sasConfirmed ? "confirmed" : "never confirmed"}; retained-secret chain ${p.chainVerified ? "verified" : "never verified"}`);
          return 0;
        }
        case "verify": {
          const [peer, fp] = positionals;
          if (peer === undefined || fp === undefined) throw new UsageError("verify needs PEER and FINGERPRINT");
          const full = parseFingerprintInput(fp);
          const peerJid = jidOpt(peer);
          const k = await store.getPeerKey(account, full);
          if (k === undefined) {
            io.err(`MISMATCH: no key with fingerprint ${displayFingerprint(full)} was ever presented to ${account}`);
            const theirs = await store.keysForJid(account, peerJid);
            for (const t of theirs) io.err(`  ${peerJid} presented ${displayFingerprint(t.fingerprint)}`);
            return 1;
          }
          await tm.verifyFingerprint(account, peerJid, full, now);
          io.out(`verified: ${peerJid} uses ${displayFingerprint(full)}${k.petname === undefined ? "" : ` ("${k.petname}")`}`);
          return 0;
        }
        case "petname": {
          const [ref, name] = positionals;
          if (ref === undefined || (name === undefined && !values.clear)) throw new UsageError("petname needs FINGERPRINT and NAME (or --clear)");
          const k = await resolve(await store.listPeerKeys(account), ref);
          try {
            await tm.setPetname(account, k.fingerprint, values.clear ? undefined : name);
          } catch (e) {
            if (e instanceof RangeError) throw new UsageError("a petname is 1-256 printable characters");
            throw e;
          }
          io.out(values.clear ? `petname of ${k.fingerprint} cleared` : `${k.fingerprint} is now "${name ?? ""}"`);
          return 0;
        }
        case "revoke": {
          const [ref] = positionals;
          if (ref === undefined) throw new UsageError("revoke needs FINGERPRINT");
          const k = await resolve(await store.listPeerKeys(account), ref);
          await tm.revoke(account, k.fingerprint, now);
          io.out(`revoked ${displayFingerprint(k.fingerprint)}; sessions authenticated by it will raise an alert`);
          return 0;
        }
        default:
          throw new UsageError(`unknown trust command: ${cmd}`);
      }
    } finally {
      await store.close();
    }
  } catch (e) {
    return reportError(e, io, USAGE);
  }
}
