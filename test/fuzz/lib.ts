/**
 * Shared machinery of the property-based fuzz suite (fast-check): arbitraries for XML
 * elements and mutations of real stanzas, the "only typed errors escape" check, a
 * retained-size measure for "state stays bounded after N junk inputs", and the target
 * registry that both test/fuzz/*.test.ts (bounded runs in CI) and scripts/fuzz.ts (long
 * runs with printed seeds) execute.
 *
 * Spec: none (test support). What the properties defend: XEP-0210 v0.3 section 3.9
 * "Robustness" and 4.4 "Efficiency"; ../shared/docs/architecture.md "bad peer input
 * becomes a typed outcome, never an exception escaping to the caller".
 */
import fc from "fast-check";
import { deepClone, el, type Element } from "../../src/xml/index.js";

/** What one fuzz run found; `counterexample` is fast-check's shrunk (minimized) input. */
export interface FuzzOutcome {
  readonly failed: boolean;
  readonly seed: number;
  readonly numRuns: number;
  readonly path?: string;
  readonly counterexample?: string;
  readonly error?: string;
}

/** A property the suite runs; `ciRuns` keeps the CI run of the whole folder under 60 s. */
export interface FuzzTarget {
  readonly name: string;
  readonly ciRuns: number;
  check(params: { readonly seed: number; readonly numRuns: number; readonly path?: string }): Promise<FuzzOutcome>;
}

