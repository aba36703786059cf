/**
 * The negotiable XEP-0155 parameters shared by plain stanza sessions and ESessions:
 * reading them from a form, choosing among offered options, and building request fields.
 *
 * Spec: XEP-0155 v1.2 section 8 "Defined Parameters" (logging, disclosure, security,
 * multisession), section 12.3 "Field Standardization" (option values and labels),
 * section 4.1 ("options within any list-single fields SHOULD appear in order of
 * preference"). XEP-0136 v1.3.1 section 3.1 "OTR Negotiation" (the two tables mapping a
 * user's OTR preference to the offered and to the selected 'logging' values).
 * Legacy: before XEP-0155 v0.14 the field was 'otr' with true/false values; XEP-0116
 * v0.16 and XEP-0217 examples still use 'otr' or 'logging' with true/false. We send
 * 'logging' with may/mustnot and accept both, 'true' meaning 'mustnot'
 * (../shared/docs/esession-interpretation.md row 8).
 */
import { assertNever } from "../core/types.js";
import { parseBoolean, type DataForm, type Field, type FieldOption } from "../forms/codec.js";

/** A value of the 'logging' field: may the receiving party log messages. */
export type LoggingPolicy = "may" | "mustnot";
/** A value of the 'disclosure' field. */
export type Disclosure = "never" | "disabled" | "enabled";
/** A value of the 'security' field (minimum security level). */
export type Security = "none" | "c2s" | "e2e";
/** A user's OTR preference (XEP-0136 section 3.1, "OTR Mode"). */
export type OtrPreference = "require" | "prefer" | "approve" | "concede" | "oppose" | "forbid";

export const LOGGING_VALUES: readonly LoggingPolicy[] = ["may", "mustnot"];
export const DISCLOSURE_VALUES: readonly Disclosure[] = ["never", "disabled", "enabled"];
export const SECURITY_VALUES: readonly Security[] = ["none", "c2s", "e2e"];
export const OTR_PREFERENCES: readonly OtrPreference[] = ["require", "prefer", "approve", "concede", "oppose", "forbid"];

/** By default we accept only disclosure values that exclude voluntary disclosure. */
export const DEFAULT_DISCLOSURE_PREFERENCE: readonly Disclosure[] = ["never", "disabled"];
/**
 * A plain stanza session can promise at most 'c2s' (our connections always use TLS);
 * 'e2e' is for the ESession layer to offer and accept.
 */
export const DEFAULT_SECURITY_PREFERENCE: readonly Security[] = ["c2s", "none"];

function isOneOf<T extends string>(values: readonly T[], v: string): v is T {
  return (values as readonly string[]).includes(v);
}

function unique<T>(xs: readonly T[]): T[] {
  return xs.filter((x, i) => xs.indexOf(x) === i);
}

/**
 * Generic choice: the first entry of `preferenceOrder` (ours, most preferred first) that
 * the peer offered; undefined when none was offered (not-acceptable if the field is
 * required).
 */
export function chooseOption<T extends string>(offered: readonly string[], preferenceOrder: readonly T[]): T | undefined {
  for (const p of preferenceOrder) if (offered.includes(p)) return p;
  return undefined;
}

/**
 * The 'logging' value the responding party selects (XEP-0136 section 3.1, second table).
 * `offered` is the initiator's list in its order of preference (the first is its default).
 * `policy` is our OTR preference; the two field values are accepted as shorthands:
 * "mustnot" = "require" (only 'mustnot' is acceptable) and "may" = "concede" (we follow the
 * initiator's default). Returns undefined when the negotiation fails.
 */
export function chooseLogging(offered: readonly string[], policy: LoggingPolicy | OtrPreference): LoggingPolicy | undefined {
  const o = unique(offered.filter((v): v is LoggingPolicy => isOneOf(LOGGING_VALUES, v)));
  const first = o[0];
  if (first === undefined) return undefined;
  const has = (v: LoggingPolicy) => o.includes(v);
  switch (policy) {
    case "require":
    case "mustnot":
      return has("mustnot") ? "mustnot" : undefined;
    case "prefer":
      return has("mustnot") ? "mustnot" : "may";
    case "approve":
    case "concede":
    case "may":
      return first;
    case "oppose":
      return has("may") ? "may" : "mustnot";
    case "forbid":
      return has("may") ? "may" : undefined;
    default:
      return assertNever(policy, "logging policy");
  }
}

