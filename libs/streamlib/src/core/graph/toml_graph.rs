//! Graph files in TOML: reading them (with the line and column of every place, for
//! `streamlib validate`) and writing a running graph back into one without disturbing what the
//! user wrote (`toml_edit`): comments, key order and formatting of everything that did not
//! change stay byte for byte; new processors and links are added in the file's own style.
//!
//! ```toml
//! # the camera wall
//! [[processors]]
//! id = "src"
//! type = "TestPatternProcessor"
//! config = { width = 320 }   # or a [processors.config] table
//!
//! [[connections]]
//! from = "src.video"
//! to = "sink.video"
//! ```
//!
//! TOML has no `null`: a config field whose value is `null` is left out of the file (and a
//! field left out takes its default when the file is read).

use serde_json::Value as Json;
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

use super::file::GraphFile;
use crate::core::error::{Result, StreamError};

/// A TOML graph file parsed with the position of every item kept.
pub(crate) struct TomlSource<'a> {
    text: &'a str,
    doc: toml_edit::Document<&'a str>,
}

impl<'a> TomlSource<'a> {
    /// Parses `text`; a syntax error names its line and column.
    pub(crate) fn parse(text: &'a str) -> Result<Self> {
        Self::parse_located(text).map_err(|(message, at)| {
            let at = at
                .map(|(line, column)| format!("line {line}, column {column}: "))
                .unwrap_or_default();
            StreamError::InvalidGraph(format!("{at}{message}"))
        })
    }

    /// Parses `text`; a syntax error is its message and, when known, its line and column.
    pub(crate) fn parse_located(
        text: &'a str,
    ) -> std::result::Result<Self, (String, Option<(usize, usize)>)> {
        match toml_edit::Document::parse(text) {
            Ok(doc) => Ok(Self { text, doc }),
            Err(e) => Err((
                e.message().to_string(),
                e.span().map(|s| line_column(text, s.start)),
            )),
        }
    }

    /// The document as JSON (what [`GraphFile`] is read from).
    pub(crate) fn to_json(&self) -> Json {
        table_to_json(self.doc.as_table())
    }

