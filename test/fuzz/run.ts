/**
 * Registers every fuzz target of a group as a node:test test with a bounded, reproducible
 * run (seed printed on failure, with the shrunk counterexample).
 *
 * Spec: none (test support).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ciSeed, runs, type FuzzTarget } from "./lib.js";

export function registerTargets(targets: readonly FuzzTarget[]): void {
  for (const t of targets) {
    test(t.name, { timeout: 120_000 }, async () => {
      const seed = ciSeed(t.name);
      const r = await t.check({ seed, numRuns: runs(t.ciRuns) });
      assert.ok(
        !r.failed,
        `fuzz target "${t.name}" failed (seed ${r.seed}, path ${r.path ?? "-"}):\ncounterexample: ${r.counterexample ?? "-"}\n${r.error ?? ""}`,
      );
    });
  }
}
