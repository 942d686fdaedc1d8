//! Snapshots of ports over a real socket: a video port as PNG or JPEG that decodes to the test
//! pattern's colour bars (scaled when asked, through an input port too), an audio port's
//! levels, and the clear errors: nothing passing, a port that does not exist, image options on
//! an audio port, sizes out of range.
#![cfg(feature = "api-server")]

use crate::common;

use common::http::Client;
use common::*;
use hyper::{HeaderMap, Method, StatusCode};
use serde_json::json;
use streamlib::core::{ApiServerConfig, BAR_COLOURS};

const W: u32 = 350;
const H: u32 = 240;

/// A 30 fps colour-bar pattern "src" and a one-tone chord "chord" (mono, amplitude 0.5), both
/// into a counting sink "sink"; started.
async fn pattern_and_chord(c: &mut Client) {
    for body in [
        json!({"processor_type": "TestPatternProcessor", "id": "src", "config": {"width": W, "height": H, "fps": 30}}),
        json!({"processor_type": "ChordGeneratorProcessor", "id": "chord", "config": {"frequencies": [440.0], "channels": 1, "amplitude": 0.5}}),
        json!({"processor_type": "CountingSinkProcessor", "id": "sink"}),
    ] {
        let r = c.post("/api/processors", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    for (from, port) in [("src", "video"), ("chord", "audio")] {
        let r = c.post("/api/connections", json!({"from_processor": from, "from_port": port, "to_processor": "sink", "to_port": port})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    assert_eq!(
        c.post("/api/runtime/start", json!({})).await.status,
        StatusCode::OK
    );
}

async fn get_bytes(c: &mut Client, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
    let (status, headers, body) = c.send_raw(Method::GET, path, None).await;
    (status, headers, body.to_vec())
}

/// Decodes a PNG to (width, height, RGBA pixels).
fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgba);
    pixels.truncate(info.buffer_size());
    (info.width, info.height, pixels)
}

/// Checks the middle of each bar, low in the picture (below the pattern's box), against the
/// bar colours, within `tolerance` per channel.
#[track_caller]
pub(crate) fn assert_bars(w: u32, h: u32, rgba: &[u8], tolerance: u8) {
    assert_eq!(rgba.len(), (w * h * 4) as usize);
    let y = h * 7 / 8;
    for (i, colour) in BAR_COLOURS.iter().enumerate() {
        let x = (2 * i as u32 + 1) * w / 14;
        let at = ((y * w + x) * 4) as usize;
        let got = &rgba[at..at + 3];
        for (g, want) in got.iter().zip(colour) {
            assert!(
                g.abs_diff(*want) <= tolerance,
                "bar {i} at ({x},{y}): {got:?}, want {colour:?}"
            );
        }
    }
}

#[test]
fn a_png_snapshot_of_the_test_pattern_shows_its_colour_bars() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, ApiServerConfig::default());
    block_on(async {
        let mut c = Client::connect(addr).await;
        pattern_and_chord(&mut c).await;

        let (status, headers, png) = get_bytes(
            &mut c,
            "/api/processors/src/ports/video/snapshot?format=png&timeout_ms=10000",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&png));
        assert_eq!(headers["content-type"], "image/png");
        let number: u64 = headers["x-frame-number"].to_str().unwrap().parse().unwrap();
        let (w, h, rgba) = decode_png(&png);
        assert_eq!((w, h), (W, H));
        assert_bars(w, h, &rgba, 0);

        // Scaled to a width: the height follows the aspect ratio; a later frame.
        let (status, headers, png) = get_bytes(
            &mut c,
            "/api/processors/src/ports/video/snapshot?format=png&width=175&timeout_ms=10000",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let later: u64 = headers["x-frame-number"].to_str().unwrap().parse().unwrap();
        assert!(
            later > number,
            "a new frame each time: {later} after {number}"
        );
        let (w, h, rgba) = decode_png(&png);
        assert_eq!((w, h), (175, 120));
        assert_bars(w, h, &rgba, 2);

        // An input port shows what its link carries.
        let (status, _, png) = get_bytes(
            &mut c,
            "/api/processors/sink/ports/video/snapshot?format=png&timeout_ms=10000",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (w, h, rgba) = decode_png(&png);
        assert_bars(w, h, &rgba, 0);
    });
}

/// Decodes a JPEG to (width, height, RGBA pixels).
pub(crate) fn decode_jpeg(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGBA);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let pixels = decoder.decode().unwrap();
    let info = decoder.info().unwrap();
    (u32::from(info.width), u32::from(info.height), pixels)
}

#[test]
fn a_jpeg_snapshot_decodes_to_the_colour_bars() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, ApiServerConfig::default());
    block_on(async {
        let mut c = Client::connect(addr).await;
        pattern_and_chord(&mut c).await;
        // JPEG is the default format.
        let (status, headers, jpeg) = get_bytes(
            &mut c,
            "/api/processors/src/ports/video/snapshot?timeout_ms=10000",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&jpeg));
        assert_eq!(headers["content-type"], "image/jpeg");
        let (w, h, rgba) = decode_jpeg(&jpeg);
        assert_eq!((w, h), (W, H));
        assert_bars(w, h, &rgba, 12);
    });
}

#[test]
fn an_audio_snapshot_gives_its_levels() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, ApiServerConfig::default());
    block_on(async {
        let mut c = Client::connect(addr).await;
        pattern_and_chord(&mut c).await;
        let r = c
            .get("/api/processors/chord/ports/audio/snapshot?timeout_ms=10000")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["frame_type"], "audio");
        let channels = r.json["channels"].as_array().unwrap();
        assert_eq!(channels.len(), 1, "{}", r.json);
        // A sine at half scale: peak -6.02 dBFS, RMS -9.03 dBFS.
        let peak = channels[0]["peak_dbfs"].as_f64().unwrap();
        let rms = channels[0]["rms_dbfs"].as_f64().unwrap();
        assert!((peak + 6.02).abs() < 0.2, "{}", r.json);
        assert!((rms + 9.03).abs() < 0.2, "{}", r.json);
        assert!(r.json["samples_per_channel"].as_u64().unwrap() > 0);
    });
}

