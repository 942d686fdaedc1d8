//! `streamlib top`: a live view of a running server in the terminal — per processor its
//! state, frames per second, busy time, latency of `process()` and errors; per link its queue,
//! rate, drops and latency — refreshed every second from `GET /api/runtime/state` (one request
//! per refresh; the rates are the server's own, over its recent window). `--once` prints one
//! view and exits (`--json` for scripts).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Row, Table};
use serde::Serialize;
use serde_json::Value;

use crate::client::{Client, Connection};
use crate::table::num;

/// `streamlib top`'s flags.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    #[command(flatten)]
    connection: Connection,
    /// Seconds between refreshes (0.2 to 60).
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    interval: f64,
    /// Print one view and exit (a table, or JSON with --json).
    #[arg(long)]
    once: bool,
    /// With --once: print the view as JSON.
    #[arg(long, requires = "once")]
    json: bool,
}

/// What `top` shows: the runtime's status and a row per processor and per link.
#[derive(Debug, Serialize)]
pub struct TopView {
    /// The server.
    pub url: String,
    /// `running`, `stopped`...
    pub status: String,
    /// One per processor, in the server's order.
    pub processors: Vec<ProcessorRow>,
    /// One per link.
    pub links: Vec<LinkRow>,
}

/// A processor as `top` shows it.
#[derive(Debug, Serialize)]
pub struct ProcessorRow {
    id: String,
    processor_type: String,
    state: String,
    /// Why it failed, when it did.
    error: Option<String>,
    fps_in: Option<f64>,
    fps_out: Option<f64>,
    busy_percent: Option<f64>,
    process_p99_ms: Option<f64>,
    errors: u64,
    restarts: u64,
}

/// A link as `top` shows it.
#[derive(Debug, Serialize)]
pub struct LinkRow {
    id: String,
    from: String,
    to: String,
    frame_type: String,
    queued: u64,
    capacity: u64,
    fps: Option<f64>,
    dropped: u64,
    dropped_per_s: Option<f64>,
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
}

fn string(v: &Value) -> String {
    v.as_str().unwrap_or("-").to_string()
}

impl TopView {
    /// The view of a `GET /api/runtime/state` answer.
    fn from_state(url: &str, state: &Value) -> Self {
        let list = |key: &str| state[key].as_array().cloned().unwrap_or_default();
        let processors = list("processors")
            .iter()
            .map(|p| {
                let r = &p["rates"];
                ProcessorRow {
                    id: string(&p["id"]),
                    processor_type: string(&p["processor_type"]),
                    state: string(&p["state"]),
                    error: p["error"].as_str().map(str::to_string),
                    fps_in: r["frames_in_per_s"].as_f64(),
                    fps_out: r["frames_out_per_s"].as_f64(),
                    busy_percent: r["busy_percent"].as_f64(),
                    process_p99_ms: r["process_p99_ms"].as_f64(),
                    errors: p["counters"]["errors"].as_u64().unwrap_or(0),
                    restarts: p["counters"]["restarts"].as_u64().unwrap_or(0),
                }
            })
            .collect();
        let links = list("links")
            .iter()
            .map(|l| {
                let (r, c) = (&l["rates"], &l["counters"]);
                LinkRow {
                    id: string(&l["id"]),
                    from: format!(
                        "{}.{}",
                        string(&l["from"]["processor"]),
                        string(&l["from"]["port"])
                    ),
                    to: format!(
                        "{}.{}",
                        string(&l["to"]["processor"]),
                        string(&l["to"]["port"])
                    ),
                    frame_type: string(&l["frame_type"]),
                    queued: c["queued"].as_u64().unwrap_or(0),
                    capacity: l["capacity"].as_u64().unwrap_or(0),
                    fps: r["read_per_s"].as_f64(),
                    dropped: c["dropped"].as_u64().unwrap_or(0),
                    dropped_per_s: r["dropped_per_s"].as_f64(),
                    latency_p50_ms: r["latency_p50_ms"].as_f64(),
                    latency_p99_ms: r["latency_p99_ms"].as_f64(),
                }
            })
            .collect();
        Self {
            url: url.to_string(),
            status: string(&state["status"]),
            processors,
            links,
        }
    }

    fn processor_cells(p: &ProcessorRow) -> [String; 9] {
        let state = match &p.error {
            Some(error) => format!("{}: {error}", p.state),
            None => p.state.clone(),
        };
        [
            p.id.clone(),
            p.processor_type.clone(),
            state,
            num(p.fps_in, 1),
            num(p.fps_out, 1),
            num(p.busy_percent, 1),
            num(p.process_p99_ms, 2),
            p.errors.to_string(),
            p.restarts.to_string(),
        ]
    }

