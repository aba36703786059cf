/**
 * Long-term identity keys at rest and in transit: the IdentityKey value, passphrase
 * sealing (scrypt + AES-256-GCM), key files (mode 0600) and PEM / JSON export and import.
 *
 * Spec: XEP-0116 v0.16 section 14 "Extra Responsibilities of Implementors" ("an
 * implementation might ... save private keys to a file in cleartext! Implementors MUST
 * take very great care"). Hence: key files are created 0600 (their directory 0700),
 * written atomically (temp file + rename), refused when group/other can read them, and
 * may be sealed under a passphrase: scrypt (RFC 7914; N = 2^15, r = 8, p = 1 by default)
 * derives a 256-bit key, AES-256-GCM (NIST SP 800-38D, 96-bit random IV) encrypts the
 * PKCS#8 DER, and the algorithm and public key are bound as additional authenticated
 * data, so swapping the public half of a file is detected. Both primitives are node:crypto.
 *
 * PEM export uses RFC 7468 labels: "PUBLIC KEY" (SPKI), "PRIVATE KEY" (PKCS#8) and
 * "ENCRYPTED PRIVATE KEY" (PKCS#8 PBES2, as OpenSSL writes it), so `openssl pkey` reads
 * what we write and we read what it writes.
 *
 * Secrets (private keys, passphrases) never appear in errors, logs, JSON.stringify or
 * util.inspect output of an IdentityKey.
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, randomBytes, scryptSync } from "node:crypto";
import { chmodSync, closeSync, constants, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { equalBytes, fromBase64, toBase64, utf8 } from "../core/bytes.js";
import type { Random } from "../core/types.js";
import { IdentityError } from "./errors.js";
import { isSignAlg, nodeSigner, privateKeyAlg, publicFromPrivate, type GenerateOptions, type SignAlg, type SignatureProvider } from "./keys.js";
import { keyValueFromSpki, parseKeyValueXml, spkiFromKeyValue } from "./keyvalue.js";

/** One of our long-term signing keys. */
export interface IdentityKey {
  readonly alg: SignAlg;
  /** SubjectPublicKeyInfo DER. */
  readonly publicKey: Uint8Array;
  /** PKCS#8 DER. Secret; redacted from inspect/JSON. */
  readonly privateKey: Uint8Array;
  /** When the key was generated (ms since the epoch). */
  readonly createdAt: number;
}

const REDACTED = "[private key redacted]";

/** Builds an IdentityKey whose private half cannot leak through console.log / JSON. */
export function makeIdentityKey(fields: IdentityKey): IdentityKey {
  const k: IdentityKey = { alg: fields.alg, publicKey: fields.publicKey, privateKey: fields.privateKey, createdAt: fields.createdAt };
  const describe = () => ({ alg: k.alg, publicKey: toBase64(k.publicKey), privateKey: REDACTED, createdAt: k.createdAt });
  Object.defineProperty(k, "toJSON", { value: describe, enumerable: false });
  Object.defineProperty(k, Symbol.for("nodejs.util.inspect.custom"), { value: describe, enumerable: false });
  return k;
}

/** Generates a new identity key. */
export function createIdentityKey(alg: SignAlg, now: number, opts: GenerateOptions & { signer?: SignatureProvider } = {}): IdentityKey {
  const pair = (opts.signer ?? nodeSigner).generate(alg, opts);
  return makeIdentityKey({ alg, publicKey: pair.publicKey, privateKey: pair.privateKey, createdAt: now });
}

// ---- sealing under a passphrase ----

