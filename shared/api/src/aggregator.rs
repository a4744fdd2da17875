//! The DynamoDB Streams-triggered aggregator: change records in, rollups and stream statistics
//! updated, partial batch failures out (`ReportBatchItemFailures`: Lambda retries from the
//! reported sequence number; records already applied are recognised and skipped).

use std::time::{Duration, Instant};

use argus_core::{aggregator, Backend};
use serde_json::{json, Value};

/// Time kept in reserve before the Lambda deadline to answer.
const DEADLINE_RESERVE: Duration = Duration::from_secs(2);

pub async fn handle(backend: &Backend, event: &Value, deadline: Option<Instant>) -> Value {
    let records = aggregator::parse_event(event);
    let work_deadline = deadline.map(|d| d.checked_sub(DEADLINE_RESERVE).unwrap_or(d));
    let applied = argus_core::deadline::scope(work_deadline, Box::pin(aggregator::apply(backend, &records))).await;
    // Webhook checks. Never a reason to hold the stream back (a rewind would stall every
    // tenant's rollups behind one failing send): on failure they are logged and counted, and
    // the stream's next error or arrival queues its check again (the checks read state, so a
    // later one catches up; a threshold check of this batch's minutes is what can be lost).
    if let Err(err) =
        argus_core::deadline::scope(work_deadline, Box::pin(aggregator::queue_notifier_checks(backend, &records))).await
    {
        tracing::error!(error = %err, "webhook checks not queued");
        argus_core::metrics::Record::new("argus-aggregator").count("WebhookChecksNotQueued", 1).emit();
    }
    tracing::info!(
        records = records.len(),
        applied = applied.applied,
        duplicates = applied.duplicates,
        unchanged = applied.unchanged,
        transactions = applied.transactions,
        retry_from = applied.retry_from.as_deref().unwrap_or(""),
        "aggregated change records"
    );
    let failures: Vec<Value> =
        applied.retry_from.into_iter().map(|sequence| json!({"itemIdentifier": sequence})).collect();
    json!({ "batchItemFailures": failures })
}
