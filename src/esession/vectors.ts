/**
 * Recomputes every value of an ESession vectors file (the format of
 * ../shared/vectors/esession-gajim-profile.json) from its inputs, with this project's key
 * schedule, and reports each match or mismatch. Used by the known-answer tests and by
 * `xmpp-e2e vectors FILE`, so other implementations can check themselves against ours.
 *
 * Spec: XEP-0217 v0.1 key schedule and SAS; XEP-0200 v0.2 sections 5-6; interpretation
 * rows 1-6, 10, 15. In the "spec" profile only the values the two profiles share are
 * compared (the note: K, KM, KS, SRS hashes, new retained secret, counters).
 */
import { fromBase64, fromHex, mpi, toBase64, toHex, utf8 } from "../core/bytes.js";
import type { CryptoProvider, ModpGroup } from "../crypto/provider.js";
import { isModpGroup } from "../crypto/provider.js";
import {
  BlockCounter,
  ctrCrypt,
  dhSecret,
  finalSecret,
  identityMac,
  newRetainedSecret,
  retainedSecretHash,
  sas28x5,
  sessionKeys,
  sharedRetainedSecretHash,
  macCounter,
  stanzaMac,
  type Suite,
} from "./keys.js";
import { sigma } from "./identity.js";
import { GAJIM_PROFILE, type Profile, SPEC_PROFILE } from "./profile.js";

export interface VectorCheck {
  readonly session: string;
  readonly name: string;
  readonly expected: string;
  readonly actual: string;
  readonly ok: boolean;
}

interface Xep200Vector {
  readonly direction: string;
  readonly counter_before_hex: string;
  readonly plaintext_padded: string;
  readonly m_content: string;
  readonly mac_hex: string;
  readonly counter_after_hex: string;
}

interface SessionVector {
  readonly modp_group: number;
  readonly x_hex: string;
  readonly y_hex: string;
  readonly e_mpi_b64: string;
  readonly d_mpi_b64: string;
  readonly N_A_b64: string;
  readonly N_B_b64: string;
  readonly C_A_hex: string;
  readonly C_B_hex: string;
  readonly formA_c14n: string;
  readonly formB_c14n: string;
  readonly formA2_c14n: string;
  readonly formB2_c14n: string;
  readonly K_dh_hex: string;
  readonly provisory: Record<string, string>;
  readonly mac_A_hex: string;
  readonly ID_A_hex: string;
  readonly M_A_hex: string;
  readonly SRS_hex: string;
  readonly K_final_hex: string;
  readonly final: Record<string, string>;
  readonly mac_B_hex: string;
  readonly ID_B_hex: string;
  readonly M_B_hex: string;
  readonly srshash_b64: string;
  readonly rshashes_b64: readonly string[];
  readonly SAS_gajim?: string;
  readonly SAS_padded5?: string;
  readonly new_retained_secret_hex: string;
  readonly C_A_after_negotiation_hex: string;
  readonly C_B_after_negotiation_hex: string;
  readonly xep0200?: readonly Xep200Vector[];
}

export class VectorFileError extends Error {
  override readonly name = "VectorFileError";
  readonly condition = "bad-vector-file" as const;
}

function isSession(v: unknown): v is SessionVector {
  return typeof v === "object" && v !== null && "modp_group" in v && "x_hex" in v && "y_hex" in v;
}

/** Recomputes all values of every session in `file` under `profile`. */
export function checkVectorFile(c: CryptoProvider, file: unknown, profileName: "gajim" | "spec" = "gajim"): VectorCheck[] {
  if (typeof file !== "object" || file === null) throw new VectorFileError("not a JSON object");
  const out: VectorCheck[] = [];
  const sessions = Object.entries(file).filter(([, v]) => isSession(v));
  if (sessions.length === 0) throw new VectorFileError("no sessions in file");
  for (const [name, v] of sessions) out.push(...checkSession(c, name, v as SessionVector, profileName === "gajim" ? GAJIM_PROFILE : SPEC_PROFILE));
  return out;
}

function b64(s: string): Uint8Array {
  const b = fromBase64(s);
  if (!b) throw new VectorFileError("bad Base64 in vector file");
  return b;
}

