/**
 * Benchmark harness: rate measurement (warmup, then N timed samples), comparison with a
 * baseline measured in the same run, a plain-text table, and a JSON results file that
 * several runs (one per issue) merge into.
 *
 * Spec: none directly; the figures it produces compare this library's XEP-0200 v0.2
 * (stanza encryption, section 5) and XEP-0116 v0.16 / XEP-0217 v0.1 (Diffie-Hellman
 * negotiation, section 4) costs with the raw node:crypto operations they are built on
 * (see ./baselines.ts).
 *
 * Conventions: every figure is a RATE, higher is better ("ops/s", "MB/s" with
 * MB = 10^6 bytes, ...); `ratio` = subject median / baseline median, so 0.8 means the
 * subject runs at 80% of the baseline's speed. Timing uses process.hrtime.bigint().
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/** Byte-throughput units (need `bytesPerOp`) and their size in bytes. */
export const BYTE_UNITS = { "B/s": 1, "KB/s": 1e3, "MB/s": 1e6, "GB/s": 1e9 } as const;
export type ByteUnit = keyof typeof BYTE_UNITS;
/** A rate: a byte throughput, or a count of anything per second ("ops/s", "stanzas/s", ...). */
export type Unit = ByteUnit | "ops/s" | `${string}/s`;

export interface MeasureOptions {
  readonly unit: Unit;
  /** Bytes processed by one call of `fn`; required for byte units. */
  readonly bytesPerOp?: number;
  /** Each sample runs `fn` repeatedly for at least this long. Default 200 ms. */
  readonly minTimeMs?: number;
  /** Number of timed samples. Default 7. */
  readonly samples?: number;
  /** Untimed warmup before sampling (JIT, caches). Default `minTimeMs`. */
  readonly warmupMs?: number;
  /** Monotonic nanosecond clock; for tests only. Default process.hrtime.bigint. */
  readonly now?: () => bigint;
}

/** What {@link measure} returns: rates over the samples. */
export interface Measurement {
  readonly name: string;
  readonly unit: Unit;
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

/** A measurement set against a baseline measured in the same run. */
export interface Figure extends Measurement {
  /** The baseline's name. */
  readonly baseline: string;
  readonly baselineMedian: number;
  /** median / baselineMedian (higher is better for rates). */
  readonly ratio: number;
}

/** A row of the table or the results file: a compared figure or a bare measurement. */
export type ResultRecord = Figure | Measurement;

export interface ResultsFile {
  readonly generatedAt: string;
  readonly node: string;
  readonly figures: ResultRecord[];
}

export const DEFAULT_RESULTS_PATH = "bench/results/latest.json";

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return (typeof x === "object" || typeof x === "function") && x !== null && "then" in x && typeof x.then === "function";
}

/** Runs `fn` `n` times, awaiting it only when it returns a promise. */
async function runBatch(fn: () => unknown, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = fn();
    if (isThenable(r)) await r;
  }
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError("median of nothing");
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const hi = s[mid] ?? 0;
  return s.length % 2 === 1 ? hi : ((s[mid - 1] ?? 0) + hi) / 2;
}

/**
 * Measures the rate of `fn` (sync or async; one call = one op). After a warmup, which
 * also sizes batches so the clock is read rarely for fast functions, each of `samples`
 * samples runs whole batches until at least `minTimeMs` has elapsed; its rate is
 * ops / seconds, times `bytesPerOp / unit size` for byte units.
 */
