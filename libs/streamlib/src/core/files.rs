//! Where processors may open files: [`FileAccess`], given to every processor through its
//! [`RuntimeContext`](crate::core::RuntimeContext).
//!
//! Two rules, chosen by whoever makes the runtime:
//! - [`FileAccess::free`] (`streamlib run`, programs): paths as written, relative to the working
//!   directory. The person who wrote the graph file already has the files it names.
//! - [`FileAccess::beneath`] (`streamlib serve`): paths from clients are relative to a media
//!   directory and resolved *beneath* it by the kernel (`openat2` with `RESOLVE_BENEATH`): `..`,
//!   absolute paths and symlinks that lead out of it are refused, and the error is the same
//!   whether or not anything exists out there.
//!
//! Under both rules only regular files are opened (never FIFOs, devices or directories), the
//! open itself cannot block (it is non-blocking, then the type is checked), and a written file
//! stops at a size cap ([`CappedFile`]).

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::core::error::{Result, StreamError};

/// Default most bytes one written file may reach.
pub const DEFAULT_MAX_FILE_MIB: u64 = 4096;

/// Where processors may open files, and how large a written file may grow.
#[derive(Debug, Clone)]
pub struct FileAccess {
    rule: Rule,
    max_file_bytes: u64,
    /// Where the files opened through this access are noted (one processor's list).
    opened: Option<Arc<OpenedFiles>>,
}

/// Most files one processor's list keeps (a processor opens one or two).
const MAX_OPENED_LISTED: usize = 16;

/// The files one processor opened in its latest run, as absolute paths (reported as
/// `files` in its `ProcessorInfo`, so a user finds what a writer wrote where).
#[derive(Debug, Default)]
pub(crate) struct OpenedFiles(Mutex<Vec<PathBuf>>);

impl OpenedFiles {
    fn note(&self, path: PathBuf) {
        let mut list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !list.contains(&path) && list.len() < MAX_OPENED_LISTED {
            list.push(path);
        }
    }

    fn forget(&self, path: &Path) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| p != path);
    }

    /// A new run opens its own files.
    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The files, as paths a user can type.
    pub(crate) fn list(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|p| p.display().to_string())
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Rule {
    Free,
    Beneath(Arc<MediaDir>),
}

/// An open media directory (kept open: paths resolve against this descriptor, not its name).
#[derive(Debug)]
struct MediaDir {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
    shown: PathBuf,
}

impl Default for FileAccess {
    fn default() -> Self {
        Self::free()
    }
}

impl FileAccess {
    /// Paths as written (relative to the working directory), with the default size cap.
    pub fn free() -> Self {
        Self {
            rule: Rule::Free,
            max_file_bytes: DEFAULT_MAX_FILE_MIB << 20,
            opened: None,
        }
    }

    /// Paths relative to `dir`, never leaving it; `dir` is created if missing.
    pub fn beneath(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            StreamError::io(
                format!("cannot create the media directory {}", dir.display()),
                e,
            )
        })?;
        let shown = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        Ok(Self {
            rule: Rule::Beneath(Arc::new(MediaDir::new(dir, shown)?)),
            max_file_bytes: DEFAULT_MAX_FILE_MIB << 20,
            opened: None,
        })
    }

    /// The same rule with another cap on written files.
    pub fn with_max_file_bytes(mut self, max: u64) -> Self {
        self.max_file_bytes = max;
        self
    }

    /// The same access, noting every file it opens in `opened` (one processor's list).
    pub(crate) fn noting_into(&self, opened: Arc<OpenedFiles>) -> Self {
        Self {
            opened: Some(opened),
            ..self.clone()
        }
    }

    /// The media directory, when paths are confined to one.
    pub fn media_dir(&self) -> Option<&Path> {
        match &self.rule {
            Rule::Free => None,
            Rule::Beneath(dir) => Some(&dir.shown),
        }
    }

    /// The cap on written files, in bytes.
    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_bytes
    }

    /// Where writes to a file stop (a little before the cap, leaving room to finalise it): a
    /// writer that stops on its own before this, at a frame boundary, never sees a refusal.
    pub fn write_limit(&self) -> u64 {
        soft_limit(self.max_file_bytes)
    }

    /// Opens an existing regular file for reading.
    pub fn open_read(&self, path: &Path) -> Result<File> {
        let file = self
            .open(path, Mode::Read)
            .map_err(|e| self.error("cannot open", path, e))?;
        self.note(path);
        Ok(file)
    }

    /// Creates (or truncates) a regular file for writing, capped at the size limit.
    pub fn create(&self, path: &Path) -> Result<CappedFile> {
        let file = self
            .open(path, Mode::Create)
            .map_err(|e| self.error("cannot create", path, e))?;
        self.note(path);
        Ok(CappedFile {
            file,
            position: 0,
            max: self.max_file_bytes,
            finishing: false,
        })
    }

    /// Removes the file a writer created at `path` if it is still that file (`created`) and
    /// still empty: a writer that got nothing to write leaves no empty, unplayable file. (No
    /// other writer can have that file: [`FileAccess::create`] locks it for one writer.)
    /// Returns whether it was removed.
    pub fn remove_if_empty(&self, path: &Path, created: &CappedFile) -> bool {
        let result = match &self.rule {
            Rule::Free => remove_free_if_empty(path, &created.file),
            Rule::Beneath(dir) => dir.remove_if_empty(path, &created.file),
        };
        match result {
            Ok(removed) => {
                if let Some(opened) = self.opened.as_ref().filter(|_| removed) {
                    opened.forget(&self.location(path));
                }
                removed
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "could not remove an empty file");
                false
            }
        }
    }

    /// Where `path` is, as an absolute path for reports (the file written, for a user to find):
    /// beneath the media directory, or as given from the working directory.
    pub fn location(&self, path: &Path) -> std::path::PathBuf {
        let full = match &self.rule {
            Rule::Free => path.to_path_buf(),
            Rule::Beneath(dir) => dir.shown.join(path),
        };
        std::path::absolute(&full).unwrap_or(full)
    }

    /// A path as messages show it: quoted as the client wrote it, and where it was looked for
    /// (never what it resolved to).
    pub fn describe(&self, path: &Path) -> String {
        match &self.rule {
            Rule::Free => format!("'{}'", path.display()),
            Rule::Beneath(_) => format!("'{}' in the media directory", path.display()),
        }
    }

    fn note(&self, path: &Path) {
        if let Some(opened) = &self.opened {
            opened.note(self.location(path));
        }
    }

    fn error(&self, what: &str, path: &Path, e: io::Error) -> StreamError {
        StreamError::io(format!("{what} {}", self.describe(path)), e)
    }

    fn open(&self, path: &Path, mode: Mode) -> io::Result<File> {
        if path.as_os_str().is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
        }
        match &self.rule {
            Rule::Free => open_free(path, mode),
            Rule::Beneath(dir) => {
                // `..` and absolute paths are refused before the kernel sees them (it would
                // refuse them too); the message is the same as for a symlink out.
                if path
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
                {
                    return Err(outside());
                }
                dir.open(path, mode)
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Read,
    Create,
}

fn outside() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "the path leads outside the media directory; give a path relative to it, without '..'",
    )
}

