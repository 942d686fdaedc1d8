// The dashboard: the runtime's status and controls, the graph live, and the event log.
import { useCallback, useEffect, useRef, useState } from "react";
import {
  ApiError,
  api,
  link,
  setToken,
  socket,
  token,
  type GraphDoc,
  type RegistryEntry,
  type RuntimeState,
  type UiPosition,
} from "./api";
import { AddDialog } from "./AddDialog";
import { Graph, type Selection } from "./Graph";
import { ImportDialog } from "./ImportDialog";
import { LinkInspector, ProcessorInspector } from "./Inspector";
import { Palette } from "./Palette";

interface LoggedEvent {
  seq: number;
  type: string;
  text: string;
  time: string;
}

const MAX_LOGGED = 300;
/** Events that change where processors are drawn (the graph document is read again). */
const RELAYOUT = new Set(["layout_changed", "processor_added", "processor_removed"]);
/** How long to wait before opening the event stream again after it closed. */
const RECONNECT_MS = [500, 1000, 2000, 5000];

function TokenPrompt({ onDone, failed }: { onDone: () => void; failed: boolean }) {
  const [value, setValue] = useState("");
  return (
    <form
      className="token"
      onSubmit={(e) => {
        e.preventDefault();
        setToken(value.trim());
        onDone();
      }}
    >
      <h1>streamlib</h1>
      <p>This server needs its API token (kept for this tab only).</p>
      {failed && <p className="error" role="alert">That token was refused.</p>}
      <label>
        Token <input type="password" autoFocus value={value} onChange={(e) => setValue(e.target.value)} aria-label="API token" />
      </label>
      <button type="submit">Connect</button>
    </form>
  );
}

