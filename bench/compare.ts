/**
 * Side-by-side figures against other end-to-end messaging protocols, in this process, for
 * a 200-byte message (issue 9): one op = the sender encrypts, the receiver decrypts, with
 * a session already established, on both sides of every ratio.
 *
 * - ESession (XEP-0200 v0.2 sections 6 and 8) with the default policy two xmpp-e2e peers
 *   negotiate (X25519, AES-256-CTR, HMAC-SHA-512), the stanza serialized and parsed as a
 *   stream would.
 * - The Signal protocol's Double Ratchet (signal.org/docs/specifications/doubleratchet)
 *   in @privacyresearch/libsignal-protocol-typescript (TypeScript) and
 *   @signalapp/libsignal-client (Rust, through N-API): a session set up with X3DH / PQXDH
 *   and one reply, so every measured message is an ordinary SignalMessage.
 * - OpenPGP.js (RFC 9580, curve25519 keys): sign + encrypt, decrypt + verify of the same
 *   200 bytes, the per-message cost of OpenPGP-based XMPP encryption.
 *
 * Each figure's ratio is ESession's median rate over the other implementation's median
 * rate (issue 9 target: >= 5 against the TypeScript Signal implementation). The ratio
 * to the node:crypto limit is run.ts's "esession stanza 200B" figure.
 */
import { webcrypto } from "node:crypto";
import * as signalTs from "@privacyresearch/libsignal-protocol-typescript";
import * as signalRs from "@signalapp/libsignal-client";
import * as openpgp from "openpgp";
import { DEFAULT_POLICY } from "../src/esession/session.js";
import { bodyText, NO_REKEY_FREQ, stanzaRoundTrip } from "./esession-ops.js";
import { type Figure, interleaved, type InterleavedOptions } from "./lib.js";

const MESSAGE_BYTES = 200;
/** Issue 9: ESession stanza throughput at least 5x the TypeScript Signal implementation. */
export const SIGNAL_TS_TARGET = 5;
const OPTS: InterleavedOptions = { unit: "msgs/s", rounds: 5, sampleMs: 250 };

const message = (): Uint8Array<ArrayBuffer> => new TextEncoder().encode(bodyText(MESSAGE_BYTES));

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// ---------------------------------------------------------------------------------------
// @privacyresearch/libsignal-protocol-typescript
// ---------------------------------------------------------------------------------------

/** The library's storage interface, in memory (its tests do the same). */
class TsStore implements signalTs.StorageType {
  private readonly data = new Map<string, unknown>();
  constructor(
    private readonly identity: signalTs.KeyPairType,
    private readonly registrationId: number,
  ) {}
  getIdentityKeyPair = async (): Promise<signalTs.KeyPairType> => this.identity;
  getLocalRegistrationId = async (): Promise<number> => this.registrationId;
  isTrustedIdentity = async (): Promise<boolean> => true;
  saveIdentity = async (address: string, key: ArrayBuffer): Promise<boolean> => {
    this.data.set(`identity:${address}`, key);
    return false;
  };
  loadPreKey = async (id: string | number): Promise<signalTs.KeyPairType | undefined> =>
    this.data.get(`prekey:${id}`) as signalTs.KeyPairType | undefined;
  storePreKey = async (id: string | number, kp: signalTs.KeyPairType): Promise<void> => void this.data.set(`prekey:${id}`, kp);
  removePreKey = async (id: string | number): Promise<void> => void this.data.delete(`prekey:${id}`);
  storeSession = async (address: string, record: string): Promise<void> => void this.data.set(`session:${address}`, record);
  loadSession = async (address: string): Promise<string | undefined> => this.data.get(`session:${address}`) as string | undefined;
  loadSignedPreKey = async (id: string | number): Promise<signalTs.KeyPairType | undefined> =>
    this.data.get(`signed:${id}`) as signalTs.KeyPairType | undefined;
  storeSignedPreKey = async (id: string | number, kp: signalTs.KeyPairType): Promise<void> => void this.data.set(`signed:${id}`, kp);
  removeSignedPreKey = async (id: string | number): Promise<void> => void this.data.delete(`signed:${id}`);
}