fn not_regular() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a regular file (devices, FIFOs and directories are refused)",
    )
}

#[cfg(target_os = "linux")]
mod unix_open {
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsFd, OwnedFd};
    use std::path::{Path, PathBuf};

    use rustix::fs::{FileType, Mode as Perm, OFlags, ResolveFlags};
    use rustix::io::Errno;

    use super::{MediaDir, Mode, not_regular, outside};
    use crate::core::error::{Result, StreamError};

    /// Flags shared by every open: no blocking on FIFOs/devices, no controlling terminal, not
    /// inherited by child processes.
    fn flags(mode: Mode) -> (OFlags, Perm) {
        let common = OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        match mode {
            Mode::Read => (common | OFlags::RDONLY, Perm::empty()),
            // NOFOLLOW: a final symlink must not redirect the writing. No TRUNC: the file is
            // emptied only after it is known to be a regular file with no other name.
            Mode::Create => (
                common | OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW,
                Perm::from_raw_mode(0o644),
            ),
        }
    }

    /// Checks the opened descriptor is a regular file (for writing, one with no other name: a
    /// hard link would let a path inside reach a file outside), empties a file opened for
    /// writing, and makes it blocking again.
    fn regular(fd: OwnedFd, mode: Mode) -> io::Result<File> {
        let stat = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(not_regular());
        }
        if let Mode::Create = mode {
            if stat.st_nlink > 1 {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "the file has other names (hard links); it is not overwritten",
                ));
            }
            // One writer per file: two would interleave their bytes (and one's clean-up could
            // remove the other's file). The lock lives as long as the descriptor.
            rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
                |e| match e {
                    Errno::WOULDBLOCK => io::Error::new(
                        io::ErrorKind::ResourceBusy,
                        "another processor is writing this file; give each writer a file of its own",
                    ),
                    e => io::Error::from(e),
                },
            )?;
            rustix::fs::ftruncate(&fd, 0)?;
        }
        let flags = rustix::fs::fcntl_getfl(&fd)?;
        rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)?;
        Ok(File::from(fd))
    }

    pub(super) fn open_free(path: &Path, mode: Mode) -> io::Result<File> {
        // Paths as written: a symlink the graph's author made is theirs to follow.
        let (flags, perm) = flags(mode);
        let flags = flags - OFlags::NOFOLLOW;
        let fd = rustix::fs::open(path, flags, perm).map_err(|e| match e {
            // A FIFO opened for writing with no reader.
            Errno::NXIO => not_regular(),
            e => io::Error::from(e),
        })?;
        regular(fd, mode)
    }

    impl MediaDir {
        pub(super) fn new(dir: &Path, shown: PathBuf) -> Result<Self> {
            let fd = rustix::fs::open(
                dir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Perm::empty(),
            )
            .map_err(|e| {
                StreamError::io(
                    format!("cannot open the media directory {}", dir.display()),
                    e.into(),
                )
            })?;
            // openat2 needs Linux 5.6; without it nothing could be opened safely.
            rustix::fs::openat2(
                &fd,
                ".",
                OFlags::PATH | OFlags::CLOEXEC,
                Perm::empty(),
                ResolveFlags::BENEATH,
            )
            .map_err(|e| {
                StreamError::io(
                    "cannot confine paths to the media directory (openat2 with RESOLVE_BENEATH needs Linux 5.6 or later, and no seccomp filter refusing it)",
                    e.into(),
                )
            })?;
            Ok(Self { fd, shown })
        }

        pub(super) fn open(&self, path: &Path, mode: Mode) -> io::Result<File> {
            let (flags, perm) = flags(mode);
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
            let mut attempts = 0;
            let fd = loop {
                match rustix::fs::openat2(self.fd.as_fd(), path, flags, perm, resolve) {
                    // A rename somewhere during the lookup: the kernel asks to retry.
                    Err(Errno::AGAIN) if attempts < 4 => attempts += 1,
                    Err(Errno::LOOP) if matches!(mode, Mode::Create) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "the path ends in a symbolic link, which is not followed for writing; give the file's own path",
                        ));
                    }
                    Err(Errno::XDEV | Errno::LOOP) => return Err(outside()),
                    Err(Errno::NXIO) => return Err(not_regular()),
                    Err(e) => return Err(e.into()),
                    Ok(fd) => break fd,
                }
            };
            regular(fd, mode)
        }

        /// [`FileAccess::remove_if_empty`](super::FileAccess::remove_if_empty) beneath the
        /// directory: the parent is resolved beneath it, the name unlinked there.
        pub(super) fn remove_if_empty(&self, path: &Path, file: &File) -> io::Result<bool> {
            let (Some(name), parent) = (path.file_name(), path.parent()) else {
                return Ok(false);
            };
            let parent = match parent {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let dir = rustix::fs::openat2(
                self.fd.as_fd(),
                parent,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Perm::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            )?;
            let stat = rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
            let ours = rustix::fs::fstat(file)?;
            let same = FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
                && stat.st_dev == ours.st_dev
                && stat.st_ino == ours.st_ino
                && ours.st_size == 0;
            if !same {
                return Ok(false);
            }
            rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty())?;
            Ok(true)
        }
    }
}

