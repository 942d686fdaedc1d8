//! Dashboard benchmark: how fast the page loads and how smooth it stays, in headless Chromium
//! (chromedriver) against a real `streamlib serve`, for a 200-processor graph (100 test
//! patterns, 16x16 at 10 fps, each into a counting sink: 100 links with live figures) and, in
//! the same run, the 5-processor demo graph (with its live previews) as the peer.
//!
//! Run: `cargo bench -p streamlib-cli --bench dashboard` (`-- --quick`: 20 processors, short
//! windows; CI runs it so the command keeps working).
//!
//! - *first load*: from navigation start to the graph drawn (the page fetched, the state
//!   read, every processor known, laid out, and every node in view measured and shown; past 60
//!   processors the page draws only the nodes in view), and the page's own load event;
//! - *frame rate*: `requestAnimationFrame` callbacks per second over the window, while the page
//!   refreshes the figures every second (what a person watching sees);
//! - *long tasks*: main-thread tasks over 50 ms during the window (the Long Tasks API), their
//!   count and the longest; the target is none over 100 ms.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

/// `-- --quick`: less work.
static QUICK: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::args().any(|a| a == "--quick"));

const PATIENCE: Duration = Duration::from_secs(60);

/// A child process group, killed when dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `streamlib serve` on `args` plus a free port.
fn serve(args: &[&str], media: &std::path::Path) -> (Group, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_streamlib"))
        .args(args)
        .args(["--port", &port.to_string(), "--media-dir"])
        .arg(media)
        .env_remove("STREAMLIB_API_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("streamlib serve");
    let group = Group(child);
    wait_for_port(port, "streamlib serve");
    (group, port)
}

/// The graph measured: `pairs` test patterns, each into its own counting sink.
fn big_graph(pairs: usize) -> Value {
    let mut processors = Vec::new();
    let mut connections = Vec::new();
    for i in 0..pairs {
        processors.push(
            json!({"id": format!("src{i}"), "type": "TestPatternProcessor",
            "config": {"width": 16, "height": 16, "fps": 10.0}}),
        );
        processors.push(json!({"id": format!("sink{i}"), "type": "CountingSinkProcessor"}));
        connections.push(json!({"from": format!("src{i}.video"), "to": format!("sink{i}.video")}));
    }
    json!({"processors": processors, "connections": connections})
}

async fn session(driver: u16) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_string(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,720"]}),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver}"))
        .await
        .expect("a browser session");
    // The viewport (not the window, which counts the browser's own bars) at 1280x720.
    let script =
        "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];";
    let bars = browser.execute(script, vec![]).await.expect("a script");
    let (w, h) = (bars[0].as_u64().unwrap_or(0), bars[1].as_u64().unwrap_or(0));
    browser
        .set_window_size(1280 + w as u32, 720 + h as u32)
        .await
        .expect("a window size");
    browser
}

/// One page's figures.
struct Figures {
    nodes: usize,
    in_view: usize,
    load_ms: f64,
    graph_ms: f64,
    fps: f64,
    long_tasks: usize,
    longest_ms: f64,
}

