/**
 * XEP-0004 Data Forms codec: `<x xmlns='jabber:x:data'/>` <-> {@link DataForm}.
 *
 * Spec: XEP-0004 v2.x section 3 (form types form/submit/cancel/result, field types,
 * `<value/>`, `<option/>`, `<required/>`, `<desc/>`), section 3.3 (field types).
 * XEP-0068 FORM_TYPE (hidden field identifying the form's namespace).
 *
 * The codec keeps field order. Callers that MAC a form (XEP-0116) normalize the received
 * element itself, never a re-encoding; see src/xml normalize().
 */
import { getLimits, type Limits } from "../limits.js";
import { el, elements, type Element, NS } from "../xml/index.js";

export type FormType = "form" | "submit" | "cancel" | "result";
export type FieldType =
  | "boolean"
  | "fixed"
  | "hidden"
  | "jid-multi"
  | "jid-single"
  | "list-multi"
  | "list-single"
  | "text-multi"
  | "text-private"
  | "text-single";

const FORM_TYPES: readonly string[] = ["form", "submit", "cancel", "result"];
const FIELD_TYPES: readonly string[] = [
  "boolean",
  "fixed",
  "hidden",
  "jid-multi",
  "jid-single",
  "list-multi",
  "list-single",
  "text-multi",
  "text-private",
  "text-single",
];

export interface FieldOption {
  readonly label?: string;
  readonly value: string;
}

export interface Field {
  readonly var: string;
  readonly type?: FieldType;
  readonly label?: string;
  readonly values: readonly string[];
  readonly options: readonly FieldOption[];
  readonly required?: boolean;
  readonly desc?: string;
}

export interface DataForm {
  readonly type: FormType;
  readonly title?: string;
  readonly instructions?: readonly string[];
  readonly fields: readonly Field[];
}

export class FormError extends Error {
  override readonly name = "FormError";
  readonly condition = "bad-request" as const;
  constructor(reason: string) {
    super(`bad-request: ${reason}`);
  }
}

/**
 * Parses a `<x xmlns='jabber:x:data'/>` element. Throws {@link FormError}, also when the
 * form is over the limits of ../limits.ts (maxFormFields, maxFieldValues,
 * maxFieldOptions, maxFieldValueBytes): a form is the carrier of every ESession
 * negotiation value (Base64 DH values, keys, signatures), so an oversized one is refused
 * here, before any layer decodes or computes with it (XEP-0210 section 4.4).
 */
export function parseForm(x: Element): DataForm {
  if (x.name !== "x" || x.getNS() !== NS.data) throw new FormError("not a data form");
  const lim = getLimits();
  const type = x.attrs.type as string | undefined;
  if (type === undefined || !FORM_TYPES.includes(type)) throw new FormError("bad form type");
  const fields: Field[] = [];
  let title: string | undefined;
  const instructions: string[] = [];
  for (const c of elements(x)) {
    if (c.name === "title") title = text(c, lim);
    else if (c.name === "instructions") {
      if (instructions.length >= lim.maxFieldValues) throw new FormError("too many instructions");
      instructions.push(text(c, lim));
    } else if (c.name === "field") {
      if (fields.length >= lim.maxFormFields) throw new FormError("too many fields");
      fields.push(parseField(c, lim));
    }
  }
  return {
    type: type as FormType,
    fields,
    ...(title !== undefined ? { title } : {}),
    ...(instructions.length ? { instructions } : {}),
  };
}

/** Character data of `e`, refused beyond maxFieldValueBytes. */
function text(e: Element, lim: Readonly<Limits>): string {
  const t = e.getText();
  if (t.length > lim.maxFieldValueBytes) throw new FormError("value too large");
  return t;
}

