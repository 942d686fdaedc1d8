//! Graph files on disk: reading JSON or TOML (by extension), checking one without running it
//! (`streamlib validate`), and writing a running graph back (`streamlib serve --save`)
//! atomically: a temporary file in the same folder, fsync, rename over the file, fsync of the
//! folder — so the file is always either the old graph or the new one, whenever the process
//! dies.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::document::GraphProblem;
use super::file::GraphFile;
use super::store::Graph;
use super::toml_graph::{TomlSource, merge_into_toml};
use crate::core::error::{Result, StreamError};
use crate::core::runtime::RuntimeLimits;

/// How a graph file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    /// `.json` (and any other extension).
    Json,
    /// `.toml`.
    Toml,
}

impl GraphFormat {
    /// The format of `path`, by its extension.
    pub fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("toml") => GraphFormat::Toml,
            _ => GraphFormat::Json,
        }
    }
}

/// One problem of a graph file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileProblem {
    /// The place in the document (`processors[2].config.width`), when known.
    pub place: String,
    /// 1-based line and column in the file, for TOML files.
    pub line: Option<usize>,
    /// See `line`.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, "{line}:{column}: ")?;
        }
        if !self.place.is_empty() {
            write!(f, "{}: ", self.place)?;
        }
        f.write_str(&self.message)
    }
}

impl GraphFile {
    /// Parses graph text in `format`.
    pub fn parse(text: &str, format: GraphFormat) -> Result<Self> {
        match format {
            GraphFormat::Json => Self::from_json(text),
            GraphFormat::Toml => Self::from_toml(text),
        }
    }

    /// Every problem of this graph, found as applying it to an empty runtime would find them
    /// (types, configs, ids, ports, frame types, inputs linked twice, link options), without
    /// running anything.
    pub fn problems(&self) -> Vec<GraphProblem> {
        let limits = RuntimeLimits::default();
        let graph = Graph::new(limits.max_queued_bytes(), limits.max_link_bytes());
        graph.plan(self, |_| false).err().unwrap_or_default()
    }
}

/// Reads a graph file (JSON or TOML by extension) and returns every problem it has, each with
/// its place and, for TOML, its line and column. An error only when the file cannot be read.
pub fn check_graph_file(path: &Path) -> Result<Vec<FileProblem>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StreamError::io(format!("cannot read graph file {}", path.display()), e))?;
    let format = GraphFormat::of(path);
    let unplaced = |message: String, at: Option<(usize, usize)>| {
        vec![FileProblem {
            place: String::new(),
            line: at.map(|(l, _)| l),
            column: at.map(|(_, c)| c),
            message,
        }]
    };
    let (graph, source) = match format {
        GraphFormat::Json => match GraphFile::from_json(&text) {
            Ok(graph) => (graph, None),
            Err(StreamError::InvalidGraph(m)) => return Ok(unplaced(m, None)),
            Err(e) => return Ok(unplaced(e.to_string(), None)),
        },
        GraphFormat::Toml => {
            let source = match TomlSource::parse_located(&text) {
                Ok(source) => source,
                Err((message, at)) => return Ok(unplaced(message, at)),
            };
            match serde_path_to_error::deserialize::<_, GraphFile>(source.to_json()) {
                Ok(graph) => (graph, Some(source)),
                Err(e) => {
                    let place = e.path().to_string();
                    let at = source.locate(&place);
                    return Ok(vec![FileProblem {
                        place: if place == "." { String::new() } else { place },
                        line: at.map(|(l, _)| l),
                        column: at.map(|(_, c)| c),
                        message: e.inner().to_string(),
                    }]);
                }
            }
        }
    };
    Ok(graph
        .problems()
        .into_iter()
        .map(|p| {
            let at = source.as_ref().and_then(|s| s.locate(&p.place));
            FileProblem {
                line: at.map(|(l, _)| l),
                column: at.map(|(_, c)| c),
                place: p.place,
                message: p.message,
            }
        })
        .collect())
}

/// Writes a running graph back to its file (`serve --save`).
///
/// It remembers what the file held when it was created and what it last wrote. If the file
/// says something else at the next write, someone edited it meanwhile: it is not overwritten
/// (their edit would be lost); the running graph goes to a file beside it,
/// `NAME.conflict.EXT`, and the write reports the conflict.
#[derive(Debug)]
pub struct GraphFileWriter {
    path: PathBuf,
    format: GraphFormat,
    /// What the file held when last read or written (`None`: it did not exist).
    last: std::sync::Mutex<Option<String>>,
}

