/**
 * Object-encryption figures: S/MIME sign+encrypt and decrypt+verify of a 500-byte
 * Message/CPIM object, for RSA-2048 and EC P-256 identities, each as a ratio to the raw
 * node:crypto operations the same work needs, measured in the same run.
 *
 * Spec: draft-ietf-xmpp-e2e-03 (RFC 3923) section 3 steps 1-2 (a message becomes a
 * Message/CPIM object, RFC 3862, which is signed and then encrypted, appendix B.3 /
 * RFC 3923 section 6.5), section 2 requirement 3 (CMS SignedData and EnvelopedData, AES);
 * RFC 5652 sections 5.4 (the signature covers the DER signed attributes, which carry the
 * SHA-256 messageDigest of the content) and 6 (EnvelopedData: one content key, one
 * RecipientInfo per recipient, the content encrypted once); RFC 8017 section 7.1
 * (RSAES-OAEP key transport); RFC 5753 section 3.1 (ECDH stdDH with an ephemeral key,
 * the X9.63 KDF, AES key wrap, RFC 3394); RFC 3565 (AES-128-CBC content encryption).
 *
 * What is measured (one op each):
 * - "smime sign+encrypt 500B CPIM (KEY)": protectEntity() over the CPIM text, signer =
 *   Alice, one recipient (Bob), AES-128-CBC: detached SignedData (pkijs over WebCrypto),
 *   the multipart/signed MIME entity, EnvelopedData, the application/pkcs7-mime entity.
 *   Baseline rawSignEncrypt(KEY): SHA-256 of the content, one signature over a
 *   signed-attributes-sized input, a fresh content key and IV, one key transport
 *   (RSA-OAEP of the key) or key agreement (ephemeral ECDH key + shared secret + one
 *   SHA-256 KDF block + AES key wrap), and one AES-128-CBC encryption of exactly as many
 *   bytes as the library encrypts (the multipart/signed entity, certificate included).
 * - "smime decrypt+verify 500B CPIM (KEY)": unprotectEntity() as Bob, then the checks
 *   ObjectSession makes on the signer (the id-on-xmppAddr binding, the path to a pinned
 *   anchor). Baseline rawDecryptVerify(KEY): RSA-OAEP decryption of the key, or ECDH with
 *   Bob's static key + one KDF block + AES key unwrap; AES-128-CBC decryption of the same
 *   byte count; SHA-256 of the content; one signature verification.
 * Neither side includes key generation or certificate creation; both reuse parsed keys
 * the way a long-running client would (the library caches its WebCrypto signing key).
 *
 * Subject and baseline are sampled in interleaved rounds (ABBA order, as bench/run.ts's
 * figure() does) so that load from other processes affects both alike. The whole file
 * runs in about 15 s.
 */
import "reflect-metadata";
import {
  constants as cryptoConstants,
  createCipheriv,
  createDecipheriv,
  createECDH,
  createHash,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  sign as nodeSign,
  verify as nodeVerify,
} from "node:crypto";
import { utf8 } from "../src/core/bytes.js";
import { bareJid, parseFullJid } from "../src/core/types.js";
import { systemClock, systemRandom } from "../src/crypto/node.js";
import { serializeCpim, formatDateTime } from "../src/cpim/codec.js";
import { messageToCpim } from "../src/cpim/xmpp.js";
import { checkAddressBinding, generateIdentity, type KeyType, validateChain } from "../src/smime/certs.js";
import type { SmimeIdentity } from "../src/smime/cms.js";
import { canonicalize } from "../src/smime/mime.js";
import { protectEntity, unprotectEntity } from "../src/smime/protect.js";
import { el, NS } from "../src/xml/index.js";
import { type Figure, interleaved, type InterleavedOptions } from "./lib.js";

const ALICE = parseFullJid("alice@example.org/bench");
const BOB = parseFullJid("bob@example.com/bench");
/** The size of the Message/CPIM object (headers + content) the figures name. */
export const CPIM_BYTES = 500;
/** Bytes of the DER signed attributes (contentType, signingTime, messageDigest) a SignerInfo signs. */
const SIGNED_ATTRS_BYTES = 105;
/** The draft's mandatory content cipher (RFC 3923 section 6.10). */
const CIPHER = "aes-128-cbc" as const;

const env = { random: systemRandom, clock: systemClock };

/** Sub-millisecond to a few ms per op: 250 ms samples hold hundreds of ops; 4 figures x ~3.5 s. */
const SMIME_OPTS: InterleavedOptions = { unit: "ops/s", rounds: 5, sampleMs: 250 };

