// A form generated from a processor type's config JSON Schema (as `GET /api/registry` gives
// it): one labelled input per field, with its description, default, range or choices, a
// "live" mark for fields a running processor takes in place, and the server's message shown
// at the field it names.
import { useState } from "react";
import type { Schema } from "./api";

/** What a form field edits, resolved from the schema. */
export type FieldKind =
  | { kind: "choice"; options: { value: string; description?: string }[] }
  | { kind: "boolean" }
  | { kind: "integer"; min?: number; max?: number }
  | { kind: "number"; min?: number; max?: number }
  | { kind: "string" }
  | { kind: "json" };

/** `schema` with a `$ref` into `root.$defs` followed. */
function resolve(schema: Schema, root: Schema): Schema {
  if (schema.$ref?.startsWith("#/$defs/")) {
    const target = root.$defs?.[schema.$ref.slice("#/$defs/".length)];
    if (target) return { ...target, ...schema, $ref: undefined };
  }
  return schema;
}

/** Whether a field may be `null` (an `Option`: left empty, it is null). */
export function nullable(field: Schema, root: Schema): boolean {
  const schema = resolve(field, root);
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  return types.includes("null") || (schema.anyOf ?? []).some((s) => s.type === "null");
}

/** The kind of input a field needs (anything unusual is edited as JSON). */
export function fieldKind(field: Schema, root: Schema): FieldKind {
  let schema = resolve(field, root);
  // `Option<T>`: anyOf [T, null] is edited as T (left empty = null).
  if (schema.anyOf) {
    const some = schema.anyOf.filter((s) => s.type !== "null");
    if (some.length === 1) schema = resolve(some[0], root);
  }
  const choices = schema.oneOf ?? schema.anyOf;
  if (schema.enum?.every((v) => typeof v === "string")) {
    return { kind: "choice", options: (schema.enum as string[]).map((value) => ({ value })) };
  }
  if (choices?.length && choices.every((c) => typeof resolve(c, root).const === "string")) {
    return {
      kind: "choice",
      options: choices.map((c) => ({ value: String(resolve(c, root).const), description: c.description })),
    };
  }
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  switch (type) {
    case "boolean":
      return { kind: "boolean" };
    case "integer":
      return { kind: "integer", min: schema.minimum, max: schema.maximum };
    case "number":
      return { kind: "number", min: schema.minimum, max: schema.maximum };
    case "string":
      return { kind: "string" };
    default:
      return { kind: "json" };
  }
}

/** The editable fields of a config schema, in the schema's order (write-only ones left out). */
export function fields(schema: Schema): [string, Schema][] {
  return Object.entries(schema.properties ?? {}).filter(([, s]) => !s.writeOnly);
}

/** Every field's default, as a config object. */
export function defaults(schema: Schema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, s] of fields(schema)) if (s.default !== undefined) out[name] = s.default;
  return out;
}

/** The first line of a schema description (the rest is for the docs). */
function hint(description?: string): string {
  return (description ?? "").split("\n\n")[0].replace(/\[`([^`]+)`\]\([^)]*\)/g, "$1").replace(/\[`([^`]+)`\]/g, "$1");
}

