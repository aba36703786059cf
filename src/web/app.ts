/**
 * The web client: a static page built from the library (SecureClient with the @noble
 * browser crypto provider) that logs in to an XMPP server over WebSocket and shows the
 * same conversation view as the terminal client: what protects the conversation, the SAS
 * to compare with "It matches" / "It differs", and every alert with the buttons that act
 * on it. Messages are never sent in the clear: without a session one is negotiated first.
 *
 * Spec: RFC 7395 (./connection.ts); XEP-0217 v0.1 / XEP-0116 v0.16 / XEP-0200 v0.2 via
 * SecureClient; XEP-0116 4.7.2 (SAS), 7.4 (trust alerts), 8 (disclosure); XEP-0210
 * section 3 (usability). The identity key is non-extractable in IndexedDB (./keystore.ts).
 */
import type { ClientEvent } from "../client/secure-client.js";
import { SecureClient } from "../client/secure-client.js";
import { bareJid, type FullJid, type Jid, jidParts, parseFullJid, parseJid } from "../core/types.js";
import { browserClock, browserCrypto, browserRandom } from "../crypto/browser.js";
import { MemoryStore } from "../store/memory.js";
import { describeAlert, TrustManager } from "../trust/index.js";
import { Model, type Conversation } from "../tui/model.js";
import { protectionText } from "../tui/screen.js";
import { connectBrowserXmpp, type BrowserXmppConnection } from "./connection.js";
import { identityFingerprint, loadOrCreateIdentity } from "./keystore.js";

interface PageConfig {
  readonly service?: string;
  readonly domain?: string;
}

const $ = <T extends HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`missing #${id}`);
  return e as T;
};

function suite(o: { group: number | string; cipher: string; hash: string }): string {
  return `${o.group === "x25519" ? "X25519" : `MODP-${o.group}`}, ${o.cipher.toUpperCase()}, ${o.hash.toUpperCase()}`;
}

class WebApp {
  readonly model = new Model(() => Date.now());
  private client: SecureClient | undefined;
  private conn: BrowserXmppConnection | undefined;
  private readonly resources = new Map<string, string>();

  async login(jid: string, password: string, service: string, resource: string): Promise<void> {
    const bare = bareJid(parseJid(jid));
    const { local, domain } = jidParts(bare);
    this.conn = await connectBrowserXmpp({ service, domain, username: local ?? "", password, resource });
    const store = new MemoryStore();
    const trust = new TrustManager({ store, crypto: browserCrypto });
    this.client = new SecureClient({
      connection: this.conn,
      store,
      trust,
      crypto: browserCrypto,
      random: browserRandom,
      clock: browserClock,
      // SAS verification (XEP-0217): see ./keystore.ts for why the key does not sign yet.
      policy: { offerPubkey: ["none"], acceptPubkey: ["key", "hash", "none"] },
    });
    this.client.on((e) => {
      this.onEvent(e);
      this.draw();
    });
    this.model.account = this.conn.jid;
    this.model.status = "online";
    const { identity, created } = await loadOrCreateIdentity(bare);
    this.model.ownFingerprint = await identityFingerprint(browserCrypto, identity);
    if (created) this.model.say(undefined, "info", "created your identity key (non-extractable, kept in this browser)");
    await this.client.announce();
  }

  private target(c: Conversation): FullJid {
    if (c.peer) return c.peer;
    const res = this.resources.get(c.bare);
    if (res) return parseFullJid(`${c.bare}/${res}`);
    throw new Error(`${c.bare} is not online here: enter the full address (user@domain/resource)`);
  }

  open(jid: string): void {
    const j = parseJid(jid.trim());
    const c = this.model.conversation(bareJid(j));
    if (jidParts(j).resource !== undefined) c.peer = parseFullJid(j);
    this.model.active = c.bare;
    c.unread = 0;
    this.draw();
  }

  async negotiate(): Promise<void> {
    const c = this.active();
    const client = this.need();
    const peer = this.target(c);
    c.peer = peer;
    c.protection = { kind: "negotiating" };
    this.draw();
    try {
      await client.startSession(peer);
      for (const text of c.queued.splice(0)) {
        await client.sendMessage(peer, text);
        this.model.say(c.bare, "out", text, "esession");
      }
    } catch (e) {
      c.protection = { kind: "none" };
      this.model.say(c.bare, "error", `could not encrypt: ${e instanceof Error ? e.message : String(e)}`);
      for (const q of c.queued.splice(0)) this.model.say(c.bare, "error", `NOT sent (no encrypted session): ${q}`);
    }
    this.draw();
  }

