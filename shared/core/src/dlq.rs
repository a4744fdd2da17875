//! The events queue's dead-letter queue, for operators (`argus-admin dlq`): what is in it, and
//! moving it back to the queue once the cause is fixed.
//!
//! Redrive uses SQS's `StartMessageMoveTask` where the endpoint has it (AWS does), else moves
//! messages itself: receive, send to the queue, and only then delete from the DLQ. A crash
//! between send and delete leaves a message in both queues; it is then processed twice, which
//! the processor makes harmless (event ids are fixed at ingestion: the second copy is a
//! duplicate, not a second event). Nothing is deleted from the DLQ before it is in the queue.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry};
use serde::Serialize;
use serde_json::Value;

use crate::{Backend, ServiceError};

fn sqs_error<E: std::fmt::Debug>(err: E) -> ServiceError {
    ServiceError::Unavailable { component: "sqs", message: format!("{err:?}") }
}

/// One attribute of a queue (`None` when the queue does not have it).
async fn queue_attribute(
    backend: &Backend,
    queue_url: &str,
    name: QueueAttributeName,
) -> Result<Option<String>, ServiceError> {
    let attributes = backend
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(name.clone())
        .send()
        .await
        .map_err(sqs_error)?
        .attributes
        .unwrap_or_default();
    Ok(attributes.get(&name).cloned())
}

/// The DLQ of `queue_url`, from its redrive policy.
pub async fn dead_letter_queue_url(backend: &Backend, queue_url: &str) -> Result<String, ServiceError> {
    let policy: Value = queue_attribute(backend, queue_url, QueueAttributeName::RedrivePolicy)
        .await?
        .and_then(|p| serde_json::from_str(&p).ok())
        .ok_or_else(|| ServiceError::Internal(format!("{queue_url} has no redrive policy")))?;
    let arn = policy["deadLetterTargetArn"].as_str().unwrap_or_default();
    let name = arn.rsplit(':').next().unwrap_or_default();
    backend
        .sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(sqs_error)?
        .queue_url
        .ok_or_else(|| ServiceError::Internal(format!("no queue named {name}")))
}

/// One dead-lettered message, as `argus-admin dlq` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub message_id: String,
    /// Receives so far (SQS's ApproximateReceiveCount, carried over from the queue).
    pub receive_count: u32,
    pub sent_at_ms: Option<i64>,
    /// `event`, `job_chunk` or `unknown`.
    pub kind: &'static str,
    pub tenant: Option<String>,
    pub event_id: Option<String>,
    pub bytes: usize,
    /// The error record stored for this event, if the processor recorded one.
    pub first_error: Option<Value>,
}

fn describe(message_id: String, body: &str, receive_count: u32, sent_at_ms: Option<i64>) -> DeadLetter {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name)).and_then(Value::as_str).map(str::to_string);
    let kind = match (&parsed, crate::jobs::decode_chunk(body)) {
        (_, Some(_)) => "job_chunk",
        (Some(v), None) if v.get("event").is_some() => "event",
        _ => "unknown",
    };
    let event_id = parsed.as_ref().and_then(|v| v.pointer("/event/id")).and_then(Value::as_str).map(str::to_string);
    DeadLetter {
        message_id,
        receive_count,
        sent_at_ms,
        kind,
        tenant: field("tenant"),
        event_id,
        bytes: body.len(),
        first_error: None,
    }
}

/// How many messages the DLQ holds (SQS's approximate count: a listing samples, this counts).
pub async fn depth(backend: &Backend, dlq_url: &str) -> Result<usize, ServiceError> {
    let count = queue_attribute(backend, dlq_url, QueueAttributeName::ApproximateNumberOfMessages).await?;
    Ok(count.and_then(|n| n.parse().ok()).unwrap_or(0))
}

