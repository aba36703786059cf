/**
 * The web client: a static page built from the library that logs in to an XMPP server
 * over WebSocket and runs the terminal client's controller (src/tui/app.ts TuiApp: the
 * same contacts, conversations, commands and alerts) with the browser crypto provider,
 * drawn with the DOM instead of ANSI. So the page shows exactly what the terminal shows:
 * contacts with presence (add one, allow one), what protects the conversation and whether
 * it is verified, the SAS with "It matches" / "It differs", every alert with buttons that
 * run the alert's commands, and a message is never sent in the clear.
 *
 * What it remembers lives in IndexedDB: the identity key non-extractable (./keystore.ts),
 * retained secrets, SAS confirmations, peers' keys and trust decisions, the login form's
 * settings without the password (./idb-store.ts).
 *
 * Identity: the key signs the negotiation (XEP-0116 public-key identification 'key',
 * asynchronously through WebCrypto) and peers' Ed25519 / P-256 keys are verified by
 * ./verifier.ts; the fingerprint of the key a peer proved is recorded in the trust store
 * (trust on first use, key-change alerts). 'none' (XEP-0217 SAS only) stays offered as the
 * fallback for a peer without a key; the page says which one protects the conversation:
 * "verified by key", "identified by key ... compare the SAS" or "SAS only".
 *
 * Spec: RFC 7395 (./connection.ts); RFC 6121 sections 2-4 (roster, subscriptions,
 * presence, via TuiApp); XEP-0217 v0.1 / XEP-0116 v0.16 / XEP-0200 v0.2 via SecureClient;
 * XEP-0116 4.7.2 (SAS), 7.3-7.4 (trust alerts), 8 (disclosure), section 12 (what is kept);
 * XEP-0210 section 3 (usability).
 */
import type { ClientEvent } from "../client/secure-client.js";
import { bareJid, jidParts, parseJid } from "../core/types.js";
import { browserClock, browserCrypto, browserRandom } from "../crypto/browser.js";
import { TrustManager } from "../trust/index.js";
import { TuiApp } from "../tui/app.js";
import type { Alert, Contact, Conversation, Line } from "../tui/model.js";
import { lineText, protectionText } from "../tui/screen.js";
import { connectBrowserXmpp } from "./connection.js";
import { openIdbStore, type IdbStore } from "./idb-store.js";
import { asyncSigner, identityFingerprint, loadOrCreateIdentity, type AsyncSigningIdentity } from "./keystore.js";
import { browserKeyVerifier } from "./verifier.js";

interface PageConfig {
  readonly service?: string;
  readonly domain?: string;
}

const $ = <T extends HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`missing #${id}`);
  return e as T;
};

function node<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: { className?: string; text?: string } = {}, ...children: Node[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (attrs.className) e.className = attrs.className;
  if (attrs.text !== undefined) e.textContent = attrs.text;
  e.append(...children);
  return e;
}

/** The button label for an alert command (the same commands the terminal lists). */
export function actionLabel(command: string): string {
  const [cmd = ""] = command.split(" ");
  switch (cmd) {
    case "/confirm":
      return "It matches";
    case "/reject":
      return "It differs";
    case "/trust":
      return "Trust this key";
    case "/trust-cert":
      return "Trust this certificate";
    case "/accept":
      return "Accept";
    case "/allow":
      return "Allow";
    case "/end":
      return "End session";
    case "/dismiss":
      return "Dismiss";
    default:
      return command;
  }
}

function presenceWord(c: Contact): { mark: string; word: string } {
  if (c.resources.size === 0) return { mark: "○", word: "offline" };
  const shows = [...c.resources.values()];
  return shows.some((r) => r.show === "online" || r.show === "chat") ? { mark: "●", word: "online" } : { mark: "◐", word: "away" };
}

/** How the peer was authenticated in the conversation's session (the web page's words). */
export interface AuthState {
  /** 'key': the peer proved a key (verified, or trusted on first use); 'sas': SAS only. */
  readonly kind: "key" | "sas" | "none";
  readonly text: string;
}

/** What the last established session of a conversation used (XEP-0116 init_pubkey / resp_pubkey). */
interface SessionAuth {
  readonly initPubkey: string;
  readonly respPubkey: string;
  readonly peerKey: boolean;
}

