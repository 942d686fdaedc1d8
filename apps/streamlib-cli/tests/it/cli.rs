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
