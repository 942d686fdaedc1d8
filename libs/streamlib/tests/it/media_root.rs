//! File access: beneath a media directory nothing outside can be read, written or even probed
//! for existence; FIFOs and devices are refused without blocking; written files stop at their
//! size cap.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use streamlib::core::*;

/// A fresh directory with `media/` (the root) and a file outside it.
fn sandbox(name: &str) -> (PathBuf, PathBuf) {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("media-root-{name}"));
    let _ = std::fs::remove_dir_all(&base);
    let media = base.join("media");
    std::fs::create_dir_all(media.join("sub")).unwrap();
    (base, media)
}

fn runtime(files: FileAccess) -> StreamRuntime {
    let mut rt = StreamRuntime::new().unwrap();
    rt.set_file_access(files);
    rt.start().unwrap();
    rt
}

/// The error of adding `type_name` with `path`, or `None` if it was added.
fn add_error(rt: &mut StreamRuntime, type_name: &str, path: &str) -> Option<String> {
    let spec = PROCESSOR_REGISTRY
        .create(type_name, serde_json::json!({ "path": path }))
        .unwrap();
    match rt.add_processor(spec) {
        Ok(id) => {
            rt.remove_processor(&id).unwrap();
            None
        }
        // Without the generated processor id, so that two answers can be compared.
        Err(e) => Some(match e {
            StreamError::ProcessorFailed { error, .. } => error.to_string(),
            other => other.to_string(),
        }),
    }
}

