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
        self.session_downloading(None).await
    }

    /// A session whose downloads (if `downloads`) go to that folder.
    async fn session_downloading(&self, downloads: Option<&std::path::Path>) -> Client {
        let mut caps = serde_json::Map::new();
        let mut chrome = json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,720"]});
        if let Some(dir) = downloads {
            chrome["prefs"] = json!({
                "download.default_directory": dir,
                "download.prompt_for_download": false,
            });
        }
        caps.insert("goog:chromeOptions".to_string(), chrome);
        caps.insert("goog:loggingPrefs".to_string(), json!({"browser": "ALL"}));
        let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap();
        viewport_1280x720(&browser).await;
        browser
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

/// Makes the page's viewport (not the window, which counts the browser's own bars) 1280x720.
async fn viewport_1280x720(browser: &Client) {
    let script =
        "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];";
    let bars = browser.execute(script, vec![]).await.unwrap();
    let (w, h) = (bars[0].as_u64().unwrap_or(0), bars[1].as_u64().unwrap_or(0));
    browser
        .set_window_size(1280 + w as u32, 720 + h as u32)
        .await
        .unwrap();
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
        preview_advances(&browser, "pattern").await;
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
        // A port whose input and output share a name: dragging from the output greys the
        // input of the same processor, with the server's reason.
        {
            press_and_move(&browser, "[data-port='out:passthrough.video']", 30.0, 60.0).await;
            let reason = until("its own input greyed", || async {
                let own = browser
                    .find(Locator::Css("[data-port='in:passthrough.video'].target-no"))
                    .await
                    .ok()?;
                own.attr("title").await.ok()?
            })
            .await;
            assert!(reason.contains("itself"), "{reason}");
            release_at(&browser, None).await;
            let (_, links) = common::http(port, "GET", "/api/connections", None);
            assert_eq!(links.as_array().unwrap().len(), 5, "dropped on nothing: no link");
        }
        // Stop, then start, from the page: the server agrees.
        click_xpath(&browser, "//button[text()='Stop']").await;
        server_status(port, "stopped").await;
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
        click_xpath(&browser, "//button[text()='Start']").await;
        server_status(port, "running").await;
        // A narrow window: the panels stack, nothing is wider than the window.
        browser.set_window_size(480, 900).await.unwrap();
        until("the page to fit a narrow window", || async {
            let widths = browser
                .execute(
                    "return [document.documentElement.scrollWidth, window.innerWidth];",
                    vec![],
                )
                .await
                .ok()?;
            (widths[0].as_u64()? <= widths[1].as_u64()?).then_some(())
        })
        .await;
        // The graph is fitted to its new box: every node inside it.
        let inside = "const box = document.querySelector('.react-flow').getBoundingClientRect(); return Array.from(document.querySelectorAll('.react-flow__node')).every((n) => { const r = n.getBoundingClientRect(); return r.left >= box.left - 1 && r.right <= box.right + 1 && r.top >= box.top - 1 && r.bottom <= box.bottom + 1; });";
        until("the graph fitted to the narrow window", || async {
            let fits = browser.execute(inside, vec![]).await.ok()?;
            (fits == json!(true)).then_some(())
        })
        .await;
        screenshot("narrow", &browser.screenshot().await.unwrap());
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
        click_xpath(&browser, "//button[text()='Connect']").await;
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
        click_xpath(&browser, "//button[text()='Connect']").await;
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

/// Clicks the element `css` names.
async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// Clicks the element `xpath` names (a button by its text, say).
async fn click_xpath(browser: &Client, xpath: &str) {
    browser
        .find(Locator::XPath(xpath))
        .await
        .unwrap_or_else(|e| panic!("{xpath}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {xpath}: {e}"));
}

/// Replaces the text of the input `css` names with `text` as a person does (select all, type),
/// then leaves it (Tab: the edit is finished). WebDriver's "clear" would set the value under
/// React's feet, which puts it back.
async fn type_into(browser: &Client, css: &str, text: &str) {
    let input = browser.find(Locator::Css(css)).await.unwrap();
    input
        .send_keys(&format!("\u{E009}a\u{E009}{text}\u{E004}"))
        .await
        .unwrap();
}

/// Presses the mouse at the centre of `css` and moves it by (`dx`, `dy`) in two steps, keeping
/// the button down. At coordinates of the page as it is: moving "to an element" would first
/// scroll it into view, and scrolling the graph's box moves the graph under the pointer.
async fn press_and_move(browser: &Client, css: &str, dx: f64, dy: f64) {
    use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
    let (x, y) = centre(browser, css).await;
    let step = |x: f64, y: f64| PointerAction::MoveBy {
        duration: Some(Duration::from_millis(100)),
        x,
        y,
    };
    let press = MouseActions::new("mouse".to_string())
        .then(PointerAction::MoveTo {
            duration: None,
            x,
            y,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(step(dx / 2.0, dy / 2.0))
        .then(step(dx / 2.0, dy / 2.0));
    browser.perform_actions(press).await.unwrap();
}

/// Releases the mouse button pressed by [`press_and_move`], over the centre of `css` if given.
async fn release_at(browser: &Client, css: Option<&str>) {
    use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
    let mut release = MouseActions::new("mouse".to_string());
    if let Some(css) = css {
        let (x, y) = centre(browser, css).await;
        release = release.then(PointerAction::MoveTo {
            duration: Some(Duration::from_millis(150)),
            x,
            y,
        });
    }
    let release = release.then(PointerAction::Up {
        button: MOUSE_BUTTON_LEFT,
    });
    browser.perform_actions(release).await.unwrap();
    browser.release_actions().await.unwrap();
}

/// The centre of the element `css` names, in the page's viewport (whole pixels), once it has
/// stayed put for 300 ms (the view is fitted to the graph after a change, and may be moving).
async fn centre(browser: &Client, css: &str) -> (f64, f64) {
    let script = "const e = document.querySelector(arguments[0]); if (!e) return null; const r = e.getBoundingClientRect(); return [Math.round(r.x + r.width / 2), Math.round(r.y + r.height / 2)];";
    let at = || async {
        let at = browser.execute(script, vec![json!(css)]).await.ok()?;
        Some((at[0].as_f64()?, at[1].as_f64()?))
    };
    until(&format!("{css} in place"), || async {
        let before = at().await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        (at().await? == before).then_some(before)
    })
    .await
}

/// The text of the first element matching `css`, once there is one.
async fn text_of(browser: &Client, css: &str) -> String {
    until(css, || async {
        let found = browser.find(Locator::Css(css)).await.ok()?;
        found.text().await.ok()
    })
    .await
}

/// Waits for a live preview image of processor `id`, then for a later frame of it.
async fn preview_advances(browser: &Client, id: &str) {
    let css = format!(".react-flow__node[data-id={id}] img.preview");
    let frame = || async {
        let img = browser.find(Locator::Css(&css)).await.ok()?;
        img.attr("data-frame").await.ok()??.parse::<u64>().ok()
    };
    let first = until("a preview image", frame).await;
    until("a later preview image", || async {
        frame().await.filter(|n| *n > first)
    })
    .await;
}

/// Waits until the server's runtime says `status` (`running`, `stopped`).
async fn server_status(port: u16, status: &str) {
    until(status, || async {
        let (_, state) = common::http(port, "GET", "/api/runtime/state", None);
        (state["status"] == status).then_some(())
    })
    .await;
}

/// Mean red, green and blue of the live preview image of processor `id` around (fx, fy), as
/// fractions of its width and height: drawn onto a canvas in the page.
async fn preview_colour(browser: &Client, id: &str, fx: f64, fy: f64) -> Option<[f64; 3]> {
    let script = r#"
        const img = document.querySelector(`.react-flow__node[data-id="${arguments[0]}"] img.preview`);
        if (!img || !img.complete || img.naturalWidth === 0) return null;
        const c = document.createElement("canvas");
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext("2d");
        g.drawImage(img, 0, 0);
        const x = Math.floor(c.width * arguments[1]) - 2, y = Math.floor(c.height * arguments[2]) - 2;
        const d = g.getImageData(x, y, 4, 4).data;
        let r = 0, gr = 0, b = 0;
        for (let i = 0; i < d.length; i += 4) { r += d[i]; gr += d[i + 1]; b += d[i + 2]; }
        return [r / 16, gr / 16, b / 16];
    "#;
    let value = browser
        .execute(script, vec![json!(id), json!(fx), json!(fy)])
        .await
        .ok()?;
    let all = value.as_array()?;
    Some([all[0].as_f64()?, all[1].as_f64()?, all[2].as_f64()?])
}

/// The server's graph document.
fn graph_of(port: u16) -> serde_json::Value {
    let (status, doc) = common::http(port, "GET", "/api/graph", None);
    assert_eq!(status, 200, "{doc}");
    doc
}

fn session_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_graph_is_built_connected_and_steered_from_the_page() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let media = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-build");
    let mut command = streamlib();
    command
        .args(["serve", "--port", "0", "--media-dir"])
        .arg(media)
        .env_remove("STREAMLIB_API_TOKEN");
    let (server, port) = common::serving(command);
    let _server = Served(server);
    session_runtime().block_on(async {
        let browser = driver.session().await;
        browser
            .goto(&format!("http://127.0.0.1:{port}/"))
            .await
            .unwrap();
        // The palette: searched, a type chosen, its form generated from the config schema.
        let search = browser
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css("input[aria-label='search processor types']"))
            .await
            .unwrap();
        search.send_keys("colour bars").await.unwrap();
        until("the palette filtered", || async {
            let shown = browser
                .find_all(Locator::Css(".palette li button"))
                .await
                .ok()?;
            (shown.len() == 1).then_some(())
        })
        .await;
        click(&browser, ".palette button[data-type=TestPatternProcessor]").await;
        type_into(&browser, "#add-id", "tp").await;
        // The form knows the schema: the pattern is a choice of three, fps is marked live.
        let options = contents(&browser, "#add-pattern option").await;
        assert_eq!(options, ["bars", "gradient", "checkerboard"]);
        assert!(
            text_of(&browser, ".add-dialog .field[data-field=fps] label")
                .await
                .contains("live")
        );
        // A value the server refuses: its message at the field, nothing added.
        type_into(&browser, "#add-width", "5").await;
        click(&browser, ".add-dialog button[type=submit]").await;
        let message = text_of(
            &browser,
            ".add-dialog .field[data-field=width] .field-error",
        )
        .await;
        assert!(message.contains("between 16 and 7680"), "{message}");
        assert!(graph_of(port)["processors"].as_array().unwrap().is_empty());
        screenshot("add-form-error", &browser.screenshot().await.unwrap());
        type_into(&browser, "#add-width", "320").await;
        type_into(&browser, "#add-height", "180").await;
        click(&browser, ".add-dialog button[type=submit]").await;
        until("the pattern on the graph", || async {
            browser
                .find(Locator::Css(".react-flow__node[data-id=tp]"))
                .await
                .ok()
        })
        .await;
        // The sink, with its defaults.
        let search = browser
            .find(Locator::Css("input[aria-label='search processor types']"))
            .await
            .unwrap();
        search
            .send_keys("\u{E009}a\u{E009}CountingSink")
            .await
            .unwrap();
        click(&browser, ".palette button[data-type=CountingSinkProcessor]").await;
        type_into(&browser, "#add-id", "cs").await;
        click(&browser, ".add-dialog button[type=submit]").await;
        until("the sink on the graph", || async {
            browser
                .find(Locator::Css(".react-flow__node[data-id=cs]"))
                .await
                .ok()
        })
        .await;
        // Connect by dragging from the pattern's output: the sink's video input lights up,
        // its audio input is greyed with the server's reason.
        press_and_move(&browser, "[data-port='out:tp.video']", 40.0, 10.0).await;
        let reason = until("targets lit up", || async {
            browser
                .find(Locator::Css("[data-port='in:cs.video'].target-ok"))
                .await
                .ok()?;
            let no = browser
                .find(Locator::Css("[data-port='in:cs.audio'].target-no"))
                .await
                .ok()?;
            no.attr("title").await.ok()?
        })
        .await;
        assert!(reason.contains("frame types differ"), "{reason}");
        screenshot("connecting", &browser.screenshot().await.unwrap());
        release_at(&browser, Some("[data-port='in:cs.video']")).await;
        until("the link made", || async {
            let (_, links) = common::http(port, "GET", "/api/connections", None);
            let links = links.as_array()?.clone();
            (links.len() == 1).then_some(())
        })
        .await;
        // The live preview changes over time.
        preview_advances(&browser, "tp").await;
        // Colour bars: the last bar (at the right) is blue.
        until("the blue bar", || async {
            let [r, _, b] = preview_colour(&browser, "tp", 0.97, 0.5).await?;
            (b > r + 60.0).then_some(())
        })
        .await;
        // The inspector: a live field changed in place, the preview follows (the gradient is
        // red at the right).
        click(&browser, ".react-flow__node[data-id=tp] .node-head").await;
        let restarts_before = processor(port, "tp")["counters"]["restarts"]
            .as_u64()
            .unwrap();
        browser
            .find(Locator::Css("#cfg-tp-pattern"))
            .await
            .unwrap()
            .select_by_value("gradient")
            .await
            .unwrap();
        until("the gradient in the preview", || async {
            let [r, _, b] = preview_colour(&browser, "tp", 0.97, 0.5).await?;
            (r > b + 60.0).then_some(())
        })
        .await;
        assert_eq!(processor(port, "tp")["config"]["pattern"], "gradient");
        assert_eq!(
            processor(port, "tp")["counters"]["restarts"]
                .as_u64()
                .unwrap(),
            restarts_before,
            "a live field restarts nothing"
        );
        // A bad live value: the server's message at the field, the config in force kept.
        type_into(&browser, "#cfg-tp-fps", "5000").await;
        let message = text_of(&browser, ".inspector .field[data-field=fps] .field-error").await;
        assert!(message.contains("between 0.1 and 1000"), "{message}");
        assert_eq!(processor(port, "tp")["config"]["fps"], 30.0);
        screenshot("inspector", &browser.screenshot().await.unwrap());
        // A field that is not live waits behind "Apply and restart".
        type_into(&browser, "#cfg-tp-fps", "25").await;
        until("fps applied", || async {
            (processor(port, "tp")["config"]["fps"] == 25.0).then_some(())
        })
        .await;
        type_into(&browser, "#cfg-tp-width", "256").await;
        assert_eq!(processor(port, "tp")["config"]["width"], 320);
        click(&browser, ".inspector button.primary").await;
        until("the restart with the new width", || async {
            let p = processor(port, "tp");
            (p["config"]["width"] == 256
                && p["counters"]["restarts"].as_u64()? > restarts_before
                && p["state"] == "running")
                .then_some(())
        })
        .await;
        // Stop and start from the header.
        click(&browser, "header button:nth-of-type(2)").await;
        server_status(port, "stopped").await;
        click(&browser, "header button:nth-of-type(1)").await;
        server_status(port, "running").await;
        // Remove the link (selected on the graph, removed from its inspector), then the sink.
        let (_, links) = common::http(port, "GET", "/api/connections", None);
        assert_eq!(links.as_array().unwrap().len(), 1, "{links}");
        click(&browser, ".react-flow__edge .react-flow__edge-interaction").await;
        click(&browser, ".inspector button").await;
        until("the link removed", || async {
            let (_, links) = common::http(port, "GET", "/api/connections", None);
            links.as_array()?.is_empty().then_some(())
        })
        .await;
        click(&browser, ".react-flow__node[data-id=cs] .node-head").await;
        let remove = "//section[contains(@class,'inspector')]//button[text()='Remove']";
        click_xpath(&browser, remove).await;
        click_xpath(
            &browser,
            "//section[contains(@class,'inspector')]//button[text()='Remove for good?']",
        )
        .await;
        until("the sink removed", || async {
            let ids: Vec<String> = graph_of(port)["processors"]
                .as_array()?
                .iter()
                .map(|p| p["id"].as_str().unwrap_or("").to_string())
                .collect();
            (ids == ["tp"]).then_some(())
        })
        .await;
        // Nodes were clicked (selected), never moved: nothing is placed in the document.
        assert!(graph_of(port).get("ui").is_none(), "{}", graph_of(port));
        let errors = driver.console_errors(&browser).await;
        // The refused values answered 422: the console reports those requests, nothing else.
        let errors: Vec<&String> = errors.iter().filter(|e| !e.contains("422")).collect();
        assert!(errors.is_empty(), "console errors: {errors:?}");
        browser.close().await.unwrap();
    });
}

/// One processor's details from the server.
fn processor(port: u16, id: &str) -> serde_json::Value {
    let (status, info) = common::http(port, "GET", &format!("/api/processors/{id}"), None);
    assert_eq!(status, 200, "{info}");
    info
}

/// The node of `id`'s place on the page (its transform), as the page draws it.
async fn node_transform(browser: &Client, id: &str) -> Option<String> {
    let script = "const n = document.querySelector(`.react-flow__node[data-id=\"${arguments[0]}\"]`); return n ? n.style.transform : null;";
    let value = browser.execute(script, vec![json!(id)]).await.ok()?;
    value.as_str().map(str::to_string)
}

/// The x and y of a node's `translate(Xpx, Ypx)`.
fn translate(transform: &str) -> (f64, f64) {
    let numbers: Vec<f64> = transform
        .trim_start_matches("translate(")
        .trim_end_matches(')')
        .split(", ")
        .filter_map(|n| n.trim_end_matches("px").parse().ok())
        .collect();
    match numbers[..] {
        [x, y] => (x, y),
        _ => panic!("not a translation: {transform}"),
    }
}

#[test]
fn an_import_shows_its_plan_first_and_two_tabs_see_each_others_changes() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-import");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = streamlib();
    command
        .args(["serve", "--demo", "--port", "0", "--media-dir"])
        .arg(dir.join("media"))
        .env_remove("STREAMLIB_API_TOKEN");
    let (server, port) = common::serving(command);
    let _server = Served(server);
    session_runtime().block_on(async {
        let browser = driver
            .session_downloading(Some(&dir.join("downloads")))
            .await;
        let url = format!("http://127.0.0.1:{port}/");
        browser.goto(&url).await.unwrap();
        until("the demo's processors", || async {
            let nodes = browser.find_all(Locator::Css(".react-flow__node")).await.ok()?;
            (nodes.len() == 5).then_some(())
        })
        .await;
        // Exported from the page (a download), then changed by hand: the pattern slower, one
        // processor more.
        click(&browser, "header button:nth-of-type(3)").await;
        let exported = dir.join("downloads").join("graph.json");
        let mut doc: serde_json::Value = until("the exported graph", || async {
            let text = std::fs::read(&exported).ok()?;
            serde_json::from_slice(&text).ok()
        })
        .await;
        // The server's document (numbers as JavaScript writes them: 30.0 is 30): applied
        // back, it changes nothing.
        assert_eq!(doc["revision"], graph_of(port)["revision"]);
        let (status, plan) =
            common::http(port, "PUT", "/api/graph?dry_run=true", Some(doc.clone()));
        assert_eq!(status, 200, "{plan}");
        assert_eq!(plan["actions"], json!([]), "{plan}");
        doc["processors"][0]["config"]["fps"] = json!(10.0);
        doc["processors"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": "extra", "type": "TestPatternProcessor", "config": {"width": 64, "height": 64}}));
        let file = dir.join("changed.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        let upload = browser
            .find(Locator::Css("[data-testid=import-file]"))
            .await
            .unwrap();
        upload.send_keys(file.to_str().unwrap()).await.unwrap();
        // The plan is shown; nothing has changed yet.
        let plan = until("the plan", || async {
            let plan = contents(&browser, ".import-dialog .plan li").await;
            (!plan.is_empty()).then_some(plan)
        })
        .await;
        assert!(
            plan.iter().any(|a| a.starts_with("reconfigure") && a.contains("pattern")),
            "{plan:?}"
        );
        assert!(
            plan.iter().any(|a| a.starts_with("add") && a.contains("extra")),
            "{plan:?}"
        );
        assert_eq!(graph_of(port)["processors"].as_array().unwrap().len(), 5);
        screenshot("import-plan", &browser.screenshot().await.unwrap());
        click_xpath(&browser, "//dialog//button[text()='Apply']").await;
        until("applied", || async {
            contents(&browser, ".import-dialog [role=status]")
                .await
                .iter()
                .any(|s| s.starts_with("Applied"))
                .then_some(())
        })
        .await;
        let now = graph_of(port);
        assert_eq!(now["processors"].as_array().unwrap().len(), 6);
        assert_eq!(now["processors"][0]["config"]["fps"], 10.0);
        click_xpath(&browser, "//dialog//button[text()='Close']").await;
        // The graph changes elsewhere between the plan and the apply: said, not overwritten.
        let mut back = graph_of(port);
        back["processors"].as_array_mut().unwrap().pop();
        let file = dir.join("without-extra.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&back).unwrap()).unwrap();
        let upload = browser
            .find(Locator::Css("[data-testid=import-file]"))
            .await
            .unwrap();
        upload.send_keys(file.to_str().unwrap()).await.unwrap();
        until("the second plan", || async {
            contents(&browser, ".import-dialog .plan li")
                .await
                .iter()
                .any(|a| a.starts_with("remove") && a.contains("extra"))
                .then_some(())
        })
        .await;
        let (status, _) = common::http(
            port,
            "PATCH",
            "/api/processors/pattern/config",
            Some(json!({"fps": 12.0})),
        );
        assert_eq!(status, 200);
        click_xpath(&browser, "//dialog//button[text()='Apply']").await;
        let said = text_of(&browser, ".import-dialog .error").await;
        assert!(said.contains("changed elsewhere"), "{said}");
        assert_eq!(graph_of(port)["processors"].as_array().unwrap().len(), 6);
        click_xpath(&browser, "//dialog//button[text()='Cancel']").await;
        assert_eq!(graph_of(port)["processors"].as_array().unwrap().len(), 6);

        // Two pages open at once (two windows of one browser; a background tab is not drawn):
        // a change made in one shows in the other through the event stream.
        let first = browser.window().await.unwrap();
        let second = browser.new_window(false).await.unwrap().handle;
        browser.switch_to_window(second.clone()).await.unwrap();
        browser.goto(&url).await.unwrap();
        until("the graph in the second tab", || async {
            let nodes = browser.find_all(Locator::Css(".react-flow__node")).await.ok()?;
            (nodes.len() == 6).then_some(())
        })
        .await;
        // A node dragged in the second window keeps its place in the graph document, and the
        // first window draws it there.
        let (_, laid_y) = translate(&node_transform(&browser, "extra").await.unwrap());
        press_and_move(&browser, ".react-flow__node[data-id=extra] .node-head", 0.0, 80.0).await;
        release_at(&browser, None).await;
        let placed = until("the position in the document", || async {
            let doc = graph_of(port);
            let at = doc["ui"]["positions"]["extra"].clone();
            at.is_object().then_some(at)
        })
        .await;
        // Dragged 80 pixels down: lower in the document than where the layout had put it.
        assert!(
            placed["y"].as_f64().unwrap() > laid_y + 20.0,
            "{placed}, laid at {laid_y}"
        );
        let saved = format!(
            "translate({}px, {}px)",
            placed["x"].as_f64().unwrap(),
            placed["y"].as_f64().unwrap()
        );
        // The second window inspects the pattern again (the drag selected the node dragged).
        click(&browser, ".react-flow__node[data-id=pattern] .node-head").await;
        until("the pattern's inspector in the second window", || async {
            browser.find(Locator::Css("#cfg-pattern-pattern")).await.ok()
        })
        .await;
        browser.switch_to_window(first.clone()).await.unwrap();
        until("the moved node in the first window, where the document has it", || async {
            (node_transform(&browser, "extra").await? == saved).then_some(())
        })
        .await;
        // A config change in the first window shows in the second's inspector and log.
        click(&browser, ".react-flow__node[data-id=pattern] .node-head").await;
        browser
            .find(Locator::Css("#cfg-pattern-pattern"))
            .await
            .unwrap()
            .select_by_value("checkerboard")
            .await
            .unwrap();
        browser.switch_to_window(second).await.unwrap();
        until("the change in the second window", || async {
            let select = browser.find(Locator::Css("#cfg-pattern-pattern")).await.ok()?;
            (select.prop("value").await.ok()?? == "checkerboard").then_some(())
        })
        .await;
        until("the event in the second window's log", || async {
            texts(&browser, ".events li")
                .await
                .iter()
                .any(|l| l.contains("config_changed") && l.contains("pattern"))
                .then_some(())
        })
        .await;
        screenshot("second-tab", &browser.screenshot().await.unwrap());
        // The position is part of the document: exported, and applied back unchanged.
        let doc = graph_of(port);
        let (status, plan) = common::http(port, "PUT", "/api/graph?dry_run=true", Some(doc));
        assert_eq!(status, 200, "{plan}");
        assert_eq!(plan["actions"], json!([]), "{plan}");
        // The 412 the page was answered (and said) is the only console error.
        let errors: Vec<String> = driver
            .console_errors(&browser)
            .await
            .into_iter()
            .filter(|e| !e.contains("412"))
            .collect();
        assert!(errors.is_empty(), "console errors: {errors:?}");
        browser.close().await.unwrap();
    });
}
