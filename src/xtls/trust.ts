/**
 * Pinned peer certificates ("trust on first use" only when the user allows it).
 *
 * Spec: draft-meyer-xmpp-e2e-encryption-02 section 2 item 7 ("during the TLS negotiation
 * each party simply needs to verify that the other party is presenting the same
 * certificate as used in previous sessions") and section 5 (leap of faith, checked
 * fingerprints, passwords; "A user might have different X.509 certificates for each
 * device": pins are kept per bare JID, several per peer).
 */
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import type { Fingerprint } from "../jingle/codec.js";
import { canonicalAlgo, fingerprintHex, sameFingerprint } from "../jingle/security.js";

export interface XtlsTrustStore {
  /** Whether `fp` is pinned for the bare JID `peer`. */
  isPinned(peer: string, fp: Fingerprint): Promise<boolean>;
  pin(peer: string, fp: Fingerprint): Promise<void>;
  pinned(peer: string): Promise<readonly Fingerprint[]>;
}

function norm(fp: Fingerprint): Fingerprint {
  return { algo: canonicalAlgo(fp.algo) ?? fp.algo, value: fingerprintHex(fp.value) ?? fp.value };
}

export class MemoryTrustStore implements XtlsTrustStore {
  protected readonly pins = new Map<string, Fingerprint[]>();
  isPinned(peer: string, fp: Fingerprint): Promise<boolean> {
    return Promise.resolve((this.pins.get(peer) ?? []).some((p) => sameFingerprint(p, fp)));
  }
  async pin(peer: string, fp: Fingerprint): Promise<void> {
    if (await this.isPinned(peer, fp)) return;
    this.pins.set(peer, [...(this.pins.get(peer) ?? []), norm(fp)]);
    this.changed();
  }
  pinned(peer: string): Promise<readonly Fingerprint[]> {
    return Promise.resolve(this.pins.get(peer) ?? []);
  }
  protected changed(): void {}
}

/** A JSON file (mode 0600) of pins; written atomically on each change. */
export class FileTrustStore extends MemoryTrustStore {
  constructor(private readonly path: string) {
    super();
    if (existsSync(path)) {
      const data = JSON.parse(readFileSync(path, "utf8")) as Record<string, Fingerprint[]>;
      for (const [k, v] of Object.entries(data)) if (Array.isArray(v)) this.pins.set(k, v);
    }
  }
  protected override changed(): void {
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.pins), null, 2), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, this.path);
  }
}
