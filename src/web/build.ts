/**
 * Builds the web client: bundles src/web/app.ts and the library parts it uses into one
 * ES module for browsers with esbuild, next to index.html and app.css.
 *
 * Node built-ins reachable from shared modules (node:crypto in src/crypto/node.ts and
 * src/identity, which SecureClient and TrustManager import for their Node defaults) are
 * replaced by a stub that throws if called: the page injects the browser provider
 * (src/crypto/browser.ts) and never takes those paths. A call would fail loudly
 * ("not available in the browser"), never fall back to something weaker. Two exceptions,
 * so that peers' keys are recorded and fingerprinted by the library's own trust code:
 * node:crypto's `createPublicKey` is ./shim-crypto.ts (Ed25519 and P-256 public keys
 * only; RSA/DSA still throw), and the free identifier `Buffer` is ./shim-buffer.ts.
 *
 * Spec: none (build tooling); the output is what src/cli/web.ts serves.
 */
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
export const WEB_SRC = HERE;
export const DEFAULT_OUT = resolve(HERE, "../../dist-web");

const STUB = `
const fail = (name) => () => { throw new Error(name + " is not available in the browser"); };
module.exports = new Proxy({}, { get: (_t, name) => name === "__esModule" ? false : fail(String(name)) });
`;

/** node:crypto: createPublicKey from ./shim-crypto.ts, every other name the throwing stub. */
const CRYPTO_STUB = `
const shim = require(${JSON.stringify(join(HERE, "shim-crypto.ts"))});
const fail = (name) => () => { throw new Error(name + " is not available in the browser"); };
// createPublicKey is an own property: esbuild's ESM interop copies own properties only.
module.exports = new Proxy({ createPublicKey: shim.createPublicKey }, { get: (t, name) => name === "__esModule" ? false : name in t ? t[name] : fail(String(name)) });
`;

export interface BuildResult {
  readonly outDir: string;
  readonly bytes: number;
}

/** Bundles the page into `outDir` (default dist-web/). */
export async function buildWeb(outDir: string = DEFAULT_OUT, opts: { minify?: boolean } = {}): Promise<BuildResult> {
  const esbuild = await import("esbuild");
  mkdirSync(outDir, { recursive: true });
  const r = await esbuild.build({
    entryPoints: [join(HERE, "app.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["chrome110", "firefox115", "safari16"],
    outfile: join(outDir, "app.js"),
    minify: opts.minify ?? false,
    sourcemap: true,
    metafile: true,
    logLevel: "silent",
    inject: [join(HERE, "shim-buffer.ts")],
    plugins: [
      {
        name: "node-builtins-stub",
        setup(b) {
          b.onResolve({ filter: /^(node:)?crypto$/ }, (a) => ({ path: a.path, namespace: "node-crypto-shim" }));
          b.onLoad({ filter: /.*/, namespace: "node-crypto-shim" }, () => ({ contents: CRYPTO_STUB, loader: "js", resolveDir: HERE }));
          b.onResolve({ filter: /^(node:.*|crypto|fs|net|tls|os|path|ws|better-sqlite3)$/ }, (a) => ({ path: a.path, namespace: "node-stub" }));
          b.onLoad({ filter: /.*/, namespace: "node-stub" }, () => ({ contents: STUB, loader: "js" }));
        },
      },
    ],
  });
  copyFileSync(join(HERE, "index.html"), join(outDir, "index.html"));
  copyFileSync(join(HERE, "app.css"), join(outDir, "app.css"));
  const bytes = Object.values(r.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
  return { outDir, bytes };
}

const self = process.argv[1] ?? "";
if (self.endsWith("web/build.ts") || self.endsWith("web/build.js")) {
  buildWeb(process.argv[2] ? resolve(process.argv[2]) : DEFAULT_OUT).then(
    (r) => console.log(`built ${r.outDir} (${r.bytes} bytes)`),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
