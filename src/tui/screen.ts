/**
 * Draws the terminal client with plain ANSI escape codes (ECMA-48: CUP, EL, SGR; the
 * DEC alternate screen where the terminal has one) and nothing else, so it works in any
 * VT100-like terminal, tmux and the Linux console. `NO_COLOR` (no-color.org) drops the
 * colours; the layout never depends on them: every state is also written in words
 * ("ENCRYPTED", "NOT ENCRYPTED", "VERIFIED", "UNVERIFIED").
 *
 * Spec: XEP-0210 section 3 (the user sees at a glance whether a conversation is
 * encrypted, and how); XEP-0116 v0.16 section 4.7.2 (the SAS to compare is on screen until
 * confirmed), section 7.4 (alerts) and section 8 (disclosure: "immediately and clearly").
 *
 * Layout (rows top to bottom): title bar; the conversation's protection header; contacts
 * (left) and conversation (right); open alerts, each starting with the commands that
 * resolve it; the input line.
 */
import type { Alert, Contact, Conversation, Line, Model, Transfer } from "./model.js";

export interface Frame {
  readonly lines: readonly string[];
  /** Where the cursor goes (0-based row, column). */
  readonly cursor: readonly [number, number];
}

export interface ScreenState {
  readonly input: string;
  readonly cursor: number;
  /** Lines scrolled back from the end of the conversation. */
  readonly scroll: number;
}

const ESC = "\x1b[";

export class Painter {
  constructor(private readonly color: boolean) {}
  sgr(codes: string, s: string): string {
    return this.color ? `${ESC}${codes}m${s}${ESC}0m` : s;
  }
}

/** Cuts or pads `s` to exactly `w` columns (code points; wide characters count as one). */
export function fit(s: string, w: number): string {
  const cps = [...s.replace(/[\u0000-\u001f\u007f]/g, " ")];
  if (cps.length > w) return w <= 1 ? cps.slice(0, w).join("") : `${cps.slice(0, w - 1).join("")}…`;
  return cps.join("") + " ".repeat(w - cps.length);
}

/** Word-wraps `s` to `w` columns. */
export function wrap(s: string, w: number): string[] {
  if (w <= 0) return [];
  const out: string[] = [];
  for (const para of s.split("\n")) {
    let line = "";
    for (const word of para.split(" ")) {
      const cand = line === "" ? word : `${line} ${word}`;
      if ([...cand].length <= w) line = cand;
      else {
        if (line !== "") out.push(line);
        let rest = word;
        while ([...rest].length > w) {
          out.push([...rest].slice(0, w).join(""));
          rest = [...rest].slice(w).join("");
        }
        line = rest;
      }
    }
    out.push(line);
  }
  return out;
}

