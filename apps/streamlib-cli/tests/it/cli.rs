//! The `streamlib` binary: `types`, `run`, and clean shutdown on SIGTERM.

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn streamlib() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streamlib"))
}

fn demo_graph() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/demo.json")
}

#[test]
fn types_json_lists_the_registry() {
    let out = streamlib().args(["types", "--json"]).output().unwrap();
    assert!(out.status.success());
    let types: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = types
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type_name"].as_str().unwrap())
        .collect();
    for expected in [
        "ChordGeneratorProcessor",
        "CountingSinkProcessor",
        "SimplePassthroughProcessor",
        "TestPatternProcessor",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let tp = types
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type_name"] == "TestPatternProcessor")
        .unwrap();
    assert_eq!(tp["outputs"][0]["name"], "video");
    assert!(tp["config_schema"]["properties"]["fps"].is_object());

    let out = streamlib().arg("types").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("TestPatternProcessor  (continuous)")
            && text.contains("config fps [default 30.0]"),
        "{text}"
    );
}

#[test]
fn run_prints_counters_as_json() {
    let out = streamlib()
        .args([
            "run",
            demo_graph().to_str().unwrap(),
            "--duration",
            "1",
            "--log",
            "warn",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "stopped");
    let sink = report["processors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "sink")
        .unwrap();
    assert!(
        sink["metrics"]["video_frames"].as_u64().unwrap() > 0,
        "{sink}"
    );
    assert!(
        sink["metrics"]["audio_frames"].as_u64().unwrap() > 0,
        "{sink}"
    );
    for link in report["links"].as_array().unwrap() {
        let c = &link["counters"];
        assert!(c["written"].as_u64().unwrap() > 0, "{link}");
        assert_eq!(
            c["written"].as_u64().unwrap(),
            c["read"].as_u64().unwrap()
                + c["dropped"].as_u64().unwrap()
                + c["queued"].as_u64().unwrap(),
            "{link}"
        );
    }
}

#[test]
fn run_reports_bad_graphs_clearly() {
    let dir = std::env::temp_dir().join(format!("streamlib-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"processors":[{"id":"a","type":"TestPatternProcessor","config":{"fps":"fast"}}]}"#,
    )
    .unwrap();
    let out = streamlib()
        .args(["run", bad.to_str().unwrap(), "--duration", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("processors[0] ('a')") && err.contains("fps"),
        "{err}"
    );
    let out = streamlib()
        .args(["run", "/nonexistent/graph.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read graph file /nonexistent/graph.json")
    );
}

#[test]
fn sigterm_stops_cleanly_and_reports() {
    let mut child = streamlib()
        .args(["run", demo_graph().to_str().unwrap(), "--log", "info"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = common::Lines::new(child.stderr.take().unwrap());
    // Wait until the runtime says it is running, then signal it.
    lines.wait_for("waiting for commands", std::time::Duration::from_secs(60));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::spawn(move || drop(lines.all()));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "stopped");
    for p in report["processors"].as_array().unwrap() {
        assert_eq!(p["state"], "stopped", "{p}");
    }
}

#[test]
fn an_empty_or_blank_token_is_refused_at_startup() {
    for (args, env) in [
        (vec!["--token", ""], None),
        (vec!["--token", "        "], None),
        (vec!["--host", "0.0.0.0", "--token", "          "], None),
        (vec![], Some("")),
    ] {
        let mut cmd = streamlib();
        cmd.args(["serve", "--port", "0", "--media-dir"])
            .arg(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-media"))
            .args(&args);
        cmd.env_remove("STREAMLIB_API_TOKEN");
        if let Some(value) = env {
            cmd.env("STREAMLIB_API_TOKEN", value);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{args:?} env {env:?} started: {stderr}"
        );
        assert!(
            stderr.contains("field 'token'") && stderr.contains("empty or only whitespace"),
            "{args:?}: {stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("listening"),
            "{args:?} listened"
        );
    }
}

/// The README's first command, `streamlib serve --demo`, on its defaults (only the port is
/// free, as tests must, and the media directory a temporary one): the demo graph runs, and the
/// default limits are the documented ones (64 KiB bodies).
#[test]
fn serve_demo_runs_the_demo_graph_on_its_defaults() {
    let media = std::env::temp_dir().join(format!("streamlib-demo-{}", std::process::id()));
    let mut command = streamlib();
    command.args(["serve", "--demo", "--port", "0", "--media-dir"]);
    command.arg(&media);
    let (mut child, port) = common::serving(command);
    let frames = |state: &serde_json::Value| -> u64 {
        state["links"]
            .as_array()
            .map(|links| {
                links
                    .iter()
                    .map(|l| l["counters"]["read"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    };
    let (status, first) = common::http(port, "GET", "/api/runtime/state", None);
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "running");
    assert!(first["processor_count"].as_u64().unwrap() >= 3, "{first}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, state) = common::http(port, "GET", "/api/runtime/state", None);
        if frames(&state) > frames(&first) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no frames flowed: {state}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The default body limit: 64 KiB is taken (as far as size goes), one byte more is not.
    let padding = |n: usize| serde_json::json!({"processor_type": "x".repeat(n)});
    let at_limit = padding(65_536 - padding(0).to_string().len());
    let (status, _) = common::http(port, "POST", "/api/processors", Some(at_limit.clone()));
    assert_ne!(status, 413, "a 64 KiB body is within the default limit");
    let over = padding(65_537 - padding(0).to_string().len());
    let (status, body) = common::http(port, "POST", "/api/processors", Some(over));
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("65536"),
        "{body}"
    );
    common::terminate(&child);
    assert!(child.wait().unwrap().success(), "exit 0 after SIGTERM");
    let _ = std::fs::remove_dir_all(&media);
}

/// alsa-lib's own messages while it looks for a default device that is not there ("ALSA lib
/// confmisc.c:855:(parse_card) cannot find card '0'") go to the log at debug level (target
/// `alsa`), not onto stderr beside the one clear error the processor reports.
#[cfg(feature = "devices")]
#[test]
fn alsa_messages_go_to_the_log_not_to_stderr() {
    let has_card = std::fs::read_dir("/dev/snd").is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("pcm"))
    });
    if has_card {
        // Past the test harness's output capture, so the skip shows.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED (alsa_messages_go_to_the_log_not_to_stderr): this machine has a sound card"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("streamlib-cli-alsa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let graph = dir.join("capture.json");
    std::fs::write(
        &graph,
        r#"{"processors":[{"id":"mic","type":"AudioCaptureProcessor"}]}"#,
    )
    .unwrap();
    let stderr_with = |log: &str| {
        let out = streamlib()
            .args([
                "--log",
                log,
                "run",
                graph.to_str().unwrap(),
                "--duration",
                "5",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let quiet = stderr_with("info");
    assert!(
        quiet.contains("sound input device 'alsa:default' is not available"),
        "{quiet}"
    );
    assert!(!quiet.contains("ALSA lib"), "{quiet}");
    let debug = stderr_with("info,alsa=debug");
    assert!(
        debug.contains("DEBUG alsa: ") && !debug.contains("ALSA lib"),
        "{debug}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run whose stderr goes away (`2>&1 | head`, a closed terminal) keeps running and stops on
/// SIGTERM as usual: logs it cannot write are dropped, not a crash that leaves files unfinished
/// (nor a lost signal).
#[test]
fn a_run_survives_its_log_going_away() {
    let dir = std::env::temp_dir().join(format!("streamlib-cli-nolog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("tone.wav");
    let graph = dir.join("tone.json");
    std::fs::write(
        &graph,
        serde_json::json!({
            "processors": [
                {"id": "chord", "type": "ChordGeneratorProcessor"},
                {"id": "wav", "type": "WavWriterProcessor", "config": {"path": wav}}
            ],
            "connections": [{"from": "chord.audio", "to": "wav.audio", "overflow": "backpressure"}]
        })
        .to_string(),
    )
    .unwrap();
    let mut child = streamlib()
        .args(["run", graph.to_str().unwrap(), "--log", "info"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = common::Lines::new(child.stderr.take().unwrap());
    lines.wait_for("waiting for commands", std::time::Duration::from_secs(60));
    // Close the reading end of stderr: every later log line meets a broken pipe.
    drop(lines);
    std::thread::sleep(std::time::Duration::from_millis(500));
    common::terminate(&child);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "stopped", "{report}");
    // The WAV was finalised: its RIFF size covers the whole file, with audio in it.
    let bytes = std::fs::read(&wav).unwrap();
    let riff = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    assert_eq!(riff + 8, bytes.len());
    assert!(bytes.len() > 48_000, "{} bytes", bytes.len());
    let _ = std::fs::remove_dir_all(&dir);
}
