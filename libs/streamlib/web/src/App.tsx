// The dashboard: the runtime's status and controls, the graph live, and the event log.
import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError, api, setToken, socket, token, type RuntimeState } from "./api";
import { Graph } from "./Graph";

interface LoggedEvent {
  seq: number;
  type: string;
  text: string;
  time: string;
}

const MAX_LOGGED = 300;

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
  const [problem, setProblem] = useState<string | null>(null);
  const [needToken, setNeedToken] = useState(false);
  const [tokenRefused, setTokenRefused] = useState(false);
  const [events, setEvents] = useState<LoggedEvent[]>([]);
  const [filter, setFilter] = useState("");
  const [lagged, setLagged] = useState<number | null>(null);
  const [busy, setBusy] = useState(false);
  const [generation, setGeneration] = useState(0);
  // The event stream opens once the API has answered (with the token, when one is needed).
  const [connected, setConnected] = useState(false);
  const refreshing = useRef(false);

  const refresh = useCallback(async () => {
    if (refreshing.current) return;
    refreshing.current = true;
    try {
      setState(await api<RuntimeState>("GET", "/api/runtime/state"));
      setProblem(null);
      setConnected(true);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        setTokenRefused(token() !== null);
        setConnected(false);
        setNeedToken(true);
      } else {
        setProblem(e instanceof Error ? e.message : String(e));
      }
    } finally {
      refreshing.current = false;
    }
  }, []);

  // The figures every second; the shape at once when an event says it changed.
  useEffect(() => {
    if (needToken) return;
    void refresh();
    const every = window.setInterval(() => void refresh(), 1000);
    return () => window.clearInterval(every);
  }, [refresh, needToken, generation]);

  useEffect(() => {
    if (needToken || !connected) return;
    const ws = socket("/api/events");
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.type === "snapshot") return;
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
      void refresh();
    };
    return () => ws.close();
  }, [refresh, needToken, connected, generation]);

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
      </header>
      {problem && (
        <div className="problem" role="alert">
          {problem}
        </div>
      )}
      <main>
        {state ? <Graph state={state} /> : <div className="graph loading">connecting to the server…</div>}
        <aside className="events" aria-label="events">
          <h2>Events</h2>
          <input placeholder="filter" value={filter} onChange={(e) => setFilter(e.target.value)} aria-label="filter events" />
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
      </main>
    </div>
  );
}
