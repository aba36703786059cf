/**
 * Object encryption for the terminal client: a message signed and encrypted with S/MIME
 * (RFC 3923) instead of through an Encrypted Session, e.g. for a contact that is offline.
 * Wraps ObjectSession (src/smime/session.ts), XEP-0189 certificate publishing
 * (src/smime/publish.ts) and the trust store for certificate keys
 * (src/smime/trust-store.ts), behind the small {@link ObjectChannel} interface the
 * controller (./app.ts) uses, so the browser bundle (which has no S/MIME) never loads it.
 *
 * Spec: draft-ietf-xmpp-e2e-03 / RFC 3923 sections 3 (a CPIM message signed, then
 * encrypted, in <e2e/>), 6.2-6.3 (certificates obtained with XEP-0189 v0.14 section 6 from
 * the contact's PEP node, access model "presence", and bound to the sender's address by
 * id-on-xmppAddr), 6.9 (replay cache), 7 (errors); XEP-0116 v0.16 section 7.4 (a changed
 * or shared certificate key raises the same alerts as an ESession key; the user accepts
 * it with /trust N).
 *
 * The certificate keys live in their own trust database: a contact's ESession key and its
 * S/MIME certificate key are different keys for the same JID, and one trust store would
 * (rightly) call the second one a key change.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { StanzaConnection } from "../adapters/connection.js";
import { bareJid, type Clock, type Jid, type Random } from "../core/types.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { PubkeyService } from "../pubkey/index.js";
import { fromPem, generateIdentity, toPem } from "../smime/certs.js";
import { FileCertificateStore } from "../smime/certstore.js";
import type { SmimeIdentity } from "../smime/cms.js";
import { fetchCertificates, publishCertificate } from "../smime/publish.js";
import { ObjectSession } from "../smime/session.js";
import { TrustCertificateStore } from "../smime/trust-store.js";
import type { ReplayCache } from "../store/replay.js";
import type { FullStore } from "../store/trust-types.js";
import type { TrustAlert } from "../trust/index.js";
import { el, NS, type Element } from "../xml/index.js";

/** What the terminal client needs from object encryption. */
export interface ObjectChannel {
  /** Our certificate key's fingerprint (shown by /fingerprint). */
  readonly fingerprint: string | undefined;
  /** Publishes our certificate (XEP-0189 PEP, contacts only). */
  start(): Promise<void>;
  /** Sends `text` to `to` signed and encrypted (fetches the contact's certificate first if needed). */
  send(to: Jid, text: string): Promise<void>;
  /** Handles an inbound stanza carrying <e2e/> (or an error reply to one of ours). */
  receive(stanza: Element): Promise<void>;
  /** The user accepts a certificate key for `jid` after an alert. */
  accept(jid: Jid, fingerprint: string): Promise<void>;
  on(h: (e: ObjectChannelEvent) => void): void;
  close(): Promise<void>;
}

export type ObjectChannelEvent =
  | { readonly type: "message"; readonly from: Jid; readonly body: string; readonly signed: boolean; readonly encrypted: boolean }
  | { readonly type: "alert"; readonly peer: Jid; readonly alert: TrustAlert }
  /** A received object was refused (bad signature, replay, untrusted certificate ...). */
  | { readonly type: "rejected"; readonly from: string | undefined; readonly condition: string }
  | { readonly type: "peer-error"; readonly peer: string | undefined; readonly condition: string; readonly unsupported: boolean };

export interface ObjectMessagingOptions {
  readonly connection: StanzaConnection;
  readonly identity: SmimeIdentity;
  /** The trust database for certificate keys (see the banner). */
  readonly trustStore: FullStore;
  readonly certificatesPath: string;
  readonly replay: ReplayCache;
  readonly crypto: CryptoProvider;
  readonly clock: Clock;
  readonly random: Random;
}

