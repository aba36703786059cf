/**
 * The terminal client's controller: wires a StanzaConnection, a SecureClient (ESessions),
 * a TrustManager and an XtlsClient (file transfer) to the view model, and runs the
 * user's commands. No terminal I/O here (./screen.ts and ./input.ts do that), so the
 * same controller is tested directly on the in-memory switchboard and under tmux.
 *
 * Spec:
 * - XEP-0116 v0.16 / XEP-0217 v0.1 / XEP-0200 v0.2 through SecureClient: a message the
 *   user types is never sent in the clear; without a session one is negotiated first
 *   (XEP-0210 section 3: "the ease-of-use of https:"); the SAS is shown until the users
 *   confirm it (4.7.2: remind "at the start of each ESession ... until they confirm");
 *   section 7.4 trust alerts and section 8 disclosure are alerts with actions.
 * - draft-meyer-xmpp-e2e-encryption-02 (XTLS) through XtlsClient: /send opens a TLS
 *   tunnel over Jingle + IBB; section 5 leap of faith only on the user's word.
 *   Inside the tunnel a file is framed as one JSON header line
 *   `{"type":"xmpp-e2e-file","name":...,"size":N}\n` followed by exactly N bytes (this
 *   client's own framing; XEP-0234 file offers are not implemented).
 * - RFC 6121: roster get/push (2.1.3, 2.1.6: a push MUST be answered and ignored unless it
 *   comes from our own account), subscriptions (3.1, 3.2: "subscribed" pre-approval when we
 *   asked first), presence (4.7) with XEP-0115 caps to show which contacts run xmpp-e2e.
 * - RFC 6120 8.4: an iq get/set nobody serves is answered with service-unavailable.
 * - draft-ietf-xmpp-e2e-03 / RFC 3923 through an injected ObjectChannel (./objects.ts):
 *   /object sends one message signed and encrypted with S/MIME; received <e2e/> objects
 *   are shown with the indicator "[object]"; certificate key alerts (XEP-0116 7.4) are
 *   alerts with /trust N like ESession keys.
 */
import { basename, join } from "node:path";
import { createReadStream, createWriteStream, existsSync, mkdirSync, statSync } from "node:fs";
import type { Duplex } from "node:stream";
import { attrOf, errorReply, type StanzaConnection } from "../adapters/connection.js";
import { CAPS_NODE, type ClientEvent, SecureClient, type SecureClientOptions } from "../client/secure-client.js";
import { bareJid, type FullJid, type Jid, jidParts, parseFullJid, parseJid } from "../core/types.js";
import type { NegotiatedOptions } from "../esession/session.js";
import type { Fingerprint } from "../jingle/codec.js";
import type { FullStore } from "../store/trust-types.js";
import { describeAlert, type TrustAlert, type TrustManager, type TrustVerdict } from "../trust/index.js";
import { el, type Element, NS } from "../xml/index.js";
import type { XtlsClient, XtlsTunnel } from "../xtls/client.js";
import { COMMANDS, helpLines } from "./commands.js";
import type { ObjectChannel, ObjectChannelEvent } from "./objects.js";
import { type Alert, bestResource, type Conversation, Model } from "./model.js";

const NS_ROSTER = "jabber:iq:roster";
const NS_JINGLE = "urn:xmpp:jingle:1";
const NS_IBB = "http://jabber.org/protocol/ibb";
const NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items";

export class TuiError extends Error {
  override readonly name = "TuiError";
  constructor(
    readonly condition: "usage" | "no-conversation" | "no-session" | "offline" | "not-found" | "insecure-permissions" | "bad-config",
    message: string,
  ) {
    super(message);
  }
}

export interface TuiAppOptions {
  readonly connection: StanzaConnection;
  readonly store: FullStore;
  readonly trust: TrustManager;
  /** Extra SecureClient options (identity, verifier, policy, profile, crypto ...). */
  readonly client?: Omit<SecureClientOptions, "connection" | "store" | "trust" | "handlesUnprotectedIq">;
  /** File transfer over XTLS; /send is unavailable without it. */
  readonly xtls?: XtlsClient;
  /** Object encryption (RFC 3923); /object is unavailable without it. */
  readonly objects?: ObjectChannel;
  /** Where received files go (created on demand). */
  readonly downloads: string;
  readonly now?: () => number;
}

interface PendingOffer {
  readonly resolve: (ok: boolean) => void;
}

export class TuiApp {
  readonly model: Model;
  readonly client: SecureClient;
  private readonly listeners = new Set<() => void>();
  private readonly offers = new Map<number, PendingOffer>();
  private iqSeq = 0;
  private readonly iqWaiters = new Map<string, (s: Element) => void>();
  private transferSeq = 0;
  private quitting = false;
  private readonly now: () => number;

  constructor(private readonly o: TuiAppOptions) {
    this.now = o.now ?? Date.now;
    this.model = new Model(this.now);
    this.model.account = o.connection.jid;
    this.client = new SecureClient({
      ...o.client,
      connection: o.connection,
      store: o.store,
      trust: o.trust,
      handlesUnprotectedIq: true,
    });
    this.client.on((e) => {
      try {
        this.onClientEvent(e);
      } finally {
        this.changed();
      }
    });
    o.xtls?.on((e) => {
      if (e.type === "tunnel") void this.receiveFile(e.tunnel);
      else if ("error" in e) this.model.say(bareJid(e.peer), "error", `XTLS tunnel failed: ${e.error.message}`);
      // Other XtlsClient events (e.g. a transport fallback) need no action from the user.
      this.changed();
    });
    o.objects?.on((e) => {
      this.onObjectEvent(e);
      this.changed();
    });
  }

