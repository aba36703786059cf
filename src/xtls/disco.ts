/**
 * Determining XTLS support and surfacing the downgrade risk.
 *
 * Spec: draft-meyer-xmpp-e2e-encryption-02
 * - section 7: "If an entity supports XTLS, it MUST report that by including a service
 *   discovery feature of 'urn:xmpp:jingle:security:xtls:1'"; the examples also show
 *   'urn:xmpp:jingle:apps:xmlstream:1'. The protocol namespace in the same draft is ':0';
 *   we advertise ':1' and also accept ':0' from peers (prior implementations used it).
 * - section 8.3: disco and caps "could be corrupted or intercepted ... convincing one
 *   party that the other party does not support XTLS": a missing feature is a warning
 *   the user sees, never a silent switch to plaintext.
 * XEP-0166 v1.1.2 section 11 ('urn:xmpp:jingle:1'), XEP-0261 v1.0 section 5
 * ('urn:xmpp:jingle:transports:ibb:1'), XEP-0047 v2.0.1 section 8
 * ('http://jabber.org/protocol/ibb').
 */
export const XTLS_FEATURE = "urn:xmpp:jingle:security:xtls:1";
export const XTLS_FEATURE_0 = "urn:xmpp:jingle:security:xtls:0";

/** What an XTLS endpoint advertises (add these to the disco responder / caps). */
export const XTLS_FEATURES: readonly string[] = [
  "urn:xmpp:jingle:1",
  XTLS_FEATURE,
  "urn:xmpp:jingle:apps:xmlstream:0",
  "urn:xmpp:jingle:apps:xmlstream:1",
  "urn:xmpp:jingle:transports:ibb:1",
  "http://jabber.org/protocol/ibb",
  // XEP-0260 v1.0.3 section 5 and XEP-0065 v1.8.2 section 9: SOCKS5 bytestreams;
  // XEP-0234 v0.19.1 section 11: Jingle File Transfer.
  "urn:xmpp:jingle:transports:s5b:1",
  "http://jabber.org/protocol/bytestreams",
  "urn:xmpp:jingle:apps:file-transfer:5",
];

export type XtlsSupport =
  | { readonly kind: "supported"; readonly version: 0 | 1 }
  | { readonly kind: "unsupported"; readonly warning: string };

/** Reads a peer's disco#info features (or caps-resolved features). */
export function xtlsSupport(features: readonly string[]): XtlsSupport {
  if (features.includes(XTLS_FEATURE)) return { kind: "supported", version: 1 };
  if (features.includes(XTLS_FEATURE_0)) return { kind: "supported", version: 0 };
  return {
    kind: "unsupported",
    warning:
      "The peer does not advertise XTLS. Either its client cannot encrypt end to end, or someone " +
      "between you altered its capabilities (a downgrade attack, draft-meyer-xmpp-e2e-encryption-02 " +
      "section 8.3). Nothing was sent unencrypted.",
  };
}