/** One op = Alice encrypts 200 B, Bob decrypts it (an established Double Ratchet session). */
async function signalTsRoundTrip(): Promise<() => Promise<void>> {
  signalTs.setWebCrypto(webcrypto as unknown as Crypto);
  const { KeyHelper, SessionBuilder, SessionCipher, SignalProtocolAddress } = signalTs;
  const aliceStore = new TsStore(await KeyHelper.generateIdentityKeyPair(), KeyHelper.generateRegistrationId());
  const bobIdentity = await KeyHelper.generateIdentityKeyPair();
  const bobStore = new TsStore(bobIdentity, KeyHelper.generateRegistrationId());
  const preKey = await KeyHelper.generatePreKey(1);
  const signed = await KeyHelper.generateSignedPreKey(bobIdentity, 1);
  await bobStore.storePreKey(1, preKey.keyPair);
  await bobStore.storeSignedPreKey(1, signed.keyPair);
  const bobAddress = new SignalProtocolAddress("bob", 1);
  const aliceAddress = new SignalProtocolAddress("alice", 1);
  await new SessionBuilder(aliceStore, bobAddress).processPreKey({
    identityKey: bobIdentity.pubKey,
    registrationId: await bobStore.getLocalRegistrationId(),
    preKey: { keyId: 1, publicKey: preKey.keyPair.pubKey },
    signedPreKey: { keyId: 1, publicKey: signed.keyPair.pubKey, signature: signed.signature },
  });
  const aliceCipher = new SessionCipher(aliceStore, bobAddress);
  const bobCipher = new SessionCipher(bobStore, aliceAddress);
  const plain = message();

  // The first message carries the X3DH pre-key; Bob's reply completes the session.
  const first = await aliceCipher.encrypt(plain.buffer);
  await bobCipher.decryptPreKeyWhisperMessage(first.body ?? "", "binary");
  const reply = await bobCipher.encrypt(plain.buffer);
  await aliceCipher.decryptWhisperMessage(reply.body ?? "", "binary");

  const op = async (): Promise<Uint8Array> => {
    const ct = await aliceCipher.encrypt(plain.buffer);
    if (ct.type !== 1) throw new Error(`signal-ts: message type ${ct.type}, expected 1 (SignalMessage)`);
    return new Uint8Array(await bobCipher.decryptWhisperMessage(ct.body ?? "", "binary"));
  };
  if (!sameBytes(await op(), plain)) throw new Error("signal-ts: round trip changed the message");
  return async () => {
    await op();
  };
}

// ---------------------------------------------------------------------------------------
// @signalapp/libsignal-client
// ---------------------------------------------------------------------------------------