/** Wraps a fast-check property (sync or async) as a {@link FuzzTarget}. */
export function target<Ts>(name: string, ciRuns: number, make: () => fc.IRawProperty<Ts, boolean>): FuzzTarget {
  return {
    name,
    ciRuns,
    async check(p) {
      const d = await fc.check(make(), { seed: p.seed, numRuns: p.numRuns, ...(p.path === undefined ? {} : { path: p.path }) });
      if (!d.failed) return { failed: false, seed: d.seed, numRuns: d.numRuns };
      const err = d.errorInstance;
      return {
        failed: true,
        seed: d.seed,
        numRuns: d.numRuns,
        ...(d.counterexamplePath === null ? {} : { path: d.counterexamplePath }),
        ...(d.counterexample === null ? {} : { counterexample: fc.stringify(d.counterexample).slice(0, 20_000) }),
        error: err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ""}` : String(err),
      };
    },
  };
}

/** A stable CI seed per target name (FUZZ_SEED overrides), so CI runs are reproducible. */
export function ciSeed(name: string): number {
  const env = process.env["FUZZ_SEED"];
  if (env !== undefined && /^-?[0-9]+$/.test(env)) return Number(env) | 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h | 0;
}

/** Limits used by the long runner: inputs slower than this fail (and are shrunk). */
export const budget = { msPerInput: Number.POSITIVE_INFINITY };

/** Error classes a layer may throw on bad input. */
// biome-ignore lint: constructor type
export type ErrorClass = abstract new (...args: never[]) => Error;

/** Runs `f`; an exception that is not an instance of one of `allowed` is rethrown. */
export function typed<T>(allowed: readonly ErrorClass[], f: () => T): T | undefined {
  const t0 = budget.msPerInput === Number.POSITIVE_INFINITY ? 0 : performance.now();
  try {
    return f();
  } catch (e) {
    if (allowed.some((c) => e instanceof c)) return undefined;
    throw e;
  } finally {
    if (t0 !== 0 && performance.now() - t0 > budget.msPerInput) throw new Error(`slow input: over ${budget.msPerInput} ms`);
  }
}

/** Async {@link typed}. */
export async function typedAsync<T>(allowed: readonly ErrorClass[], f: () => Promise<T>): Promise<T | undefined> {
  const t0 = budget.msPerInput === Number.POSITIVE_INFINITY ? 0 : performance.now();
  try {
    return await f();
  } catch (e) {
    if (allowed.some((c) => e instanceof c)) return undefined;
    throw e;
  } finally {
    if (t0 !== 0 && performance.now() - t0 > budget.msPerInput) throw new Error(`slow input: over ${budget.msPerInput} ms`);
  }
}

// ---- arbitraries -------------------------------------------------------------------------

const NAMES = ["message", "iq", "presence", "x", "field", "value", "option", "c", "data", "key", "new", "mac", "old", "thread", "body", "feature", "query", "identity", "jingle", "content", "open", "close", "error", "item", "pubkey", "KeyValue", "RSAKeyValue", "Modulus", "Exponent", "print", "x509cert", "a"];
const ATTRS = ["xmlns", "type", "var", "id", "to", "from", "sid", "seq", "block-size", "stanza", "action", "name", "category", "node", "ver", "hash", "label", "jid", "creator", "senders", "reason", "keylen", "xml:lang"];
const NSS = ["jabber:client", "jabber:x:data", "http://jabber.org/protocol/feature-neg", "http://www.xmpp.org/extensions/xep-0200.html#ns", "http://jabber.org/protocol/ibb", "urn:xmpp:jingle:1", "http://jabber.org/protocol/disco#info", "urn:xmpp:pubkey:2", "urn:xmpp:ssn", "http://www.xmpp.org/extensions/xep-0116.html#ns"];

/** Text a parser might choke on: numbers, Base64, booleans, huge/negative numbers, junk. */
export const junkText: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom("", "0", "1", "-1", "true", "false", "65535", "65536", "4294967296", "NaN", "1e309", " ", "AAAA", "====", "@@", "x".repeat(300)),
  fc.integer().map(String),
  fc.uint8Array({ maxLength: 48 }).map((b) => Buffer.from(b).toString("base64")),
  fc.constantFrom(...NSS),
);

const attrsArb = fc.dictionary(fc.constantFrom(...ATTRS), fc.oneof(junkText, fc.constantFrom(...NSS)), { maxKeys: 4 });

/** Random elements up to `depth` levels, built with el() (never strings). */
export function elementArb(depth = 3): fc.Arbitrary<Element> {
  const leaf = fc.tuple(fc.constantFrom(...NAMES), attrsArb, fc.option(junkText, { nil: undefined })).map(([n, a, t]) => el(n, a, t === "" ? undefined : t));
  if (depth <= 1) return leaf;
  return fc.oneof(
    { weight: 1, arbitrary: leaf },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom(...NAMES), attrsArb, fc.array(elementArb(depth - 1), { maxLength: 4 }))
        .map(([n, a, cs]) => el(n, a, ...cs)),
    },
  );
}

/** One edit of an element tree: what a tampering network or a buggy peer does. */
export type Mutation =
  | { readonly op: "drop-child"; readonly at: number }
  | { readonly op: "dup-child"; readonly at: number }
  | { readonly op: "swap-children"; readonly at: number }
  | { readonly op: "set-text"; readonly at: number; readonly text: string }
  | { readonly op: "set-attr"; readonly at: number; readonly name: string; readonly value: string }
  | { readonly op: "del-attr"; readonly at: number; readonly name: string }
  | { readonly op: "rename"; readonly at: number; readonly name: string }
  | { readonly op: "insert"; readonly at: number; readonly child: Element }
  | { readonly op: "flip-base64"; readonly at: number; readonly bit: number };

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("drop-child" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("dup-child" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("swap-children" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("set-text" as const), at: fc.nat(), text: junkText }),
  fc.record({ op: fc.constant("set-attr" as const), at: fc.nat(), name: fc.constantFrom(...ATTRS), value: junkText }),
  fc.record({ op: fc.constant("del-attr" as const), at: fc.nat(), name: fc.constantFrom(...ATTRS) }),
  fc.record({ op: fc.constant("rename" as const), at: fc.nat(), name: fc.constantFrom(...NAMES) }),
  fc.record({ op: fc.constant("insert" as const), at: fc.nat(), child: elementArb(2) }),
  fc.record({ op: fc.constant("flip-base64" as const), at: fc.nat(), bit: fc.nat({ max: 1023 }) }),
);

/** Every element of a tree, depth first. */
export function allElements(e: Element): Element[] {
  const out: Element[] = [e];
  for (const c of e.children) if (typeof c !== "string") out.push(...allElements(c));
  return out;
}

/** Applies mutations to a deep copy of `e` (the original is left alone). */
export function mutate(e: Element, ms: readonly Mutation[]): Element {
  const root = deepClone(e);
  for (const m of ms) {
    const nodes = allElements(root);
    const target = nodes[m.at % nodes.length];
    if (target === undefined) continue;
    const kids = target.children;
    switch (m.op) {
      case "drop-child":
        if (kids.length > 0) kids.splice(m.at % kids.length, 1);
        break;
      case "dup-child": {
        const k = kids[m.at % Math.max(1, kids.length)];
        if (k !== undefined) target.cnode(typeof k === "string" ? k : deepClone(k));
        break;
      }
      case "swap-children":
        if (kids.length > 1) {
          const i = m.at % kids.length;
          const a = kids[i];
          const b = kids[0];
          if (a !== undefined && b !== undefined) {
            kids[0] = a;
            kids[i] = b;
          }
        }
        break;
      case "set-text":
        target.children = [m.text];
        break;
      case "set-attr":
        target.attrs[m.name] = m.value;
        break;
      case "del-attr":
        delete target.attrs[m.name];
        break;
      case "rename":
        if (target !== root) target.name = m.name;
        break;
      case "insert":
        target.cnode(deepClone(m.child));
        break;
      case "flip-base64": {
        const t = target.getText();
        if (t.length === 0) break;
        const b = Buffer.from(t, "base64");
        if (b.length === 0) break;
        const i = Math.floor(m.bit / 8) % b.length;
        b[i] = (b[i] ?? 0) ^ (1 << m.bit % 8);
        target.children = [b.toString("base64")];
        break;
      }
    }
  }
  return root;
}

/** A mutated copy of one of `seeds`. */
export function mutatedArb(seeds: readonly Element[], maxMutations = 4): fc.Arbitrary<Element> {
  return fc
    .tuple(fc.nat({ max: Math.max(0, seeds.length - 1) }), fc.array(mutationArb, { minLength: 1, maxLength: maxMutations }))
    .map(([i, ms]) => mutate(seeds[i] ?? el("x"), ms));
}

/** Mixed hostile input: mutated real stanzas, random trees, and real stanzas replayed. */
export function stanzaArb(seeds: readonly Element[]): fc.Arbitrary<Element> {
  return fc.oneof(
    { weight: 5, arbitrary: mutatedArb(seeds) },
    { weight: 2, arbitrary: elementArb(4) },
    { weight: 1, arbitrary: fc.constantFrom(...seeds).map((s) => deepClone(s)) },
  );
}

/** Random bytes with a bias to short, protocol-shaped prefixes. */
export const bytesArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.uint8Array({ maxLength: 600 }),
  fc.tuple(fc.constantFrom(5, 1, 0, 22, 23, 3), fc.uint8Array({ maxLength: 40 })).map(([a, r]) => Uint8Array.of(a, ...r)),
);

// ---- bounded memory -------------------------------------------------------------------------

/**
 * An approximate count of what an object graph retains: one unit per object, array slot,
 * map/set entry, plus string and byte lengths / 64. Shared singletons (providers, clocks)
 * count once and do not grow, so a difference between two measurements is what the
 * inputs in between made the object keep.
 */
export function retainedSize(root: unknown, cap = 5_000_000): number {
  const seen = new Set<unknown>();
  const stack: unknown[] = [root];
  let n = 0;
  while (stack.length > 0 && n < cap) {
    const v = stack.pop();
    if (typeof v === "string") {
      n += 1 + Math.floor(v.length / 64);
      continue;
    }
    if (typeof v !== "object" || v === null || seen.has(v)) continue;
    seen.add(v);
    n++;
    if (ArrayBuffer.isView(v)) {
      n += Math.floor(v.byteLength / 64);
      continue;
    }
    if (v instanceof Map) {
      for (const [k, x] of v) stack.push(k, x);
      n += v.size;
      continue;
    }
    if (v instanceof Set) {
      for (const x of v) stack.push(x);
      n += v.size;
      continue;
    }
    if (Array.isArray(v)) {
      n += v.length;
      for (const x of v) stack.push(x);
      continue;
    }
    for (const k of Object.keys(v)) stack.push((v as Record<string, unknown>)[k]);
  }
  return n;
}

/** fast-check's numRuns for CI, scaled by FUZZ_SCALE (default 1). */
export function runs(n: number): number {
  const scale = Number(process.env["FUZZ_SCALE"] ?? "1");
  return Math.max(1, Math.round(n * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}
