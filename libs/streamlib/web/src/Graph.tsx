// The graph: processors as nodes with their typed ports, links as edges with live figures.
// Laid out by dagre (left to right) where the graph document places nothing; a node moved by
// hand keeps its place in the document's `ui` section. Dragging from a port lights up the
// ports it can be linked with (from the server's targets route) and greys the others, with the
// reason on hover. Delete (or Backspace) removes the selected link or processor.
import { createContext, useContext, useEffect, useMemo, useRef, useState } from "react";
import {
  Background,
  BaseEdge,
  Controls,
  EdgeLabelRenderer,
  Handle,
  Position,
  ReactFlow,
  getBezierPath,
  useReactFlow,
  useStore,
  type Connection,
  type Edge,
  type EdgeChange,
  type EdgeProps,
  type Node,
  type NodeChange,
  type NodeProps,
  type OnConnectStart,
} from "@xyflow/react";
import dagre from "@dagrejs/dagre";
import { api, type LinkInfo, type PortTarget, type ProcessorInfo, type RuntimeState, type UiPosition } from "./api";
import { Preview } from "./Preview";
import { fmt } from "./figures";

const NODE_WIDTH = 240;
/** Below this zoom, nodes are too small for a preview to say anything: none is opened. */
const PREVIEW_MIN_ZOOM = 0.3;

/** While a link is being dragged: the port it starts at (`out:p.port` or `in:p.port`), and
 * what each port on the other side would say (`null` until the server has answered). */
interface Connecting {
  origin: string;
  targets: Map<string, PortTarget> | null;
}

const ConnectingContext = createContext<Connecting | null>(null);

/** A port's handle, lit up or greyed (with the reason) while a link is dragged. */
function PortHandle({ processor, port, side, frameType }: { processor: string; port: string; side: "in" | "out"; frameType: string }) {
  const connecting = useContext(ConnectingContext);
  const key = `${processor}.${port}`;
  const sided = `${side}:${key}`;
  let state = "";
  let title = `${side === "in" ? "input" : "output"} ${key} (${frameType})`;
  if (connecting?.targets) {
    const target = connecting.targets.get(sided);
    if (sided === connecting.origin) state = " origin";
    else if (target?.connectable) state = " target-ok";
    else {
      state = " target-no";
      title = target?.reason ?? `an ${side === "in" ? "input" : "output"} cannot be linked with an ${side === "in" ? "input" : "output"}`;
    }
  } else if (connecting && sided === connecting.origin) state = " origin";
  return (
    <Handle
      type={side === "in" ? "target" : "source"}
      position={side === "in" ? Position.Left : Position.Right}
      id={port}
      className={`ft-${frameType}${state}`}
      title={title}
      aria-label={`${side === "in" ? "input" : "output"} ${key}`}
      data-port={sided}
    />
  );
}

type ProcessorNodeData = { info: ProcessorInfo };

function ProcessorNode({ data }: NodeProps<Node<ProcessorNodeData>>) {
  const p = data.info;
  const rows = Math.max(p.inputs.length, p.outputs.length);
  const preview = p.outputs[0];
  const zoomedIn = useStore((s) => s.transform[2] >= PREVIEW_MIN_ZOOM);
  return (
    <div className={`node state-${p.state}`} aria-label={`processor ${p.id}`} data-processor={p.id}>
      <div className="node-head">
        <strong>{p.id}</strong>
        <span className="type">{p.processor_type}</span>
      </div>
      <div className="node-state">
        <span className={`badge state-${p.state}`}>{p.state}</span>
        <span className="figures">
          {fmt(p.rates.frames_out_per_s || p.rates.frames_in_per_s)} fps · {fmt(p.rates.busy_percent)}% busy
        </span>
      </div>
      {p.error && <div className="node-error">{p.error}</div>}
      <div className="ports">
        {Array.from({ length: rows }, (_, i) => {
          const input = p.inputs[i];
          const output = p.outputs[i];
          return (
            <div className="port-row" key={i}>
              <span className="port in">
                {input && (
                  <>
                    <PortHandle processor={p.id} port={input.name} side="in" frameType={input.frame_type} />
                    {input.name} <em>{input.frame_type}</em>
                  </>
                )}
              </span>
              <span className="port out">
                {output && (
                  <>
                    <em>{output.frame_type}</em> {output.name}
                    <PortHandle processor={p.id} port={output.name} side="out" frameType={output.frame_type} />
                  </>
                )}
              </span>
            </div>
          );
        })}
      </div>
      {preview && p.state === "running" && zoomedIn && <Preview port={`${p.id}.${preview.name}`} frameType={preview.frame_type} />}
    </div>
  );
}