function hhmm(at: number): string {
  const d = new Date(at);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

/** The encrypted-by indicator of a message line: ESession lines follow the header; objects say so. */
function viaTag(l: Line): string {
  return l.via === "object" ? " [object]" : "";
}

/** One conversation line as text, e.g. "12:03 bob@example.org [object]: hi". */
export function lineText(l: Line, peer: string | undefined): string {
  const t = hhmm(l.at);
  switch (l.kind) {
    case "in":
      return `${t} ${peer ?? "them"}${viaTag(l)}: ${l.text}`;
    case "out":
      return `${t} me${viaTag(l)}: ${l.text}`;
    case "unprotected":
      return `${t} [NOT ENCRYPTED] ${peer ?? "them"}: ${l.text}`;
    case "info":
      return `${t} * ${l.text}`;
    case "warn":
      return `${t} ! ${l.text}`;
    case "error":
      return `${t} x ${l.text}`;
  }
}

function lineColor(l: Line): string | undefined {
  switch (l.kind) {
    case "in":
      return undefined;
    case "out":
      return "36";
    case "unprotected":
      return "1;31";
    case "info":
      return "2";
    case "warn":
      return "1;33";
    case "error":
      return "31";
  }
}

/** The protection header words, e.g. "ENCRYPTED (ESession: X25519, ...) | UNVERIFIED: SAS abcde". */
export function protectionText(c: Conversation): { text: string; color: string } {
  const p = c.protection;
  const parts: string[] = [];
  let color = "1;31";
  switch (p.kind) {
    case "none":
      parts.push("NOT ENCRYPTED (messages wait for an encrypted session)");
      break;
    case "negotiating":
      parts.push("NEGOTIATING ENCRYPTION ...");
      color = "1;33";
      break;
    case "esession":
      parts.push(`ENCRYPTED (ESession: ${p.suite})`);
      if (c.verification === "verified") {
        parts.push("VERIFIED");
        color = "1;32";
      } else {
        parts.push(p.sas === undefined ? "UNVERIFIED key" : `UNVERIFIED: compare SAS ${p.sas} then /confirm`);
        color = "1;33";
      }
      break;
  }
  if (c.xtls !== undefined) parts.push(`XTLS (${c.xtls})`);
  return { text: parts.join(" | "), color };
}

export function progressBar(t: Transfer, w: number): string {
  const pct = t.total === 0 ? 1 : Math.min(1, t.done / t.total);
  const label = `${t.direction === "out" ? "sending" : "receiving"} ${t.name} `;
  const tail = ` ${Math.floor(pct * 100)}% ${t.done}/${t.total} B${t.state === "done" ? " done" : t.state === "failed" ? " FAILED" : ""}`;
  const barW = Math.max(10, w - label.length - tail.length - 2);
  const n = Math.round(pct * barW);
  return `${label}[${"#".repeat(n)}${"-".repeat(barW - n)}]${tail}`;
}

function contactLine(c: Contact, i: number, active: boolean, unread: number): string {
  const online = c.resources.size > 0;
  const shows = [...c.resources.values()];
  const mark = !online ? "-" : shows.some((r) => r.show === "online" || r.show === "chat") ? "*" : "~";
  const name = c.name ?? c.bare;
  const badge = unread > 0 ? ` (${unread})` : c.pendingIn ? " ?" : "";
  return `${active ? ">" : " "}${i + 1} ${mark} ${name}${badge}`;
}

/** Builds the whole screen for `cols` x `rows`. */
export function render(m: Model, st: ScreenState, cols: number, rows: number, color: boolean): Frame {
  const p = new Painter(color);
  const W = Math.max(20, cols);
  const H = Math.max(8, rows);
  const out: string[] = [];
  const open = m.alerts.length;
  out.push(p.sgr("7", fit(` xmpp-e2e | ${m.account} | ${m.status}${open ? ` | ${open} alert${open > 1 ? "s" : ""}: /alerts` : ""} | /help`, W)));
  const conv = m.active === undefined ? undefined : m.conversations.get(m.active);
  if (conv) {
    const pr = protectionText(conv);
    out.push(fit(`${conv.peer ?? conv.bare}`, W));
    out.push(p.sgr(pr.color, fit(pr.text, W)));
  } else {
    out.push(fit("no conversation open: /open JID or a number from the list; /help", W));
    out.push(fit("", W));
  }
  const alertRows = Math.min(open, 3);
  const transferRow = conv?.transfer !== undefined ? 1 : 0;
  const bodyRows = H - out.length - alertRows - transferRow - 2;
  const side = Math.min(30, Math.max(14, Math.floor(W / 4)));
  const mainW = W - side - 1;
  // Contacts.
  const contacts = m.sortedContacts();
  const sideLines: string[] = [fit("Contacts", side)];
  contacts.forEach((c, i) => sideLines.push(fit(contactLine(c, i, c.bare === m.active, m.conversations.get(c.bare)?.unread ?? 0), side)));
  // Conversations with people not in the roster are listed too.
  for (const c of m.conversations.values()) if (!m.contacts.has(c.bare)) sideLines.push(fit(`${c.bare === m.active ? ">" : " "}  ? ${c.bare}${c.unread ? ` (${c.unread})` : ""}`, side));
  // Conversation (wrapped, bottom-aligned, scrollable).
  const src = conv ? conv.lines : m.console;
  const wrapped: Array<{ text: string; color: string | undefined }> = [];
  for (const l of src) for (const w of wrap(lineText(l, conv?.bare), mainW)) wrapped.push({ text: w, color: lineColor(l) });
  const maxScroll = Math.max(0, wrapped.length - bodyRows);
  const scroll = Math.min(st.scroll, maxScroll);
  const visible = wrapped.slice(Math.max(0, wrapped.length - bodyRows - scroll), wrapped.length - scroll);
  const pad = bodyRows - visible.length;
  for (let r = 0; r < bodyRows; r++) {
    const left = sideLines[r] ?? fit("", side);
    const v = r >= pad ? visible[r - pad] : undefined;
    const right = v ? (v.color ? p.sgr(v.color, fit(v.text, mainW)) : fit(v.text, mainW)) : fit("", mainW);
    out.push(`${left}|${right}`);
  }
  if (conv?.transfer) out.push(fit(progressBar(conv.transfer, W), W));
  out.push(fit(scroll > 0 ? `-- ${scroll} lines below (PageDown) --` : "-".repeat(W), W));
  for (const a of m.alerts.slice(-alertRows)) out.push(p.sgr("1;33", fit(alertText(a), W)));
  // Input line: keep the cursor visible in long input.
  const prompt = "> ";
  const room = W - prompt.length - 1;
  const start = Math.max(0, st.cursor - room);
  out.push(fit(prompt + [...st.input].slice(start, start + room).join(""), W));
  return { lines: out, cursor: [out.length - 1, prompt.length + (st.cursor - start)] };
}

export function alertText(a: Alert): string {
  return `! [${a.id}] ${a.actions.join(" | ")} :: ${a.text}`;
}

/** The escape sequences that paint a frame from the top-left corner. */
export function paint(f: Frame): string {
  let s = `${ESC}?25l${ESC}H`;
  f.lines.forEach((l, i) => {
    s += `${ESC}${i + 1};1H${l}${ESC}K`;
  });
  s += `${ESC}J${ESC}${f.cursor[0] + 1};${f.cursor[1] + 1}H${ESC}?25h`;
  return s;
}

export const ENTER_ALT = `${ESC}?1049h${ESC}H${ESC}2J`;
export const LEAVE_ALT = `${ESC}?25h${ESC}?1049l`;
