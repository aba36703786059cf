/**
 * SAS confirmation with several devices of one contact: retained secrets are stored per
 * bare JID, so "the account's latest secret" may belong to another device. Confirming the
 * SAS of the session with Bob's phone marks the phone's retained-secret chain as verified
 * (XEP-0116 v0.16 section 7.3: the chain "has ever been validated by the user verifying a
 * SAS"), not the laptop's, even when the laptop's session came later.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Switchboard } from "../../src/adapters/switchboard.js";
import { SecureClient } from "../../src/client/secure-client.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { type Jid, parseFullJid } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { MemoryStore } from "../../src/store/memory.js";
import { settleBoard, VirtualTimers } from "./pair.js";

test("confirming the SAS with one of Bob's devices verifies that device's chain, not the chain of Bob's latest session", async () => {
  const board = new Switchboard();
  const clock = new VirtualClock();
  const timers = new VirtualTimers(clock);
  const clients: SecureClient[] = [];
  const mk = (jid: string) => {
    const store = new MemoryStore();
    const client = new SecureClient({ connection: board.connect(parseFullJid(jid)), store, crypto: nodeCrypto, random: new SeededRandom(nodeCrypto, `sas-dev/${jid}`), clock, timers });
    clients.push(client);
    return { jid: parseFullJid(jid), store, client };
  };
  const settle = (): Promise<void> => settleBoard(board, clients);
  const alice = mk("alice@example.org/pda");
  const phone = mk("bob@example.com/phone");
  const laptop = mk("bob@example.com/laptop");
  const A = "alice@example.org" as Jid;
  const B = "bob@example.com" as Jid;

  const p = alice.client.startSession(phone.jid);
  await settle();
  await p;
  clock.advance(1_000);
  const l = alice.client.startSession(laptop.jid);
  await settle();
  await l;

  const phoneSecret = (await phone.store.list(B, A))[0]?.secret;
  const laptopSecret = (await laptop.store.list(B, A))[0]?.secret;
  assert.ok(phoneSecret && laptopSecret);
  const same = (x: Uint8Array, y: Uint8Array): boolean => x.length === y.length && x.every((v, i) => v === y[i]);
  const records = await alice.store.list(A, B);
  assert.equal(records.length, 2, "one chain per device");
  assert.equal(records[0] && same(records[0].secret, laptopSecret), true, "the laptop's secret is the account's latest");

  await alice.client.confirmSas(phone.jid);
  const after = await alice.store.list(A, B);
  const phoneRec = after.find((r) => same(r.secret, phoneSecret));
  const laptopRec = after.find((r) => same(r.secret, laptopSecret));
  assert.equal(phoneRec?.verifiedChain, true, "the phone's chain is verified");
  assert.equal(laptopRec?.verifiedChain, false, "the laptop's chain is not");
});
