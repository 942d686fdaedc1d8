//! `streamlib`: run pipeline graphs, list processor types, serve the control API.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod client;
mod ctl;
mod save;
mod table;
mod top;

use anyhow::Context;
use clap::{Parser, Subcommand};
use streamlib::core::files::{DEFAULT_MAX_FILE_MIB, FileAccess};
use streamlib::core::graph::{GraphFileWriter, GraphFormat, check_graph_file};
use streamlib::core::service::http::ApiOptions;
use streamlib::core::{
    ApiServerConfig, ApiServerProcessor, GraphFile, PROCESSOR_REGISTRY, ProcessorDescriptor,
    ProcessorStatus, RuntimeEventKind, RuntimeLimits, StreamRuntime,
};

/// The graph `serve --demo` loads: test pattern → passthrough → sink, chord generator → sink.
const DEMO_GRAPH: &str = include_str!("demo.json");

#[derive(Parser)]
#[command(
    name = "streamlib",
    version,
    about = "Run and control streamlib media pipelines"
)]
struct Cli {
    /// Log filter (tracing syntax, e.g. `info`, `streamlib=debug`). Logs go to stderr.
    #[arg(long, global = true, env = "STREAMLIB_LOG", default_value = "info")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the runtime with the HTTP/WebSocket API until Ctrl-C.
    Serve(Box<ServeArgs>),
    /// List the registered processor types with their ports and config schema.
    Types {
        /// Show only this type (e.g. `TestPatternProcessor`).
        name: Option<String>,
        /// Print the descriptors as JSON (the same data as `GET /api/registry`).
        #[arg(long)]
        json: bool,
    },
    /// Check a graph file without running it: types, configs, ids, ports, frame types, links.
    /// Prints every problem with its place (for TOML, its line and column); exit 1 if any.
    Validate {
        /// The graph file (JSON, or TOML when its name ends in `.toml`).
        graph: PathBuf,
    },
    /// Run a graph file until Ctrl-C (or for --duration), then print counters as JSON.
    Run {
        /// The graph file, JSON ({"processors":[{"id","type","config"}],"connections":[{"from","to"}]})
        /// or TOML when its name ends in `.toml` ([[processors]] / [[connections]] tables).
        graph: PathBuf,
        /// Stop after this many seconds.
        #[arg(long, value_name = "SECS")]
        duration: Option<f64>,
        /// What the graph may spend (processors, queued frame memory, setup time).
        #[command(flatten)]
        limits: RuntimeLimits,
        /// Most MiB a file written by the graph may reach.
        #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MAX_FILE_MIB)]
        max_file_mib: u64,
    },
    /// Drive a running server over its API: ps, links, add, rm, connect, config, graph
    /// export/apply, events, snapshot, tap... (`streamlib ctl --help`).
    Ctl(Box<ctl::CtlArgs>),
    /// A live view of a running server: processors and links, refreshed every second.
    Top(Box<top::TopArgs>),
    /// Print a shell completion script, e.g. `streamlib completions bash >
    /// ~/.local/share/bash-completion/completions/streamlib`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (anything but loopback requires --token).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Load this graph file at start (JSON, or TOML when its name ends in `.toml`).
    #[arg(long, value_name = "FILE", conflicts_with = "demo")]
    graph: Option<PathBuf>,
    /// Write every change of the graph back to the --graph file (created if missing),
    /// atomically, 200 ms after the last change (at most 2 s after the first); a TOML file
    /// keeps its comments and formatting. The next start loads the same graph.
    #[arg(long, requires = "graph")]
    save: bool,
    /// Load a small running demo graph (test pattern → passthrough → sink, chord → sink).
    #[arg(long)]
    demo: bool,
    /// The API server's protection and limits (the same fields as its JSON config).
    #[command(flatten)]
    api: ApiOptions,
    /// What the graph may spend (processors, queued frame memory, setup time).
    #[command(flatten)]
    limits: RuntimeLimits,
    /// The only directory processors may read and write: every file path (from API clients
    /// and from --graph) is relative to it and cannot leave it. Created if missing.
    #[arg(long, value_name = "DIR", default_value = "streamlib-media")]
    media_dir: PathBuf,
    /// Most MiB a file written by the graph may reach.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MAX_FILE_MIB)]
    max_file_mib: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    match dispatch(cli.command) {
        Ok(code) => code,
        // The reader of our output went away (`streamlib types | head`): not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .map(|io| io.kind())
            .or_else(|| {
                cause
                    .downcast_ref::<serde_json::Error>()
                    .and_then(|j| j.io_error_kind())
            })
            == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// Sets up logging to stderr; a filter that does not parse is an error (never ignored).
fn init_logging(filter: &str) -> anyhow::Result<()> {
    let mut parsed = tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| {
        anyhow::anyhow!(
            "invalid --log filter '{filter}' (or STREAMLIB_LOG): {e}; use a level (error, warn, info, debug, trace) or targets such as 'streamlib=debug,info'"
        )
    })?;
    // winit warns on every window that a virtual screen (Xvfb, VNC) reports 0 mm: noise, unless
    // the user asks for winit's logs.
    if !filter.contains("winit") {
        if let Ok(quiet) = "winit::platform_impl::linux::x11::util::randr=error".parse() {
            parsed = parsed.add_directive(quiet);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(parsed)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        // A log that can no longer be written (stderr closed: `2>&1 | head`, a terminal gone)
        // is dropped. By default the subscriber would report it with `eprintln!`, which panics
        // on a closed stderr, and a panic while logging aborts the run before writers finalise.
        .log_internal_errors(false)
        .init();
    Ok(())
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => serve(*args),
        Command::Types { name, json } => types(name.as_deref(), json),
        Command::Validate { graph } => validate(&graph),
        Command::Run {
            graph,
            duration,
            limits,
            max_file_mib,
        } => run(graph, duration, limits, max_file_mib),
        Command::Ctl(args) => ctl::ctl(*args),
        Command::Top(args) => top::top(*args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            // Written whole afterwards: `generate` panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "streamlib", &mut script);
            std::io::stdout().lock().write_all(&script)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn types(name: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let all = PROCESSOR_REGISTRY.descriptors();
    let descriptors: Vec<&ProcessorDescriptor> = match name {
        None => all.iter().collect(),
        Some(name) => {
            let one: Vec<_> = all.iter().filter(|d| d.type_name == name).collect();
            if one.is_empty() {
                let known: Vec<&str> = all.iter().map(|d| d.type_name.as_str()).collect();
                anyhow::bail!(
                    "unknown processor type '{name}'; the types are: {}",
                    known.join(", ")
                );
            }
            one
        }
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &descriptors)?;
        writeln!(out)?;
    } else {
        for d in descriptors {
            write_type(&mut out, d)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_type(out: &mut impl Write, d: &ProcessorDescriptor) -> std::io::Result<()> {
    let mode = serde_json::to_value(d.execution)
        .ok()
        .and_then(|v| v.get("mode").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_default();
    writeln!(out, "{}  ({mode})", d.type_name)?;
    writeln!(out, "    {}", d.description)?;
    for (label, ports) in [("in ", &d.inputs), ("out", &d.outputs)] {
        for p in ports.iter() {
            let name = match &p.count_from {
                // `count` is the config expression, e.g. `config.inputs`.
                Some(count) => format!("{}_0 … {}_(N-1), N = {count}", p.name, p.name),
                None => p.name.clone(),
            };
            writeln!(
                out,
                "    {label} {name}: {} — {}",
                p.frame_type, p.description
            )?;
        }
    }
    if let Some(props) = d
        .config_schema
        .get("properties")
        .and_then(|p| p.as_object())
    {
        for (field, schema) in props {
            let description = schema
                .get("description")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .replace('\n', " ");
            let default = schema
                .get("default")
                .map(|v| format!(" [default {v}]"))
                .unwrap_or_default();
            let choices = choices(&d.config_schema, schema)
                .map(|c| format!(" (one of: {})", c.join(", ")))
                .unwrap_or_default();
            writeln!(out, "    config {field}{default}{choices}: {description}")?;
        }
    }
    writeln!(out)
}

/// Reads and parses a graph file (TOML by extension, else JSON): "cannot read graph file FILE"
/// if it cannot be read, and otherwise errors that start with "cannot load FILE:", as those of
/// applying it do.
pub(crate) fn load_graph(path: &std::path::Path) -> anyhow::Result<GraphFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read graph file {}", path.display()))?;
    GraphFile::parse(&text, GraphFormat::of(path))
        .with_context(|| format!("cannot load {}", path.display()))
}

/// `streamlib validate`: every problem of a graph file, or "ok".
fn validate(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let problems = check_graph_file(path)?;
    let mut out = std::io::stdout().lock();
    if problems.is_empty() {
        let graph = load_graph(path)?;
        writeln!(
            out,
            "{}: ok ({} processors, {} connections)",
            path.display(),
            graph.processors.len(),
            graph.connections.len()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        writeln!(out, "{}:{problem}", path.display())?;
    }
    writeln!(
        out,
        "{}: {} problem(s); nothing was run",
        path.display(),
        problems.len()
    )?;
    Ok(ExitCode::FAILURE)
}

/// The values a config field may take, when its schema lists them (an `enum`, or a `oneOf` of
/// constants, directly or through a `$ref` into the config schema's `$defs`).
fn choices(root: &serde_json::Value, schema: &serde_json::Value) -> Option<Vec<String>> {
    let schema = match schema.get("$ref").and_then(|r| r.as_str()) {
        Some(r) => {
            let name = r.strip_prefix("#/$defs/")?;
            root.get("$defs")?.get(name)?
        }
        None => schema,
    };
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some(values) = schema.get("enum").and_then(|e| e.as_array()) {
        return Some(values.iter().map(show).collect());
    }
    let variants = schema.get("oneOf")?.as_array()?;
    variants
        .iter()
        .map(|v| v.get("const").map(show))
        .collect::<Option<Vec<_>>>()
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // A restart request waits for its processor's teardown (at most STOP_TIMEOUT) and setup:
    // the request must be allowed longer.
    let restart_ms = u128::from(args.limits.setup_timeout_ms)
        + streamlib::core::runtime::STOP_TIMEOUT.as_millis();
    if restart_ms >= args.api.request_timeout.as_millis() {
        anyhow::bail!(
            "--setup-timeout-ms ({}) plus the {} s a stop may take must be below --request-timeout-ms ({}): a restart request waits for its processor's teardown and setup",
            args.limits.setup_timeout_ms,
            streamlib::core::runtime::STOP_TIMEOUT.as_secs(),
            args.api.request_timeout.as_millis()
        );
    }
    if args.max_file_mib == 0 {
        anyhow::bail!("--max-file-mib must be at least 1");
    }
    let mut runtime = StreamRuntime::with_limits(args.limits)?;
    let files = FileAccess::beneath(&args.media_dir)?
        .with_max_file_bytes(args.max_file_mib.saturating_mul(1 << 20));
    let media_dir = files.media_dir().map(|d| d.display().to_string());
    runtime.set_file_access(files);
    let mut options = args.api;
    // clap treats an empty environment variable as unset; an empty token must not silently
    // turn authentication off, so it is passed on and refused by the options' validation.
    if options.token.is_none()
        && std::env::var_os("STREAMLIB_API_TOKEN").is_some_and(|v| v.is_empty())
    {
        options.token = Some("".into());
    }
    let has_token = options.token.is_some();
    let config = ApiServerConfig {
        host: args.host.clone(),
        port: args.port,
        // Files are confined to --media-dir above.
        unconfined_files: false,
        options,
    };
    let (spec, api) = ApiServerProcessor::Processor::spec_with_handle(config);
    // The API server is a control-plane processor: it starts (binds) right here, first, so
    // that a busy port fails before anything else is set up.
    if let Err(e) = runtime.add_processor(spec.with_id("api")) {
        let hint = if e.to_string().contains("Address already in use") {
            format!(
                "; port {} is taken (another streamlib serve?): choose another with --port, or --port 0 for a free one",
                args.port
            )
        } else {
            String::new()
        };
        anyhow::bail!("cannot start the API server: {e}{hint}");
    }
    if args.demo {
        runtime.apply_graph(&GraphFile::from_json(DEMO_GRAPH)?)?;
    }
    if let Some(path) = &args.graph {
        // With --save, a file that does not exist yet is the empty graph: the first change
        // creates it.
        let missing = args.save && matches!(path.try_exists(), Ok(false));
        if !missing {
            runtime
                .apply_graph(&load_graph(path)?)
                .with_context(|| format!("cannot load {}", path.display()))?;
        }
    }
    let saver = match (&args.graph, args.save) {
        (Some(path), true) => {
            // A file processors may write could be overwritten through the API.
            let folder = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if let (Ok(folder), Ok(media)) = (
                std::fs::canonicalize(folder),
                std::fs::canonicalize(&args.media_dir),
            ) {
                if folder.starts_with(&media) {
                    anyhow::bail!(
                        "--save: {} is inside the media directory {}, where processors write files an API client names; keep the graph file elsewhere",
                        path.display(),
                        media.display()
                    );
                }
            }
            let writer = GraphFileWriter::new(path.clone())
                .with_context(|| format!("--save: cannot write {}", path.display()))?;
            Some(
                save::Saver::spawn(runtime.runtime_service(), writer)
                    .context("cannot start the graph write-back thread")?,
            )
        }
        _ => None,
    };
    let port = api.local_addr().map_or(args.port, |address| address.port());
    let host = if args.host.contains(':') {
        format!("[{}]", args.host)
    } else {
        args.host.clone()
    };
    let url = format!("http://{host}:{port}");
    let auth = if has_token {
        " -H \"Authorization: Bearer $STREAMLIB_API_TOKEN\""
    } else {
        ""
    };
    println!("streamlib API listening on {url}");
    println!("  state:  curl{auth} {url}/api/runtime/state");
    println!("  events: ws://{host}:{port}/api/events");
    println!("  docs:   {url}/api/openapi.json");
    if let Some(dir) = media_dir {
        println!("  files:  paths are relative to {dir}");
    }
    if let (Some(path), true) = (&args.graph, args.save) {
        println!("  saves:  every change to {}", path.display());
    }
    println!("Ctrl-C stops the runtime and exits.");
    let ran = runtime.run();
    // Whatever the write-back had not written yet is written before exiting.
    let saved = saver.map(|saver| saver.finish(&runtime));
    ran?;
    if let Some(saved) = saved {
        saved?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run(
    path: PathBuf,
    duration: Option<f64>,
    limits: RuntimeLimits,
    max_file_mib: u64,
) -> anyhow::Result<ExitCode> {
    let graph = load_graph(&path)?;
    if graph.processors.is_empty() {
        eprintln!(
            "warning: {} has no processors: nothing will run (it stops at --duration or Ctrl-C)",
            path.display()
        );
    }
    let mut runtime = StreamRuntime::with_limits(limits)?;
    // The graph file's author names the files: paths as written (no media directory).
    runtime.set_file_access(
        FileAccess::free().with_max_file_bytes(max_file_mib.saturating_mul(1 << 20)),
    );
    // Processor events (end of stream, window closed...) for the report, collected as they
    // come so that a long run cannot push them out of the channel.
    let mut events = runtime.subscribe_events();
    let collected = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let sink = collected.clone();
    // A finite graph (files in, files out) ends the run when it has finished.
    let finished = runtime.shutdown_handle();
    std::thread::Builder::new()
        .name("run-events".to_string())
        .spawn(move || {
            loop {
                match events.blocking_recv() {
                    Ok(event) => match &event.kind {
                        RuntimeEventKind::ProcessorEvent { .. } => {
                            sink.lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .push(event);
                        }
                        RuntimeEventKind::GraphFinished => {
                            finished.request();
                        }
                        _ => {}
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
            let _ = done_tx.send(());
        })?;
    runtime
        .apply_graph(&graph)
        .with_context(|| format!("cannot load {}", path.display()))?;
    if let Some(secs) = duration {
        let secs = Duration::try_from_secs_f64(secs)
            .map_err(|_| anyhow::anyhow!("--duration must be a non-negative number of seconds"))?;
        let shutdown = runtime.shutdown_handle();
        std::thread::Builder::new()
            .name("duration".to_string())
            .spawn(move || {
                std::thread::sleep(secs);
                shutdown.request();
            })?;
    }
    let started = Instant::now();
    runtime.run()?;
    let state = runtime.state();
    let failed: Vec<_> = state
        .processors
        .iter()
        .filter(|p| p.state == ProcessorStatus::Failed)
        .map(|p| format!("{}: {}", p.id, p.error.as_deref().unwrap_or("failed")))
        .collect();
    // Dropping the runtime closes the event channel once nothing else holds a sender; the
    // events seen by then are all there are.
    drop(runtime);
    let _ = done_rx.recv_timeout(Duration::from_secs(1));
    let processor_events = std::mem::take(
        &mut *collected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let report = serde_json::json!({
        "graph": path,
        "elapsed_seconds": started.elapsed().as_secs_f64(),
        "status": state.status,
        "processors": state.processors,
        "links": state.links,
        "events": processor_events,
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &report)?;
    writeln!(out)?;
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in failed {
            eprintln!("failed: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}