    /// `line:column` of a place of the document (`processors[2].config.width`), or of the
    /// nearest enclosing item that exists.
    pub(crate) fn locate(&self, place: &str) -> Option<(usize, usize)> {
        let mut item: &Item = self.doc.as_item();
        let mut best = None;
        for step in steps(place) {
            let next = match step {
                Step::Key(key) => item.get(key),
                Step::Index(i) => item.get(i),
            };
            let Some(next) = next else { break };
            if let Some(span) = next.span() {
                best = Some(span.start);
            }
            item = next;
        }
        best.map(|offset| line_column(self.text, offset))
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

enum Step<'p> {
    Key(&'p str),
    Index(usize),
}

/// `processors[2].config.width` → Key(processors), Index(2), Key(config), Key(width).
fn steps(place: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in place.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push(Step::Key(name));
        }
        while let Some((index, after)) = rest.split_once(']') {
            if let Ok(i) = index.parse() {
                out.push(Step::Index(i));
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    out
}

fn table_to_json(table: &Table) -> Json {
    Json::Object(
        table
            .iter()
            .map(|(k, item)| (k.to_string(), item_to_json(item)))
            .collect(),
    )
}

fn item_to_json(item: &Item) -> Json {
    match item {
        Item::None => Json::Null,
        Item::Value(v) => value_to_json(v),
        Item::Table(t) => table_to_json(t),
        Item::ArrayOfTables(a) => Json::Array(a.iter().map(table_to_json).collect()),
    }
}

fn value_to_json(value: &Value) -> Json {
    match value {
        Value::String(s) => Json::String(s.value().clone()),
        Value::Integer(i) => Json::from(*i.value()),
        Value::Float(f) => {
            serde_json::Number::from_f64(*f.value()).map_or(Json::Null, Json::Number)
        }
        Value::Boolean(b) => Json::Bool(*b.value()),
        Value::Datetime(d) => Json::String(d.value().to_string()),
        Value::Array(a) => Json::Array(a.iter().map(value_to_json).collect()),
        Value::InlineTable(t) => Json::Object(
            t.iter()
                .map(|(k, v)| (k.to_string(), value_to_json(v)))
                .collect(),
        ),
    }
}

/// `f` as written by a person: an `f32` field's value widened to f64 (0.30000001192092896) is
/// written as the f32 it is (0.3).
fn shortest(f: f64) -> f64 {
    let narrow = f as f32;
    if f64::from(narrow) == f {
        narrow.to_string().parse().unwrap_or(f)
    } else {
        f
    }
}

/// A JSON value as a TOML value (`None` for `null`, which TOML cannot hold).
fn json_to_value(json: &Json) -> Option<Value> {
    Some(match json {
        Json::Null => return None,
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(f)) => Value::from(shortest(f)),
            (None, None) => return None,
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => {
            let mut array = Array::new();
            for v in items.iter().filter_map(json_to_value) {
                array.push(v);
            }
            Value::Array(array)
        }
        Json::Object(fields) => {
            let mut table = InlineTable::new();
            for (k, v) in fields {
                if let Some(v) = json_to_value(v) {
                    table.insert(k, v);
                }
            }
            Value::InlineTable(table)
        }
    })
}

/// Whether the TOML value already says `json` (so it is left as written: `1.0` vs `1`, quotes).
fn same(value: &Value, json: &Json) -> bool {
    same_json(&value_to_json(value), json)
}

/// Equal as configs: numbers by value, whether written `30` or `30.0`, and within an f32's
/// precision (an `f32` field the file says is `0.3` runs as 0.30000001192092896), through
/// arrays and tables.
fn same_json(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-6 * x.abs().max(y.abs()),
            _ => x == y,
        },
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Sets `key` of a table-like to `json`, keeping the existing entry's decoration when it
/// changes, leaving it alone when it already says the same.
fn set_key(table: &mut dyn toml_edit::TableLike, key: &str, json: &Json) {
    match table.get_mut(key) {
        Some(Item::Value(existing)) => {
            if same(existing, json) {
                return;
            }
            match json_to_value(json) {
                Some(mut value) => {
                    let decor = existing.decor().clone();
                    *value.decor_mut() = decor;
                    *existing = value;
                }
                None => {
                    table.remove(key);
                }
            }
        }
        // A table or array of tables the file writes out: left alone if it says the same.
        Some(other) if same_json(&item_to_json(other), json) => {}
        Some(_) | None => {
            if let Some(value) = json_to_value(json) {
                table.insert(key, Item::Value(value));
            }
        }
    }
}

/// The running graph (`full`: every config field and link option; `minimal`: only those that
/// differ from their defaults) written into the TOML file `text`, keeping what did not change
/// as it was (module docs).
pub(crate) fn merge_into_toml(text: &str, full: &GraphFile, minimal: &GraphFile) -> Result<String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| StreamError::InvalidGraph(e.message().to_string()))?;
    merge_processors(&mut doc, full, minimal);
    merge_connections(&mut doc, full, minimal);
    merge_ui(&mut doc, minimal);
    Ok(doc.to_string())
}

/// The `ui` section: left as written when it says the same, else written as a
/// `[ui.positions]` table of inline `{ x, y }` (or taken out when nothing is placed).
fn merge_ui(doc: &mut DocumentMut, minimal: &GraphFile) {
    let Some(ui) = minimal.ui.as_ref().filter(|ui| !ui.is_empty()) else {
        doc.remove("ui");
        return;
    };
    let Ok(json) = serde_json::to_value(ui) else {
        return;
    };
    if doc
        .get("ui")
        .is_some_and(|existing| same_json(&item_to_json(existing), &json))
    {
        return;
    }
    let mut positions = Table::new();
    for (id, at) in &ui.positions {
        if let Some(value) = json_to_value(&serde_json::json!({"x": at.x, "y": at.y})) {
            positions.insert(id, Item::Value(value));
        }
    }
    let mut ui = Table::new();
    ui.set_implicit(true);
    ui.insert("positions", Item::Table(positions));
    doc.insert("ui", Item::Table(ui));
}

fn array_of_tables<'d>(doc: &'d mut DocumentMut, key: &str) -> Option<&'d mut ArrayOfTables> {
    let is_array = matches!(doc.get(key), Some(Item::ArrayOfTables(_)));
    if !is_array {
        // Absent (or written another way, e.g. an inline array): made an array of tables.
        let mut tables = ArrayOfTables::new();
        if let Some(Item::Value(Value::Array(inline))) = doc.get(key) {
            for v in inline.iter() {
                if let Value::InlineTable(t) = v {
                    tables.push(t.clone().into_table());
                }
            }
        }
        doc.insert(key, Item::ArrayOfTables(tables));
    }
    match doc.get_mut(key) {
        Some(Item::ArrayOfTables(tables)) => Some(tables),
        _ => None,
    }
}

