//! The archive function (DynamoDB Streams, `REMOVE` records of DynamoDB's TTL service only):
//! events leaving the table by expiry are written to S3 as Parquet, partitioned Hive-style by
//! tenant, stream and event date (`archive/tenant=…/stream=…/date=YYYY-MM-DD/…parquet`), so
//! Athena, DuckDB or Spark query the archive in place.
//!
//! Nothing expires unarchived: a batch whose files are not all written is reported failed
//! from its first record, and Lambda retries it (the mapping retries forever; IteratorAge
//! alarms long before the stream's 24 h). A retried batch is written again: a file is named
//! by the batch's first sequence number and its group, so the same batch overwrites its own
//! files; a batch that Lambda re-cuts differently may repeat rows in another file (at least
//! once: `event_id` is unique, deduplicate on it).

use std::collections::BTreeMap;

use argus_core::aggregator::{parse_event, tenant_of, ChangeKind};
use argus_core::ddb::get_opt_s;
use argus_core::{Backend, ServiceError};
use argus_models::export::{path_segment, Compression, ExportFormat, ExportRow};
use serde_json::{json, Value};

use crate::upload::{FileUpload, MIN_PART_BYTES};

/// What one invocation archived.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    pub archived: usize,
    pub files: Vec<String>,
    /// Records that were not TTL removals of live events (filtered out in AWS already).
    pub skipped: usize,
    /// Records kept under `archive/_unreadable/` (not readable as events).
    pub unreadable: usize,
}

/// Where one archive file goes.
pub fn archive_key(tenant: &str, stream: &str, date: &str, first_sequence: &str, part: usize) -> String {
    format!(
        "archive/tenant={}/stream={}/date={date}/{}-{part:03}.parquet",
        path_segment(tenant),
        path_segment(stream),
        path_segment(first_sequence)
    )
}

pub async fn handle(backend: &Backend, event: &Value, deadline: Option<std::time::Instant>) -> Value {
    let records: Vec<Value> = event["Records"].as_array().cloned().unwrap_or_default();
    let first = records.first().and_then(|r| r["dynamodb"]["SequenceNumber"].as_str()).unwrap_or_default().to_string();
    let work = argus_core::deadline::scope(deadline, Box::pin(archive(backend, &records, &first)));
    match work.await {
        Ok(report) => {
            tracing::info!(
                archived = report.archived,
                files = report.files.len(),
                skipped = report.skipped,
                unreadable = report.unreadable,
                "archived"
            );
            json!({"batchItemFailures": []})
        }
        Err(err) => {
            tracing::error!(error = %err, "archive batch failed; the stream retries it");
            json!({"batchItemFailures": [{"itemIdentifier": first}]})
        }
    }
}

/// Archives one batch of stream records (Lambda's `Records`). A record that cannot be read as
/// an event is not a reason to hold the shard back (it would block every expiry behind it until
/// the stream drops them after 24 h): it is written as it came under `archive/_unreadable/`
/// (a path Athena and Hive skip) and counted. Only S3 failures fail the batch.
pub async fn archive(
    backend: &Backend,
    records: &[Value],
    first_sequence: &str,
) -> Result<ArchiveReport, ServiceError> {
    let mut report = ArchiveReport::default();
    // (tenant, stream, date) → rows, in stream order.
    let mut groups: BTreeMap<(String, String, String), Vec<ExportRow>> = BTreeMap::new();
    let mut unreadable: Vec<Value> = Vec::new();
    for raw in records {
        let parsed = parse_event(&json!({"Records": [raw]})).into_iter().next();
        let record = match parsed {
            Some(Ok(record)) => record,
            _ => {
                unreadable.push(raw.clone());
                continue;
            }
        };
        let old = match (&record.kind, &record.old) {
            (ChangeKind::Remove, Some(old)) if record.by_ttl => old,
            _ => {
                report.skipped += 1;
                continue;
            }
        };
        // Only live events: a soft-deleted event was deleted by its owner, not kept for later.
        if get_opt_s(old, "entity") != Some("event") || get_opt_s(old, "deleted_at").is_some() {
            report.skipped += 1;
            continue;
        }
        let (Some(tenant), Ok(row)) = (tenant_of(old, "EVENT#"), argus_core::exports::row_of(old)) else {
            unreadable.push(raw.clone());
            continue;
        };
        let date = row.timestamp.format("%Y-%m-%d").to_string();
        groups.entry((tenant, row.stream_id.clone(), date)).or_default().push(row);
    }
    for (part, ((tenant, stream, date), rows)) in groups.into_iter().enumerate() {
        let key = archive_key(&tenant, &stream, &date, first_sequence, part);
        let mut file = FileUpload::start_sized(
            &backend.exports.s3,
            &backend.exports.bucket,
            &key,
            ExportFormat::Parquet,
            Compression::Gzip,
            MIN_PART_BYTES,
        )?;
        for row in &rows {
            file.push(row).await?;
        }
        let done = file.finish().await?;
        report.archived += rows.len();
        report.files.push(done.key);
    }
    if !unreadable.is_empty() {
        let key = format!("archive/_unreadable/{}.json", path_segment(first_sequence));
        tracing::error!(records = unreadable.len(), %key, "stream records that are not readable events, kept as they came");
        argus_core::metrics::Record::new("argus-archiver").count("UnreadableRecords", unreadable.len()).emit();
        let body =
            serde_json::to_vec(&json!({"Records": unreadable})).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let put = backend
            .exports
            .s3
            .put_object()
            .bucket(&backend.exports.bucket)
            .key(&key)
            .content_type("application/json")
            .body(aws_sdk_s3::primitives::ByteStream::from(body))
            .send();
        argus_core::deadline::bounded(put).await?.map_err(|e| ServiceError::from_sdk("s3", e))?;
        report.unreadable = unreadable.len();
        report.files.push(key);
    }
    Ok(report)
}