function FieldInput({
  id,
  name,
  kind,
  value,
  optional,
  onChange,
  describedBy,
}: {
  id: string;
  name: string;
  kind: FieldKind;
  value: unknown;
  optional: boolean;
  onChange: (value: unknown, commit: boolean) => void;
  describedBy: string;
}) {
  // The text being typed (null: not editing: leaving the field commits nothing), and the value
  // when the editing began (put back if what was typed is not a value). Whether a commit
  // changes anything is the form's to say: it knows the value in force.
  const [text, setText] = useState<string | null>(null);
  const [before, setBefore] = useState<unknown>(undefined);
  const common = { id, name, "aria-describedby": describedBy };
  const finish = (next: unknown) => {
    setText(null);
    onChange(next, true);
  };
  const abandon = () => {
    setText(null);
    onChange(before, false);
  };
  const typing = {
    onFocus: () => setBefore(value),
    onKeyDown: (e: React.KeyboardEvent) => {
      if (e.key === "Enter" && !(e.target instanceof HTMLTextAreaElement)) (e.target as HTMLElement).blur();
    },
  };
  switch (kind.kind) {
    case "choice":
      return (
        <select
          {...common}
          value={value === null || value === undefined ? "" : String(value)}
          onChange={(e) => onChange(e.target.value === "" ? null : e.target.value, true)}
        >
          {(optional || value === null || value === undefined) && <option value="">(none)</option>}
          {kind.options.map((o) => (
            <option key={o.value} value={o.value} title={o.description}>
              {o.value}
            </option>
          ))}
        </select>
      );
    case "boolean":
      return <input {...common} type="checkbox" checked={value === true} onChange={(e) => onChange(e.target.checked, true)} />;
    case "integer":
    case "number": {
      // Typed text is kept until it parses (an empty or half-typed number is not sent).
      const shown = text ?? (value === null || value === undefined ? "" : String(value));
      const parse = (t: string) => (t.trim() === "" ? (optional ? null : NaN) : Number(t));
      // What the browser cannot read as a number reads as "": not the same as left empty.
      const bad = (e: React.SyntheticEvent<HTMLInputElement>) => e.currentTarget.validity.badInput;
      return (
        <input
          {...common}
          {...typing}
          type="number"
          inputMode={kind.kind === "integer" ? "numeric" : "decimal"}
          step={kind.kind === "integer" ? 1 : "any"}
          min={kind.min}
          max={kind.max}
          value={shown}
          onChange={(e) => {
            setText(e.target.value);
            const n = bad(e) ? NaN : parse(e.target.value);
            if (n === null || Number.isFinite(n)) onChange(n, false);
          }}
          onBlur={(e) => {
            if (text === null) return;
            const n = bad(e) ? NaN : parse(text);
            if (n === null || Number.isFinite(n)) finish(n);
            else abandon();
          }}
        />
      );
    }
    case "string": {
      const shown = text ?? String(value ?? "");
      return (
        <input
          {...common}
          {...typing}
          type="text"
          value={shown}
          onChange={(e) => {
            setText(e.target.value);
            onChange(e.target.value === "" && optional ? null : e.target.value, false);
          }}
          onBlur={() => text !== null && finish(text === "" && optional ? null : text)}
        />
      );
    }
    case "json": {
      const shown = text ?? JSON.stringify(value ?? null);
      return (
        <textarea
          {...common}
          {...typing}
          rows={2}
          value={shown}
          onChange={(e) => setText(e.target.value)}
          onBlur={() => {
            if (text === null) return;
            try {
              finish(JSON.parse(text));
            } catch {
              onChange(new InvalidJson(text), true);
            }
          }}
        />
      );
    }
  }
}

/** A value typed in a JSON field that does not parse: the form says so at the field. */
export class InvalidJson {
  constructor(readonly text: string) {}
}

export interface SchemaFormProps {
  /** The config schema (its `$defs` resolve references). */
  schema: Schema;
  /** The values shown, by field. */
  values: Record<string, unknown>;
  /** A field changed; `commit` when the edit is finished (blur, Enter, a choice made). */
  onChange: (field: string, value: unknown, commit: boolean) => void;
  /** Messages to show at fields (the server's, or the form's own). */
  errors: Record<string, string>;
  /** Prefix of the inputs' ids (unique on the page). */
  idPrefix: string;
  /** Marks on fields, e.g. "changed" for edits not yet applied. */
  marks?: Record<string, string>;
}

/** The form: one row per field of `schema`. */
export function SchemaForm({ schema, values, onChange, errors, idPrefix, marks = {} }: SchemaFormProps) {
  return (
    <div className="schema-form">
      {fields(schema).map(([name, field]) => {
        const kind = fieldKind(field, schema);
        const id = `${idPrefix}-${name}`;
        const live = field["x-streamlib-live"] === true;
        const error = errors[name];
        return (
          <div className={`field${error ? " invalid" : ""}`} key={name} data-field={name}>
            <label htmlFor={id}>
              {name}
              {live && (
                <span className="live" title="applied to the running processor in place, no restart">
                  live
                </span>
              )}
              {marks[name] && <span className="mark">{marks[name]}</span>}
            </label>
            <FieldInput
              id={id}
              name={name}
              kind={kind}
              optional={nullable(field, schema)}
              value={values[name]}
              onChange={(value, commit) => onChange(name, value, commit)}
              describedBy={`${id}-hint${error ? ` ${id}-error` : ""}`}
            />
            <small id={`${id}-hint`}>
              {hint(field.description)}
              {field.default !== undefined && <> Default: {JSON.stringify(field.default)}.</>}
            </small>
            {error && (
              <div className="field-error" id={`${id}-error`} role="alert">
                {error}
              </div>
            )}
          </div>
        );
      })}
    </div>
  );
}