function checkSession(c: CryptoProvider, session: string, v: SessionVector, profile: Profile): VectorCheck[] {
  const out: VectorCheck[] = [];
  const shared = profile.name === "spec";
  const add = (name: string, expected: string, actual: string, onlyGajim = false): void => {
    if (shared && onlyGajim) return;
    out.push({ session, name, expected: expected.toLowerCase(), actual: actual.toLowerCase(), ok: expected.toLowerCase() === actual.toLowerCase() });
  };
  if (!isModpGroup(v.modp_group)) throw new VectorFileError(`unsupported MODP group ${v.modp_group}`);
  const group = v.modp_group as ModpGroup;
  const suite: Suite = { hash: "sha256", cipher: "aes128-ctr", group };
  const x = mpi(fromHex(v.x_hex));
  const y = mpi(fromHex(v.y_hex));
  const e = c.dhPublic(group, x);
  const d = c.dhPublic(group, y);
  add("e", v.e_mpi_b64, toBase64(e));
  add("d", v.d_mpi_b64, toBase64(d));
  const k = dhSecret(c, suite, x, d);
  add("K (Alice, d^x)", v.K_dh_hex, toHex(k));
  add("K (Bob, e^y)", v.K_dh_hex, toHex(dhSecret(c, suite, y, e)));
  const prov = sessionKeys(c, suite, profile, k);
  add("provisory KC_A", v.provisory.KC_A ?? "", toHex(prov.initiator.kc), true);
  add("provisory KM_A", v.provisory.KM_A ?? "", toHex(prov.initiator.km));
  add("provisory KS_A", v.provisory.KS_A ?? "", toHex(prov.initiator.ks ?? new Uint8Array()));
  const nA = b64(v.N_A_b64);
  const nB = b64(v.N_B_b64);
  const macA = sigma(c, suite, prov.initiator.ks ?? new Uint8Array(), { nonceFirst: nB, nonceSecond: nA, dh: e, forms: [v.formA_c14n, v.formA2_c14n] });
  add("mac_A", v.mac_A_hex, toHex(macA));
  const cA = BlockCounter.fromBytes(fromHex(v.C_A_hex));
  const cB = cA.flipTopBit();
  add("C_B = C_A xor 2^127", v.C_B_hex.replace(/^0x/, ""), toHex(cB.bytes()));
  const cABefore = cA.mpi();
  const idA = ctrCrypt(c, profile, prov.initiator.kc, cA, macA);
  add("ID_A", v.ID_A_hex, toHex(idA), true);
  const mA = identityMac(c, suite, prov.initiator.km, cABefore, idA);
  add("M_A", v.M_A_hex, toHex(mA), true);
  const srs = v.SRS_hex ? fromHex(v.SRS_hex) : undefined;
  const kf = finalSecret(c, suite, k, srs);
  add("K final", v.K_final_hex, toHex(kf));
  const fin = sessionKeys(c, suite, profile, kf);
  add("final KC_A", v.final.KC_A ?? "", toHex(fin.initiator.kc), true);
  add("final KM_A", v.final.KM_A ?? "", toHex(fin.initiator.km));
  add("final KS_A", v.final.KS_A ?? "", toHex(fin.initiator.ks ?? new Uint8Array()));
  add("final KC_B", v.final.KC_B ?? "", toHex(fin.responder.kc), true);
  add("final KM_B", v.final.KM_B ?? "", toHex(fin.responder.km));
  add("final KS_B", v.final.KS_B ?? "", toHex(fin.responder.ks ?? new Uint8Array()));
  const macB = sigma(c, suite, fin.responder.ks ?? new Uint8Array(), { nonceFirst: nA, nonceSecond: nB, dh: d, forms: [v.formB_c14n, v.formB2_c14n] });
  add("mac_B", v.mac_B_hex, toHex(macB));
  const cBBefore = cB.mpi();
  const idB = ctrCrypt(c, profile, fin.responder.kc, cB, macB);
  add("ID_B", v.ID_B_hex, toHex(idB), true);
  add("M_B", v.M_B_hex, toHex(identityMac(c, suite, fin.responder.km, cBBefore, idB)), true);
  if (srs) {
    add("srshash", v.srshash_b64, toBase64(sharedRetainedSecretHash(c, suite, srs)));
    const rsh = toBase64(retainedSecretHash(c, suite, nA, srs));
    add("rshashes contains HMAC(N_A, SRS)", "true", String(v.rshashes_b64.includes(rsh)));
  }
  add("new retained secret", v.new_retained_secret_hex, toHex(newRetainedSecret(c, suite, kf)));
  if (v.SAS_gajim !== undefined) add("SAS (unpadded)", v.SAS_gajim, sas28x5(c, GAJIM_PROFILE, mA, v.formB_c14n), true);
  if (v.SAS_padded5 !== undefined) add("SAS (padded)", v.SAS_padded5, sas28x5(c, SPEC_PROFILE, mA, v.formB_c14n), true);
  add("C_A after negotiation", v.C_A_after_negotiation_hex.replace(/^0x/, ""), toHex(cA.bytes()), true);
  add("C_B after negotiation", v.C_B_after_negotiation_hex.replace(/^0x/, ""), toHex(cB.bytes()), true);
  for (const [i, s] of (v.xep0200 ?? []).entries()) {
    const fromAlice = s.direction.startsWith("A");
    const keys = fromAlice ? fin.initiator : fin.responder;
    const ctr = BlockCounter.fromBytes(fromHex(s.counter_before_hex));
    const before = ctr.clone();
    const data = ctrCrypt(c, profile, keys.kc, ctr, utf8(s.plaintext_padded));
    add(`xep0200[${i}] m_content`, s.m_content, `<data>${toBase64(data)}</data>`, true);
    add(`xep0200[${i}] mac`, s.mac_hex, toHex(stanzaMac(c, suite, keys.km, s.m_content, macCounter(before, "mpi"))));
    add(`xep0200[${i}] counter after`, s.counter_after_hex.replace(/^0x/, ""), toHex(ctr.bytes()), true);
  }
  return out;
}