    fn link_cells(l: &LinkRow) -> [String; 8] {
        [
            l.id.clone(),
            format!("{} → {}", l.from, l.to),
            l.frame_type.clone(),
            format!("{}/{}", l.queued, l.capacity),
            num(l.fps, 1),
            format!("{} ({}/s)", l.dropped, num(l.dropped_per_s, 1)),
            num(l.latency_p50_ms, 3),
            num(l.latency_p99_ms, 3),
        ]
    }

    /// The view as plain text (what `--once` prints).
    fn text(&self) -> String {
        let mut out = format!(
            "streamlib top — {} — {}: {} processors, {} links\n\n",
            self.url,
            self.status,
            self.processors.len(),
            self.links.len()
        );
        let mut processors = crate::table::Table::new(&PROCESSOR_HEADER);
        for p in &self.processors {
            processors.row(Self::processor_cells(p).to_vec());
        }
        out.push_str(&processors.render());
        out.push('\n');
        let mut links = crate::table::Table::new(&LINK_HEADER);
        for l in &self.links {
            links.row(Self::link_cells(l).to_vec());
        }
        out.push_str(&links.render());
        out
    }
}

const PROCESSOR_HEADER: [&str; 9] = [
    "PROCESSOR",
    "TYPE",
    "STATE",
    ">FPS IN",
    ">FPS OUT",
    ">BUSY %",
    ">P99 MS",
    ">ERRORS",
    ">RESTARTS",
];
const LINK_HEADER: [&str; 8] = [
    "LINK",
    "FROM → TO",
    "TYPE",
    ">QUEUE",
    ">FPS",
    ">DROPPED",
    ">LAT P50 MS",
    ">LAT P99 MS",
];

/// Runs `streamlib top`.
pub fn top(args: TopArgs) -> anyhow::Result<ExitCode> {
    if !(0.2..=60.0).contains(&args.interval) {
        anyhow::bail!(
            "--interval is {}; it must be 0.2 to 60 seconds",
            args.interval
        );
    }
    let client = Client::new(&args.connection)?;
    if args.once {
        let state = client.get("/api/runtime/state")?;
        let view = TopView::from_state(client.base(), &state);
        let mut out = std::io::stdout().lock();
        if args.json {
            serde_json::to_writer_pretty(&mut out, &view)?;
            writeln!(out)?;
        } else {
            write!(out, "{}", view.text())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "standard output is not a terminal: use `streamlib top --once` (or --once --json) in scripts and pipes"
        );
    }
    // Fails early, before the screen is taken over, if the server cannot be reached.
    let first = client.get("/api/runtime/state")?;
    let interval = Duration::from_secs_f64(args.interval);
    let url = client.base().to_string();
    let views = poll_views(client, interval);
    let result = match ratatui::try_init() {
        Ok(mut terminal) => live(&mut terminal, &views, &url, first, interval),
        Err(e) => Err(e.into()),
    };
    // Also after a failed start: raw mode may be on already.
    ratatui::restore();
    result.map(|()| ExitCode::SUCCESS)
}

/// What the poller hands the screen: a fresh state, or why there is none.
type Polled = Result<Value, String>;

/// Asks the server for its state every `interval` on a thread of its own, so that a slow or
/// unreachable server never makes the screen (and `q`) wait for a request.
fn poll_views(client: Client, interval: Duration) -> std::sync::mpsc::Receiver<Polled> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(interval);
            let polled = client
                .get("/api/runtime/state")
                .map_err(|e| format!("{e:#}"));
            // The screen went away: so does this thread.
            if tx.send(polled).is_err() {
                return;
            }
        }
    });
    rx
}

/// The screen's loop: draws, then waits for a key or a new state from the poller.
fn live(
    terminal: &mut ratatui::DefaultTerminal,
    views: &std::sync::mpsc::Receiver<Polled>,
    url: &str,
    first: Value,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut view = TopView::from_state(url, &first);
    let mut problem: Option<String> = None;
    let mut answered = std::time::Instant::now();
    loop {
        match views.try_recv() {
            Ok(Ok(state)) => {
                view = TopView::from_state(url, &state);
                problem = None;
                answered = std::time::Instant::now();
            }
            // Shown, and tried again at the next refresh (a server restarting comes back).
            Ok(Err(e)) => problem = Some(e),
            Err(_) => {}
        }
        // A request still waiting for its answer: say how old the figures are.
        let late = answered.elapsed();
        let stale =
            (problem.is_none() && late > interval * 2 + Duration::from_secs(1)).then(|| {
                format!(
                    "no answer for {:.0} s: the figures are that old",
                    late.as_secs_f64()
                )
            });
        let problem = problem.as_deref().or(stale.as_deref());
        terminal.draw(|frame| draw(frame, &view, problem, interval))?;
        // Keys are looked at ten times a second, and the screen drawn again each time.
        if event::poll(Duration::from_millis(100))? {
            if let Event::Key(key) = event::read()? {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                if key.kind == KeyEventKind::Press
                    && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c)
                {
                    return Ok(());
                }
            }
        }
    }
}

