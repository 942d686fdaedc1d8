//! Graph files: TOML as well as JSON, `streamlib validate`, and `serve --save` writing every
//! change back (atomically, keeping a TOML file's comments) so the next start has the same
//! graph — also when the server is killed with SIGKILL at any moment.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

/// A fresh folder for one test.
fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("graph-files-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const GRAPH_TOML: &str = r#"# The studio graph.
# Keep the pattern small: it is only a test signal.

[[processors]]
id = "src"            # the source
type = "TestPatternProcessor"
config = { width = 32, height = 32, fps = 30.0 }

[[processors]]
id = "sink"
type = "CountingSinkProcessor"

# Wiring
[[connections]]
from = "src.video"
to = "sink.video"
"#;

fn serve_saving(dir: &Path, file: &Path) -> (Child, u16) {
    let mut command = streamlib();
    command
        .args(["serve", "--port", "0", "--save", "--graph"])
        .arg(file)
        .arg("--media-dir")
        .arg(dir.join("media"));
    serving(command)
}

/// Waits until `file` holds text for which `ok` is true; returns it.
fn wait_for_file(file: &Path, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if ok(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the file never got there; it is:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_graph_file_placing_an_unknown_processor_is_refused_naming_the_place() {
    let dir = folder("ui-unknown");
    let file = dir.join("graph.json");
    std::fs::write(
        &file,
        json!({
            "processors": [{"id": "src", "type": "TestPatternProcessor"}],
            "ui": {"positions": {"ghost": {"x": 0, "y": 0}}}
        })
        .to_string(),
    )
    .unwrap();
    let out = streamlib()
        .args(["run", "--duration", "1"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ui.positions.ghost") && stderr.contains("not a processor"),
        "{stderr}"
    );
}

#[test]
fn validate_lists_every_problem_with_its_line_and_column() {
    let dir = folder("validate");
    let good = dir.join("good.toml");
    std::fs::write(&good, GRAPH_TOML).unwrap();
    let out = streamlib().arg("validate").arg(&good).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("ok (2 processors, 1 connections)"),
        "{stdout}"
    );

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        GRAPH_TOML
            .replace("width = 32", "width = 3")
            .replace("CountingSinkProcessor", "NoSuchSink")
            + "\n[[connections]]\nfrom = \"ghost.video\"\nto = \"sink.video\"\n",
    )
    .unwrap();
    let out = streamlib().arg("validate").arg(&bad).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let name = bad.display().to_string();
    for expected in [
        format!("{name}:7:20: processors[0].config.width: must be between 16 and 7680, got 3"),
        format!("{name}:11:8: processors[1].type: unknown processor type 'NoSuchSink'"),
        format!("{name}:19:8: connections[1].from: processor 'ghost' is not in the document"),
        format!("{name}: 3 problem(s); nothing was run"),
    ] {
        assert!(
            stdout.contains(&expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    // A JSON file is checked the same way (places without lines).
    let json_file = dir.join("bad.json");
    std::fs::write(
        &json_file,
        json!({"processors": [{"id": "a", "type": "Nope"}]}).to_string(),
    )
    .unwrap();
    let out = streamlib()
        .arg("validate")
        .arg(&json_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("processors[0].type: unknown processor type 'Nope'"),
        "{stdout}"
    );
    // A syntax error is a problem too, with its line.
    std::fs::write(&bad, "[[processors]\n").unwrap();
    let out = streamlib().arg("validate").arg(&bad).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("{name}:1:14: unclosed array table")),
        "{stdout}"
    );
}

#[test]
fn run_reads_a_toml_graph() {
    let dir = folder("run-toml");
    let file = dir.join("graph.toml");
    std::fs::write(&file, GRAPH_TOML).unwrap();
    let out = streamlib()
        .arg("run")
        .arg(&file)
        .args(["--duration", "0.5"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sink = report["processors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "sink")
        .unwrap();
    assert!(
        sink["metrics"]["video_frames"].as_u64().unwrap() > 3,
        "{report}"
    );
}

#[test]
fn serve_saves_every_change_keeping_the_comments_and_the_next_start_has_the_same_graph() {
    let dir = folder("save-toml");
    let file = dir.join("graph.toml");
    std::fs::write(&file, GRAPH_TOML).unwrap();
    let (server, port) = serve_saving(&dir, &file);
    let (status, body) = http(
        port,
        "PATCH",
        "/api/processors/src/config",
        Some(json!({"pattern": "checkerboard"})),
    );
    assert_eq!(status, 200, "{body}");
    let text = wait_for_file(&file, |t| t.contains("checkerboard"));
    // One field added to the inline table; every other line as the user wrote it.
    let (was, now): (Vec<&str>, Vec<&str>) = (GRAPH_TOML.lines().collect(), text.lines().collect());
    assert_eq!(was.len(), now.len(), "{text}");
    for (a, b) in was.iter().zip(&now) {
        if a.starts_with("config = {") {
            assert!(
                b.starts_with("config = { width = 32, height = 32, fps = 30.0"),
                "{b}"
            );
            assert!(b.contains("pattern = \"checkerboard\""), "{b}");
        } else {
            assert_eq!(a, b);
        }
    }
    let (status, body) = http(
        port,
        "POST",
        "/api/processors",
        Some(
            json!({"processor_type": "ChordGeneratorProcessor", "id": "tone", "config": {"amplitude": 0.5}}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    let text = wait_for_file(&file, |t| t.contains("tone"));
    assert!(
        text.starts_with("# The studio graph.\n# Keep the pattern small"),
        "{text}"
    );
    assert!(
        text.contains("id = \"src\"            # the source"),
        "{text}"
    );
    assert!(
        text.contains("[[processors]]\nid = \"tone\"\ntype = \"ChordGeneratorProcessor\"\nconfig = { amplitude = 0.5 }\n"),
        "{text}"
    );
    // Where the dashboard draws a processor is written too, and comes back.
    let (status, body) = http(
        port,
        "PATCH",
        "/api/graph/ui",
        Some(json!({"positions": {"src": {"x": 40.0, "y": -12.5}}})),
    );
    assert_eq!(status, 200, "{body}");
    let text = wait_for_file(&file, |t| t.contains("[ui.positions]"));
    assert!(
        text.ends_with("\n[ui.positions]\nsrc = { x = 40.0, y = -12.5 }\n"),
        "{text}"
    );
    let (_, before) = http(port, "GET", "/api/graph", None);
    terminate(&server);
    let mut server = server;
    assert!(server.wait().unwrap().success());

    // The next start loads the same graph from the file, drawn the same.
    let (server, port) = serve_saving(&dir, &file);
    let (_, after) = http(port, "GET", "/api/graph", None);
    assert_eq!(after["processors"], before["processors"]);
    assert_eq!(after["connections"], before["connections"]);
    assert_eq!(
        after["ui"],
        json!({"positions": {"src": {"x": 40.0, "y": -12.5}}})
    );
    let mut server = server;
    terminate(&server);
    assert!(server.wait().unwrap().success());
}

#[test]
fn a_change_made_just_before_exit_is_written_and_the_server_exits() {
    let dir = folder("save-at-exit");
    let file = dir.join("graph.json");
    let (mut server, port) = serve_saving(&dir, &file);
    assert!(
        !file.exists(),
        "a missing file is created at the first change, not before"
    );
    let (status, body) = http(
        port,
        "POST",
        "/api/processors",
        Some(
            json!({"processor_type": "TestPatternProcessor", "id": "late", "config": {"width": 64}}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    // At once, well inside the write-back's debounce.
    terminate(&server);
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    // JSON is written minimal: only what is not at its default.
    assert_eq!(
        saved,
        json!({"processors": [{"id": "late", "type": "TestPatternProcessor", "config": {"width": 64}}], "connections": []})
    );
}

/// A pseudo-random number (no generator crate): the clock's nanoseconds, mixed.
fn random(below: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    (nanos.wrapping_mul(6364136223846793005) >> 17) % below.max(1)
}

#[test]
fn a_server_killed_while_saving_never_leaves_a_torn_file() {
    let dir = folder("sigkill");
    let file = dir.join("graph.toml");
    std::fs::write(&file, GRAPH_TOML).unwrap();
    for round in 0..10 {
        let (mut server, port) = serve_saving(&dir, &file);
        // Bursts of changes (processors come and go, a field flips), each followed by a pause
        // just longer than the write-back's debounce: the file is rewritten every quarter of
        // a second or so, so the kill below often lands while it is being written.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let client = std::thread::spawn(move || {
            let mut i = 0u64;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("extra-{}", i % 5);
                let (status, _) = std::panic::catch_unwind(|| {
                    http(
                        port,
                        "POST",
                        "/api/processors",
                        Some(json!({"processor_type": "CountingSinkProcessor", "id": id})),
                    )
                })
                .unwrap_or((0, serde_json::Value::Null));
                if status == 0 {
                    return;
                }
                let _ = std::panic::catch_unwind(|| {
                    http(
                        port,
                        "DELETE",
                        &format!("/api/processors/extra-{}", (i + 3) % 5),
                        None,
                    )
                });
                let fps = if i.is_multiple_of(2) { 15.0 } else { 30.0 };
                let _ = std::panic::catch_unwind(|| {
                    http(
                        port,
                        "PATCH",
                        "/api/processors/src/config",
                        Some(json!({"fps": fps})),
                    )
                });
                i += 1;
                std::thread::sleep(Duration::from_millis(220));
            }
        });
        // Killed at a moment of its own, after a few writes.
        std::thread::sleep(Duration::from_millis(500 + random(1500)));
        server.kill().unwrap();
        server.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = client.join();
        // The file is a whole graph: it parses and checks clean, comments intact.
        let out = streamlib().arg("validate").arg(&file).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "round {round}: {stdout}\n{}",
            std::fs::read_to_string(&file).unwrap_or_default()
        );
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("# The studio graph."),
            "round {round}: {text}"
        );
    }
}
