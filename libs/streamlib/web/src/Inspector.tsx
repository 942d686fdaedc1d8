// The inspector: the selected processor (or link) in full. Live config fields are applied as
// they are changed (PATCH, in place, nothing restarts); the others wait behind "Apply and
// restart". State, counters, latency and the last error; restart and remove.
import { useEffect, useRef, useState } from "react";
import { ApiError, api, link, type LinkInfo, type PortTarget, type ProcessorInfo, type RegistryEntry } from "./api";
import { InvalidJson, SchemaForm } from "./SchemaForm";
import { fmt } from "./figures";

const enc = encodeURIComponent;

/** A button that asks again before doing something that cannot be undone. */
function ConfirmButton({ label, confirm, onConfirm, disabled }: { label: string; confirm: string; onConfirm: () => void; disabled?: boolean }) {
  const [asking, setAsking] = useState(false);
  useEffect(() => {
    if (!asking) return;
    const t = window.setTimeout(() => setAsking(false), 4000);
    return () => window.clearTimeout(t);
  }, [asking]);
  return (
    <button
      type="button"
      className={asking ? "danger" : undefined}
      disabled={disabled}
      onClick={() => {
        if (asking) {
          setAsking(false);
          onConfirm();
        } else setAsking(true);
      }}
    >
      {asking ? confirm : label}
    </button>
  );
}

/** A port's "connect to…" choice (the keyboard's way to link): the ports the server says it
 * can be linked with, the others listed disabled with the reason. */
function ConnectPort({ processor, port, side, onChanged }: { processor: string; port: string; side: "in" | "out"; onChanged: () => void }) {
  const [targets, setTargets] = useState<PortTarget[] | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const load = () => {
    api<PortTarget[]>("GET", `/api/processors/${enc(processor)}/ports/${enc(port)}/targets`).then(setTargets, (e) =>
      setProblem(e instanceof Error ? e.message : String(e)),
    );
  };
  const me = `${processor}.${port}`;
  // This direction's only (a port whose input and output share its name gets both).
  const mine = (targets ?? []).filter((t) => (side === "out" ? t.from === me : t.to === me));
  const other = (t: PortTarget) => (side === "out" ? t.to : t.from);
  const id = `connect-${side}-${processor}-${port}`;
  return (
    <div className="connect-port">
      <label htmlFor={id}>
        {side === "out" ? "output" : "input"} <strong>{port}</strong>
      </label>
      <select
        id={id}
        value=""
        onFocus={load}
        onMouseDown={() => targets === null && load()}
        onChange={(e) => {
          const chosen = mine.find((t) => other(t) === e.target.value);
          if (!chosen) return;
          setProblem(null);
          link(chosen.from, chosen.to).then(
            () => {
              setTargets(null);
              onChanged();
            },
            (err) => setProblem(err instanceof Error ? err.message : String(err)),
          );
        }}
      >
        <option value="">{side === "out" ? "connect to…" : "connect from…"}</option>
        {mine.map((t) => (
          <option key={other(t)} value={other(t)} disabled={!t.connectable}>
            {other(t)}
            {t.connectable ? "" : ` — ${t.reason ?? "not possible"}`}
          </option>
        ))}
      </select>
      {problem && (
        <div className="field-error" role="alert">
          {problem}
        </div>
      )}
    </div>
  );
}