/** The 'logging' options to offer, in order (XEP-0136 section 3.1, first table). */
export function loggingOffer(pref: OtrPreference): LoggingPolicy[] {
  switch (pref) {
    case "require":
      return ["mustnot"];
    case "prefer":
    case "approve":
      return ["mustnot", "may"];
    case "concede":
    case "oppose":
      return ["may", "mustnot"];
    case "forbid":
      return ["may"];
    default:
      return assertNever(pref, "OTR preference");
  }
}

/** Which disclosure value to select: the first of ours the peer offered. */
export function chooseDisclosure(
  offered: readonly string[],
  acceptable: readonly Disclosure[] = DEFAULT_DISCLOSURE_PREFERENCE,
): Disclosure | undefined {
  return chooseOption(offered, acceptable);
}

/** Which minimum security level to select: the first of ours the peer offered. */
export function chooseSecurity(
  offered: readonly string[],
  acceptable: readonly Security[] = DEFAULT_SECURITY_PREFERENCE,
): Security | undefined {
  return chooseOption(offered, acceptable);
}

/** A negotiable field as read from a form. */
export interface OptionField<T extends string> {
  readonly var: string;
  /** Request forms: the options in the sender's order of preference (values if no options). */
  readonly offered: readonly T[];
  /** The first `<value/>`: the default in a request, the selection in a response. */
  readonly value: T | undefined;
  readonly required: boolean;
  /** Values that were neither recognised nor mapped (a peer offering only these fails). */
  readonly unknown: readonly string[];
}

/** How a logging field encodes its values: the current may/mustnot or legacy booleans. */
export type LoggingEncoding = "may-mustnot" | "boolean";

export interface LoggingField extends OptionField<LoggingPolicy> {
  readonly var: "logging" | "otr";
  readonly encoding: LoggingEncoding;
}

function fieldOf(form: DataForm, name: string): Field | undefined {
  return form.fields.find((x) => x.var === name);
}

function rawOffered(fd: Field): string[] {
  return fd.options.length ? fd.options.map((o) => o.value) : [...fd.values];
}

function readOptionField<T extends string>(fd: Field, map: (v: string) => T | undefined): OptionField<T> {
  const offered: T[] = [];
  const unknown: string[] = [];
  for (const v of rawOffered(fd)) {
    const m = map(v);
    if (m === undefined) unknown.push(v);
    else if (!offered.includes(m)) offered.push(m);
  }
  const v0 = fd.values[0];
  return {
    var: fd.var,
    offered,
    value: v0 === undefined ? undefined : map(v0),
    required: fd.required === true,
    unknown,
  };
}

/** Legacy boolean logging values: 'true' (off the record) means 'mustnot'. */
function loggingFromBoolean(v: string): LoggingPolicy | undefined {
  const b = parseBoolean(v.trim());
  return b === undefined ? undefined : b ? "mustnot" : "may";
}

function loggingFromAny(v: string): LoggingPolicy | undefined {
  const t = v.trim();
  return isOneOf(LOGGING_VALUES, t) ? t : loggingFromBoolean(t);
}

/**
 * Reads the logging parameter from a form: 'logging' (may/mustnot) or, if absent, the
 * legacy 'otr' field. Boolean values are read with the old 'otr' meaning in either field
 * ('true' = 'mustnot'); XEP-0116 v0.16 examples put true/false in 'logging'.
 */
export function parseLogging(form: DataForm): LoggingField | undefined {
  const logging = fieldOf(form, "logging");
  const fd = logging ?? fieldOf(form, "otr");
  if (!fd) return undefined;
  const name = logging ? "logging" : "otr";
  const raw = [...rawOffered(fd), ...fd.values].map((v) => v.trim());
  const booleanish = raw.length > 0 && raw.every((v) => parseBoolean(v) !== undefined);
  const encoding: LoggingEncoding = name === "otr" || booleanish ? "boolean" : "may-mustnot";
  const base = readOptionField(fd, encoding === "boolean" ? loggingFromAny : (v) => {
    const t = v.trim();
    return isOneOf(LOGGING_VALUES, t) ? t : undefined;
  });
  return { ...base, var: name, encoding };
}

