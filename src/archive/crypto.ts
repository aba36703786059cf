/**
 * Keys and encryption of archived collections: the user's archive key, per-collection
 * data keys wrapped under it, the encrypted `<to/>`/`<from/>`/`<note/>` sequences, and a
 * passphrase-protected export of the archive key for the user's other devices.
 *
 * Spec: XEP-0241 v0.1 section 2 (split off XEP-0136 v0.17): "select a symmetric data
 * encryption algorithm, generate a suitable random encryption key, give the key a unique
 * (for the user) name, encrypt the symmetric key with one of the user's ... keys, and wrap
 * the result inside one or more <EncryptedKey/> elements"; "encrypt the joined sequence of
 * <to/>, <from/> and <note/> elements, base64 encode the resulting sequence of bytes, and
 * wrap it inside an <EncryptedData/> element". XEP-0241 wraps data keys with the user's
 * public keys so that every client of the user can read; here the wrapping key is the
 * user's symmetric archive key, held by each of the user's devices (an XML Encryption
 * EncryptedKey may wrap with a symmetric key: kw-aes256, RFC 3394). Algorithms:
 * - data: W3C XML Encryption 1.1 section 5.2.4 AES-GCM (aes256-gcm): "the IV ... 96 bits
 *   ... prepended to the cipher text", 128-bit tag appended; a fresh random IV per item;
 * - key wrap: XML Encryption section 5.6.3 / RFC 3394 AES Key Wrap (kw-aes256);
 * - export: XML Encryption 1.1 section 5.4.2 PBKDF2 DerivedKey (RFC 8018, HMAC-SHA256
 *   PRF) deriving the kw-aes256 key-encryption key from the passphrase.
 * Primitives come from node:crypto (AES-GCM, id-aes256-wrap, PBKDF2, SHA-256) behind the
 * injectable {@link ArchiveCrypto}; randomness from the injected Random.
 */
import { createCipheriv, createDecipheriv, createHash, pbkdf2Sync } from "node:crypto";
import { concat, fromUtf8, toBase64, toHex, utf8, wipe } from "../core/bytes.js";
import type { Random } from "../core/types.js";
import { el, type Element, parseFragment, parseXml } from "../xml/index.js";
import {
  type ChatItem,
  cipherBytes,
  chatToXml,
  type EncryptedData,
  type EncryptedKey,
  encryptedKeyToXml,
  NS_ARCHIVE,
  NS_DSIG,
  NS_XENC,
  parseChat,
  parseEncryptedKey,
  XENC_CONTENT,
} from "./codec.js";
import { ArchiveError } from "./errors.js";

export const ALG_AES256_GCM = "http://www.w3.org/2009/xmlenc11#aes256-gcm";
export const ALG_KW_AES256 = "http://www.w3.org/2001/04/xmlenc#kw-aes256";
export const NS_XENC11 = "http://www.w3.org/2009/xmlenc11#";
export const ALG_PBKDF2 = "http://www.w3.org/2009/xmlenc11#pbkdf2";
export const ALG_HMAC_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256";

/** PBKDF2 iterations of a new export (OWASP 2023 for PBKDF2-HMAC-SHA256). */
export const DEFAULT_EXPORT_ITERATIONS = 600_000;
/** Exports with fewer iterations are refused in both directions. */
export const MIN_EXPORT_ITERATIONS = 10_000;

const GCM_IV = 12;
const GCM_TAG = 16;
const RFC3394_IV = new Uint8Array([0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6]);

/** The primitives the archive needs; {@link nodeArchiveCrypto} by default. */
export interface ArchiveCrypto {
  /** AES-256-GCM; returns ciphertext || 16-byte tag. */
  gcmEncrypt(key: Uint8Array, iv: Uint8Array, plaintext: Uint8Array): Uint8Array;
  /** AES-256-GCM open; undefined when the tag does not verify. */
  gcmDecrypt(key: Uint8Array, iv: Uint8Array, sealed: Uint8Array): Uint8Array | undefined;
  /** RFC 3394 AES key wrap with a 256-bit KEK. */
  wrap(kek: Uint8Array, key: Uint8Array): Uint8Array;
  /** RFC 3394 unwrap; undefined when the integrity check fails. */
  unwrap(kek: Uint8Array, wrapped: Uint8Array): Uint8Array | undefined;
  pbkdf2Sha256(passphrase: Uint8Array, salt: Uint8Array, iterations: number, length: number): Uint8Array;
  sha256(...parts: readonly Uint8Array[]): Uint8Array;
}

