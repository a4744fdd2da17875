//! The export function (SQS-triggered, one message per invocation): works one slice of one
//! export. It takes the export's lease, reads the window page by page from its checkpoint,
//! streams files to S3, records each finished file with the position after it, and either
//! completes the export or gives the lease back and queues its continuation before its
//! deadline. A file is cut short (and finished) before the deadline, never abandoned: every
//! slice makes progress, and no file is ever truncated silently.

use std::time::{Duration, Instant};

use argus_core::exports::{self, Export, ExportMessage, WindowReader, MAX_FAILED_SLICES};
use argus_core::{Backend, ServiceError};
use argus_models::export::{file_name, ExportFile, ExportStatus};
use serde_json::{json, Value};

use crate::upload::FileUpload;

/// Kept before the invocation's deadline: the last file's end, the checkpoint and the
/// continuation message fit in it.
const FINISH_RESERVE: Duration = Duration::from_secs(20);
/// Events read per page (the window reader's page: at most 1,000).
const PAGE_EVENTS: usize = 1_000;

/// Tuning, from the environment (`ARGUS_EXPORT_SLICE_MS`, `ARGUS_EXPORT_FILE_EVENTS`; the
/// tests shorten slices to force continuations).
#[derive(Debug, Clone)]
pub struct ExportTuning {
    /// Longest one slice works, within the invocation's deadline.
    pub slice: Duration,
    /// Events per file at most.
    pub file_events: u64,
}

impl ExportTuning {
    pub fn from_env() -> Self {
        let number = |name: &str, default: u64| {
            std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok()).filter(|n| *n > 0).unwrap_or(default)
        };
        Self {
            slice: Duration::from_millis(number("ARGUS_EXPORT_SLICE_MS", 840_000)),
            file_events: number("ARGUS_EXPORT_FILE_EVENTS", 1_000_000),
        }
    }
}

/// The SQS event in, `batchItemFailures` out (messages to be received again).
pub async fn handle(backend: &Backend, event: &Value, deadline: Option<Instant>) -> Value {
    let tuning = ExportTuning::from_env();
    let mut failures = Vec::new();
    for record in event["Records"].as_array().into_iter().flatten() {
        let message_id = record["messageId"].as_str().unwrap_or_default().to_string();
        let message: ExportMessage = match record["body"].as_str().and_then(|b| serde_json::from_str(b).ok()) {
            Some(message) => message,
            None => {
                // Not ours to retry: nothing could ever read it.
                tracing::error!(%message_id, "export message unreadable; dropped");
                continue;
            }
        };
        let work = argus_core::deadline::scope(deadline, Box::pin(run_slice(backend, &message, deadline, &tuning)));
        if let Err(err) = work.await {
            tracing::error!(export_id = %message.export_id, error = %err, "export slice failed; the message is retried");
            failures.push(json!({"itemIdentifier": message_id}));
        }
    }
    json!({ "batchItemFailures": failures })
}

/// What one slice did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SliceOutcome {
    /// Finished, gone, or another invocation holds it: nothing to do.
    Skipped,
    Completed,
    Continued,
    Failed,
    /// The lease was lost mid-slice (it lapsed): the holder now continues.
    LeaseLost,
    /// The slice failed; the export is queued again after a backoff.
    Retrying,
}

pub async fn run_slice(
    backend: &Backend,
    message: &ExportMessage,
    deadline: Option<Instant>,
    tuning: &ExportTuning,
) -> Result<SliceOutcome, ServiceError> {
    let started = Instant::now();
    let invocation_end = deadline.unwrap_or(started + tuning.slice + FINISH_RESERVE);
    let slice_end = (invocation_end.checked_sub(FINISH_RESERVE).unwrap_or(started)).min(started + tuning.slice);
    let owner = uuid::Uuid::new_v4().to_string();
    // The lease outlives the invocation by a minute: a crashed holder's message comes back
    // after the queue's visibility timeout (longer), by when the lease has lapsed.
    let lease_ms = invocation_end.saturating_duration_since(started).as_millis() as u64 + 60_000;
    let until_ms = argus_models::time::now().timestamp_millis().max(0) as u64 + lease_ms;
    let Some(mut export) = exports::claim(backend, message, &owner, until_ms).await? else {
        return Ok(SliceOutcome::Skipped);
    };
    // Read to the end and files recorded, but not marked completed (a record written before
    // the checkpoint completed exports in the same write): it is complete, never read again.
    if export.position.is_none() && !export.files.is_empty() {
        exports::finish(backend, &export.tenant, &export.export_id, Some(&owner), ExportStatus::Completed, None)
            .await?;
        return Ok(SliceOutcome::Completed);
    }
    // `failed_slices` counts this attempt: attempts since the last checkpoint. Past the limit,
    // the earlier ones crashed or timed out without progress (their messages came back).
    if export.failed_slices > MAX_FAILED_SLICES {
        let why = format!(
            "the export failed {MAX_FAILED_SLICES} times in a row without progress: its slices stopped (crashed or timed out)"
        );
        give_up(backend, &export, &owner, &why).await?;
        return Ok(SliceOutcome::Failed);
    }
    match work(backend, &mut export, &owner, slice_end, tuning).await {
        Ok(outcome) => Ok(outcome),
        Err(err) if export.failed_slices >= MAX_FAILED_SLICES => {
            let why =
                format!("the export failed {MAX_FAILED_SLICES} times in a row without progress; last error: {err}");
            give_up(backend, &export, &owner, &why).await?;
            Ok(SliceOutcome::Failed)
        }
        Err(err) => {
            // Retried from its checkpoint after a backoff (30 s, 60 s, 120 s, …; the queue's
            // visibility timeout is far longer), not when the message's visibility lapses.
            tracing::warn!(export_id = %export.export_id, error = %err, attempt = export.failed_slices, "export slice failed; retrying");
            exports::release(backend, &export, &owner).await?;
            let delay: i32 = 30 << export.failed_slices.saturating_sub(1).min(4);
            exports::enqueue_after(backend, &export.tenant, &export.export_id, delay).await?;
            Ok(SliceOutcome::Retrying)
        }
    }
}

