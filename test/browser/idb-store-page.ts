/**
 * Runs in the browser (bundled by ./idb-store.test.ts): one scripted sequence of store
 * operations against the reference MemoryStore and against IdbStore; the test asserts
 * that both logs are identical (ids replaced by their order of appearance, errors by
 * their class and condition), plus what only a database shows: persistence across
 * close/reopen, closed-store errors, secrets that do not leak through JSON.
 *
 * Spec: the store contracts src/store/types.ts (XEP-0116 v0.16 4.7.3/4.8.1, 4.7.2, 7.3)
 * and src/store/trust-types.ts (XEP-0116 7.3-7.4, XEP-0189 section 4).
 */
import type { Jid } from "../../src/core/types.js";
import { MemoryStore } from "../../src/store/memory.js";
import type { FullStore } from "../../src/store/trust-types.js";
import { StoreError } from "../../src/store/types.js";
import { openIdbStore } from "../../src/web/idb-store.js";

const alice = "alice@example.org" as Jid;
const aliceFull = "alice@example.org/pda" as Jid;
const bob = "bob@example.com" as Jid;
const bobFull = "bob@example.com/laptop" as Jid;
const carol = "carol@example.net" as Jid;
const T0 = Date.UTC(2026, 0, 1);

const sec = (tag: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (tag * 31 + i * 7) & 0xff);

/** JSON-able view with ids numbered in order of first appearance. */
function normalizer(): (v: unknown) => unknown {
  const ids = new Map<string, string>();
  const norm = (v: unknown): unknown => {
    if (v instanceof Uint8Array) return `bytes:${Array.from(v).join(",")}`;
    if (Array.isArray(v)) return v.map(norm);
    if (v !== null && typeof v === "object") {
      const o: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        if ((k === "id" || k === "oldSecretId") && typeof x === "string") {
          if (!ids.has(x)) ids.set(x, `id#${ids.size}`);
          o[k] = ids.get(x);
        } else o[k] = norm(x);
      }
      return o;
    }
    return v;
  };
  return norm;
}

