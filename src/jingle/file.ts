/**
 * The Jingle File Transfer application description (the subset a file offer needs).
 *
 * Spec: XEP-0234 v0.19.1 (Jingle File Transfer) section 3 "Application Format": a
 * <description xmlns='urn:xmpp:jingle:apps:file-transfer:5'> with one <file/> carrying
 * <name/>, <size/> (octets), optional <media-type/>, <date/>, <desc/>, and <hash/>
 * elements of XEP-0300 ('urn:xmpp:hashes:2', Base64 values; "Multiple hashes MAY be
 * included"). Section 6 (sending a file: the content's senders='initiator'). Ranges and
 * requesting files are not implemented.
 */
import { el, elements, type Element } from "../xml/index.js";
import { attrOf } from "../adapters/connection.js";

export const NS_FILE_TRANSFER = "urn:xmpp:jingle:apps:file-transfer:5";
export const NS_HASHES = "urn:xmpp:hashes:2";

export interface FileHash {
  /** XEP-0300 algorithm name, e.g. "sha-256". */
  readonly algo: string;
  /** Base64 digest. */
  readonly value: string;
}

export interface FileOffer {
  readonly name: string;
  readonly size: number;
  readonly mediaType?: string;
  readonly date?: string;
  readonly desc?: string;
  readonly hashes: readonly FileHash[];
}

/** Parses the description element; undefined if it is not a valid file offer. */
export function parseFileDescription(d: Element): FileOffer | undefined {
  if (attrOf(d, "xmlns") !== NS_FILE_TRANSFER) return undefined;
  const f = elements(d).find((c) => c.name === "file");
  if (f === undefined) return undefined;
  const text = (n: string): string | undefined => elements(f).find((c) => c.name === n)?.getText();
  const name = text("name");
  const sizeText = text("size");
  if (name === undefined || sizeText === undefined || !/^[0-9]{1,15}$/.test(sizeText.trim())) return undefined;
  // The name is the sender's suggestion only: never a path.
  if (name.length === 0 || /[/\\\0]/.test(name) || name === "." || name === "..") return undefined;
  const hashes = elements(f)
    .filter((c) => c.name === "hash" && attrOf(c, "xmlns") === NS_HASHES)
    .flatMap((c) => {
      const algo = attrOf(c, "algo");
      return algo === undefined ? [] : [{ algo, value: c.getText().trim() }];
    });
  const mediaType = text("media-type");
  const date = text("date");
  const desc = text("desc");
  return {
    name,
    size: Number(sizeText.trim()),
    ...(mediaType === undefined ? {} : { mediaType }),
    ...(date === undefined ? {} : { date }),
    ...(desc === undefined ? {} : { desc }),
    hashes,
  };
}

export function buildFileDescription(f: FileOffer): Element {
  return el(
    "description",
    { xmlns: NS_FILE_TRANSFER },
    el(
      "file",
      {},
      f.date === undefined ? undefined : el("date", {}, f.date),
      f.desc === undefined ? undefined : el("desc", {}, f.desc),
      f.mediaType === undefined ? undefined : el("media-type", {}, f.mediaType),
      el("name", {}, f.name),
      el("size", {}, String(f.size)),
      ...f.hashes.map((h) => el("hash", { xmlns: NS_HASHES, algo: h.algo }, h.value)),
    ),
  );
}
