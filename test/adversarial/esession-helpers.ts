/**
 * Helpers for the ESession adversarial cases: recognising the four negotiation messages on
 * the wire, mutating one field of a data form or one child of `<c/>`, running a negotiation
 * under an attacker on the switchboard, and summarising what each side observed as one
 * exact outcome string.
 *
 * Spec: XEP-0217 v0.1 / XEP-0116 v0.16 section 4 (the four messages and their fields),
 * XEP-0200 v0.2 section 5-6 (`<c/>` children: data, mac, key, new, old).
 */
import type { Adversary } from "../../src/adapters/switchboard.js";
import type { ClientEvent } from "../../src/client/secure-client.js";
import { fromBase64, toBase64 } from "../../src/core/bytes.js";
import type { CryptoProvider, DhGroupId } from "../../src/crypto/provider.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import type { Policy } from "../../src/esession/session.js";
import { el, type Element, NS, parseXml, serialize } from "../../src/xml/index.js";
import { makePair, type Pair, type PairOptions } from "../sim/pair.js";

/** Which negotiation message a stanza carries (XEP-0217 messages 1-4), if any. */
export function negotiationMessage(s: Element): { readonly n: 1 | 2 | 3 | 4; readonly x: Element } | undefined {
  const fx = s.getChild("feature", NS.featureNeg)?.getChild("x", NS.data);
  if (fx) {
    const t = fx.attrs.type;
    if (t === "form") return { n: 1, x: fx };
    if (t === "submit") return { n: 2, x: fx };
    if (t === "result" && fx.getChildren("field").some((f) => f.attrs.var === "identity")) return { n: 3, x: fx };
    return undefined;
  }
  const ix = s.getChild("init", NS.esessionInit)?.getChild("x", NS.data);
  return ix?.attrs.type === "result" ? { n: 4, x: ix } : undefined;
}

export function fieldsOf(x: Element): string[] {
  return x.getChildren("field").map((f) => String(f.attrs.var));
}

/** Every `<value/>` of a field, options included (message 1 offers values in `<option/>`s). */
function valuesOf(f: Element): Element[] {
  return [...f.getChildren("value"), ...f.getChildren("option").flatMap((o) => o.getChildren("value"))];
}

export type FieldMutation = "alter" | "remove" | "empty";

/**
 * A copy of `s` with one field of its negotiation form mutated: `alter` flips the first bit
 * of a Base64 value (or replaces a text value with "tampered"), `remove` deletes the field,
 * `empty` leaves the field with one empty value.
 */
export function mutateField(s: Element, field: string, m: FieldMutation): Element {
  const copy = parseXml(serialize(s));
  const x = negotiationMessage(copy)?.x;
  const f = x?.getChildren("field").find((fl) => fl.attrs.var === field);
  if (!x || !f) throw new Error(`no field ${field}`);
  if (m === "remove") {
    x.children = x.children.filter((c) => c !== f);
    return copy;
  }
  if (m === "empty") {
    f.children = [el("value", {})];
    return copy;
  }
  const v = valuesOf(f)[0];
  if (!v) throw new Error(`field ${field} has no value`);
  const text = v.getText();
  const bytes = /^[A-Za-z0-9+/]{8,}={0,2}$/.test(text) ? fromBase64(text) : undefined;
  if (bytes && bytes.length > 0) {
    bytes[0] = (bytes[0] ?? 0) ^ 0x01;
    v.children = [toBase64(bytes)];
  } else v.children = ["tampered"];
  return copy;
}

/** Replaces the first value of `field` in the negotiation form of `s`. */
export function setField(s: Element, field: string, values: readonly string[]): Element {
  const copy = parseXml(serialize(s));
  const f = negotiationMessage(copy)?.x.getChildren("field").find((fl) => fl.attrs.var === field);
  if (!f) throw new Error(`no field ${field}`);
  f.children = values.map((v) => el("value", {}, v));
  return copy;
}

/** A short summary of one side's events: est (established), fail:<condition>, end:<by>. */
export function sideSummary(evs: readonly ClientEvent[]): string {
  const out: string[] = [];
  for (const e of evs) {
    if (e.type === "established") out.push("est");
    else if (e.type === "failed") out.push(`fail:${e.error.condition}`);
    else if (e.type === "terminated" && e.by === "peer") out.push("end:peer");
  }
  return out.join(",") || "-";
}

export interface NegotiationRun {
  readonly pair: Pair;
  readonly outcome: string;
  readonly delivered: string[];
  readonly wire: string[];
}

export const SUITES: Record<"spec" | "modern", Partial<Policy>> = {
  spec: { groups: [14], cryptAlgs: ["aes128-ctr"], hashAlgs: ["sha256"] },
  modern: { groups: ["x25519"], cryptAlgs: ["aes256-ctr"], hashAlgs: ["sha512"] },
};

/**
 * Negotiates under `adversary`, then each side whose session is active sends one message
 * with a marker; the outcome names both sides' events, whether the SAS agree (when both
 * established) and how many markers were delivered.
 */