const VERIFIABLE = "Ed25519 or ECDSA P-256";

export function authState(c: Conversation): AuthState {
  if (c.protection.kind !== "esession") return { kind: "none", text: "" };
  const sas = c.protection.sas;
  if (c.fingerprint !== undefined && (c.trust === "untrusted" || c.trust === "revoked"))
    return { kind: "key", text: `their key ${c.fingerprint} is ${c.trust === "revoked" ? "REVOKED" : "NOT TRUSTED (not the key they used before)"}: see the alert` };
  if (c.fingerprint !== undefined) {
    if (c.verification === "verified") return { kind: "key", text: `verified by key: their key ${c.fingerprint}` };
    return { kind: "key", text: `identified by key ${c.fingerprint} (trusted on first use)${sas ? ": compare SAS to verify it" : ""}` };
  }
  return {
    kind: "sas",
    text: `SAS only: no ${VERIFIABLE} key from them (a browser cannot verify RSA or DSA keys)${c.verification === "verified" ? "" : ": compare SAS"}`,
  };
}

class WebApp {
  private app: TuiApp | undefined;
  private store: IdbStore | undefined;
  /** The identity key as the asynchronous signer the ESession core will take (see ./keystore.ts). */
  signer: AsyncSigningIdentity | undefined;
  /** Per conversation (bare JID): how its last session was authenticated. */
  private readonly sessions = new Map<string, SessionAuth>();

  async settings(): Promise<{ account: string; service: string; resource: string } | undefined> {
    this.store ??= await openIdbStore();
    return this.store.lastSettings();
  }

  async login(jid: string, password: string, service: string, resource: string): Promise<void> {
    const bare = bareJid(parseJid(jid));
    const { local, domain } = jidParts(bare);
    this.store ??= await openIdbStore();
    const store = this.store;
    const conn = await connectBrowserXmpp({ service, domain, username: local ?? "", password, resource });
    const trust = new TrustManager({ store, crypto: browserCrypto });
    const { identity, created } = await loadOrCreateIdentity(bare);
    const signer = await asyncSigner(identity);
    this.signer = signer;
    const app = new TuiApp({
      connection: conn,
      store,
      trust,
      downloads: "",
      client: {
        crypto: browserCrypto,
        random: browserRandom,
        clock: browserClock,
        // The non-extractable key signs (XEP-0116 'key', asynchronously: WebCrypto); peers'
        // Ed25519 / P-256 keys are verified; 'none' (XEP-0217 SAS) is the fallback for a
        // peer without a key. 'hash' is not accepted: it needs the peer's key in advance.
        identity: signer,
        verifier: browserKeyVerifier({ crypto: browserCrypto }),
        policy: { offerPubkey: ["key", "none"], acceptPubkey: ["key", "none"] },
      },
    });
    this.app = app;
    app.client.on((e) => this.onClientEvent(e));
    app.onChange(() => this.draw());
    app.model.ownFingerprint = await identityFingerprint(browserCrypto, identity);
    if (created) app.model.say(undefined, "info", "created your identity key (non-extractable, kept in this browser)");
    await store.putSettings({ account: bare, service, resource, lastLogin: Date.now() });
    await app.start();
    conn.onClose((e) => {
      app.model.status = e ? `disconnected: ${e.message}` : "disconnected";
      this.draw();
    });
  }