/** Loads the S/MIME identity from `path` (PEM, 0600) or creates an EC P-256 one bound to `jid`. */
export async function loadOrCreateSmimeIdentity(path: string, jid: Jid, env: { clock: Clock; random: Random }): Promise<SmimeIdentity> {
  if (existsSync(path)) {
    const text = readFileSync(path, "utf8");
    const [certificate] = fromPem(text, "CERTIFICATE");
    const [privateKey] = fromPem(text, "PRIVATE KEY");
    if (certificate && privateKey) return { certificate, privateKey };
  }
  const id = await generateIdentity({ jid: bareJid(jid), keyType: "ec-p256" }, env);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, toPem(id.certificate, "CERTIFICATE") + toPem(id.privateKey, "PRIVATE KEY"), { mode: 0o600 });
  chmodSync(path, 0o600);
  return id;
}

export class ObjectMessaging implements ObjectChannel {
  private readonly session: ObjectSession;
  private readonly pubkeys: PubkeyService;
  private readonly certs: TrustCertificateStore;
  private readonly handlers = new Set<(e: ObjectChannelEvent) => void>();
  readonly fingerprint: string | undefined;
  private readonly account: Jid;

  constructor(private readonly o: ObjectMessagingOptions) {
    this.account = bareJid(o.connection.jid);
    this.certs = new TrustCertificateStore({
      account: this.account,
      store: o.trustStore,
      crypto: o.crypto,
      clock: o.clock,
      certificates: new FileCertificateStore(o.certificatesPath),
      onAlert: (alert) => this.emit({ type: "alert", peer: alert.jid, alert }),
    });
    this.fingerprint = this.certs.fingerprint(o.identity.certificate);
    this.session = new ObjectSession({ self: o.connection.jid, identity: o.identity, certificates: this.certs, replay: o.replay, clock: o.clock, random: o.random });
    this.pubkeys = new PubkeyService({ connection: o.connection, random: o.random, clock: o.clock, timeoutMs: 10_000 });
  }

  on(h: (e: ObjectChannelEvent) => void): void {
    this.handlers.add(h);
  }

  private emit(e: ObjectChannelEvent): void {
    for (const h of this.handlers) h(e);
  }

  async start(): Promise<void> {
    await publishCertificate(this.pubkeys, { certificate: this.o.identity.certificate, chain: [] }, { crypto: this.o.crypto });
  }

  async send(to: Jid, text: string): Promise<void> {
    const peer = bareJid(to);
    if ((await this.certs.certificatesFor(peer)).length === 0) {
      // RFC 3923 6.2: retrieve the certificate; the trust store records its key (first use
      // is accepted, a changed one raises an alert and is not used).
      const got = await fetchCertificates(this.pubkeys, peer, { crypto: this.o.crypto, now: this.o.clock.now() });
      for (const c of got.certificates) await this.certs.add(c.certificate);
    }
    await this.session.sendMessage(peer, el("message", { xmlns: NS.client, to: peer, type: "chat" }, el("body", {}, text)));
    await this.flush();
  }

  async receive(stanza: Element): Promise<void> {
    await this.session.receive(stanza);
    await this.flush();
  }

  async accept(jid: Jid, fingerprint: string): Promise<void> {
    await this.certs.trust.accept(this.account, bareJid(jid), fingerprint, this.o.clock.now());
  }

  private async flush(): Promise<void> {
    for (const out of this.session.drain()) {
      if (out.kind === "send") {
        await this.o.connection.send(out.stanza);
        continue;
      }
      const e = out.event;
      switch (e.type) {
        case "message":
          this.emit({ type: "message", from: bareJid(e.from), body: e.stanza.getChildText("body") ?? "", signed: e.signedBy !== undefined, encrypted: e.encrypted });
          break;
        case "presence":
          break;
        case "rejected":
          this.emit({ type: "rejected", from: e.from, condition: e.error.condition });
          break;
        case "peer-error":
          this.emit({ type: "peer-error", peer: e.peer, condition: e.e2eCondition ?? e.condition, unsupported: e.unsupported });
          break;
        default: {
          const never: never = e;
          return never;
        }
      }
    }
  }

  async close(): Promise<void> {
    await this.o.replay.close();
    await this.o.trustStore.close();
  }
}
