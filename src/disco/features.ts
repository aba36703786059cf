/**
 * The service discovery features this project advertises, and why each is there.
 *
 * Spec, per feature:
 * - 'http://jabber.org/protocol/disco#info': XEP-0030 v2.5.0 section 3.1, "every entity
 *   MUST support at least the 'http://jabber.org/protocol/disco#info' feature".
 * - 'http://jabber.org/protocol/caps': XEP-0115 v1.6.0 section 7 "Determining Support",
 *   an entity that supports caps "MUST advertise that fact".
 * - 'urn:xmpp:ssn': XEP-0155 v1.2 section 12.2 registers it as the Service Discovery
 *   feature for "Support for Stanza Session Negotiation and its FORM_TYPE".
 * - 'http://www.xmpp.org/extensions/xep-0116.html#ns': XEP-0116 v0.16 section 3 (and
 *   XEP-0217 v0.1 section 3): a supporting entity "MUST include a service discovery
 *   feature variable" of this value.
 * - 'http://www.xmpp.org/extensions/xep-0200.html#ns': XEP-0200 v0.2 has no Service
 *   Discovery section; its section 13.1 only assigns this provisional protocol namespace.
 *   Advertising it is neither required nor forbidden; we do so (as its namespace) so that
 *   peers can see which stanza encryption we implement. It is separated out below so that
 *   the wiring can drop it.
 */
import { NS } from "../xml/index.js";
import type { Identity } from "./codec.js";

export const FEATURES = {
  discoInfo: NS.disco,
  caps: NS.caps,
  ssn: NS.ssn,
  esession: NS.esession,
  esessionStanzaEncryption: NS.c,
} as const;

/** Features defined as disco features by their specs (see the banner). */
export const REQUIRED_FEATURES: readonly string[] = [FEATURES.discoInfo, FEATURES.caps, FEATURES.ssn, FEATURES.esession];

/** Everything we advertise by default. */
export const ADVERTISED_FEATURES: readonly string[] = [...REQUIRED_FEATURES, FEATURES.esessionStanzaEncryption];

/** XEP-0030 section 3.1: every entity has at least one identity; ours is a client. */
export const DEFAULT_IDENTITY: Identity = { category: "client", type: "pc", name: "xmpp-e2e" };