const nodeTypes = { processor: ProcessorNode };

type LinkEdgeData = { figures: string };

/** A link: its path, and its live figures in a label at the middle. */
function LinkEdge(props: EdgeProps<Edge<LinkEdgeData>>) {
  const [path, x, y] = getBezierPath(props);
  return (
    <>
      <BaseEdge id={props.id} path={path} interactionWidth={16} />
      <EdgeLabelRenderer>
        <div
          className={`edge-label${props.selected ? " selected" : ""}`}
          style={{ transform: `translate(-50%, -50%) translate(${x}px, ${y}px)` }}
          data-link={props.id}
        >
          {props.data?.figures}
        </div>
      </EdgeLabelRenderer>
    </>
  );
}

const edgeTypes = { link: LinkEdge };

function nodeHeight(p: ProcessorInfo): number {
  const rows = Math.max(p.inputs.length, p.outputs.length);
  const preview = p.outputs[0];
  const previewHeight = !preview ? 0 : preview.frame_type === "video" ? 120 : preview.frame_type === "audio" ? 40 : 70;
  return 70 + rows * 22 + previewHeight + (p.error ? 40 : 0);
}

/** Positions by dagre, left to right. */
function layout(processors: ProcessorInfo[], links: LinkInfo[]): Map<string, UiPosition> {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 30, ranksep: 190 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const p of processors) g.setNode(p.id, { width: NODE_WIDTH, height: nodeHeight(p) });
  for (const l of links) g.setEdge(l.from.processor, l.to.processor);
  dagre.layout(g);
  const at = new Map<string, UiPosition>();
  for (const p of processors) {
    const n = g.node(p.id);
    at.set(p.id, { x: n.x - NODE_WIDTH / 2, y: n.y - n.height / 2 });
  }
  return at;
}

/** The view fitted to the graph again whenever processors or links come or go (the layout
 * moves them; a new one is in view) and when the window is resized; never zoomed in past
 * 100 %. Figures refreshing leave the view alone. */
function FitOnChange({ shape }: { shape: string }) {
  const flow = useReactFlow();
  const fit = useRef(flow.fitView);
  fit.current = flow.fitView;
  useEffect(() => {
    // After the new nodes are drawn and measured.
    const frame = window.requestAnimationFrame(() => void fit.current({ maxZoom: 1, padding: 0.15 }));
    return () => window.cancelAnimationFrame(frame);
  }, [shape]);
  // And when the window is resized (the graph's box changes with it), once it settles.
  useEffect(() => {
    let timer: number | undefined;
    const resized = () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(() => void fit.current({ maxZoom: 1, padding: 0.15 }), 200);
    };
    window.addEventListener("resize", resized);
    return () => {
      window.removeEventListener("resize", resized);
      window.clearTimeout(timer);
    };
  }, []);
  return null;
}

/** What is selected: a processor or a link, by id. */
export type Selection = { kind: "processor"; id: string } | { kind: "link"; id: string } | null;

export interface GraphProps {
  state: RuntimeState;
  /** The graph document's `ui.positions`. */
  positions: Record<string, UiPosition>;
  selection: Selection;
  onSelect: (selection: Selection) => void;
  /** Nodes dragged to new places, to be kept in the document; settles once the document
   * has been read again (saved or not). */
  onMoved: (moved: Record<string, UiPosition>) => Promise<void>;
  /** A link dragged between two ports (`processor.port` each). */
  onConnect: (from: string, to: string) => void;
  /** Delete pressed with links and processors selected. */
  onDelete: (processors: string[], links: string[]) => void;
  /** Something went wrong (the targets could not be read). */
  onProblem: (message: string) => void;
}