  async send(text: string): Promise<void> {
    const c = this.active();
    const client = this.need();
    if (c.peer && client.session(c.peer)?.isActive) {
      await client.sendMessage(c.peer, text);
      this.model.say(c.bare, "out", text, "esession");
    } else {
      c.queued.push(text);
      this.model.say(c.bare, "info", `queued until the session is encrypted: ${text}`);
      if (c.protection.kind !== "negotiating") void this.negotiate();
    }
    this.draw();
  }

  async confirm(matches: boolean): Promise<void> {
    const c = this.active();
    const client = this.need();
    if (!c.peer) return;
    if (matches) {
      await client.confirmSas(c.peer);
      c.verification = "verified";
      this.model.dismissWhere((a) => a.bare === c.bare && (a.kind === "sas-never-confirmed" || a.kind === "retained-secret-mismatch"));
      this.model.say(c.bare, "info", "SAS confirmed: this conversation is verified");
    } else {
      this.model.say(c.bare, "warn", "SAS mismatch: ending the session. Someone may be intercepting.");
      await client.terminate(c.peer);
    }
    this.draw();
  }

  async act(action: string, alertId: number): Promise<void> {
    const c = this.active();
    if (action === "end" && c.peer) await this.need().terminate(c.peer);
    else if (action === "confirm") return this.confirm(true);
    else if (action === "reject") return this.confirm(false);
    this.model.dismiss(alertId);
    this.draw();
  }

  private active(): Conversation {
    if (this.model.active === undefined) throw new Error("open a conversation first");
    return this.model.conversation(this.model.active);
  }

  private need(): SecureClient {
    if (!this.client) throw new Error("not logged in");
    return this.client;
  }

  private onEvent(e: ClientEvent): void {
    switch (e.type) {
      case "established": {
        const c = this.model.conversation(bareJid(e.peer));
        c.peer = e.peer;
        c.protection = { kind: "esession", suite: suite(e.options), sas: e.sas, auth: "SAS" };
        c.verification = "unverified";
        if (this.model.active === undefined) this.model.active = c.bare;
        this.model.say(c.bare, "info", `encrypted: Encrypted Session with ${e.peer} (${suite(e.options)})`);
        return;
      }
      case "trust":
        if (e.verdict.trust === "verified") this.model.conversation(bareJid(e.peer)).verification = "verified";
        return;
      case "trust-alert":
        this.model.alert({ kind: e.alert.kind, bare: bareJid(e.peer), text: describeAlert(e.alert), actions: ["end", "dismiss"] });
        return;
      case "alert": {
        const bare = bareJid(e.peer);
        const sas = this.model.conversation(bare);
        const s = sas.protection.kind === "esession" ? sas.protection.sas : undefined;
        if (e.alert === "sas-never-confirmed") this.model.alert({ kind: e.alert, bare, text: `${bare} is not verified yet: compare the SAS ${s ?? ""}`, actions: ["confirm", "reject"] });
        else if (e.alert === "retained-secret-mismatch")
          this.model.alert({ kind: e.alert, bare, text: `${bare} did not share the secret of your last session: compare the SAS ${s ?? ""} now`, actions: ["confirm", "reject"] });
        else this.model.alert({ kind: "disclosure", bare, text: `${bare} may disclose this session to a third party`, actions: ["end", "dismiss"] });
        return;
      }
      case "message":
        if (e.body !== undefined) {
          this.model.say(bareJid(e.peer), "in", e.body, "esession");
          if (this.model.active === undefined) this.model.active = bareJid(e.peer);
        }
        return;
      case "terminated": {
        const c = this.model.conversation(bareJid(e.peer));
        c.protection = { kind: "none" };
        c.verification = "n/a";
        this.model.say(c.bare, "info", `encrypted session ended by ${e.by === "us" ? "you" : c.bare}`);
        return;
      }
      case "failed":
        this.model.say(bareJid(e.peer), "error", `encryption failed: ${e.error.message}`);
        return;
      case "unprotected": {
        const s = e.stanza;
        let from: Jid;
        try {
          from = parseJid(e.peer);
        } catch {
          return;
        }
        const res = jidParts(from).resource;
        if (s.name === "presence" && res !== undefined) {
          if (s.attrs.type === "unavailable") this.resources.delete(bareJid(from));
          else if (s.attrs.type === undefined) this.resources.set(bareJid(from), res);
        } else if (s.name === "message" && s.getChildText("body")) this.model.say(bareJid(from), "unprotected", s.getChildText("body") ?? "", "clear");
        return;
      }
      default:
        return;
    }
  }