/// Ends the export as failed, saying why.
async fn give_up(backend: &Backend, export: &Export, owner: &str, why: &str) -> Result<(), ServiceError> {
    let reason = json!({"code": "EXPORT_FAILED", "message": why});
    tracing::error!(export_id = %export.export_id, %why, "export failed");
    exports::finish(backend, &export.tenant, &export.export_id, Some(owner), ExportStatus::Failed, Some(reason))
        .await?;
    Ok(())
}

async fn work(
    backend: &Backend,
    export: &mut Export,
    owner: &str,
    slice_end: Instant,
    tuning: &ExportTuning,
) -> Result<SliceOutcome, ServiceError> {
    let mut reader = WindowReader::new(export);
    let prefix = exports::files_prefix(export);
    loop {
        let index = export.files.len() as u32;
        let key = format!("{prefix}/{}", file_name(export.request.format, export.request.compression, index));
        let mut file = FileUpload::start(
            &backend.exports.s3,
            &backend.exports.bucket,
            &key,
            export.request.format,
            export.request.compression,
        )?;
        fill(backend, &mut reader, &mut file, slice_end, tuning).await?;
        let keep = file.events > 0 || (reader.exhausted() && export.files.is_empty());
        let written = if keep {
            let done = file.finish().await?;
            Some(ExportFile { key: done.key, events: done.events, bytes: done.bytes })
        } else {
            // Nothing matched in this stretch of the window: no file (none was started), but
            // the position moves.
            None
        };
        if !exports::checkpoint(backend, export, owner, written.as_ref(), reader.position()).await? {
            return Ok(SliceOutcome::LeaseLost);
        }
        if let Some(file) = written {
            export.events += file.events;
            export.bytes += file.bytes;
            export.files.push(file);
        }
        export.position = reader.position().map(str::to_string);
        if reader.exhausted() {
            // The checkpoint above completed it.
            tracing::info!(export_id = %export.export_id, events = export.events, files = export.files.len(), "export completed");
            return Ok(SliceOutcome::Completed);
        }
        if export.files.len() >= exports::MAX_EXPORT_FILES {
            give_up(
                backend,
                export,
                owner,
                &format!("the export needs more than {} files; export a shorter window", exports::MAX_EXPORT_FILES),
            )
            .await?;
            return Ok(SliceOutcome::Failed);
        }
        if Instant::now() >= slice_end {
            exports::release(backend, export, owner).await?;
            exports::enqueue(backend, &export.tenant, &export.export_id).await?;
            tracing::info!(export_id = %export.export_id, events = export.events, "export continues in the next invocation");
            return Ok(SliceOutcome::Continued);
        }
    }
}

/// Reads pages into `file` until the window is read, the file is full, or the slice's time
/// is up.
async fn fill(
    backend: &Backend,
    reader: &mut WindowReader,
    file: &mut FileUpload,
    slice_end: Instant,
    tuning: &ExportTuning,
) -> Result<(), ServiceError> {
    // At least one page per file, whatever the clock says: every slice moves forward.
    let mut first = true;
    while !reader.exhausted() && file.events < tuning.file_events && (first || Instant::now() < slice_end) {
        first = false;
        let room = (tuning.file_events - file.events).min(PAGE_EVENTS as u64) as usize;
        for row in reader.next_page(backend, room).await? {
            file.push(&row).await?;
        }
    }
    Ok(())
}