export const nodeArchiveCrypto: ArchiveCrypto = {
  gcmEncrypt(key, iv, plaintext) {
    const c = createCipheriv("aes-256-gcm", key, iv, { authTagLength: GCM_TAG });
    return new Uint8Array(Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]));
  },
  gcmDecrypt(key, iv, sealed) {
    if (sealed.length < GCM_TAG) return undefined;
    try {
      const d = createDecipheriv("aes-256-gcm", key, iv, { authTagLength: GCM_TAG });
      d.setAuthTag(sealed.subarray(sealed.length - GCM_TAG));
      return new Uint8Array(Buffer.concat([d.update(sealed.subarray(0, sealed.length - GCM_TAG)), d.final()]));
    } catch {
      return undefined;
    }
  },
  wrap(kek, key) {
    const c = createCipheriv("id-aes256-wrap", kek, RFC3394_IV);
    return new Uint8Array(Buffer.concat([c.update(key), c.final()]));
  },
  unwrap(kek, wrapped) {
    try {
      const d = createDecipheriv("id-aes256-wrap", kek, RFC3394_IV);
      return new Uint8Array(Buffer.concat([d.update(wrapped), d.final()]));
    } catch {
      return undefined;
    }
  },
  pbkdf2Sha256(passphrase, salt, iterations, length) {
    return new Uint8Array(pbkdf2Sync(passphrase, salt, iterations, length, "sha256"));
  },
  sha256(...parts) {
    const h = createHash("sha256");
    for (const p of parts) h.update(p);
    return new Uint8Array(h.digest());
  },
};

/** The user's archive key: 256 bits, named for XML Signature KeyInfo/KeyName. */
export interface ArchiveKey {
  /** "archive-" + hex of the first 16 bytes of SHA-256(label || key): names it, reveals nothing. */
  readonly name: string;
  readonly key: Uint8Array;
}

/** A collection's data key and the name its EncryptedData/KeyName uses (XEP-0241 2). */
export interface DataKey {
  readonly name: string;
  readonly key: Uint8Array;
}

const NAME_LABEL = utf8("xmpp-e2e archive key name\u0000");

export function archiveKeyFrom(key: Uint8Array, crypto: ArchiveCrypto = nodeArchiveCrypto): ArchiveKey {
  if (key.length !== 32) throw new ArchiveError("bad-format", "an archive key is 32 bytes");
  return { name: `archive-${toHex(crypto.sha256(NAME_LABEL, key).subarray(0, 16))}`, key: Uint8Array.from(key) };
}

export function newArchiveKey(random: Random, crypto: ArchiveCrypto = nodeArchiveCrypto): ArchiveKey {
  const k = random.bytes(32);
  const ak = archiveKeyFrom(k, crypto);
  wipe(k);
  return ak;
}

/** A fresh data key with a name unique for the user (random, XEP-0241 2). */
export function newDataKey(random: Random): DataKey {
  return { name: `data-${toHex(random.bytes(16))}`, key: random.bytes(32) };
}

/** Wraps `dk` under the archive key (kw-aes256) as an `<EncryptedKey/>`. */
export function wrapDataKey(dk: DataKey, ak: ArchiveKey, crypto: ArchiveCrypto = nodeArchiveCrypto): EncryptedKey {
  return { algorithm: ALG_KW_AES256, keyName: ak.name, cipherValue: toBase64(crypto.wrap(ak.key, dk.key)), carriedKeyName: dk.name };
}

/** Unwraps an `<EncryptedKey/>` made by {@link wrapDataKey}. */
export function unwrapDataKey(k: EncryptedKey, ak: ArchiveKey, crypto: ArchiveCrypto = nodeArchiveCrypto): DataKey {
  if (k.algorithm !== ALG_KW_AES256) throw new ArchiveError("unsupported", "key wrap algorithm");
  if (k.keyName !== ak.name) throw new ArchiveError("no-key", "wrapped for another key");
  if (k.carriedKeyName === undefined) throw new ArchiveError("bad-format", "EncryptedKey without CarriedKeyName");
  const key = crypto.unwrap(ak.key, cipherBytes(k.cipherValue));
  if (!key || key.length !== 32) throw new ArchiveError("decrypt-failed", "key unwrap");
  return { name: k.carriedKeyName, key };
}