  draw(): void {
    $("account").textContent = this.model.account;
    $("fingerprint").textContent = this.model.ownFingerprint ?? "";
    const c = this.model.active === undefined ? undefined : this.model.conversation(this.model.active);
    const prot = $("protection");
    const sasBox = $("sas-box");
    if (!c) {
      prot.textContent = "no conversation open";
      prot.className = "state none";
      sasBox.hidden = true;
    } else {
      $("peer-title").textContent = c.peer ?? c.bare;
      const p = protectionText(c);
      prot.textContent = p.text;
      prot.className = `state ${c.protection.kind === "esession" ? (c.verification === "verified" ? "verified" : "unverified") : c.protection.kind}`;
      const sas = c.protection.kind === "esession" ? c.protection.sas : undefined;
      sasBox.hidden = sas === undefined || c.verification === "verified";
      $("sas").textContent = sas ?? "";
    }
    const alerts = $("alerts");
    alerts.replaceChildren(
      ...this.model.alerts.map((a) => {
        const li = document.createElement("li");
        li.className = "alert";
        li.dataset.kind = a.kind;
        li.append(`[${a.id}] ${a.text} `);
        for (const act of a.actions) {
          const b = document.createElement("button");
          b.textContent = act === "confirm" ? "It matches" : act === "reject" ? "It differs" : act === "end" ? "End session" : "Dismiss";
          b.dataset.action = act;
          b.onclick = () => void this.act(act, a.id).catch((err: unknown) => this.fail(err));
          li.append(b);
        }
        return li;
      }),
    );
    const list = $("messages");
    const lines = c ? c.lines : this.model.console;
    list.replaceChildren(
      ...lines.map((l) => {
        const li = document.createElement("li");
        li.className = `line ${l.kind}`;
        const who = l.kind === "in" ? `${c?.bare ?? ""}: ` : l.kind === "out" ? "me: " : l.kind === "unprotected" ? `[NOT ENCRYPTED] ${c?.bare ?? ""}: ` : "";
        li.textContent = `${who}${l.text}`;
        return li;
      }),
    );
    list.scrollTop = list.scrollHeight;
  }

  fail(e: unknown): void {
    this.model.say(this.model.active, "error", e instanceof Error ? e.message : String(e));
    this.draw();
  }
}

async function main(): Promise<void> {
  const app = new WebApp();
  let cfg: PageConfig = {};
  try {
    cfg = (await (await fetch("config.json")).json()) as PageConfig;
  } catch {
    /* no server config: the user types the service */
  }
  const params = new URLSearchParams(location.search);
  ($("service") as HTMLInputElement).value = params.get("service") ?? cfg.service ?? `ws://${location.hostname}:5280/xmpp-websocket`;
  $<HTMLFormElement>("login-form").onsubmit = (ev) => {
    ev.preventDefault();
    const jid = $<HTMLInputElement>("jid").value.trim();
    const pw = $<HTMLInputElement>("password").value;
    const service = $<HTMLInputElement>("service").value.trim();
    const resource = $<HTMLInputElement>("resource").value.trim() || "web";
    $("login-error").textContent = "";
    app.login(jid, pw, service, resource).then(
      () => {
        $<HTMLInputElement>("password").value = "";
        $("login").hidden = true;
        $("main").hidden = false;
        app.draw();
      },
      (e: unknown) => {
        $("login-error").textContent = e instanceof Error ? e.message : String(e);
      },
    );
  };
  $<HTMLFormElement>("open-form").onsubmit = (ev) => {
    ev.preventDefault();
    try {
      app.open($<HTMLInputElement>("peer").value);
    } catch (e) {
      app.fail(e);
    }
  };
  $("encrypt").onclick = () => void app.negotiate().catch((e: unknown) => app.fail(e));
  $("sas-match").onclick = () => void app.confirm(true).catch((e: unknown) => app.fail(e));
  $("sas-differ").onclick = () => void app.confirm(false).catch((e: unknown) => app.fail(e));
  $<HTMLFormElement>("compose").onsubmit = (ev) => {
    ev.preventDefault();
    const t = $<HTMLInputElement>("text");
    const text = t.value.trim();
    t.value = "";
    if (text) void app.send(text).catch((e: unknown) => app.fail(e));
  };
}

void main();
