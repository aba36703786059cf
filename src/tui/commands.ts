/**
 * The terminal client's commands: one table drives /help, Tab completion and dispatch,
 * so every command is discoverable.
 *
 * Spec: XEP-0116 v0.16 section 4.7.2 (the users compare the SAS and confirm it),
 * sections 7.4 and 8 (alerts the user acts on), XEP-0200 v0.2 section 7 (re-keying),
 * XEP-0155 v1.2 section 4.8 (ending a session), RFC 6121 sections 2-3 (contacts).
 */

export interface CommandSpec {
  readonly name: string;
  readonly args: string;
  readonly help: string;
  readonly group: "conversations" | "encryption" | "trust" | "files" | "contacts" | "general";
}

export const COMMANDS: readonly CommandSpec[] = [
  { name: "open", args: "JID|N", help: "open the conversation with a contact (JID, or its number in the list)", group: "conversations" },
  { name: "next", args: "", help: "switch to the next conversation (also Ctrl-N; Ctrl-P goes back)", group: "conversations" },
  { name: "close", args: "", help: "close the current conversation view", group: "conversations" },
  { name: "encrypt", args: "", help: "negotiate an Encrypted Session now (typing a message does this for you)", group: "encryption" },
  { name: "sas", args: "", help: "show the Short Authentication String to compare with your contact", group: "encryption" },
  { name: "confirm", args: "", help: "the SAS matches what your contact sees: mark the session verified", group: "encryption" },
  { name: "reject", args: "", help: "the SAS differs: end the session (someone may be in the middle)", group: "encryption" },
  { name: "rekey", args: "", help: "replace the session keys now", group: "encryption" },
  { name: "end", args: "", help: "end the encrypted session", group: "encryption" },
  { name: "status", args: "", help: "show how the conversation is protected (suite, keys, verification)", group: "encryption" },
  { name: "alerts", args: "", help: "list the open alerts and what to do about each", group: "trust" },
  { name: "trust", args: "N", help: "accept the new or shared key of alert N (after checking its fingerprint)", group: "trust" },
  { name: "trust-cert", args: "N", help: "trust the unverified XTLS certificate of alert N (leap of faith; it is pinned)", group: "trust" },
  { name: "dismiss", args: "N", help: "close alert N without acting on it (a refused certificate or file stays refused)", group: "trust" },
  { name: "fingerprint", args: "", help: "show your key's fingerprint and your contact's", group: "trust" },
  { name: "object", args: "TEXT", help: "send one message signed and encrypted with S/MIME (RFC 3923 object encryption; works without a session)", group: "encryption" },
  { name: "send", args: "FILE", help: "send a file over an XTLS tunnel (TLS over Jingle in-band bytestreams)", group: "files" },
  { name: "accept", args: "N", help: "accept the file offered in alert N", group: "files" },
  { name: "add", args: "JID [NAME]", help: "add a contact and ask to see its presence", group: "contacts" },
  { name: "allow", args: "JID", help: "let a contact see your presence (answers its request)", group: "contacts" },
  { name: "contacts", args: "", help: "list contacts with their presence", group: "contacts" },
  { name: "help", args: "[COMMAND]", help: "this list, or one command in detail", group: "general" },
  { name: "quit", args: "", help: "end every session and leave (also Ctrl-D)", group: "general" },
];

/** The help text: every command, grouped. */
export function helpLines(only?: string): string[] {
  if (only !== undefined) {
    const c = COMMANDS.find((x) => x.name === only.replace(/^\//, ""));
    return c ? [`/${c.name}${c.args ? ` ${c.args}` : ""}  ${c.help}`] : [`no such command: ${only} (type /help)`];
  }
  const out: string[] = ["Type a message and press Enter: it is sent encrypted (an Encrypted Session is negotiated first, never in the clear)."];
  const groups: CommandSpec["group"][] = ["conversations", "encryption", "trust", "files", "contacts", "general"];
  for (const g of groups) {
    out.push(`${g}:`);
    for (const c of COMMANDS.filter((x) => x.group === g)) out.push(`  /${`${c.name}${c.args ? ` ${c.args}` : ""}`.padEnd(16)} ${c.help}`);
  }
  out.push("Keys: Tab completes a command, Ctrl-N/Ctrl-P switch conversations, PageUp/PageDown scroll, Ctrl-L redraws.");
  return out;
}

/** Tab completion of a command name (unique prefix). */
export function complete(input: string): string | undefined {
  if (!input.startsWith("/") || input.includes(" ")) return undefined;
  const hits = COMMANDS.filter((c) => `/${c.name}`.startsWith(input));
  if (hits.length === 1 && hits[0]) return `/${hits[0].name}${hits[0].args ? " " : ""}`;
  if (hits.length > 1) {
    // The longest common prefix.
    let p = `/${hits[0]?.name ?? ""}`;
    for (const h of hits) while (!`/${h.name}`.startsWith(p)) p = p.slice(0, -1);
    return p.length > input.length ? p : undefined;
  }
  return undefined;
}