/** The joined sequence of `<to/>`/`<from/>`/`<note/>` elements, as XEP-0241 encrypts it. */
function joined(items: readonly ChatItem[]): string {
  for (const i of items) if (i.kind !== "to" && i.kind !== "from" && i.kind !== "note") throw new ArchiveError("bad-format", "only to/from/note are encrypted");
  // Built through the codec: the chat's children serialized without their parent.
  const chat = chatToXml({ with: "x", start: "x", items }, false);
  return chat.children.map((c) => (typeof c === "string" ? "" : c.toString())).join("");
}

/** Encrypts `items` (to/from/note) under `dk` into an `<EncryptedData/>` (aes256-gcm). */
export function encryptItems(items: readonly ChatItem[], dk: DataKey, random: Random, crypto: ArchiveCrypto = nodeArchiveCrypto): EncryptedData {
  const iv = random.bytes(GCM_IV);
  const pt = utf8(joined(items));
  const sealed = crypto.gcmEncrypt(dk.key, iv, pt);
  wipe(pt);
  return { type: XENC_CONTENT, algorithm: ALG_AES256_GCM, keyName: dk.name, cipherValue: toBase64(concat(iv, sealed)) };
}

/** Decrypts an `<EncryptedData/>` made by {@link encryptItems}. */
export function decryptItems(d: EncryptedData, dk: DataKey, crypto: ArchiveCrypto = nodeArchiveCrypto): ChatItem[] {
  if (d.algorithm !== ALG_AES256_GCM) throw new ArchiveError("unsupported", "data encryption algorithm");
  if (d.keyName !== dk.name) throw new ArchiveError("no-key", "encrypted with another data key");
  const raw = cipherBytes(d.cipherValue);
  if (raw.length < GCM_IV + GCM_TAG) throw new ArchiveError("bad-format", "ciphertext too short");
  const pt = crypto.gcmDecrypt(dk.key, raw.subarray(0, GCM_IV), raw.subarray(GCM_IV));
  if (!pt) throw new ArchiveError("decrypt-failed", "authentication tag");
  let chat;
  try {
    const children = parseFragment(fromUtf8(pt), NS_ARCHIVE).filter((c): c is Element => typeof c !== "string");
    chat = parseChat(el("chat", { xmlns: NS_ARCHIVE, with: "x", start: "x" }, ...children));
  } catch {
    throw new ArchiveError("bad-format", "decrypted content");
  } finally {
    wipe(pt);
  }
  return [...chat.items];
}

/** A collection's content in the clear (only in memory, for the application). */
export interface OpenedCollection {
  readonly with: string;
  readonly start: string;
  readonly thread?: string;
  readonly items: readonly ChatItem[];
}

/**
 * Opens an encrypted collection with the archive key: unwraps each data key wrapped for it
 * and decrypts every `<EncryptedData/>`, in document order. Plaintext items (an
 * unencrypted collection) are returned as they are.
 */
export function openCollection(
  chat: { readonly with: string; readonly start: string; readonly thread?: string; readonly items: readonly ChatItem[] },
  ak: ArchiveKey,
  crypto: ArchiveCrypto = nodeArchiveCrypto,
): OpenedCollection {
  const keys = new Map<string, DataKey>();
  for (const i of chat.items) {
    if (i.kind !== "encrypted-key" || i.key.keyName !== ak.name || i.key.carriedKeyName === undefined) continue;
    if (!keys.has(i.key.carriedKeyName)) keys.set(i.key.carriedKeyName, unwrapDataKey(i.key, ak, crypto));
  }
  const items: ChatItem[] = [];
  for (const i of chat.items) {
    if (i.kind === "encrypted-data") {
      const dk = i.data.keyName === undefined ? undefined : keys.get(i.data.keyName);
      if (!dk) throw new ArchiveError("no-key", "no data key wrapped for this archive key");
      items.push(...decryptItems(i.data, dk, crypto));
    } else if (i.kind === "to" || i.kind === "from" || i.kind === "note") items.push(i);
  }
  for (const k of keys.values()) wipe(k.key);
  return { with: chat.with, start: chat.start, ...(chat.thread !== undefined ? { thread: chat.thread } : {}), items };
}

// ---- passphrase-protected export (XML Encryption 1.1 PBKDF2 DerivedKey) ----------------

