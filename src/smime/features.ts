/**
 * The service discovery features of object encryption, for an application to add to its
 * DiscoResponder (src/disco/responder.ts `features`) when it runs an ObjectClient.
 *
 * Spec: draft-ietf-xmpp-e2e-03 section 6 / RFC 3923 section 10.1 register the namespace
 * 'urn:ietf:params:xml:ns:xmpp-e2e' (the <e2e/> wrapper) but define no service discovery
 * feature and no negotiation: a sender learns that a recipient lacks support from its
 * <service-unavailable/> or <feature-not-implemented/> reply (RFC 3923 section 7, our
 * "peer-error" event). XEP-0030 v2.5.0 section 3.1 / the XMPP Registrar's convention is
 * that a protocol namespace is its own feature variable, so we advertise the namespace:
 * peers can then choose object encryption up front instead of learning by a bounce.
 * XEP-0189 v0.14 section 11: an entity that answers direct key requests "MUST return
 * features for 'urn:xmpp:pubkey:2'" ({@link CERTIFICATE_PUBLISHING_FEATURES}, for an
 * application that serves its certificate with certificateResponder, ./publish.ts); it
 * does not implement revocations or attestations for certificates, so it does not add
 * 'urn:xmpp:revoke:2' / 'urn:xmpp:attest:2' (src/pubkey's PUBKEY_FEATURES) on their behalf.
 */
import { NS_PUBKEY } from "../pubkey/codec.js";
import { NS_E2E } from "./e2e.js";

/** Advertise when an ObjectClient/ObjectSession processes incoming <e2e/> stanzas. */
export const OBJECT_ENCRYPTION_FEATURES: readonly string[] = [NS_E2E];

/** Advertise when a PubkeyService answers direct requests with certificateResponder. */
export const CERTIFICATE_PUBLISHING_FEATURES: readonly string[] = [NS_PUBKEY];