/** The selected processor: its figures, its config form, restart and remove. */
export function ProcessorInspector({
  info,
  entry,
  onChanged,
  onRemoved,
  onProblem,
}: {
  info: ProcessorInfo;
  entry: RegistryEntry | undefined;
  onChanged: () => void;
  onRemoved: () => void;
  /** A refusal that came back after this inspector was closed (another node selected). */
  onProblem: (message: string) => void;
}) {
  const shown = useRef(true);
  useEffect(() => {
    shown.current = true;
    return () => {
      shown.current = false;
    };
  }, []);
  // Edits of live fields not yet in force (typed, or refused: shown with the server's message).
  const [liveEdits, setLiveEdits] = useState<Record<string, unknown>>({});
  // Edits of fields that are not live: applied together, with a restart.
  const [draft, setDraft] = useState<Record<string, unknown>>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [status, setStatus] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const live = new Set(entry?.live_fields ?? []);
  const config = (info.config ?? {}) as Record<string, unknown>;
  const values = { ...config, ...draft, ...liveEdits };

  // An applied edit is shown until the state read after it arrives (every second), so it never
  // flickers back to the old value meanwhile; then the state's value is shown, whatever it is
  // (the server may round it, another client may have changed it since).
  const applied = useRef<Set<string>>(new Set());
  const configText = JSON.stringify(config);
  useEffect(() => {
    const done = applied.current;
    if (done.size === 0) return;
    applied.current = new Set();
    const prune = (edits: Record<string, unknown>) => {
      if (!Object.keys(edits).some((f) => done.has(f))) return edits;
      return Object.fromEntries(Object.entries(edits).filter(([f]) => !done.has(f)));
    };
    setLiveEdits(prune);
    setDraft(prune);
  }, [configText]);
  const same = (field: string, value: unknown) => JSON.stringify(value) === JSON.stringify(config[field]);
  const without =
    (field: string) =>
    <T,>(edits: Record<string, T>): Record<string, T> => {
      const { [field]: _, ...rest } = edits;
      return rest;
    };

  const failed = (e: unknown, fields: string[]) => {
    if (!shown.current) {
      onProblem(`${info.id}: ${e instanceof Error ? e.message : String(e)}`);
    } else if (e instanceof ApiError && e.field) {
      setErrors((old) => ({ ...old, [e.field!.split(/[.[]/)[0]]: e.message }));
    } else if (e instanceof ApiError && e.code === "config_not_live" && fields.length === 1) {
      setErrors((old) => ({ ...old, [fields[0]]: e.message }));
    } else {
      setProblem(e instanceof Error ? e.message : String(e));
    }
  };

  const patch = async (change: Record<string, unknown>, restart: boolean) => {
    const fields = Object.keys(change);
    const bad = fields.find((f) => change[f] instanceof InvalidJson);
    if (bad) {
      setErrors((old) => ({ ...old, [bad]: "not valid JSON" }));
      return false;
    }
    setBusy(true);
    setProblem(null);
    try {
      const update = await api<{ changed: string[]; applied: string }>(
        "PATCH",
        `/api/processors/${enc(info.id)}/config${restart ? "?restart=true" : ""}`,
        change,
      );
      setStatus(
        update.changed.length === 0
          ? "nothing changed"
          : `${update.changed.join(", ")}: ${update.applied === "live" ? "applied live" : update.applied}`,
      );
      if (update.changed.length === 0) {
        // The state will not change: the edits are the config in force.
        for (const f of fields) {
          setLiveEdits(without(f));
          setDraft(without(f));
        }
      } else {
        for (const f of fields) applied.current.add(f);
      }
      onChanged();
      return true;
    } catch (e) {
      failed(e, fields);
      return false;
    } finally {
      setBusy(false);
    }
  };

  const onFieldChange = (field: string, value: unknown, commit: boolean) => {
    setErrors(without(field));
    if (live.has(field) && info.state === "running") {
      if (commit && same(field, value)) {
        // Back to the value in force: nothing to send.
        setLiveEdits(without(field));
        return;
      }
      setLiveEdits((old) => ({ ...old, [field]: value }));
      // Shown until the state after it arrives (see above), or with the server's message.
      if (commit) void patch({ [field]: value }, false);
    } else if (same(field, value)) {
      setDraft(without(field));
    } else {
      setDraft((old) => ({ ...old, [field]: value }));
    }
  };

  const drafted = Object.keys(draft).filter((f) => !same(f, draft[f]));
  const restart = async () => {
    setBusy(true);
    setProblem(null);
    try {
      await api("POST", `/api/processors/${enc(info.id)}/restart`, {});
      setStatus("restarted");
      onChanged();
    } catch (e) {
      setProblem(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };
  const remove = async () => {
    setBusy(true);
    try {
      await api("DELETE", `/api/processors/${enc(info.id)}`);
      onRemoved();
    } catch (e) {
      setProblem(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="inspector" aria-label={`inspector of ${info.id}`}>
      <h2>
        {info.id} <span className={`badge state-${info.state}`}>{info.state}</span>
      </h2>
      <p className="type">{info.processor_type}</p>
      {info.error && (
        <p className="node-error" role="status">
          {info.error}
        </p>
      )}
      <dl className="figures">
        <dt>frames in / out</dt>
        <dd>
          {fmt(info.rates.frames_in_per_s)} / {fmt(info.rates.frames_out_per_s)} per s
        </dd>
        <dt>busy</dt>
        <dd>{fmt(info.rates.busy_percent)} %</dd>
        <dt>process() p50 / p99</dt>
        <dd>
          {fmt(info.rates.process_p50_ms, 2)} / {fmt(info.rates.process_p99_ms, 2)} ms
        </dd>
        <dt>calls · errors · restarts</dt>
        <dd>
          {info.counters.process_calls} · {info.counters.errors} · {info.counters.restarts}
        </dd>
      </dl>
      <div className="buttons">
        <button type="button" onClick={() => void restart()} disabled={busy}>
          Restart
        </button>
        <ConfirmButton label="Remove" confirm="Remove for good?" onConfirm={() => void remove()} disabled={busy} />
      </div>
      {(info.inputs.length > 0 || info.outputs.length > 0) && (
        <>
          <h3>Links</h3>
          {info.inputs.map((p) => (
            <ConnectPort key={`in-${p.name}`} processor={info.id} port={p.name} side="in" onChanged={onChanged} />
          ))}
          {info.outputs.map((p) => (
            <ConnectPort key={`out-${p.name}`} processor={info.id} port={p.name} side="out" onChanged={onChanged} />
          ))}
        </>
      )}
      <h3>Config</h3>
      {entry ? (
        <SchemaForm
          schema={entry.config_schema}
          values={values}
          idPrefix={`cfg-${info.id}`}
          errors={errors}
          marks={Object.fromEntries(drafted.map((f) => [f, "not applied"]))}
          onChange={onFieldChange}
        />
      ) : (
        <pre>{JSON.stringify(config, null, 2)}</pre>
      )}
      {drafted.length > 0 && (
        <div className="buttons">
          <button type="button" onClick={() => setDraft({})} disabled={busy}>
            Revert
          </button>
          <button
            type="button"
            className="primary"
            disabled={busy}
            onClick={() => void patch(Object.fromEntries(drafted.map((f) => [f, draft[f]])), info.state === "running")}
          >
            {info.state === "running" ? "Apply and restart" : "Apply"}
          </button>
        </div>
      )}
      {status && (
        <p className="status" role="status">
          {status}
        </p>
      )}
      {problem && (
        <p className="error" role="alert">
          {problem}
        </p>
      )}
    </section>
  );
}

/** The selected link: its ends, options and figures, and remove. */
export function LinkInspector({ link, onRemoved }: { link: LinkInfo; onRemoved: () => void }) {
  const [problem, setProblem] = useState<string | null>(null);
  const remove = async () => {
    try {
      await api("DELETE", `/api/connections/${enc(link.id)}`);
      onRemoved();
    } catch (e) {
      setProblem(e instanceof Error ? e.message : String(e));
    }
  };
  return (
    <section className="inspector" aria-label={`inspector of link ${link.id}`}>
      <h2>Link {link.id}</h2>
      <p className="type">
        {link.from.processor}.{link.from.port} → {link.to.processor}.{link.to.port} ({link.frame_type})
      </p>
      <dl className="figures">
        <dt>capacity</dt>
        <dd>{link.capacity} frames</dd>
        <dt>read / dropped</dt>
        <dd>
          {fmt(link.rates.read_per_s)} / {fmt(link.rates.dropped_per_s)} per s
        </dd>
        <dt>written · read · dropped · queued</dt>
        <dd>
          {link.counters.written} · {link.counters.read} · {link.counters.dropped} · {link.counters.queued}
        </dd>
        <dt>latency p50 / p99</dt>
        <dd>
          {fmt(link.rates.latency_p50_ms, 2)} / {fmt(link.rates.latency_p99_ms, 2)} ms
        </dd>
      </dl>
      <div className="buttons">
        <button type="button" onClick={() => void remove()}>
          Remove link
        </button>
      </div>
      {problem && (
        <p className="error" role="alert">
          {problem}
        </p>
      )}
    </section>
  );
}