class RsStores {
  readonly sessions = new (class extends signalRs.SessionStore {
    private readonly m = new Map<string, signalRs.SessionRecord>();
    async saveSession(a: signalRs.ProtocolAddress, r: signalRs.SessionRecord): Promise<void> {
      this.m.set(a.toString(), r);
    }
    async getSession(a: signalRs.ProtocolAddress): Promise<signalRs.SessionRecord | null> {
      return this.m.get(a.toString()) ?? null;
    }
    async getExistingSessions(as: signalRs.ProtocolAddress[]): Promise<signalRs.SessionRecord[]> {
      return as.flatMap((a) => this.m.get(a.toString()) ?? []);
    }
  })();
  readonly identity: signalRs.IdentityKeyStore;
  readonly preKeys = new (class extends signalRs.PreKeyStore {
    private readonly m = new Map<number, signalRs.PreKeyRecord>();
    async savePreKey(id: number, r: signalRs.PreKeyRecord): Promise<void> {
      this.m.set(id, r);
    }
    async getPreKey(id: number): Promise<signalRs.PreKeyRecord> {
      const r = this.m.get(id);
      if (!r) throw new Error("no such pre-key");
      return r;
    }
    async removePreKey(id: number): Promise<void> {
      this.m.delete(id);
    }
  })();
  readonly signedPreKeys = new (class extends signalRs.SignedPreKeyStore {
    private readonly m = new Map<number, signalRs.SignedPreKeyRecord>();
    async saveSignedPreKey(id: number, r: signalRs.SignedPreKeyRecord): Promise<void> {
      this.m.set(id, r);
    }
    async getSignedPreKey(id: number): Promise<signalRs.SignedPreKeyRecord> {
      const r = this.m.get(id);
      if (!r) throw new Error("no such signed pre-key");
      return r;
    }
  })();
  readonly kyberPreKeys = new (class extends signalRs.KyberPreKeyStore {
    private readonly m = new Map<number, signalRs.KyberPreKeyRecord>();
    async saveKyberPreKey(id: number, r: signalRs.KyberPreKeyRecord): Promise<void> {
      this.m.set(id, r);
    }
    async getKyberPreKey(id: number): Promise<signalRs.KyberPreKeyRecord> {
      const r = this.m.get(id);
      if (!r) throw new Error("no such kyber pre-key");
      return r;
    }
    async markKyberPreKeyUsed(): Promise<void> {}
  })();

  constructor(readonly keyPair: signalRs.IdentityKeyPair, registrationId: number) {
    const known = new Map<string, signalRs.PublicKey>();
    this.identity = new (class extends signalRs.IdentityKeyStore {
      async getIdentityKey(): Promise<signalRs.PrivateKey> {
        return keyPair.privateKey;
      }
      async getLocalRegistrationId(): Promise<number> {
        return registrationId;
      }
      async saveIdentity(a: signalRs.ProtocolAddress, k: signalRs.PublicKey): Promise<signalRs.IdentityChange> {
        const had = known.get(a.toString());
        known.set(a.toString(), k);
        return had && !had.equals(k) ? signalRs.IdentityChange.ReplacedExisting : signalRs.IdentityChange.NewOrUnchanged;
      }
      async isTrustedIdentity(): Promise<boolean> {
        return true;
      }
      async getIdentity(a: signalRs.ProtocolAddress): Promise<signalRs.PublicKey | null> {
        return known.get(a.toString()) ?? null;
      }
    })();
  }
}

