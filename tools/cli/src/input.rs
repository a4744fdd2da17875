//! Reading an import streams it: NDJSON line by line, a JSON array element by element, CSV row
//! by row, plain or gzip (detected by its magic bytes). A 10 GB file is never held in memory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    JsonArray,
    Csv,
}

impl Format {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "ndjson" | "jsonl" => Ok(Self::Ndjson),
            "json" => Ok(Self::JsonArray),
            "csv" => Ok(Self::Csv),
            other => Err(format!("unknown format '{other}': ndjson, json or csv")),
        }
    }

    /// From the file name (`.ndjson`, `.jsonl`, `.json`, `.csv`, each optionally `.gz`).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.strip_suffix(".gz").unwrap_or(name);
        let extension = name.rsplit('.').next()?;
        Self::parse(extension).ok()
    }
}

/// One record of the input: its line (NDJSON, CSV: 1-based line of the file; JSON arrays: the
/// element's 1-based position) and the event, or why it could not be read.
#[derive(Debug)]
pub struct Record {
    pub line: u64,
    pub event: Result<Value, String>,
}

/// How CSV columns become event fields: `column=field` (`data.x` for a data field). Columns
/// named like an event field go there; every other column goes to `data.<column>`.
#[derive(Clone, Debug, Default)]
pub struct ColumnMap(pub BTreeMap<String, String>);

impl ColumnMap {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (column, field) =
                pair.split_once('=').ok_or_else(|| format!("'{pair}' is not column=field in --map"))?;
            map.insert(column.trim().to_string(), field.trim().to_string());
        }
        Ok(Self(map))
    }

    fn field_of(&self, column: &str) -> String {
        const TOP: [&str; 11] = [
            "id",
            "session_id",
            "category",
            "name",
            "stream",
            "timestamp",
            "metadata",
            "event_id",
            "event_type",
            "stream_id",
            "data",
        ];
        match self.0.get(column) {
            Some(field) => field.clone(),
            None if TOP.contains(&column) => column.to_string(),
            None => format!("data.{column}"),
        }
    }
}

/// A reader that transparently gunzips when the stream starts with gzip's magic bytes, and the
/// fingerprint of its first MiB (of the decompressed content): the import's identity, from
/// which event ids derive.
pub fn open(reader: Box<dyn Read + Send>) -> Result<(Box<dyn BufRead + Send>, String), String> {
    let mut buffered = BufReader::with_capacity(1 << 20, reader);
    let magic = buffered.fill_buf().map_err(|e| format!("reading input: {e}"))?;
    let gzipped = magic.len() >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    let mut content: Box<dyn Read + Send> =
        if gzipped { Box::new(flate2::read::MultiGzDecoder::new(buffered)) } else { Box::new(buffered) };
    // Exactly the first MiB (or all of a shorter input), however the reads split it: a pipe
    // hands over a few KiB at a time, and the fingerprint must not depend on that.
    let mut head = Vec::with_capacity(1 << 20);
    content.by_ref().take(1 << 20).read_to_end(&mut head).map_err(|e| format!("reading input: {e}"))?;
    let fingerprint = hex::encode(Sha256::digest(&head));
    let rest = std::io::Cursor::new(head).chain(content);
    Ok((Box::new(BufReader::with_capacity(1 << 20, rest)), fingerprint))
}

/// Records of `reader` in `format`, lazily.
pub fn records(
    reader: Box<dyn BufRead + Send>,
    format: Format,
    columns: ColumnMap,
) -> Box<dyn Iterator<Item = Record> + Send> {
    match format {
        Format::Ndjson => Box::new(ndjson(reader)),
        Format::JsonArray => Box::new(JsonArray { reader, position: 0, state: ArrayState::Start }),
        Format::Csv => Box::new(csv_records(reader, columns)),
    }
}

