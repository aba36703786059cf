/**
 * A CertificateStore backed by the shared trust store (src/store TrustStore, decisions and
 * alerts by src/trust TrustManager): the keys of peers' certificates are remembered with
 * the JIDs that presented them, exactly like ESession keys, so the XEP-0116 section 7.4
 * alerts (key changed, key shared with another JID, key revoked) also fire for object
 * encryption, and which end-entity certificates are trusted follows the same decisions
 * (trust on first use, fingerprint verification, acceptance, revocation).
 *
 * Spec:
 * - RFC 3923 section 6.1-6.2 (certificates obtained out of band or retrieved, e.g. with
 *   XEP-0189: src/smime/publish.ts), 6.3 (a certificate is for the XMPP addresses in its
 *   id-on-xmppAddr: those are the JIDs its key is recorded with) and 6.4 ("the receiving
 *   agent MUST verify" the signer's certificate: here, a path to an explicit anchor, or a
 *   certificate whose key the trust store accepts for every address it names);
 * - XEP-0116 v0.16 section 7.4: "Entities MUST associate one or more JIDs with each public
 *   key fingerprint that they store, and alert their users immediately if another JID
 *   presents the same public key"; "If a JID for which a key has previously been stored
 *   attempts to establish an ESession using a public key with a different fingerprint ...
 *   the entity MUST alert its user" (here: presents an object or a certificate);
 *   section 7.3 (remember whether the user validated a key);
 * - XEP-0189 v0.14 section 4 (a revoked key is never used again) and section 12 (the
 *   client's "secure library of the public keys it associates with other users");
 * - RFC 2779 section 5.4.6/5.4.7 via RFC 3923: we only encrypt to keys the user accepts
 *   for the recipient (confidentiality to the chosen recipients).
 *
 * Rules:
 * - `add(cert)` of a certificate naming XMPP addresses records its key for each of them
 *   (TrustManager.observe: first use is accepted, a changed or shared key is not and
 *   alerts); `add(cert, { anchor: true })` is the user's explicit decision: the key is
 *   also accepted for those addresses. CA certificates are explicit anchors only.
 * - `observe(cert, jid)` (called by ObjectSession for a verified signer) records the key
 *   with the sender, and keeps the certificate.
 * - `anchors()`: the explicit anchors whose key is not revoked, plus every held
 *   end-entity certificate whose key is accepted (and not revoked) for every address it
 *   names.
 * - `certificatesFor(jid)`: the certificates naming `jid` whose key is not revoked and is
 *   accepted for `jid`, or that chain to an explicit anchor (a CA-issued certificate).
 *
 * RSA, EC P-256 (the default key type of src/smime/certs.ts generateIdentity, recorded as
 * `ecdsa-p256-sha256` with its XML-DSig 1.1 ECKeyValue fingerprint), DSA and Ed25519
 * certificate keys are recorded. Keys the trust store cannot hold (other EC curves,
 * RSA-PSS, RSA below the key policy) are NOT recorded: such certificates are trusted
 * exactly as by MemoryCertificateStore, through explicit anchors only, and are reported
 * to `onUnrecorded`. XEP-0116 4.7.2's `sas-never-confirmed`
 * reminder is an ESession notion (there is no SAS for objects) and is not forwarded; the
 * verdict's `fingerprintChecked` tells whether the user ever verified the key.
 */
import "reflect-metadata";
import * as asn1js from "asn1js";
import { bareJid, type Clock, type Jid } from "../core/types.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { IdentityError } from "../identity/errors.js";
import { type TrustAlert, TrustManager, type TrustStoreDeps, type TrustVerdict } from "../trust/index.js";
import { validateChain, xmppAddrs } from "./certs.js";
import type { ListableCertificateStore, StoredCertificate } from "./certstore.js";
import { parseCertificate } from "./cms.js";
import { SmimeError } from "./errors.js";

const BASIC_CONSTRAINTS = "2.5.29.19";

export interface TrustCertificateStoreOptions {
  /** Our bare JID: the trust store's account. */
  readonly account: Jid;
  /** The shared store (MemoryStore or openSqliteStore()). */
  readonly store: TrustStoreDeps;
  readonly crypto: CryptoProvider;
  readonly clock: Clock;
  /** Where the certificates themselves live: MemoryCertificateStore or FileCertificateStore. */
  readonly certificates: ListableCertificateStore;
  /** Every XEP-0116 7.4 alert raised for a certificate key (key-changed, key-shared, key-revoked). */
  readonly onAlert?: (alert: TrustAlert) => void;
  /** Every verdict, with the certificate it was computed for. */
  readonly onVerdict?: (verdict: TrustVerdict, certificate: Uint8Array) => void;
  /** A certificate whose key the trust store cannot record (e.g. P-384, RSA-PSS, weak RSA; see the banner). */
  readonly onUnrecorded?: (certificate: Uint8Array, reason: string) => void;
}

/** Whether a certificate is a CA certificate (basicConstraints cA, RFC 5280 4.2.1.9). */
export function isCaCertificate(certDer: Uint8Array): boolean {
  const cert = parseCertificate(certDer);
  for (const ext of cert.extensions ?? []) {
    if (ext.extnID !== BASIC_CONSTRAINTS) continue;
    const asn = asn1js.fromBER(ext.extnValue.valueBlock.valueHexView);
    if (asn.offset === -1 || !(asn.result instanceof asn1js.Sequence)) return false;
    const first = asn.result.valueBlock.value[0];
    return first instanceof asn1js.Boolean && first.getValue();
  }
  return false;
}

