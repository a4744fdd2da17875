//! The SQS → processor event source mapping, done locally: receive up to `batch_size` messages,
//! invoke the processor with the SQS event Lambda would get, delete only the messages not
//! reported in `batchItemFailures`. Failed messages become visible again after the queue's
//! visibility timeout and, after `maxReceiveCount` receives, SQS moves them to the DLQ.

use std::time::Duration;

use argus_core::Backend;

use crate::functions::Function;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName};
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Consumer {
    /// The processor's binary name (it names the handler).
    pub binary: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: i32,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainReport {
    pub received: usize,
    pub deleted: usize,
    pub failed: usize,
}

impl Consumer {
    pub async fn new(backend: &Backend, binary: &str, queue_url: &str, batch_size: i64) -> Result<Self, String> {
        let arn = backend
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| format!("reading queue ARN: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)))?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .unwrap_or_default();
        Ok(Self {
            binary: binary.to_string(),
            queue_url: queue_url.to_string(),
            queue_arn: arn,
            batch_size: batch_size.clamp(1, 10) as i32,
        })
    }

    /// One receive → invoke → delete round. `wait_seconds` is the long-poll time. `poller` is
    /// the event source mapping's own access (SAM grants it the SQS poller policy); the
    /// processor runs as `function`, with its own policy and deadline.
    pub async fn drain_once(
        &self,
        poller: &Backend,
        function: &Function,
        wait_seconds: i32,
    ) -> Result<DrainReport, String> {
        let backend = poller;
        let received = backend
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| format!("ReceiveMessage: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(DrainReport::default());
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, Value> = m
                    .attributes
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone())))
                    .collect();
                json!({
                    "messageId": m.message_id,
                    "receiptHandle": m.receipt_handle,
                    "body": m.body,
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body,
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        let event = json!({ "Records": records }).to_string();
        let deadline = std::time::Instant::now() + function.timeout();
        let invoked = tokio::time::timeout(
            function.timeout(),
            argus_api::dispatch::invoke_json(&self.binary, &function.backend, &event, Some(deadline)),
        )
        .await
        .unwrap_or_else(|_| Err(format!("{} timed out after {:?}", function.spec.logical_id, function.timeout())));
        let failed: Vec<String> = match invoked {
            Ok(response) => response["batchItemFailures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string))
                .collect(),
            Err(err) => {
                // A function error fails the whole batch, as with Lambda.
                tracing::error!(error = %err, "processor invocation failed");
                messages.iter().filter_map(|m| m.message_id.clone()).collect()
            }
        };
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|m| m.message_id.as_ref().is_some_and(|id| !failed.contains(id)))
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle.clone()?)
                    .build()
                    .ok()
            })
            .collect();
        let mut deleted = 0;
        if !entries.is_empty() {
            let out = backend
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| format!("DeleteMessageBatch: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)))?;
            deleted = out.successful.len();
            for failure in out.failed {
                tracing::warn!(id = %failure.id, code = %failure.code, "delete failed; the message will be redelivered");
            }
        }
        Ok(DrainReport { received: messages.len(), deleted, failed: failed.len() })
    }

    /// Drains until the task is dropped, with `pollers()` receive → invoke → delete loops at
    /// once, as Lambda's SQS event source mapping runs several pollers (five at first, more as
    /// the backlog grows): one loop cannot keep up with many concurrent senders.
    pub async fn run(self, poller: Backend, function: Function) {
        let loops = (0..pollers()).map(|_| self.poll_loop(&poller, &function));
        futures::future::join_all(loops).await;
    }

    async fn poll_loop(&self, poller: &Backend, function: &Function) {
        loop {
            match self.drain_once(poller, function, 1).await {
                Ok(report) if report.received > 0 => {
                    tracing::debug!(?report, "drained");
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "queue drain failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Concurrent pollers per queue: `ARGUS_DRAIN_POLLERS`, default 5 (Lambda's starting number).
pub fn pollers() -> usize {
    std::env::var("ARGUS_DRAIN_POLLERS").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(5)
}

/// Consumers for every SQS event source in the template.
pub async fn consumers(
    backend: &Backend,
    template: &argus_stack::Template,
    provisioned: &argus_stack::Provisioned,
) -> Result<Vec<Consumer>, String> {
    let mut consumers = Vec::new();
    for (binary, (queue, batch)) in &template.sqs_consumers {
        consumers.push(Consumer::new(backend, binary, provisioned.queue_url(queue)?, *batch).await?);
    }
    Ok(consumers)
}
