//! `streamlib`: run pipeline graphs, list processor types, serve the control API.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use streamlib::core::{
    GraphFile, PROCESSOR_REGISTRY, ProcessorDescriptor, ProcessorState, StreamRuntime,
};

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
    /// List the registered processor types with their ports and config schema.
    Types {
        /// Print the descriptors as JSON (the same data as `GET /api/registry`).
        #[arg(long)]
        json: bool,
    },
    /// Run a graph file until Ctrl-C (or for --duration), then print counters as JSON.
    Run {
        /// The graph file: {"processors":[{"id","type","config"}],"connections":[{"from","to"}]}.
        graph: PathBuf,
        /// Stop after this many seconds.
        #[arg(long, value_name = "SECS")]
        duration: Option<f64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Types { json } => types(json),
        Command::Run { graph, duration } => run(graph, duration),
    }
}

fn types(json: bool) -> anyhow::Result<ExitCode> {
    let descriptors = PROCESSOR_REGISTRY.descriptors();
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &descriptors)?;
        writeln!(out)?;
    } else {
        for d in &descriptors {
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
                Some(count) => format!("{}_0..{}_{{{count}}}", p.name, p.name),
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
            writeln!(out, "    config {field}{default}: {description}")?;
        }
    }
    writeln!(out)
}

fn run(path: PathBuf, duration: Option<f64>) -> anyhow::Result<ExitCode> {
    let graph = GraphFile::from_path(&path)?;
    let mut runtime = StreamRuntime::new()?;
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
        .filter(|p| p.state == ProcessorState::Failed)
        .map(|p| format!("{}: {}", p.id, p.error.as_deref().unwrap_or("failed")))
        .collect();
    let report = serde_json::json!({
        "graph": path,
        "elapsed_seconds": started.elapsed().as_secs_f64(),
        "status": state.status,
        "processors": state.processors,
        "links": state.links,
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
