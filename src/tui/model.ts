/**
 * The terminal client's view model: contacts with presence, conversations, their
 * protection and verification state, and the open alerts with the actions that resolve
 * them. Plain data, no I/O: the renderer (./screen.ts) draws it, the app (./app.ts)
 * changes it.
 *
 * Spec: RFC 6121 sections 2 (roster), 3 (subscriptions) and 4.7 (presence <show/>);
 * XEP-0116 v0.16 sections 4.7.2 (SAS comparison), 7.3-7.4 (trust alerts: "MUST alert
 * the user"), 8 (disclosure: "MUST immediately and clearly inform their users");
 * XEP-0210 section 3 ("the user SHOULD be able to see at a glance" that a session is
 * encrypted and whether the other party is verified).
 */
import type { FullJid, Jid } from "../core/types.js";

/** What protects the conversation right now (shown in its header). */
export type Protection =
  /** Nothing: messages would go in the clear, so the client negotiates before sending. */
  | { readonly kind: "none" }
  | { readonly kind: "negotiating" }
  /** XEP-0116/0217 + XEP-0200 stanza encryption. */
  | { readonly kind: "esession"; readonly suite: string; readonly sas: string | undefined; readonly auth: string };

export type Verification =
  /** The SAS (or the key's fingerprint) was compared and confirmed. */
  | "verified"
  /** Encrypted, but the users have not compared the SAS of this session (or chain). */
  | "unverified"
  /** Not applicable (not encrypted). */
  | "n/a";

export type Via = "esession" | "object" | "clear";

export type LineKind = "in" | "out" | "info" | "warn" | "error" | "unprotected";

export interface Line {
  readonly at: number;
  readonly kind: LineKind;
  readonly text: string;
  /** For in/out: how the message travelled (ESession stanza encryption, RFC 3923 object, or in the clear). */
  readonly via?: Via;
}

export interface Transfer {
  readonly id: number;
  readonly direction: "out" | "in";
  readonly name: string;
  readonly total: number;
  done: number;
  state: "offered" | "running" | "done" | "failed";
}

export interface Conversation {
  readonly bare: Jid;
  /** The full JID the session runs with (or the resource we will negotiate with). */
  peer: FullJid | undefined;
  readonly lines: Line[];
  unread: number;
  protection: Protection;
  verification: Verification;
  /** The peer's key fingerprint (Base64 SHA-256), when it identified itself with a key. */
  fingerprint: string | undefined;
  trust: string | undefined;
  /** Typed while the session was being negotiated; sent once it is established. */
  readonly queued: string[];
  transfer: Transfer | undefined;
  /** An XTLS tunnel (draft-meyer-xmpp-e2e-encryption-02) open with the peer, e.g. "TLSv1.3 x509". */
  xtls: string | undefined;
}

export interface Resource {
  /** RFC 6121 4.7.2.1: away, chat, dnd, xa; "online" when absent. */
  show: string;
  status: string | undefined;
  priority: number;
  /** Whether the resource advertises xmpp-e2e (XEP-0115 caps node). */
  e2e: boolean;
}

export interface Contact {
  readonly bare: Jid;
  name: string | undefined;
  subscription: string;
  /** We asked to see its presence and wait for the answer. */
  pendingOut: boolean;
  /** It asked to see our presence (answer with /allow). */
  pendingIn: boolean;
  readonly resources: Map<string, Resource>;
}

export type AlertKind =
  | "key-changed"
  | "key-missing"
  | "key-shared"
  | "key-revoked"
  | "sas-never-confirmed"
  | "retained-secret-mismatch"
  | "disclosure"
  | "certificate-unverified"
  | "file-offer"
  | "subscription";

export interface Alert {
  readonly id: number;
  readonly kind: AlertKind;
  readonly bare: Jid;
  readonly text: string;
  /** The commands that resolve it, e.g. ["/trust 3", "/dismiss 3"]. */
  readonly actions: readonly string[];
  /** The fingerprint the alert is about (key-changed, key-shared, certificate). */
  readonly fingerprint?: string;
  /** Which keys it is about: ESession identity keys (default) or S/MIME certificate keys. */
  readonly scope?: "esession" | "object";
}

