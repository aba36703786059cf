/**
 * `xmpp-e2e tui` (and the interactive mode of `xmpp-e2e chat`): the terminal client of
 * src/tui. Exit codes: 0 after /quit, 1 on an error (its typed condition printed, never a
 * password or key), 2 on a usage or configuration error.
 *
 * Spec: see src/tui/index.ts.
 */
import { TuiError, runTui, TUI_USAGE } from "../tui/index.js";

export async function run(argv: string[]): Promise<number> {
  try {
    return await runTui(argv);
  } catch (e) {
    if (e instanceof TuiError) {
      process.stderr.write(`xmpp-e2e tui: ${e.message}\n`);
      if (e.condition === "usage") process.stderr.write(`\n${TUI_USAGE}`);
      return e.condition === "usage" || e.condition === "bad-config" || e.condition === "insecure-permissions" || e.condition === "not-found" ? 2 : 1;
    }
    const cond = typeof e === "object" && e !== null && "condition" in e ? ` (${String((e as { condition: unknown }).condition)})` : "";
    process.stderr.write(`xmpp-e2e tui: ${e instanceof Error ? e.message : String(e)}${cond}\n`);
    return 1;
  }
}

const self = process.argv[1] ?? "";
if (self.endsWith("cli/tui.ts") || self.endsWith("cli/tui.js")) {
  run(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
