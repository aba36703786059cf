/**
 * A minimal certificate store for object encryption: trust anchors (CA certificates or
 * pinned end-entity certificates) and the certificates known for each XMPP address.
 * Deliberately small and self-contained so that it can later be backed by the shared
 * identity/trust store (src/identity, src/trust).
 *
 * Spec: RFC 3923 section 6.1 (certificate enrollment is out of band) and 6.2 (retrieval:
 * "the certificate MAY be retrieved ... or obtained out of band"); section 6.3 (a
 * certificate is for the XMPP address in its id-on-xmppAddr, which is how it is indexed
 * here). RFC 5280 section 6.1.1 (trust anchors as path validation input).
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { bareJid, type Jid } from "../core/types.js";
import { toHex } from "../core/bytes.js";
import { fromPem, toPem, xmppAddrs } from "./certs.js";
import { SmimeError } from "./errors.js";

export interface CertificateStore {
  /** Trust anchors (DER). */
  anchors(): Promise<Uint8Array[]>;
  /** Certificates (DER) whose id-on-xmppAddr is `jid`'s bare JID. */
  certificatesFor(jid: Jid): Promise<Uint8Array[]>;
  /** Adds a certificate (indexed by its id-on-xmppAddr values); `anchor` makes it trusted. */
  add(cert: Uint8Array, opts?: { readonly anchor?: boolean }): Promise<void>;
  /** Forgets a certificate (and its anchor status). */
  remove(cert: Uint8Array): Promise<void>;
  /**
   * Optional: told by ObjectSession about the signer certificate of a received object,
   * once its signature verified and it names the sender `jid` (RFC 3923 section 6.3),
   * before the path to an anchor is checked. A store may record it (./trust-store.ts does,
   * with the XEP-0116 section 7.4 key alerts) and so make it an anchor.
   */
  observe?(cert: Uint8Array, jid: Jid, now: number): Promise<void>;
}

/** A certificate held by a store, with its anchor status. */
export interface StoredCertificate {
  readonly certificate: Uint8Array;
  readonly anchor: boolean;
}

/** A store that can enumerate what it holds. */
export interface ListableCertificateStore extends CertificateStore {
  list(): Promise<StoredCertificate[]>;
}

interface Entry {
  readonly der: Uint8Array;
  anchor: boolean;
  readonly addrs: readonly string[];
}

export class MemoryCertificateStore implements ListableCertificateStore {
  protected readonly entries = new Map<string, Entry>();

  async list(): Promise<StoredCertificate[]> {
    return [...this.entries.values()].map((e) => ({ certificate: e.der, anchor: e.anchor }));
  }

  async anchors(): Promise<Uint8Array[]> {
    return [...this.entries.values()].filter((e) => e.anchor).map((e) => e.der);
  }

  async certificatesFor(jid: Jid): Promise<Uint8Array[]> {
    const want = bareJid(jid).toLowerCase();
    return [...this.entries.values()].filter((e) => e.addrs.includes(want)).map((e) => e.der);
  }

  async add(cert: Uint8Array, opts: { readonly anchor?: boolean } = {}): Promise<void> {
    const k = toHex(cert);
    const existing = this.entries.get(k);
    if (existing !== undefined) {
      existing.anchor ||= opts.anchor === true;
    } else {
      const addrs = xmppAddrs(cert).map((a) => a.toLowerCase());
      this.entries.set(k, { der: new Uint8Array(cert), anchor: opts.anchor === true, addrs });
    }
    await this.persist();
  }

  async remove(cert: Uint8Array): Promise<void> {
    this.entries.delete(toHex(cert));
    await this.persist();
  }

  protected async persist(): Promise<void> {}
}

/**
 * The store in one PEM-in-JSON file (`{ "version": 1, "certificates": [{ "pem", "anchor" }] }`),
 * rewritten atomically (write to a temporary file, rename) with mode 0600.
 */
export class FileCertificateStore extends MemoryCertificateStore {
  constructor(private readonly path: string) {
    super();
    if (!existsSync(path)) return;
    let data: unknown;
    try {
      data = JSON.parse(readFileSync(path, "utf8"));
    } catch (e) {
      throw new SmimeError("malformed", "certificate store file is not JSON", { cause: e });
    }
    const list = (data as { certificates?: unknown }).certificates;
    if (!Array.isArray(list)) throw new SmimeError("malformed", "certificate store file has no certificates");
    for (const item of list as unknown[]) {
      const pem = (item as { pem?: unknown }).pem;
      if (typeof pem !== "string") throw new SmimeError("malformed", "certificate store entry without pem");
      for (const der of fromPem(pem, "CERTIFICATE"))
        this.entries.set(toHex(der), { der, anchor: (item as { anchor?: unknown }).anchor === true, addrs: xmppAddrs(der).map((a) => a.toLowerCase()) });
    }
  }

  protected override async persist(): Promise<void> {
    const certificates = [...this.entries.values()].map((e) => ({ pem: toPem(e.der, "CERTIFICATE"), anchor: e.anchor, addrs: e.addrs }));
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ version: 1, certificates }, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, this.path);
  }
}