export async function measure(name: string, fn: () => unknown, opts: MeasureOptions): Promise<Measurement> {
  const now = opts.now ?? (() => process.hrtime.bigint());
  const minTimeMs = opts.minTimeMs ?? 200;
  const samples = opts.samples ?? 7;
  const warmupMs = opts.warmupMs ?? minTimeMs;
  if (!(minTimeMs > 0)) throw new RangeError("minTimeMs must be > 0");
  if (!Number.isInteger(samples) || samples < 1) throw new RangeError("samples must be a positive integer");
  const unitBytes = (BYTE_UNITS as Record<string, number | undefined>)[opts.unit];
  let scale = 1;
  if (unitBytes !== undefined) {
    if (opts.bytesPerOp === undefined || !(opts.bytesPerOp > 0))
      throw new RangeError(`${name}: unit ${opts.unit} needs a positive bytesPerOp`);
    scale = opts.bytesPerOp / unitBytes;
  }
  const minNs = BigInt(Math.ceil(minTimeMs * 1e6));

  // Warmup: at least one call; the observed cost per call sizes the batches so that a
  // batch takes about 1/20 of a sample.
  let ops = 0;
  let batch = 1;
  const warmNs = BigInt(Math.ceil(warmupMs * 1e6));
  const w0 = now();
  let elapsed = 0n;
  do {
    await runBatch(fn, batch);
    ops += batch;
    elapsed = now() - w0;
    if (elapsed < warmNs / 20n) batch *= 2;
  } while (elapsed < warmNs);
  const perOpNs = Number(elapsed) / ops;
  batch = Math.max(1, Math.floor(minTimeMs * 1e6 / 20 / Math.max(perOpNs, 1)));

  const rates: number[] = [];
  for (let s = 0; s < samples; s++) {
    let n = 0;
    const t0 = now();
    let dt = 0n;
    do {
      await runBatch(fn, batch);
      n += batch;
      dt = now() - t0;
    } while (dt < minNs);
    rates.push((n / (Number(dt) / 1e9)) * scale);
  }
  return { name, unit: opts.unit, median: median(rates), min: Math.min(...rates), max: Math.max(...rates) };
}

/** Sets `subject` against `baseline` (same unit required). */
export function compare(subject: Measurement, baseline: Measurement): Figure {
  if (subject.unit !== baseline.unit)
    throw new RangeError(`cannot compare ${subject.name} (${subject.unit}) with ${baseline.name} (${baseline.unit})`);
  return {
    name: subject.name,
    unit: subject.unit,
    median: subject.median,
    min: subject.min,
    max: subject.max,
    baseline: baseline.name,
    baselineMedian: baseline.median,
    ratio: baseline.median === 0 ? Number.NaN : subject.median / baseline.median,
  };
}

function isFigure(r: ResultRecord): r is Figure {
  return "baseline" in r && typeof r.baseline === "string";
}

/** Three significant digits, thousands separated (e.g. 1,234,567 / 12.3 / 0.00123). */
export function formatRate(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return "0";
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x))));
  return x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** The aligned plain-text table: figure, median, unit, baseline, ratio. */
export function formatTable(figures: readonly ResultRecord[]): string {
  const header = ["figure", "median", "unit", "baseline", "ratio"] as const;
  const rows = figures.map((f) => [
    f.name,
    formatRate(f.median),
    f.unit,
    isFigure(f) ? f.baseline : "-",
    isFigure(f) ? (Number.isFinite(f.ratio) ? f.ratio.toFixed(3) : String(f.ratio)) : "-",
  ]);
  const all = [[...header], ...rows];
  const width = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  const rightAligned = new Set([1, 4]);
  const line = (r: readonly string[]) =>
    r
      .map((c, i) => (rightAligned.has(i) ? c.padStart(width[i] ?? 0) : c.padEnd(width[i] ?? 0)))
      .join("  ")
      .trimEnd();
  const rule = width.map((w) => "-".repeat(w)).join("  ");
  return [line(all[0] ?? []), rule, ...rows.map(line)].join("\n");
}

/** Prints {@link formatTable} to stdout (or `write`). */
export function printTable(figures: readonly ResultRecord[], write: (s: string) => void = (s) => process.stdout.write(s)): void {
  write(`${formatTable(figures)}\n`);
}

