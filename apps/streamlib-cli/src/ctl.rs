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
use streamlib::core::graph::GraphFileWriter;

use crate::load_graph;

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

/// What a full link does (`--overflow`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Overflow {
    /// Drop the oldest queued frame: the writer never waits (real-time default).
    #[value(name = "drop_oldest")]
    DropOldest,
    /// The writer waits for room: nothing is lost.
    Backpressure,
}

/// How the reader takes frames (`--read-mode`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReadMode {
    /// The newest frame, skipping older ones (video's default).
    Latest,
    /// Every frame in order (audio's and data's default).
    #[value(name = "in_order")]
    InOrder,
}

/// A snapshot image's format (`--format`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SnapshotFormat {
    /// JPEG, quality 85.
    #[value(alias = "jpg")]
    Jpeg,
    /// PNG: exact pixels.
    Png,
}

#[derive(Debug, clap::Subcommand)]
enum CtlCommand {
    /// The processors: state, frames per second, busy time, latency of process(), errors.
    Ps,
    /// One processor in full: config, state, ports and their links, counters, rates, files.
    Get {
        /// The processor's id.
        id: String,
    },
    /// The ports a port could be linked with, or why not.
    Targets {
        /// The port, `processor.port`.
        port: String,
    },
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
        /// When the link is full (default: drop_oldest).
        #[arg(long, value_enum, ignore_case = true)]
        overflow: Option<Overflow>,
        /// How the reader takes frames (default: the frame type's).
        #[arg(long, value_enum, ignore_case = true)]
        read_mode: Option<ReadMode>,
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
    /// Restart a processor (links kept; a failed one comes back).
    Restart {
        /// The processor's id.
        id: String,
        /// Also restart the processors downstream whose stream ended because this one failed.
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
        /// Stop after this many events (0: connect, then exit — a check of the URL and token).
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
        /// Image format for a video port (default: from the file's extension, else jpeg).
        #[arg(long, value_enum, ignore_case = true)]
        format: Option<SnapshotFormat>,
        /// Scale a video frame to this width.
        #[arg(long)]
        width: Option<u32>,
        /// Scale a video frame to this height.
        #[arg(long)]
        height: Option<u32>,
        /// Wait up to this long for a frame to pass, in milliseconds (1–10000).
        #[arg(long, value_name = "MS", default_value_t = 2000)]
        wait_ms: u64,
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
    /// Write the running graph to FILE as `serve --save` would (defaults left out, no
    /// revision; JSON, or TOML by extension, an existing TOML file keeping its comments), or
    /// print the API's document (with its revision) as JSON.
    Export {
        /// The file to write; standard output when absent.
        file: Option<PathBuf>,
    },
    /// Make the running graph match FILE, all or nothing, and print what was done.
    Apply {
        /// The graph file (JSON, or TOML when its name ends in `.toml`).
        file: PathBuf,
        /// Print the plan only: what would be added, removed, reconfigured, restarted.
        #[arg(long)]
        dry_run: bool,
        /// Apply even if the graph changed since FILE's `revision` (when it has one).
        #[arg(long)]
        force: bool,
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
        CtlCommand::Get { id } => {
            let info = client.get(&format!("/api/processors/{}", encode(&id)))?;
            return print_json(&mut out, &info);
        }
        CtlCommand::Targets { port } => {
            let (processor, port_name) = port_ref(&port)?;
            let list = client.get(&format!(
                "/api/processors/{}/ports/{}/targets",
                encode(processor),
                encode(port_name)
            ))?;
            if json {
                return print_json(&mut out, &list);
            }
            let mut table = Table::new(&["FROM", "TO", "TYPE", "LINKABLE"]);
            for t in array(&list) {
                let linkable = match t["reason"].as_str() {
                    Some(reason) if t["connectable"] != true => format!("no: {reason}"),
                    _ => "yes".to_string(),
                };
                table.row(vec![
                    text(&t["from"]),
                    text(&t["to"]),
                    text(&t["frame_type"]),
                    linkable,
                ]);
            }
            write!(out, "{}", table.render())?;
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
                "{}: {} processors, {} links, {} bytes queued (event seq {})",
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
            read_mode,
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
                body["overflow"] = json!(match overflow {
                    Overflow::DropOldest => "drop_oldest",
                    Overflow::Backpressure => "backpressure",
                });
            }
            if let Some(mode) = read_mode {
                body["read_mode"] = json!(match mode {
                    ReadMode::Latest => "latest",
                    ReadMode::InOrder => "in_order",
                });
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
            let state = client.post(&format!("/api/runtime/{verb}"), &json!({}))?;
            if json {
                return print_json(&mut out, &state);
            }
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
                " (and what its failure had ended downstream)"
            } else {
                ""
            };
            writeln!(out, "restarted {id}{also}: {}", text(&answer["state"]))?;
        }
        CtlCommand::Graph(GraphCommand::Export { file }) => match file {
            None => return print_json(&mut out, &client.get("/api/graph")?),
            Some(file) => {
                let (full, minimal) = export(&client)?;
                let written = write_graph_file(&file, &full, &minimal)?;
                if json {
                    return print_json(
                        &mut out,
                        &json!({"file": file, "changed": written, "revision": full.revision}),
                    );
                }
                let verb = if written { "wrote" } else { "unchanged:" };
                writeln!(
                    out,
                    "{verb} {} ({} processors, {} connections; graph revision {})",
                    file.display(),
                    full.processors.len(),
                    full.connections.len(),
                    full.revision.map_or("-".to_string(), |r| r.to_string())
                )?;
            }
        },
        CtlCommand::Graph(GraphCommand::Apply {
            file,
            dry_run,
            force,
        }) => {
            let mut graph = load_graph(&file)?;
            if force {
                graph.revision = None;
            }
            let body = serde_json::to_value(&graph)?;
            let path = if dry_run {
                "/api/graph?dry_run=true"
            } else {
                "/api/graph"
            };
            let plan = client.put(path, &body).map_err(|e| {
                let stale = e
                    .downcast_ref::<crate::client::ApiFailure>()
                    .is_some_and(|f| f.code == "revision_mismatch");
                if stale {
                    e.context(format!(
                        "{} was exported at another revision: export it again, or apply it anyway with --force",
                        file.display()
                    ))
                } else {
                    e
                }
            })?;
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
            wait_ms,
        } => {
            drop(out);
            let image = ImageOptions {
                format,
                width,
                height,
                wait_ms,
            };
            return snapshot(&client, &port, &output, image, json);
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
        let message = match crate::client::read(&mut socket) {
            Ok(tungstenite::Message::Text(text)) => text,
            Ok(tungstenite::Message::Close(frame)) => {
                return ended_early("event stream", frame, count);
            }
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => {
                return ended_early("event stream", None, count);
            }
            Err(e) => anyhow::bail!("the event stream failed: {e}"),
        };
        let event: Value =
            serde_json::from_str(message.as_str()).context("an event is not JSON")?;
        if json {
            // Everything the server sends: the snapshot first (and after a lag), the events, a
            // lag notice.
            writeln!(out, "{message}")?;
            out.flush()?;
            if event["type"] != "snapshot" && event["type"] != "lagged" && event["type"] != "error"
            {
                seen += 1;
            }
            continue;
        }
        match event["type"].as_str() {
            // The state the events follow from: first, and again after a lag.
            Some("snapshot") => {
                let state = &event["state"];
                writeln!(
                    out,
                    "# following events after seq {}: runtime {}, {} processors, {} links",
                    event["seq"],
                    text(&state["status"]),
                    state["processor_count"],
                    state["link_count"]
                )?;
            }
            Some("lagged") => eprintln!(
                "warning: fell behind the server: {} event(s) missed; the state follows afresh",
                event["missed"]
            ),
            Some("error") => eprintln!(
                "warning: the server said: {}",
                text(&event["error"]["message"])
            ),
            _ => {
                writeln!(out, "{}", event_line(&event))?;
                seen += 1;
            }
        }
        out.flush()?;
    }
}

/// A stream the server closed before the client had what it asked for (callers return success
/// themselves once `--count`/`--limit` is reached): fine only for a normal close (1000) of a
/// stream that was to run until then (`wanted` is `None`), an error otherwise, with the
/// server's reason.
fn ended_early(
    what: &str,
    frame: Option<tungstenite::protocol::CloseFrame>,
    wanted: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let (code, reason) = frame.map_or((1006, String::new()), |f| {
        (u16::from(f.code), f.reason.to_string())
    });
    let reason = if reason.is_empty() {
        format!("close code {code}")
    } else {
        format!("{reason} (close code {code})")
    };
    if code == 1000 && wanted.is_none() {
        eprintln!("the server ended the {what}: {reason}");
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::bail!("the server ended the {what} early: {reason}")
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

/// What a snapshot of a video port is made into.
struct ImageOptions {
    format: Option<SnapshotFormat>,
    width: Option<u32>,
    height: Option<u32>,
    wait_ms: u64,
}

fn snapshot(
    client: &Client,
    port: &str,
    output: &Path,
    image: ImageOptions,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (processor, port_name) = port_ref(port)?;
    let format = image.format.or_else(|| {
        match output
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("png") => Some(SnapshotFormat::Png),
            Some("jpg" | "jpeg") => Some(SnapshotFormat::Jpeg),
            _ => None,
        }
    });
    let mut query = vec![format!("timeout_ms={}", image.wait_ms)];
    if let Some(format) = format {
        query.push(format!(
            "format={}",
            match format {
                SnapshotFormat::Jpeg => "jpeg",
                SnapshotFormat::Png => "png",
            }
        ));
    }
    for (key, value) in [("width", image.width), ("height", image.height)] {
        if let Some(value) = value {
            query.push(format!("{key}={value}"));
        }
    }
    let path = format!(
        "/api/processors/{}/ports/{}/snapshot?{}",
        encode(processor),
        encode(port_name),
        query.join("&")
    );
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
            &json!({"file": output, "bytes": bytes.len(), "content": what}),
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
        match crate::client::read(&mut socket) {
            Ok(tungstenite::Message::Text(text)) => {
                let message: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                match message["type"].as_str() {
                    Some("tap") => {}
                    // Its reason is the close frame's too (read next).
                    Some("end") => eprintln!("{}", self::text(&message["message"])),
                    _ => {
                        writeln!(out, "{text}")?;
                        out.flush()?;
                    }
                }
            }
            // The limit reached is code 1000; anything else (the port gone, the server
            // shutting down) is an early end.
            Ok(tungstenite::Message::Close(frame)) => {
                let done = frame
                    .as_ref()
                    .is_some_and(|f| u16::from(f.code) == 1000 && limit.is_some());
                if done {
                    return Ok(ExitCode::SUCCESS);
                }
                return ended_early("tap", frame, limit.or(Some(u64::MAX)));
            }
            Err(tungstenite::Error::ConnectionClosed) => {
                return ended_early("tap", None, Some(u64::MAX));
            }
            Ok(_) => {}
            Err(e) => anyhow::bail!("the tap failed: {e}"),
        }
    }
}

/// The running graph whole and minimal, of one revision (asked twice; again if it changed in
/// between).
fn export(client: &Client) -> anyhow::Result<(GraphFile, GraphFile)> {
    for _ in 0..5 {
        let (minimal, tag) = client.get_with_etag("/api/graph?minimal=true")?;
        let full: GraphFile = serde_json::from_value(client.get("/api/graph")?)
            .context("the server's graph document did not parse")?;
        let minimal: GraphFile =
            serde_json::from_value(minimal).context("the server's graph document did not parse")?;
        // A proxy may weaken the tag (W/"5"); the revision is what counts.
        let tag = tag.map(|t| t.trim_start_matches("W/").to_string());
        let revision = full.revision.map(|r| format!("\"{r}\""));
        if tag.is_some() && tag == revision {
            return Ok((full, minimal));
        }
    }
    anyhow::bail!("the graph kept changing while it was exported; try again")
}

/// Writes the graph into `file` (see `GraphFileWriter`): whether the file changed. An existing
/// file must be a graph file: anything else is not overwritten.
fn write_graph_file(file: &Path, full: &GraphFile, minimal: &GraphFile) -> anyhow::Result<bool> {
    // An empty file (a fresh `mktemp`) is as good as none.
    let empty = std::fs::read_to_string(file).is_ok_and(|text| text.trim().is_empty());
    if file.exists() && !empty {
        load_graph(file).with_context(|| {
            format!(
                "{} exists and is not a graph file; not overwriting it",
                file.display()
            )
        })?;
    }
    let writer =
        GraphFileWriter::new(file).with_context(|| format!("cannot write {}", file.display()))?;
    writer
        .write(full, minimal)
        .with_context(|| format!("cannot write {}", file.display()))
}
