// Adding a processor: its config form (from the type's schema, defaults filled in), an
// optional id, and the server's answer — a refused value is shown at its field.
import { useState } from "react";
import { ApiError, api, type RegistryEntry } from "./api";
import { Modal } from "./Modal";
import { InvalidJson, SchemaForm, defaults } from "./SchemaForm";

/** The form for adding one `entry`; closed by `onDone` (with the new id, or null if cancelled). */
export function AddDialog({ entry, onDone }: { entry: RegistryEntry; onDone: (id: string | null) => void }) {
  const [id, setId] = useState("");
  const [values, setValues] = useState<Record<string, unknown>>(() => defaults(entry.config_schema));
  const [edited, setEdited] = useState<Set<string>>(new Set());
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async () => {
    const bad = Object.entries(values).find(([, v]) => v instanceof InvalidJson);
    if (bad) {
      setErrors({ [bad[0]]: "not valid JSON" });
      return;
    }
    // Only what was edited: the rest takes the type's defaults on the server.
    const config: Record<string, unknown> = {};
    for (const name of edited) config[name] = values[name];
    setBusy(true);
    setProblem(null);
    try {
      const body: Record<string, unknown> = { processor_type: entry.type_name, config };
      if (id.trim()) body.id = id.trim();
      const created = await api<{ processor_id: string }>("POST", "/api/processors", body);
      onDone(created.processor_id);
    } catch (e) {
      if (e instanceof ApiError && e.field) {
        setErrors({ [e.field.split(/[.[]/)[0]]: e.message });
      } else if (e instanceof ApiError && (e.code === "invalid_id" || e.code === "duplicate_processor_id")) {
        setErrors({ "": e.message });
      } else {
        setProblem(e instanceof Error ? e.message : String(e));
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    // While the server is adding it, closing would hide the answer.
    <Modal className="add-dialog" labelledBy="add-title" busy={busy} onClose={() => onDone(null)}>
      <form
        method="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        <h2 id="add-title">Add {entry.type_name}</h2>
        <p className="description">{entry.description}</p>
        <div className={`field${errors[""] ? " invalid" : ""}`} data-field="id">
          <label htmlFor="add-id">id</label>
          <input id="add-id" value={id} onChange={(e) => setId(e.target.value)} placeholder="chosen by the server when empty" autoFocus />
          <small>Letters, digits, '-' and '_'; unique in the graph.</small>
          {errors[""] && (
            <div className="field-error" role="alert">
              {errors[""]}
            </div>
          )}
        </div>
        <SchemaForm
          schema={entry.config_schema}
          values={values}
          idPrefix="add"
          errors={errors}
          onChange={(field, value) => {
            setValues((old) => ({ ...old, [field]: value }));
            setEdited((old) => new Set(old).add(field));
            setErrors((old) => {
              const { [field]: _, ...rest } = old;
              return rest;
            });
          }}
        />
        {problem && (
          <p className="error" role="alert">
            {problem}
          </p>
        )}
        <div className="buttons">
          <button type="button" onClick={() => onDone(null)} disabled={busy}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={busy}>
            Add
          </button>
        </div>
      </form>
    </Modal>
  );
}
