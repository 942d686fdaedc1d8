//! The live preview (`WS /api/preview`) and the tap (`WS /api/tap`) over real sockets: fifty
//! viewers of one port share one encode (counted in `/metrics`), and nothing is encoded once
//! they go; an audio port previews as a level meter and a data port as its frames; a tap sends
//! frames as JSON, one in `every`, up to `limit`; the limits and errors say what is wrong.
#![cfg(feature = "api-server")]

use crate::common;
use crate::metrics::{sample, samples};
use crate::snapshot::{assert_bars, decode_jpeg};

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::http::Client;
use common::ws::{Ws, connect, next_json, refused_status};
use common::*;
use futures_util::StreamExt;
use hyper::StatusCode;
use serde_json::{Value, json};
use streamlib::core::ApiServerConfig;
use streamlib::core::service::http::ApiOptions;
use tokio_tungstenite::tungstenite::Message;

/// A 30 fps 350×240 colour-bar pattern "src" and a 440 Hz mono chord "chord" (amplitude 0.5)
/// measured by an "levels" processor (every 50 ms), all into a counting sink; started.
async fn graph(c: &mut Client) {
    for body in [
        json!({"processor_type": "TestPatternProcessor", "id": "src", "config": {"width": 350, "height": 240, "fps": 30}}),
        json!({"processor_type": "ChordGeneratorProcessor", "id": "chord", "config": {"frequencies": [440.0], "channels": 1, "amplitude": 0.5}}),
        json!({"processor_type": "AudioLevelsProcessor", "id": "levels", "config": {"interval_ms": 50}}),
        json!({"processor_type": "CountingSinkProcessor", "id": "sink"}),
    ] {
        let r = c.post("/api/processors", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    for (from, to) in [
        ("src.video", "sink.video"),
        ("chord.audio", "levels.audio"),
        ("levels.levels", "sink.data"),
    ] {
        let (fp, fport) = from.split_once('.').unwrap();
        let (tp, tport) = to.split_once('.').unwrap();
        let r = c.post("/api/connections", json!({"from_processor": fp, "from_port": fport, "to_processor": tp, "to_port": tport})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    assert_eq!(
        c.post("/api/runtime/start", json!({})).await.status,
        StatusCode::OK
    );
}

async fn metrics(c: &mut Client) -> std::collections::HashMap<String, f64> {
    let (status, _, body) = c.send_raw(hyper::Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    samples(std::str::from_utf8(&body).unwrap())
}

/// The next `frame` message of a video preview and the JPEG after it.
async fn next_image(ws: &mut Ws) -> (Value, Vec<u8>) {
    let header = next_json(ws).await;
    assert_eq!(header["type"], "frame", "{header}");
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("no image within 20 s")
            .expect("closed")
            .expect("WebSocket error");
        match msg {
            Message::Binary(jpeg) => {
                assert_eq!(header["bytes"], jpeg.len(), "{header}");
                return (header, jpeg.to_vec());
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected the JPEG, got {other:?}"),
        }
    }
}

/// The `end` message's text and the close code after it.
async fn ended(ws: &mut Ws) -> (String, u16) {
    // What the port sent before it went may come first.
    let end = loop {
        let message = next_json(ws).await;
        if message["type"] == "end" {
            break message;
        }
    };
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map_or(0, |f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    (end["message"].as_str().unwrap().to_string(), code)
}

#[test]
fn fifty_viewers_share_one_encode_and_nothing_is_encoded_without_viewers() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, ApiServerConfig::default());
    block_on(async {
        let mut c = Client::connect(addr).await;
        graph(&mut c).await;
        let started = Instant::now();
        let path = "/api/preview?port=src.video&fps=10&width=175";
        let mut viewers = Vec::new();
        for _ in 0..50 {
            let mut ws = connect(addr, path).await;
            let hello = next_json(&mut ws).await;
            assert_eq!(
                hello,
                json!({"type": "preview", "port": "src.video", "frame_type": "video", "fps": 10, "width": 175})
            );
            viewers.push(ws);
        }
        let m = metrics(&mut c).await;
        assert_eq!(sample(&m, "streamlib_preview_streams", &[]), 1.0);
        assert_eq!(sample(&m, "streamlib_preview_viewers", &[]), 50.0);
        let joined = sample(&m, "streamlib_preview_encodes_total", &[]);
        let reading = Instant::now();
        // Every viewer gets three images.
        let received = futures_util::future::join_all(viewers.iter_mut().map(|ws| async move {
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(next_image(ws).await);
            }
            got
        }))
        .await;
        let elapsed = started.elapsed().as_secs_f64();
        let read_for = reading.elapsed().as_secs_f64();
        let (header, jpeg) = &received[0][0];
        let (w, h, rgba) = decode_jpeg(jpeg);
        assert_eq!((w, h), (175, 120), "{header}");
        assert_eq!(
            (header["width"].as_u64(), header["height"].as_u64()),
            (Some(175), Some(120))
        );
        assert_bars(w, h, &rgba, 16);
        let numbers: BTreeSet<u64> = received
            .iter()
            .flatten()
            .map(|(h, _)| h["frame_number"].as_u64().unwrap())
            .collect();
        let encodes = sample(
            &metrics(&mut c).await,
            "streamlib_preview_encodes_total",
            &[],
        );
        // 150 images went out; each encode was one of them for every viewer that was there.
        assert!(
            encodes >= numbers.len() as f64,
            "{encodes} encodes, {} frames seen",
            numbers.len()
        );
        // While all 50 read their 3 images: 3 encodes or a few more, not 150.
        let while_reading = encodes - joined;
        assert!(
            while_reading <= read_for * 10.0 + 2.0 && while_reading < 50.0,
            "{while_reading} encodes in {read_for:.2} s for 50 viewers × 3 images: the encode is not shared"
        );
        assert!(
            encodes <= elapsed * 10.0 + 2.0,
            "{encodes} encodes in {elapsed:.1} s at fps=10"
        );
        // The viewers go: the stream ends, and nothing more is encoded.
        drop(viewers);
        let mut gone = false;
        for _ in 0..100 {
            let m = metrics(&mut c).await;
            if sample(&m, "streamlib_preview_streams", &[]) == 0.0
                && sample(&m, "streamlib_preview_viewers", &[]) == 0.0
            {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone, "the preview stream outlived its viewers");
        let before = sample(
            &metrics(&mut c).await,
            "streamlib_preview_encodes_total",
            &[],
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = sample(
            &metrics(&mut c).await,
            "streamlib_preview_encodes_total",
            &[],
        );
        assert_eq!(before, after, "encoding went on without a viewer");
    });
}

#[test]
fn audio_previews_as_a_level_meter_and_data_as_its_frames() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, ApiServerConfig::default());
    block_on(async {
        let mut c = Client::connect(addr).await;
        graph(&mut c).await;
        let mut meter = connect(addr, "/api/preview?port=chord.audio").await;
        let hello = next_json(&mut meter).await;
        assert_eq!(
            (hello["frame_type"].as_str(), hello["fps"].as_u64()),
            (Some("audio"), Some(20))
        );
        let started = Instant::now();
        for _ in 0..10 {
            let levels = next_json(&mut meter).await;
            assert_eq!(levels["type"], "levels", "{levels}");
            assert_eq!(levels["sample_rate"], 48_000);
            let peak = levels["channels"][0]["peak_dbfs"].as_f64().unwrap();
            assert!(
                (peak + 6.02).abs() < 0.1,
                "a 0.5 sine peaks at -6 dBFS: {levels}"
            );
            let rms = levels["channels"][0]["rms_dbfs"].as_f64().unwrap();
            assert!(
                (rms + 9.03).abs() < 0.2,
                "and its RMS is 3 dB lower: {levels}"
            );
        }
        // Ten readings at 20 a second (the first may come at once).
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );

        // The levels processor's data port, through the input it feeds.
        let mut data = connect(addr, "/api/preview?port=sink.data&fps=5").await;
        let hello = next_json(&mut data).await;
        assert_eq!(
            (hello["frame_type"].as_str(), hello["fps"].as_u64()),
            (Some("data"), Some(5))
        );
        let mut last = None;
        for _ in 0..3 {
            let frame = next_json(&mut data).await;
            assert_eq!(
                (frame["type"].as_str(), frame["name"].as_str()),
                (Some("data"), Some("levels")),
                "{frame}"
            );
            let peak = frame["payload"]["channels"][0]["peak_dbfs"]
                .as_f64()
                .unwrap();
            assert!((peak + 6.02).abs() < 0.1, "{frame}");
            assert_eq!(
                frame["payload"]["samples"], 2400,
                "50 ms at 48 kHz: {frame}"
            );
            let n = frame["frame_number"].as_u64().unwrap();
            // At most 5 a second from a port writing 20: frames in between are skipped.
            if let Some(last) = last {
                assert!(n >= last + 2, "{n} after {last}");
            }
            last = Some(n);
        }

        // The processor goes: its viewers are told and closed.
        assert_eq!(
            c.delete("/api/processors/chord").await.status,
            StatusCode::NO_CONTENT
        );
        let (message, code) = ended(&mut meter).await;
        assert_eq!(code, 1001);
        assert!(
            message.contains("the processor writing it was removed"),
            "{message}"
        );
    });
}

#[test]
fn preview_errors_and_the_limit_on_streams() {
    let rt = RuntimeThread::start(|_| {});
    let config = ApiServerConfig {
        options: ApiOptions {
            max_previews: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let addr = api_on_free_port(&rt.service, config);
    block_on(async {
        let mut c = Client::connect(addr).await;
        graph(&mut c).await;
        // Not a WebSocket.
        let r = c.get("/api/preview?port=src.video").await;
        assert_eq!(
            (r.status, r.json["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("not_websocket"))
        );
        for (query, status) in [
            ("port=nodot", 400),
            ("port=src.video&fps=0", 400),
            ("port=src.video&fps=61", 400),
            ("port=src.video&width=5000", 400),
            ("port=chord.audio&width=100", 400),
            ("port=src.video&colour=red", 400),
            ("port=ghost.video", 404),
            ("port=src.nothing", 404),
        ] {
            assert_eq!(
                refused_status(addr, &format!("/api/preview?{query}"), &[]).await,
                status,
                "{query}"
            );
        }
        let mut first = connect(addr, "/api/preview?port=src.video&fps=5").await;
        next_json(&mut first).await;
        // Another viewer of the same stream joins it; a second stream is over the limit.
        let mut second = connect(addr, "/api/preview?port=src.video&fps=5").await;
        next_json(&mut second).await;
        // The input the pattern feeds is the same port: the same stream, within the limit.
        let mut through_input = connect(addr, "/api/preview?port=sink.video&fps=5").await;
        assert_eq!(next_json(&mut through_input).await["port"], "sink.video");
        next_image(&mut through_input).await;
        drop(through_input);
        assert_eq!(
            refused_status(addr, "/api/preview?port=src.video&fps=6", &[]).await,
            503
        );
        next_image(&mut second).await;
        // Both gone: the stream ends, and the slot is free again.
        drop((first, second));
        let mut freed = false;
        for _ in 0..100 {
            if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(format!(
                "ws://{addr}/api/preview?port=src.video&fps=6"
            ))
            .await
            {
                next_json(&mut ws).await;
                freed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            freed,
            "the stream's slot was not freed when its viewers went"
        );
    });
}

#[test]
fn a_tap_sends_frames_as_json_one_in_every_up_to_its_limit() {
    let rt = RuntimeThread::start(|_| {});
    let config = ApiServerConfig {
        options: ApiOptions {
            max_taps: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    let addr = api_on_free_port(&rt.service, config);
    block_on(async {
        let mut c = Client::connect(addr).await;
        graph(&mut c).await;
        // Data frames whole, up to the limit.
        let mut tap = connect(addr, "/api/tap?port=levels.levels&limit=4").await;
        assert_eq!(
            next_json(&mut tap).await,
            json!({"type": "tap", "port": "levels.levels", "frame_type": "data", "every": 1, "limit": 4})
        );
        let mut numbers = Vec::new();
        for _ in 0..4 {
            let frame = next_json(&mut tap).await;
            assert_eq!(
                (frame["type"].as_str(), frame["name"].as_str()),
                (Some("data"), Some("levels")),
                "{frame}"
            );
            assert!(
                frame["payload"]["channels"][0]["peak_dbfs"].is_number(),
                "{frame}"
            );
            numbers.push((
                frame["frame_number"].as_u64().unwrap(),
                frame["missed"].as_u64().unwrap(),
            ));
        }
        // In order; a frame not sent (a slow moment of this client) is counted as missed: the
        // numbers skipped are exactly what `missed` grew by.
        for w in numbers.windows(2) {
            let ((a, missed_a), (b, missed_b)) = (w[0], w[1]);
            assert!(b > a, "in order: {numbers:?}");
            assert_eq!(b - a - 1, missed_b - missed_a, "{numbers:?}");
        }
        assert_eq!(
            numbers[0].1, 0,
            "nothing owed before the first: {numbers:?}"
        );
        let (message, code) = ended(&mut tap).await;
        assert_eq!(code, 1000);
        assert!(message.contains("4 frames"), "{message}");

        // Video described, one frame in three.
        let mut video = connect(addr, "/api/tap?port=src.video&every=3").await;
        assert_eq!(next_json(&mut video).await["frame_type"], "video");
        let mut last: Option<u64> = None;
        for _ in 0..4 {
            let frame = next_json(&mut video).await;
            assert_eq!(
                (
                    frame["type"].as_str(),
                    frame["width"].as_u64(),
                    frame["height"].as_u64(),
                    frame["format"].as_str(),
                    frame["bytes"].as_u64()
                ),
                (
                    Some("video"),
                    Some(350),
                    Some(240),
                    Some("rgba8"),
                    Some(350 * 240 * 4)
                ),
                "{frame}"
            );
            let n = frame["frame_number"].as_u64().unwrap();
            if let Some(last) = last {
                assert!(n >= last + 3, "one in three: {n} after {last}");
            }
            last = Some(n);
        }
        // Audio with its levels; then the limit on taps.
        let mut audio = connect(addr, "/api/tap?port=levels.audio").await;
        assert_eq!(next_json(&mut audio).await["frame_type"], "audio");
        let frame = next_json(&mut audio).await;
        assert_eq!(
            (
                frame["type"].as_str(),
                frame["channels"].as_u64(),
                frame["sample_rate"].as_u64()
            ),
            (Some("audio"), Some(1), Some(48_000)),
            "{frame}"
        );
        assert!(
            (frame["levels"][0]["peak_dbfs"].as_f64().unwrap() + 6.02).abs() < 0.1,
            "{frame}"
        );
        assert_eq!(
            refused_status(addr, "/api/tap?port=src.video", &[]).await,
            503,
            "two taps are open: the limit"
        );
        for (query, status) in [
            ("port=src.video&every=0", 400),
            ("port=src.video&limit=0", 400),
            ("port=src", 400),
            ("port=ghost.video", 404),
        ] {
            assert_eq!(
                refused_status(addr, &format!("/api/tap?{query}"), &[]).await,
                status,
                "{query}"
            );
        }
        drop((video, audio));
    });
}

#[test]
fn websocket_routes_take_the_token_as_a_query_parameter() {
    let rt = RuntimeThread::start(|_| {});
    let config = ApiServerConfig {
        options: ApiOptions {
            token: Some("preview-token".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let addr = api_on_free_port(&rt.service, config);
    block_on(async {
        let mut c = Client::connect(addr).await.with_token("preview-token");
        graph(&mut c).await;
        for route in ["/api/preview?port=src.video", "/api/tap?port=src.video"] {
            assert_eq!(refused_status(addr, route, &[]).await, 401, "{route}");
            let mut ws = connect(addr, &format!("{route}&token=preview-token")).await;
            assert!(next_json(&mut ws).await["frame_type"] == "video", "{route}");
        }
    });
}
