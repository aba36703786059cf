/**
 * SRP verifier stores: username -> (salt, verifier, group), as the TLS-SRP server needs
 * after reading the client's username from the SRP extension (RFC 5054 sections 2.4
 * and 2.5.1.3), with an in-memory implementation and a reader for the tpasswd /
 * tpasswd.conf files written by GnuTLS's `srptool` (and libsrp's `tconf`).
 *
 * File format (libsrp / GnuTLS lib/auth/srp_passwd.c): tpasswd lines are
 * `username:verifier:salt:index`, tpasswd.conf lines are `index:N:g`, every number in
 * the SRP base64 of srp-base64.ts.
 */
import type { Random } from "../core/types.js";
import { decodeSrpBase64, encodeSrpBase64 } from "./srp-base64.js";
import { DEFAULT_GROUP_BITS, knownGroup, srpGroup, type SrpGroup, type SrpGroupBits } from "./groups.js";
import { bigintToBytes, bytesToBigint, srpVerifier, srpX, type Sha1 } from "./srp.js";

export interface VerifierRecord {
  readonly salt: Uint8Array;
  /** v = g^x % N, big-endian. */
  readonly verifier: Uint8Array;
  readonly group: SrpGroup;
}

/** Looked up by the server with the username the client sent. Async: a store may be a database. */
export interface VerifierStore {
  lookup(username: string): Promise<VerifierRecord | undefined>;
}

export class MemoryVerifierStore implements VerifierStore {
  private readonly map = new Map<string, VerifierRecord>();
  set(username: string, record: VerifierRecord): this {
    this.map.set(username, record);
    return this;
  }
  delete(username: string): boolean {
    return this.map.delete(username);
  }
  get size(): number {
    return this.map.size;
  }
  lookupSync(username: string): VerifierRecord | undefined {
    return this.map.get(username);
  }
  lookup(username: string): Promise<VerifierRecord | undefined> {
    return Promise.resolve(this.map.get(username));
  }
}

/**
 * Creates a verifier for a password (RFC 5054 section 2.4) with a fresh 16-octet salt.
 * The password is used here and not kept.
 */
export function createVerifier(
  sha1: Sha1,
  random: Random,
  username: string,
  password: string,
  groupBits: SrpGroupBits = DEFAULT_GROUP_BITS,
): VerifierRecord {
  const group = srpGroup(groupBits);
  const salt = random.bytes(16);
  const v = srpVerifier(group, srpX(sha1, salt, username, password));
  return { salt, verifier: bigintToBytes(v), group };
}

export class TpasswdError extends Error {
  override readonly name = "TpasswdError";
  constructor(readonly line: number, reason: string) {
    super(`tpasswd: line ${line}: ${reason}`);
  }
}

function parseConf(conf: string): Map<string, SrpGroup> {
  const groups = new Map<string, SrpGroup>();
  conf.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const [index, n, g, ...rest] = line.split(":");
    if (index === undefined || n === undefined || g === undefined || rest.length > 0)
      throw new TpasswdError(i + 1, "expected index:N:g");
    const N = decodeSrpBase64(n);
    const G = decodeSrpBase64(g);
    if (!N || !G) throw new TpasswdError(i + 1, "bad SRP base64");
    const Nn = bytesToBigint(N);
    const gn = bytesToBigint(G);
    // Keep the Appendix A object when it is one, so clients' group checks and the
    // `bits` field are meaningful; an unknown group is kept as read (bits 0).
    groups.set(index, knownGroup(Nn, gn) ?? { bits: 0, N: Nn, g: gn });
  });
  return groups;
}

/** Parses the text of a tpasswd file and its tpasswd.conf. Throws {@link TpasswdError}. */
export function parseTpasswd(tpasswd: string, tpasswdConf: string): MemoryVerifierStore {
  const groups = parseConf(tpasswdConf);
  const store = new MemoryVerifierStore();
  tpasswd.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const parts = line.split(":");
    if (parts.length !== 4) throw new TpasswdError(i + 1, "expected username:verifier:salt:index");
    const [user, v, s, index] = parts as [string, string, string, string];
    const verifier = decodeSrpBase64(v);
    const salt = decodeSrpBase64(s);
    const group = groups.get(index);
    if (!verifier || !salt) throw new TpasswdError(i + 1, "bad SRP base64");
    if (!group) throw new TpasswdError(i + 1, `no group ${index} in tpasswd.conf`);
    store.set(user, { salt, verifier, group });
  });
  return store;
}

/** Formats records as tpasswd + tpasswd.conf text (readable by GnuTLS's gnutls-serv). */
export function formatTpasswd(entries: ReadonlyMap<string, VerifierRecord>): { tpasswd: string; tpasswdConf: string } {
  const index = new Map<SrpGroup, number>();
  let conf = "";
  let passwd = "";
  for (const [user, rec] of entries) {
    if (user.includes(":") || /[\r\n]/.test(user)) throw new RangeError("username cannot contain ':' or newlines in tpasswd");
    let i = index.get(rec.group);
    if (i === undefined) {
      i = index.size + 1;
      index.set(rec.group, i);
      conf += `${i}:${encodeSrpBase64(bigintToBytes(rec.group.N))}:${encodeSrpBase64(bigintToBytes(rec.group.g))}\n`;
    }
    passwd += `${user}:${encodeSrpBase64(rec.verifier)}:${encodeSrpBase64(rec.salt)}:${i}\n`;
  }
  return { tpasswd: passwd, tpasswdConf: conf };
}