/** The wire value of a logging selection in the encoding the peer used. */
export function encodeLogging(value: LoggingPolicy, encoding: LoggingEncoding): string {
  if (encoding === "may-mustnot") return value;
  return value === "mustnot" ? "true" : "false";
}

/** Reads the 'disclosure' parameter. */
export function parseDisclosure(form: DataForm): OptionField<Disclosure> | undefined {
  const fd = fieldOf(form, "disclosure");
  return fd ? readOptionField(fd, (v) => (isOneOf(DISCLOSURE_VALUES, v.trim()) ? (v.trim() as Disclosure) : undefined)) : undefined;
}

/** Reads the 'security' parameter. */
export function parseSecurity(form: DataForm): OptionField<Security> | undefined {
  const fd = fieldOf(form, "security");
  return fd ? readOptionField(fd, (v) => (isOneOf(SECURITY_VALUES, v.trim()) ? (v.trim() as Security) : undefined)) : undefined;
}

/** Reads the 'multisession' boolean (XEP-0155 v1.2; defaults to false when absent). */
export function parseMultisession(form: DataForm): boolean | undefined {
  const fd = fieldOf(form, "multisession");
  if (!fd) return undefined;
  return parseBoolean(fd.values[0]?.trim()) ?? false;
}

// ---------------------------------------------------------------------------------------
// Building request fields (labels from XEP-0155 section 4.1 and 12.3; a receiving client
// replaces them with its own localised labels, section 10.2).

export interface ListFieldOptions {
  readonly label?: string;
  readonly optionLabels?: Readonly<Record<string, string>>;
  readonly required?: boolean;
  /** The default value; the first option when omitted. */
  readonly value?: string;
}

/** A list-single request field offering `offer` in order of preference. */
export function listField(name: string, offer: readonly string[], o: ListFieldOptions = {}): Field {
  const options: FieldOption[] = offer.map((value) => {
    const label = o.optionLabels?.[value];
    return label === undefined ? { value } : { value, label };
  });
  const def = o.value ?? offer[0];
  return {
    var: name,
    type: "list-single",
    values: def === undefined ? [] : [def],
    options,
    ...(o.label !== undefined ? { label: o.label } : {}),
    ...(o.required ? { required: true } : {}),
  };
}

export const FIELD_LABELS = {
  accept: "Accept this session?",
  renegotiate: "Renegotiate?",
  multisession: "Allow multiple sessions?",
  logging: "Message logging",
  disclosure: "Disclosure",
  security: "Minimum security level",
} as const;

const LOGGING_LABELS: Record<LoggingPolicy, string> = {
  may: "Allow message logging",
  mustnot: "Disallow all message logging",
};
const DISCLOSURE_LABELS: Record<Disclosure, string> = {
  never: "Guarantee disclosure not implemented",
  disabled: "Disable all disclosures",
  enabled: "Allow disclosures",
};
const SECURITY_LABELS: Record<Security, string> = {
  none: "Secure connections not required",
  c2s: "Both parties must be securely connected to their servers",
  e2e: "Both parties must be securely connected to each other",
};

/**
 * The 'logging' request field. XEP-0136 section 3.1: "the user MUST include the
 * <required/> element inside the 'logging' <field/> element", hence required by default.
 */
export function loggingField(offer: readonly LoggingPolicy[], required = true): Field {
  return listField("logging", offer, { label: FIELD_LABELS.logging, optionLabels: LOGGING_LABELS, required });
}

export function disclosureField(offer: readonly Disclosure[], required = true): Field {
  return listField("disclosure", offer, { label: FIELD_LABELS.disclosure, optionLabels: DISCLOSURE_LABELS, required });
}

export function securityField(offer: readonly Security[], required = true): Field {
  return listField("security", offer, { label: FIELD_LABELS.security, optionLabels: SECURITY_LABELS, required });
}

export function multisessionField(allow: boolean): Field {
  return { var: "multisession", type: "boolean", label: FIELD_LABELS.multisession, values: [allow ? "true" : "false"], options: [] };
}
