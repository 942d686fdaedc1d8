//! `streamlib ctl`: drive a running server over its HTTP API — list, add, remove, connect,
//! configure, start and stop, export and apply the graph, follow events, take a snapshot, tap a
//! port. Tables for people by default, `--json` for scripts; an API error prints the server's
//! message and exits 1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Map, Value, json};
use streamlib::core::GraphFile;
use streamlib::core::graph::{GraphFileWriter, GraphFormat};

use crate::client::{Body, Client, Connection, encode};
use crate::table::{Table, num};

/// `streamlib ctl`'s flags and subcommand.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    #[command(flatten)]
    connection: Connection,
    /// Print the API's JSON instead of tables and sentences.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CtlCommand {
    /// The processors: state, frames per second, busy time, latency of process(), errors.
    Ps,
    /// The links: queue, frames per second, drops, latency (frame age at read).
    Links,
    /// The processor types the server knows, with their ports.
    Types,
    /// The runtime's state and counts.
    State,
    /// Add a processor.
    Add {
        /// Its type, e.g. `TestPatternProcessor` (see `ctl types`).
        processor_type: String,
        /// Its id (generated from the type when absent).
        #[arg(long)]
        id: Option<String>,
        /// A config field, `key=value` (the value is JSON if it parses, else a string;
        /// `a.b=1` sets a nested field). Repeatable; applied over --config.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// The whole config as a JSON object.
        #[arg(long, value_name = "JSON")]
        config: Option<String>,
    },
    /// Remove a processor and its links.
    Rm {
        /// The processor's id.
        id: String,
    },
    /// Link an output port to an input port.
    Connect {
        /// The output, `processor.port`.
        from: String,
        /// The input, `processor.port`.
        to: String,
        /// Frames the link holds (1–1024; the frame type's default when absent).
        #[arg(long)]
        capacity: Option<usize>,
        /// When the link is full: `drop_oldest` (default) or `backpressure`.
        #[arg(long, value_name = "POLICY")]
        overflow: Option<String>,
    },
    /// Remove a link.
    Disconnect {
        /// The link's id (see `ctl links`).
        link: String,
    },
    /// Start the runtime.
    Start,
    /// Stop the runtime (the API keeps serving).
    Stop,
    /// Show a processor's config, or change fields of it: live fields apply in place; others
    /// need --restart.
    Config {
        /// The processor's id.
        id: String,
        /// A field to change, `key=value` (JSON if it parses, else a string). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Restart the processor when a field that is not live changes.
        #[arg(long)]
        restart: bool,
    },
    /// Restart a processor (links kept).
    Restart {
        /// The processor's id.
        id: String,
        /// Restart the processors downstream of it too.
        #[arg(long)]
        downstream: bool,
    },
    /// Export or apply the whole graph.
    #[command(subcommand)]
    Graph(GraphCommand),
    /// Follow the runtime's events (until Ctrl-C).
    Events {
        /// Only events of this type (repeatable), e.g. `processor_state_changed`.
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// Only events about this processor (repeatable).
        #[arg(long = "processor", value_name = "ID")]
        processors: Vec<String>,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Save what passes a port: a video frame as an image, an audio frame's levels or a data
    /// frame as JSON.
    Snapshot {
        /// The port, `processor.port`.
        port: String,
        /// The file to write (`-`: standard output).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Image format for a video port: jpeg or png (default: from the file's extension,
        /// else jpeg).
        #[arg(long)]
        format: Option<String>,
        /// Scale a video frame to this width.
        #[arg(long)]
        width: Option<u32>,
        /// Scale a video frame to this height.
        #[arg(long)]
        height: Option<u32>,
    },
    /// Print the frames passing a port, one JSON line each (until Ctrl-C or --limit).
    Tap {
        /// The port, `processor.port`.
        port: String,
        /// Stop after this many frames.
        #[arg(long)]
        limit: Option<u64>,
        /// Print one frame in this many.
        #[arg(long)]
        every: Option<u64>,
    },
}

