//! Exports: `POST /exports` requests, formats, the columns every format shares, and where the
//! files go. No I/O: the export function (`argus-export`) and the API share these rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::analytics::parse_window;
use crate::stream::check_stream_id;
use crate::validation::{body_object, json_type_name};
use crate::{time, FieldError, ValidationError};

/// Longest window one export covers (a year and a day): longer periods are several exports,
/// each of which completes, fails or is retried on its own.
pub const MAX_EXPORT_WINDOW_DAYS: i64 = 366;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Ndjson,
    Csv,
    Parquet,
    Avro,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 4] = [Self::Ndjson, Self::Csv, Self::Parquet, Self::Avro];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::Csv => "csv",
            Self::Parquet => "parquet",
            Self::Avro => "avro",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == raw)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Ndjson => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Parquet => "application/vnd.apache.parquet",
            Self::Avro => "application/avro",
        }
    }
}

/// `gzip`: NDJSON and CSV files are gzip streams (`.ndjson.gz`); Parquet pages are
/// GZIP-compressed and Avro blocks deflate-compressed inside the file, so the files stay
/// readable by every Parquet and Avro reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    None,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::None => "none",
        }
    }
}

/// The name of a file of an export: `<prefix>/part-00000.<ext>`. Only NDJSON and CSV carry
/// `.gz` (the others compress inside their own format).
pub fn file_name(format: ExportFormat, compression: Compression, index: u32) -> String {
    let gz = matches!((format, compression), (ExportFormat::Ndjson | ExportFormat::Csv, Compression::Gzip));
    format!("part-{index:05}.{}{}", format.name(), if gz { ".gz" } else { "" })
}

/// Where an export's files are written in the exports bucket.
pub fn export_prefix(tenant: &str, export_id: &str) -> String {
    format!("exports/{}/{export_id}", path_segment(tenant))
}

/// A tenant id as one S3 key segment: tenant ids are restricted, but a key never trusts that.
pub fn path_segment(raw: &str) -> String {
    raw.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFilters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// A checked `POST /exports` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequest {
    pub stream_id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub format: ExportFormat,
    pub compression: Compression,
    pub filters: ExportFilters,
}

const FIELDS: [&str; 5] = ["stream_id", "time_window", "format", "filters", "compression"];
const FILTERS: [&str; 4] = ["category", "event_type", "name", "session_id"];

impl ExportRequest {
    pub fn parse(body: &Value) -> Result<Self, ValidationError> {
        let fields = body_object(body, "an export request is a JSON object")?;
        let mut errors = ValidationError::default();
        for name in fields.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
            errors.push(FieldError::new(
                name.clone(),
                "UNKNOWN_FIELD",
                format!("unknown field; an export takes {}", FIELDS.join(", ")),
            ));
        }
        let stream_id = match fields.get("stream_id") {
            Some(Value::String(raw)) => check_stream_id("stream_id", raw).map_err(|e| errors.push(e)).ok(),
            Some(other) => {
                errors.push(type_error("stream_id", "a string", other));
                None
            }
            None => {
                errors.push(FieldError::new("stream_id", "REQUIRED", "stream_id is required"));
                None
            }
        };
        let window = parse_window(fields.get("time_window"), MAX_EXPORT_WINDOW_DAYS, &mut errors);
        let format = match fields.get("format") {
            Some(Value::String(raw)) => ExportFormat::parse(raw).or_else(|| {
                errors.push(FieldError::new(
                    "format",
                    "UNKNOWN_FORMAT",
                    format!("format is one of ndjson, csv, parquet, avro; got {raw:?}"),
                ));
                None
            }),
            Some(other) => {
                errors.push(type_error("format", "a string", other));
                None
            }
            None => {
                errors.push(FieldError::new("format", "REQUIRED", "format is required (ndjson, csv, parquet, avro)"));
                None
            }
        };
        let compression = match fields.get("compression") {
            None | Some(Value::Null) => Some(Compression::None),
            Some(Value::String(raw)) if raw == "gzip" => Some(Compression::Gzip),
            Some(Value::String(raw)) if raw == "none" => Some(Compression::None),
            Some(other) => {
                errors.push(FieldError::new(
                    "compression",
                    "UNKNOWN_COMPRESSION",
                    format!("compression is \"gzip\" or \"none\"; got {other}"),
                ));
                None
            }
        };
        let filters = parse_filters(fields.get("filters"), &mut errors);
        errors.into_result()?;
        match (stream_id, window, format, compression) {
            (Some(stream_id), Some((start, end)), Some(format), Some(compression)) => {
                Ok(Self { stream_id, start, end, format, compression, filters })
            }
            _ => Err(FieldError::new("body", "INVALID_REQUEST", "invalid export request").into()),
        }
    }
}

fn type_error(field: &str, expected: &str, got: &Value) -> FieldError {
    FieldError::new(field, "INVALID_TYPE", format!("{field} is {expected}, got {}", json_type_name(got)))
}