  /** Called after every change of the model. */
  onChange(l: () => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  /** Fetches the roster and announces our presence with caps (RFC 6121 2.2, 4.2). */
  async start(): Promise<void> {
    this.model.status = "online";
    this.model.say(undefined, "info", `Logged in as ${this.o.connection.jid}. Type /help for commands.`);
    try {
      const res = await this.iq(el("iq", { type: "get" }, el("query", { xmlns: NS_ROSTER })));
      for (const item of res.getChild("query", NS_ROSTER)?.getChildren("item") ?? []) this.rosterItem(item);
    } catch {
      this.model.say(undefined, "warn", "the server did not return the contact list");
    }
    await this.client.announce();
    // Publishing our S/MIME certificate to our contacts runs in the background.
    if (this.o.objects)
      this.o.objects.start().catch(() => this.model.say(undefined, "warn", "could not publish your S/MIME certificate: /object messages to you cannot be encrypted"));
    this.changed();
  }

  get quitRequested(): boolean {
    return this.quitting;
  }

  /** Ends every session (XEP-0217: before going offline) and detaches. */
  async close(): Promise<void> {
    await this.client.close();
    this.o.xtls?.detach();
    await this.o.objects?.close();
    for (const o of this.offers.values()) o.resolve(false);
  }

  // ---- input ----

  /** A line the user typed: a /command or a message for the open conversation. */
  async submit(line: string): Promise<void> {
    const t = line.trim();
    if (t === "") return;
    try {
      if (t.startsWith("/")) await this.command(t);
      else await this.sendText(t);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      this.model.say(this.model.active, "error", msg);
    }
    this.changed();
  }

  private async command(t: string): Promise<void> {
    const [head = "", ...rest] = t.slice(1).split(/\s+/);
    const arg = rest.join(" ");
    const cmd = head.toLowerCase();
    const conv = (): Conversation => {
      const a = this.model.active;
      if (a === undefined) throw new TuiError("no-conversation", "open a conversation first: /open JID (see /contacts)");
      return this.model.conversation(a);
    };
    switch (cmd) {
      case "help":
      case "?":
        for (const l of helpLines(arg || undefined)) this.model.say(this.model.active, "info", l);
        return;
      case "open":
        this.open(arg);
        return;
      case "next":
        this.cycle(1);
        return;
      case "prev":
        this.cycle(-1);
        return;
      case "close":
        this.model.active = undefined;
        return;
      case "encrypt":
        this.background(this.negotiate(conv()));
        return;
      case "sas":
        this.showSas(conv());
        return;
      case "confirm":
      case "yes":
        await this.confirm(conv());
        return;
      case "reject":
      case "no":
        await this.reject(conv());
        return;
      case "rekey": {
        const c = conv();
        await this.client.rekey(this.sessionPeer(c));
        this.model.say(c.bare, "info", "keys replaced (XEP-0200 re-key)");
        return;
      }
      case "end": {
        const c = conv();
        await this.client.terminate(this.sessionPeer(c));
        return;
      }
      case "status":
        this.status(conv());
        return;
      case "alerts":
        this.listAlerts();
        return;
      case "trust":
        await this.trustAlert(alertArg(arg));
        return;
      case "trust-cert":
        this.answerOffer(alertArg(arg), true, "certificate-unverified");
        return;
      case "accept":
        this.answerOffer(alertArg(arg), true, "file-offer");
        return;
      case "dismiss": {
        const id = alertArg(arg);
        const a = this.model.dismiss(id);
        if (!a) throw new TuiError("not-found", `no alert ${id} (see /alerts)`);
        this.offers.get(id)?.resolve(false);
        this.offers.delete(id);
        return;
      }
      case "fingerprint":
        this.fingerprints();
        return;
      case "object":
        await this.sendObject(conv(), arg);
        return;
      case "send":
        // In the background: it waits for the peer (and for our own answers to alerts).
        this.background(this.sendFile(conv(), arg));
        return;
      case "add":
        await this.add(rest[0] ?? "", rest.slice(1).join(" ") || undefined);
        return;
      case "allow":
        await this.allow(arg);
        return;
      case "contacts":
        this.listContacts();
        return;
      case "quit":
      case "exit":
        this.quitting = true;
        return;
      default:
        throw new TuiError("usage", `unknown command /${cmd}; commands: ${COMMANDS.map((c) => `/${c.name}`).join(" ")}`);
    }
  }

  // ---- conversations ----

  /** Opens the conversation with a contact (JID or number in the contact list). */
  open(arg: string): Conversation {
    if (!arg) throw new TuiError("usage", "usage: /open JID (or the number shown in the contact list)");
    let bare: Jid;
    let full: FullJid | undefined;
    if (/^[0-9]+$/.test(arg)) {
      const c = this.model.sortedContacts()[Number(arg) - 1];
      if (!c) throw new TuiError("not-found", `no contact number ${arg}`);
      bare = c.bare;
    } else {
      const j = parseJid(arg);
      bare = bareJid(j);
      if (jidParts(j).resource !== undefined) full = parseFullJid(j);
    }
    const c = this.model.conversation(bare);
    if (full && !this.client.session(c.peer ?? "")?.isActive) c.peer = full;
    this.model.active = bare;
    c.unread = 0;
    return c;
  }

  private cycle(step: number): void {
    const keys = [...this.model.conversations.keys()] as Jid[];
    if (keys.length === 0) return;
    const i = this.model.active === undefined ? -1 : keys.indexOf(this.model.active);
    const next = keys[(i + step + keys.length) % keys.length];
    if (next !== undefined) {
      this.model.active = next;
      this.model.conversation(next).unread = 0;
    }
  }

  /** Moves to the conversation `step` away; for the keyboard shortcuts. */
  switchConversation(step: number): void {
    this.cycle(step);
    this.changed();
  }

  /** The full JID to negotiate with: the session's, the one opened, or the best online resource. */
  private targetPeer(c: Conversation): FullJid {
    if (c.peer && this.client.session(c.peer)) return c.peer;
    const contact = this.model.contacts.get(c.bare);
    const res = contact ? bestResource(contact) : undefined;
    if (res !== undefined) return parseFullJid(`${c.bare}/${res}`);
    if (c.peer) return c.peer;
    throw new TuiError("offline", `${c.bare} is not online: an encrypted session needs the contact online (or /open ${c.bare}/RESOURCE)`);
  }

  private sessionPeer(c: Conversation): FullJid {
    if (c.peer && this.client.session(c.peer)) return c.peer;
    throw new TuiError("no-session", "no encrypted session in this conversation (/encrypt starts one)");
  }

  private async sendText(text: string): Promise<void> {
    const bare = this.model.active;
    if (bare === undefined) throw new TuiError("no-conversation", "open a conversation first: /open JID (see /contacts, /help)");
    const c = this.model.conversation(bare);
    const s = c.peer ? this.client.session(c.peer) : undefined;
    if (c.peer && s?.isActive) {
      await this.client.sendMessage(c.peer, text);
      this.model.say(bare, "out", text, "esession");
      return;
    }
    // Never in the clear: queue it and negotiate (XEP-0210 3.x, "ease-of-use of https:").
    c.queued.push(text);
    this.model.say(bare, "info", `queued until the session is encrypted: ${text}`);
    if (c.protection.kind !== "negotiating") this.background(this.negotiate(c));
  }

  /** Runs a long task without blocking the input line; its failure is shown, never thrown. */
  private background(p: Promise<void>): void {
    p.catch((e: unknown) => {
      this.model.say(this.model.active, "error", e instanceof Error ? e.message : String(e));
    }).finally(() => this.changed());
  }

  async negotiate(c: Conversation): Promise<void> {
    const peer = this.targetPeer(c);
    if (this.client.session(peer)?.isActive) {
      this.model.say(c.bare, "info", "already encrypted");
      return;
    }
    c.peer = peer;
    c.protection = { kind: "negotiating" };
    this.model.say(c.bare, "info", `negotiating an Encrypted Session with ${peer} ...`);
    this.changed();
    try {
      await this.client.startSession(peer);
      // Resolved only once the peer's key passed the trust check: queued messages go now,
      // in order, encrypted (never to a session that is about to be ended as untrusted).
      for (const text of c.queued.splice(0)) {
        try {
          await this.client.sendMessage(peer, text);
          this.model.say(c.bare, "out", text, "esession");
        } catch (err) {
          this.model.say(c.bare, "error", `NOT sent (${err instanceof Error ? err.message : String(err)}): ${text}`);
        }
        this.changed();
      }
    } catch (e) {
      c.protection = { kind: "none" };
      c.verification = "n/a";
      const msg = e instanceof Error ? e.message : String(e);
      this.model.say(c.bare, "error", `could not encrypt the conversation: ${msg}`);
      this.dropQueued(c);
    }
  }

  private dropQueued(c: Conversation): void {
    for (const q of c.queued.splice(0)) this.model.say(c.bare, "error", `NOT sent (no encrypted session): ${q}`);
  }

  private showSas(c: Conversation): void {
    if (c.protection.kind !== "esession") throw new TuiError("no-session", "no encrypted session in this conversation");
    if (c.protection.sas === undefined) this.model.say(c.bare, "info", "this session has no SAS (3-message negotiation authenticated by keys)");
    else this.model.say(c.bare, "info", `SAS: ${c.protection.sas}  (read it to ${c.bare} by voice or in person; then /confirm if it matches, /reject if not)`);
  }

  private async confirm(c: Conversation): Promise<void> {
    const peer = this.sessionPeer(c);
    await this.client.confirmSas(peer);
    c.verification = "verified";
    this.model.dismissWhere((a) => a.bare === c.bare && (a.kind === "sas-never-confirmed" || a.kind === "retained-secret-mismatch"));
    this.model.say(c.bare, "info", "SAS confirmed: this conversation is verified (remembered for later sessions)");
  }

  private async reject(c: Conversation): Promise<void> {
    const peer = this.sessionPeer(c);
    this.model.say(c.bare, "warn", "SAS mismatch: ending the session. Someone may be intercepting; contact your peer another way.");
    await this.client.terminate(peer);
  }

  private status(c: Conversation): void {
    const lines: string[] = [`conversation with ${c.bare}${c.peer ? ` (${c.peer})` : ""}`];
    const p = c.protection;
    if (p.kind === "esession") lines.push(`  encrypted: ESession (XEP-0116/0217/0200), ${p.suite}, authenticated by ${p.auth}`);
    else lines.push(`  encrypted: ${p.kind === "negotiating" ? "negotiating" : "no"}`);
    if (c.xtls) lines.push(`  XTLS tunnel: ${c.xtls}`);
    lines.push(`  verified: ${c.verification}${c.trust ? `, key ${c.trust}` : ""}`);
    if (c.fingerprint) lines.push(`  their key: ${c.fingerprint}`);
    for (const l of lines) this.model.say(c.bare, "info", l);
  }

  private fingerprints(): void {
    const a = this.model.active;
    this.model.say(a, "info", `your key: ${this.model.ownFingerprint ?? "(none: sessions are verified by SAS only)"}`);
    if (this.o.objects?.fingerprint) this.model.say(a, "info", `your S/MIME certificate key (object encryption): ${this.o.objects.fingerprint}`);
    if (a !== undefined) {
      const c = this.model.conversation(a);
      this.model.say(a, "info", `${a}'s key: ${c.fingerprint ?? "(none presented in this session)"}`);
    }
  }

  // ---- alerts ----

  private listAlerts(): void {
    const a = this.model.active;
    if (this.model.alerts.length === 0) this.model.say(a, "info", "no open alerts");
    for (const x of this.model.alerts) this.model.say(a, "warn", `[${x.id}] ${x.text}  -> ${x.actions.join(" | ")}`);
  }

  private async trustAlert(id: number): Promise<void> {
    const a = this.model.alerts.find((x) => x.id === id);
    if (!a) throw new TuiError("not-found", `no alert ${id} (see /alerts)`);
    if ((a.kind !== "key-changed" && a.kind !== "key-shared") || a.fingerprint === undefined)
      throw new TuiError("usage", `alert ${id} is not about a key to accept`);
    if (a.scope === "object") {
      if (!this.o.objects) throw new TuiError("usage", "object encryption is not available");
      await this.o.objects.accept(a.bare, a.fingerprint);
      this.model.dismiss(id);
      this.model.say(a.bare, "info", `certificate key ${a.fingerprint} accepted for ${a.bare} (object encryption)`);
      return;
    }
    await this.o.trust.accept(bareJid(parseJid(this.model.account)), a.bare, a.fingerprint, this.now());
    this.model.dismiss(id);
    this.model.say(a.bare, "info", `key ${a.fingerprint} accepted for ${a.bare}; /encrypt to start a new session`);
  }

  private answerOffer(id: number, ok: boolean, kind: Alert["kind"]): void {
    const a = this.model.alerts.find((x) => x.id === id);
    const o = this.offers.get(id);
    if (!a || !o || a.kind !== kind) throw new TuiError("not-found", `no ${kind} alert ${id} (see /alerts)`);
    this.offers.delete(id);
    this.model.dismiss(id);
    o.resolve(ok);
  }

  /** Shows an alert the user answers; resolves with the answer. */
  private ask(a: Omit<Alert, "id" | "actions">, actions: (id: number) => string[]): Promise<boolean> {
    const alert = this.model.alert({ ...a, actions: [] });
    const full: Alert = { ...alert, actions: actions(alert.id) };
    this.model.alerts.splice(this.model.alerts.indexOf(alert), 1, full);
    this.model.say(a.bare, "warn", `[${full.id}] ${a.text}  -> ${full.actions.join(" | ")}`);
    this.changed();
    return new Promise<boolean>((resolve) => this.offers.set(full.id, { resolve }));
  }

  private raise(a: Omit<Alert, "id" | "actions">, actions: (id: number) => string[]): void {
    const alert = this.model.alert({ ...a, actions: [] });
    if (alert.actions.length > 0) return;
    const full: Alert = { ...alert, actions: actions(alert.id) };
    this.model.alerts.splice(this.model.alerts.indexOf(alert), 1, full);
    this.model.say(a.bare, "warn", `[${full.id}] ${a.text}  -> ${full.actions.join(" | ")}`);
  }

  // ---- object encryption (RFC 3923) ----

  private async sendObject(c: Conversation, text: string): Promise<void> {
    const objects = this.o.objects;
    if (!objects) throw new TuiError("usage", "object encryption is not available in this client");
    if (!text) throw new TuiError("usage", "usage: /object TEXT");
    this.model.say(c.bare, "info", `signing and encrypting for ${c.bare} (S/MIME) ...`);
    this.changed();
    try {
      await objects.send(c.bare, text);
      this.model.say(c.bare, "out", text, "object");
    } catch (e) {
      const cond = typeof e === "object" && e !== null && "condition" in e ? String((e as { condition: unknown }).condition) : "";
      const why = cond === "no-recipient-certificate" ? `no trusted certificate for ${c.bare} (they must run an S/MIME client and share presence with you; see /alerts)` : e instanceof Error ? e.message : String(e);
      this.model.say(c.bare, "error", `NOT sent (object encryption): ${why}: ${text}`);
    }
  }

  private onObjectEvent(e: ObjectChannelEvent): void {
    switch (e.type) {
      case "message": {
        const how = [e.signed ? "signed" : "", e.encrypted ? "encrypted" : ""].filter(Boolean).join("+");
        this.model.say(e.from, "in", e.body, "object");
        if (!e.encrypted) this.model.say(e.from, "warn", `that message was only ${how || "neither signed nor encrypted"}: others could read it`);
        if (this.model.active === undefined) this.model.active = e.from;
        return;
      }
      case "alert": {
        const a = e.alert;
        if (a.kind === "sas-never-confirmed") return;
        const bare = bareJid(e.peer);
        const text = `${describeAlert(a).replace(/^WARNING: /, "")} (S/MIME certificate)`;
        const fingerprint = a.kind === "key-changed" ? a.presented : a.kind === "key-shared" || a.kind === "key-revoked" ? a.fingerprint : undefined;
        const accept = a.kind === "key-changed" || a.kind === "key-shared";
        this.raise({ kind: a.kind, bare, text, scope: "object", ...(fingerprint ? { fingerprint } : {}) }, (id) => (accept ? [`/trust ${id}`, `/dismiss ${id}`] : [`/dismiss ${id}`]));
        return;
      }
      case "rejected": {
        let bare: Jid | undefined;
        try {
          bare = e.from ? bareJid(parseJid(e.from)) : undefined;
        } catch {
          bare = undefined;
        }
        this.model.say(bare, "error", `an object-encrypted message${e.from ? ` from ${e.from}` : ""} was refused: ${e.condition}`);
        return;
      }
      case "peer-error":
        this.model.say(undefined, "error", `${e.peer ?? "the peer"} could not open your object-encrypted message: ${e.condition}${e.unsupported ? " (their client does not support it)" : ""}`);
        return;
      default: {
        const never: never = e;
        return never;
      }
    }
  }

  // ---- ESession events ----

  private onClientEvent(e: ClientEvent): void {
    switch (e.type) {
      case "progress":
        return;
      case "established": {
        const bare = bareJid(e.peer);
        const c = this.model.conversation(bare);
        c.peer = e.peer;
        const auth = e.peerKey ? "their key + SAS" : "SAS";
        c.protection = { kind: "esession", suite: suiteLabel(e.options), sas: e.sas, auth: e.sas === undefined ? "keys" : auth };
        c.verification = "unverified";
        c.fingerprint = undefined;
        c.trust = undefined;
        if (this.model.active === undefined) this.model.active = bare;
        this.model.say(bare, "info", `encrypted: Encrypted Session with ${e.peer} (${suiteLabel(e.options)})`);
        if (e.retainedSecretMatched) this.model.say(bare, "info", "this session continues your previous one with them (retained secret matched)");
        if (e.sas !== undefined && e.retainedSecretMatched && e.sasConfirmedBefore)
          this.model.say(bare, "info", `SAS: ${e.sas}  (you compared a SAS with ${bare} before and this session continues that chain: no need to compare again)`);
        else if (e.sas !== undefined) this.model.say(bare, "info", `SAS: ${e.sas}  compare it with ${bare} (voice, in person), then /confirm or /reject`);
        return;
      }
      case "trust":
        this.onVerdict(e.peer, e.verdict);
        return;
      case "trust-alert":
        this.onTrustAlert(e.peer, e.alert);
        return;
      case "alert": {
        const bare = bareJid(e.peer);
        const c = this.model.conversation(bare);
        const sas = c.protection.kind === "esession" ? c.protection.sas : undefined;
        if (e.alert === "sas-never-confirmed")
          this.raise({ kind: "sas-never-confirmed", bare, text: `${bare} is not verified yet: compare the SAS ${sas ?? ""} with them` }, () => ["/confirm", "/reject"]);
        else if (e.alert === "retained-secret-mismatch") {
          c.verification = "unverified";
          this.raise(
            { kind: "retained-secret-mismatch", bare, text: `${bare} did not share the secret of your last session: someone may be in the middle, or they lost their data. Compare the SAS ${sas ?? ""} now` },
            () => ["/confirm", "/reject"],
          );
        } else
          this.raise({ kind: "disclosure", bare, text: `${bare} may disclose this session's content or keys to a third party (XEP-0116 disclosure)` }, (id) => ["/end", `/dismiss ${id}`]);
        return;
      }
      case "message": {
        if (e.body === undefined) return;
        const bare = bareJid(e.peer);
        this.model.say(bare, "in", e.body, "esession");
        if (this.model.active === undefined) this.model.active = bare;
        return;
      }
      case "stanza":
        return;
      case "rekeyed":
        if (e.by === "peer") this.model.say(bareJid(e.peer), "info", "keys replaced by the peer (XEP-0200 re-key)");
        return;
      case "terminated": {
        const bare = bareJid(e.peer);
        const c = this.model.conversation(bare);
        c.protection = { kind: "none" };
        c.verification = "n/a";
        this.model.say(bare, "info", `encrypted session ended by ${e.by === "us" ? "you" : bare}`);
        this.dropQueued(c);
        return;
      }
      case "failed": {
        const bare = bareJid(e.peer);
        const c = this.model.conversation(bare);
        this.model.say(bare, "error", `encryption failed: ${e.error.message}`);
        if (!this.client.session(e.peer)?.isActive) {
          c.protection = { kind: "none" };
          c.verification = "n/a";
          this.dropQueued(c);
        }
        return;
      }
      case "unprotected":
        this.onPlain(e.peer, e.stanza);
        return;
      case "internal-error": {
        const where = e.peer === undefined ? undefined : bareJid(e.peer as FullJid);
        const what = e.stage === "signing" ? "finishing a negotiation" : "handling a stanza";
        this.model.say(where, "error", `internal error while ${what}: ${e.error.message} (that stanza was not processed)`);
        return;
      }
      default:
        // Events added to SecureClient later (e.g. offline-message bookkeeping) are not
        // the user's business until this view learns them: ignored, never an error.
        return;
    }
  }

  private onVerdict(peer: FullJid, v: TrustVerdict): void {
    const c = this.model.conversation(bareJid(peer));
    c.fingerprint = v.fingerprint;
    c.trust = v.trust;
    const retained = this.client.session(peer)?.isActive === true;
    // Verified: the key was validated, or (no key) this session continues a SAS-verified chain.
    const chainOk = v.trust === "no-key" && v.chainVerified && !v.alerts.some((a) => a.kind === "sas-never-confirmed");
    if (v.trust === "verified" || (retained && chainOk && !this.model.alerts.some((a) => a.bare === c.bare && a.kind === "retained-secret-mismatch")))
      c.verification = "verified";
    if (v.trust === "untrusted" || v.trust === "revoked") c.verification = "n/a";
  }

  private onTrustAlert(peer: FullJid, a: TrustAlert): void {
    const bare = bareJid(peer);
    const text = describeAlert(a).replace(/^WARNING: /, "");
    switch (a.kind) {
      case "key-changed":
        this.raise({ kind: a.kind, bare, text: `${text} The session was ended.`, fingerprint: a.presented }, (id) => [`/trust ${id}`, `/dismiss ${id}`]);
        return;
      case "key-shared":
        this.raise({ kind: a.kind, bare, text: `${text} The session was ended.`, fingerprint: a.fingerprint }, (id) => [`/trust ${id}`, `/dismiss ${id}`]);
        return;
      case "key-revoked":
        this.raise({ kind: a.kind, bare, text: `${text} The session was ended.`, fingerprint: a.fingerprint }, (id) => [`/dismiss ${id}`]);
        return;
      case "key-missing":
        this.raise({ kind: a.kind, bare, text }, (id) => ["/end", `/dismiss ${id}`]);
        return;
      case "sas-never-confirmed":
        return;
      default: {
        const never: never = a;
        return never;
      }
    }
  }

  // ---- plain stanzas: presence, roster, unencrypted messages ----

  private onPlain(from: string, s: Element): void {
    if (s.name === "iq") {
      this.onIq(from, s);
      return;
    }
    let j: Jid;
    try {
      j = parseJid(from || this.model.account);
    } catch {
      return;
    }
    const bare = bareJid(j);
    if (s.name === "presence") {
      this.onPresence(j, s);
      return;
    }
    if (s.name === "message") {
      if (s.attrs.type === "error") {
        this.model.say(bare, "error", `${bare}: delivery failed (${s.getChild("error")?.children.map((x) => (typeof x === "string" ? "" : x.name)).join(" ") ?? "error"})`);
        return;
      }
      if (s.getChild("e2e", "urn:ietf:params:xml:ns:xmpp-e2e")) {
        if (this.o.objects) this.background(this.o.objects.receive(s));
        else this.model.say(bare, "info", "an RFC 3923 object-encrypted message arrived; this client cannot open it (the terminal client can)");
        return;
      }
      const body = s.getChildText("body");
      if (body) {
        this.model.say(bare, "unprotected", body, "clear");
        if (this.model.active === undefined) this.model.active = bare;
      }
    }
  }

  private onIq(from: string, s: Element): void {
    const id = String(s.attrs.id ?? "");
    const type = s.attrs.type;
    if (type === "result" || type === "error") {
      const w = this.iqWaiters.get(id);
      if (w) {
        this.iqWaiters.delete(id);
        w(s);
      }
      return;
    }
    const child = s.children.find((x): x is Element => typeof x !== "string");
    const ns = child?.attrs.xmlns;
    // XTLS (Jingle) and IBB requests belong to the XtlsClient, which answers them.
    if (this.o.xtls && (ns === NS_JINGLE || ns === NS_IBB)) return;
    const own = bareJid(parseJid(this.model.account));
    if (type === "set" && ns === NS_ROSTER && (from === "" || bareJid(parseJid(from)) === own)) {
      for (const item of child?.getChildren("item") ?? []) this.rosterItem(item);
      void this.o.connection.send(el("iq", { type: "result", id, ...(from ? { to: from } : {}) })).catch(() => undefined);
      return;
    }
    if (ns === NS_DISCO_ITEMS && type === "get") {
      void this.o.connection.send(el("iq", { type: "result", id, to: from }, el("query", { xmlns: NS_DISCO_ITEMS }))).catch(() => undefined);
      return;
    }
    void this.o.connection.send(errorReply(s, "service-unavailable", "cancel", { to: from })).catch(() => undefined);
  }

  private rosterItem(item: Element): void {
    const jid = attrOf(item, "jid");
    if (!jid) return;
    let bare: Jid;
    try {
      bare = bareJid(parseJid(jid));
    } catch {
      return;
    }
    if (item.attrs.subscription === "remove") {
      this.model.contacts.delete(bare);
      return;
    }
    const c = this.model.contact(bare);
    c.name = attrOf(item, "name") ?? c.name;
    c.subscription = attrOf(item, "subscription") ?? "none";
    c.pendingOut = item.attrs.ask === "subscribe";
  }

  private onPresence(j: Jid, s: Element): void {
    const bare = bareJid(j);
    const own = bareJid(parseJid(this.model.account));
    const type = attrOf(s, "type");
    const resource = jidParts(j).resource;
    if (type === "subscribe") {
      const c = this.model.contact(bare);
      c.pendingIn = true;
      // RFC 6121 3.1.3: we asked first, so approving is what the user already wanted.
      if (c.pendingOut || c.subscription === "to") {
        void this.allow(bare);
        return;
      }
      this.raise({ kind: "subscription", bare, text: `${bare} asks to see when you are online` }, (id) => [`/allow ${bare}`, `/dismiss ${id}`]);
      return;
    }
    if (type === "subscribed") {
      this.model.contact(bare).pendingOut = false;
      this.model.say(undefined, "info", `${bare} lets you see their presence`);
      return;
    }
    if (type === "unsubscribed" || type === "unsubscribe") {
      this.model.say(undefined, "info", `${bare}: presence subscription ${type}`);
      return;
    }
    if (type === "error" || bare === own || resource === undefined) return;
    const c = this.model.contact(bare);
    if (type === "unavailable") {
      c.resources.delete(resource);
      return;
    }
    if (type !== undefined) return;
    const caps = s.getChild("c", NS.caps);
    c.resources.set(resource, {
      show: s.getChildText("show") ?? "online",
      status: s.getChildText("status") ?? undefined,
      priority: Number(s.getChildText("priority") ?? 0) || 0,
      e2e: caps?.attrs.node === CAPS_NODE,
    });
  }

  private async add(jid: string, name: string | undefined): Promise<void> {
    if (!jid) throw new TuiError("usage", "usage: /add JID [NAME]");
    const bare = bareJid(parseJid(jid));
    await this.iq(el("iq", { type: "set" }, el("query", { xmlns: NS_ROSTER }, el("item", { jid: bare, ...(name ? { name } : {}) }))));
    await this.o.connection.send(el("presence", { to: bare, type: "subscribe" }));
    const c = this.model.contact(bare);
    c.pendingOut = true;
    if (name) c.name = name;
    this.model.say(undefined, "info", `asked ${bare} to share their presence`);
  }

  private async allow(jid: string): Promise<void> {
    if (!jid) throw new TuiError("usage", "usage: /allow JID");
    const bare = bareJid(parseJid(jid));
    await this.o.connection.send(el("presence", { to: bare, type: "subscribed" }));
    const c = this.model.contact(bare);
    c.pendingIn = false;
    this.model.dismissWhere((a) => a.kind === "subscription" && a.bare === bare);
    // Mutual: also ask for theirs, unless we already see it or asked.
    if (c.subscription !== "to" && c.subscription !== "both" && !c.pendingOut) {
      await this.o.connection.send(el("presence", { to: bare, type: "subscribe" }));
      c.pendingOut = true;
    }
    this.model.say(undefined, "info", `${bare} may now see your presence`);
    this.changed();
  }

  private listContacts(): void {
    const a = this.model.active;
    const list = this.model.sortedContacts();
    if (list.length === 0) this.model.say(a, "info", "no contacts yet: /add JID");
    list.forEach((c, i) => {
      const res = [...c.resources].map(([r, p]) => `${r} (${p.show}${p.e2e ? ", xmpp-e2e" : ""})`).join(", ");
      this.model.say(a, "info", `${i + 1}. ${c.name ? `${c.name} <${c.bare}>` : c.bare}: ${res || "offline"}${c.pendingIn ? ", asks for your presence" : ""}`);
    });
  }

  private iq(req: Element, timeoutMs = 10_000): Promise<Element> {
    const id = `tui${++this.iqSeq}`;
    req.attrs.id = id;
    return new Promise<Element>((resolve, reject) => {
      const t = setTimeout(() => {
        this.iqWaiters.delete(id);
        reject(new TuiError("offline", "the server did not answer"));
      }, timeoutMs);
      this.iqWaiters.set(id, (s) => {
        clearTimeout(t);
        if (s.attrs.type === "error") reject(new TuiError("not-found", "the server refused the request"));
        else resolve(s);
      });
      this.o.connection.send(req).catch((e: unknown) => {
        clearTimeout(t);
        this.iqWaiters.delete(id);
        reject(e instanceof Error ? e : new Error(String(e)));
      });
    });
  }

  // ---- files over XTLS ----

  /** XtlsOptions.acceptSession: the user decides. */
  acceptTunnel = (offer: { peer: FullJid }): Promise<boolean> =>
    this.ask({ kind: "file-offer", bare: bareJid(offer.peer), text: `${offer.peer} wants to send you a file over an XTLS tunnel` }, (id) => [
      `/accept ${id}`,
      `/dismiss ${id}`,
    ]);

  /** XtlsOptions.leapOfFaith: only on the user's word (draft section 5). */
  leapOfFaith = (peer: FullJid, fp: Fingerprint): Promise<boolean> =>
    this.ask(
      {
        kind: "certificate-unverified",
        bare: bareJid(peer),
        text: `${peer}'s XTLS certificate is not verified (${fp.algo} ${fp.value}); compare it with them`,
        fingerprint: fp.value,
      },
      (id) => [`/trust-cert ${id}`, `/dismiss ${id}`],
    );

  private async sendFile(c: Conversation, path: string): Promise<void> {
    const xtls = this.o.xtls;
    if (!xtls) throw new TuiError("usage", "file transfer is not available (no XTLS identity)");
    if (!path) throw new TuiError("usage", "usage: /send FILE");
    if (!existsSync(path) || !statSync(path).isFile()) throw new TuiError("not-found", `no such file: ${path}`);
    const size = statSync(path).size;
    const peer = this.targetPeer(c);
    const name = basename(path);
    const tr = { id: ++this.transferSeq, direction: "out" as const, name, total: size, done: 0, state: "offered" as "offered" | "running" | "done" | "failed" };
    c.transfer = tr;
    this.model.say(c.bare, "info", `offering ${name} (${size} bytes) to ${peer} over XTLS ...`);
    this.changed();
    let tunnel: XtlsTunnel;
    try {
      tunnel = await xtls.connect(peer);
    } catch (e) {
      tr.state = "failed";
      this.model.say(c.bare, "error", `file not sent: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    c.xtls = `${tunnel.protocol ?? "TLS"} ${tunnel.method}${tunnel.leapOfFaith ? " (leap of faith, now pinned)" : ""}`;
    this.model.say(c.bare, "info", `XTLS tunnel open (encrypted by: XTLS ${c.xtls})`);
    tr.state = "running";
    this.changed();
    try {
      await writeAll(tunnel.socket, new TextEncoder().encode(`${JSON.stringify({ type: "xmpp-e2e-file", name, size })}\n`));
      await new Promise<void>((resolve, reject) => {
        const rs = createReadStream(path, { highWaterMark: 16 * 1024 });
        rs.on("data", (chunk) => {
          const b = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
          if (!tunnel.socket.write(b)) {
            rs.pause();
            tunnel.socket.once("drain", () => rs.resume());
          }
          tr.done += b.length;
          this.changed();
        });
        rs.on("end", () => resolve());
        rs.on("error", reject);
        tunnel.socket.once("error", reject);
      });
      // Wait for the receiver's one-line acknowledgement before closing (all bytes arrived).
      const ack = await readLine(tunnel.socket, 30_000);
      if (ack !== "ok") throw new Error(`the receiver answered ${JSON.stringify(ack.slice(0, 40))}`);
      tr.state = "done";
      this.model.say(c.bare, "info", `sent ${name} (${size} bytes) over XTLS`);
    } catch (e) {
      tr.state = "failed";
      this.model.say(c.bare, "error", `file transfer failed: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      await tunnel.close().catch(() => undefined);
      c.xtls = undefined;
      this.changed();
    }
  }

  private async receiveFile(tunnel: XtlsTunnel): Promise<void> {
    const bare = bareJid(tunnel.peer);
    const c = this.model.conversation(bare);
    c.xtls = `${tunnel.protocol ?? "TLS"} ${tunnel.method}${tunnel.leapOfFaith ? " (leap of faith, now pinned)" : ""}`;
    this.model.say(bare, "info", `XTLS tunnel open (encrypted by: XTLS ${c.xtls})`);
    this.changed();
    try {
      const header = JSON.parse(await readLine(tunnel.socket, 30_000)) as unknown;
      if (typeof header !== "object" || header === null) throw new Error("bad header");
      const h = header as { type?: unknown; name?: unknown; size?: unknown };
      if (h.type !== "xmpp-e2e-file" || typeof h.name !== "string" || typeof h.size !== "number" || !Number.isSafeInteger(h.size) || h.size < 0)
        throw new Error("bad header");
      const name = safeName(h.name);
      mkdirSync(this.o.downloads, { recursive: true, mode: 0o700 });
      const dest = uniquePath(this.o.downloads, name);
      const tr = { id: ++this.transferSeq, direction: "in" as const, name, total: h.size, done: 0, state: "running" as "offered" | "running" | "done" | "failed" };
      c.transfer = tr;
      this.model.say(bare, "info", `receiving ${name} (${h.size} bytes) over XTLS`);
      this.changed();
      const out = createWriteStream(dest, { mode: 0o600 });
      await new Promise<void>((resolve, reject) => {
        const onData = (chunk: Buffer): void => {
          const take = Math.min(chunk.length, tr.total - tr.done);
          if (take > 0) out.write(chunk.subarray(0, take));
          tr.done += take;
          this.changed();
          if (tr.done >= tr.total) finish();
        };
        const finish = (): void => {
          tunnel.socket.off("data", onData);
          out.end(() => resolve());
        };
        tunnel.socket.on("data", onData);
        tunnel.socket.once("error", reject);
        tunnel.socket.once("end", () => (tr.done >= tr.total ? undefined : reject(new Error("the tunnel closed early"))));
        if (tr.total === 0) finish();
        const pending = (tunnel.socket as Duplex & { [LEFTOVER]?: Buffer })[LEFTOVER];
        if (pending && pending.length > 0) onData(pending);
        // readLine() paused the stream: a new 'data' listener does not resume it by itself.
        tunnel.socket.resume();
      });
      tunnel.socket.write("ok\n");
      tr.state = "done";
      this.model.say(bare, "info", `received ${name} -> ${dest}`);
    } catch (e) {
      if (c.transfer) c.transfer.state = "failed";
      this.model.say(bare, "error", `file transfer failed: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      await tunnel.ended;
      c.xtls = undefined;
      this.changed();
    }
  }
}

const LEFTOVER = Symbol("leftover");

/** Reads one '\n'-terminated line (at most 4 KiB); bytes after it stay for the next reader. */
function readLine(s: Duplex, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => done(new Error("timed out")), timeoutMs);
    const done = (err?: Error, line?: string): void => {
      clearTimeout(t);
      s.off("data", onData);
      s.off("end", onEnd);
      s.off("error", onErr);
      s.pause();
      if (err) reject(err);
      else resolve(line ?? "");
    };
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const nl = buf.indexOf(10);
      if (nl !== -1) {
        (s as Duplex & { [LEFTOVER]?: Buffer })[LEFTOVER] = buf.subarray(nl + 1);
        done(undefined, buf.subarray(0, nl).toString("utf8"));
      } else if (buf.length > 4096) done(new Error("line too long"));
    };
    const onEnd = (): void => done(new Error("the tunnel closed"));
    const onErr = (e: Error): void => done(e);
    s.on("data", onData);
    s.once("end", onEnd);
    s.once("error", onErr);
    s.resume();
  });
}

function writeAll(s: Duplex, b: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => s.write(b, (e) => (e ? reject(e) : resolve())));
}

/** A received file name reduced to a safe base name (no paths, no hidden files). */
export function safeName(name: string): string {
  const base = basename(name.replace(/\\/g, "/")).replace(/[\u0000-\u001f\u007f]/g, "").replace(/^\.+/, "");
  return base.slice(0, 200) || "file";
}

function uniquePath(dir: string, name: string): string {
  let p = join(dir, name);
  for (let i = 1; existsSync(p); i++) p = join(dir, `${i}-${name}`);
  return p;
}

function alertArg(arg: string): number {
  const n = Number(arg.replace(/^#/, ""));
  if (!arg || !Number.isInteger(n) || n <= 0) throw new TuiError("usage", "give the alert's number (see /alerts)");
  return n;
}

export function suiteLabel(o: NegotiatedOptions): string {
  const dh = o.group === "x25519" ? "X25519" : `MODP-${o.group}`;
  return `${dh}, ${o.cipher.toUpperCase()}, ${o.hash.toUpperCase()}`;
}
