//! DisplayProcessor in the real binary under Xvfb: the test pattern's colour bars must be on
//! screen (pixel checks on an X11 screenshot), scaled to the window; closing the window is an
//! event, not a crash; the RFC's camera → display example works through the API with a test
//! pattern standing in for the camera; without a display the error says so.
#![cfg(all(target_os = "linux", feature = "display"))]

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{PATIENCE, Shot, X, Xvfb, http, serving, streamlib, terminate};
use streamlib::core::BAR_COLOURS;

/// Where a `frame_w`×`frame_h` picture lands in a `win_w`×`win_h` window (aspect kept,
/// centred): `(x0, y0, width, height)`.
fn fitted(
    frame_w: usize,
    frame_h: usize,
    win_w: usize,
    win_h: usize,
) -> (usize, usize, usize, usize) {
    let (w, h) = if win_w * frame_h <= win_h * frame_w {
        (win_w, win_w * frame_h / frame_w)
    } else {
        (win_h * frame_w / frame_h, win_h)
    };
    ((win_w - w) / 2, (win_h - h) / 2, w, h)
}

/// What is wrong with `shot` as a 640x360 test pattern fitted to the window, or `None`.
fn bars_problem(shot: &Shot) -> Option<String> {
    let (x0, y0, w, h) = fitted(640, 360, shot.width, shot.height);
    // Low in the picture: below the moving box and the frame number.
    let y = y0 + h * 85 / 100;
    for (i, expected) in BAR_COLOURS.iter().enumerate() {
        let x = x0 + (2 * i + 1) * w / 14;
        let got = shot.pixel(x, y);
        if got != *expected {
            return Some(format!(
                "bar {i} at ({x}, {y}) is {got:?}, expected {expected:?}"
            ));
        }
    }
    // The letterbox bands are black.
    if y0 > 0 && shot.pixel(shot.width / 2, y0 / 2) != [0, 0, 0] {
        return Some(format!(
            "letterbox above the picture is {:?}",
            shot.pixel(shot.width / 2, y0 / 2)
        ));
    }
    if x0 > 0 && shot.pixel(x0 / 2, shot.height / 2) != [0, 0, 0] {
        return Some(format!(
            "letterbox left of the picture is {:?}",
            shot.pixel(x0 / 2, shot.height / 2)
        ));
    }
    None
}

/// Waits until the window titled `title` shows the colour bars; returns it.
fn wait_for_bars(x: &X, title: &str, shot_name: &str) -> (u32, u16, u16) {
    let (window, w, h) = x.wait_for_window(title);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let shot = x.screenshot(window, w, h);
        match bars_problem(&shot) {
            None => {
                shot.save(shot_name);
                return (window, w, h);
            }
            Some(problem) if Instant::now() >= deadline => {
                let path = shot.save(shot_name);
                panic!("{problem} (screenshot: {})", path.display());
            }
            Some(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn write_graph(name: &str, graph: serde_json::Value) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, graph.to_string()).unwrap();
    path
}

#[test]
fn run_shows_the_bars_scaled_to_the_window_and_survives_closing_it() {
    let xvfb = Xvfb::start();
    let x = xvfb.connect();
    // A square window for a 16:9 picture: scaled to 400x225, black bands above and below.
    let graph = write_graph(
        "display_run.json",
        serde_json::json!({
            "processors": [
                {"id": "pattern", "type": "TestPatternProcessor", "config": {"width": 640, "height": 360, "fps": 30}},
                {"id": "display", "type": "DisplayProcessor", "config": {"title": "bars", "width": 400, "height": 400}}
            ],
            "connections": [{"from": "pattern.video", "to": "display.video"}]
        }),
    );
    let mut child = streamlib()
        .args(["run", graph.to_str().unwrap()])
        .env("DISPLAY", &xvfb.display)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });

    let (window, w, h) = wait_for_bars(&x, "bars", "display_run.ppm");
    assert_eq!((w, h), (400, 400));

    // The user closes the window: the runtime goes on, the processor reports it.
    x.close(window);
    x.wait_until_gone("bars");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "closing the window ended the process"
    );
    terminate(&child);
    let out = child.wait_with_output().unwrap();
    let log = log.join().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}; log:\n{}",
        out.status,
        log.join("\n")
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let display = report["processors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "display")
        .unwrap();
    assert_eq!(display["state"], "stopped", "{display}");
    assert!(display["metrics"]["frames_shown"].as_u64().unwrap() > 0);
    let closed: Vec<_> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "window_closed")
        .collect();
    assert_eq!(closed.len(), 1, "events: {}", report["events"]);
    assert_eq!(closed[0]["processor_id"], "display");
    assert_eq!(closed[0]["data"]["title"], "bars");
}