/// Removes the tables `keep` refuses. What is written above a removed table (comments, blank
/// lines: its decor's prefix, in toml_edit) goes to the next table kept, so a file's header or
/// a section comment is not lost with the first table under it.
fn remove_tables(tables: &mut ArrayOfTables, keep: impl Fn(&Table) -> bool) {
    let mut carried = String::new();
    let mut i = 0;
    while i < tables.len() {
        let Some(table) = tables.get_mut(i) else {
            break;
        };
        let prefix = table
            .decor()
            .prefix()
            .and_then(|p| p.as_str())
            .unwrap_or_default()
            .to_string();
        if keep(table) {
            if !carried.is_empty() {
                table
                    .decor_mut()
                    .set_prefix(format!("{}{prefix}", std::mem::take(&mut carried)));
            }
            i += 1;
        } else {
            // Comment lines only: the blank lines around the table go with it.
            carried.push_str(
                &prefix
                    .lines()
                    .filter(|l| l.trim_start().starts_with('#'))
                    .map(|l| format!("{l}\n"))
                    .collect::<String>(),
            );
            tables.remove(i);
        }
    }
}

fn merge_processors(doc: &mut DocumentMut, full: &GraphFile, minimal: &GraphFile) {
    let Some(tables) = array_of_tables(doc, "processors") else {
        return;
    };
    // Gone from the graph: removed from the file (the comments above them stay).
    remove_tables(tables, |t| {
        let id = t.get("id").and_then(Item::as_str);
        full.processors.iter().any(|p| Some(p.id.as_str()) == id)
    });
    // How the file writes configs: inline (`config = {…}`) unless it uses sub-tables.
    let inline_style = !tables
        .iter()
        .any(|t| matches!(t.get("config"), Some(Item::Table(_))));
    for (p, m) in full.processors.iter().zip(&minimal.processors) {
        for (field, _) in m
            .config
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v.is_null())
        {
            tracing::warn!(
                processor = %p.id,
                field = %field,
                "the field is null, which TOML cannot hold: it is left out of the file and reads back as its default"
            );
        }
        let existing = tables
            .iter_mut()
            .find(|t| t.get("id").and_then(Item::as_str) == Some(p.id.as_str()));
        match existing {
            Some(table) => {
                set_key(table, "type", &Json::String(p.processor_type.clone()));
                let full_config = p.config.as_object();
                let minimal_config = m.config.as_object();
                let written = table.contains_key("config");
                let wanted = minimal_config.is_some_and(|c| !c.is_empty());
                if !written && !wanted {
                    continue;
                }
                if !written {
                    let value = json_to_value(&m.config).map(Item::Value);
                    if let Some(item) = value {
                        table.insert("config", item);
                    }
                    continue;
                }
                let Some(config) = table.get_mut("config").and_then(Item::as_table_like_mut) else {
                    continue;
                };
                // A field the file names is kept and updated; one it does not name is added
                // only if it is not at its default.
                let names: Vec<String> = config.iter().map(|(k, _)| k.to_string()).collect();
                for name in names {
                    match full_config.and_then(|c| c.get(&name)) {
                        Some(v) => set_key(config, &name, v),
                        None => {
                            config.remove(&name);
                        }
                    }
                }
                for (name, v) in minimal_config.into_iter().flatten() {
                    if !config.contains_key(name) {
                        set_key(config, name, v);
                    }
                }
            }
            None => {
                let mut table = Table::new();
                table.insert("id", toml_edit::value(p.id.as_str()));
                table.insert("type", toml_edit::value(p.processor_type.as_str()));
                if m.config.as_object().is_some_and(|c| !c.is_empty()) {
                    if inline_style {
                        if let Some(v) = json_to_value(&m.config) {
                            table.insert("config", Item::Value(v));
                        }
                    } else if let Some(Value::InlineTable(t)) = json_to_value(&m.config) {
                        table.insert("config", Item::Table(t.into_table()));
                    }
                }
                tables.push(table);
            }
        }
    }
}