function spkiOf(certDer: Uint8Array): Uint8Array {
  return new Uint8Array(parseCertificate(certDer).subjectPublicKeyInfo.toSchema().toBER(false));
}

const norm = (j: string): Jid => bareJid(j as Jid).toLowerCase() as Jid;

export class TrustCertificateStore implements ListableCertificateStore {
  /** Exposed so that the application can verify, accept, name or revoke certificate keys. */
  readonly trust: TrustManager;
  private readonly account: Jid;

  constructor(private readonly o: TrustCertificateStoreOptions) {
    this.account = norm(o.account);
    this.trust = new TrustManager({
      store: o.store,
      crypto: o.crypto,
      onAlert: (a) => {
        if (a.kind !== "sas-never-confirmed") o.onAlert?.(a);
      },
    });
  }

  /** The XEP-0116 fingerprint of a certificate's key, or undefined when the trust store cannot hold it. */
  fingerprint(certDer: Uint8Array): string | undefined {
    try {
      return this.trust.fingerprint(spkiOf(certDer));
    } catch (e) {
      if (e instanceof IdentityError) return undefined;
      throw e;
    }
  }

  private async record(certDer: Uint8Array, jid: Jid, now: number): Promise<TrustVerdict | undefined> {
    let verdict: TrustVerdict;
    try {
      verdict = await this.trust.observe({ account: this.account, jid: norm(jid), publicKey: spkiOf(certDer), now });
    } catch (e) {
      if (!(e instanceof IdentityError)) throw e;
      this.o.onUnrecorded?.(certDer, e.condition);
      return undefined;
    }
    const shown = { ...verdict, alerts: verdict.alerts.filter((a) => a.kind !== "sas-never-confirmed") };
    this.o.onVerdict?.(shown, certDer);
    return shown;
  }

  /** The peer key's state for `jid`: "accepted" (and not revoked), "revoked", or "other". */
  private async keyState(certDer: Uint8Array, jid: Jid): Promise<"accepted" | "revoked" | "other"> {
    const fp = this.fingerprint(certDer);
    if (fp === undefined) return "other";
    const pk = await this.o.store.getPeerKey(this.account, fp);
    if (pk === undefined) return "other";
    if (pk.revokedAt !== undefined) return "revoked";
    const j = norm(jid);
    return pk.jids.some((l) => l.jid.toLowerCase() === j && l.accepted) ? "accepted" : "other";
  }

  private async revoked(certDer: Uint8Array): Promise<boolean> {
    const fp = this.fingerprint(certDer);
    if (fp === undefined) return false;
    return (await this.o.store.getPeerKey(this.account, fp))?.revokedAt !== undefined;
  }

  async list(): Promise<StoredCertificate[]> {
    return this.o.certificates.list();
  }

  async anchors(): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    for (const c of await this.o.certificates.list()) {
      if (await this.revoked(c.certificate)) continue;
      if (c.anchor) {
        out.push(c.certificate);
        continue;
      }
      const addrs = xmppAddrs(c.certificate);
      if (addrs.length === 0 || isCaCertificate(c.certificate)) continue;
      let all = true;
      for (const a of addrs) if ((await this.keyState(c.certificate, a as Jid)) !== "accepted") all = false;
      if (all) out.push(c.certificate);
    }
    return out;
  }

  async certificatesFor(jid: Jid): Promise<Uint8Array[]> {
    const candidates = await this.o.certificates.certificatesFor(jid);
    if (candidates.length === 0) return [];
    const held = await this.o.certificates.list();
    const explicit = held.filter((c) => c.anchor).map((c) => c.certificate);
    // Only CA certificates can be intermediates; other end-entity certificates with the
    // same subject name would mislead pkijs's path building.
    const intermediates = held.map((c) => c.certificate).filter(isCaCertificate);
    const now = this.o.clock.now();
    const out: Uint8Array[] = [];
    for (const c of candidates) {
      const state = await this.keyState(c, jid);
      if (state === "revoked") continue;
      if (state === "accepted") {
        out.push(c);
        continue;
      }
      try {
        await validateChain(c, { anchors: explicit, intermediates, at: now });
        out.push(c);
      } catch (e) {
        if (!(e instanceof SmimeError)) throw e;
      }
    }
    return out;
  }

  /**
   * Adds a certificate and records its key for every address it names (alerts as the
   * trust store decides); with `anchor: true` the user vouches for it: the key is also
   * accepted for those addresses.
   */
  async add(cert: Uint8Array, opts: { readonly anchor?: boolean } = {}): Promise<void> {
    await this.o.certificates.add(cert, opts);
    if (isCaCertificate(cert)) return;
    const now = this.o.clock.now();
    for (const a of xmppAddrs(cert)) {
      const v = await this.record(cert, a as Jid, now);
      if (v?.fingerprint !== undefined && opts.anchor === true && v.trust !== "revoked")
        await this.trust.accept(this.account, norm(a), v.fingerprint, now);
    }
  }

  async remove(cert: Uint8Array): Promise<void> {
    await this.o.certificates.remove(cert);
  }

  /** ObjectSession's hook: a verified signer naming `jid`; its key is recorded and the certificate kept. */
  async observe(cert: Uint8Array, jid: Jid, now: number): Promise<void> {
    await this.o.certificates.add(cert);
    await this.record(cert, jid, now);
  }
}
