/**
 * Trust decisions over the trust store: what a peer's public key (or its absence) means
 * given everything we saw before, and the alerts the spec demands, as typed events.
 *
 * Spec: XEP-0116 v0.16
 * - section 7.4 "Key Associations" (#sec-associations):
 *   "Entities MUST associate one or more JIDs with each public key fingerprint that they
 *   store, and alert their users immediately if another JID presents the same public
 *   key" -> alert `key-shared`;
 *   "If a JID for which a key has previously been stored attempts to establish an
 *   ESession using a public key with a different fingerprint (or no key at all) then the
 *   entity MUST alert its user" -> alerts `key-changed`, `key-missing`;
 *   "Entities SHOULD associate a 'petname' with each public key fingerprint ... MUST
 *   present any public key petnames clearly to their users, and more prominently than
 *   any petname or nickname associated with the JID" -> `TrustVerdict.petname`,
 *   {@link displayName};
 * - section 7.3 "Verifying Keys" (#sec-keys): remember whether a key was validated by the
 *   user (full fingerprint compared out of band, or a SAS), and "whether or not the whole
 *   chain of retained secrets ... has ever been validated by the user verifying a SAS"
 *   -> `fingerprintChecked`, `sasConfirmed`, `chainVerified`;
 * - section 4.7.2 (#init-acceptbob-sas): "remember ... that a SAS match has not yet been
 *   confirmed and remind them at the start of each ESession" -> alert `sas-never-confirmed`;
 * - section 4.7.3 'hash' identification: find our copy of the key whose HASH the peer
 *   sent -> {@link TrustManager.findKeyByFingerprint}.
 * XEP-0189 v0.14 section 4 (revocations) -> `revoke`, alert `key-revoked`.
 *
 * Policy (documented in docs/identity-and-trust.md): the first key a JID ever presents is
 * accepted for that JID (trust on first use) unless the key is already known under other
 * JIDs; any later different key, and any key shared with other JIDs, stays unaccepted —
 * and keeps raising its alert at every session — until the user verifies or accepts it.
 */
import { bareJid, type Jid } from "../core/types.js";
import type { CryptoProvider, HashAlg } from "../crypto/provider.js";
import { inspectPublicKey } from "../identity/keys.js";
import { fingerprint as fingerprintOf, keyFingerprint, keyValueElement } from "../identity/keyvalue.js";
import type { PeerKey, TrustStore } from "../store/trust-types.js";
import type { RetainedSecretStore, SasStore } from "../store/types.js";

export const TRUST_ALERT_KINDS = ["key-changed", "key-missing", "key-shared", "key-revoked", "sas-never-confirmed"] as const;
export type TrustAlertKind = (typeof TRUST_ALERT_KINDS)[number];

/** An alert the user must see (XEP-0116 sections 7.4 and 4.7.2). */
export type TrustAlert =
  /** `jid` presented `presented`, not one of the keys accepted for it (`previous`). MUST alert. */
  | { readonly kind: "key-changed"; readonly account: Jid; readonly jid: Jid; readonly presented: string; readonly previous: readonly string[] }
  /** `jid` presented no key although keys were accepted for it (`previous`). MUST alert. */
  | { readonly kind: "key-missing"; readonly account: Jid; readonly jid: Jid; readonly previous: readonly string[] }
  /** `jid` presented a key already associated with `otherJids`. MUST alert immediately. */
  | {
      readonly kind: "key-shared";
      readonly account: Jid;
      readonly jid: Jid;
      readonly fingerprint: string;
      readonly otherJids: readonly Jid[];
      readonly petname?: string;
    }
  /** `jid` presented a key that was revoked at `revokedAt`. */
  | { readonly kind: "key-revoked"; readonly account: Jid; readonly jid: Jid; readonly fingerprint: string; readonly revokedAt: number }
  /** The users never confirmed a SAS with `jid` (and the key was never verified otherwise). */
  | { readonly kind: "sas-never-confirmed"; readonly account: Jid; readonly jid: Jid };