  private onClientEvent(e: ClientEvent): void {
    const app = this.app;
    if (!app) return;
    if (e.type === "established") {
      const bare = bareJid(e.peer);
      this.sessions.set(bare, { initPubkey: e.initPubkey, respPubkey: e.respPubkey, peerKey: e.peerKey !== undefined });
      if (e.peerKey === undefined)
        app.model.say(bare, "warn", `${bare} did not prove an ${VERIFIABLE} key in this session: only the SAS authenticates them`);
    } else if (e.type === "failed") {
      // SecureClient reports a refused key (identity-mismatch) before it ends the session:
      // once it has, the conversation is no longer encrypted (the controller looked too early).
      const peer = e.peer;
      setTimeout(() => {
        const c = app.model.conversations.get(bareJid(peer));
        if (c && c.peer === peer && c.protection.kind === "esession" && !app.client.session(peer)?.isActive) {
          c.protection = { kind: "none" };
          c.verification = "n/a";
          this.draw();
        }
      }, 0);
    }
    if (e.type === "failed" && e.error.fields.includes("sign_algs")) {
      const bare = bareJid(e.peer);
      // XEP-0116: one sign_algs value for both signatures; a peer whose key is RSA or DSA
      // cannot agree on one with this page (./verifier.ts).
      app.model.say(
        bare,
        "warn",
        `${bare} and this browser could not agree on a signature algorithm: their key is probably RSA or DSA, which a browser cannot verify (${VERIFIABLE} only). Ask them to use an Ed25519 key, or to accept SAS-only sessions.`,
      );
    }
  }

  /** Runs a command or sends a message, exactly as typed in the terminal client. */
  async submit(line: string): Promise<void> {
    await this.need().submit(line);
    this.draw();
  }

  private need(): TuiApp {
    if (!this.app) throw new Error("not logged in");
    return this.app;
  }

  /** An alert's command, run in the alert's conversation (/confirm acts on the open one). */
  async act(a: Alert, command: string): Promise<void> {
    const app = this.need();
    if (app.model.active !== a.bare && !command.startsWith("/dismiss") && !command.startsWith("/allow")) await app.submit(`/open ${a.bare}`);
    await this.submit(command);
  }

  draw(): void {
    const app = this.app;
    if (!app) return;
    const m = app.model;
    $("account").textContent = m.account;
    $("status").textContent = m.status;
    $("fingerprint").textContent = m.ownFingerprint ?? "";
    // Contacts with presence; people we talk to that are not in the roster are listed too.
    const items: HTMLLIElement[] = m.sortedContacts().map((c) => {
      const p = presenceWord(c);
      const unread = m.conversations.get(c.bare)?.unread ?? 0;
      const label = `${p.mark} ${c.name ?? c.bare}${unread > 0 ? ` (${unread})` : ""}${c.pendingOut ? " (asked)" : ""}`;
      const b = node("button", { className: unread > 0 ? "unread" : "", text: label });
      b.type = "button";
      b.title = `${c.bare}: ${p.word}${c.pendingIn ? ", asks to see your presence" : ""}`;
      b.dataset.jid = c.bare;
      b.dataset.presence = p.word;
      b.onclick = () => void this.submit(`/open ${c.bare}`).catch((e: unknown) => this.fail(e));
      const li = node("li", { className: c.bare === m.active ? "active" : "" }, b);
      return li;
    });
    for (const c of m.conversations.values()) {
      if (m.contacts.has(c.bare)) continue;
      const b = node("button", { text: `${c.bare}${c.unread ? ` (${c.unread})` : ""} · not in contacts` });
      b.type = "button";
      b.title = `${c.bare} is not in your contacts: add them to see their presence`;
      b.dataset.jid = c.bare;
      b.onclick = () => void this.submit(`/open ${c.bare}`).catch((e: unknown) => this.fail(e));
      items.push(node("li", { className: c.bare === m.active ? "active" : "" }, b));
    }
    $("contacts").replaceChildren(...items);

    const c = m.active === undefined ? undefined : m.conversations.get(m.active);
    const prot = $("protection");
    const sasBox = $("sas-box");
    if (!c) {
      $("peer-title").textContent = "";
      prot.textContent = "no conversation open: pick a contact or enter an address";
      prot.className = "state none";
      sasBox.hidden = true;
      $("auth").hidden = true;
    } else {
      $("peer-title").textContent = c.peer ?? c.bare;
      prot.textContent = protectionText(c).text;
      prot.className = `state ${c.protection.kind === "esession" ? (c.verification === "verified" ? "verified" : "unverified") : c.protection.kind}`;
      const auth = authState(c);
      const s = this.sessions.get(c.bare);
      const authEl = $("auth");
      authEl.textContent = auth.text;
      authEl.hidden = auth.kind === "none";
      authEl.dataset.auth = auth.kind;
      authEl.dataset.peerFingerprint = c.fingerprint ?? "";
      authEl.dataset.initPubkey = s?.initPubkey ?? "";
      authEl.dataset.respPubkey = s?.respPubkey ?? "";
      const sas = c.protection.kind === "esession" ? c.protection.sas : undefined;
      sasBox.hidden = sas === undefined || c.verification === "verified";
      $("sas").textContent = sas ?? "";
    }
    $("alerts").replaceChildren(
      ...m.alerts.map((a) => {
        const li = node("li", { className: "alert", text: `[${a.id}] ${a.text} ` });
        li.dataset.kind = a.kind;
        for (const command of a.actions) {
          const b = node("button", { text: actionLabel(command) });
          b.type = "button";
          b.dataset.action = command.split(" ")[0]?.slice(1) ?? "";
          b.onclick = () => void this.act(a, command).catch((err: unknown) => this.fail(err));
          li.append(b);
        }
        return li;
      }),
    );
    const list = $("messages");
    const lines: Line[] = c ? c.lines : m.console;
    list.replaceChildren(
      ...lines.map((l) => {
        const li = node("li", { className: `line ${l.kind}` });
        if ((l.kind === "in" || l.kind === "out") && (l.via === "esession" || l.via === "object")) {
          const badge = node("span", { className: `badge ${l.via}`, text: l.via === "esession" ? "ESession" : "object" });
          badge.title = l.via === "esession" ? "encrypted in an Encrypted Session (XEP-0200)" : "signed and encrypted with S/MIME (RFC 3923)";
          li.append(badge);
        }
        li.append(lineText(l, c?.bare));
        return li;
      }),
    );
    list.scrollTop = list.scrollHeight;
  }