#[test]
fn snapshots_say_clearly_what_is_wrong() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, ApiServerConfig::default());
    block_on(async {
        let mut c = Client::connect(addr).await;
        pattern_and_chord(&mut c).await;
        let error = |r: &common::http::Reply| -> (StatusCode, String, String) {
            (
                r.status,
                r.json["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                r.json["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        };
        let (status, code, message) =
            error(&c.get("/api/processors/src/ports/nope/snapshot").await);
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, "port_not_found")
        );
        assert!(
            message.contains("video"),
            "names the ports there are: {message}"
        );
        let (status, code, _) = error(&c.get("/api/processors/ghost/ports/video/snapshot").await);
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, "processor_not_found")
        );
        let (status, code, message) = error(
            &c.get("/api/processors/chord/ports/audio/snapshot?format=png&timeout_ms=10000")
                .await,
        );
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_query")
        );
        assert!(message.contains("audio"), "{message}");
        for bad in [
            "width=0",
            "width=5000",
            "timeout_ms=0",
            "timeout_ms=60000",
            "format=gif",
            "size=3",
        ] {
            let r = c
                .get(&format!("/api/processors/src/ports/video/snapshot?{bad}"))
                .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.json);
        }
        // Stopped: nothing passes, and the answer says so in the time asked.
        assert_eq!(
            c.post("/api/runtime/stop", json!({})).await.status,
            StatusCode::OK
        );
        let started = std::time::Instant::now();
        let (status, code, message) = error(
            &c.get("/api/processors/src/ports/video/snapshot?timeout_ms=200")
                .await,
        );
        assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "no_frame"));
        assert!(message.contains("200 ms"), "{message}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    });
}

#[test]
fn snapshots_of_ports_that_cannot_answer_end_at_once() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, ApiServerConfig::default());
    block_on(async {
        let mut c = Client::connect(addr).await;
        for body in [
            json!({"processor_type": "TestPatternProcessor", "id": "src", "config": {"width": 32, "height": 32, "fps": 30}}),
            json!({"processor_type": "CountingSinkProcessor", "id": "lonely"}),
        ] {
            assert_eq!(
                c.post("/api/processors", body).await.status,
                StatusCode::CREATED
            );
        }
        // An input with no link: nothing can pass it.
        let r = c.get("/api/processors/lonely/ports/video/snapshot").await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
        assert_eq!(r.json["error"]["code"], "conflict");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not connected"),
            "{}",
            r.json
        );
        // A size that the frame's aspect ratio takes past 4096 on the other side.
        assert_eq!(
            c.post("/api/runtime/start", json!({})).await.status,
            StatusCode::OK
        );
        let wide = c.post("/api/processors", json!({"processor_type": "TestPatternProcessor", "id": "wide", "config": {"width": 64, "height": 16, "fps": 30}})).await;
        assert_eq!(wide.status, StatusCode::CREATED, "{}", wide.json);
        let r = c
            .get("/api/processors/wide/ports/video/snapshot?height=4096&timeout_ms=10000")
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("4096"),
            "{}",
            r.json
        );
        // The processor removed while a snapshot waits (stopped: nothing passes): the
        // snapshot ends at once, it does not wait its whole timeout.
        assert_eq!(
            c.post("/api/runtime/stop", json!({})).await.status,
            StatusCode::OK
        );
        let mut waiter = Client::connect(addr).await;
        let started = std::time::Instant::now();
        let waiting = tokio::spawn(async move {
            waiter
                .get("/api/processors/src/ports/video/snapshot?timeout_ms=10000")
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            c.delete("/api/processors/src").await.status,
            StatusCode::NO_CONTENT
        );
        let r = waiting.await.unwrap();
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
        assert_eq!(r.json["error"]["code"], "no_frame");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("removed"),
            "{}",
            r.json
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(8),
            "ended when the port went, not at the timeout: {:?}",
            started.elapsed()
        );
    });
}

#[test]
fn snapshots_in_progress_are_limited() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(
        &rt.service,
        ApiServerConfig {
            options: streamlib::core::service::http::ApiOptions {
                max_snapshots: 1,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    block_on(async {
        let mut c = Client::connect(addr).await;
        let src = c.post("/api/processors", json!({"processor_type": "TestPatternProcessor", "id": "src", "config": {"width": 32, "height": 32}})).await;
        assert_eq!(src.status, StatusCode::CREATED);
        assert_eq!(
            c.post("/api/runtime/stop", json!({})).await.status,
            StatusCode::OK
        );
        // Stopped: the first waits (its whole second), holding the one slot.
        let mut first = Client::connect(addr).await;
        let waiting = tokio::spawn(async move {
            first
                .get("/api/processors/src/ports/video/snapshot?timeout_ms=1500")
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let (status, headers, body) = get_bytes(
            &mut c,
            "/api/processors/src/ports/video/snapshot?timeout_ms=100",
        )
        .await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(headers["retry-after"], "1");
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["error"]["code"], "too_many_snapshots");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--max-snapshots")
        );
        assert_eq!(waiting.await.unwrap().status, StatusCode::CONFLICT);
        // The slot is free again.
        let r = c
            .get("/api/processors/src/ports/video/snapshot?timeout_ms=50")
            .await;
        assert_eq!(r.json["error"]["code"], "no_frame", "{}", r.json);
    });
}