fn draw(frame: &mut ratatui::Frame, view: &TopView, problem: Option<&str>, interval: Duration) {
    // The processors take what they need, the links keep at least a few rows.
    let wanted = u16::try_from(view.processors.len() + 3).unwrap_or(u16::MAX);
    let [title, processors, links] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Max(wanted),
        Constraint::Min(6),
    ])
    .areas(frame.area());
    let status = match problem {
        Some(problem) => Line::styled(
            format!("streamlib top — {} — {problem}", view.url),
            Style::new().fg(Color::Red),
        ),
        None => Line::from(format!(
            "streamlib top — {} — {}: {} processors, {} links — every {:.1} s — q quits",
            view.url,
            view.status,
            view.processors.len(),
            view.links.len(),
            interval.as_secs_f64()
        )),
    };
    frame.render_widget(status, title);
    let processor_rows: Vec<Vec<String>> = view
        .processors
        .iter()
        .map(|p| TopView::processor_cells(p).to_vec())
        .collect();
    let state_colours = view.processors.iter().map(|p| match p.state.as_str() {
        "running" => Color::Green,
        "failed" => Color::Red,
        _ => Color::Yellow,
    });
    let styles: Vec<Style> = state_colours.map(|c| Style::new().fg(c)).collect();
    frame.render_widget(
        table(
            " Processors ",
            &PROCESSOR_HEADER,
            &processor_rows,
            |row, column| (column == 2).then(|| styles[row]),
        ),
        processors,
    );
    let link_rows: Vec<Vec<String>> = view
        .links
        .iter()
        .map(|l| TopView::link_cells(l).to_vec())
        .collect();
    // A link that drops frames now stands out.
    let dropping: Vec<bool> = view
        .links
        .iter()
        .map(|l| l.dropped_per_s.is_some_and(|d| d > 0.0))
        .collect();
    frame.render_widget(
        table(" Links ", &LINK_HEADER, &link_rows, |row, _| {
            dropping[row].then(|| Style::new().fg(Color::Yellow))
        }),
        links,
    );
}

/// The widest a column of the live view gets, in characters.
const MAX_COLUMN: usize = 40;

/// A bordered table whose columns are as wide as their widest cell (`>` in a header: aligned
/// right); `style` may colour a cell.
fn table<'a>(
    title: &'a str,
    header: &[&str],
    rows: &'a [Vec<String>],
    style: impl Fn(usize, usize) -> Option<Style>,
) -> Table<'a> {
    let right: Vec<bool> = header.iter().map(|h| h.starts_with('>')).collect();
    let names: Vec<&str> = header.iter().map(|h| h.trim_start_matches('>')).collect();
    let widths = (0..names.len()).map(|c| {
        let widest = rows
            .iter()
            .filter_map(|r| r.get(c))
            .map(|cell| cell.chars().count())
            .chain([names[c].chars().count()])
            .max()
            .unwrap_or(0);
        // A long cell (a failure's message) is cut rather than pushing the numbers off screen.
        Constraint::Length(u16::try_from(widest.min(MAX_COLUMN)).unwrap_or(u16::MAX))
    });
    let aligned = |text: String, c: usize| {
        let line = Line::from(text);
        if right[c] { line.right_aligned() } else { line }
    };
    let head = Row::new(
        names
            .iter()
            .enumerate()
            .map(|(c, n)| Cell::from(aligned((*n).to_string(), c))),
    )
    .style(Style::new().add_modifier(Modifier::BOLD));
    let body = rows.iter().enumerate().map(|(r, row)| {
        Row::new(row.iter().enumerate().map(|(c, text)| {
            let cell = Cell::from(aligned(text.clone(), c));
            match style(r, c) {
                Some(s) => cell.style(s),
                None => cell,
            }
        }))
    });
    Table::new(body, widths)
        .header(head)
        .column_spacing(2)
        .block(Block::bordered().title(title))
}
