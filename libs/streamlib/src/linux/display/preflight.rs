//! Checks run before the window system starts, so that a missing display or library gives a
//! clear error instead of using up winit's one attempt per process (or panicking inside it).

/// Libraries winit and softbuffer load at run time on X11, with the Debian package of each.
const X11_LIBRARIES: [(&str, &str); 7] = [
    ("libX11.so.6", "libx11-6"),
    ("libX11-xcb.so.1", "libx11-xcb1"),
    ("libxcb.so.1", "libxcb1"),
    ("libXcursor.so.1", "libxcursor1"),
    ("libXi.so.6", "libxi6"),
    ("libxkbcommon.so.0", "libxkbcommon0"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
];

/// Fails with what is missing: the `DISPLAY` variable, a library, or the X server itself.
pub(crate) fn check() -> Result<(), String> {
    let display = std::env::var("DISPLAY").unwrap_or_default();
    if display.is_empty() {
        return Err(
            "no display server: DISPLAY is not set (run inside an X11 session, or start \
             one, e.g. `Xvfb :99 &` then DISPLAY=:99)"
                .to_string(),
        );
    }
    let missing: Vec<String> = X11_LIBRARIES
        .iter()
        .filter(|(file, _)| !library_loads(file))
        .map(|(file, package)| format!("{file} (Debian package {package})"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the X11 client libraries are missing: {}",
            missing.join(", ")
        ));
    }
    x11rb::connect(Some(&display))
        .map(drop)
        .map_err(|e| format!("cannot connect to the X display '{display}': {e}"))
}

/// Whether the dynamic linker can load `file`.
fn library_loads(file: &str) -> bool {
    // SAFETY: loading these X11 client libraries runs only their ELF initialisers, which
    // have no preconditions; the handle is closed at once and no symbol is used.
    unsafe { libloading::Library::new(file) }.is_ok()
}