/** One op = Alice encrypts 200 B, Bob decrypts it, with libsignal's Rust core. */
async function signalRsRoundTrip(): Promise<() => Promise<void>> {
  const alice = new RsStores(signalRs.IdentityKeyPair.generate(), 1);
  const bob = new RsStores(signalRs.IdentityKeyPair.generate(), 2);
  const aliceAddress = signalRs.ProtocolAddress.new("alice", 1);
  const bobAddress = signalRs.ProtocolAddress.new("bob", 1);
  const preKey = signalRs.PrivateKey.generate();
  const signedPreKey = signalRs.PrivateKey.generate();
  const signedSig = bob.keyPair.privateKey.sign(signedPreKey.getPublicKey().serialize());
  const kyber = signalRs.KEMKeyPair.generate();
  const kyberSig = bob.keyPair.privateKey.sign(kyber.getPublicKey().serialize());
  await bob.preKeys.savePreKey(1, signalRs.PreKeyRecord.new(1, preKey.getPublicKey(), preKey));
  await bob.signedPreKeys.saveSignedPreKey(1, signalRs.SignedPreKeyRecord.new(1, 0, signedPreKey.getPublicKey(), signedPreKey, signedSig));
  await bob.kyberPreKeys.saveKyberPreKey(1, signalRs.KyberPreKeyRecord.new(1, 0, kyber, kyberSig));
  const bundle = signalRs.PreKeyBundle.new(
    2, 1, 1, preKey.getPublicKey(), 1, signedPreKey.getPublicKey(), signedSig, bob.keyPair.publicKey, 1, kyber.getPublicKey(), kyberSig,
  );
  await signalRs.processPreKeyBundle(bundle, bobAddress, aliceAddress, alice.sessions, alice.identity);
  const plain = message();

  const first = await signalRs.signalEncrypt(plain, bobAddress, aliceAddress, alice.sessions, alice.identity);
  await signalRs.signalDecryptPreKey(
    signalRs.PreKeySignalMessage.deserialize(first.serialize()),
    aliceAddress, bobAddress, bob.sessions, bob.identity, bob.preKeys, bob.signedPreKeys, bob.kyberPreKeys,
  );
  const reply = await signalRs.signalEncrypt(plain, aliceAddress, bobAddress, bob.sessions, bob.identity);
  await signalRs.signalDecrypt(signalRs.SignalMessage.deserialize(reply.serialize()), bobAddress, aliceAddress, alice.sessions, alice.identity);

  const op = async (): Promise<Uint8Array> => {
    const ct = await signalRs.signalEncrypt(plain, bobAddress, aliceAddress, alice.sessions, alice.identity);
    if (ct.type() !== signalRs.CiphertextMessageType.Whisper) throw new Error("signal-rs: expected an ordinary SignalMessage");
    return signalRs.signalDecrypt(signalRs.SignalMessage.deserialize(ct.serialize()), aliceAddress, bobAddress, bob.sessions, bob.identity);
  };
  if (!sameBytes(await op(), plain)) throw new Error("signal-rs: round trip changed the message");
  return async () => {
    await op();
  };
}

// ---------------------------------------------------------------------------------------
// OpenPGP.js
// ---------------------------------------------------------------------------------------

/** One op = Alice signs + encrypts 200 B to Bob (binary packets), Bob decrypts + verifies. */
async function openpgpRoundTrip(): Promise<() => Promise<void>> {
  const gen = (name: string) =>
    openpgp.generateKey({ type: "curve25519", userIDs: [{ name, email: `${name}@example.org` }], format: "object" });
  const alice = await gen("alice");
  const bob = await gen("bob");
  const plain = message();
  const op = async (): Promise<Uint8Array> => {
    const ct = await openpgp.encrypt({
      message: await openpgp.createMessage({ binary: plain }),
      encryptionKeys: bob.publicKey,
      signingKeys: alice.privateKey,
      format: "binary",
    });
    const { data, signatures } = await openpgp.decrypt({
      message: await openpgp.readMessage({ binaryMessage: ct }),
      decryptionKeys: bob.privateKey,
      verificationKeys: alice.publicKey,
      expectSigned: true,
      format: "binary",
    });
    await signatures[0]?.verified;
    return data;
  };
  if (!sameBytes(await op(), plain)) throw new Error("openpgp: round trip changed the message");
  return async () => {
    await op();
  };
}

export async function figures(): Promise<Figure[]> {
  const esession = stanzaRoundTrip(MESSAGE_BYTES, { ...DEFAULT_POLICY, rekeyFreq: NO_REKEY_FREQ });
  const out: Figure[] = [];
  const others: Array<[string, () => Promise<() => Promise<void>>]> = [
    ["signal-ts (libsignal-protocol-typescript)", signalTsRoundTrip],
    ["signal-rs (libsignal-client, native)", signalRsRoundTrip],
    ["openpgp.js (curve25519, sign+encrypt)", openpgpRoundTrip],
  ];
  for (const [name, setup] of others) {
    let baseline: () => Promise<void>;
    try {
      baseline = await setup();
    } catch (e) {
      process.stdout.write(`  skipped ${name}: ${e instanceof Error ? e.message : String(e)}\n`);
      continue;
    }
    out.push(await interleaved(`esession 200B vs ${name}`, esession, `${name} 200B`, baseline, OPTS));
  }
  return out;
}