/**
 * How far the presented key can be trusted for this JID:
 * - "verified": accepted for the JID and validated by the user (fingerprint or SAS);
 * - "accepted": accepted for the JID (first use, or by the user), never validated;
 * - "untrusted": not accepted for the JID (a `key-changed` or `key-shared` alert is raised);
 * - "revoked": the key was revoked;
 * - "no-key": the session used no public-key authentication.
 */
export type KeyTrust = "verified" | "accepted" | "untrusted" | "revoked" | "no-key";

export interface TrustVerdict {
  readonly account: Jid;
  /** Bare JID. */
  readonly jid: Jid;
  /** XEP-0116 fingerprint (Base64 SHA-256 of the canonical Normalized <KeyValue/>). */
  readonly fingerprint?: string;
  /** Show this more prominently than the JID (XEP-0116 7.4). */
  readonly petname?: string;
  readonly trust: KeyTrust;
  readonly fingerprintChecked: boolean;
  /** A SAS was ever confirmed with this JID or in a session authenticated by this key. */
  readonly sasConfirmed: boolean;
  /** Some chain of retained secrets with this JID was ever validated by a SAS (7.3). */
  readonly chainVerified: boolean;
  /** No key had ever been seen for this JID before this session. */
  readonly firstContact: boolean;
  readonly alerts: readonly TrustAlert[];
}

export interface ObserveArgs {
  /** Our JID. */
  readonly account: Jid;
  /** The peer (full or bare; stored bare). */
  readonly jid: Jid;
  /** The peer's public key (SPKI) whose signature verified, or undefined if none was presented. */
  readonly publicKey: Uint8Array | undefined;
  readonly now: number;
}

export type TrustStoreDeps = TrustStore & SasStore & RetainedSecretStore;

export interface TrustManagerOptions {
  readonly store: TrustStoreDeps;
  readonly crypto: CryptoProvider;
  /** Called with every alert as it is raised (also returned in the verdict). */
  readonly onAlert?: (alert: TrustAlert) => void;
}

/** A JID's state for `trust list`. */
export interface PeerSummary {
  readonly jid: Jid;
  readonly keys: readonly PeerKey[];
  readonly sasConfirmed: boolean;
  readonly chainVerified: boolean;
}

export class TrustManager {
  private readonly store: TrustStoreDeps;
  private readonly crypto: CryptoProvider;
  private readonly onAlert: ((a: TrustAlert) => void) | undefined;

  constructor(opts: TrustManagerOptions) {
    this.store = opts.store;
    this.crypto = opts.crypto;
    this.onAlert = opts.onAlert;
  }

  /** The XEP-0116 fingerprint of a key (Base64 SHA-256 of its canonical KeyValue). */
  fingerprint(spki: Uint8Array): string {
    return keyFingerprint(this.crypto, spki);
  }

  /**
   * Evaluates what `jid` presented in a session whose signature verified, records it
   * (XEP-0116 7.4: remember every key received, with the JIDs that presented it) and
   * returns the verdict with every alert (also passed to `onAlert`). Throws
   * IdentityError for a key our policy refuses (the negotiation should have refused it
   * first), StoreError on storage failures.
   */
  async observe(args: ObserveArgs): Promise<TrustVerdict> {
    return this.evaluate(args, true);
  }

  /** Like {@link observe} but records nothing (e.g. to decide before accepting a session). */
  async check(args: ObserveArgs): Promise<TrustVerdict> {
    return this.evaluate(args, false);
  }

