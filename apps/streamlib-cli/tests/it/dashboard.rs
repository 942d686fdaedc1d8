//! The dashboard in a real browser: headless Chromium driven through chromedriver (WebDriver)
//! against a real `streamlib serve`. Screenshots go to `target/dashboard-screenshots/`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::common::{self, PATIENCE, streamlib};

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    /// `None` (with a note) where Chromium is not installed; under CI its absence fails.
    fn start() -> Option<Self> {
        if Command::new("chromedriver")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "chromedriver is not installed"
            );
            eprintln!(
                "SKIPPED: chromedriver is not installed (scripts/install-system-deps.sh installs chromium and chromium-driver)"
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        // A process group of its own: the browsers it starts go with it, also when a test
        // panics before closing its session.
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { child, port })
    }

    /// A headless browser session with its console logged.
    async fn session(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_string(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,720"]}),
        );
        caps.insert("goog:loggingPrefs".to_string(), json!({"browser": "ALL"}));
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap()
    }

    /// The browser console's messages at level SEVERE since the last call (chromedriver's
    /// log endpoint).
    async fn console_errors(&self, browser: &Client) -> Vec<String> {
        let session = browser.session_id().await.unwrap().unwrap();
        let logs = self.post(
            &format!("/session/{session}/se/log"),
            &json!({"type": "browser"}),
        );
        logs["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["level"] == "SEVERE")
            .map(|l| l["message"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Driver {
    /// A POST to chromedriver, read by its Content-Length (it keeps connections open).
    fn post(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        use std::io::{BufRead, BufReader, Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let body = body.to_string();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut length = 0;
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "chromedriver answered {status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut bytes = vec![0; length];
        reader.read_exact(&mut bytes).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// A `streamlib serve`, stopped when dropped (a failing test does not leave it running).
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        common::terminate(&self.0);
        let _ = self.0.wait();
    }
}

/// Waits until `f` gives `Some`, or fails saying `what`.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text content of the elements matching `css` (also of those the browser would not call
/// visible, such as labels drawn over an SVG).
async fn contents(browser: &Client, css: &str) -> Vec<String> {
    let script =
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent);";
    let value = browser.execute(script, vec![json!(css)]).await.unwrap();
    value
        .as_array()
        .map(|all| {
            all.iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn screenshot(name: &str, png: &[u8]) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// What the page's nodes and edge labels say.
async fn texts(browser: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in browser.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.text().await.unwrap_or_default());
    }
    out
}

#[test]
fn the_dashboard_shows_the_demo_graph_live_and_starts_and_stops_it() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let media = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-media");
    let mut command = streamlib();
    command
        .args(["serve", "--demo", "--port", "0", "--media-dir"])
        .arg(media)
        .env_remove("STREAMLIB_API_TOKEN");
    let (server, port) = common::serving(command);
    let _server = Served(server);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let browser = driver.session().await;
        browser
            .goto(&format!("http://127.0.0.1:{port}/"))
            .await
            .unwrap();
        // The status, the five processors with their states, the five links with figures.
        until("the runtime's status", || async {
            let status = browser
                .find(Locator::Css("[data-testid=status]"))
                .await
                .ok()?;
            (status.text().await.ok()? == "running").then_some(())
        })
        .await;
        let nodes = until("the demo's processors", || async {
            let nodes = texts(&browser, ".react-flow__node").await;
            (nodes.len() == 5).then_some(nodes)
        })
        .await;
        for id in ["pattern", "passthrough", "chord", "levels", "sink"] {
            assert!(
                nodes
                    .iter()
                    .any(|n| n.starts_with(id) && n.contains("running")),
                "{id}: {nodes:?}"
            );
        }
        let labels = until("live figures on the links", || async {
            let labels = contents(&browser, ".edge-label").await;
            (labels.len() == 5
                && labels
                    .iter()
                    .all(|l| l.contains("fps") && !l.starts_with("0.0")))
            .then_some(labels)
        })
        .await;
        assert!(
            labels
                .iter()
                .all(|l| l.contains("dropped") && l.contains("ms")),
            "{labels:?}"
        );
        // The live preview of the pattern changes: later frames arrive.
        let frame = || async {
            let img = browser
                .find(Locator::Css(
                    ".react-flow__node[data-id=pattern] img.preview",
                ))
                .await
                .ok()?;
            img.attr("data-frame").await.ok()??.parse::<u64>().ok()
        };
        let first = until("a preview image", frame).await;
        until("a later preview image", || async {
            frame().await.filter(|n| *n > first)
        })
        .await;
        // The audio meter and the data frame.
        until("level meters", || async {
            let meters = browser
                .find_all(Locator::Css(".react-flow__node[data-id=chord] .meter"))
                .await
                .ok()?;
            (meters.len() == 2).then_some(())
        })
        .await;
        until("the last data frame", || async {
            let data = browser
                .find(Locator::Css(
                    ".react-flow__node[data-id=levels] pre.preview",
                ))
                .await
                .ok()?;
            data.text().await.ok()?.contains("peak_dbfs").then_some(())
        })
        .await;
        screenshot("graph", &browser.screenshot().await.unwrap());
        // Stop, then start, from the page: the server agrees.
        browser
            .find(Locator::XPath("//button[text()='Stop']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until("stopped", || async {
            let (_, state) = common::http(port, "GET", "/api/runtime/state", None);
            (state["status"] == "stopped").then_some(())
        })
        .await;
        until("the page to say stopped", || async {
            let status = browser
                .find(Locator::Css("[data-testid=status]"))
                .await
                .ok()?;
            (status.text().await.ok()? == "stopped").then_some(())
        })
        .await;
        // Events from the server show in the log.
        until("events in the log", || async {
            let log = texts(&browser, ".events li").await;
            log.iter()
                .any(|l| l.contains("runtime_stopped") || l.contains("processor_state_changed"))
                .then_some(())
        })
        .await;
        browser
            .find(Locator::XPath("//button[text()='Start']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until("running again", || async {
            let (_, state) = common::http(port, "GET", "/api/runtime/state", None);
            (state["status"] == "running").then_some(())
        })
        .await;
        let errors = driver.console_errors(&browser).await;
        assert!(errors.is_empty(), "console errors: {errors:?}");
        browser.close().await.unwrap();
    });
}

#[test]
fn a_server_with_a_token_asks_for_it_once() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let media = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-media");
    let mut command = streamlib();
    command
        .args([
            "serve",
            "--demo",
            "--port",
            "0",
            "--token",
            "dashboard-token",
            "--media-dir",
        ])
        .arg(media)
        .env_remove("STREAMLIB_API_TOKEN");
    let (server, port) = common::serving(command);
    let _server = Served(server);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let browser = driver.session().await;
        let url = format!("http://127.0.0.1:{port}/");
        browser.goto(&url).await.unwrap();
        // The page itself needs no token; its API calls do: it asks.
        let input = browser
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css("input[type=password]"))
            .await
            .unwrap();
        input.send_keys("wrong-token").await.unwrap();
        browser
            .find(Locator::XPath("//button[text()='Connect']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until("the refusal", || async {
            let alert = browser
                .find(Locator::Css(".token [role=alert]"))
                .await
                .ok()?;
            alert.text().await.ok()?.contains("refused").then_some(())
        })
        .await;
        let input = browser
            .find(Locator::Css("input[type=password]"))
            .await
            .unwrap();
        input.send_keys("dashboard-token").await.unwrap();
        browser
            .find(Locator::XPath("//button[text()='Connect']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until("the graph", || async {
            let nodes = browser
                .find_all(Locator::Css(".react-flow__node"))
                .await
                .ok()?;
            (nodes.len() == 5).then_some(())
        })
        .await;
        // Kept for the tab: a reload does not ask again, and the token is not in the URL.
        browser.refresh().await.unwrap();
        until("the graph after a reload", || async {
            let nodes = browser
                .find_all(Locator::Css(".react-flow__node"))
                .await
                .ok()?;
            (nodes.len() == 5).then_some(())
        })
        .await;
        assert_eq!(browser.current_url().await.unwrap().as_str(), url);
        screenshot("token", &browser.screenshot().await.unwrap());
        // The refused requests before the token are the only console errors (401s).
        let errors: Vec<String> = driver
            .console_errors(&browser)
            .await
            .into_iter()
            .filter(|e| !e.contains("401"))
            .collect();
        assert!(errors.is_empty(), "console errors: {errors:?}");
        browser.close().await.unwrap();
    });
}
