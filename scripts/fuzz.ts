/**
 * The long fuzz run: every target of test/fuzz/targets/ with fresh random seeds until the
 * time is up. Each batch prints its target and seed; a failure prints fast-check's shrunk
 * (minimized) counterexample and saves it to fuzz-failures/<target>-<seed>.json with the
 * seed and path that replay it (FUZZ_SEED=<seed> reruns the CI test with that seed).
 * Inputs slower than --ms-per-input fail too (a hang shows up as a shrunk slow input).
 *
 *   tsx scripts/fuzz.ts --minutes 10 [--only esession] [--runs 2000] [--ms-per-input 2000]
 *
 * Spec: none (test tooling for issue 9 step 2); see docs/security.md "Fuzzing".
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { budget, type FuzzTarget } from "../test/fuzz/lib.js";
import { codecTargets } from "../test/fuzz/targets/codecs.js";
import { machineTargets } from "../test/fuzz/targets/machines.js";
import { xmlTargets } from "../test/fuzz/targets/xml.js";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i !== -1 && process.argv[i + 1] !== undefined ? (process.argv[i + 1] as string) : fallback;
}

async function main(): Promise<number> {
  const minutes = Number(arg("minutes", "5"));
  const only = arg("only", "");
  const runsPerBatch = Number(arg("runs", "0"));
  budget.msPerInput = Number(arg("ms-per-input", "2000"));
  const outDir = arg("out", "fuzz-failures");
  const targets: FuzzTarget[] = [...xmlTargets, ...codecTargets, ...machineTargets].filter((t) => only === "" || t.name.includes(only));
  if (targets.length === 0) {
    console.error(`no target matches "${only}"`);
    return 2;
  }
  const end = Date.now() + minutes * 60_000;
  let batches = 0;
  let inputs = 0;
  let failures = 0;
  while (Date.now() < end) {
    for (const t of targets) {
      if (Date.now() >= end) break;
      const seed = (Math.random() * 2 ** 31) | 0;
      const numRuns = runsPerBatch > 0 ? runsPerBatch : t.ciRuns * 10;
      process.stdout.write(`[fuzz] ${t.name} seed=${seed} runs=${numRuns} ... `);
      const r = await t.check({ seed, numRuns });
      batches++;
      inputs += r.numRuns;
      if (!r.failed) {
        console.log("ok");
        continue;
      }
      failures++;
      console.log("FAILED");
      console.log(`  seed=${r.seed} path=${r.path ?? "-"}\n  counterexample (shrunk): ${r.counterexample ?? "-"}\n  ${r.error?.split("\n")[0] ?? ""}`);
      mkdirSync(outDir, { recursive: true });
      const file = join(outDir, `${t.name.replace(/[^A-Za-z0-9]+/g, "-").slice(0, 60)}-${r.seed}.json`);
      writeFileSync(file, JSON.stringify({ target: t.name, ...r, replay: `FUZZ_SEED=${r.seed}` }, null, 2));
      console.log(`  saved ${file}`);
    }
  }
  console.log(`[fuzz] ${batches} batches, ${inputs} inputs, ${failures} failing batch(es) in ${minutes} min`);
  return failures === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e);
    process.exit(2);
  },
);