export interface ScryptParams {
  /** CPU/memory cost, a power of two. */
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

/** RFC 7914 / OWASP interactive-login parameters: ~32 MiB, ~0.1 s. */
export const DEFAULT_SCRYPT: ScryptParams = { N: 1 << 15, r: 8, p: 1 };

/** A PKCS#8 key sealed under a passphrase (JSON-serializable; all binary fields Base64). */
export interface SealedPrivateKey {
  readonly kdf: "scrypt";
  readonly N: number;
  readonly r: number;
  readonly p: number;
  readonly salt: string;
  readonly cipher: "aes-256-gcm";
  readonly iv: string;
  readonly ciphertext: string;
  readonly tag: string;
}

export interface SealOptions {
  readonly scrypt?: ScryptParams;
  /** Source of the salt and IV (default: the OS CSPRNG). */
  readonly random?: Random;
}

const osRandom: Random = { bytes: (n) => new Uint8Array(randomBytes(n)) };

function checkScrypt(s: ScryptParams): void {
  const pow2 = s.N > 1 && (s.N & (s.N - 1)) === 0;
  // Bounds keep a hostile file from making us allocate gigabytes (N <= 2^20, r*p <= 64).
  if (!pow2 || s.N > 1 << 20 || !Number.isInteger(s.r) || !Number.isInteger(s.p) || s.r < 1 || s.p < 1 || s.r * s.p > 64)
    throw new IdentityError("malformed-key", "unacceptable scrypt parameters");
}

function deriveKey(passphrase: string, salt: Uint8Array, s: ScryptParams): Buffer {
  checkScrypt(s);
  return scryptSync(passphrase.normalize("NFC"), salt, 32, { N: s.N, r: s.r, p: s.p, maxmem: 256 * s.N * s.r + (16 << 20) });
}

/** The AAD binding a sealed private key to its algorithm and public key. */
function aadOf(alg: SignAlg, publicKey: Uint8Array): Uint8Array {
  return utf8(`xmpp-e2e identity v1\n${alg}\n${toBase64(publicKey)}`);
}

export function sealPrivateKey(key: IdentityKey, passphrase: string, opts: SealOptions = {}): SealedPrivateKey {
  if (passphrase.length === 0) throw new RangeError("empty passphrase");
  const s = opts.scrypt ?? DEFAULT_SCRYPT;
  const random = opts.random ?? osRandom;
  const salt = random.bytes(16);
  const iv = random.bytes(12);
  const k = deriveKey(passphrase, salt, s);
  try {
    const c = createCipheriv("aes-256-gcm", k, iv);
    c.setAAD(aadOf(key.alg, key.publicKey));
    const ct = Buffer.concat([c.update(key.privateKey), c.final()]);
    return { kdf: "scrypt", N: s.N, r: s.r, p: s.p, salt: toBase64(salt), cipher: "aes-256-gcm", iv: toBase64(iv), ciphertext: toBase64(ct), tag: toBase64(c.getAuthTag()) };
  } finally {
    k.fill(0);
  }
}

function b64field(x: unknown, what: string): Uint8Array {
  const b = typeof x === "string" ? fromBase64(x) : undefined;
  if (b === undefined) throw new IdentityError("malformed-key", `sealed key: bad ${what}`);
  return b;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** Validates untrusted JSON as a SealedPrivateKey. */
export function parseSealed(x: unknown): SealedPrivateKey {
  if (!isRecord(x) || x["kdf"] !== "scrypt" || x["cipher"] !== "aes-256-gcm")
    throw new IdentityError("unsupported-algorithm", "sealed key: unknown kdf or cipher");
  const { N, r, p } = x;
  if (typeof N !== "number" || typeof r !== "number" || typeof p !== "number") throw new IdentityError("malformed-key", "sealed key: scrypt parameters");
  checkScrypt({ N, r, p });
  for (const f of ["salt", "iv", "ciphertext", "tag"]) b64field(x[f], f);
  return x as unknown as SealedPrivateKey;
}

/** Opens a sealed key; throws IdentityError "bad-passphrase" on a wrong passphrase or tampering. */
export function unsealPrivateKey(sealed: SealedPrivateKey, passphrase: string, alg: SignAlg, publicKey: Uint8Array): Uint8Array {
  const s = parseSealed(sealed);
  const k = deriveKey(passphrase, b64field(s.salt, "salt"), s);
  let pkcs8: Uint8Array;
  try {
    const d = createDecipheriv("aes-256-gcm", k, b64field(s.iv, "iv"));
    d.setAAD(aadOf(alg, publicKey));
    d.setAuthTag(b64field(s.tag, "tag"));
    pkcs8 = new Uint8Array(Buffer.concat([d.update(b64field(s.ciphertext, "ciphertext")), d.final()]));
  } catch {
    throw new IdentityError("bad-passphrase", "the passphrase is wrong or the key file was altered");
  } finally {
    k.fill(0);
  }
  return pkcs8;
}

// ---- JSON key files ----

export const KEY_FILE_TYPE = "xmpp-e2e-identity";

/** Our key file: JSON, the private key either plain (Base64 PKCS#8) or sealed. */
export interface KeyFileJson {
  readonly type: typeof KEY_FILE_TYPE;
  readonly version: 1;
  readonly alg: SignAlg;
  readonly createdAt: number;
  readonly publicKey: string;
  readonly privateKey?: string;
  readonly sealed?: SealedPrivateKey;
}

export interface ExportOptions extends SealOptions {
  /** Seal the private key under this passphrase. */
  readonly passphrase?: string;
}

export function exportIdentityJson(key: IdentityKey, opts: ExportOptions = {}): string {
  const base = { type: KEY_FILE_TYPE, version: 1, alg: key.alg, createdAt: key.createdAt, publicKey: toBase64(key.publicKey) } as const;
  const body: KeyFileJson =
    opts.passphrase === undefined ? { ...base, privateKey: toBase64(key.privateKey) } : { ...base, sealed: sealPrivateKey(key, opts.passphrase, opts) };
  return `${JSON.stringify(body, null, 2)}\n`;
}

/** Checks that the private key is the given algorithm's and matches the public key. */
function consistent(alg: SignAlg, publicKey: Uint8Array, privateKey: Uint8Array): void {
  if (privateKeyAlg(privateKey) !== alg) throw new IdentityError("malformed-key", "the private key does not match the algorithm");
  if (!equalBytes(publicFromPrivate(privateKey), publicKey)) throw new IdentityError("malformed-key", "the private key does not match the public key");
  // Policy (RSA >= 2048 bits ...) applies to our own keys too.
  keyValueFromSpki(publicKey);
}

function fromJson(text: string, passphrase: string | undefined): IdentityKey {
  let x: unknown;
  try {
    x = JSON.parse(text);
  } catch {
    throw new IdentityError("malformed-key", "not JSON");
  }
  if (!isRecord(x) || x["type"] !== KEY_FILE_TYPE || x["version"] !== 1) throw new IdentityError("malformed-key", `not an ${KEY_FILE_TYPE} v1 file`);
  const alg = x["alg"];
  const createdAt = x["createdAt"];
  if (typeof alg !== "string" || !isSignAlg(alg)) throw new IdentityError("unsupported-algorithm", "unknown alg");
  if (typeof createdAt !== "number" || !Number.isSafeInteger(createdAt)) throw new IdentityError("malformed-key", "bad createdAt");
  const publicKey = b64field(x["publicKey"], "publicKey");
  let privateKey: Uint8Array;
  if (x["sealed"] !== undefined) {
    if (passphrase === undefined) throw new IdentityError("passphrase-required", "the key is protected by a passphrase");
    privateKey = unsealPrivateKey(parseSealed(x["sealed"]), passphrase, alg, publicKey);
  } else privateKey = b64field(x["privateKey"], "privateKey");
  consistent(alg, publicKey, privateKey);
  return makeIdentityKey({ alg, publicKey, privateKey, createdAt });
}

// ---- PEM ----

export function exportPublicPem(spki: Uint8Array): string {
  return createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" }).export({ format: "pem", type: "spki" }).toString();
}

/** PKCS#8 PEM; with a passphrase, OpenSSL's PBES2 "ENCRYPTED PRIVATE KEY" with AES-256-CBC. */
export function exportPrivatePem(key: IdentityKey, opts: { passphrase?: string } = {}): string {
  const k = createPrivateKey({ key: Buffer.from(key.privateKey), format: "der", type: "pkcs8" });
  if (opts.passphrase === undefined) return k.export({ format: "pem", type: "pkcs8" }).toString();
  if (opts.passphrase.length === 0) throw new RangeError("empty passphrase");
  return k.export({ format: "pem", type: "pkcs8", cipher: "aes-256-cbc", passphrase: opts.passphrase }).toString();
}

function errCode(e: unknown): string | undefined {
  return e instanceof Error && "code" in e && typeof e.code === "string" ? e.code : undefined;
}

function fromPem(text: string, passphrase: string | undefined, now: number): IdentityKey {
  const encrypted = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text);
  if (encrypted && passphrase === undefined) throw new IdentityError("passphrase-required", "the PEM key is encrypted");
  let pkcs8: Uint8Array;
  try {
    const k = createPrivateKey({ key: text, format: "pem", ...(passphrase === undefined ? {} : { passphrase }) });
    pkcs8 = new Uint8Array(k.export({ format: "der", type: "pkcs8" }));
  } catch (e) {
    // Never echo OpenSSL's message: it may quote input.
    if (encrypted) throw new IdentityError("bad-passphrase", "the PEM key could not be decrypted", errCode(e));
    throw new IdentityError("malformed-key", "not a private key PEM", errCode(e));
  }
  const alg = privateKeyAlg(pkcs8);
  const publicKey = publicFromPrivate(pkcs8);
  consistent(alg, publicKey, pkcs8);
  return makeIdentityKey({ alg, publicKey, privateKey: pkcs8, createdAt: now });
}

export interface ImportOptions {
  readonly passphrase?: string;
  /** createdAt for formats that carry none (PEM). */
  readonly now?: number;
}

/** Imports a private key from our JSON key file or a PEM (PKCS#8, encrypted PKCS#8, PKCS#1, ...). */
export function importIdentity(text: string, opts: ImportOptions = {}): IdentityKey {
  const t = text.trim();
  if (t.startsWith("{")) return fromJson(t, opts.passphrase);
  if (t.startsWith("-----BEGIN")) return fromPem(t, opts.passphrase, opts.now ?? Date.now());
  throw new IdentityError("malformed-key", "neither a key file nor a PEM private key");
}

/** Imports a public key from PEM ("PUBLIC KEY"), a `<KeyValue/>` or Base64 SPKI DER; returns SPKI. */
export function importPublicKey(text: string): Uint8Array {
  const t = text.trim();
  if (t.startsWith("<")) return spkiFromKeyValue(parseKeyValueXml(t));
  let der: Uint8Array | undefined;
  if (t.startsWith("-----BEGIN")) {
    try {
      der = new Uint8Array(createPublicKey({ key: t, format: "pem" }).export({ format: "der", type: "spki" }));
    } catch (e) {
      throw new IdentityError("malformed-key", "not a public key PEM", errCode(e));
    }
  } else der = fromBase64(t);
  if (der === undefined) throw new IdentityError("malformed-key", "not a public key");
  // Canonical, policy-checked SPKI.
  return spkiFromKeyValue(keyValueFromSpki(der));
}

// ---- files ----

function ioError(op: string, e: unknown): IdentityError {
  return new IdentityError("io", `${op} failed`, errCode(e));
}

/**
 * Writes `contents` to `path` with mode 0600, atomically: a 0600 temp file in the same
 * directory, fsync, rename. Creates a missing directory with mode 0700.
 */
export function writePrivateFile(path: string, contents: string): void {
  const file = resolve(path);
  const dir = dirname(file);
  const tmp = `${file}.tmp-${process.pid}-${toBase64(osRandom.bytes(6)).replace(/[/+=]/g, "_")}`;
  try {
    if (!existsSync(dir)) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700);
    }
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      writeSync(fd, contents);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* not created */
    }
    throw ioError(`write ${file}`, e);
  }
}

/** Reads a private file, refusing one that group or others may access (POSIX). */
export function readPrivateFile(path: string, opts: { allowInsecurePermissions?: boolean } = {}): string {
  const file = resolve(path);
  try {
    if (process.platform !== "win32" && opts.allowInsecurePermissions !== true && (statSync(file).mode & 0o077) !== 0)
      throw new IdentityError("insecure-permissions", `${file} is accessible by group or others; chmod 600 it`);
    return readFileSync(file, "utf8");
  } catch (e) {
    if (e instanceof IdentityError) throw e;
    throw ioError(`read ${file}`, e);
  }
}

/** Saves an identity key as our JSON key file (0600), sealed when a passphrase is given. */
export function writeIdentityFile(path: string, key: IdentityKey, opts: ExportOptions = {}): void {
  writePrivateFile(path, exportIdentityJson(key, opts));
}

/** Loads an identity key file (JSON or PEM). */
export function readIdentityFile(path: string, opts: ImportOptions & { allowInsecurePermissions?: boolean } = {}): IdentityKey {
  return importIdentity(readPrivateFile(path, opts), opts);
}