fn merge_connections(doc: &mut DocumentMut, full: &GraphFile, minimal: &GraphFile) {
    let Some(tables) = array_of_tables(doc, "connections") else {
        return;
    };
    let ends = |t: &Table| {
        (
            t.get("from").and_then(Item::as_str).map(str::to_string),
            t.get("to").and_then(Item::as_str).map(str::to_string),
        )
    };
    remove_tables(tables, |t| {
        let (from, to) = ends(t);
        full.connections
            .iter()
            .any(|c| Some(&c.from) == from.as_ref() && Some(&c.to) == to.as_ref())
    });
    for (c, m) in full.connections.iter().zip(&minimal.connections) {
        let full_options = options_json(c);
        let minimal_options = options_json(m);
        let existing = tables.iter_mut().find(|t| {
            let (from, to) = ends(t);
            from.as_ref() == Some(&c.from) && to.as_ref() == Some(&c.to)
        });
        match existing {
            Some(table) => {
                for (name, value) in &full_options {
                    if table.contains_key(name) {
                        set_key(table, name, value);
                    } else if let Some(v) = minimal_options.get(name) {
                        set_key(table, name, v);
                    }
                }
            }
            None => {
                let mut table = Table::new();
                table.insert("from", toml_edit::value(c.from.as_str()));
                table.insert("to", toml_edit::value(c.to.as_str()));
                for (name, value) in &minimal_options {
                    set_key(&mut table, name, value);
                }
                tables.push(table);
            }
        }
    }
}

/// A connection's options as JSON fields (those set).
fn options_json(c: &super::file::GraphConnection) -> serde_json::Map<String, Json> {
    match serde_json::to_value(c) {
        Ok(Json::Object(mut fields)) => {
            fields.remove("from");
            fields.remove("to");
            fields
        }
        _ => serde_json::Map::new(),
    }
}