/// Up to `max` messages of the DLQ, without taking them: each is received with a visibility
/// timeout of 0, so it stays available (to a redrive, or to the next look). Each look is a
/// receive, so it adds one to the messages' receive counts.
pub async fn list(backend: &Backend, dlq_url: &str, max: usize) -> Result<Vec<DeadLetter>, ServiceError> {
    let mut seen = HashSet::new();
    let mut letters = Vec::new();
    let mut rounds_without_news = 0;
    while letters.len() < max && rounds_without_news < 3 {
        let received = backend
            .sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(sqs_error)?;
        let mut news = false;
        for message in received.messages.unwrap_or_default() {
            let Some(id) = message.message_id.clone() else { continue };
            if !seen.insert(id.clone()) || letters.len() >= max {
                continue;
            }
            news = true;
            let attributes = message.attributes.unwrap_or_default();
            let number = |name: MessageSystemAttributeName| attributes.get(&name).and_then(|v| v.parse::<i64>().ok());
            let receive_count = number(MessageSystemAttributeName::ApproximateReceiveCount).unwrap_or(0) as u32;
            let sent_at = number(MessageSystemAttributeName::SentTimestamp);
            letters.push(describe(id, message.body.as_deref().unwrap_or(""), receive_count, sent_at));
        }
        rounds_without_news = if news { 0 } else { rounds_without_news + 1 };
    }
    for letter in &mut letters {
        letter.first_error = first_error(backend, letter).await;
    }
    Ok(letters)
}