  private async evaluate(args: ObserveArgs, record: boolean): Promise<TrustVerdict> {
    const account = bareJid(args.account);
    const jid = bareJid(args.jid);
    const known = await this.store.keysForJid(account, jid);
    const acceptedLive = known.filter((k) => k.revokedAt === undefined && k.jids.some((l) => l.jid === jid && l.accepted));
    const sas = await this.store.getSasState(account, jid);
    const chainVerified = (await this.store.list(account, jid)).some((r) => r.verifiedChain);
    const alerts: TrustAlert[] = [];
    const base = { account, jid, chainVerified, firstContact: known.length === 0 };

    if (args.publicKey === undefined) {
      if (acceptedLive.length > 0) alerts.push({ kind: "key-missing", account, jid, previous: acceptedLive.map((k) => k.fingerprint) });
      if (!sas.confirmed) alerts.push({ kind: "sas-never-confirmed", account, jid });
      return this.done({ ...base, trust: "no-key", fingerprintChecked: false, sasConfirmed: sas.confirmed, alerts });
    }

    const { alg } = inspectPublicKey(args.publicKey);
    const fp = keyFingerprint(this.crypto, args.publicKey);
    const existing = await this.store.getPeerKey(account, fp);
    const link = existing?.jids.find((l) => l.jid === jid);
    const otherJids = (existing?.jids ?? []).filter((l) => l.jid !== jid).map((l) => l.jid);
    const revokedAt = existing?.revokedAt;
    const alreadyAccepted = link?.accepted === true;
    // Trust on first use: only a JID with no accepted live key, presenting a key nobody else uses.
    const accept = revokedAt === undefined && (alreadyAccepted || (acceptedLive.length === 0 && otherJids.length === 0));

    if (revokedAt !== undefined) alerts.push({ kind: "key-revoked", account, jid, fingerprint: fp, revokedAt });
    if (!alreadyAccepted) {
      const previous = acceptedLive.filter((k) => k.fingerprint !== fp).map((k) => k.fingerprint);
      if (previous.length > 0) alerts.push({ kind: "key-changed", account, jid, presented: fp, previous });
      if (otherJids.length > 0)
        alerts.push({
          kind: "key-shared",
          account,
          jid,
          fingerprint: fp,
          otherJids,
          ...(existing?.petname === undefined ? {} : { petname: existing.petname }),
        });
    }
    const fingerprintChecked = existing?.fingerprintCheckedAt !== undefined;
    const keySas = existing?.sasConfirmedAt !== undefined;
    const verified = fingerprintChecked || keySas;
    if (!sas.confirmed && !verified) alerts.push({ kind: "sas-never-confirmed", account, jid });

    if (record) await this.store.recordKeySeen({ account, jid, fingerprint: fp, alg, publicKey: args.publicKey, now: args.now, accepted: accept });
    const trust: KeyTrust = revokedAt !== undefined ? "revoked" : !accept ? "untrusted" : verified ? "verified" : "accepted";
    return this.done({
      ...base,
      fingerprint: fp,
      ...(existing?.petname === undefined ? {} : { petname: existing.petname }),
      trust,
      fingerprintChecked,
      sasConfirmed: sas.confirmed || keySas,
      alerts,
    });
  }

  private done(v: TrustVerdict): TrustVerdict {
    if (this.onAlert !== undefined) for (const a of v.alerts) this.onAlert(a);
    return v;
  }

  /**
   * XEP-0116 'hash' identification: our copy of the key whose `HASH(Normalized KeyValue)`
   * (Base64) is `fp`, looked up first among `jid`'s keys, then among all keys.
   */
  async findKeyByFingerprint(account: Jid, hashAlg: HashAlg, fp: string, jid?: Jid): Promise<PeerKey | undefined> {
    if (hashAlg === "sha256") {
      const direct = await this.store.getPeerKey(account, fp);
      if (direct !== undefined) return direct;
    }
    const candidates = [...(jid === undefined ? [] : await this.store.keysForJid(account, jid)), ...(await this.store.listPeerKeys(account))];
    for (const k of candidates) {
      try {
        if (fingerprintOf(this.crypto, hashAlg, keyValueElement(k.publicKey, { minRsaBits: 0, minDsaBits: 0, minDsaQBits: 0 })) === fp) return k;
      } catch {
        // a key stored under an older policy: skip
      }
    }
    return undefined;
  }