/** The graph of `state`, live. */
export function Graph({ state, positions, selection, onSelect, onMoved, onConnect, onDelete, onProblem }: GraphProps) {
  const processors = useMemo(() => state.processors.filter((p) => !p.control_plane), [state]);
  // The graph's shape: laid out again only when it changes.
  const shape = processors.map((p) => p.id).join(",") + "|" + state.links.map((l) => l.id).join(",");
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const laid = useMemo(() => layout(processors, state.links), [shape]);
  // Where nodes are being moved, or were just moved and are being saved; otherwise the
  // document says where they are. A node being dragged stays under the pointer, and a move
  // being saved stays shown, whatever the document says meanwhile.
  const [dragged, setDragged] = useState<Map<string, UiPosition>>(new Map());
  const dragging = useRef<Set<string>>(new Set());
  const dragStart = useRef<Map<string, UiPosition>>(new Map());
  const saving = useRef<Set<string>>(new Set());
  const held = (id: string) => dragging.current.has(id) || saving.current.has(id);
  useEffect(() => {
    setDragged((old) => {
      const kept = [...old].filter(([id]) => held(id));
      return kept.length === old.size ? old : new Map(kept);
    });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [positions]);
  // A drag that ended without a stop (its node removed meanwhile) holds nothing.
  const ids = processors.map((p) => p.id).join(",");
  useEffect(() => {
    const present = new Set(ids.split(","));
    for (const id of dragging.current) if (!present.has(id)) dragging.current.delete(id);
  }, [ids]);
  /** Saves moves; once the document is read again, it says where they are. */
  const save = (moves: Record<string, UiPosition>) => {
    const moved = Object.keys(moves);
    for (const id of moved) saving.current.add(id);
    void onMoved(moves).finally(() => {
      for (const id of moved) saving.current.delete(id);
      setDragged((old) => new Map([...old].filter(([id]) => held(id))));
    });
  };
  // Each node's size as React Flow measured it: given back with every render (the nodes are
  // rebuilt from the state each second, and a node without its size would be hidden and its
  // links not drawn until it is measured again).
  const [sizes, setSizes] = useState<Map<string, { width: number; height: number }>>(new Map());
  const [connecting, setConnecting] = useState<Connecting | null>(null);
  // The drag a targets answer belongs to (an older drag's answer is ignored).
  const drag = useRef(0);

  const nodes: Node<ProcessorNodeData>[] = processors.map((p) => ({
    id: p.id,
    type: "processor",
    position: dragged.get(p.id) ?? (Object.hasOwn(positions, p.id) ? positions[p.id] : undefined) ?? laid.get(p.id) ?? { x: 0, y: 0 },
    data: { info: p },
    measured: sizes.get(p.id),
    selected: selection?.kind === "processor" && selection.id === p.id,
    ariaLabel: `processor ${p.id}, ${p.processor_type}, ${p.state}`,
  }));
  const edges: Edge<LinkEdgeData>[] = state.links
    .filter((l) => processors.some((p) => p.id === l.from.processor) && processors.some((p) => p.id === l.to.processor))
    .map((l) => ({
      id: l.id,
      type: "link",
      source: l.from.processor,
      sourceHandle: l.from.port,
      target: l.to.processor,
      targetHandle: l.to.port,
      selected: selection?.kind === "link" && selection.id === l.id,
      ariaLabel: `link ${l.from.processor}.${l.from.port} to ${l.to.processor}.${l.to.port}`,
      data: {
        figures: `${fmt(l.rates.read_per_s)} fps · ${l.counters.dropped} dropped · ${fmt(l.rates.latency_p50_ms, 2)} ms`,
      },
      className: `ft-${l.frame_type}${l.rates.dropped_per_s > 0 ? " dropping" : ""}`,
      animated: l.rates.read_per_s > 0,
    }));

  // Nodes moved with the arrow keys (no drag): saved together once the keys rest.
  const keyed = useRef<{ moves: Record<string, UiPosition>; timer?: number }>({ moves: {} });
  useEffect(() => () => window.clearTimeout(keyed.current.timer), []);
  const onNodesChange = (changes: NodeChange<Node<ProcessorNodeData>>[]) => {
    for (const c of changes) {
      if (c.type === "position" && c.position) {
        const at = c.position;
        setDragged((old) => new Map(old).set(c.id, at));
        if (!c.dragging && !dragging.current.has(c.id)) {
          const k = keyed.current;
          k.moves[c.id] = { x: Math.round(at.x), y: Math.round(at.y) };
          // Held while the keys are pressed: saved once they rest.
          saving.current.add(c.id);
          window.clearTimeout(k.timer);
          k.timer = window.setTimeout(() => {
            const moves = k.moves;
            k.moves = {};
            save(moves);
          }, 400);
        }
      }
      if (c.type === "select" && c.selected) onSelect({ kind: "processor", id: c.id });
      if (c.type === "dimensions" && c.dimensions) {
        const size = c.dimensions;
        setSizes((old) => new Map(old).set(c.id, size));
      }
    }
  };
  const onEdgesChange = (changes: EdgeChange<Edge<LinkEdgeData>>[]) => {
    for (const c of changes) if (c.type === "select" && c.selected) onSelect({ kind: "link", id: c.id });
  };
  const onConnectStart: OnConnectStart = (_, { nodeId, handleId, handleType }) => {
    if (!nodeId || !handleId) return;
    const attempt = ++drag.current;
    const fromOutput = handleType === "source";
    const origin = `${fromOutput ? "out" : "in"}:${nodeId}.${handleId}`;
    setConnecting({ origin, targets: null });
    api<PortTarget[]>("GET", `/api/processors/${encodeURIComponent(nodeId)}/ports/${encodeURIComponent(handleId)}/targets`)
      .then((targets) => {
        if (drag.current !== attempt) return;
        // Keyed by the other end: inputs when dragging from an output, and the reverse. (A
        // port whose input and output share its name gets targets both ways: only this
        // direction's.)
        const me = `${nodeId}.${handleId}`;
        const mine = targets.filter((t) => (fromOutput ? t.from === me : t.to === me));
        const other = (t: PortTarget) => (fromOutput ? `in:${t.to}` : `out:${t.from}`);
        setConnecting({ origin, targets: new Map(mine.map((t) => [other(t), t])) });
      })
      .catch((e) => {
        if (drag.current === attempt) onProblem(e instanceof Error ? e.message : String(e));
      });
  };
  const endConnect = () => {
    drag.current++;
    setConnecting(null);
  };
  const isValidConnection = (c: Edge | Connection) => {
    if (!connecting || !c.sourceHandle || !c.targetHandle) return false;
    // Not known yet: let the server decide (its refusal is shown).
    if (!connecting.targets) return true;
    const from = `out:${c.source}.${c.sourceHandle}`;
    const to = `in:${c.target}.${c.targetHandle}`;
    const other = from === connecting.origin ? to : from;
    return connecting.targets.get(other)?.connectable === true;
  };

  return (
    <div className="graph" data-testid="graph">
      <ConnectingContext.Provider value={connecting}>
        <ReactFlow
          nodes={nodes}
          edges={edges}
          nodeTypes={nodeTypes}
          edgeTypes={edgeTypes}
          onNodesChange={onNodesChange}
          onEdgesChange={onEdgesChange}
          onNodeDragStart={(_, node, moving) => {
            for (const n of moving.length ? moving : [node]) {
              dragging.current.add(n.id);
              dragStart.current.set(n.id, n.position);
            }
          }}
          onNodeDragStop={(_, node, moved) => {
            const out: Record<string, UiPosition> = {};
            for (const n of moved.length ? moved : [node]) {
              dragging.current.delete(n.id);
              const from = dragStart.current.get(n.id);
              dragStart.current.delete(n.id);
              // A click is not a move: nothing to save.
              if (from && from.x === n.position.x && from.y === n.position.y) continue;
              out[n.id] = { x: Math.round(n.position.x), y: Math.round(n.position.y) };
            }
            if (Object.keys(out).length === 0) return;
            // Shown where it will be saved (whole units) until the document says so.
            setDragged((old) => {
              const next = new Map(old);
              for (const [id, at] of Object.entries(out)) next.set(id, at);
              return next;
            });
            save(out);
          }}
          onPaneClick={() => onSelect(null)}
          onConnectStart={onConnectStart}
          onConnectEnd={endConnect}
          isValidConnection={isValidConnection}
          onConnect={(c) => {
            if (c.sourceHandle && c.targetHandle) onConnect(`${c.source}.${c.sourceHandle}`, `${c.target}.${c.targetHandle}`);
          }}
          deleteKeyCode={["Delete", "Backspace"]}
          onDelete={({ nodes: gone, edges: cut }) =>
            onDelete(
              gone.map((n) => n.id),
              cut.filter((e) => !gone.some((n) => n.id === e.source || n.id === e.target)).map((e) => e.id),
            )
          }
          onlyRenderVisibleElements={processors.length > 60}
          fitView
          fitViewOptions={{ maxZoom: 1, padding: 0.15 }}
          minZoom={0.1}
        >
          <FitOnChange shape={shape} />
          <Background />
          <Controls />
        </ReactFlow>
      </ConnectingContext.Provider>
    </div>
  );
}
