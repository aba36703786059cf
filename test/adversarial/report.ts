/**
 * The adversarial suite's reporter: every case is a node:test test that records what the
 * attack was, the exact outcome it expected and observed, and whether any plaintext marker
 * reached the application or the wire. At the end of each file the cases are printed as a
 * table and merged into test/adversarial/results.json (generated at run time, not
 * committed), keyed by suite, so that the whole folder's run lists every case.
 *
 * Spec: none (test support). Issue 9 step 1: "Each case asserts the exact outcome (error,
 * termination, alert) and that no plaintext was delivered or leaked"; "the adversarial
 * suite runs in CI and lists every case with its outcome".
 */
import assert from "node:assert/strict";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";

export const RESULTS_FILE = join(dirname(fileURLToPath(import.meta.url)), "results.json");

/** What one attack produced, as the case observed it. */
export interface Observation {
  /** The exact outcome, e.g. "bob:bad-mac; terminated" (compared with the expected one). */
  readonly outcome: string;
  /** Every text the application received (bodies, payloads, decrypted bytes). */
  readonly delivered?: readonly string[];
  /** Every text that crossed the wire (stanza text, decoded payload bytes). */
  readonly wire?: readonly string[];
}

export interface CaseOptions {
  /** The exact outcome the case must observe. */
  readonly expect: string;
  /** Plaintext markers that must appear neither in `delivered` nor on the `wire`. */
  readonly secrets?: readonly string[];
  /** Markers that may be delivered (the legitimate traffic before the attack) but never leak on the wire. */
  readonly wireOnlySecrets?: readonly string[];
  /** A known bug in a layer owned by someone else: the test asserts the correct behaviour. */
  readonly todo?: string;
  readonly timeout?: number;
}

export interface CaseResult {
  readonly suite: string;
  readonly name: string;
  readonly expected: string;
  readonly observed: string;
  readonly status: "pass" | "fail" | "todo";
  readonly delivered: "none" | "leaked" | "n/a";
  readonly wire: "clean" | "leaked" | "n/a";
  readonly todo?: string;
  readonly error?: string;
}

function leaks(texts: readonly string[] | undefined, secrets: readonly string[]): "none" | "leaked" | "n/a" {
  if (texts === undefined || secrets.length === 0) return "n/a";
  return texts.some((t) => secrets.some((s) => t.includes(s))) ? "leaked" : "none";
}

/** One file's cases. */
export class AdversarialReport {
  readonly results: CaseResult[] = [];

  constructor(readonly suite: string) {
    after(() => this.finish());
  }

  /** Declares a case: runs `attack`, compares its outcome, checks for plaintext, records it. */
  case(name: string, o: CaseOptions, attack: () => Promise<Observation> | Observation): void {
    test(name, { ...(o.todo !== undefined ? { todo: o.todo } : {}), timeout: o.timeout ?? 30_000 }, async () => {
      let obs: Observation | undefined;
      try {
        obs = await attack();
        const secrets = o.secrets ?? [];
        const wireSecrets = [...secrets, ...(o.wireOnlySecrets ?? [])];
        const delivered = leaks(obs.delivered, secrets);
        const wireLeak = leaks(obs.wire, wireSecrets);
        const ok = obs.outcome === o.expect && delivered !== "leaked" && wireLeak !== "leaked";
        this.results.push({
          suite: this.suite,
          name,
          expected: o.expect,
          observed: obs.outcome,
          status: o.todo !== undefined && !ok ? "todo" : ok ? "pass" : "fail",
          delivered,
          wire: wireLeak === "none" ? "clean" : wireLeak,
          ...(o.todo !== undefined ? { todo: o.todo } : {}),
        });
        assert.equal(obs.outcome, o.expect, `${name}: outcome`);
        assert.notEqual(delivered, "leaked", `${name}: plaintext delivered to the application`);
        assert.notEqual(wireLeak, "leaked", `${name}: plaintext on the wire`);
      } catch (e) {
        if (obs === undefined)
          this.results.push({
            suite: this.suite,
            name,
            expected: o.expect,
            observed: `threw ${e instanceof Error ? e.name : "non-error"}`,
            status: o.todo !== undefined ? "todo" : "fail",
            delivered: "n/a",
            wire: "n/a",
            ...(o.todo !== undefined ? { todo: o.todo } : {}),
            error: e instanceof Error ? e.message.slice(0, 200) : String(e).slice(0, 200),
          });
        throw e;
      }
    });
  }

  private finish(): void {
    const rows = this.results.map((r) => [r.status.toUpperCase(), r.name, r.expected, r.observed === r.expected ? "=" : r.observed, r.delivered, r.wire]);
    const head = ["status", `case (${this.suite})`, "expected outcome", "observed", "delivered", "wire"];
    const widths = head.map((h, i) => Math.min(i === 1 ? 70 : 48, Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length))));
    const fmt = (r: readonly string[]) => r.map((c, i) => c.slice(0, widths[i]).padEnd(widths[i] ?? 0)).join(" | ");
    const lines = [fmt(head), widths.map((w) => "-".repeat(w)).join("-+-"), ...rows.map(fmt)];
    const pass = this.results.filter((r) => r.status === "pass").length;
    const todo = this.results.filter((r) => r.status === "todo").length;
    const failed = this.results.length - pass - todo;
    lines.push(`${this.suite}: ${this.results.length} cases, ${pass} pass, ${todo} todo (known bugs), ${failed} fail`);
    console.log(`\nAdversarial suite: ${this.suite}\n${lines.join("\n")}\n`);
    mergeResults(this.suite, this.results);
  }
}

interface ResultsFile {
  readonly generated: string;
  readonly suites: Record<string, readonly CaseResult[]>;
}

/** Read-merge-write (files run one at a time in `npm test`; rename keeps the file whole). */
function mergeResults(suite: string, results: readonly CaseResult[]): void {
  let current: ResultsFile = { generated: "", suites: {} };
  try {
    current = JSON.parse(readFileSync(RESULTS_FILE, "utf8")) as ResultsFile;
  } catch {
    /* first file of the run */
  }
  const next: ResultsFile = { generated: new Date().toISOString(), suites: { ...current.suites, [suite]: results } };
  const tmp = `${RESULTS_FILE}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(next, null, 2)}\n`);
  renameSync(tmp, RESULTS_FILE);
}