export function App() {
  const [state, setState] = useState<RuntimeState | null>(null);
  // What a change made from this page ran into: shown until dismissed.
  const [problem, setProblem] = useState<string | null>(null);
  // Why the server cannot be read now: cleared by the next answer.
  const [offline, setOffline] = useState<string | null>(null);
  const [needToken, setNeedToken] = useState(false);
  const [tokenRefused, setTokenRefused] = useState(false);
  const [events, setEvents] = useState<LoggedEvent[]>([]);
  const [filter, setFilter] = useState("");
  const [lagged, setLagged] = useState<number | null>(null);
  const [busy, setBusy] = useState(false);
  const [generation, setGeneration] = useState(0);
  // The event stream opens once the API has answered (with the token, when one is needed).
  const [connected, setConnected] = useState(false);
  const [registry, setRegistry] = useState<RegistryEntry[]>([]);
  const [positions, setPositions] = useState<Record<string, UiPosition>>({});
  const [selection, setSelection] = useState<Selection>(null);
  const [adding, setAdding] = useState<RegistryEntry | null>(null);
  // The document being imported, numbered (each import is a dialog of its own).
  const [importing, setImporting] = useState<{ name: string; doc: GraphDoc; n: number } | null>(null);
  const imports = useRef(0);
  const [eventsDown, setEventsDown] = useState(false);
  const fileInput = useRef<HTMLInputElement>(null);
  const refreshing = useRef(false);

  const refresh = useCallback(async () => {
    if (refreshing.current) return;
    refreshing.current = true;
    try {
      setState(await api<RuntimeState>("GET", "/api/runtime/state"));
      setOffline(null);
      setConnected(true);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        setTokenRefused(token() !== null);
        setConnected(false);
        setNeedToken(true);
      } else {
        setOffline(e instanceof Error ? e.message : String(e));
      }
    } finally {
      refreshing.current = false;
    }
  }, []);

  const fail = (e: unknown) => setProblem(e instanceof Error ? e.message : String(e));

  const unreadable = (e: unknown) => setOffline(e instanceof Error ? e.message : String(e));

  /** The drawing (`ui.positions` of the graph document). */
  const readPositions = useCallback(async () => {
    try {
      const doc = await api<GraphDoc>("GET", "/api/graph");
      setPositions(doc.ui?.positions ?? {});
    } catch (e) {
      unreadable(e);
    }
  }, []);

  useEffect(() => {
    if (!connected) return;
    api<RegistryEntry[]>("GET", "/api/registry").then(setRegistry, unreadable);
    void readPositions();
  }, [connected, readPositions]);

  // The figures every second; the shape at once when an event says it changed.
  useEffect(() => {
    if (needToken) return;
    void refresh();
    const every = window.setInterval(() => void refresh(), 1000);
    return () => window.clearInterval(every);
  }, [refresh, needToken, generation]);

  // The event stream, opened again (after a pause that grows) whenever it closes.
  useEffect(() => {
    if (needToken || !connected) return;
    let ws: WebSocket | null = null;
    let timer: number | undefined;
    let failures = 0;
    let closed = false;
    const open = () => {
      ws = socket("/api/events");
      ws.onopen = () => {
        failures = 0;
        setEventsDown(false);
        setLagged(null);
      };
      ws.onclose = () => {
        if (closed) return;
        setEventsDown(true);
        timer = window.setTimeout(open, RECONNECT_MS[Math.min(failures++, RECONNECT_MS.length - 1)]);
      };
      ws.onmessage = (m) => {
        const msg = JSON.parse(m.data);
        if (msg.type === "snapshot") {
          // (Re)connected, or caught up after a lag: whatever happened meanwhile is in the
          // state and the document.
          void refresh();
          void readPositions();
          return;
        }
        if (msg.type === "lagged") {
          setLagged(msg.missed);
          return;
        }
        if (msg.type === "error") return;
        const { seq, type, timestamp_ms, ...rest } = msg;
        const text = Object.entries(rest)
          .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
          .join(" ");
        const time = new Date(timestamp_ms).toLocaleTimeString();
        setEvents((old) => [{ seq, type, text, time }, ...old].slice(0, MAX_LOGGED));
        if (RELAYOUT.has(type)) void readPositions();
        void refresh();
      };
    };
    open();
    return () => {
      closed = true;
      window.clearTimeout(timer);
      ws?.close();
    };
  }, [refresh, readPositions, needToken, connected, generation]);

  const control = async (verb: "start" | "stop") => {
    setBusy(true);
    try {
      setState(await api<RuntimeState>("POST", `/api/runtime/${verb}`, {}));
    } catch (e) {
      setProblem(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };

  const moved = async (at: Record<string, UiPosition>) => {
    try {
      await api("PATCH", "/api/graph/ui", { positions: at });
    } catch (e) {
      fail(e);
    }
    await readPositions();
  };

  const connect = async (from: string, to: string) => {
    try {
      await link(from, to);
      void refresh();
    } catch (e) {
      fail(e);
    }
  };

  const remove = async (processors: string[], links: string[]) => {
    try {
      for (const id of links) await api("DELETE", `/api/connections/${encodeURIComponent(id)}`);
      for (const id of processors) await api("DELETE", `/api/processors/${encodeURIComponent(id)}`);
      setSelection(null);
      void refresh();
    } catch (e) {
      fail(e);
    }
  };

  const importFile = async (file: File) => {
    try {
      const text = await file.text();
      const hint = `export one with "Export graph" or \`streamlib ctl graph export FILE.json\``;
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch (e) {
        throw new Error(`${file.name} is not JSON (${e instanceof Error ? e.message : e}); ${hint}`);
      }
      // Anything but an object would plan as an empty graph (removing everything).
      if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
        throw new Error(`${file.name} is not a graph document (a JSON object with "processors" and "connections"); ${hint}`);
      }
      setImporting({ name: file.name, doc: doc as GraphDoc, n: ++imports.current });
    } catch (e) {
      fail(e);
    }
  };

  const exportGraph = async () => {
    try {
      const doc = await api("GET", "/api/graph");
      const blob = new Blob([JSON.stringify(doc, null, 2) + "\n"], { type: "application/json" });
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = "graph.json";
      a.click();
      URL.revokeObjectURL(a.href);
    } catch (e) {
      setProblem(e instanceof Error ? e.message : String(e));
    }
  };

  if (needToken) {
    return (
      <TokenPrompt
        failed={tokenRefused}
        onDone={() => {
          setNeedToken(false);
          setGeneration((g) => g + 1);
        }}
      />
    );
  }

  const shown = filter.trim()
    ? events.filter((e) => `${e.type} ${e.text}`.toLowerCase().includes(filter.trim().toLowerCase()))
    : events;
  const running = state?.status === "running";
  const selectedProcessor =
    selection?.kind === "processor" ? state?.processors.find((p) => p.id === selection.id) : undefined;
  const selectedLink = selection?.kind === "link" ? state?.links.find((l) => l.id === selection.id) : undefined;
  return (
    <div className="app">
      <header>
        <h1>streamlib</h1>
        <span className={`badge status-${state?.status ?? "unknown"}`} data-testid="status">
          {state?.status ?? "connecting…"}
        </span>
        {state && (
          <span className="counts">
            {state.processors.filter((p) => !p.control_plane).length} processors · {state.link_count} links
          </span>
        )}
        <span className="spacer" />
        <button type="button" onClick={() => void control("start")} disabled={busy || running}>
          Start
        </button>
        <button type="button" onClick={() => void control("stop")} disabled={busy || !running}>
          Stop
        </button>
        <button type="button" onClick={() => void exportGraph()}>
          Export graph
        </button>
        <button type="button" onClick={() => fileInput.current?.click()}>
          Import graph…
        </button>
        <input
          ref={fileInput}
          type="file"
          accept=".json,application/json"
          hidden
          aria-label="graph document to import"
          data-testid="import-file"
          onChange={(e) => {
            const file = e.target.files?.[0];
            e.target.value = "";
            if (file) void importFile(file);
          }}
        />
      </header>
      {offline && (
        <div className="problem" role="alert">
          The server cannot be read: {offline}
        </div>
      )}
      {problem && (
        <div className="problem" role="alert">
          {problem}
          <button type="button" className="dismiss" onClick={() => setProblem(null)} aria-label="dismiss">
            ×
          </button>
        </div>
      )}
      <main>
        <Palette registry={registry} onPick={setAdding} />
        {state ? (
          <Graph
            state={state}
            positions={positions}
            selection={selection}
            onSelect={setSelection}
            onMoved={moved}
            onConnect={(from, to) => void connect(from, to)}
            onDelete={(processors, links) => void remove(processors, links)}
            onProblem={setProblem}
          />
        ) : (
          <div className="graph loading">connecting to the server…</div>
        )}
        <div className="side">
          {selectedProcessor && (
            <ProcessorInspector
              key={`${selectedProcessor.id}:${selectedProcessor.processor_type}`}
              info={selectedProcessor}
              entry={registry.find((r) => r.type_name === selectedProcessor.processor_type)}
              onChanged={() => void refresh()}
              onProblem={setProblem}
              onRemoved={() => {
                setSelection(null);
                void refresh();
              }}
            />
          )}
          {selectedLink && (
            <LinkInspector
              key={selectedLink.id}
              link={selectedLink}
              onRemoved={() => {
                setSelection(null);
                void refresh();
              }}
            />
          )}
          <aside className="events" aria-label="events">
            <h2>Events</h2>
            <input placeholder="filter" value={filter} onChange={(e) => setFilter(e.target.value)} aria-label="filter events" />
            {eventsDown && (
              <p className="lagged" role="status">
                The event stream is down; reconnecting…
              </p>
            )}
            {lagged !== null && (
              <p className="lagged" role="status">
                This page fell behind: {lagged} event(s) were not shown.
              </p>
            )}
            <ol>
              {shown.map((e) => (
                <li key={e.seq}>
                  <time>{e.time}</time> <strong>{e.type}</strong> {e.text}
                </li>
              ))}
            </ol>
          </aside>
        </div>
      </main>
      {adding && (
        <AddDialog
          key={adding.type_name}
          entry={adding}
          onDone={(id) => {
            setAdding(null);
            if (id) {
              setSelection({ kind: "processor", id });
              void refresh();
            }
          }}
        />
      )}
      {importing && (
        <ImportDialog
          key={importing.n}
          name={importing.name}
          doc={importing.doc}
          onDone={() => {
            setImporting(null);
            void refresh();
            void readPositions();
          }}
        />
      )}
    </div>
  );
}