function parseField(f: Element, lim: Readonly<Limits>): Field {
  const v = f.attrs.var as string | undefined;
  const t = f.attrs.type as string | undefined;
  if (t !== undefined && !FIELD_TYPES.includes(t)) throw new FormError(`bad field type for ${v ?? "?"}`);
  if (v === undefined && t !== "fixed") throw new FormError("field without var");
  const values: string[] = [];
  const options: FieldOption[] = [];
  let required = false;
  let desc: string | undefined;
  for (const c of elements(f)) {
    if (c.name === "value") {
      if (values.length >= lim.maxFieldValues) throw new FormError("too many values");
      values.push(text(c, lim));
    } else if (c.name === "required") required = true;
    else if (c.name === "desc") desc = text(c, lim);
    else if (c.name === "option") {
      const ov = c.getChild("value");
      if (!ov) throw new FormError("option without value");
      if (options.length >= lim.maxFieldOptions) throw new FormError("too many options");
      const label = c.attrs.label as string | undefined;
      options.push({ value: text(ov, lim), ...(label !== undefined ? { label } : {}) });
    }
  }
  const label = f.attrs.label as string | undefined;
  return {
    var: v ?? "",
    values,
    options,
    ...(t !== undefined ? { type: t as FieldType } : {}),
    ...(label !== undefined ? { label } : {}),
    ...(required ? { required } : {}),
    ...(desc !== undefined ? { desc } : {}),
  };
}

/**
 * Serializes a form. Empty elements are never emitted (a `<required/>` flag is omitted),
 * so that our own forms normalize identically under every profile (interpretation row 7).
 */
export function formToXml(form: DataForm): Element {
  const x = el("x", { xmlns: NS.data, type: form.type });
  if (form.title !== undefined) x.cnode(el("title", {}, form.title));
  for (const i of form.instructions ?? []) x.cnode(el("instructions", {}, i));
  for (const f of form.fields) {
    const fe = el("field", { var: f.var, type: f.type, label: f.label });
    if (f.desc !== undefined) fe.cnode(el("desc", {}, f.desc));
    for (const v of f.values) fe.cnode(el("value", {}, v));
    for (const o of f.options) fe.cnode(el("option", { label: o.label }, el("value", {}, o.value)));
    x.cnode(fe);
  }
  return x;
}

/** Finds the first `<x xmlns='jabber:x:data'/>` child of `parent`. */
export function findForm(parent: Element): Element | undefined {
  return parent.getChild("x", NS.data);
}

export function field(form: DataForm, name: string): Field | undefined {
  return form.fields.find((f) => f.var === name);
}

/** The single value of a field (first value), if any. */
export function value(form: DataForm, name: string): string | undefined {
  return field(form, name)?.values[0];
}

/** FORM_TYPE per XEP-0068. */
export function formType(form: DataForm): string | undefined {
  return value(form, "FORM_TYPE");
}

/** XEP-0004 section 3.3: boolean values are "0"/"1"/"false"/"true". */
export function parseBoolean(v: string | undefined): boolean | undefined {
  if (v === "1" || v === "true") return true;
  if (v === "0" || v === "false") return false;
  return undefined;
}

/** Helpers to build fields tersely. */
export const f = {
  hidden: (name: string, ...values: string[]): Field => ({ var: name, type: "hidden", values, options: [] }),
  value: (name: string, ...values: string[]): Field => ({ var: name, values, options: [] }),
  typed: (name: string, type: FieldType, ...values: string[]): Field => ({ var: name, type, values, options: [] }),
  list: (name: string, type: "list-single" | "list-multi", options: readonly string[]): Field => ({
    var: name,
    type,
    values: [],
    options: options.map((value) => ({ value })),
  }),
  bool: (name: string, v: boolean): Field => ({ var: name, type: "boolean", values: [v ? "1" : "0"], options: [] }),
};

/**
 * The values a field offers: options for list fields in a request form, values otherwise.
 * (XEP-0155: in a request a negotiable field lists options; a hidden field lists values.)
 */
export function offered(fd: Field | undefined): string[] {
  if (!fd) return [];
  return fd.options.length ? fd.options.map((o) => o.value) : [...fd.values];
}
