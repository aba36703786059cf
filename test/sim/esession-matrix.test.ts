/**
 * The XEP-0116 combination matrix: RSA and DSA keys x 3- and 4-message x key/hash/none on
 * each side x the 2007 suite (MODP 5, AES-128, SHA-256) and the modern suite (X25519,
 * AES-256, SHA-512), alternating with and without an Other Shared Secret; every 4-message
 * case negotiates twice to show the retained secret carries over. (Every MODP group,
 * cipher and hash, and the gajim profile, are covered in esession-sim.test.ts.)
 *
 * Spec: XEP-0116 v0.16 sections 4.2-4.6; XEP-0217; docs/modern-suite.md.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ClientEvent } from "../../src/client/secure-client.js";
import { keyVerifier, signingIdentity } from "../../src/client/keys.js";
import { utf8 } from "../../src/core/bytes.js";
import type { PubkeyMethod } from "../../src/esession/identity.js";
import { createIdentityKey } from "../../src/identity/keyfile.js";
import { keyValueElement } from "../../src/identity/keyvalue.js";
import { makePair } from "./pair.js";

type Est = Extract<ClientEvent, { type: "established" }>;
const methods: PubkeyMethod[] = ["key", "hash", "none"];
const suites = {
  "2007": { groups: [5 as const], cryptAlgs: ["aes128-ctr" as const], hashAlgs: ["sha256" as const] },
  modern: { groups: ["x25519" as const], cryptAlgs: ["aes256-ctr" as const], hashAlgs: ["sha512" as const] },
};

for (const alg of ["rsa-sha256", "dsa-sha256"] as const) {
  test(`matrix with ${alg} keys`, async () => {
    const ka = createIdentityKey(alg, 0, alg === "rsa-sha256" ? { rsaBits: 2048 } : {});
    const kb = createIdentityKey(alg, 0, alg === "rsa-sha256" ? { rsaBits: 2048 } : {});
    let n = 0;
    for (const messages of [4, 3] as const) {
      for (const init of methods) {
        for (const resp of methods) {
          if (messages === 3 && (init === "none" || resp === "none")) continue;
          for (const suite of ["2007", "modern"] as const) {
            const oss = n++ % 2 === 0 ? utf8("matrix secret") : undefined;
            const label = `${messages}msg init=${init} resp=${resp} ${suite}${oss ? " +oss" : ""}`;
            const p = makePair({
              seed: `mx-${alg}-${label}`,
              policy: { messages, ...suites[suite] },
              alice: {
                identity: signingIdentity(ka),
                verifier: keyVerifier({ known: () => [keyValueElement(kb.publicKey)] }),
                policy: { offerPubkey: [init], acceptPubkey: [resp] },
                ...(oss ? { otherSecret: oss } : {}),
              },
              bob: {
                identity: signingIdentity(kb),
                verifier: keyVerifier({ known: () => [keyValueElement(ka.publicKey)] }),
                policy: { acceptPubkey: [init] },
                ...(oss ? { otherSecret: oss } : {}),
              },
            });
            const rounds = messages === 4 ? 2 : 1;
            for (let round = 0; round < rounds; round++) {
              const est = p.alice.startSession(p.bobJid);
              est.catch(() => undefined);
              await p.settle();
              const a = await est.catch((e: Error) => assert.fail(`${label} round ${round}: ${e.message}`));
              const b = p.bobEvents.filter((e): e is Est => e.type === "established").at(-1);
              assert.ok(b, label);
              assert.deepEqual([a.initPubkey, a.respPubkey, a.options.messages], [init, resp, messages], label);
              assert.equal(a.options.group, suites[suite].groups[0], label);
              if (messages === 4) {
                assert.equal(a.sas, b.sas, label);
                assert.equal(a.retainedSecretMatched, round === 1, `${label} round ${round}: retained secret`);
              }
              await p.alice.sendMessage(p.bobJid, `${label} #${round}`);
              await p.settle();
              assert.equal(p.bodies("bob").at(-1), `${label} #${round}`, label);
              await Promise.all([p.alice.terminate(p.bobJid), p.settle()]);
              await p.settle();
            }
          }
        }
      }
    }
    assert.equal(n, 26);
  });
}
