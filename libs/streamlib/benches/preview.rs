//! Live preview benchmark: what `WS /api/preview` costs the server with 0, 1, 10 and 50
//! viewers of the same 640x360 30 fps port (the demo graph's test pattern), and how late the
//! images arrive.
//!
//! Run: `cargo bench -p streamlib --bench preview` (`-- --quick`: short, CI runs it so the
//! command keeps working).
//!
//! The server (runtime, API, encoders) runs in this process; the viewers run on one client
//! thread. Server CPU is the process's CPU time minus that thread's, over the measuring window,
//! in percent of one core; it includes the demo graph itself (the 0-viewer row). Glass to glass
//! is the media clock when a viewer has the whole JPEG minus the frame's timestamp (the time
//! the pattern stamped it as made), so it holds the wait for the encoder's turn, the encode,
//! and the WebSocket hop.
//!
//! The peer, in the same run: the same server with sharing defeated — each viewer asks for its
//! own width (640, 639, ...), so each is its own stream, as when every viewer runs its own
//! encoder (an ffmpeg per thumbnail, a screenshot poll per client).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use streamlib::core::service::http::ApiOptions;
use streamlib::core::{
    ApiServerConfig, ApiServerProcessor, GraphFile, Result, StreamRuntime, media_clock_ns,
};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `-- --quick`: less work (CI runs it so this command keeps working).
static QUICK: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::args().any(|a| a == "--quick"));

/// CPU time (user + system) from a `/proc/.../stat` file, in seconds.
fn cpu_seconds(stat: &str) -> f64 {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file: 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    // In USER_HZ, which Linux fixes at 100 for /proc on every architecture it runs on.
    ticks as f64 / 100.0
}

/// The `q` quantile of sorted nanoseconds, in milliseconds (`-` when there are none).
fn percentile(sorted: &[u64], q: f64) -> String {
    match sorted.len() {
        0 => "-".to_string(),
        n => format!(
            "{:.1} ms",
            sorted[((n - 1) as f64 * q).round() as usize] as f64 / 1e6
        ),
    }
}

async fn viewer(addr: SocketAddr, width: u32) -> Ws {
    let url = format!("ws://{addr}/api/preview?port=pattern.video&fps=30&width={width}");
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("preview handshake");
    ws
}

/// Reads every viewer for `window`: images received, and their delays (ns).
async fn watch(viewers: &mut [Ws], window: Duration) -> (u64, Vec<u64>) {
    let until = tokio::time::Instant::now() + window;
    let results = futures_util::future::join_all(viewers.iter_mut().map(|ws| async move {
        let mut images = 0u64;
        let mut delays = Vec::new();
        let mut stamp = None;
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(until, ws.next()).await {
            match message {
                Message::Text(text) => {
                    let header: serde_json::Value =
                        serde_json::from_str(text.as_str()).unwrap_or_default();
                    stamp = header["timestamp_ns"].as_u64();
                }
                Message::Binary(_) => {
                    images += 1;
                    if let Some(ts) = stamp.take() {
                        delays.push(media_clock_ns().saturating_sub(ts));
                    }
                }
                _ => {}
            }
        }
        (images, delays)
    }))
    .await;
    let mut all = Vec::new();
    let mut images = 0;
    for (n, d) in results {
        images += n;
        all.extend(d);
    }
    all.sort_unstable();
    (images, all)
}

fn main() -> Result<()> {
    let mut runtime = StreamRuntime::new()?;
    runtime.set_file_access(streamlib::core::FileAccess::beneath(
        std::env::temp_dir().join("streamlib-bench-media"),
    )?);
    let demo = GraphFile::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../apps/streamlib-cli/src/demo.json"
    ))?;
    runtime.apply_graph(&demo)?;
    let config = ApiServerConfig {
        port: 0,
        options: ApiOptions {
            max_previews: 64,
            ..Default::default()
        },
        ..Default::default()
    };
    let api = runtime.add_processor(ApiServerProcessor::spec(config))?;
    let port = runtime.processor_info(&api)?.metrics["port"];
    let addr = SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap_or(0)));
    let shutdown = runtime.shutdown_handle();

    let driver = std::thread::spawn(move || {
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        let (warm, window) = if *QUICK {
            (Duration::from_millis(200), Duration::from_millis(500))
        } else {
            (Duration::from_secs(2), Duration::from_secs(10))
        };
        let counts: &[usize] = if *QUICK { &[0, 2] } else { &[0, 1, 10, 50] };
        println!(
            "# streamlib live preview: demo graph (640x360 test pattern at 30 fps), viewers at fps=30 width=640, {} s per row",
            window.as_secs_f64()
        );
        println!(
            "{:<28} {:>8} {:>14} {:>16} {:>10} {:>10}",
            "case", "viewers", "server CPU %", "images/s/viewer", "g2g p50", "g2g p99"
        );
        client.block_on(async {
            for shared in [true, false] {
                for &n in counts {
                    if !shared && (n == 0 || n > 10) {
                        continue;
                    }
                    let mut viewers = Vec::new();
                    for i in 0..n {
                        let width = if shared { 640 } else { 640 - i as u32 };
                        viewers.push(viewer(addr, width).await);
                    }
                    watch(&mut viewers, warm).await;
                    let process0 = cpu_seconds("/proc/self/stat");
                    let client0 = cpu_seconds("/proc/thread-self/stat");
                    let started = Instant::now();
                    let (images, delays) = if n == 0 {
                        tokio::time::sleep(window).await;
                        (0, Vec::new())
                    } else {
                        watch(&mut viewers, window).await
                    };
                    let seconds = started.elapsed().as_secs_f64();
                    let server = (cpu_seconds("/proc/self/stat") - process0)
                        - (cpu_seconds("/proc/thread-self/stat") - client0);
                    let per_viewer = if n == 0 {
                        0.0
                    } else {
                        images as f64 / n as f64 / seconds
                    };
                    println!(
                        "{:<28} {n:>8} {:>14.1} {per_viewer:>16.1} {:>10} {:>10}",
                        if shared {
                            "shared (one stream)"
                        } else {
                            "peer: a stream per viewer"
                        },
                        100.0 * server / seconds,
                        percentile(&delays, 0.5),
                        percentile(&delays, 0.99),
                    );
                    drop(viewers);
                    // Let the streams end before the next row.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        });
        shutdown.request();
    });
    runtime.run()?;
    driver
        .join()
        .map_err(|_| streamlib::core::StreamError::processor("the bench driver panicked"))?;
    Ok(())
}
