// The server's HTTP and WebSocket API, as the page uses it. The token (when the server has
// one) is asked once and kept for the tab's session (sessionStorage), never put in the page's
// URL; HTTP sends it as a bearer header, WebSockets (which cannot set headers) as `?token=`.

const TOKEN_KEY = "streamlib.token";

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value: string | null): void {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An error answer of the API: `{"error": {"code", "message", "problems"?}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly problems: { place: string; message: string }[] = [],
    /** For `invalid_config`: the config field at fault. */
    readonly field: string | null = null,
  ) {
    super(message);
  }
}

export async function api<T = unknown>(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<T> {
  const t = token();
  const response = await fetch(path, {
    method,
    headers: {
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(t ? { authorization: `Bearer ${t}` } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const e = json?.error ?? {};
    throw new ApiError(
      response.status,
      e.code ?? "http_error",
      e.message ?? `${method} ${path}: ${response.status}`,
      e.problems ?? [],
      e.field ?? null,
    );
  }
  return json as T;
}

/** Links output `from` to input `to` (each `processor.port`): `POST /api/connections`. */
export async function link(from: string, to: string): Promise<void> {
  const split = (end: string) => {
    const dot = end.indexOf(".");
    return [end.slice(0, dot), end.slice(dot + 1)];
  };
  const [from_processor, from_port] = split(from);
  const [to_processor, to_port] = split(to);
  await api("POST", "/api/connections", { from_processor, from_port, to_processor, to_port });
}

/** A WebSocket on one of the API's routes (`path` with its query), with the token. */
export function socket(path: string): WebSocket {
  const t = token();
  const url = new URL(path, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (t) url.searchParams.set("token", t);
  return new WebSocket(url);
}

// The shapes the page reads (a subset of the API's; see GET /api/openapi.json).

export interface PortInfo {
  name: string;
  frame_type: "video" | "audio" | "data";
  description: string;
  links: string[];
}

export interface ProcessorInfo {
  id: string;
  processor_type: string;
  state: string;
  error?: string | null;
  config?: Record<string, unknown>;
  control_plane: boolean;
  inputs: PortInfo[];
  outputs: PortInfo[];
  counters: { process_calls: number; errors: number; restarts: number };
  rates: {
    frames_in_per_s: number;
    frames_out_per_s: number;
    busy_percent: number;
    process_p50_ms: number | null;
    process_p99_ms: number | null;
  };
}

export interface LinkInfo {
  id: string;
  from: { processor: string; port: string };
  to: { processor: string; port: string };
  frame_type: string;
  capacity: number;
  counters: { written: number; read: number; dropped: number; queued: number };
  rates: {
    read_per_s: number;
    dropped_per_s: number;
    latency_p50_ms: number | null;
    latency_p99_ms: number | null;
  };
}

export interface RuntimeState {
  status: string;
  seq: number;
  processor_count: number;
  link_count: number;
  processors: ProcessorInfo[];
  links: LinkInfo[];
}

/** A JSON Schema, as the registry gives a config's (draft 2020-12, from schemars). */
export interface Schema {
  type?: string | string[];
  description?: string;
  title?: string;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  format?: string;
  enum?: unknown[];
  const?: unknown;
  oneOf?: Schema[];
  anyOf?: Schema[];
  $ref?: string;
  items?: Schema;
  properties?: Record<string, Schema>;
  $defs?: Record<string, Schema>;
  writeOnly?: boolean;
  "x-streamlib-live"?: boolean;
}

export interface PortSpec {
  name: string;
  frame_type: "video" | "audio" | "data";
  description: string;
}

/** One processor type of `GET /api/registry`. */
export interface RegistryEntry {
  type_name: string;
  description: string;
  control_plane: boolean;
  inputs: PortSpec[];
  outputs: PortSpec[];
  config_schema: Schema;
  live_fields: string[];
}

/** One entry of `GET /api/processors/{id}/ports/{port}/targets`. */
export interface PortTarget {
  from: string;
  to: string;
  frame_type: string;
  connectable: boolean;
  reason?: string;
}

export interface UiPosition {
  x: number;
  y: number;
}

/** The graph document (`GET /api/graph`). */
export interface GraphDoc {
  revision?: number;
  processors: { id: string; type: string; config?: unknown }[];
  connections: { from: string; to: string }[];
  ui?: { positions?: Record<string, UiPosition> };
}

export interface PlanAction {
  action: string;
  target: string;
  reason: string;
  changed?: string[];
}

/** The answer to `PUT /api/graph`. */
export interface GraphApplied {
  dry_run: boolean;
  revision: number;
  actions: PlanAction[];
}
