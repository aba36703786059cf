/**
 * TLS 1.2 record protection for the *_CBC_SHA suites: MAC-then-encrypt with HMAC-SHA1,
 * AES-CBC with an explicit per-record IV, and a padding check that does not branch on
 * the padding.
 *
 * Spec: RFC 5246 (TLS 1.2) section 6.2.3.1 (MAC over seq_num + type + version + length +
 * fragment), 6.2.3.2 (GenericBlockCipher: IV, content, MAC, padding, padding_length; "the
 * receiver MUST check this padding"; an error in padding MUST be reported as
 * bad_record_mac, and to avoid the timing attack the MAC is computed even when the
 * padding is bad, as if the padding were of length zero), 6.1 (sequence numbers start at
 * 0 after each ChangeCipherSpec and MUST NOT wrap), 6.2.1/6.2.3 (length limits).
 *
 * Lucky 13 (AlFardan and Paterson, 2013): JavaScript cannot make HMAC take constant time,
 * so after the real MAC we hash the bytes the padding covered through a throwaway HMAC,
 * which keeps the number of SHA-1 compressions roughly independent of the padding length.
 * This is the "pseudo constant time" mitigation; docs/tls-srp.md discusses what remains.
 */
import { concat } from "../core/bytes.js";
import type { Random } from "../core/types.js";
import { u16, u64, u8 } from "./codec.js";
import type { TlsCrypto } from "./crypto.js";
import { TlsAbort } from "./errors.js";
import type { DirectionKeys } from "./keys.js";

export const MAX_PLAINTEXT = 2 ** 14;
/** TLSCiphertext.length MUST NOT exceed 2^14 + 2048 (RFC 5246 section 6.2.3). */
export const MAX_CIPHERTEXT = 2 ** 14 + 2048;
const MAC_LENGTH = 20;
const BLOCK = 16;

export class CipherState {
  private seq = 0n;
  constructor(
    private readonly crypto: TlsCrypto,
    private readonly keys: DirectionKeys,
  ) {}

  private nextSeq(): bigint {
    const s = this.seq;
    // RFC 5246 section 6.1: sequence numbers MUST NOT wrap (2^64 - 1 records).
    if (s === 0xffffffffffffffffn) throw new TlsAbort("internal_error", "sequence number exhausted");
    this.seq = s + 1n;
    return s;
  }

  private mac(seq: bigint, type: number, version: number, content: Uint8Array): Uint8Array {
    return this.crypto.hmac("sha1", this.keys.macKey, u64(seq), u8(type), u16(version), u16(content.length), content);
  }

  /** Returns the fragment of a TLSCiphertext (IV + ciphertext); the caller adds the header. */
  protect(random: Random, type: number, version: number, content: Uint8Array): Uint8Array {
    const mac = this.mac(this.nextSeq(), type, version, content);
    const used = content.length + MAC_LENGTH + 1;
    const padLength = (BLOCK - (used % BLOCK)) % BLOCK;
    const padding = new Uint8Array(padLength + 1).fill(padLength);
    const iv = random.bytes(BLOCK);
    return concat(iv, this.crypto.aesCbcEncrypt(this.keys.encKey, iv, concat(content, mac, padding)));
  }

  /** Decrypts and authenticates; throws bad_record_mac on any failure (one error for all). */
  unprotect(type: number, version: number, fragment: Uint8Array): Uint8Array {
    const seq = this.nextSeq();
    // Lengths are public: a fragment that cannot hold IV + one MAC + padding_length, or is
    // not whole blocks, is rejected at once (RFC 5246 section 6.2.3.2).
    const bodyLength = fragment.length - BLOCK;
    if (bodyLength < MAC_LENGTH + 1 || bodyLength % BLOCK !== 0) throw new TlsAbort("bad_record_mac", "bad record length");
    const plain = this.crypto.aesCbcDecrypt(this.keys.encKey, fragment.subarray(0, BLOCK), fragment.subarray(BLOCK));
    const L = plain.length;
    const padLength = plain[L - 1] ?? 0;
    // good = 1 when padLength + 1 + MAC_LENGTH <= L, computed without a branch.
    let good = ((L - (padLength + 1 + MAC_LENGTH)) >>> 31) ^ 1;
    // Check every possible padding byte (up to 256), masking those beyond padLength.
    const toCheck = Math.min(256, L);
    let diff = 0;
    for (let i = 1; i <= toCheck; i++) {
      const inPad = ((padLength - (i - 1)) >>> 31) ^ 1; // 1 when i - 1 <= padLength
      diff |= inPad * ((plain[L - i] ?? 0) ^ padLength);
    }
    good &= ((diff - 1) >>> 31) & 1; // 1 when diff === 0
    // With bad padding, proceed as if the padding were empty (section 6.2.3.2).
    const effectivePad = good * (padLength + 1) + (1 - good) * 1;
    const contentLength = L - effectivePad - MAC_LENGTH;
    const content = plain.subarray(0, Math.max(0, contentLength));
    const received = plain.subarray(content.length, content.length + MAC_LENGTH);
    const expected = this.mac(seq, type, version, content);
    // Equalize SHA-1 work across padding lengths (see banner).
    this.crypto.hmac("sha1", this.keys.macKey, plain.subarray(0, L - MAC_LENGTH - content.length));
    let macDiff = 0;
    for (let i = 0; i < MAC_LENGTH; i++) macDiff |= (received[i] ?? 0) ^ (expected[i] ?? 0);
    if ((good & (((macDiff - 1) >>> 31) & 1)) !== 1) throw new TlsAbort("bad_record_mac", "record authentication failed");
    return content;
  }
}
