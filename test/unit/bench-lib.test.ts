/**
 * The benchmark harness (bench/lib.ts) and baselines (bench/baselines.ts): rate
 * arithmetic under a virtual clock, comparison, table layout, merging of the results
 * file, and a smoke run of each baseline.
 *
 * Spec: XEP-0200 v0.2 sections 6 and 8 and XEP-0116 v0.16 section 4 (the operations the
 * baselines reproduce); see bench/baselines.ts.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { rawDh, rawStanzaCrypto } from "../../bench/baselines.js";
import {
  compare,
  formatRate,
  formatTable,
  measure,
  median,
  printTable,
  readResults,
  writeResults,
  type Measurement,
} from "../../bench/lib.js";

const tmp = mkdtempSync(join(tmpdir(), "xmpp-e2e-bench-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A virtual nanosecond clock that the measured function advances. */
function virtualClock() {
  let t = 0n;
  return { now: () => t, advance: (ns: bigint) => void (t += ns) };
}

describe("measure", () => {
  it("computes ops/s from the elapsed time of whole batches", async () => {
    const c = virtualClock();
    let calls = 0;
    const m = await measure(
      "fake",
      () => {
        calls++;
        c.advance(1_000_000n); // 1 ms per op
      },
      { unit: "ops/s", minTimeMs: 10, samples: 3, now: c.now },
    );
    assert.equal(m.name, "fake");
    assert.equal(m.unit, "ops/s");
    assert.equal(m.median, 1000);
    assert.equal(m.min, 1000);
    assert.equal(m.max, 1000);
    assert.ok(calls >= 10 * 3 + 10, `warmup plus three samples of >= 10 ops (${calls})`);
  });

  it("scales byte units by bytesPerOp (MB = 10^6 bytes) and awaits async functions", async () => {
    const c = virtualClock();
    const m = await measure(
      "async",
      async () => {
        await Promise.resolve();
        c.advance(2_000_000n); // 2 ms per op -> 500 ops/s
      },
      { unit: "MB/s", bytesPerOp: 4_000_000, minTimeMs: 10, samples: 2, now: c.now },
    );
    assert.equal(m.median, 2000);
    const k = await measure("kb", () => c.advance(1_000_000n), {
      unit: "KB/s",
      bytesPerOp: 500,
      minTimeMs: 5,
      samples: 1,
      now: c.now,
    });
    assert.equal(k.median, 500);
  });

  it("reports min <= median <= max over samples with different speeds", async () => {
    const c = virtualClock();
    let step = 1_000_000n;
    let n = 0;
    const m = await measure(
      "varying",
      () => {
        c.advance(step);
        if (++n % 50 === 0) step += 1_000_000n; // slows down as it goes
      },
      { unit: "ops/s", minTimeMs: 20, samples: 5, now: c.now },
    );
    assert.ok(m.min < m.max, JSON.stringify(m));
    assert.ok(m.min <= m.median && m.median <= m.max);
  });

  it("rejects a byte unit without bytesPerOp and bad options", async () => {
    await assert.rejects(measure("x", () => 0, { unit: "MB/s", minTimeMs: 1 }), RangeError);
    await assert.rejects(measure("x", () => 0, { unit: "ops/s", samples: 0 }), RangeError);
    await assert.rejects(measure("x", () => 0, { unit: "ops/s", minTimeMs: 0 }), RangeError);
  });

  it("runs against the real clock quickly", async () => {
    let x = 0;
    const m = await measure("add", () => (x += 1), { unit: "ops/s", minTimeMs: 2, samples: 3 });
    assert.ok(m.median > 0 && Number.isFinite(m.median));
    assert.ok(x > 0);
  });

  it("median of odd and even counts", () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.throws(() => median([]), RangeError);
  });
});

const sub: Measurement = { name: "esession stanza 1 KiB", unit: "MB/s", median: 80, min: 70, max: 90 };
const base: Measurement = { name: "raw stanza crypto 1 KiB", unit: "MB/s", median: 100, min: 95, max: 105 };