/**
 * Exports the archive key as an `<EncryptedKey/>` wrapped (kw-aes256) with a key derived
 * from `passphrase` by PBKDF2-HMAC-SHA256 (XML Encryption 1.1 section 5.4.2).
 */
export function exportArchiveKey(
  ak: ArchiveKey,
  passphrase: string,
  random: Random,
  o: { iterations?: number; crypto?: ArchiveCrypto } = {},
): string {
  const crypto = o.crypto ?? nodeArchiveCrypto;
  const iterations = o.iterations ?? DEFAULT_EXPORT_ITERATIONS;
  if (!Number.isInteger(iterations) || iterations < MIN_EXPORT_ITERATIONS) throw new ArchiveError("unsupported", "too few PBKDF2 iterations");
  if (passphrase.length === 0) throw new ArchiveError("bad-passphrase", "empty passphrase");
  const salt = random.bytes(16);
  const pw = utf8(passphrase.normalize("NFKC"));
  const kek = crypto.pbkdf2Sha256(pw, salt, iterations, 32);
  const wrapped = crypto.wrap(kek, ak.key);
  wipe(pw, kek);
  const e = encryptedKeyToXml({ algorithm: ALG_KW_AES256, cipherValue: toBase64(wrapped), carriedKeyName: ak.name });
  const keyInfo = el(
    "KeyInfo",
    { xmlns: NS_DSIG },
    el(
      "DerivedKey",
      { xmlns: NS_XENC11 },
      el(
        "KeyDerivationMethod",
        { Algorithm: ALG_PBKDF2 },
        el(
          "PBKDF2-params",
          {},
          el("Salt", {}, el("Specified", {}, toBase64(salt))),
          el("IterationCount", {}, String(iterations)),
          el("KeyLength", {}, "32"),
          el("PRF", { Algorithm: ALG_HMAC_SHA256 }),
        ),
      ),
    ),
  );
  // KeyInfo goes right after EncryptionMethod (XML Encryption schema order).
  e.children.splice(1, 0, keyInfo);
  keyInfo.parent = e;
  return e.toString();
}

/** Imports an export made by {@link exportArchiveKey}; bad-passphrase when it does not unwrap. */
export function importArchiveKey(exported: string, passphrase: string, crypto: ArchiveCrypto = nodeArchiveCrypto): ArchiveKey {
  let e: Element;
  try {
    e = parseXml(exported.trim());
  } catch {
    throw new ArchiveError("bad-format", "not an exported archive key");
  }
  if (e.name !== "EncryptedKey" || e.getNS() !== NS_XENC) throw new ArchiveError("bad-format", "not an exported archive key");
  const k = parseEncryptedKey(e);
  if (k.algorithm !== ALG_KW_AES256) throw new ArchiveError("unsupported", "key wrap algorithm");
  const kdm = e.getChild("KeyInfo", NS_DSIG)?.getChild("DerivedKey", NS_XENC11)?.getChild("KeyDerivationMethod");
  if (!kdm || kdm.attrs.Algorithm !== ALG_PBKDF2) throw new ArchiveError("unsupported", "key derivation");
  const p = kdm.getChild("PBKDF2-params");
  const salt = cipherBytes(p?.getChild("Salt")?.getChildText("Specified")?.trim() ?? "");
  const iterations = Number(p?.getChildText("IterationCount")?.trim());
  const length = Number(p?.getChildText("KeyLength")?.trim());
  if (p?.getChild("PRF")?.attrs.Algorithm !== ALG_HMAC_SHA256) throw new ArchiveError("unsupported", "PBKDF2 PRF");
  if (!Number.isInteger(iterations) || iterations < MIN_EXPORT_ITERATIONS || iterations > 100_000_000) throw new ArchiveError("unsupported", "PBKDF2 iteration count");
  if (length !== 32 || salt.length < 8) throw new ArchiveError("bad-format", "PBKDF2 parameters");
  const pw = utf8(passphrase.normalize("NFKC"));
  const kek = crypto.pbkdf2Sha256(pw, salt, iterations, 32);
  const key = crypto.unwrap(kek, cipherBytes(k.cipherValue));
  wipe(pw, kek);
  if (!key || key.length !== 32) throw new ArchiveError("bad-passphrase", "the passphrase does not open this key");
  const ak = archiveKeyFrom(key, crypto);
  wipe(key);
  if (k.carriedKeyName !== undefined && k.carriedKeyName !== ak.name) throw new ArchiveError("bad-format", "key name does not match the key");
  return ak;
}
