#!/usr/bin/env node
// Launcher: runs the built CLI (dist/) when present, else the TypeScript sources via tsx.
import { existsSync } from "node:fs";

const built = new URL("../dist/src/cli/main.js", import.meta.url);
const mod = existsSync(built)
  ? await import(built.href)
  : await (async () => {
      const { register } = await import("tsx/esm/api");
      register();
      return import(new URL("../src/cli/main.ts", import.meta.url).href);
    })();
process.exit(await mod.main(process.argv.slice(2)));
