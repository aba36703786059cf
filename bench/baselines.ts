/**
 * Baselines measured in the same run as the library's figures: the raw primitive work
 * that a protocol operation cannot avoid, so that `ratio` shows the protocol's overhead.
 *
 * Spec:
 * - XEP-0200 v0.2 sections 6 "Encrypting a Stanza" (#encrypt) and 8 "Decrypting a Stanza"
 *   (#decrypt): the content is encrypted with the negotiated block cipher in CTR mode
 *   (aes128-ctr: XEP-0116 v0.16 section 8, NIST SP 800-38A), Base64 encoded (RFC 4648
 *   section 4), and the Base64 text concatenated with the counter is MACed with HMAC
 *   (sha256, RFC 2104); the receiver recomputes and compares the MAC, Base64 decodes and
 *   decrypts. {@link rawStanzaCrypto} does exactly that with node:crypto and nothing else
 *   (no XML, no compression, no counter bookkeeping beyond advancing the IV).
 * - XEP-0116 v0.16 sections 4.3, 4.5.1 and 4.6.1 (Diffie-Hellman preparation; the same in
 *   XEP-0217 v0.1 section 4): each party picks a secret x with 2^(2n-1) < x < p - 1
 *   (n = 128, the AES block size, so x is a 256-bit number), computes g^x mod p and later
 *   (peer)^x mod p. {@link rawDh} does those four modular exponentiations for one
 *   negotiation.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { DEFAULT_EXPONENT_BYTES } from "../src/esession/keys.js";
import type { DhGroupId } from "../src/crypto/provider.js";
import { nodeSigner, type SignAlg } from "../src/identity/keys.js";
import { nodeCrypto, systemRandom } from "../src/crypto/node.js";

/** Bytes of the AES-128 key, HMAC-SHA256 key and CTR block. */
const KEY_BYTES = 16;
const MAC_KEY_BYTES = 32;
const BLOCK_BYTES = 16;

/**
 * Returns one op = encrypt + decrypt of a `size`-byte payload with raw node:crypto.
 * Sender: AES-128-CTR encrypt, Base64 encode, HMAC-SHA256 over the Base64 text and the
 * counter block (XEP-0200 `a_mac = HMAC(HASH, KM, m_content | C)`), Base64 of the MAC.
 * Receiver: HMAC over the received text and counter, Base64 decode and constant-time
 * compare of the MAC, Base64 decode of the data, AES-128-CTR decrypt. The counter then
 * advances by ceil(size/16) blocks, as in XEP-0200. The round trip is checked once at
 * construction.
 */
export function rawStanzaCrypto(size: number): () => void {
  if (!Number.isInteger(size) || size < 0) throw new RangeError("size must be a non-negative integer");
  const key = randomBytes(KEY_BYTES);
  const macKey = randomBytes(MAC_KEY_BYTES);
  const plaintext = randomBytes(size);
  const iv = randomBytes(BLOCK_BYTES);
  const ivView = new DataView(iv.buffer, iv.byteOffset, iv.byteLength);
  const blocks = Math.ceil(size / BLOCK_BYTES);

  const op = (): Buffer => {
    // Sender.
    const enc = createCipheriv("aes-128-ctr", key, iv);
    const ct = Buffer.concat([enc.update(plaintext), enc.final()]);
    const dataB64 = ct.toString("base64");
    const macB64 = createHmac("sha256", macKey).update(dataB64).update(iv).digest("base64");
    // Receiver.
    const expect = createHmac("sha256", macKey).update(dataB64).update(iv).digest();
    const mac = Buffer.from(macB64, "base64");
    if (mac.length !== expect.length || !timingSafeEqual(mac, expect)) throw new Error("MAC mismatch");
    const dec = createDecipheriv("aes-128-ctr", key, iv);
    const pt = Buffer.concat([dec.update(Buffer.from(dataB64, "base64")), dec.final()]);
    // The next stanza starts on a fresh counter block (low 32 bits; wraps harmlessly here).
    ivView.setUint32(12, (ivView.getUint32(12) + blocks) >>> 0);
    return pt;
  };

  if (!op().equals(plaintext)) throw new Error("rawStanzaCrypto: round trip failed");
  return () => {
    op();
  };
}