impl GraphFile {
    /// Parses a graph from TOML text (see the `toml_graph` module docs), naming the offending
    /// field, with its line and column, on error.
    pub fn from_toml(text: &str) -> Result<Self> {
        let source = TomlSource::parse(text)?;
        serde_path_to_error::deserialize(source.to_json()).map_err(|e| {
            let path = e.path().to_string();
            let at = source
                .locate(&path)
                .map(|(l, c)| format!("line {l}, column {c}: "))
                .unwrap_or_default();
            StreamError::InvalidGraph(if path == "." {
                format!("{at}{}", e.inner())
            } else {
                format!("{at}{path}: {}", e.inner())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# The studio graph.
# Keep the pattern small: it is only a test signal.

[[processors]]
id = "src"            # the source
type = "TestPatternProcessor"
config = { width = 320, fps = 30.0 }

[[processors]]
id = "sink"
type = "CountingSinkProcessor"

# Wiring
[[connections]]
from = "src.video"
to = "sink.video"
"#;

    #[test]
    fn a_toml_graph_reads_like_the_json_one_and_places_are_located() {
        let g = GraphFile::from_toml(FILE).unwrap();
        assert_eq!(g.processors[0].config["width"], 320);
        assert_eq!(g.connections[0].to, "sink.video");
        let source = TomlSource::parse(FILE).unwrap();
        assert_eq!(source.locate("processors[0].config.width"), Some((7, 20)));
        assert_eq!(source.locate("processors[1].type"), Some((11, 8)));
        assert_eq!(source.locate("connections[0].to"), Some((16, 6)));
        let e = GraphFile::from_toml("[[processors]]\nid = \"a\"\ntyp = \"X\"\n").unwrap_err();
        assert!(e.to_string().contains("processors[0]"), "{e}");
        let e = GraphFile::from_toml("[[processors]\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    fn doc(value: Json) -> GraphFile {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_write_back_keeps_comments_order_and_style_and_changes_only_what_changed() {
        let full = doc(serde_json::json!({
            "processors": [
                {"id": "src", "type": "TestPatternProcessor", "config": {"width": 640, "height": 480, "fps": 30.0}},
                {"id": "sink", "type": "CountingSinkProcessor", "config": {}},
                {"id": "extra", "type": "TestPatternProcessor", "config": {"width": 640, "height": 480, "fps": 15.0}}
            ],
            "connections": [
                {"from": "src.video", "to": "sink.video", "capacity": 4}
            ]
        }));
        let minimal = doc(serde_json::json!({
            "processors": [
                {"id": "src", "type": "TestPatternProcessor", "config": {}},
                {"id": "sink", "type": "CountingSinkProcessor", "config": {}},
                {"id": "extra", "type": "TestPatternProcessor", "config": {"fps": 15.0}}
            ],
            "connections": [{"from": "src.video", "to": "sink.video"}]
        }));
        let written = merge_into_toml(FILE, &full, &minimal).unwrap();
        // Only the width changed (back to its default, still written since the file names
        // it); every comment and the rest of each line stay; the new processor comes after
        // the last one, in the file's inline style; a link option at its default is not added.
        let expected = FILE.replace("width = 320", "width = 640").replace(
            "type = \"CountingSinkProcessor\"\n",
            "type = \"CountingSinkProcessor\"\n\n[[processors]]\nid = \"extra\"\ntype = \"TestPatternProcessor\"\nconfig = { fps = 15.0 }\n",
        );
        assert_eq!(written, expected);
        // Written back again: no change.
        assert_eq!(merge_into_toml(&written, &full, &minimal).unwrap(), written);
        // A removal takes the table out, and only it.
        let fewer = |g: &GraphFile| GraphFile {
            processors: g.processors[..2].to_vec(),
            ..g.clone()
        };
        assert_eq!(
            merge_into_toml(&written, &fewer(&full), &fewer(&minimal)).unwrap(),
            FILE.replace("width = 320", "width = 640")
        );
    }

    #[test]
    fn a_removal_keeps_the_comments_above_and_unchanged_values_stay_as_written() {
        let file = r#"# Header of the whole file.

# The source, first.
[[processors]]
id = "src"
type = "ChordGeneratorProcessor"
[processors.config]
amplitude = 0.3        # quiet
frequencies = [440, 660]

[[processors]]
id = "sink"
type = "CountingSinkProcessor"
"#;
        // As the runtime reports them: f32 widened, floats where the file has integers.
        let full = doc(serde_json::json!({
            "processors": [
                {"id": "src", "type": "ChordGeneratorProcessor",
                 "config": {"amplitude": 0.30000001192092896_f64, "frequencies": [440.0, 660.0], "channels": 2}},
                {"id": "sink", "type": "CountingSinkProcessor", "config": {}}
            ],
            "connections": []
        }));
        let minimal = doc(serde_json::json!({
            "processors": [
                {"id": "src", "type": "ChordGeneratorProcessor",
                 "config": {"amplitude": 0.30000001192092896_f64, "frequencies": [440.0, 660.0]}},
                {"id": "sink", "type": "CountingSinkProcessor", "config": {}}
            ],
            "connections": []
        }));
        // Nothing changed: not one byte either.
        assert_eq!(merge_into_toml(file, &full, &minimal).unwrap(), file);
        // The first processor goes: the file's header and its comment stay.
        let only_sink = |g: &GraphFile| GraphFile {
            processors: g.processors[1..].to_vec(),
            ..g.clone()
        };
        let written = merge_into_toml(file, &only_sink(&full), &only_sink(&minimal)).unwrap();
        assert!(
            written.starts_with("# Header of the whole file.\n# The source, first.\n"),
            "{written}"
        );
        assert!(!written.contains("amplitude"), "{written}");
        assert!(written.contains("id = \"sink\""), "{written}");
        // A new value of an f32 field is written as the f32 it is.
        let mut louder = full.clone();
        louder.processors[0].config["amplitude"] = serde_json::json!(0.5);
        let written = merge_into_toml(file, &louder, &minimal).unwrap();
        assert!(
            written.contains("amplitude = 0.5        # quiet"),
            "{written}"
        );
        let mut added = full.clone();
        added.processors.push(serde_json::from_value(serde_json::json!(
            {"id": "tone", "type": "ChordGeneratorProcessor", "config": {"amplitude": 0.30000001192092896_f64}}
        )).unwrap());
        let mut added_minimal = minimal.clone();
        added_minimal.processors.push(added.processors[2].clone());
        let written = merge_into_toml(file, &added, &added_minimal).unwrap();
        // The file writes configs as sub-tables: the new one too, with the value as a person writes it.
        assert!(
            written.contains("[processors.config]\namplitude = 0.3\n"),
            "{written}"
        );
    }

    #[test]
    fn the_ui_section_is_written_read_back_and_taken_out_when_empty() {
        let mut full = GraphFile::from_toml(FILE).unwrap();
        let mut ui = super::super::file::GraphUi::default();
        ui.positions.insert(
            "src".to_string(),
            super::super::file::UiPosition { x: 10.0, y: -2.5 },
        );
        full.ui = Some(ui);
        let written = merge_into_toml(FILE, &full, &full).unwrap();
        assert!(written.starts_with("# The studio graph."), "{written}");
        assert!(
            written.contains("[ui.positions]\nsrc = { x = 10.0, y = -2.5 }\n"),
            "{written}"
        );
        assert_eq!(GraphFile::from_toml(&written).unwrap().ui, full.ui);
        // The same drawing: not one byte changes.
        assert_eq!(merge_into_toml(&written, &full, &full).unwrap(), written);
        // Nothing placed: the section goes, the rest stays as it was.
        full.ui = None;
        assert_eq!(merge_into_toml(&written, &full, &full).unwrap(), FILE);
    }
}
