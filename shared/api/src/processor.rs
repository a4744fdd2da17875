//! The SQS-triggered processor: an SQS batch in, partial batch failures out.

use std::time::{Duration, Instant};

use argus_core::pipeline::{self, QueueMessage};
use argus_core::Backend;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

/// Time kept in reserve before the Lambda deadline to answer with the failures.
const DEADLINE_RESERVE: Duration = Duration::from_secs(3);

/// Processes the batch; only messages whose writes did not go through are reported in
/// `batchItemFailures` (and redelivered by SQS, then moved to the DLQ after 5 receives).
pub async fn handle(backend: &Backend, event: SqsEvent, deadline: Option<Instant>) -> SqsBatchResponse {
    let messages: Vec<QueueMessage> = event
        .records
        .into_iter()
        .filter_map(|record| {
            let receive_count =
                record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1);
            Some(QueueMessage { message_id: record.message_id?, body: record.body.unwrap_or_default(), receive_count })
        })
        .collect();
    let config = backend.writer_for(deadline, DEADLINE_RESERVE);
    let work_deadline = deadline.map(|d| d.checked_sub(DEADLINE_RESERVE).unwrap_or(d));
    // Boxed: keeps the handler future's type shallow (see the functions' recursion_limit).
    let report =
        argus_core::deadline::scope(work_deadline, Box::pin(pipeline::process(backend, &messages, &config))).await;
    report.counts.emit("argus-processor");
    tracing::info!(
        messages = messages.len(),
        events = report.events_written,
        duplicates = report.duplicates,
        error_records = report.errors_recorded,
        failed = report.failed.len(),
        "processed SQS batch"
    );
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = report
        .failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}