#[derive(Debug, clap::Subcommand)]
enum GraphCommand {
    /// Write the running graph to FILE (JSON, or TOML by extension; an existing TOML file
    /// keeps its comments), or print it as JSON.
    Export {
        /// The file to write; standard output when absent.
        file: Option<PathBuf>,
    },
    /// Make the running graph match FILE: prints the plan, then applies it, all or nothing.
    Apply {
        /// The graph file (JSON, or TOML when its name ends in `.toml`).
        file: PathBuf,
        /// Print the plan only.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs a `ctl` subcommand.
pub fn ctl(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.connection)?;
    let json = args.json;
    let mut out = std::io::stdout().lock();
    match args.command {
        CtlCommand::Ps => {
            let list = client.get("/api/processors")?;
            if json {
                return print_json(&mut out, &list);
            }
            write!(out, "{}", processors_table(&list).render())?;
        }
        CtlCommand::Links => {
            let list = client.get("/api/connections")?;
            if json {
                return print_json(&mut out, &list);
            }
            write!(out, "{}", links_table(&list).render())?;
        }
        CtlCommand::Types => {
            let list = client.get("/api/registry")?;
            if json {
                return print_json(&mut out, &list);
            }
            let mut table = Table::new(&["TYPE", "INPUTS", "OUTPUTS", "DESCRIPTION"]);
            for t in array(&list) {
                let ports = |key: &str| {
                    let names: Vec<String> = array(&t[key])
                        .iter()
                        .map(|p| format!("{}:{}", text(&p["name"]), text(&p["frame_type"])))
                        .collect();
                    if names.is_empty() {
                        "-".to_string()
                    } else {
                        names.join(",")
                    }
                };
                table.row(vec![
                    text(&t["type_name"]),
                    ports("inputs"),
                    ports("outputs"),
                    text(&t["description"]),
                ]);
            }
            write!(out, "{}", table.render())?;
        }
        CtlCommand::State => {
            let state = client.get("/api/runtime/state")?;
            if json {
                return print_json(&mut out, &state);
            }
            writeln!(
                out,
                "{}: {} processors, {} links, {} bytes queued (revision {})",
                text(&state["status"]),
                state["processor_count"],
                state["link_count"],
                state["queued_bytes"],
                state["seq"]
            )?;
        }
        CtlCommand::Add {
            processor_type,
            id,
            set,
            config,
        } => {
            let mut body = json!({"processor_type": processor_type});
            let mut cfg = match config {
                Some(text) => serde_json::from_str::<Value>(&text)
                    .context("--config is not JSON")?
                    .as_object()
                    .cloned()
                    .context("--config must be a JSON object")?,
                None => Map::new(),
            };
            for pair in &set {
                set_field(&mut cfg, pair)?;
            }
            body["config"] = Value::Object(cfg);
            if let Some(id) = id {
                body["id"] = json!(id);
            }
            let answer = client.post("/api/processors", &body)?;
            if json {
                return print_json(&mut out, &answer);
            }
            writeln!(out, "{}", text(&answer["processor_id"]))?;
        }
        CtlCommand::Rm { id } => {
            client.delete(&format!("/api/processors/{}", encode(&id)))?;
            if json {
                return print_json(&mut out, &json!({"removed": id}));
            }
            writeln!(out, "removed {id}")?;
        }
        CtlCommand::Connect {
            from,
            to,
            capacity,
            overflow,
        } => {
            let (from_processor, from_port) = port_ref(&from)?;
            let (to_processor, to_port) = port_ref(&to)?;
            let mut body = json!({
                "from_processor": from_processor, "from_port": from_port,
                "to_processor": to_processor, "to_port": to_port,
            });
            if let Some(capacity) = capacity {
                body["capacity"] = json!(capacity);
            }
            if let Some(overflow) = overflow {
                body["overflow"] = json!(overflow);
            }
            let answer = client.post("/api/connections", &body)?;
            if json {
                return print_json(&mut out, &answer);
            }
            writeln!(out, "{}", text(&answer["link_id"]))?;
        }
        CtlCommand::Disconnect { link } => {
            client.delete(&format!("/api/connections/{}", encode(&link)))?;
            if json {
                return print_json(&mut out, &json!({"removed": link}));
            }
            writeln!(out, "removed {link}")?;
        }
        CtlCommand::Start | CtlCommand::Stop => {
            let verb = if matches!(args.command, CtlCommand::Start) {
                "start"
            } else {
                "stop"
            };
            let answer = client.post(&format!("/api/runtime/{verb}"), &json!({}))?;
            if json {
                return print_json(&mut out, &answer);
            }
            let state = client.get("/api/runtime/state")?;
            writeln!(out, "runtime {}", text(&state["status"]))?;
        }
        CtlCommand::Config { id, set, restart } => {
            let path = format!("/api/processors/{}/config", encode(&id));
            if set.is_empty() {
                if restart {
                    anyhow::bail!(
                        "--restart goes with --set; to restart as it is: ctl restart {id}"
                    );
                }
                let config = client.get(&path)?;
                return print_json(&mut out, &config);
            }
            let mut patch = Map::new();
            for pair in &set {
                set_field(&mut patch, pair)?;
            }
            let path = if restart {
                format!("{path}?restart=true")
            } else {
                path
            };
            let answer = client.patch(&path, &Value::Object(patch)).map_err(|e| {
                let not_live = e
                    .downcast_ref::<crate::client::ApiFailure>()
                    .is_some_and(|f| f.code == "config_not_live");
                if not_live {
                    e.context("add --restart to restart it with the new config")
                } else {
                    e
                }
            })?;
            if json {
                return print_json(&mut out, &answer);
            }
            let changed: Vec<String> = array(&answer["changed"]).iter().map(text).collect();
            let changed = if changed.is_empty() {
                "nothing changed".to_string()
            } else {
                format!("changed {}", changed.join(", "))
            };
            writeln!(out, "{id}: {changed} ({})", text(&answer["applied"]))?;
            serde_json::to_writer_pretty(&mut out, &answer["config"])?;
            writeln!(out)?;
        }
        CtlCommand::Restart { id, downstream } => {
            let query = if downstream { "?downstream=true" } else { "" };
            let answer = client.post(
                &format!("/api/processors/{}/restart{query}", encode(&id)),
                &json!({}),
            )?;
            if json {
                return print_json(&mut out, &answer);
            }
            let also = if downstream {
                " and what is downstream of it"
            } else {
                ""
            };
            writeln!(out, "restarted {id}{also}: {}", text(&answer["state"]))?;
        }
        CtlCommand::Graph(GraphCommand::Export { file }) => {
            let document = client.get("/api/graph")?;
            match file {
                None => return print_json(&mut out, &document),
                Some(file) => {
                    let graph: GraphFile = serde_json::from_value(document)
                        .context("the server's graph document did not parse")?;
                    let writer = GraphFileWriter::new(&file)?;
                    writer.write(&graph, &graph)?;
                    if json {
                        return print_json(
                            &mut out,
                            &json!({"written": file, "revision": graph.revision}),
                        );
                    }
                    writeln!(
                        out,
                        "wrote {} ({} processors, {} connections, revision {})",
                        file.display(),
                        graph.processors.len(),
                        graph.connections.len(),
                        graph.revision.map_or("-".to_string(), |r| r.to_string())
                    )?;
                }
            }
        }
        CtlCommand::Graph(GraphCommand::Apply { file, dry_run }) => {
            let graph = load_graph(&file)?;
            let body = serde_json::to_value(&graph)?;
            let path = if dry_run {
                "/api/graph?dry_run=true"
            } else {
                "/api/graph"
            };
            let plan = client.put(path, &body)?;
            if json {
                return print_json(&mut out, &plan);
            }
            write!(out, "{}", plan_text(&plan, dry_run))?;
        }
        CtlCommand::Events {
            types,
            processors,
            count,
        } => {
            drop(out);
            return follow_events(&client, &types, &processors, count, json);
        }
        CtlCommand::Snapshot {
            port,
            output,
            format,
            width,
            height,
        } => {
            drop(out);
            return snapshot(&client, &port, &output, format, width, height, json);
        }
        CtlCommand::Tap { port, limit, every } => {
            drop(out);
            return tap(&client, &port, limit, every);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(out: &mut impl Write, value: &Value) -> anyhow::Result<ExitCode> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// A JSON string as it is, anything else as JSON text (`-` for null).
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// `processor.port` → its two parts.
fn port_ref(text: &str) -> anyhow::Result<(&str, &str)> {
    match text.rsplit_once('.') {
        Some((p, port)) if !p.is_empty() && !port.is_empty() => Ok((p, port)),
        _ => anyhow::bail!("'{text}' is not a port: write processor.port, e.g. pattern.video"),
    }
}

/// Sets `key=value` in `config`: the value as JSON if it parses, else as a string; a dotted
/// key sets a nested field.
fn set_field(config: &mut Map<String, Value>, pair: &str) -> anyhow::Result<()> {
    let Some((key, raw)) = pair.split_once('=') else {
        anyhow::bail!("--set {pair}: write key=value, e.g. --set fps=25");
    };
    if key.is_empty() || key.split('.').any(str::is_empty) {
        anyhow::bail!("--set {pair}: the key is empty");
    }
    let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or(key);
    let mut at = config;
    for part in parts {
        let entry = at
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        at = entry.as_object_mut().with_context(|| {
            format!("--set {pair}: '{part}' is already set to a value that is not an object")
        })?;
    }
    at.insert(last.to_string(), value);
    Ok(())
}

fn load_graph(path: &Path) -> anyhow::Result<GraphFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read graph file {}", path.display()))?;
    GraphFile::parse(&text, GraphFormat::of(path))
        .with_context(|| format!("cannot load {}", path.display()))
}

/// The processors as a table.
pub fn processors_table(list: &Value) -> Table {
    let mut table = Table::new(&[
        "ID",
        "TYPE",
        "STATE",
        ">FPS IN",
        ">FPS OUT",
        ">BUSY %",
        ">P50 MS",
        ">P99 MS",
        ">ERRORS",
        ">RESTARTS",
    ]);
    for p in array(list) {
        let rates = &p["rates"];
        let mut state = text(&p["state"]);
        if let Some(error) = p["error"].as_str() {
            state = format!("{state}: {error}");
        }
        table.row(vec![
            text(&p["id"]),
            text(&p["processor_type"]),
            state,
            num(rates["frames_in_per_s"].as_f64(), 1),
            num(rates["frames_out_per_s"].as_f64(), 1),
            num(rates["busy_percent"].as_f64(), 1),
            num(rates["process_p50_ms"].as_f64(), 2),
            num(rates["process_p99_ms"].as_f64(), 2),
            text(&p["counters"]["errors"]),
            text(&p["counters"]["restarts"]),
        ]);
    }
    table
}

/// The links as a table.
pub fn links_table(list: &Value) -> Table {
    let mut table = Table::new(&[
        "ID",
        "FROM",
        "TO",
        "TYPE",
        ">QUEUE",
        ">FPS",
        ">DROPPED",
        ">DROP/S",
        ">LAT P50 MS",
        ">LAT P99 MS",
    ]);
    for l in array(list) {
        let (rates, counters) = (&l["rates"], &l["counters"]);
        table.row(vec![
            text(&l["id"]),
            format!(
                "{}.{}",
                text(&l["from"]["processor"]),
                text(&l["from"]["port"])
            ),
            format!("{}.{}", text(&l["to"]["processor"]), text(&l["to"]["port"])),
            text(&l["frame_type"]),
            format!("{}/{}", text(&counters["queued"]), text(&l["capacity"])),
            num(rates["read_per_s"].as_f64(), 1),
            text(&counters["dropped"]),
            num(rates["dropped_per_s"].as_f64(), 1),
            num(rates["latency_p50_ms"].as_f64(), 3),
            num(rates["latency_p99_ms"].as_f64(), 3),
        ]);
    }
    table
}

/// A graph apply's plan, for people.
fn plan_text(plan: &Value, dry_run: bool) -> String {
    let actions = array(&plan["actions"]);
    let mut out = String::new();
    if actions.is_empty() {
        out.push_str("nothing to change: the running graph already matches\n");
        return out;
    }
    let mut table = Table::new(&["ACTION", "TARGET", "WHY"]);
    for a in actions {
        table.row(vec![
            text(&a["action"]),
            text(&a["target"]),
            a["reason"].as_str().unwrap_or("").to_string(),
        ]);
    }
    out.push_str(&table.render());
    let revision = text(&plan["revision"]);
    if dry_run {
        out.push_str(&format!(
            "dry run: {} change(s) planned, nothing applied (graph revision {revision})\n",
            actions.len()
        ));
    } else {
        out.push_str(&format!(
            "applied {} change(s); graph revision {revision}\n",
            actions.len()
        ));
    }
    out
}

fn follow_events(
    client: &Client,
    types: &[String],
    processors: &[String],
    count: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut query = Vec::new();
    if !types.is_empty() {
        query.push(format!("types={}", encode(&types.join(","))));
    }
    if !processors.is_empty() {
        query.push(format!("processors={}", encode(&processors.join(","))));
    }
    let path = format!("/api/events?{}", query.join("&"));
    let mut socket = client.websocket(&path)?;
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    loop {
        if count.is_some_and(|n| seen >= n) {
            let _ = socket.close(None);
            return Ok(ExitCode::SUCCESS);
        }
        let message = match socket.read() {
            Ok(tungstenite::Message::Text(text)) => text,
            Ok(tungstenite::Message::Close(frame)) => {
                let why = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                eprintln!("the server closed the event stream {why}");
                return Ok(ExitCode::SUCCESS);
            }
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => return Ok(ExitCode::SUCCESS),
            Err(e) => anyhow::bail!("the event stream failed: {e}"),
        };
        let event: Value =
            serde_json::from_str(message.as_str()).context("an event is not JSON")?;
        // The first message (and one after a lag) is the state the events follow from.
        if event["type"] == "snapshot" {
            if !json {
                let state = &event["state"];
                writeln!(
                    out,
                    "# following events after seq {}: runtime {}, {} processors, {} links",
                    event["seq"],
                    text(&state["status"]),
                    state["processor_count"],
                    state["link_count"]
                )?;
                out.flush()?;
            }
            continue;
        }
        if json {
            writeln!(out, "{message}")?;
        } else {
            writeln!(out, "{}", event_line(&event))?;
        }
        out.flush()?;
        if event["type"] != "lagged" && event["type"] != "error" {
            seen += 1;
        }
    }
}

/// One event as a line: sequence number, type, and its other fields as `key=value`.
fn event_line(event: &Value) -> String {
    let mut line = format!("{:>6} {}", text(&event["seq"]), text(&event["type"]));
    if let Some(fields) = event.as_object() {
        for (key, value) in fields {
            if !matches!(key.as_str(), "seq" | "type" | "timestamp_ms") {
                line.push_str(&format!(" {key}={}", text(value)));
            }
        }
    }
    line
}

fn snapshot(
    client: &Client,
    port: &str,
    output: &Path,
    format: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (processor, port_name) = port_ref(port)?;
    let format = format.or_else(|| {
        match output
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
        {
            Some(e) if e == "png" => Some("png".to_string()),
            Some(e) if e == "jpg" || e == "jpeg" => Some("jpeg".to_string()),
            _ => None,
        }
    });
    let mut query = Vec::new();
    for (key, value) in [
        ("format", format),
        ("width", width.map(|w| w.to_string())),
        ("height", height.map(|h| h.to_string())),
    ] {
        if let Some(value) = value {
            query.push(format!("{key}={}", encode(&value)));
        }
    }
    let mut path = format!(
        "/api/processors/{}/ports/{}/snapshot",
        encode(processor),
        encode(port_name)
    );
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let (bytes, what) = match client.request("GET", &path, None)? {
        Body::Json(value) => {
            let mut text = serde_json::to_vec_pretty(&value)?;
            text.push(b'\n');
            (text, format!("{} frame", self::text(&value["frame_type"])))
        }
        Body::Bytes {
            content_type,
            bytes,
            frame_number,
        } => {
            let frame = frame_number.map_or(String::new(), |n| format!(", frame {n}"));
            (bytes, format!("{content_type}{frame}"))
        }
    };
    if output == Path::new("-") {
        std::io::stdout().lock().write_all(&bytes)?;
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::write(output, &bytes).with_context(|| format!("cannot write {}", output.display()))?;
    let mut out = std::io::stdout().lock();
    if json {
        return print_json(
            &mut out,
            &json!({"written": output, "bytes": bytes.len(), "content": what}),
        );
    }
    writeln!(
        out,
        "wrote {} ({} bytes, {what})",
        output.display(),
        bytes.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn tap(
    client: &Client,
    port: &str,
    limit: Option<u64>,
    every: Option<u64>,
) -> anyhow::Result<ExitCode> {
    port_ref(port)?;
    let mut path = format!("/api/tap?port={}", encode(port));
    if let Some(limit) = limit {
        path.push_str(&format!("&limit={limit}"));
    }
    if let Some(every) = every {
        path.push_str(&format!("&every={every}"));
    }
    let mut socket = client.websocket(&path)?;
    let mut out = std::io::stdout().lock();
    loop {
        match socket.read() {
            Ok(tungstenite::Message::Text(text)) => {
                let message: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                match message["type"].as_str() {
                    Some("tap") => {}
                    Some("end") => {
                        eprintln!("{}", self::text(&message["message"]));
                        return Ok(ExitCode::SUCCESS);
                    }
                    _ => {
                        writeln!(out, "{text}")?;
                        out.flush()?;
                    }
                }
            }
            Ok(tungstenite::Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => {
                return Ok(ExitCode::SUCCESS);
            }
            Ok(_) => {}
            Err(e) => anyhow::bail!("the tap failed: {e}"),
        }
    }
}