  /**
   * The user compared the full fingerprint with the peer out of band (XEP-0116 7.3): the
   * key is verified and accepted for `jid`. Rejects StoreError "not-found" for an unknown key.
   */
  async verifyFingerprint(account: Jid, jid: Jid, fingerprint: string, now: number): Promise<void> {
    await this.store.markFingerprintChecked(account, fingerprint, now);
    await this.store.acceptKeyForJid(account, fingerprint, jid, now);
  }

  /**
   * The users confirmed the SAS of a session with `jid` (XEP-0116 4.7.2), authenticated
   * by `fingerprint` if a key was presented; `retainedSecretId` is the retained secret the
   * session stored, whose chain is now verified (7.3).
   */
  async confirmSas(args: { account: Jid; jid: Jid; now: number; fingerprint?: string; retainedSecretId?: string }): Promise<void> {
    await this.store.setSasConfirmed(args.account, args.jid, args.now);
    if (args.fingerprint !== undefined) {
      await this.store.markKeySasConfirmed(args.account, args.fingerprint, args.now);
      await this.store.acceptKeyForJid(args.account, args.fingerprint, args.jid, args.now);
    }
    if (args.retainedSecretId !== undefined) await this.store.markChainVerified(args.retainedSecretId);
  }

  /** The user accepts that `jid` uses the key (answers a key-changed / key-shared alert). */
  async accept(account: Jid, jid: Jid, fingerprint: string, now: number): Promise<void> {
    await this.store.acceptKeyForJid(account, fingerprint, jid, now);
  }

  async setPetname(account: Jid, fingerprint: string, petname: string | undefined): Promise<void> {
    await this.store.setPetname(account, fingerprint, petname);
  }

  /** We stop trusting a peer key (by our decision or the owner's XEP-0189 revocation). */
  async revoke(account: Jid, fingerprint: string, now: number): Promise<void> {
    await this.store.revokePeerKey(account, fingerprint, now);
  }

  /** Every peer JID we hold keys for, with its keys and verification state. */
  async list(account: Jid): Promise<PeerSummary[]> {
    const keys = await this.store.listPeerKeys(account);
    const jids = [...new Set(keys.flatMap((k) => k.jids.map((l) => l.jid)))].sort();
    const out: PeerSummary[] = [];
    for (const jid of jids) out.push(await this.peer(account, jid));
    return out;
  }

  async peer(account: Jid, jid: Jid): Promise<PeerSummary> {
    const bare = bareJid(jid);
    return {
      jid: bare,
      keys: await this.store.keysForJid(account, bare),
      sasConfirmed: (await this.store.getSasState(account, bare)).confirmed,
      chainVerified: (await this.store.list(account, bare)).some((r) => r.verifiedChain),
    };
  }
}

/** What to show for a peer: the key's petname before (more prominently than) the JID. */
export function displayName(v: Pick<TrustVerdict, "jid" | "petname">): string {
  return v.petname === undefined ? v.jid : `${v.petname} (${v.jid})`;
}

/** A one-line, user-facing description of an alert (no key material beyond fingerprints). */
export function describeAlert(a: TrustAlert): string {
  switch (a.kind) {
    case "key-changed":
      return `WARNING: ${a.jid} presented a different public key (${a.presented}) than before (${a.previous.join(", ")}). Verify it before trusting this session.`;
    case "key-missing":
      return `WARNING: ${a.jid} presented no public key, although it used ${a.previous.join(", ")} before.`;
    case "key-shared":
      return `WARNING: ${a.jid} presented a key${a.petname === undefined ? "" : ` named "${a.petname}"`} already used by ${a.otherJids.join(", ")}.`;
    case "key-revoked":
      return `WARNING: ${a.jid} presented a revoked key (${a.fingerprint}).`;
    case "sas-never-confirmed":
      return `Reminder: you never confirmed a SAS with ${a.jid}; compare it out of band.`;
  }
}
