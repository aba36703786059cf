/**
 * Fuzz targets for src/xml: parseXml, parseFragment and the MAC normalization.
 *
 * Spec: XML 1.0 well-formedness; RFC 6120 section 11.1 (restricted XML); XEP-0116 v0.16
 * section 13 "Normalization" (normalize must accept any tree it is given).
 */
import fc from "fast-check";
import { normalize, parseFragment, parseXml, serialize, XmlError } from "../../../src/xml/index.js";
import { elementArb, junkText, target, typed, type FuzzTarget } from "../lib.js";

const markup = fc
  .array(fc.constantFrom("<", ">", "/", "a", "b", "=", '"', "'", " ", "&", ";", "amp", "lt", "#", "x", "0", "<!--", "-->", "<![CDATA[", "]]>", "<?", "?>", "<!DOCTYPE", "<!ENTITY", "xmlns", ":"), { maxLength: 60 })
  .map((a) => a.join(""));

const textInput = fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: "binary", maxLength: 200 }), markup, junkText);

export const xmlTargets: readonly FuzzTarget[] = [
  target("xml: parseXml throws only XmlError on any text", 1500, () =>
    fc.property(textInput, (s) => {
      typed([XmlError], () => parseXml(s));
    }),
  ),
  target("xml: parseFragment throws only XmlError on any text", 800, () =>
    fc.property(textInput, (s) => {
      typed([XmlError], () => parseFragment(s, "jabber:client"));
    }),
  ),
  target("xml: serialize then parseXml round-trips any element (and its normalization)", 500, () =>
    fc.property(elementArb(4), (e) => {
      const text = serialize(e);
      const back = parseXml(text);
      if (serialize(back) !== text) throw new Error("round trip changed the element");
      if (normalize([back]) !== normalize([e])) throw new Error("normalization differs after a round trip");
      if (normalize([back], "gajim") !== normalize([e], "gajim")) throw new Error("gajim normalization differs after a round trip");
    }),
  ),
  target("xml: a mutated serialization parses or fails with XmlError", 800, () =>
    fc.property(elementArb(3), fc.nat(), fc.string({ maxLength: 3 }), (e, at, ins) => {
      const t = serialize(e);
      const i = at % (t.length + 1);
      typed([XmlError], () => parseXml(t.slice(0, i) + ins + t.slice(i + 1)));
    }),
  ),
];
