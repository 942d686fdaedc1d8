// The graph: processors as nodes with their typed ports, links as edges with live figures.
// Laid out by dagre (left to right) when the graph's shape changes; nodes can be moved.
import { useMemo, useState } from "react";
import {
  Background,
  BaseEdge,
  Controls,
  EdgeLabelRenderer,
  Handle,
  Position,
  ReactFlow,
  applyNodeChanges,
  getBezierPath,
  type Edge,
  type EdgeProps,
  type Node,
  type NodeChange,
  type NodeProps,
} from "@xyflow/react";
import dagre from "@dagrejs/dagre";
import type { LinkInfo, ProcessorInfo, RuntimeState } from "./api";
import { Preview } from "./Preview";

const NODE_WIDTH = 240;

function fmt(n: number | null | undefined, digits = 1): string {
  return n === null || n === undefined ? "–" : n.toFixed(digits);
}

type ProcessorNodeData = { info: ProcessorInfo; selected: boolean };

function ProcessorNode({ data }: NodeProps<Node<ProcessorNodeData>>) {
  const p = data.info;
  const rows = Math.max(p.inputs.length, p.outputs.length);
  const preview = p.outputs[0];
  return (
    <div className={`node state-${p.state}`} aria-label={`processor ${p.id}`}>
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
                    <Handle type="target" position={Position.Left} id={input.name} className={`ft-${input.frame_type}`} />
                    {input.name} <em>{input.frame_type}</em>
                  </>
                )}
              </span>
              <span className="port out">
                {output && (
                  <>
                    <em>{output.frame_type}</em> {output.name}
                    <Handle type="source" position={Position.Right} id={output.name} className={`ft-${output.frame_type}`} />
                  </>
                )}
              </span>
            </div>
          );
        })}
      </div>
      {preview && p.state === "running" && <Preview port={`${p.id}.${preview.name}`} frameType={preview.frame_type} />}
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
      <BaseEdge id={props.id} path={path} />
      <EdgeLabelRenderer>
        <div className="edge-label" style={{ transform: `translate(-50%, -50%) translate(${x}px, ${y}px)` }} data-link={props.id}>
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
function layout(processors: ProcessorInfo[], links: LinkInfo[]): Map<string, { x: number; y: number }> {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 30, ranksep: 190 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const p of processors) g.setNode(p.id, { width: NODE_WIDTH, height: nodeHeight(p) });
  for (const l of links) g.setEdge(l.from.processor, l.to.processor);
  dagre.layout(g);
  const at = new Map<string, { x: number; y: number }>();
  for (const p of processors) {
    const n = g.node(p.id);
    at.set(p.id, { x: n.x - NODE_WIDTH / 2, y: n.y - n.height / 2 });
  }
  return at;
}

/** The graph of `state`, live. */
export function Graph({ state }: { state: RuntimeState }) {
  const processors = useMemo(() => state.processors.filter((p) => !p.control_plane), [state]);
  // The graph's shape: laid out again only when it changes; a node moved by hand stays put.
  const shape = processors.map((p) => p.id).join(",") + "|" + state.links.map((l) => l.id).join(",");
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const laid = useMemo(() => layout(processors, state.links), [shape]);
  const [moved, setMoved] = useState<Map<string, { x: number; y: number }>>(new Map());

  const nodes: Node<ProcessorNodeData>[] = processors.map((p) => ({
    id: p.id,
    type: "processor",
    position: moved.get(p.id) ?? laid.get(p.id) ?? { x: 0, y: 0 },
    data: { info: p, selected: false },
  }));
  const edges: Edge<LinkEdgeData>[] = state.links.map((l) => ({
    id: l.id,
    type: "link",
    source: l.from.processor,
    sourceHandle: l.from.port,
    target: l.to.processor,
    targetHandle: l.to.port,
    data: {
      figures: `${fmt(l.rates.read_per_s)} fps · ${l.counters.dropped} dropped · ${fmt(l.rates.latency_p50_ms, 2)} ms`,
    },
    className: `ft-${l.frame_type}${l.rates.dropped_per_s > 0 ? " dropping" : ""}`,
    animated: l.rates.read_per_s > 0,
  }));
  const onNodesChange = (changes: NodeChange<Node<ProcessorNodeData>>[]) => {
    if (!changes.some((c) => c.type === "position" && c.position)) return;
    const after = applyNodeChanges(changes, nodes);
    setMoved((old) => {
      const next = new Map(old);
      for (const c of changes) {
        if (c.type === "position" && c.position) {
          const n = after.find((m) => m.id === c.id);
          if (n) next.set(n.id, n.position);
        }
      }
      return next;
    });
  };
  return (
    <div className="graph" data-testid="graph">
      <ReactFlow nodes={nodes} edges={edges} nodeTypes={nodeTypes} edgeTypes={edgeTypes} onNodesChange={onNodesChange} fitView minZoom={0.2}>
        <Background />
        <Controls />
      </ReactFlow>
    </div>
  );
}