/**
 * A fresh exponent of the same length the protocol draws (DEFAULT_EXPONENT_BYTES, 512
 * bits), so that the baseline is the raw cost of exactly the DH work a negotiation does.
 */
function exponent(): Uint8Array {
  const x = systemRandom.bytes(DEFAULT_EXPONENT_BYTES);
  x[0] = (x[0] ?? 0) | 0x80;
  return x;
}

/**
 * Returns one op = the raw Diffie-Hellman work of ONE negotiation, through the nodeCrypto
 * provider: fresh exponents x (Alice) and y (Bob), e = g^x, d = g^y (2 dhPublic), then
 * d^x and e^y (2 dhShared). The two shared secrets are checked equal once at construction.
 */
export function rawDh(group: 5 | 14): () => void {
  const op = (): [Uint8Array, Uint8Array] => {
    const x = exponent();
    const y = exponent();
    const e = nodeCrypto.dhPublic(group, x);
    const d = nodeCrypto.dhPublic(group, y);
    return [nodeCrypto.dhShared(group, x, d), nodeCrypto.dhShared(group, y, e)];
  };
  const [ka, kb] = op();
  if (!Buffer.from(ka).equals(Buffer.from(kb))) throw new Error("rawDh: shared secrets differ");
  return () => {
    op();
  };
}

/**
 * The raw public-key work of ONE authenticated 4-message negotiation (XEP-0116 with
 * init_pubkey = resp_pubkey = 'key'): 2 dhPublic + 2 dhShared in `group` (MODP with the
 * protocol's 512-bit exponents, or X25519) and 2 signatures + 2 verifications with `alg`
 * keys, done exactly as the protocol does them, so that the ratio measures the protocol
 * and nothing else:
 * - the same providers (nodeCrypto for DH, nodeSigner for signatures);
 * - the same key sizes (RSA-2048 / Ed25519 identity keys; 512-bit MODP exponents drawn
 *   like dhPrivate, 32-byte X25519 scalars) and private values drawn from the same
 *   systemRandom;
 * - long-term keys decoded once (nodeSigner.signerFor / verifierFor), as signingIdentity
 *   and keyVerifier (src/client/keys.ts) keep them for a peer seen before;
 * - signatures over a SIGMA mac of the negotiated hash's length (32 bytes for SHA-256
 *   with MODP, 64 for SHA-512 with X25519).
 */
export function rawHandshake(group: DhGroupId, alg: SignAlg): () => void {
  const keyOpts = alg === "rsa-sha256" ? { rsaBits: 2048 } : {};
  const a = nodeSigner.generate(alg, keyOpts);
  const b = nodeSigner.generate(alg, keyOpts);
  const signA = nodeSigner.signerFor(alg, a.privateKey);
  const signB = nodeSigner.signerFor(alg, b.privateKey);
  const checkA = nodeSigner.verifierFor(alg, a.publicKey);
  const checkB = nodeSigner.verifierFor(alg, b.publicKey);
  const mac = systemRandom.bytes(group === "x25519" ? 64 : 32);
  const exp = (): Uint8Array => (group === "x25519" ? systemRandom.bytes(32) : exponent());
  const op = (): [Uint8Array, Uint8Array] => {
    const x = exp();
    const y = exp();
    const e = nodeCrypto.dhPublic(group, x);
    const d = nodeCrypto.dhPublic(group, y);
    const ka = nodeCrypto.dhShared(group, x, d);
    const kb = nodeCrypto.dhShared(group, y, e);
    const sa = signA(mac);
    const sb = signB(mac);
    if (!checkA(mac, sa) || !checkB(mac, sb)) throw new Error("rawHandshake: verify failed");
    return [ka, kb];
  };
  const [ka, kb] = op();
  if (!Buffer.from(ka).equals(Buffer.from(kb))) throw new Error("rawHandshake: shared secrets differ");
  return () => {
    op();
  };
}