impl GraphFileWriter {
    /// A writer for `path` (its format by extension; a symbolic link is written through, to
    /// the file it names). Checks that its folder can be written, and notes what the file
    /// holds now.
    pub fn new(path: impl Into<PathBuf>) -> Result<Self> {
        let path: PathBuf = path.into();
        let path = match std::fs::canonicalize(&path) {
            Ok(real) => real,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => path,
            Err(e) => {
                return Err(StreamError::io(
                    format!("cannot resolve {}", path.display()),
                    e,
                ));
            }
        };
        let format = GraphFormat::of(&path);
        let last = read_if_there(&path)?;
        // A probe beside the file: a folder that cannot be written fails now, not at the first
        // change.
        let probe = temp_beside(&path)?;
        let _ = std::fs::remove_file(&probe.0);
        Ok(Self {
            path,
            format,
            last: std::sync::Mutex::new(last),
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the graph (`full`: every config field and link option; `minimal`: only those
    /// not at their default, as [`StreamRuntime::graph_document`] and
    /// [`StreamRuntime::graph_document_minimal`] give them) into the file, atomically. JSON is
    /// written whole (the minimal document); TOML is merged into what the file holds, keeping
    /// its comments and formatting. Returns whether the file changed (nothing is written when
    /// it already says this graph).
    ///
    /// [`StreamRuntime::graph_document`]: crate::core::StreamRuntime::graph_document
    /// [`StreamRuntime::graph_document_minimal`]: crate::core::StreamRuntime::graph_document_minimal
    pub fn write(&self, full: &GraphFile, minimal: &GraphFile) -> Result<bool> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let on_disk = read_if_there(&self.path)?;
        if on_disk != *last {
            // Edited by someone else since: theirs stays; ours goes beside it.
            let beside = self.conflict_path();
            let ours = self.render(last.as_deref(), full, minimal)?;
            write_atomically(&beside, ours.as_bytes())?;
            return Err(StreamError::Conflict(format!(
                "{} was changed by someone else while streamlib ran, so it was not overwritten; the running graph was written to {} instead (and will be again at the next change)",
                self.path.display(),
                beside.display()
            )));
        }
        let current = on_disk;
        let text = self.render(current.as_deref(), full, minimal)?;
        if current.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        write_atomically(&self.path, text.as_bytes())?;
        *last = Some(text);
        Ok(true)
    }

    /// The graph as this file's text, merged into `base` for TOML.
    fn render(&self, base: Option<&str>, full: &GraphFile, minimal: &GraphFile) -> Result<String> {
        match self.format {
            GraphFormat::Json => json_text(minimal),
            GraphFormat::Toml => merge_into_toml(base.unwrap_or(""), full, minimal),
        }
    }

    /// `NAME.conflict.EXT` beside the file.
    fn conflict_path(&self) -> PathBuf {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "graph".to_string());
        let name = match self.path.extension() {
            Some(ext) => format!("{stem}.conflict.{}", ext.to_string_lossy()),
            None => format!("{stem}.conflict"),
        };
        self.path.with_file_name(name)
    }
}

/// The minimal document as pretty JSON (what a JSON graph file holds).
fn json_text(minimal: &GraphFile) -> Result<String> {
    let document = GraphFile {
        revision: None,
        ..minimal.clone()
    };
    let mut text = serde_json::to_string_pretty(&document)
        .map_err(|e| StreamError::InvalidGraph(format!("cannot write the graph as JSON: {e}")))?;
    text.push('\n');
    Ok(text)
}

/// The file's text, or `None` if there is no file.
fn read_if_there(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StreamError::io(
            format!("cannot read {}", path.display()),
            e,
        )),
    }
}

/// A new temporary file beside `path`, created exclusively (never an existing file or a link
/// planted there), with a name no other writer uses.
fn temp_beside(path: &Path) -> Result<(PathBuf, std::fs::File)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "graph".to_string());
    let mut last_error = None;
    for attempt in 0..16u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = dir.join(format!(
            ".{name}.streamlib-{}-{nanos:x}-{attempt}.tmp",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => {
                return Err(StreamError::io(
                    format!("cannot create a temporary file in {}", dir.display()),
                    e,
                ));
            }
        }
    }
    Err(StreamError::io(
        format!("cannot create a temporary file in {}", dir.display()),
        last_error.unwrap_or_else(|| std::io::Error::other("no free name")),
    ))
}

/// Replaces `path` with `bytes` so that, whenever the process dies, the file is whole: the old
/// content or the new. A temporary file in the same folder is written and synced, renamed over
/// `path`, and the folder synced (so the rename itself survives a crash).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |what: &str, e: std::io::Error| {
        StreamError::io(format!("cannot {what} {}", path.display()), e)
    };
    let (tmp, mut file) = temp_beside(path)?;
    let written = (|| {
        // The new file keeps the old one's permissions (a 0600 graph stays 0600).
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(bytes)?;
        file.sync_all()
    })();
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write a temporary file beside", e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("replace", e));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The file is replaced already; this makes the rename itself survive a power cut.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync the folder (the file was replaced) of", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(width: u32) -> GraphFile {
        serde_json::from_value(serde_json::json!({"processors": [
            {"id": "src", "type": "TestPatternProcessor", "config": {"width": width}}
        ]}))
        .unwrap()
    }

    #[test]
    fn a_file_edited_meanwhile_is_not_overwritten_and_permissions_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("streamlib-persist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let writer = GraphFileWriter::new(&path).unwrap();
        assert!(writer.write(&graph(320), &graph(320)).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The same graph again: nothing written.
        assert!(!writer.write(&graph(320), &graph(320)).unwrap());
        // Someone edits the file: it is left as they wrote it, ours goes beside it.
        std::fs::write(&path, "{\"processors\": []}").unwrap();
        let e = writer.write(&graph(640), &graph(640)).unwrap_err();
        assert!(e.to_string().contains("changed by someone else"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"processors\": []}"
        );
        let beside = std::fs::read_to_string(dir.join("g.conflict.json")).unwrap();
        assert!(beside.contains("640"), "{beside}");
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