/// A small valid WAV file (480 f32 mono samples at 48 kHz).
fn write_wav(path: &Path) {
    let samples = 480u32;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + samples * 4).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&48_000u32.to_le_bytes());
    bytes.extend_from_slice(&(48_000u32 * 4).to_le_bytes());
    bytes.extend_from_slice(&4u16.to_le_bytes());
    bytes.extend_from_slice(&32u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&(samples * 4).to_le_bytes());
    for i in 0..samples {
        bytes.extend_from_slice(&(i as f32 / samples as f32).to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn paths_stay_beneath_the_media_directory() {
    let (base, media) = sandbox("beneath");
    write_wav(&base.join("secret.wav"));
    write_wav(&media.join("sub/inside.wav"));
    std::os::unix::fs::symlink("../secret.wav", media.join("out-link.wav")).unwrap();
    std::os::unix::fs::symlink("../nothing.wav", media.join("dangling-out.wav")).unwrap();
    std::os::unix::fs::symlink("/dev/full", media.join("full.wav")).unwrap();
    std::os::unix::fs::symlink("sub/inside.wav", media.join("in-link.wav")).unwrap();
    let mut rt = runtime(FileAccess::beneath(&media).unwrap());

    // Inside: plain paths, subdirectories and symlinks that stay inside.
    for path in ["sub/inside.wav", "in-link.wav", "./sub/inside.wav"] {
        assert_eq!(
            add_error(&mut rt, "WavSourceProcessor", path),
            None,
            "{path}"
        );
    }
    // Created beneath the media directory at setup, and removed again (empty: no audio came)
    // when `add_error` removes the writer.
    let mut events = rt.subscribe_events();
    assert_eq!(
        add_error(&mut rt, "WavWriterProcessor", "sub/new.wav"),
        None
    );
    let removed = std::iter::from_fn(|| events.try_recv().ok()).find_map(|e| match e.kind {
        RuntimeEventKind::ProcessorEvent { name, data, .. } if name == "file_removed" => Some(data),
        _ => None,
    });
    assert_eq!(
        removed.map(|d| d["path"].clone()),
        Some(serde_json::json!(media.join("sub/new.wav")))
    );
    assert!(!media.join("sub/new.wav").exists());

    // Outside, existing or not: one answer, which says nothing about what is there.
    let refusal = |e: Option<String>| {
        let e = e.expect("a path outside was accepted");
        assert!(e.contains("leads outside the media directory"), "{e}");
        e
    };
    let existing = refusal(add_error(&mut rt, "WavSourceProcessor", "../secret.wav"));
    let missing = refusal(add_error(&mut rt, "WavSourceProcessor", "../nothing.wav"));
    assert_eq!(
        existing.replace("secret", "X"),
        missing.replace("nothing", "X"),
        "existing and missing files outside are told apart"
    );
    let linked = refusal(add_error(&mut rt, "WavSourceProcessor", "out-link.wav"));
    let dangling = refusal(add_error(&mut rt, "WavSourceProcessor", "dangling-out.wav"));
    assert_eq!(
        linked.replace("out-link", "X"),
        dangling.replace("dangling-out", "X")
    );
    for path in [
        "/etc/passwd",
        "/proc/self/mem",
        "../media/../secret.wav",
        "sub/../../secret.wav",
    ] {
        refusal(add_error(&mut rt, "WavSourceProcessor", path));
    }
    let _ = std::fs::remove_file("/tmp/streamlib-escape.wav");
    for path in ["../written.wav", "/tmp/streamlib-escape.wav"] {
        refusal(add_error(&mut rt, "WavWriterProcessor", path));
    }
    // Writing never follows a final symlink, wherever it points (so this says nothing about
    // the target either).
    for path in ["full.wav", "out-link.wav", "in-link.wav"] {
        let e = add_error(&mut rt, "WavWriterProcessor", path).expect("a symlink was written");
        assert!(e.contains("ends in a symbolic link"), "{path}: {e}");
    }
    assert!(!base.join("written.wav").exists());
    // A hard link inside to a file outside: not overwritten (nor emptied).
    write_wav(&base.join("linked.wav"));
    std::fs::hard_link(base.join("linked.wav"), media.join("hard.wav")).unwrap();
    let e = add_error(&mut rt, "WavWriterProcessor", "hard.wav").expect("a hard link was written");
    assert!(e.contains("other names (hard links)"), "{e}");
    assert_eq!(
        std::fs::metadata(base.join("linked.wav")).unwrap().len(),
        44 + 480 * 4
    );
    assert!(!Path::new("/tmp/streamlib-escape.wav").exists());
    // The file behind the symlink out was not truncated.
    assert_eq!(
        std::fs::metadata(base.join("secret.wav")).unwrap().len(),
        44 + 480 * 4
    );
    // Messages name the path as given, never where it resolved.
    assert!(!linked.contains(base.to_str().unwrap()), "{linked}");
}

#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    let (base, media) = sandbox("fifo");
    for dir in [&base, &media] {
        let status = std::process::Command::new("mkfifo")
            .arg(dir.join("pipe.wav"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let free_fifo = base.join("pipe.wav");
    // Both rules: the open does not block (the setup timeout is long; a blocked open would
    // answer with it), and the answer names the problem.
    let limits = RuntimeLimits {
        setup_timeout_ms: 20_000,
        ..Default::default()
    };
    for (files, fifo) in [
        (FileAccess::free(), free_fifo.to_str().unwrap()),
        (FileAccess::beneath(&media).unwrap(), "pipe.wav"),
    ] {
        let mut rt = StreamRuntime::with_limits(limits).unwrap();
        rt.set_file_access(files);
        rt.start().unwrap();
        let started = std::time::Instant::now();
        for type_name in ["WavWriterProcessor", "WavSourceProcessor"] {
            let e = add_error(&mut rt, type_name, fifo).expect("a FIFO was opened");
            assert!(e.contains("not a regular file"), "{type_name}: {e}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "an open blocked"
        );
    }
    let mut rt = runtime(FileAccess::free());
    for device in ["/dev/null", "/dev/full", "/dev/zero"] {
        let e = add_error(&mut rt, "WavWriterProcessor", device).expect("a device was opened");
        assert!(e.contains("not a regular file"), "{device}: {e}");
        let e = add_error(&mut rt, "WavSourceProcessor", device).expect("a device was opened");
        assert!(e.contains("not a regular file"), "{device}: {e}");
    }
}

#[test]
fn a_written_file_stops_at_its_cap() {
    let (_, media) = sandbox("cap");
    let cap = 64 * 1024;
    let mut rt = runtime(
        FileAccess::beneath(&media)
            .unwrap()
            .with_max_file_bytes(cap),
    );
    let chord = add(
        &mut rt,
        "ChordGeneratorProcessor",
        serde_json::json!({"sample_rate": 48000, "channels": 2}),
    );
    let writer = add(
        &mut rt,
        "WavWriterProcessor",
        serde_json::json!({"path": "capped.wav"}),
    );
    rt.connect(out(&chord, "audio"), inp(&writer, "audio"))
        .unwrap();
    assert_eventually("the writer stops at the cap", || {
        rt.processor_info(&writer).unwrap().state == ProcessorStatus::Failed
    });
    let info = rt.processor_info(&writer).unwrap();
    let error = info.error.unwrap_or_default();
    assert!(
        error.contains("per-file cap of 65536 bytes") && error.contains("--max-file-mib"),
        "{error}"
    );
    rt.stop().unwrap();
    // Stopped before the cap, and finalised: the header's sizes match the file.
    let bytes = std::fs::read(media.join("capped.wav")).unwrap();
    let size = bytes.len() as u64;
    assert!(size <= cap && size > cap / 4, "{size}");
    let field = |at: usize| u64::from(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()));
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(field(4), size - 8, "RIFF size");
    let mut at = 12;
    while &bytes[at..at + 4] != b"data" {
        at += 8 + field(at + 4) as usize;
    }
    assert_eq!(field(at + 4), size - (at as u64 + 8), "data size");
}

#[cfg(feature = "ffmpeg")]
#[test]
fn mp4_files_are_written_and_read_beneath_the_media_directory() {
    let (base, media) = sandbox("mp4");
    let mut rt = runtime(FileAccess::beneath(&media).unwrap());
    let _ = std::fs::remove_file("/tmp/streamlib-escape.mp4");
    for (type_name, path) in [
        ("Mp4WriterProcessor", "../out.mp4"),
        ("Mp4WriterProcessor", "/tmp/streamlib-escape.mp4"),
        ("FileSourceProcessor", "../secret.mp4"),
    ] {
        let e = add_error(&mut rt, type_name, path).expect("a path outside was accepted");
        assert!(e.contains("leads outside the media directory"), "{e}");
    }
    assert!(!base.join("out.mp4").exists());
    let src = add(
        &mut rt,
        "TestPatternProcessor",
        serde_json::json!({"width": 64, "height": 64, "fps": 30}),
    );
    let writer = add(
        &mut rt,
        "Mp4WriterProcessor",
        serde_json::json!({"path": "sub/out.mp4"}),
    );
    rt.connect(out(&src, "video"), inp(&writer, "video"))
        .unwrap();
    assert_eventually("frames are encoded", || {
        metric(&rt, &writer, "video_frames") >= 10
    });
    // The processor names the file it writes, resolved beneath the media directory.
    let written = media.canonicalize().unwrap().join("sub/out.mp4");
    assert_eq!(
        rt.processor_info(&writer).unwrap().files,
        [written.display().to_string()]
    );
    rt.remove_processor(&writer).unwrap();
    assert!(std::fs::metadata(&written).unwrap().len() > 1000);
    // Read back through the same rule (FFmpeg reads through our file, not by name).
    assert_eq!(
        add_error(&mut rt, "FileSourceProcessor", "sub/out.mp4"),
        None
    );
}

/// A playlist in the media directory cannot make FFmpeg read a file outside it: beneath the
/// media directory only self-contained containers are demuxed and no protocol may be opened.
/// Under free paths (`streamlib run`) the same playlist plays, so it is the rule that stops it.
#[cfg(feature = "ffmpeg")]
#[test]
fn a_playlist_cannot_reach_outside_the_media_directory() {
    let (base, media) = sandbox("playlist");
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=64x64:rate=10")
        .args(["-t", "1", "-c:v", "mpeg2video", "-f", "mpegts"])
        .arg(base.join("secret.ts"))
        .status()
        .expect("ffmpeg runs");
    assert!(made.success());
    std::fs::write(
        media.join("list.m3u8"),
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n../secret.ts\n#EXT-X-ENDLIST\n",
    )
    .unwrap();
    let mut confined = runtime(FileAccess::beneath(&media).unwrap());
    let e = add_error(&mut confined, "FileSourceProcessor", "list.m3u8")
        .expect("a playlist was played beneath the media directory");
    assert!(e.contains("cannot open"), "{e}");
    let mut free = runtime(FileAccess::free());
    let path = media.join("list.m3u8");
    assert_eq!(
        add_error(&mut free, "FileSourceProcessor", path.to_str().unwrap()),
        None,
        "the playlist is valid and plays with free paths"
    );
}

/// A writer removed before any frame came leaves no empty, unplayable file, and says so;
/// beneath the media directory and with free paths alike.
#[cfg(feature = "ffmpeg")]
#[test]
fn a_writer_that_got_no_frame_leaves_no_file() {
    let (base, media) = sandbox("no-frame");
    for (kind, ext) in [("Mp4WriterProcessor", "mp4"), ("WavWriterProcessor", "wav")] {
        for (files, path, on_disk) in [
            (
                FileAccess::beneath(&media).unwrap(),
                format!("sub/empty.{ext}"),
                media.join(format!("sub/empty.{ext}")),
            ),
            (
                FileAccess::free(),
                base.join(format!("free-empty.{ext}")).display().to_string(),
                base.join(format!("free-empty.{ext}")),
            ),
        ] {
            let mut rt = runtime(files);
            let mut events = rt.subscribe_events();
            let writer = add(&mut rt, kind, serde_json::json!({ "path": path }));
            assert!(
                on_disk.exists(),
                "created at setup (so a bad path fails early)"
            );
            let listed = |rt: &StreamRuntime| rt.processor_info(&writer).unwrap().files;
            let absolute = on_disk.canonicalize().unwrap().display().to_string();
            assert_eq!(listed(&rt), [absolute]);
            // Stopped with no frame: the empty file is removed, and no longer listed.
            rt.stop().unwrap();
            assert!(!on_disk.exists(), "{} was left behind", on_disk.display());
            assert_eq!(listed(&rt), Vec::<String>::new());
            rt.remove_processor(&writer).unwrap();
            let removed =
                std::iter::from_fn(|| events.try_recv().ok()).find_map(|e| match e.kind {
                    RuntimeEventKind::ProcessorEvent { name, data, .. }
                        if name == "file_removed" =>
                    {
                        Some(data)
                    }
                    _ => None,
                });
            let removed = removed.expect("a file_removed event");
            assert_eq!(removed["path"], on_disk.display().to_string());
        }
    }
}

/// Two writers cannot write one file: the second is refused at setup, and the first's file is
/// left alone.
#[test]
fn one_writer_per_file() {
    let (_base, media) = sandbox("one-writer");
    let mut rt = runtime(FileAccess::beneath(&media).unwrap());
    let first = add(
        &mut rt,
        "WavWriterProcessor",
        serde_json::json!({"path": "shared.wav"}),
    );
    let e = add_error(&mut rt, "WavWriterProcessor", "shared.wav")
        .expect("a second writer of the same file was accepted");
    assert!(e.contains("another processor is writing this file"), "{e}");
    assert!(rt.processor_info(&first).is_ok());
    rt.remove_processor(&first).unwrap();
    // Free again once the first is gone.
    assert_eq!(add_error(&mut rt, "WavWriterProcessor", "shared.wav"), None);
}