/** A Message/CPIM object of exactly `size` bytes (CRLF-canonical), Alice to Bob. */
export function cpimObject(size: number): string {
  const build = (bodyLength: number) =>
    canonicalize(
      serializeCpim(
        messageToCpim(el("message", { xmlns: NS.client, type: "chat" }, el("body", {}, "x".repeat(bodyLength))), {
          from: bareJid(ALICE),
          to: bareJid(BOB),
          dateTime: formatDateTime(Date.UTC(2024, 0, 1)),
          contentId: "0123456789abcdef01234567@example.org",
        }),
      ),
    );
  const overhead = utf8(build(0)).length;
  if (overhead > size) throw new RangeError(`a CPIM object needs at least ${overhead} bytes`);
  const text = build(size - overhead);
  if (utf8(text).length !== size) throw new Error(`cpimObject: built ${utf8(text).length} bytes, wanted ${size}`);
  return text;
}

export interface Pair {
  readonly keyType: KeyType;
  readonly alice: SmimeIdentity;
  readonly bob: SmimeIdentity;
  readonly object: string;
  /** A protected object, to measure decryption on and to size the baselines. */
  readonly smime: string;
  /** Bytes the library encrypts: the multipart/signed entity. */
  readonly signedEntityBytes: number;
}

export async function pair(keyType: KeyType): Promise<Pair> {
  const alice = await generateIdentity({ jid: ALICE, keyType }, env);
  const bob = await generateIdentity({ jid: BOB, keyType }, env);
  const object = cpimObject(CPIM_BYTES);
  const smime = await protectEntity(object, { signer: alice, recipients: [bob.certificate], cipher: CIPHER }, env);
  // The size of what gets enveloped: the signed entity alone (same signer, same sizes).
  const signedOnly = await protectEntity(object, { signer: alice }, env);
  const u = await unprotectEntity(smime, { identities: [bob] });
  if (u.entity !== object || u.signature === undefined) throw new Error(`smime ${keyType}: round trip failed`);
  return { keyType, alice, bob, object, smime, signedEntityBytes: utf8(signedOnly).length };
}

/** One op = Alice signs then encrypts the CPIM object to Bob (the library's full S/MIME path). */
export function signEncrypt(p: Pair): () => Promise<unknown> {
  return () => protectEntity(p.object, { signer: p.alice, recipients: [p.bob.certificate], cipher: CIPHER }, env);
}

/** One op = Bob decrypts and verifies, then checks the signer as ObjectSession does (address, pinned anchor). */
export function decryptVerify(p: Pair): () => Promise<void> {
  const anchors = [p.alice.certificate];
  return async () => {
    const u = await unprotectEntity(p.smime, { identities: [p.bob] });
    if (u.signature === undefined) throw new Error("not signed");
    checkAddressBinding(u.signature.signer, ALICE);
    await validateChain(u.signature.signer, { anchors, intermediates: u.signature.certificates, at: Date.now() });
  };
}

export interface RawKeys {
  readonly signKey: KeyObject;
  readonly verifyKey: KeyObject;
  readonly bobPublic: KeyObject;
  readonly bobPrivate: KeyObject;
  /** Bob's EC public point and private scalar (EC only). */
  readonly bobPoint?: Buffer;
  readonly bobScalar?: Buffer;
}

export function rawKeys(p: Pick<Pair, "alice" | "bob" | "keyType">): RawKeys {
  const signKey = createPrivateKey({ key: Buffer.from(p.alice.privateKey), format: "der", type: "pkcs8" });
  const verifyKey = createPublicKey(signKey);
  const bobPrivate = createPrivateKey({ key: Buffer.from(p.bob.privateKey), format: "der", type: "pkcs8" });
  const bobPublic = createPublicKey(bobPrivate);
  if (!p.keyType.startsWith("ec")) return { signKey, verifyKey, bobPublic, bobPrivate };
  const jwk = bobPrivate.export({ format: "jwk" });
  if (typeof jwk.d !== "string") throw new Error("EC key without d");
  const bobScalar = Buffer.from(jwk.d, "base64url");
  const e = createECDH("prime256v1");
  e.setPrivateKey(bobScalar);
  return { signKey, verifyKey, bobPublic, bobPrivate, bobPoint: e.getPublicKey(), bobScalar };
}

const KW_IV = Buffer.from("A6A6A6A6A6A6A6A6", "hex");
/** ECC-CMS-SharedInfo for AES-128 wrap (RFC 5753 section 7.2): the KDF's other input. */
const SHARED_INFO = Buffer.from("3015300b0609608648016503040105a206040400000080", "hex");

function kdfBlock(z: Buffer): Buffer {
  return createHash("sha256").update(z).update(Buffer.from([0, 0, 0, 1])).update(SHARED_INFO).digest().subarray(0, 16);
}

