/**
 * ESession profiles: the reading of the ambiguous parts of XEP-0116 v0.16 / XEP-0217 v0.1 /
 * XEP-0200 v0.2 that a session uses.
 *
 * Spec: ../shared/docs/esession-interpretation.md (rows 4, 5, 7, 10, 12, 15, 17). "spec" is
 * the project's default reading; "gajim" reproduces the one deployed implementation
 * (Gajim 2007-2018) so that its peers and its recorded vectors interoperate.
 */
import type { NormalizeStyle } from "../xml/index.js";

export type ProfileName = "spec" | "gajim";

export interface Profile {
  readonly name: ProfileName;
  /** Row 4: KC = trailing cipher-size bytes of the HMAC ("trailing"), or all of it ("full"). */
  readonly cipherKey: "trailing" | "full";
  /** Row 5: the first CTR block is counter + ctrOffset. */
  readonly ctrOffset: 0 | 1;
  /** Row 7: empty elements and whitespace in MACed forms. */
  readonly formStyle: NormalizeStyle;
  /** Row 10: left-pad the SAS with 'a' to 5 characters. */
  readonly sasPadded: boolean;
  /** Row 12: number of random decoys appended to rshashes (min, max), or "gajim" (one when empty). */
  readonly rshashDecoys: "spec" | "gajim";
  /** Row 15: how the counter is appended to m_content when we send. */
  readonly sendCounter: "mpi" | "pad16";
  /** Row 17: termination encrypted and acknowledged ("encrypted") or clear, unacknowledged. */
  readonly termination: "encrypted" | "clear";
  /** Row 16: put a clear fallback <body/> next to <c/> in messages. */
  readonly fallbackBody: boolean;
}

export const SPEC_PROFILE: Profile = {
  name: "spec",
  cipherKey: "trailing",
  ctrOffset: 0,
  formStyle: "spec",
  sasPadded: true,
  rshashDecoys: "spec",
  sendCounter: "mpi",
  termination: "encrypted",
  fallbackBody: true,
};

export const GAJIM_PROFILE: Profile = {
  name: "gajim",
  cipherKey: "full",
  ctrOffset: 1,
  formStyle: "gajim",
  sasPadded: false,
  rshashDecoys: "gajim",
  sendCounter: "pad16",
  termination: "clear",
  fallbackBody: true,
};

export function profileByName(name: ProfileName): Profile {
  return name === "gajim" ? GAJIM_PROFILE : SPEC_PROFILE;
}

/**
 * Candidate readings a responder tries when verifying the initiator's identity (the
 * interpretation note: "a bounded check, accept only the combination whose mac_A
 * matches"). The first one whose M_A and mac_A verify wins.
 */
export const DETECTABLE_PROFILES: readonly Profile[] = [SPEC_PROFILE, GAJIM_PROFILE];
