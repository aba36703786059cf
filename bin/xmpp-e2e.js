#!/usr/bin/env node
// Launcher: in a checkout (src/ present) runs the TypeScript sources through tsx, so a
// stale dist/ never shadows them; an installed package ships only dist/ and runs that.
import { existsSync } from "node:fs";

const source = new URL("../src/cli/main.ts", import.meta.url);
const mod = existsSync(source)
  ? await (async () => {
      const { register } = await import("tsx/esm/api");
      register();
      return import(source.href);
    })()
  : await import(new URL("../dist/src/cli/main.js", import.meta.url).href);
process.exit(await mod.main(process.argv.slice(2)));