/**
 * The raw work of one sign+encrypt: content digest, one signature, content key and IV,
 * key transport (RSA) or key agreement + wrap (EC), AES-128-CBC over `encryptBytes`.
 */
export function rawSignEncrypt(keys: RawKeys, contentBytes: number, encryptBytes: number): () => void {
  const content = randomBytes(contentBytes);
  const attrs = randomBytes(SIGNED_ATTRS_BYTES);
  const toEncrypt = randomBytes(encryptBytes);
  const ec = keys.bobPoint !== undefined;
  return () => {
    createHash("sha256").update(content).digest();
    nodeSign("sha256", attrs, keys.signKey);
    const cek = randomBytes(16);
    const iv = randomBytes(16);
    if (ec) {
      const eph = createECDH("prime256v1");
      eph.generateKeys();
      const kek = kdfBlock(eph.computeSecret(keys.bobPoint as Buffer));
      const w = createCipheriv("id-aes128-wrap", kek, KW_IV);
      Buffer.concat([w.update(cek), w.final()]);
    } else {
      publicEncrypt({ key: keys.bobPublic, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, cek);
    }
    const c = createCipheriv(CIPHER, cek, iv);
    Buffer.concat([c.update(toEncrypt), c.final()]);
  };
}

/**
 * The raw work of one decrypt+verify: key transport decryption (RSA) or ECDH + KDF +
 * unwrap (EC), AES-128-CBC decryption of `encryptBytes`, content digest, one verification.
 */
export function rawDecryptVerify(keys: RawKeys, contentBytes: number, encryptBytes: number): () => void {
  const content = randomBytes(contentBytes);
  const attrs = randomBytes(SIGNED_ATTRS_BYTES);
  const signature = nodeSign("sha256", attrs, keys.signKey);
  const cek = randomBytes(16);
  const iv = randomBytes(16);
  const enc = createCipheriv(CIPHER, cek, iv);
  const ciphertext = Buffer.concat([enc.update(randomBytes(encryptBytes)), enc.final()]);
  let wrapped: Buffer;
  let ephPoint: Buffer | undefined;
  if (keys.bobPoint !== undefined) {
    const eph = createECDH("prime256v1");
    ephPoint = eph.generateKeys();
    const w = createCipheriv("id-aes128-wrap", kdfBlock(eph.computeSecret(keys.bobPoint)), KW_IV);
    wrapped = Buffer.concat([w.update(cek), w.final()]);
  } else {
    wrapped = publicEncrypt({ key: keys.bobPublic, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, cek);
  }
  return () => {
    let key: Buffer;
    if (ephPoint !== undefined && keys.bobScalar !== undefined) {
      const e = createECDH("prime256v1");
      e.setPrivateKey(keys.bobScalar);
      const u = createDecipheriv("id-aes128-wrap", kdfBlock(e.computeSecret(ephPoint)), KW_IV);
      key = Buffer.concat([u.update(wrapped), u.final()]);
    } else {
      key = privateDecrypt({ key: keys.bobPrivate, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, wrapped);
    }
    const d = createDecipheriv(CIPHER, key, iv);
    Buffer.concat([d.update(ciphertext), d.final()]);
    createHash("sha256").update(content).digest();
    if (!nodeVerify("sha256", attrs, keys.verifyKey, signature)) throw new Error("raw verify failed");
  };
}

const LABEL: Record<"rsa-2048" | "ec-p256", string> = { "rsa-2048": "RSA-2048", "ec-p256": "EC P-256" };

/** The four object-encryption figures (about 15 s). */
export async function figures(): Promise<Figure[]> {
  const out: Figure[] = [];
  for (const keyType of ["rsa-2048", "ec-p256"] as const) {
    const p = await pair(keyType);
    const keys = rawKeys(p);
    const label = LABEL[keyType];
    out.push(
      await interleaved(
        `smime sign+encrypt 500B CPIM (${label})`,
        signEncrypt(p),
        `rawSignEncrypt(${label}, AES-128-CBC ${p.signedEntityBytes}B)`,
        rawSignEncrypt(keys, CPIM_BYTES, p.signedEntityBytes),
        SMIME_OPTS,
      ),
    );
    out.push(
      await interleaved(
        `smime decrypt+verify 500B CPIM (${label})`,
        decryptVerify(p),
        `rawDecryptVerify(${label}, AES-128-CBC ${p.signedEntityBytes}B)`,
        rawDecryptVerify(keys, CPIM_BYTES, p.signedEntityBytes),
        SMIME_OPTS,
      ),
    );
  }
  return out;
}