  fail(e: unknown): void {
    this.app?.model.say(this.app.model.active, "error", e instanceof Error ? e.message : String(e));
    this.draw();
  }
}

async function main(): Promise<void> {
  const web = new WebApp();
  let cfg: PageConfig = {};
  try {
    cfg = (await (await fetch("config.json")).json()) as PageConfig;
  } catch {
    /* no server config: the user types the service */
  }
  const params = new URLSearchParams(location.search);
  const saved = await web.settings().catch(() => undefined);
  $<HTMLInputElement>("service").value = params.get("service") ?? saved?.service ?? cfg.service ?? `ws://${location.hostname}:5280/xmpp-websocket`;
  if (saved) {
    $<HTMLInputElement>("jid").value = saved.account;
    $<HTMLInputElement>("resource").value = saved.resource;
  }
  $<HTMLFormElement>("login-form").onsubmit = (ev) => {
    ev.preventDefault();
    const jid = $<HTMLInputElement>("jid").value.trim();
    const pw = $<HTMLInputElement>("password").value;
    const service = $<HTMLInputElement>("service").value.trim();
    const resource = $<HTMLInputElement>("resource").value.trim() || "web";
    $("login-error").textContent = "";
    web.login(jid, pw, service, resource).then(
      () => {
        $<HTMLInputElement>("password").value = "";
        $("login").hidden = true;
        $("main").hidden = false;
        web.draw();
      },
      (e: unknown) => {
        $("login-error").textContent = e instanceof Error ? e.message : String(e);
      },
    );
  };
  const onSubmit = (formId: string, inputId: string, toCommand: (v: string) => string): void => {
    $<HTMLFormElement>(formId).onsubmit = (ev) => {
      ev.preventDefault();
      const input = $<HTMLInputElement>(inputId);
      const v = input.value.trim();
      input.value = "";
      if (v) void web.submit(toCommand(v)).catch((e: unknown) => web.fail(e));
    };
  };
  onSubmit("open-form", "peer", (v) => `/open ${v}`);
  onSubmit("add-form", "add-jid", (v) => `/add ${v}`);
  onSubmit("compose", "text", (v) => v);
  $("encrypt").onclick = () => void web.submit("/encrypt").catch((e: unknown) => web.fail(e));
  $("sas-match").onclick = () => void web.submit("/confirm").catch((e: unknown) => web.fail(e));
  $("sas-differ").onclick = () => void web.submit("/reject").catch((e: unknown) => web.fail(e));
}

void main();