export async function negotiateUnder(
  seed: string,
  opts: PairOptions,
  adversary: Adversary | undefined,
  marker: string,
  extra: { readonly hook?: (p: Pair) => void; readonly advanceMs?: number } = {},
): Promise<NegotiationRun> {
  const p = makePair({ seed, ...opts });
  if (adversary) p.board.setAdversary(adversary);
  extra.hook?.(p);
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await p.settle();
  // Time passes (the 60 s negotiation deadline), so a stalled negotiation shows how it ends.
  p.clock.advance(extra.advanceMs ?? 61_000);
  p.timers.fire();
  await p.settle();
  p.board.setAdversary(undefined);
  for (const [from, to] of [
    [p.alice, p.bobJid],
    [p.bob, p.aliceJid],
  ] as const) {
    if (from.session(to)?.isActive) await from.sendMessage(to, `${marker} from ${from.jid}`).catch(() => undefined);
  }
  await p.settle();
  // The latest sessions (a recovery may have renegotiated after the attacked one).
  const a = [...p.aliceEvents].reverse().find((e) => e.type === "established");
  const b = [...p.bobEvents].reverse().find((e) => e.type === "established");
  const sas = a?.type === "established" && b?.type === "established" ? (a.sas === b.sas ? " sas:equal" : " sas:differ") : "";
  const delivered = [...p.bodies("alice"), ...p.bodies("bob")];
  const outcome = `alice[${sideSummary(p.aliceEvents)}] bob[${sideSummary(p.bobEvents)}]${sas} delivered:${delivered.length}`;
  return { pair: p, outcome, delivered, wire: p.relayed.map((r) => r.text) };
}

/** A crypto provider whose public values (dhPublic) are replaced by `bad` from call `from` on. */
export function hostileProvider(bad: (group: DhGroupId, real: Uint8Array) => Uint8Array, from = 1): CryptoProvider {
  let calls = 0;
  return {
    ...nodeCrypto,
    dhPublic(group, x) {
      const real = nodeCrypto.dhPublic(group, x);
      calls++;
      return calls >= from ? bad(group, real) : real;
    },
  };
}

/** MODP invalid group elements (XEP-0116: 1 < e < p - 1), as big-endian bytes. */
export function modpInvalid(c: CryptoProvider, group: 14 | 5): Array<readonly [string, Uint8Array]> {
  const p = c.modp(group).p;
  const n = BigInt(`0x${Buffer.from(p).toString("hex")}`);
  const bytes = (v: bigint): Uint8Array => {
    let h = v.toString(16);
    if (h.length % 2) h = `0${h}`;
    return new Uint8Array(Buffer.from(h, "hex"));
  };
  return [
    ["0", Uint8Array.of(0)],
    ["1", Uint8Array.of(1)],
    ["p-1", bytes(n - 1n)],
    ["p", bytes(n)],
    ["p+1", bytes(n + 1n)],
    ["2^bits-1 (above p)", new Uint8Array(p.length).fill(0xff)],
    ["longer than p", new Uint8Array(p.length + 1).fill(0x01)],
  ];
}

const hex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, "hex"));

/**
 * X25519 points of small order (RFC 7748 section 6.1; the list libsodium and others refuse),
 * canonical and with the masked top bit set: every one gives an all-zero shared secret.
 */
export const X25519_LOW_ORDER: ReadonlyArray<readonly [string, Uint8Array]> = [
  ["0 (order 4)", new Uint8Array(32)],
  ["1 (order 1)", hex("0100000000000000000000000000000000000000000000000000000000000000")],
  ["order-8 point a", hex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")],
  ["order-8 point b", hex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157")],
  ["p-1 (order 2)", hex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")],
  ["p (= 0)", hex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")],
  ["p+1 (= 1)", hex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")],
  ["0 with top bit", hex("0000000000000000000000000000000000000000000000000000000000000080")],
  ["1 with top bit", hex("0100000000000000000000000000000000000000000000000000000000000080")],
  ["order-8 a with top bit", hex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880")],
  ["order-8 b with top bit", hex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7")],
  ["p-1 with top bit", hex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff")],
  ["p with top bit", hex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff")],
  ["p+1 with top bit", hex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff")],
];

/** Malformed X25519 encodings (wrong length). */
export const X25519_MALFORMED: ReadonlyArray<readonly [string, Uint8Array]> = [
  ["31 bytes", new Uint8Array(31).fill(9)],
  ["33 bytes", new Uint8Array(33).fill(9)],
  ["1 byte", Uint8Array.of(9)],
];

/**
 * A point on the quadratic twist of Curve25519 (u^3 + 486662 u^2 + u is not a square mod
 * p): the smallest such u, found with @noble/curves' field arithmetic.
 */
export async function x25519TwistPoint(): Promise<Uint8Array> {
  const { Field } = await import("@noble/curves/abstract/modular.js");
  const p = 2n ** 255n - 19n;
  const Fp = Field(p);
  for (let u = 2n; u < 1000n; u++) {
    const rhs = Fp.add(Fp.add(Fp.pow(u, 3n), Fp.mul(486662n, Fp.sqr(u))), u);
    let square = true;
    try {
      Fp.sqrt(rhs);
    } catch {
      square = false;
    }
    if (!square) {
      const out = new Uint8Array(32);
      let v = u;
      for (let i = 0; i < 32; i++, v >>= 8n) out[i] = Number(v & 0xffn);
      return out;
    }
  }
  throw new Error("no twist point found");
}

/** Replaces the `dhkeys` value of negotiation message `n` with `value`. */
export function replaceDh(n: 1 | 2 | 3 | 4, value: Uint8Array): Adversary {
  return (item) => {
    const m = negotiationMessage(item.stanza);
    if (m?.n !== n) return { action: "deliver" };
    return { action: "replace", stanza: setField(item.stanza, "dhkeys", [toBase64(value)]) };
  };
}