async fn measure(browser: &Client, port: u16, nodes: usize, window: Duration) -> Figures {
    browser
        .goto(&format!("http://127.0.0.1:{port}/"))
        .await
        .expect("the page");
    // Polled from here: the time is the page's own clock when the page knew every processor
    // and had drawn (measured, made visible) the nodes in view. Past 60 processors the page
    // draws only what is in view.
    let drawn = r#"
        const counts = document.querySelector('.counts');
        const nodes = Array.from(document.querySelectorAll('.react-flow__node'));
        const shown = nodes.filter((n) => getComputedStyle(n).visibility !== 'hidden').length;
        const known = !!counts && counts.textContent.startsWith(arguments[0] + ' processors');
        return [known && nodes.length > 0 && shown === nodes.length, performance.now(), shown];
    "#;
    let deadline = Instant::now() + PATIENCE;
    let (graph_ms, in_view) = loop {
        let seen = browser
            .execute(drawn, vec![json!(nodes)])
            .await
            .expect("a script");
        if seen[0].as_bool() == Some(true) {
            break (
                seen[1].as_f64().unwrap_or(f64::NAN),
                seen[2].as_u64().unwrap_or(0) as usize,
            );
        }
        assert!(
            Instant::now() < deadline,
            "the page never drew the graph of {nodes}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let load = browser
        .execute(
            "const n = performance.getEntriesByType('navigation')[0]; return n ? n.loadEventEnd : null;",
            vec![],
        )
        .await
        .expect("a script");
    // Settled: the first refreshes and previews are in.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let script = r#"
        const done = arguments[arguments.length - 1];
        const window_ms = arguments[0];
        const long = [];
        const observer = new PerformanceObserver((list) => { for (const e of list.getEntries()) long.push(e.duration); });
        observer.observe({ type: "longtask" });
        let frames = 0;
        const start = performance.now();
        const tick = () => {
            frames++;
            const now = performance.now();
            if (now - start < window_ms) requestAnimationFrame(tick);
            else { observer.disconnect(); done({ fps: frames * 1000 / (now - start), long }); }
        };
        requestAnimationFrame(tick);
    "#;
    browser
        .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
            Some(window + PATIENCE),
            Some(PATIENCE),
            Some(Duration::ZERO),
        ))
        .await
        .expect("timeouts");
    let result = browser
        .execute_async(script, vec![json!(window.as_millis() as u64)])
        .await
        .expect("the frame-rate script");
    let long: Vec<f64> = result["long"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    Figures {
        nodes,
        in_view,
        load_ms: load.as_f64().unwrap_or(f64::NAN),
        graph_ms,
        fps: result["fps"].as_f64().unwrap_or(f64::NAN),
        long_tasks: long.len(),
        longest_ms: long.iter().copied().fold(0.0, f64::max),
    }
}

fn main() {
    if Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: chromedriver is not installed (bash scripts/install-system-deps.sh)");
        if std::env::var_os("CI").is_some() {
            std::process::exit(1);
        }
        return;
    }
    let pairs = if *QUICK { 10 } else { 100 };
    let window = if *QUICK {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    let dir =
        std::env::temp_dir().join(format!("streamlib-bench-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let graph = dir.join("big.json");
    std::fs::write(&graph, big_graph(pairs).to_string()).expect("the graph file");
    let graph = graph.to_str().expect("a UTF-8 path").to_string();

    let driver_port = free_port();
    let _driver = Group(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver"),
    );
    wait_for_port(driver_port, "chromedriver");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let media = dir.join("media");
    let rows = rt.block_on(async {
        let mut rows = Vec::new();
        let big = format!("{}-processor graph", pairs * 2);
        for (name, args, nodes) in [
            ("demo graph (peer)", vec!["serve", "--demo"], 5),
            (
                big.as_str(),
                vec!["serve", "--graph", graph.as_str()],
                pairs * 2,
            ),
        ] {
            let (_server, port) = serve(&args, &media);
            let browser = session(driver_port).await;
            let figures = measure(&browser, port, nodes, window).await;
            let _ = browser.close().await;
            rows.push((name.to_string(), figures));
        }
        rows
    });
    println!(
        "{:<22} {:>6} {:>8} {:>10} {:>14} {:>8} {:>17} {:>12}",
        "graph", "nodes", "in view", "load", "graph drawn", "fps", "long tasks >50ms", "longest"
    );
    for (name, f) in &rows {
        println!(
            "{:<22} {:>6} {:>8} {:>7.0} ms {:>11.0} ms {:>8.1} {:>17} {:>9.0} ms",
            name, f.nodes, f.in_view, f.load_ms, f.graph_ms, f.fps, f.long_tasks, f.longest_ms
        );
    }
    println!(
        "(window {} s, headless Chromium at 1280x720)",
        window.as_secs()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
