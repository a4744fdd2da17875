//! The SQS-triggered notifier: webhook fan-out and delivery attempts. Partial batch failures:
//! only messages whose work must be redone come back.

use std::time::{Duration, Instant};

use argus_core::webhooks::{self, outbox::NotifierMessage};
use argus_core::Backend;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

/// Time kept in reserve before the Lambda deadline to answer.
const DEADLINE_RESERVE: Duration = Duration::from_secs(2);

pub async fn handle(backend: &Backend, event: SqsEvent, deadline: Option<Instant>) -> SqsBatchResponse {
    let work_deadline = deadline.map(|d| d.checked_sub(DEADLINE_RESERVE).unwrap_or(d));
    // Messages are independent: attempts to slow endpoints run side by side.
    let outcomes = futures::future::join_all(event.records.into_iter().map(|record| async move {
        let id = record.message_id.clone().unwrap_or_default();
        let message: NotifierMessage = match serde_json::from_str(record.body.as_deref().unwrap_or_default()) {
            Ok(message) => message,
            Err(err) => {
                // Not ours to retry: it can never parse. Logged and dropped.
                tracing::error!(message_id = %id, error = %err, "unreadable notifier message dropped");
                return None;
            }
        };
        let result = argus_core::deadline::scope(work_deadline, Box::pin(webhooks::handle(backend, &message))).await;
        match result {
            Ok(()) => None,
            Err(err) => {
                tracing::warn!(message_id = %id, error = %err, "notifier message failed; SQS redelivers it");
                Some(id)
            }
        }
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = outcomes
        .into_iter()
        .flatten()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}