async function script(s: FullStore): Promise<unknown[]> {
  const log: unknown[] = [];
  const norm = normalizer();
  const step = async (name: string, f: () => Promise<unknown>): Promise<unknown> => {
    try {
      const r = await f();
      log.push([name, norm(r)]);
      return r;
    } catch (e) {
      log.push([name, e instanceof StoreError ? `StoreError:${e.condition}` : e instanceof RangeError ? "RangeError" : `other:${String(e)}`]);
      return undefined;
    }
  };
  await step("empty list", () => s.list(alice, bob));
  await step("empty sas", () => s.getSasState(alice, bob));
  const r1 = (await step("replace new chain", () => s.replace({ account: aliceFull, peer: bobFull, secret: sec(1), now: T0, verifiedChain: false }))) as { id: string };
  const r2 = (await step("replace second client", () => s.replace({ account: alice, peer: bob, secret: sec(2), now: T0 + 1, verifiedChain: true }))) as { id: string };
  await step("replace carol", () => s.replace({ account: alice, peer: carol, secret: sec(3), now: T0 + 2, verifiedChain: false }));
  await step("list bob", () => s.list(alice, bob));
  await step("listAll", () => s.listAll(alice));
  await step("listAll other account", () => s.listAll(bob));
  const r3 = (await step("replace r1 (chain continues)", () => s.replace({ account: alice, peer: bob, oldSecretId: r1.id, secret: sec(4), now: T0 + 3, verifiedChain: false }))) as { id: string };
  await step("replace r1 again: not-found", () => s.replace({ account: alice, peer: bob, oldSecretId: r1.id, secret: sec(5), now: T0 + 4, verifiedChain: false }));
  await step("replace from another account: not-found", () => s.replace({ account: bob, peer: alice, oldSecretId: r2.id, secret: sec(5), now: T0 + 4, verifiedChain: false }));
  await step("replace empty secret", () => s.replace({ account: alice, peer: bob, secret: new Uint8Array(0), now: T0, verifiedChain: false }));
  await step("markChainVerified r3", () => s.markChainVerified(r3.id));
  await step("markChainVerified missing", () => s.markChainVerified("nope"));
  await step("inherits verified chain", () => s.replace({ account: alice, peer: bob, oldSecretId: r2.id, secret: sec(6), now: T0 + 5, verifiedChain: false }));
  await step("list bob after", () => s.list(alice, bob));
  await step("remove r3", () => s.remove(r3.id));
  await step("remove r3 again", () => s.remove(r3.id));
  await step("expire", () => s.expire(T0 + 3));
  await step("listAll after expire", () => s.listAll(alice));
  await step("sas set", () => s.setSasConfirmed(aliceFull, bobFull, T0 + 10));
  await step("sas set earlier keeps latest", () => s.setSasConfirmed(alice, bob, T0 + 5));
  await step("sas get", () => s.getSasState(alice, bob));
  await step("sas other peer", () => s.getSasState(alice, carol));
  await step("sas bad time", () => s.setSasConfirmed(alice, bob, 1.5));
  // Identities.
  const id1 = (await step("putIdentity", () =>
    s.putIdentity({ account: aliceFull, alg: "ed25519", publicKey: sec(7), fingerprint: "fp-own-1", privateKey: sec(8), protection: "none", createdAt: T0 }),
  )) as { id: string };
  await step("putIdentity same fingerprint updates", () =>
    s.putIdentity({ account: alice, alg: "ed25519", publicKey: sec(7), fingerprint: "fp-own-1", privateKey: sec(9), protection: "passphrase", createdAt: T0 + 9 }),
  );
  await step("putIdentity second", () =>
    s.putIdentity({ account: alice, alg: "rsa-sha256", publicKey: sec(10), fingerprint: "fp-own-2", privateKey: sec(11), protection: "none", createdAt: T0 + 1 }),
  );
  await step("putIdentity bad", () => s.putIdentity({ account: alice, alg: "ed25519", publicKey: new Uint8Array(0), fingerprint: "x", privateKey: sec(1), protection: "none", createdAt: T0 }));
  await step("listIdentities", () => s.listIdentities(alice));
  await step("revokeIdentity", () => s.revokeIdentity(id1.id, T0 + 20));
  await step("revokeIdentity keeps earliest", () => s.revokeIdentity(id1.id, T0 + 30));
  await step("getIdentity", () => s.getIdentity(id1.id));
  await step("revokeIdentity missing", () => s.revokeIdentity("nope", T0));
  await step("removeIdentity", () => s.removeIdentity(id1.id));
  await step("removeIdentity again", () => s.removeIdentity(id1.id));
  await step("getIdentity removed", () => s.getIdentity(id1.id));
  // Peer keys and trust decisions.
  await step("recordKeySeen first use", () => s.recordKeySeen({ account: alice, jid: bobFull, fingerprint: "fp-bob", alg: "ed25519", publicKey: sec(12), now: T0, accepted: true }));
  await step("recordKeySeen again", () => s.recordKeySeen({ account: alice, jid: bob, fingerprint: "fp-bob", alg: "ed25519", publicKey: sec(12), now: T0 + 5, accepted: false }));
  await step("recordKeySeen shared with carol", () => s.recordKeySeen({ account: alice, jid: carol, fingerprint: "fp-bob", alg: "ed25519", publicKey: sec(12), now: T0 + 6, accepted: false }));
  await step("recordKeySeen bob's new key", () => s.recordKeySeen({ account: alice, jid: bob, fingerprint: "fp-bob-2", alg: "ed25519", publicKey: sec(13), now: T0 + 7, accepted: false }));
  await step("keysForJid bob", () => s.keysForJid(alice, bob));
  await step("keysForJid carol", () => s.keysForJid(alice, carol));
  await step("listPeerKeys", () => s.listPeerKeys(alice));
  await step("listPeerKeys other account", () => s.listPeerKeys(bob));
  await step("acceptKeyForJid", () => s.acceptKeyForJid(alice, "fp-bob-2", bobFull, T0 + 8));
  await step("acceptKeyForJid new link", () => s.acceptKeyForJid(alice, "fp-bob-2", carol, T0 + 8));
  await step("acceptKeyForJid missing", () => s.acceptKeyForJid(alice, "nope", bob, T0));
  await step("setPetname", () => s.setPetname(alice, "fp-bob", "Bob's laptop"));
  await step("setPetname bad", () => s.setPetname(alice, "fp-bob", "a\u0000b"));
  await step("markFingerprintChecked", () => s.markFingerprintChecked(alice, "fp-bob", T0 + 9));
  await step("markKeySasConfirmed", () => s.markKeySasConfirmed(alice, "fp-bob", T0 + 10));
  await step("markKeySasConfirmed earlier keeps latest", () => s.markKeySasConfirmed(alice, "fp-bob", T0 + 1));
  await step("revokePeerKey", () => s.revokePeerKey(alice, "fp-bob-2", T0 + 11));
  await step("getPeerKey", () => s.getPeerKey(alice, "fp-bob"));
  await step("getPeerKey 2", () => s.getPeerKey(alice, "fp-bob-2"));
  await step("setPetname clear", () => s.setPetname(alice, "fp-bob", undefined));
  await step("getPeerKey cleared", () => s.getPeerKey(alice, "fp-bob"));
  await step("removePeerKey", () => s.removePeerKey(alice, "fp-bob-2"));
  await step("removePeerKey again", () => s.removePeerKey(alice, "fp-bob-2"));
  await step("getPeerKey missing", () => s.getPeerKey(alice, "fp-bob-2"));
  await step("final listAll", () => s.listAll(alice));
  return log;
}

async function persistence(): Promise<Record<string, unknown>> {
  const name = `persist-${Date.now()}`;
  const a = await openIdbStore(name);
  const r = await a.replace({ account: alice, peer: bob, secret: sec(1), now: T0, verifiedChain: true });
  await a.setSasConfirmed(alice, bob, T0);
  await a.recordKeySeen({ account: alice, jid: bob, fingerprint: "fp", alg: "ed25519", publicKey: sec(2), now: T0, accepted: true });
  await a.putSettings({ account: "alice@example.org", service: "ws://127.0.0.1:1/xmpp-websocket", resource: "web", lastLogin: T0 });
  await a.close();
  let closedError = "";
  try {
    await a.list(alice, bob);
  } catch (e) {
    closedError = e instanceof StoreError ? e.condition : String(e);
  }
  const b = await openIdbStore(name);
  const list = await b.list(alice, bob);
  const out = {
    closedError,
    sameId: list[0]?.id === r.id,
    secret: Array.from(list[0]?.secret ?? []),
    verifiedChain: list[0]?.verifiedChain,
    sas: await b.getSasState(alice, bob),
    keys: (await b.keysForJid(alice, bob)).map((k) => k.fingerprint),
    settings: await b.lastSettings(),
    json: JSON.stringify(list[0]),
  };
  await b.close();
  return out;
}

declare global {
  interface Window {
    __result?: unknown;
  }
}

async function main(): Promise<void> {
  try {
    const memory = await script(new MemoryStore());
    const idb = await script(await openIdbStore(`contract-${Date.now()}`));
    window.__result = { memory, idb, persistence: await persistence() };
  } catch (e) {
    window.__result = { error: e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ""}` : String(e) };
  }
}

void main();