export class Model {
  readonly contacts = new Map<string, Contact>();
  readonly conversations = new Map<string, Conversation>();
  /** Lines not tied to a conversation (connection, help, errors). */
  readonly console: Line[] = [];
  readonly alerts: Alert[] = [];
  active: Jid | undefined;
  status = "connecting";
  account = "";
  /** Our own key fingerprint, if we have one. */
  ownFingerprint: string | undefined;
  private nextAlert = 1;

  constructor(private readonly now: () => number) {}

  contact(bare: Jid): Contact {
    let c = this.contacts.get(bare);
    if (!c) {
      c = { bare, name: undefined, subscription: "none", pendingOut: false, pendingIn: false, resources: new Map() };
      this.contacts.set(bare, c);
    }
    return c;
  }

  conversation(bare: Jid): Conversation {
    let c = this.conversations.get(bare);
    if (!c) {
      c = {
        bare,
        peer: undefined,
        lines: [],
        unread: 0,
        protection: { kind: "none" },
        verification: "n/a",
        fingerprint: undefined,
        trust: undefined,
        queued: [],
        transfer: undefined,
        xtls: undefined,
      };
      this.conversations.set(bare, c);
    }
    return c;
  }

  /** Adds a line to `bare`'s conversation (or the console when undefined). */
  say(bare: Jid | undefined, kind: LineKind, text: string, via?: Via): void {
    const line: Line = { at: this.now(), kind, text, ...(via ? { via } : {}) };
    if (bare === undefined) {
      this.console.push(line);
      trim(this.console);
      return;
    }
    const c = this.conversation(bare);
    c.lines.push(line);
    trim(c.lines);
    if (this.active !== bare && (kind === "in" || kind === "unprotected")) c.unread++;
  }

  alert(a: Omit<Alert, "id">): Alert {
    // One open alert per (peer, kind, fingerprint): a reminder is not repeated on screen.
    const same = this.alerts.find((x) => x.bare === a.bare && x.kind === a.kind && x.fingerprint === a.fingerprint && x.scope === a.scope);
    if (same) return same;
    const full: Alert = { ...a, id: this.nextAlert++ };
    this.alerts.push(full);
    return full;
  }

  dismiss(id: number): Alert | undefined {
    const i = this.alerts.findIndex((a) => a.id === id);
    if (i === -1) return undefined;
    const [a] = this.alerts.splice(i, 1);
    return a;
  }

  dismissWhere(pred: (a: Alert) => boolean): void {
    for (let i = this.alerts.length - 1; i >= 0; i--) {
      const a = this.alerts[i];
      if (a && pred(a)) this.alerts.splice(i, 1);
    }
  }

  /** The contacts in display order: online first, then by JID. */
  sortedContacts(): Contact[] {
    return [...this.contacts.values()].sort((a, b) => {
      const on = Number(b.resources.size > 0) - Number(a.resources.size > 0);
      return on !== 0 ? on : a.bare.localeCompare(b.bare);
    });
  }
}

/** The best resource of a contact (RFC 6121 8.5.2.1.1: highest priority, then availability). */
export function bestResource(c: Contact): string | undefined {
  const rank = (r: Resource): number => (r.show === "chat" || r.show === "online" ? 3 : r.show === "away" ? 2 : r.show === "dnd" ? 1 : 0);
  let best: [string, Resource] | undefined;
  for (const e of c.resources) {
    if (!best) best = e;
    else if (e[1].priority > best[1].priority || (e[1].priority === best[1].priority && (Number(e[1].e2e) - Number(best[1].e2e) || rank(e[1]) - rank(best[1])) > 0))
      best = e;
  }
  return best?.[0];
}

const MAX_LINES = 500;

function trim(lines: Line[]): void {
  if (lines.length > MAX_LINES) lines.splice(0, lines.length - MAX_LINES);
}
