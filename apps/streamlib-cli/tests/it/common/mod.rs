//! Helpers for tests that run the `streamlib` binary: an Xvfb display server, X11 screenshots,
//! and a minimal HTTP client for the API.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    AtomEnum, ClientMessageEvent, ConnectionExt, EventMask, ImageFormat, MapState, Window,
};
use x11rb::rust_connection::RustConnection;

/// How long a test waits for something that normally takes well under a second.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn streamlib() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streamlib"))
}

/// A private X server (Xvfb) on a free display number, killed on drop.
pub struct Xvfb {
    child: Child,
    /// `:N`, for `DISPLAY`.
    pub display: String,
}

impl Xvfb {
    /// Starts Xvfb with an 800x600 screen and waits until it accepts clients.
    pub fn start() -> Self {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "800x600x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start Xvfb ({e}); install it: sudo bash scripts/install-system-deps.sh"
                )
            });
        // With -displayfd, Xvfb picks a free display and writes its number once it is ready.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let number: u32 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("Xvfb printed {line:?}, not a display number"));
        Self {
            child,
            display: format!(":{number}"),
        }
    }

    /// A client connection to this server.
    pub fn connect(&self) -> X {
        let (conn, screen) = x11rb::connect(Some(&self.display)).unwrap();
        let root = conn.setup().roots[screen].root;
        X { conn, root }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An X11 client connection, for finding, photographing and closing windows.
pub struct X {
    conn: RustConnection,
    root: Window,
}

/// A screenshot: 8-bit RGB, row after row.
pub struct Shot {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Shot {
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Writes a PPM file (for a look when a test fails).
    pub fn save(&self, name: &str) -> std::path::PathBuf {
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let mut data = format!("P6\n{} {}\n255\n", self.width, self.height).into_bytes();
        data.extend_from_slice(&self.rgb);
        std::fs::write(&path, data).unwrap();
        path
    }
}

impl X {
    /// The mapped top-level window titled `title`, with its size.
    pub fn find_window(&self, title: &str) -> Option<(Window, u16, u16)> {
        let tree = self.conn.query_tree(self.root).ok()?.reply().ok()?;
        for window in tree.children {
            let Ok(name) = self
                .conn
                .get_property(false, window, AtomEnum::WM_NAME, AtomEnum::STRING, 0, 1024)
                .unwrap()
                .reply()
            else {
                continue;
            };
            if name.value != title.as_bytes() {
                continue;
            }
            let attrs = self.conn.get_window_attributes(window).ok()?.reply().ok()?;
            if attrs.map_state != MapState::VIEWABLE {
                continue;
            }
            let geometry = self.conn.get_geometry(window).ok()?.reply().ok()?;
            return Some((window, geometry.width, geometry.height));
        }
        None
    }

    /// Waits for the window titled `title` to be shown.
    pub fn wait_for_window(&self, title: &str) -> (Window, u16, u16) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(found) = self.find_window(title) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no window titled {title:?} appeared"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the window titled `title` to be gone.
    pub fn wait_until_gone(&self, title: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.find_window(title).is_some() {
            assert!(Instant::now() < deadline, "window {title:?} did not close");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The window's current content, as the X server has it.
    pub fn screenshot(&self, window: Window, width: u16, height: u16) -> Shot {
        let image = self
            .conn
            .get_image(ImageFormat::Z_PIXMAP, window, 0, 0, width, height, !0)
            .unwrap()
            .reply()
            .unwrap();
        // Depth 24 on Xvfb: 4 bytes per pixel, blue green red unused.
        let bgrx = image.data;
        assert_eq!(bgrx.len(), usize::from(width) * usize::from(height) * 4);
        let rgb = bgrx
            .chunks_exact(4)
            .flat_map(|p| [p[2], p[1], p[0]])
            .collect();
        Shot {
            width: usize::from(width),
            height: usize::from(height),
            rgb,
        }
    }

    /// Asks the window to close, as a window manager's close button does.
    pub fn close(&self, window: Window) {
        let atom = |name: &[u8]| {
            self.conn
                .intern_atom(false, name)
                .unwrap()
                .reply()
                .unwrap()
                .atom
        };
        let protocols = atom(b"WM_PROTOCOLS");
        let delete = atom(b"WM_DELETE_WINDOW");
        let event = ClientMessageEvent::new(32, window, protocols, [delete, 0, 0, 0, 0]);
        self.conn
            .send_event(false, window, EventMask::NO_EVENT, event)
            .unwrap();
        self.conn.flush().unwrap();
    }
}

/// One HTTP/1.1 request to the API on 127.0.0.1:`port`; returns the status and JSON body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status: u16 = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let json = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim())
        .filter(|b| !b.is_empty())
        .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("{e}: {b}")))
        .unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// A child's output, read line by line on a thread of its own, so that a test waits for a line
/// with a deadline: a child that hangs without printing fails the test instead of hanging it.
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    pub fn new(reader: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits up to `patience` for a line containing `needle` and returns it; panics with what
    /// was printed otherwise.
    pub fn wait_for(&mut self, needle: &str, patience: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                    // A child that keeps printing other lines does not extend the deadline.
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no line with {needle:?} within {patience:?}; printed:\n{}",
                        self.seen.join("\n")
                    );
                }
                Err(e) => panic!(
                    "no line with {needle:?} within {patience:?} ({e}); printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything printed, until the output ends (call it once the child has exited).
    pub fn all(mut self) -> String {
        self.seen.extend(self.rx.iter());
        self.seen.join("\n")
    }
}

/// Starts `command` (a `streamlib serve --port 0 ...`, or a shell running one), reads the port
/// from the line where it says it listens (within a minute), and keeps draining its output.
pub fn serving(mut command: Command) -> (Child, u16) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = Lines::new(child.stdout.take().unwrap());
    let line = stdout.wait_for("listening on", std::time::Duration::from_secs(60));
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    // Kept reading (and dropped with its thread) until the child closes its output.
    std::thread::spawn(move || drop(stdout.all()));
    (child, port)
}

/// Sends SIGTERM to `child`.
pub fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