function isResultRecord(x: unknown): x is ResultRecord {
  if (typeof x !== "object" || x === null) return false;
  const r = x as Record<string, unknown>;
  return (
    typeof r["name"] === "string" &&
    typeof r["unit"] === "string" &&
    typeof r["median"] === "number" &&
    typeof r["min"] === "number" &&
    typeof r["max"] === "number"
  );
}

/** Reads the figures already in `path` ([] when the file does not exist). */
export function readResults(path: string = DEFAULT_RESULTS_PATH): ResultRecord[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if (e instanceof Error && "code" in e && e.code === "ENOENT") return [];
    throw e;
  }
  const doc: unknown = JSON.parse(text);
  const figures = typeof doc === "object" && doc !== null ? (doc as Record<string, unknown>)["figures"] : undefined;
  if (!Array.isArray(figures) || !figures.every(isResultRecord))
    throw new Error(`${path}: not a results file (expected { figures: [...] })`);
  return figures;
}

/**
 * Merges `figures` into the results file by name (a figure replaces the one of the same
 * name in place; new names are appended in order), then writes
 * `{ generatedAt, node, figures }` atomically (temp file + rename). Returns what it wrote.
 * A file that exists but is not a results file is an error, never silently overwritten.
 */
export function writeResults(figures: readonly ResultRecord[], path: string = DEFAULT_RESULTS_PATH): ResultsFile {
  const merged = readResults(path);
  const index = new Map(merged.map((f, i) => [f.name, i]));
  for (const f of figures) {
    const i = index.get(f.name);
    if (i === undefined) {
      index.set(f.name, merged.length);
      merged.push(f);
    } else merged[i] = f;
  }
  const doc: ResultsFile = { generatedAt: new Date().toISOString(), node: process.version, figures: merged };
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(doc, null, 2)}\n`);
  renameSync(tmp, path);
  return doc;
}

/** How {@link interleaved} samples a figure. */
export interface InterleavedOptions {
  readonly unit: Unit;
  /** Rounds; each takes one sample of the baseline and one of the subject. */
  readonly rounds: number;
  /** Minimum duration of one sample. */
  readonly sampleMs: number;
  /** Bytes per op, for byte units. */
  readonly bytesPerOp?: number;
}

/** Untimed warmup before a figure's first round (JIT, caches, batch sizing). */
const FIRST_WARMUP_MS = 300;
/** Warmup of later rounds: only re-sizes the batch; the code is already hot. */
const ROUND_WARMUP_MS = 30;

function summarize(name: string, unit: Unit, rates: readonly number[]): Measurement {
  return { name, unit, median: median(rates), min: Math.min(...rates), max: Math.max(...rates) };
}

/**
 * Measures subject and baseline in interleaved rounds (one sample each per round, in
 * ABBA order), so that load from other processes on a shared machine affects both alike,
 * and compares the medians over the rounds. Subjects may be sync or async.
 */
export async function interleaved(
  name: string,
  subject: () => unknown,
  baselineName: string,
  baseline: () => unknown,
  opts: InterleavedOptions,
): Promise<Figure> {
  const subjectRates: number[] = [];
  const baselineRates: number[] = [];
  for (let round = 0; round < opts.rounds; round++) {
    const order = round % 2 === 0 ? (["baseline", "subject"] as const) : (["subject", "baseline"] as const);
    for (const which of order) {
      const m = await measure(which === "subject" ? name : baselineName, which === "subject" ? subject : baseline, {
        unit: opts.unit,
        minTimeMs: opts.sampleMs,
        samples: 1,
        warmupMs: round === 0 ? FIRST_WARMUP_MS : ROUND_WARMUP_MS,
        ...(opts.bytesPerOp !== undefined ? { bytesPerOp: opts.bytesPerOp } : {}),
      });
      (which === "subject" ? subjectRates : baselineRates).push(m.median);
    }
  }
  return compare(summarize(name, opts.unit, subjectRates), summarize(baselineName, opts.unit, baselineRates));
}
