// Importing a graph document: the server plans it first (a dry run) and the plan is shown;
// nothing changes until "Apply". The apply is conditional on the revision the plan was made
// at, so a graph changed meanwhile (by another client or tab) is said, not overwritten.
import { useEffect, useRef, useState } from "react";
import { ApiError, api, type GraphApplied, type GraphDoc } from "./api";
import { Modal } from "./Modal";

type Step =
  | { step: "planning" }
  | { step: "plan"; plan: GraphApplied }
  | { step: "applying"; plan: GraphApplied }
  | { step: "applied"; plan: GraphApplied }
  | { step: "changed"; message: string }
  | { step: "rejected"; message: string; problems: { place: string; message: string }[] };

/** The plan of `doc` (named `name`), then apply or cancel. */
export function ImportDialog({ name, doc, onDone }: { name: string; doc: GraphDoc; onDone: () => void }) {
  const [step, setStep] = useState<Step>({ step: "planning" });
  // The document without its own revision: the precondition is the plan's (If-Match).
  const body = { ...doc, revision: undefined };

  const plan = async () => {
    setStep({ step: "planning" });
    try {
      const planned = await api<GraphApplied>("PUT", "/api/graph?dry_run=true", body);
      setStep({ step: "plan", plan: planned });
    } catch (e) {
      setStep(rejected(e));
    }
  };

  // Planned once when opened (an effect may run twice in development).
  const started = useRef(false);
  useEffect(() => {
    if (started.current) return;
    started.current = true;
    void plan();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  const apply = async (planned: GraphApplied) => {
    setStep({ step: "applying", plan: planned });
    try {
      const applied = await api<GraphApplied>("PUT", "/api/graph", body, { "if-match": `"${planned.revision}"` });
      setStep({ step: "applied", plan: applied });
    } catch (e) {
      if (e instanceof ApiError && e.code === "revision_mismatch") {
        setStep({
          step: "changed",
          message: "The graph changed elsewhere since this plan was made (another client or tab). Nothing was applied.",
        });
      } else {
        setStep(rejected(e));
      }
    }
  };

  const actions = "plan" in step ? step.plan.actions : [];
  return (
    // While applying, closing would look like a cancel that is not one.
    <Modal className="import-dialog" labelledBy="import-title" busy={step.step === "applying"} onClose={onDone}>
      <h2 id="import-title">Import {name}</h2>
      {step.step === "planning" && <p role="status">Planning…</p>}
      {(step.step === "plan" || step.step === "applying") &&
        (actions.length === 0 ? (
          <p role="status">The graph already matches this document: nothing to change.</p>
        ) : (
          <p role="status">Applying it would, in this order:</p>
        ))}
      {step.step === "applied" && (
        <p role="status">
          Applied: {actions.length} change(s), revision {step.plan.revision}.
        </p>
      )}
      {actions.length > 0 && (
        <ol className="plan" aria-label="plan">
          {actions.map((a, i) => (
            <li key={i} className={`action-${a.action}`}>
              <strong>{a.action}</strong> <code>{a.target}</code> — {a.reason}
              {a.changed && a.changed.length > 0 && <> ({a.changed.join(", ")})</>}
            </li>
          ))}
        </ol>
      )}
      {step.step === "changed" && (
        <p className="error" role="alert">
          {step.message}
        </p>
      )}
      {step.step === "rejected" && (
        <div role="alert">
          <p className="error">{step.message}</p>
          {step.problems.length > 0 && (
            <ul className="problems">
              {step.problems.map((p, i) => (
                <li key={i}>
                  <code>{p.place || "document"}</code>: {p.message}
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
      <div className="buttons">
        {step.step === "applied" || step.step === "rejected" ? (
          <button type="button" className="primary" onClick={onDone} autoFocus>
            Close
          </button>
        ) : (
          <>
            <button type="button" onClick={onDone} disabled={step.step === "applying"}>
              Cancel
            </button>
            {step.step === "changed" ? (
              <button type="button" className="primary" onClick={() => void plan()}>
                Plan again
              </button>
            ) : (
              <button
                type="button"
                className="primary"
                disabled={step.step !== "plan" || actions.length === 0}
                onClick={() => step.step === "plan" && void apply(step.plan)}
              >
                Apply
              </button>
            )}
          </>
        )}
      </div>
    </Modal>
  );
}

function rejected(e: unknown): Step {
  if (e instanceof ApiError) return { step: "rejected", message: e.message, problems: e.problems };
  return { step: "rejected", message: e instanceof Error ? e.message : String(e), problems: [] };
}