fn ndjson(reader: Box<dyn BufRead + Send>) -> impl Iterator<Item = Record> {
    reader.lines().enumerate().filter_map(|(index, line)| {
        let line_number = index as u64 + 1;
        match line {
            Err(err) => Some(Record { line: line_number, event: Err(format!("unreadable line: {err}")) }),
            Ok(text) if text.trim().is_empty() => None,
            Ok(text) => Some(Record {
                line: line_number,
                event: serde_json::from_str::<Value>(&text).map_err(|e| format!("not JSON: {e}")),
            }),
        }
    })
}

enum ArrayState {
    Start,
    Items,
    Done,
}

/// A top-level JSON array, one element at a time.
struct JsonArray {
    reader: Box<dyn BufRead + Send>,
    position: u64,
    state: ArrayState,
}

impl JsonArray {
    /// The next byte that is not whitespace, consumed.
    fn next_significant(&mut self) -> Option<u8> {
        loop {
            let buffer = self.reader.fill_buf().ok()?;
            let first = *buffer.first()?;
            self.reader.consume(1);
            if !first.is_ascii_whitespace() {
                return Some(first);
            }
        }
    }

    fn peek_significant(&mut self) -> Option<u8> {
        loop {
            let buffer = self.reader.fill_buf().ok()?;
            let first = *buffer.first()?;
            if !first.is_ascii_whitespace() {
                return Some(first);
            }
            self.reader.consume(1);
        }
    }

    fn fail(&mut self, message: String) -> Option<Record> {
        self.state = ArrayState::Done;
        Some(Record { line: self.position + 1, event: Err(message) })
    }
}

impl Iterator for JsonArray {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        match self.state {
            ArrayState::Done => return None,
            ArrayState::Start => {
                if self.next_significant() != Some(b'[') {
                    return self.fail("a JSON file must hold one array of events".into());
                }
                if self.peek_significant() == Some(b']') {
                    self.state = ArrayState::Done;
                    return None;
                }
                self.state = ArrayState::Items;
            }
            ArrayState::Items => match self.next_significant() {
                Some(b',') => {}
                Some(b']') => {
                    self.state = ArrayState::Done;
                    return None;
                }
                _ => return self.fail("expected ',' or ']' between array elements".into()),
            },
        }
        self.position += 1;
        // Elements are objects: their closing brace ends them, so the deserializer reads no
        // byte past the element.
        let mut deserializer = serde_json::Deserializer::from_reader(&mut self.reader);
        match serde::Deserialize::deserialize(&mut deserializer) {
            Ok(value @ Value::Object(_)) => Some(Record { line: self.position, event: Ok(value) }),
            Ok(_) => self.fail(format!("element {} is not an object", self.position)),
            Err(err) => self.fail(format!("element {}: {err}", self.position)),
        }
    }
}

