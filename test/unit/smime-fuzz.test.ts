/**
 * Fuzzing the parsers of the object-encryption layer with fast-check: malformed MIME,
 * CPIM, PIDF, base64 and ASN.1 (random bytes and mutated real objects) must end in a
 * SmimeError (or succeed), never in another exception, a crash or a hang.
 *
 * Spec: draft-ietf-xmpp-e2e-03 (RFC 3923) section 7 (bad input is answered with an error),
 * RFC 2045/1847 (MIME), RFC 3862 (CPIM), RFC 3863 (PIDF), RFC 5652 (CMS).
 */
import assert from "node:assert/strict";
import { before, test } from "node:test";
import fc from "fast-check";
import { parseJid } from "../../src/core/types.js";
import { systemClock, systemRandom } from "../../src/crypto/node.js";
import { parseCpim } from "../../src/cpim/codec.js";
import { parsePidf } from "../../src/pidf/codec.js";
import { generateIdentity } from "../../src/smime/certs.js";
import { openEnvelope, type SmimeIdentity, verifyDetached } from "../../src/smime/cms.js";
import { SmimeError } from "../../src/smime/errors.js";
import { decodeBase64Body, parseContentType, parseEntity, splitMultipart } from "../../src/smime/mime.js";
import { protectEntity, unprotectEntity } from "../../src/smime/protect.js";
import { XmlError } from "../../src/xml/index.js";

const env = { random: systemRandom, clock: systemClock };
let id: SmimeIdentity;
let signed: string;
let encrypted: string;

before(async () => {
  id = await generateIdentity({ jid: parseJid("alice@localhost") }, env);
  const cpim = "Content-type: Message/CPIM\r\n\r\nFrom: <im:alice@localhost>\r\n\r\nContent-type: text/plain\r\n\r\nhi";
  signed = await protectEntity(cpim, { signer: id }, env);
  encrypted = await protectEntity(cpim, { signer: id, recipients: [id.certificate], cipher: "aes-128-gcm" }, env);
});

const ok = (e: unknown) => e instanceof SmimeError || e instanceof XmlError;

function sync(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!ok(e)) throw e;
  }
}

async function later(f: () => Promise<unknown>): Promise<void> {
  try {
    await f();
  } catch (e) {
    if (!ok(e)) throw e;
  }
}

const text = fc.oneof(fc.string({ maxLength: 400 }), fc.string({ unit: "binary", maxLength: 400 }), fc.constantFrom("\r\n", ":", ";", "--", "\\u", "<", ">", '"').chain((s) => fc.array(fc.constant(s), { maxLength: 50 }).map((a) => a.join(""))));

test("MIME, Content-Type, multipart, CPIM, PIDF and base64 parsers never throw anything but typed errors", () => {
  fc.assert(
    fc.property(text, (s) => {
      sync(() => parseEntity(s));
      sync(() => parseContentType(s));
      sync(() => splitMultipart(s, "b"));
      sync(() => parseCpim(s));
      sync(() => parsePidf(s));
      sync(() => decodeBase64Body(s));
    }),
    { numRuns: 400 },
  );
});

test("ASN.1 / CMS decoders: random bytes give typed errors", async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (b) => {
      sync(() => openEnvelope(b, [id]));
      await later(() => verifyDetached(b, new Uint8Array(1)));
    }),
    { numRuns: 300 },
  );
});

test("mutated real S/MIME objects (signed, sign-then-encrypt) are rejected with typed errors, quickly", async () => {
  const mutate = (s: string) =>
    fc.tuple(fc.nat({ max: s.length - 1 }), fc.nat({ max: 40 }), fc.string({ maxLength: 8 })).map(([at, del, ins]) => s.slice(0, at) + ins + s.slice(at + del));
  const t0 = Date.now();
  await fc.assert(
    fc.asyncProperty(fc.oneof(mutate(signed), mutate(encrypted)), async (s) => {
      await later(() => unprotectEntity(s, { identities: [id] }));
    }),
    { numRuns: 300 },
  );
  assert.ok(Date.now() - t0 < 30_000, "fuzzing took too long");
});
