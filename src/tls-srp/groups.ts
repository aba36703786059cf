/**
 * The SRP groups of RFC 5054 (Using SRP for TLS Authentication, November 2007),
 * Appendix A: 1024, 1536 and 2048-bit groups with generator 2, and the RFC 3526 primes
 * of 3072 (g=5), 4096 (g=5), 6144 (g=5) and 8192 bits (g=19).
 *
 * Provenance of the constants (checked by test/unit/tls-srp-srp.test.ts): the 3072..8192
 * primes equal OpenSSL's RFC 3526 `modp15..modp18`; the 1536 and 2048 primes were read
 * from GnuTLS's `srptool --create-conf` output; 1024 reproduces the RFC 5054 Appendix B
 * vectors. All of them pass a primality test in the tests.
 */
import { MODP_PRIMES_HEX } from "../crypto/modp-primes.js";

export type SrpGroupBits = 1024 | 1536 | 2048 | 3072 | 4096 | 6144 | 8192;

export const SRP_GROUP_BITS: readonly SrpGroupBits[] = [1024, 1536, 2048, 3072, 4096, 6144, 8192];

/** An SRP group: safe prime N and generator g (RFC 5054 section 2.5.3). */
export interface SrpGroup {
  /** Bit length of N for a known group; 0 for a group read from a file that is not in Appendix A. */
  readonly bits: number;
  readonly N: bigint;
  readonly g: bigint;
}

/** The default group: RFC 5054 recommends at least 2048 bits nowadays; srptool's default too. */
export const DEFAULT_GROUP_BITS: SrpGroupBits = 2048;

const TABLE: Record<SrpGroupBits, { bits: number; g: bigint; hex: string }> = {
  1024: {
    bits: 1024,
    g: 2n,
    hex:
    "EEAF0AB9ADB38DD69C33F80AFA8FC5E86072618775FF3C0B9EA2314C9C256576" +
    "D674DF7496EA81D3383B4813D692C6E0E0D5D8E250B98BE48E495C1D6089DAD1" +
    "5DC7D7B46154D6B6CE8EF4AD69B15D4982559B297BCF1885C529F566660E57EC" +
    "68EDBC3C05726CC02FD4CBF4976EAA9AFD5138FE8376435B9FC61D2FC0EB06E3",
  },
  1536: {
    bits: 1536,
    g: 2n,
    hex:
    "9DEF3CAFB939277AB1F12A8617A47BBBDBA51DF499AC4C80BEEEA9614B19CC4D" +
    "5F4F5F556E27CBDE51C6A94BE4607A291558903BA0D0F84380B655BB9A22E8DC" +
    "DF028A7CEC67F0D08134B1C8B97989149B609E0BE3BAB63D47548381DBC5B1FC" +
    "764E3F4B53DD9DA1158BFD3E2B9C8CF56EDF019539349627DB2FD53D24B7C486" +
    "65772E437D6C7F8CE442734AF7CCB7AE837C264AE3A9BEB87F8A2FE9B8B5292E" +
    "5A021FFF5E91479E8CE7A28C2442C6F315180F93499A234DCF76E3FED135F9BB",
  },
  2048: {
    bits: 2048,
    g: 2n,
    hex:
    "AC6BDB41324A9A9BF166DE5E1389582FAF72B6651987EE07FC3192943DB56050" +
    "A37329CBB4A099ED8193E0757767A13DD52312AB4B03310DCD7F48A9DA04FD50" +
    "E8083969EDB767B0CF6095179A163AB3661A05FBD5FAAAE82918A9962F0B93B8" +
    "55F97993EC975EEAA80D740ADBF4FF747359D041D5C33EA71D281E446B14773B" +
    "CA97B43A23FB801676BD207A436C6481F1D2B9078717461A5B9D32E688F87748" +
    "544523B524B0D57D5EA77A2775D2ECFA032CFBDBF52FB3786160279004E57AE6" +
    "AF874E7303CE53299CCC041C7BC308D82A5698F3A8D0C38271AE35F8E9DBFBB6" +
    "94B5C803D89F7AE435DE236D525F54759B65E372FCD68EF20FA7111F9E4AFF73",
  },
  // RFC 3526 group 15
  3072: { bits: 3072, g: 5n, hex: MODP_PRIMES_HEX[15] },
  // RFC 3526 group 16
  4096: { bits: 4096, g: 5n, hex: MODP_PRIMES_HEX[16] },
  // RFC 3526 group 17
  6144: { bits: 6144, g: 5n, hex: MODP_PRIMES_HEX[17] },
  // RFC 3526 group 18
  8192: { bits: 8192, g: 19n, hex: MODP_PRIMES_HEX[18] },
};

const cache = new Map<SrpGroupBits, SrpGroup>();

export function isSrpGroupBits(n: number): n is SrpGroupBits {
  return (SRP_GROUP_BITS as readonly number[]).includes(n);
}

/** The Appendix A group of that size. */
export function srpGroup(bits: SrpGroupBits): SrpGroup {
  let g = cache.get(bits);
  if (!g) {
    const t = TABLE[bits];
    g = { bits, N: BigInt(`0x${t.hex}`), g: t.g };
    cache.set(bits, g);
  }
  return g;
}

/**
 * The Appendix A group with exactly this N and g, if any. RFC 5054 section 3.2: "the
 * client SHOULD only accept group parameters that come from a trusted source, such as
 * those listed in Appendix A"; the client uses this to refuse anything else.
 */
export function knownGroup(N: bigint, g: bigint): SrpGroup | undefined {
  for (const bits of SRP_GROUP_BITS) {
    const grp = srpGroup(bits);
    if (grp.N === N && grp.g === g) return grp;
  }
  return undefined;
}
