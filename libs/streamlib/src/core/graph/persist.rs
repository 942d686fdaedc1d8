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
    let graph = match GraphFile::parse(&text, format) {
        Ok(graph) => graph,
        Err(e) => {
            let message = match e {
                StreamError::InvalidGraph(m) => m,
                other => other.to_string(),
            };
            return Ok(vec![FileProblem {
                place: String::new(),
                line: None,
                column: None,
                message,
            }]);
        }
    };
    let source = match format {
        GraphFormat::Toml => TomlSource::parse(&text).ok(),
        GraphFormat::Json => None,
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
#[derive(Debug)]
pub struct GraphFileWriter {
    path: PathBuf,
    format: GraphFormat,
}

impl GraphFileWriter {
    /// A writer for `path` (its format by extension).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let format = GraphFormat::of(&path);
        Self { path, format }
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
        let current = match std::fs::read_to_string(&self.path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(StreamError::io(
                    format!("cannot read {}", self.path.display()),
                    e,
                ));
            }
        };
        let text = match self.format {
            GraphFormat::Json => {
                let document = GraphFile {
                    revision: None,
                    ..minimal.clone()
                };
                let mut text = serde_json::to_string_pretty(&document).map_err(|e| {
                    StreamError::InvalidGraph(format!("cannot write the graph as JSON: {e}"))
                })?;
                text.push('\n');
                text
            }
            GraphFormat::Toml => merge_into_toml(current.as_deref().unwrap_or(""), full, minimal)?,
        };
        if current.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        write_atomically(&self.path, text.as_bytes())?;
        Ok(true)
    }
}

/// Replaces `path` with `bytes` so that, whenever the process dies, the file is whole: the old
/// content or the new. A temporary file in the same folder is written and synced, renamed over
/// `path`, and the folder synced (so the rename itself survives a crash).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |what: &str, e: std::io::Error| {
        StreamError::io(format!("cannot {what} {}", path.display()), e)
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "graph".to_string());
    let tmp = dir.join(format!(".{name}.streamlib-{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write a temporary file beside", e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("replace", e));
    }
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync the folder of", e))
}