describe("compare", () => {
  it("builds the figure record with ratio = subject / baseline", () => {
    assert.deepEqual(compare(sub, base), {
      name: "esession stanza 1 KiB",
      unit: "MB/s",
      median: 80,
      min: 70,
      max: 90,
      baseline: "raw stanza crypto 1 KiB",
      baselineMedian: 100,
      ratio: 0.8,
    });
  });

  it("refuses different units", () => {
    assert.throws(() => compare(sub, { ...base, unit: "ops/s" }), RangeError);
  });
});

describe("printTable", () => {
  it("aligns columns: figure, median, unit, baseline, ratio", () => {
    const rows = [compare(sub, base), { name: "dh group 14", unit: "ops/s" as const, median: 1234.5678, min: 1, max: 2 }];
    const text = formatTable(rows);
    const lines = text.split("\n");
    assert.equal(lines.length, 4);
    assert.match(lines[0] ?? "", /^figure\s+median\s+unit\s+baseline\s+ratio$/);
    assert.match(lines[1] ?? "", /^-+( +-+){4}$/);
    assert.match(lines[2] ?? "", /^esession stanza 1 KiB\s+80\.0\s+MB\/s\s+raw stanza crypto 1 KiB\s+0\.800$/);
    assert.match(lines[3] ?? "", /^dh group 14\s+1,235\s+ops\/s\s+-\s+-$/);
    // Right-aligned median column: every row's median ends at the same offset.
    const end = (line: string, cell: string) => line.indexOf(cell) + cell.length;
    assert.equal(end(lines[2] ?? "", "80.0"), end(lines[3] ?? "", "1,235"));
    assert.equal(end(lines[0] ?? "", "median"), end(lines[2] ?? "", "80.0"));
    let out = "";
    printTable(rows, (s) => (out += s));
    assert.equal(out, `${text}\n`);
  });

  it("formats rates with three significant digits", () => {
    assert.equal(formatRate(1234567.8), "1,234,568");
    assert.equal(formatRate(12.345), "12.3");
    assert.equal(formatRate(0.0012345), "0.00123");
    assert.equal(formatRate(0), "0");
  });
});

describe("writeResults", () => {
  it("creates the file, then merges by name, keeping other issues' figures", () => {
    const path = join(tmp, "nested", "latest.json");
    const first = writeResults([compare(sub, base), base], path);
    assert.equal(first.node, process.version);
    assert.ok(!Number.isNaN(Date.parse(first.generatedAt)));
    assert.deepEqual(
      readResults(path).map((f) => f.name),
      [sub.name, base.name],
    );

    const newer = compare({ ...sub, median: 90 }, base);
    const dh: Measurement = { name: "dh group 14", unit: "ops/s", median: 500, min: 490, max: 510 };
    writeResults([dh, newer], path);
    const doc: unknown = JSON.parse(readFileSync(path, "utf8"));
    assert.ok(typeof doc === "object" && doc !== null);
    assert.deepEqual(Object.keys(doc).sort(), ["figures", "generatedAt", "node"]);
    const figures = readResults(path);
    assert.deepEqual(
      figures.map((f) => [f.name, f.median]),
      [
        [sub.name, 90],
        [base.name, 100],
        ["dh group 14", 500],
      ],
    );
    assert.equal(figures[0] && "ratio" in figures[0] ? figures[0].ratio : undefined, 0.9);
  });

  it("refuses to overwrite a file that is not a results file", () => {
    const path = join(tmp, "bad.json");
    writeFileSync(path, JSON.stringify({ something: "else" }));
    assert.throws(() => writeResults([base], path), /not a results file/);
    assert.deepEqual(JSON.parse(readFileSync(path, "utf8")), { something: "else" });
  });
});

describe("baselines", () => {
  it("rawStanzaCrypto round-trips and runs", () => {
    for (const size of [0, 1, 15, 16, 1024]) {
      const op = rawStanzaCrypto(size);
      op();
      op();
    }
    assert.throws(() => rawStanzaCrypto(-1), RangeError);
  });

  it("rawDh agrees on the shared secret and runs", () => {
    const op = rawDh(5);
    op();
    rawDh(14);
  });
});