fn parse_filters(raw: Option<&Value>, errors: &mut ValidationError) -> ExportFilters {
    let mut filters = ExportFilters::default();
    let fields: &Map<String, Value> = match raw {
        None | Some(Value::Null) => return filters,
        Some(Value::Object(fields)) => fields,
        Some(other) => {
            errors.push(type_error("filters", "an object", other));
            return filters;
        }
    };
    for (name, value) in fields {
        let field = format!("filters.{name}");
        if !FILTERS.contains(&name.as_str()) {
            errors.push(FieldError::new(
                field,
                "UNKNOWN_FILTER",
                "filters are category, event_type (or name) and session_id; an unknown filter would export everything",
            ));
            continue;
        }
        let Value::String(text) = value else {
            errors.push(type_error(&field, "a string", value));
            continue;
        };
        // The same bounds as the events' own fields.
        let max = if name == "category" { crate::event::MAX_CATEGORY_LEN } else { crate::event::MAX_NAME_LEN };
        if text.is_empty() || text.chars().count() > max {
            errors.push(FieldError::new(field, "INVALID_LENGTH", format!("1 to {max} characters")));
            continue;
        }
        match name.as_str() {
            "category" => filters.category = Some(text.clone()),
            // Hyphenated, as every id Argus answers with.
            "session_id" => match uuid::Uuid::try_parse(text) {
                Ok(id) if text.len() == 36 => filters.session_id = Some(id.to_string()),
                _ => errors.push(FieldError::new(field, "INVALID_UUID", "session_id is a hyphenated UUID")),
            },
            _ if filters.event_type.is_some() => errors.push(FieldError::new(
                field,
                "DUPLICATE_FILTER",
                "event_type and name are the same filter; give one",
            )),
            _ => filters.event_type = Some(text.clone()),
        }
    }
    filters
}

/// The columns of every export format, in order. `data` and `metadata` are JSON text in
/// every format (their shapes differ event by event); timestamps are RFC 3339 text in NDJSON
/// and CSV, and typed UTC timestamps (milliseconds) in Parquet and Avro.
pub const COLUMNS: [&str; 8] =
    ["event_id", "stream_id", "timestamp", "event_type", "category", "session_id", "data", "metadata"];

/// One exported event: the fields `GET /query/events` answers, in the columns' order.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    pub event_id: String,
    pub stream_id: String,
    pub timestamp: DateTime<Utc>,
    pub event_type: String,
    pub category: Option<String>,
    pub session_id: Option<String>,
    /// JSON text.
    pub data: String,
    /// JSON text.
    pub metadata: Option<String>,
}

impl ExportRow {
    /// Bytes this row holds (what bounds an encoder's buffers).
    pub fn weight(&self) -> usize {
        64 + self.event_id.len()
            + self.stream_id.len()
            + self.event_type.len()
            + self.category.as_ref().map_or(0, String::len)
            + self.session_id.as_ref().map_or(0, String::len)
            + self.data.len()
            + self.metadata.as_ref().map_or(0, String::len)
    }

    /// The row as `GET /query/events` shows the event (NDJSON's line).
    pub fn to_json(&self) -> Value {
        let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
        serde_json::json!({
            "event_id": self.event_id,
            "stream_id": self.stream_id,
            "timestamp": time::format(&self.timestamp),
            "event_type": self.event_type,
            "category": self.category,
            "session_id": self.session_id,
            "data": parse(&self.data),
            "metadata": self.metadata.as_deref().map(parse),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportStatus {
    Queued,
    Running,
    Completed,
    Failed,
}

impl ExportStatus {
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Completed, Self::Failed].into_iter().find(|s| s.name() == raw)
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// One finished file of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFile {
    pub key: String,
    pub events: u64,
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Value {
        json!({"stream_id": "s1", "time_window": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
               "format": "parquet"})
    }

    #[test]
    fn a_minimal_request_parses_with_defaults() {
        let request = ExportRequest::parse(&body()).unwrap();
        assert_eq!(request.format, ExportFormat::Parquet);
        assert_eq!(request.compression, Compression::None);
        assert_eq!(request.filters, ExportFilters::default());
    }

    #[test]
    fn bad_requests_name_the_field() {
        let cases = [
            (json!({"format": "xlsx"}), "format", "UNKNOWN_FORMAT"),
            (json!({"format": 3}), "format", "INVALID_TYPE"),
            (json!({"compression": "zstd"}), "compression", "UNKNOWN_COMPRESSION"),
            (
                json!({"time_window": {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}}),
                "time_window.end",
                "WINDOW_END_BEFORE_START",
            ),
            (
                json!({"time_window": {"start": "2024-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}}),
                "time_window.end",
                "WINDOW_TOO_LARGE",
            ),
            (
                json!({"time_window": {"start": "yesterday", "end": "2026-01-01T00:00:00Z"}}),
                "time_window.start",
                "INVALID_TIMESTAMP",
            ),
            (json!({"filters": {"colour": "red"}}), "filters.colour", "UNKNOWN_FILTER"),
            (json!({"filters": {"session_id": "nope"}}), "filters.session_id", "INVALID_UUID"),
            (json!({"filters": {"event_type": "a", "name": "b"}}), "filters.name", "DUPLICATE_FILTER"),
            (json!({"extra": 1}), "extra", "UNKNOWN_FIELD"),
            (json!({"stream_id": ""}), "stream_id", "INVALID_LENGTH"),
        ];
        for (patch, field, code) in cases {
            let mut request = body();
            for (k, v) in patch.as_object().unwrap() {
                request[k] = v.clone();
            }
            let err = ExportRequest::parse(&request).unwrap_err();
            let details = err.details();
            let text = Value::Object(details).to_string();
            assert!(text.contains(field) && text.contains(code), "{patch}: {text}");
        }
        assert!(ExportRequest::parse(&json!([1])).is_err());
    }

    #[test]
    fn files_are_named_by_format_and_compression() {
        assert_eq!(file_name(ExportFormat::Ndjson, Compression::Gzip, 3), "part-00003.ndjson.gz");
        assert_eq!(file_name(ExportFormat::Parquet, Compression::Gzip, 0), "part-00000.parquet");
        assert_eq!(export_prefix("t/../x", "e1"), "exports/t_.._x/e1");
    }
}