#[test]
fn api_camera_to_display_example_with_a_test_pattern_as_the_camera() {
    let xvfb = Xvfb::start();
    let x = xvfb.connect();
    let mut command = streamlib();
    command
        .args(["serve", "--port", "0", "--media-dir"])
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-media"))
        .env("DISPLAY", &xvfb.display);
    let (mut child, port) = serving(command);

    // The RFC's example, with TestPatternProcessor standing in for the camera.
    let (status, camera) = http(
        port,
        "POST",
        "/api/processors",
        Some(
            serde_json::json!({"processor_type": "TestPatternProcessor", "config": {"width": 640, "height": 360}}),
        ),
    );
    assert_eq!(status, 201, "{camera}");
    let (status, display) = http(
        port,
        "POST",
        "/api/processors",
        Some(
            serde_json::json!({"processor_type": "DisplayProcessor", "config": {"title": "api display", "width": 320, "height": 180}}),
        ),
    );
    assert_eq!(status, 201, "{display}");
    let (status, link) = http(
        port,
        "POST",
        "/api/connections",
        Some(serde_json::json!({
            "from_processor": camera["processor_id"],
            "from_port": "video",
            "to_processor": display["processor_id"],
            "to_port": "video"
        })),
    );
    assert_eq!(status, 201, "{link}");
    assert!(link["link_id"].as_str().unwrap().starts_with("link-"));
    let (window, w, h) = wait_for_bars(&x, "api display", "display_api.ppm");
    assert_eq!((w, h), (320, 180));

    // A real camera on a machine without one: a clear error, and the graph is unchanged.
    let (_, before) = http(port, "GET", "/api/processors", None);
    let (status, error) = http(
        port,
        "POST",
        "/api/processors",
        Some(
            serde_json::json!({"processor_type": "CameraProcessor", "config": {"device_id": null}}),
        ),
    );
    let has_camera = std::fs::read_dir("/dev").is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("video"))
    });
    if has_camera {
        eprintln!("skipped the missing-camera check: this machine has a /dev/video* device");
    } else if cfg!(feature = "camera") {
        // A missing device is the server's environment, not the request: 503, with the reason.
        assert_eq!(status, 503, "{error}");
        assert_eq!(error["error"]["code"], "processor_failed");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("CameraProcessor: no camera found"),
            "{message}"
        );
    } else {
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["code"], "unknown_processor_type");
    }
    let (_, after) = http(port, "GET", "/api/processors", None);
    let graph = |list: &serde_json::Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{} {} {}", p["id"], p["state"], p["inputs"]))
            .collect()
    };
    assert_eq!(
        graph(&before),
        graph(&after),
        "a failed create leaves the graph unchanged"
    );

    // Frames keep flowing to the window after the failed request.
    let display_id = display["processor_id"].as_str().unwrap();
    let shown = |port| {
        http(port, "GET", &format!("/api/processors/{display_id}"), None).1["metrics"]
            ["frames_shown"]
            .as_u64()
            .unwrap_or(0)
    };
    let first = shown(port);
    let deadline = Instant::now() + PATIENCE;
    while shown(port) <= first {
        assert!(
            Instant::now() < deadline,
            "no frame shown after the failed request"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(bars_problem(&x.screenshot(window, w, h)).is_none());

    // Removing the display closes its window.
    let (status, _) = http(
        port,
        "DELETE",
        &format!("/api/processors/{display_id}"),
        None,
    );
    assert_eq!(status, 204);
    x.wait_until_gone("api display");

    terminate(&child);
    assert!(child.wait().unwrap().success());
}

fn run_display_graph(display: Option<&str>) -> (bool, String) {
    let graph = write_graph(
        "display_only.json",
        serde_json::json!({"processors": [{"id": "display", "type": "DisplayProcessor"}]}),
    );
    let mut command = streamlib();
    command.args(["run", graph.to_str().unwrap(), "--duration", "0"]);
    match display {
        Some(d) => command.env("DISPLAY", d),
        None => command.env_remove("DISPLAY"),
    };
    let out = command.env_remove("WAYLAND_DISPLAY").output().unwrap();
    // The documented exit code of a run with a failed processor is 1.
    let failed = out.status.code() == Some(1);
    assert!(
        out.status.success() || failed,
        "exit {:?}, neither 0 nor 1",
        out.status
    );
    (out.status.success(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn without_a_display_setup_fails_saying_so() {
    let (ok, stderr) = run_display_graph(None);
    assert!(!ok);
    assert!(
        stderr.contains(
            "failed: display: setup: DisplayProcessor: no display server: DISPLAY is not set (run inside an \
             X11 session, or start one, e.g. `Xvfb :99 &` then DISPLAY=:99)"
        ),
        "{stderr}"
    );
    let (ok, stderr) = run_display_graph(Some(":4093"));
    assert!(!ok);
    assert!(
        stderr.contains(
            "failed: display: setup: DisplayProcessor: cannot connect to the X display ':4093':"
        ),
        "{stderr}"
    );
}