#[cfg(target_os = "linux")]
use unix_open::open_free;

/// Whether `meta` (what the path names now) is `file`, and empty.
fn same_and_empty(meta: &std::fs::Metadata, file: &File) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let ours = file.metadata()?;
    Ok(meta.is_file() && meta.dev() == ours.dev() && meta.ino() == ours.ino() && ours.len() == 0)
}

/// [`FileAccess::remove_if_empty`] for paths as written.
fn remove_free_if_empty(path: &Path, file: &File) -> io::Result<bool> {
    if !same_and_empty(&std::fs::symlink_metadata(path)?, file)? {
        return Ok(false);
    }
    std::fs::remove_file(path)?;
    Ok(true)
}

#[cfg(not(target_os = "linux"))]
fn open_free(path: &Path, mode: Mode) -> io::Result<File> {
    let file = match mode {
        Mode::Read => File::open(path)?,
        Mode::Create => File::create(path)?,
    };
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

#[cfg(not(target_os = "linux"))]
impl MediaDir {
    fn new(_dir: &Path, _shown: PathBuf) -> Result<Self> {
        Err(StreamError::Unavailable(
            "a media directory needs Linux (openat2 with RESOLVE_BENEATH)".into(),
        ))
    }

    fn open(&self, _path: &Path, _mode: Mode) -> io::Result<File> {
        Err(outside())
    }

    fn remove_if_empty(&self, _path: &Path, _file: &File) -> io::Result<bool> {
        Ok(false)
    }
}

/// A file being written that refuses to grow past its cap. Writes stop a little before the cap
/// (1/64 of it plus 1 MiB before, at most half of it) with `FileTooLarge`, which the writer reports; after that first
/// refusal the rest is allowed up to the cap itself, so the writer can still finalise the file
/// (a WAV header, an MP4 index) and what it wrote stays playable.
#[derive(Debug)]
pub struct CappedFile {
    file: File,
    position: u64,
    max: u64,
    /// Set by the first refused write: from then on only the finishing writes, up to `max`.
    finishing: bool,
}

impl CappedFile {
    /// Where writing stops before the writer has been told.
    fn soft_max(&self) -> u64 {
        soft_limit(self.max)
    }
}

/// Where writes stop under a cap of `max` bytes: 1/64 of it plus 1 MiB before, at most half.
fn soft_limit(max: u64) -> u64 {
    let headroom = (max / 64 + (1 << 20)).min(max / 2);
    max - headroom
}

impl Write for CappedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.position.saturating_add(buf.len() as u64);
        let limit = if self.finishing {
            self.max
        } else {
            self.soft_max()
        };
        if end > limit {
            self.finishing = true;
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "the file would exceed the per-file cap of {} bytes (--max-file-mib)",
                    self.max
                ),
            ));
        }
        let written = self.file.write(buf)?;
        self.position += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for CappedFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.position = self.file.seek(pos)?;
        Ok(self.position)
    }
}