async fn first_error(backend: &Backend, letter: &DeadLetter) -> Option<Value> {
    let (tenant, event_id) = (letter.tenant.as_deref()?, letter.event_id.as_deref()?);
    let filter = crate::errors::ErrorFilter::parse(|name| (name == "event_id").then(|| event_id.to_string())).ok()?;
    let page = crate::errors::list(backend, tenant, &filter, 1, None).await.ok()?;
    page.items.into_iter().next().and_then(|record| serde_json::to_value(record).ok())
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RedriveReport {
    /// `move_task` (SQS moved them) or `copy` (sent, then deleted, by this tool).
    pub method: &'static str,
    pub moved: usize,
    /// Sent to the queue but not deleted from the DLQ (they will be processed twice, harmlessly).
    pub left_in_dlq: usize,
}

/// Moves up to `max` messages (all, if `None`) from the DLQ back to the queue.
pub async fn redrive(
    backend: &Backend,
    dlq_url: &str,
    queue_url: &str,
    max: Option<usize>,
) -> Result<RedriveReport, ServiceError> {
    if max.is_none() {
        if let Some(report) = move_task(backend, dlq_url, queue_url).await? {
            return Ok(report);
        }
    }
    copy(backend, dlq_url, queue_url, max.unwrap_or(usize::MAX)).await
}

/// `StartMessageMoveTask`, waited for. `None` when the endpoint does not offer it.
async fn move_task(backend: &Backend, dlq_url: &str, queue_url: &str) -> Result<Option<RedriveReport>, ServiceError> {
    let source = queue_attribute(backend, dlq_url, QueueAttributeName::QueueArn).await.ok().flatten();
    let destination = queue_attribute(backend, queue_url, QueueAttributeName::QueueArn).await.ok().flatten();
    let (Some(source), Some(destination)) = (source, destination) else { return Ok(None) };
    let started = backend.sqs.start_message_move_task().source_arn(&source).destination_arn(&destination).send().await;
    let handle = match started {
        Ok(output) => output.task_handle,
        // Only an endpoint without the operation falls back to copying; anything else (access
        // denied, a task already running) is the operator's to know.
        Err(err) if unsupported(&err) => return Ok(None),
        Err(err) => return Err(sqs_error(err)),
    };
    for _ in 0..600 {
        let tasks = backend
            .sqs
            .list_message_move_tasks()
            .source_arn(&source)
            .max_results(10)
            .send()
            .await
            .map_err(sqs_error)?;
        // Ours, not another operator's.
        let ours = tasks.results.unwrap_or_default().into_iter().find(|t| handle.is_none() || t.task_handle == handle);
        if let Some(task) = ours {
            match task.status.as_deref() {
                Some("COMPLETED") => {
                    let moved = task.approximate_number_of_messages_moved as usize;
                    return Ok(Some(RedriveReport { method: "move_task", moved, left_in_dlq: 0 }));
                }
                Some("FAILED") | Some("CANCELLED") => {
                    return Err(ServiceError::Unavailable {
                        component: "sqs",
                        message: format!("the move task ended {:?}: {:?}", task.status, task.failure_reason),
                    })
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(ServiceError::Unavailable { component: "sqs", message: "the move task did not finish in 10 minutes".into() })
}

/// Whether an SQS error says the endpoint has no such operation (emulators), rather than a
/// failure of it.
fn unsupported<E: std::fmt::Debug>(err: &aws_sdk_sqs::error::SdkError<E>) -> bool {
    let status = err.raw_response().map(|r| r.status().as_u16());
    let text = format!("{err:?}");
    matches!(status, Some(404 | 501))
        || ["UnsupportedOperation", "InvalidAction", "UnknownOperation", "not implemented", "NotImplemented"]
            .iter()
            .any(|needle| text.contains(needle))
}

/// SQS's limit on one `SendMessageBatch` (all bodies together), with room for the envelope.
const SEND_BATCH_BYTES: usize = 240 * 1024;

/// Receive, send to the queue, then delete from the DLQ: never deleted before it is sent.
async fn copy(backend: &Backend, dlq_url: &str, queue_url: &str, max: usize) -> Result<RedriveReport, ServiceError> {
    let mut report = RedriveReport { method: "copy", ..RedriveReport::default() };
    let mut empty_rounds = 0;
    while report.moved + report.left_in_dlq < max && empty_rounds < 2 {
        let wanted = (max - report.moved - report.left_in_dlq).min(10) as i32;
        let received = backend
            .sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(wanted)
            // Held while it is copied; if this tool dies, it reappears in the DLQ.
            .visibility_timeout(60)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(sqs_error)?
            .messages
            .unwrap_or_default();
        if received.is_empty() {
            empty_rounds += 1;
            continue;
        }
        empty_rounds = 0;
        // Batches packed by size (a job chunk alone can be 200 KiB); a batch the queue refuses
        // is sent again one message at a time, so one bad batch does not stop the redrive.
        let mut sent_ids: HashSet<String> = HashSet::new();
        let mut batch: Vec<SendMessageBatchRequestEntry> = Vec::new();
        let mut batch_bytes = 0;
        for (i, message) in received.iter().enumerate() {
            let body = message.body.clone().unwrap_or_default();
            if !batch.is_empty() && batch_bytes + body.len() > SEND_BATCH_BYTES {
                sent_ids.extend(send_batch(backend, queue_url, std::mem::take(&mut batch)).await);
                batch_bytes = 0;
            }
            batch_bytes += body.len();
            if let Ok(entry) = SendMessageBatchRequestEntry::builder().id(format!("m{i}")).message_body(body).build() {
                batch.push(entry);
            }
        }
        if !batch.is_empty() {
            sent_ids.extend(send_batch(backend, queue_url, batch).await);
        }
        for (i, message) in received.iter().enumerate() {
            if !sent_ids.contains(&format!("m{i}")) {
                // Not sent: stays in the DLQ (visible again after the timeout).
                continue;
            }
            let deleted = backend
                .sqs
                .delete_message()
                .queue_url(dlq_url)
                .set_receipt_handle(message.receipt_handle.clone())
                .send()
                .await;
            match deleted {
                Ok(_) => report.moved += 1,
                Err(_) => report.left_in_dlq += 1,
            }
        }
    }
    Ok(report)
}

/// Sends `entries`; returns the ids of those that went. A refused batch goes one by one.
async fn send_batch(backend: &Backend, queue_url: &str, entries: Vec<SendMessageBatchRequestEntry>) -> Vec<String> {
    let sent = backend.sqs.send_message_batch().queue_url(queue_url).set_entries(Some(entries.clone())).send().await;
    if let Ok(output) = sent {
        return output.successful.into_iter().map(|s| s.id).collect();
    }
    let mut ids = Vec::new();
    for entry in entries {
        let single = backend.sqs.send_message().queue_url(queue_url).message_body(entry.message_body()).send().await;
        if single.is_ok() {
            ids.push(entry.id().to_string());
        }
    }
    ids
}
