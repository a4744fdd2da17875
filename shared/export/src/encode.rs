//! File encoders: rows in, file bytes out into a [`SharedBuf`] that the uploader drains part
//! by part. Every encoder holds a bounded amount in memory: NDJSON and CSV one row (plus the
//! gzip window), Avro one block, Parquet one row group of at most [`ROW_GROUP_BYTES`].

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use argus_models::export::{Compression, ExportFormat, ExportRow, COLUMNS};
use argus_models::time;
use flate2::write::GzEncoder;

/// A Parquet row group is written once its rows hold this many bytes (or [`ROW_GROUP_ROWS`]).
pub const ROW_GROUP_BYTES: usize = 16 * 1024 * 1024;
pub const ROW_GROUP_ROWS: usize = 50_000;

/// The encoder's output, shared with the uploader, which takes what has been written so far.
#[derive(Clone, Default)]
pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    pub fn len(&self) -> usize {
        self.0.lock().map(|b| b.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Everything written so far (the buffer is left empty).
    pub fn take(&self) -> Vec<u8> {
        self.0.lock().map(|mut b| std::mem::take(&mut *b)).unwrap_or_default()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buf = self.0.lock().map_err(|_| std::io::Error::other("buffer poisoned"))?;
        buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub type EncodeResult<T> = Result<T, String>;

/// Rows in, bytes out.
pub trait RowEncoder: Send {
    fn write_row(&mut self, row: &ExportRow) -> EncodeResult<()>;
    /// Writes what is buffered and the file's trailer (Parquet footer, gzip trailer).
    fn finish(self: Box<Self>) -> EncodeResult<()>;
}

/// The encoder for a format, writing into `sink`.
pub fn encoder(format: ExportFormat, compression: Compression, sink: SharedBuf) -> EncodeResult<Box<dyn RowEncoder>> {
    Ok(match format {
        ExportFormat::Ndjson => Box::new(TextEncoder::new(TextKind::Ndjson, compression, sink)),
        ExportFormat::Csv => Box::new(TextEncoder::new(TextKind::Csv, compression, sink)),
        ExportFormat::Parquet => Box::new(ParquetEncoder::new(compression, sink)?),
        ExportFormat::Avro => Box::new(AvroEncoder::new(compression, sink)?),
    })
}

enum TextOut {
    Plain(SharedBuf),
    Gzip(GzEncoder<SharedBuf>),
}

impl TextOut {
    fn write_all(&mut self, bytes: &[u8]) -> EncodeResult<()> {
        match self {
            Self::Plain(sink) => sink.write_all(bytes),
            Self::Gzip(gz) => gz.write_all(bytes),
        }
        .map_err(|e| e.to_string())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TextKind {
    Ndjson,
    Csv,
}

struct TextEncoder {
    kind: TextKind,
    out: TextOut,
    header_written: bool,
    line: String,
}

impl TextEncoder {
    fn new(kind: TextKind, compression: Compression, sink: SharedBuf) -> Self {
        let out = match compression {
            Compression::Gzip => TextOut::Gzip(GzEncoder::new(sink, flate2::Compression::default())),
            Compression::None => TextOut::Plain(sink),
        };
        Self { kind, out, header_written: false, line: String::new() }
    }

    fn header(&mut self) -> EncodeResult<()> {
        if self.kind == TextKind::Csv && !self.header_written {
            self.out.write_all(format!("{}\r\n", COLUMNS.join(",")).as_bytes())?;
        }
        self.header_written = true;
        Ok(())
    }
}

/// RFC 4180: a field is quoted when it holds a comma, a quote, CR or LF; quotes are doubled.
pub fn csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// One CSV record (CRLF-terminated): empty fields for absent values.
pub fn csv_record(row: &ExportRow, out: &mut String) {
    let timestamp = time::format(&row.timestamp);
    let fields: [&str; 8] = [
        &row.event_id,
        &row.stream_id,
        &timestamp,
        &row.event_type,
        row.category.as_deref().unwrap_or(""),
        row.session_id.as_deref().unwrap_or(""),
        &row.data,
        row.metadata.as_deref().unwrap_or(""),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, field);
    }
    out.push_str("\r\n");
}

impl RowEncoder for TextEncoder {
    fn write_row(&mut self, row: &ExportRow) -> EncodeResult<()> {
        self.header()?;
        self.line.clear();
        match self.kind {
            TextKind::Ndjson => {
                self.line.push_str(&row.to_json().to_string());
                self.line.push('\n');
            }
            TextKind::Csv => csv_record(row, &mut self.line),
        }
        let line = std::mem::take(&mut self.line);
        let written = self.out.write_all(line.as_bytes());
        self.line = line;
        written
    }

    fn finish(mut self: Box<Self>) -> EncodeResult<()> {
        self.header()?;
        match self.out {
            TextOut::Plain(_) => Ok(()),
            TextOut::Gzip(gz) => gz.finish().map(|_| ()).map_err(|e| e.to_string()),
        }
    }
}

/// The Parquet schema: timestamps are UTC milliseconds, text is UTF-8, `data` and `metadata`
/// JSON text.
pub const PARQUET_SCHEMA: &str = "message argus_event {
  required binary event_id (STRING);
  required binary stream_id (STRING);
  required int64 timestamp (TIMESTAMP(MILLIS,true));
  required binary event_type (STRING);
  optional binary category (STRING);
  optional binary session_id (STRING);
  required binary data (STRING);
  optional binary metadata (STRING);
}";

struct ParquetEncoder {
    writer: Option<parquet::file::writer::SerializedFileWriter<SharedBuf>>,
    rows: Vec<ExportRow>,
    bytes: usize,
}

impl ParquetEncoder {
    fn new(compression: Compression, sink: SharedBuf) -> EncodeResult<Self> {
        use parquet::basic::{Compression as Codec, GzipLevel};
        use parquet::file::properties::WriterProperties;
        let schema = Arc::new(parquet::schema::parser::parse_message_type(PARQUET_SCHEMA).map_err(|e| e.to_string())?);
        let codec = match compression {
            Compression::Gzip => Codec::GZIP(GzipLevel::default()),
            Compression::None => Codec::UNCOMPRESSED,
        };
        let properties = Arc::new(
            WriterProperties::builder().set_compression(codec).set_created_by("argus export".to_string()).build(),
        );
        let writer =
            parquet::file::writer::SerializedFileWriter::new(sink, schema, properties).map_err(|e| e.to_string())?;
        Ok(Self { writer: Some(writer), rows: Vec::new(), bytes: 0 })
    }

    fn write_group(&mut self) -> EncodeResult<()> {
        use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
        let Some(writer) = self.writer.as_mut() else { return Err("parquet writer closed".into()) };
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        self.bytes = 0;
        let err = |e: parquet::errors::ParquetError| e.to_string();
        let mut group = writer.next_row_group().map_err(err)?;
        let mut index = 0;
        while let Some(mut column) = group.next_column().map_err(err)? {
            if index == 2 {
                let values: Vec<i64> = rows.iter().map(|r| r.timestamp.timestamp_millis()).collect();
                column.typed::<Int64Type>().write_batch(&values, None, None).map_err(err)?;
            } else {
                let text = |r: &ExportRow| -> Option<String> {
                    match index {
                        0 => Some(r.event_id.clone()),
                        1 => Some(r.stream_id.clone()),
                        3 => Some(r.event_type.clone()),
                        4 => r.category.clone(),
                        5 => r.session_id.clone(),
                        6 => Some(r.data.clone()),
                        _ => r.metadata.clone(),
                    }
                };
                let optional = matches!(index, 4 | 5 | 7);
                let cells: Vec<Option<String>> = rows.iter().map(text).collect();
                let values: Vec<ByteArray> =
                    cells.iter().flatten().map(|t| ByteArray::from(t.as_bytes().to_vec())).collect();
                let levels: Vec<i16> = cells.iter().map(|c| i16::from(c.is_some())).collect();
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&values, optional.then_some(levels.as_slice()), None)
                    .map_err(err)?;
            }
            column.close().map_err(err)?;
            index += 1;
        }
        group.close().map_err(err)?;
        Ok(())
    }
}

impl RowEncoder for ParquetEncoder {
    fn write_row(&mut self, row: &ExportRow) -> EncodeResult<()> {
        self.bytes += row.weight();
        self.rows.push(row.clone());
        if self.bytes >= ROW_GROUP_BYTES || self.rows.len() >= ROW_GROUP_ROWS {
            self.write_group()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> EncodeResult<()> {
        self.write_group()?;
        let writer = self.writer.take().ok_or("parquet writer closed")?;
        writer.close().map(|_| ()).map_err(|e| e.to_string())
    }
}

/// The Avro schema: as Parquet's, with `timestamp-millis` timestamps and nullable unions.
pub const AVRO_SCHEMA: &str = r#"{
  "type": "record", "name": "ArgusEvent", "namespace": "io.argus",
  "fields": [
    {"name": "event_id", "type": "string"},
    {"name": "stream_id", "type": "string"},
    {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "event_type", "type": "string"},
    {"name": "category", "type": ["null", "string"], "default": null},
    {"name": "session_id", "type": ["null", "string"], "default": null},
    {"name": "data", "type": "string"},
    {"name": "metadata", "type": ["null", "string"], "default": null}
  ]
}"#;

fn avro_schema() -> EncodeResult<&'static apache_avro::Schema> {
    static SCHEMA: OnceLock<Result<apache_avro::Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| apache_avro::Schema::parse_str(AVRO_SCHEMA).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

struct AvroEncoder {
    writer: apache_avro::Writer<'static, SharedBuf>,
}

impl AvroEncoder {
    fn new(compression: Compression, sink: SharedBuf) -> EncodeResult<Self> {
        let codec = match compression {
            Compression::Gzip => apache_avro::Codec::Deflate(apache_avro::DeflateSettings::default()),
            Compression::None => apache_avro::Codec::Null,
        };
        let mut writer = apache_avro::Writer::with_codec(avro_schema()?, sink, codec);
        // The header goes out now: an empty export is still a valid file.
        writer.flush().map_err(|e| e.to_string())?;
        Ok(Self { writer })
    }
}

impl RowEncoder for AvroEncoder {
    fn write_row(&mut self, row: &ExportRow) -> EncodeResult<()> {
        use apache_avro::types::Value;
        let optional = |v: &Option<String>| match v {
            Some(text) => Value::Union(1, Box::new(Value::String(text.clone()))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        let record = Value::Record(vec![
            ("event_id".into(), Value::String(row.event_id.clone())),
            ("stream_id".into(), Value::String(row.stream_id.clone())),
            ("timestamp".into(), Value::TimestampMillis(row.timestamp.timestamp_millis())),
            ("event_type".into(), Value::String(row.event_type.clone())),
            ("category".into(), optional(&row.category)),
            ("session_id".into(), optional(&row.session_id)),
            ("data".into(), Value::String(row.data.clone())),
            ("metadata".into(), optional(&row.metadata)),
        ]);
        self.writer.append(record).map(|_| ()).map_err(|e| e.to_string())
    }

    fn finish(mut self: Box<Self>) -> EncodeResult<()> {
        self.writer.flush().map(|_| ()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize) -> ExportRow {
        ExportRow {
            event_id: format!("00000000-0000-4000-8000-{i:012}"),
            stream_id: "s".into(),
            timestamp: time::parse("t", "2026-01-01T00:00:00.123Z").unwrap(),
            event_type: "click".into(),
            category: i.is_multiple_of(2).then(|| "ui".into()),
            session_id: None,
            data: format!(r#"{{"n":{i},"text":"a,\"b\"\n"}}"#),
            metadata: None,
        }
    }

    fn encode(format: ExportFormat, compression: Compression, rows: usize) -> Vec<u8> {
        let sink = SharedBuf::default();
        let mut encoder = encoder(format, compression, sink.clone()).unwrap();
        for i in 0..rows {
            encoder.write_row(&row(i)).unwrap();
        }
        encoder.finish().unwrap();
        sink.take()
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut out = String::new();
        csv_record(&row(0), &mut out);
        assert!(out.starts_with("00000000-0000-4000-8000-000000000000,s,2026-01-01T00:00:00.123Z,click,ui,,"), "{out}");
        assert!(out.contains(r#""{""n"":0,""text"":""a,\""b\""\n""}""#), "{out}");
        let text = String::from_utf8(encode(ExportFormat::Csv, Compression::None, 2)).unwrap();
        assert!(text.starts_with("event_id,stream_id,timestamp,event_type,category,session_id,data,metadata\r\n"));
    }

    #[test]
    fn every_format_writes_a_file_even_when_empty() {
        for format in ExportFormat::ALL {
            for compression in [Compression::None, Compression::Gzip] {
                let empty = encode(format, compression, 0);
                let full = encode(format, compression, 100);
                assert!(full.len() > empty.len(), "{format:?} {compression:?}");
                match format {
                    ExportFormat::Parquet => {
                        assert!(empty.starts_with(b"PAR1") && full.ends_with(b"PAR1"));
                    }
                    ExportFormat::Avro => assert!(full.starts_with(b"Obj\x01")),
                    _ if compression == Compression::Gzip => assert!(full.starts_with(&[0x1f, 0x8b])),
                    ExportFormat::Ndjson => assert_eq!(full.iter().filter(|b| **b == b'\n').count(), 100),
                    ExportFormat::Csv => {}
                }
            }
        }
    }

    #[test]
    fn parquet_row_groups_are_bounded() {
        // 120,000 rows: three groups (50,000 rows each at most), read back by the crate's reader.
        let bytes = encode(ExportFormat::Parquet, Compression::Gzip, 120_000);
        let reader = parquet::file::reader::SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        use parquet::file::reader::FileReader;
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), 120_000);
        assert_eq!(meta.num_row_groups(), 3);
    }
}