fn csv_records(reader: Box<dyn BufRead + Send>, columns: ColumnMap) -> impl Iterator<Item = Record> {
    let mut csv = csv::ReaderBuilder::new().flexible(false).from_reader(reader);
    let headers: Result<Vec<String>, String> =
        csv.headers().map(|h| h.iter().map(str::to_string).collect()).map_err(|e| format!("CSV header: {e}"));
    let mut failed_header = headers.as_ref().err().cloned();
    let headers = headers.unwrap_or_default();
    let fields: Vec<String> = headers.iter().map(|h| columns.field_of(h)).collect();
    let mut rows = csv.into_records();
    std::iter::from_fn(move || {
        if let Some(message) = failed_header.take() {
            return Some(Record { line: 1, event: Err(message) });
        }
        let row = rows.next()?;
        Some(match row {
            Err(err) => {
                let line = err.position().map_or(0, |p| p.line());
                Record { line, event: Err(format!("CSV: {err}")) }
            }
            Ok(row) => {
                let line = row.position().map_or(0, |p| p.line());
                let mut event = Map::new();
                for (field, value) in fields.iter().zip(row.iter()) {
                    if value.is_empty() {
                        continue;
                    }
                    match field.strip_prefix("data.") {
                        Some(name) => {
                            let data = event.entry("data").or_insert_with(|| Value::Object(Map::new()));
                            if let Value::Object(data) = data {
                                data.insert(name.to_string(), Value::String(value.to_string()));
                            }
                        }
                        None => {
                            event.insert(field.clone(), Value::String(value.to_string()));
                        }
                    }
                }
                Record { line, event: Ok(Value::Object(event)) }
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read(text: &str, format: Format, columns: &str) -> Vec<Record> {
        let (reader, _) = open(Box::new(Cursor::new(text.as_bytes().to_vec()))).unwrap();
        records(reader, format, ColumnMap::parse(columns).unwrap()).collect()
    }

    #[test]
    fn ndjson_keeps_line_numbers_and_reports_bad_lines() {
        let records = read("{\"a\":1}\n\n{oops\n{\"a\":3}\n", Format::Ndjson, "");
        let lines: Vec<u64> = records.iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 3, 4]);
        assert!(records[1].event.is_err());
    }

    #[test]
    fn json_arrays_stream_element_by_element() {
        let records = read(" [ {\"a\": [1, {\"b\": \"]\"}]} ,\n{\"a\":2}] ", Format::JsonArray, "");
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].event.as_ref().unwrap()["a"], 2);
        assert!(read("[]", Format::JsonArray, "").is_empty());
        let broken = read("[{\"a\":1} {\"a\":2}]", Format::JsonArray, "");
        assert!(broken[1].event.is_err());
        assert!(read("{\"a\":1}", Format::JsonArray, "")[0].event.is_err());
    }

    #[test]
    fn csv_columns_map_to_fields_and_data() {
        let text = "when,evt,user,plan\n2026-01-01T00:00:00Z,signup,u1,pro\n2026-01-02T00:00:00Z,login,u2,\n";
        let records = read(text, Format::Csv, "when=timestamp,evt=name");
        let first = records[0].event.as_ref().unwrap();
        assert_eq!(first["timestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(first["name"], "signup");
        assert_eq!(first["data"], serde_json::json!({"user": "u1", "plan": "pro"}));
        assert_eq!(records[0].line, 2);
        assert!(records[1].event.as_ref().unwrap()["data"].get("plan").is_none(), "empty cells are absent");
    }

    /// Hands out at most 7 bytes per read, like a slow pipe.
    struct Trickle(Cursor<Vec<u8>>);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(7);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn the_fingerprint_does_not_depend_on_how_reads_split_the_input() {
        let text: Vec<u8> = (0..50_000).flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes()).collect();
        let (reader, whole) = open(Box::new(Cursor::new(text.clone()))).unwrap();
        let (trickled, by_pipe) = open(Box::new(Trickle(Cursor::new(text.clone())))).unwrap();
        assert_eq!(whole, by_pipe);
        assert_eq!(records(reader, Format::Ndjson, ColumnMap::default()).count(), 50_000);
        assert_eq!(records(trickled, Format::Ndjson, ColumnMap::default()).count(), 50_000);
    }

    #[test]
    fn gzip_input_is_detected_and_fingerprinted_by_content() {
        let plain = b"{\"a\":1}\n".to_vec();
        let (_, fingerprint_plain) = open(Box::new(Cursor::new(plain.clone()))).unwrap();
        let (reader, fingerprint_gz) = open(Box::new(Cursor::new(crate::api::gzip(&plain)))).unwrap();
        assert_eq!(fingerprint_plain, fingerprint_gz);
        assert_eq!(records(reader, Format::Ndjson, ColumnMap::default()).count(), 1);
        assert_eq!(Format::from_name("x.ndjson.gz"), Some(Format::Ndjson));
        assert_eq!(Format::from_name("x.csv"), Some(Format::Csv));
    }
}
