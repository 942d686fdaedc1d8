//! The API server under abuse, over real sockets: slow and idle connections time out, the
//! connection cap refuses fast and makes room by closing idle connections, oversized bodies
//! are refused before they are read, early rejections tell keep-alive clients the connection
//! closes, and bad WebSocket messages get the close code RFC 6455 gives them.
#![cfg(feature = "api-server")]

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use streamlib::core::ApiServerConfig;
use streamlib::core::service::http::ApiOptions;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, coding::CloseCode};

fn server(options: ApiOptions) -> (RuntimeThread, SocketAddr) {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(
        &rt.service,
        ApiServerConfig {
            options,
            ..Default::default()
        },
    );
    (rt, addr)
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Reads one response (headers, and a body of `content-length` bytes): status and headers in
/// lower case.
fn read_response(s: &mut TcpStream) -> (u16, String, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            other => panic!(
                "connection ended in a response head ({other:?}): {}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).unwrap();
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// Whether the server closed `s` (EOF) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(0) => true,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
        Ok(_) => panic!("the server sent data on a connection expected to close"),
        Err(_) => false,
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> String {
    let body = body.unwrap_or("");
    format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn slow_headers_and_idle_keep_alive_connections_are_closed() {
    let (_rt, addr) = server(ApiOptions {
        header_timeout: Duration::from_millis(300),
        ..Default::default()
    });
    // Slowloris: a request head that never ends.
    let mut slow = tcp(addr);
    slow.write_all(b"GET /api/runtime/state HTTP/1.1\r\nhost: x")
        .unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut slow, Duration::from_secs(10)),
        "a slow head was kept open"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    // An idle keep-alive connection after a complete exchange.
    let mut idle = tcp(addr);
    idle.write_all(request(addr, "GET", "/api/runtime/state", None).as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut idle).0, 200);
    assert!(
        closed_within(&mut idle, Duration::from_secs(10)),
        "an idle connection was kept open"
    );
    // A connection that never sends a byte.
    let mut silent = tcp(addr);
    assert!(
        closed_within(&mut silent, Duration::from_secs(10)),
        "a silent connection was kept open"
    );
}

#[test]
fn the_connection_cap_makes_room_from_idle_connections_and_refuses_fast_beyond() {
    let (_rt, addr) = server(ApiOptions {
        max_connections: 3,
        ..Default::default()
    });
    // Three idle keep-alive connections fill the cap; a fourth client is still served (the
    // connection idle longest is closed for it).
    let mut idle: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = tcp(addr);
            s.write_all(request(addr, "GET", "/api/runtime/state", None).as_bytes())
                .unwrap();
            assert_eq!(read_response(&mut s).0, 200);
            s
        })
        .collect();
    let mut fourth = tcp(addr);
    fourth
        .write_all(request(addr, "GET", "/api/runtime/state", None).as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut fourth).0, 200);
    assert!(
        closed_within(&mut idle[0], Duration::from_secs(5)),
        "the oldest idle connection made room"
    );
    drop(idle);
    drop(fourth);

    // WebSocket sessions hold their slots and are never closed to make room: with three open,
    // a new client is refused at once with a JSON 503.
    block_on(async {
        let mut sessions = Vec::new();
        for _ in 0..3 {
            let mut ws = ws::connect(addr, "/api/events").await;
            assert_eq!(ws::next_json(&mut ws).await["type"], "snapshot");
            sessions.push(ws);
        }
        // The earlier sockets are closed on our side; until the server has seen that, it may
        // still close one of them for a newcomer (and serve it): ask until refused.
        let mut refusal = None;
        for _ in 0..50 {
            let started = Instant::now();
            let (status, head, body) = tokio::task::spawn_blocking(move || {
                let mut s = tcp(addr);
                s.write_all(request(addr, "GET", "/api/runtime/state", None).as_bytes())
                    .unwrap();
                read_response(&mut s)
            })
            .await
            .unwrap();
            if status == 503 {
                assert!(started.elapsed() < Duration::from_secs(5), "refused fast");
                refusal = Some((head, body));
                break;
            }
            assert_eq!(status, 200, "{head}{body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_head, body) = refusal.expect("a client beyond the cap was never refused");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], "too_many_connections");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--max-connections"),
            "{body}"
        );
        // The sessions still work.
        ws::send_json(&mut sessions[0], json!({"type": "snapshot"})).await;
        assert_eq!(ws::next_json(&mut sessions[0]).await["type"], "snapshot");
        // One leaves; a new client gets its slot.
        let mut gone = sessions.pop().unwrap();
        gone.close(None).await.unwrap();
        drop(gone);
        let mut served = false;
        for _ in 0..50 {
            let status = tokio::task::spawn_blocking(move || {
                let mut s = tcp(addr);
                s.write_all(request(addr, "GET", "/api/runtime/state", None).as_bytes())
                    .unwrap();
                read_response(&mut s).0
            })
            .await
            .unwrap();
            if status == 200 {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(served, "the slot of a closed session was never reused");
    });
}

#[test]
fn a_declared_body_over_the_limit_is_refused_before_it_is_sent() {
    let (_rt, addr) = server(ApiOptions {
        max_body_bytes: 1024,
        ..Default::default()
    });
    let mut s = tcp(addr);
    s.write_all(
        format!(
            "POST /api/processors HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\nexpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let (status, head, body) = read_response(&mut s);
    assert_eq!(status, 413, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        body.contains("payload_too_large") && body.contains("--max-body-bytes"),
        "{body}"
    );
}

#[test]
fn early_rejections_of_requests_with_a_body_tell_keep_alive_clients() {
    let (rt, addr) = server(ApiOptions {
        rate_limit_per_second: 1,
        rate_limit_burst: 2,
        token: Some("correct horse".into()),
        ..Default::default()
    });
    let create = r#"{"processor_type": "SimplePassthroughProcessor"}"#;
    let authorised = |body: &str| {
        format!(
            "POST /api/processors HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer correct horse\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // A rejection after the body was read (400, unknown type) keeps the connection.
    let mut s = tcp(addr);
    s.write_all(authorised(r#"{"processor_type": "Nope"}"#).as_bytes())
        .unwrap();
    let (status, head, _) = read_response(&mut s);
    assert_eq!(status, 400, "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    // Early rejections (401, 429) come after the body was read too: the connection stays
    // usable, and a keep-alive client's next request on it is answered.
    let state = format!(
        "GET /api/runtime/state HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer correct horse\r\n\r\n"
    );
    let mut check = |req: String, expected: u16| {
        s.write_all(req.as_bytes()).unwrap();
        let (status, head, _) = read_response(&mut s);
        if status != expected {
            return false;
        }
        assert!(!head.contains("connection: close"), "{expected}: {head}");
        s.write_all(state.as_bytes()).unwrap();
        let (status, head, _) = read_response(&mut s);
        assert_eq!(status, 200, "the connection survived a {expected}: {head}");
        true
    };
    assert!(check(
        request(addr, "POST", "/api/processors", Some(create)),
        401
    ));
    assert!(check(
        request(addr, "POST", "/api/nowhere", Some(create)),
        401
    ));
    // Creates until the 1/s budget (burst 2) says 429, however slow this machine is.
    let limited = (0..20).any(|_| check(authorised(create), 429));
    assert!(limited, "never rate limited");
    // A route that takes no body leaves none unread either.
    s.write_all(
        format!(
            "POST /api/runtime/start HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer correct horse\r\ncontent-length: 2\r\n\r\n{{}}"
        )
        .as_bytes(),
    )
    .unwrap();
    let (status, head, _) = read_response(&mut s);
    assert!(status == 200 || status == 429, "{head}");
    s.write_all(state.as_bytes()).unwrap();
    assert_eq!(read_response(&mut s).0, 200);
    drop(rt);
}

#[test]
fn bad_websocket_messages_get_their_close_codes() {
    let (_rt, addr) = server(ApiOptions::default());
    block_on(async {
        let close_code = |ws: ws::Ws| async move {
            let mut ws = ws;
            loop {
                match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                    Ok(Some(Ok(Message::Close(frame)))) => {
                        return frame.map(|f| f.code);
                    }
                    Ok(Some(Ok(_))) => continue,
                    other => panic!("expected a close frame, got {other:?}"),
                }
            }
        };
        let mut ws = ws::connect(addr, "/api/events").await;
        assert_eq!(ws::next_json(&mut ws).await["type"], "snapshot");
        ws.send(Message::Text("x".repeat(16 * 1024 + 1).into()))
            .await
            .unwrap();
        assert_eq!(close_code(ws).await, Some(CloseCode::Size));

        let mut ws = ws::connect(addr, "/api/events").await;
        assert_eq!(ws::next_json(&mut ws).await["type"], "snapshot");
        ws.send(Message::Frame(Frame::message(
            vec![0xff, 0xfe, 0xfd],
            OpCode::Data(Data::Text),
            true,
        )))
        .await
        .unwrap();
        assert_eq!(close_code(ws).await, Some(CloseCode::Invalid));
    });
}

#[test]
fn a_request_with_two_host_headers_is_refused() {
    let (_rt, addr) = server(ApiOptions::default());
    let mut s = tcp(addr);
    s.write_all(
        format!("GET /api/runtime/state HTTP/1.1\r\nhost: {addr}\r\nhost: evil.example\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let (status, _, body) = read_response(&mut s);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Host"), "{body}");
}

#[test]
fn a_client_that_stops_reading_loses_its_connection_after_the_write_timeout() {
    let (_rt, addr) = server(ApiOptions {
        max_connections: 1,
        write_timeout: Duration::from_millis(500),
        ..Default::default()
    });
    // Pipelines requests and never reads: the answers fill both socket buffers and the
    // server's writes stall, with a request in flight (the connection is never idle).
    let stuck = tcp(addr);
    let mut writer = stuck.try_clone().unwrap();
    let get = request(addr, "GET", "/api/runtime/state", None);
    std::thread::spawn(move || {
        for _ in 0..50_000 {
            if writer.write_all(get.as_bytes()).is_err() {
                return;
            }
        }
    });
    // The one slot is the stuck client's until the write timeout ends its connection; then a
    // new client is served.
    let started = Instant::now();
    let served = loop {
        let mut s = tcp(addr);
        s.write_all(request(addr, "GET", "/api/runtime/state", None).as_bytes())
            .unwrap();
        let (status, _, _) = read_response(&mut s);
        if status == 200 {
            break true;
        }
        assert_eq!(status, 503);
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(served, "the stalled connection kept its slot");
    drop(stuck);
}
