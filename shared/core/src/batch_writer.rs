//! The shared DynamoDB batch writer, used by the processor and the batch Lambda alike.
//!
//! The AWS SDK for Rust sends one `BatchWriteItem` as given and leaves chunking and
//! `UnprocessedItems` to the caller. This writer:
//! - splits the writes into calls of at most 25 items and 16 MB, rejecting an item over 400 KB up
//!   front (it could never be written);
//! - never puts two writes of one key in the same call (DynamoDB rejects the whole call): of
//!   several writes to one key only the last is sent, and the earlier ones share its outcome;
//! - runs calls with bounded concurrency;
//! - retries `UnprocessedItems`, throttling and 5xx answers with exponential backoff and full
//!   jitter, within `max_attempts` per call and an overall deadline (the Lambda's remaining time);
//! - returns one [`WriteOutcome`] per input write, in input order. A write is reported `Written`
//!   only if DynamoDB acknowledged it; nothing is dropped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use futures::stream::{self, StreamExt};

use crate::ddb::Item;
use crate::error::{is_transient_code, is_transient_sdk_error};
use crate::keys::{PK, SK};

/// DynamoDB's limits for one `BatchWriteItem`, and for one item.
pub const MAX_ITEMS_PER_CALL: usize = 25;
pub const MAX_BYTES_PER_CALL: usize = 16 * 1024 * 1024;
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

#[derive(Debug, Clone)]
pub enum Write {
    Put(Item),
    /// Delete by key (`PK`, `SK`).
    Delete(Item),
}

impl Write {
    fn item(&self) -> &Item {
        match self {
            Write::Put(item) | Write::Delete(item) => item,
        }
    }

    fn key(&self) -> Option<(String, String)> {
        let item = self.item();
        match (item.get(PK), item.get(SK)) {
            (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => Some((pk.clone(), sk.clone())),
            _ => None,
        }
    }

    fn to_request(&self) -> Result<WriteRequest, String> {
        Ok(match self {
            Write::Put(item) => WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item.clone())).build().map_err(|e| e.to_string())?)
                .build(),
            Write::Delete(item) => {
                let key: Item =
                    item.iter().filter(|(k, _)| *k == PK || *k == SK).map(|(k, v)| (k.clone(), v.clone())).collect();
                WriteRequest::builder()
                    .delete_request(DeleteRequest::builder().set_key(Some(key)).build().map_err(|e| e.to_string())?)
                    .build()
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    NotWritten { reason: String, retryable: bool },
}

impl WriteOutcome {
    pub fn is_written(&self) -> bool {
        matches!(self, WriteOutcome::Written)
    }
}

#[derive(Debug, Clone)]
pub struct BatchWriterConfig {
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Attempts per call (the first send included).
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No retry starts after this instant (set it from the Lambda's remaining time).
    pub deadline: Option<Instant>,
}

impl Default for BatchWriterConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            max_attempts: 10,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_secs(2),
            deadline: None,
        }
    }
}

/// What the writer did, for logs and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub calls: u64,
    pub retries: u64,
}

/// Writes everything it can; see the module documentation for the guarantees.
pub async fn write_all(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    writes: &[Write],
    config: &BatchWriterConfig,
) -> (Vec<WriteOutcome>, WriteStats) {
    let mut outcomes: Vec<Option<WriteOutcome>> = vec![None; writes.len()];
    // The last write of each key is the one sent; earlier ones point at it.
    let mut last_of_key: HashMap<(String, String), usize> = HashMap::new();
    let mut superseded: Vec<(usize, usize)> = Vec::new();
    for (index, write) in writes.iter().enumerate() {
        match write.key() {
            None => outcomes[index] = Some(not_written("the item has no PK/SK string key", false)),
            Some(key) => {
                let size = item_size(write.item());
                if size > MAX_ITEM_BYTES {
                    outcomes[index] =
                        Some(not_written(format!("item is {size} bytes; DynamoDB's limit is {MAX_ITEM_BYTES}"), false));
                } else if let Some(previous) = last_of_key.insert(key, index) {
                    superseded.push((previous, index));
                }
            }
        }
    }
    let mut sendable: Vec<usize> = last_of_key.into_values().collect();
    sendable.sort_unstable();

    // Chunks by count and bytes.
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut current_bytes = 0usize;
    for index in sendable {
        let size = item_size(writes[index].item());
        if current.len() == MAX_ITEMS_PER_CALL || current_bytes + size > MAX_BYTES_PER_CALL {
            chunks.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current.push(index);
        current_bytes += size;
    }
    if !current.is_empty() {
        chunks.push(current);
    }

    let mut stats = WriteStats::default();
    let results: Vec<(Vec<(usize, WriteOutcome)>, WriteStats)> = stream::iter(chunks)
        .map(|chunk| write_chunk(client, table, writes, chunk, config))
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    for (chunk_outcomes, chunk_stats) in results {
        stats.calls += chunk_stats.calls;
        stats.retries += chunk_stats.retries;
        for (index, outcome) in chunk_outcomes {
            outcomes[index] = Some(outcome);
        }
    }
    // Resolve supersession chains back to front so each earlier write takes its successor's fate.
    for (earlier, later) in superseded.into_iter().rev() {
        outcomes[earlier] = outcomes[later].clone();
    }
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| not_written("internal: write was never attempted", true)))
        .collect();
    (outcomes, stats)
}

fn not_written(reason: impl Into<String>, retryable: bool) -> WriteOutcome {
    WriteOutcome::NotWritten { reason: reason.into(), retryable }
}

async fn write_chunk(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    writes: &[Write],
    chunk: Vec<usize>,
    config: &BatchWriterConfig,
) -> (Vec<(usize, WriteOutcome)>, WriteStats) {
    let mut stats = WriteStats::default();
    let mut done: Vec<(usize, WriteOutcome)> = Vec::with_capacity(chunk.len());
    let mut by_key: HashMap<(String, String), usize> = HashMap::new();
    let mut pending: Vec<WriteRequest> = Vec::with_capacity(chunk.len());
    for &index in &chunk {
        match writes[index].to_request() {
            Ok(request) => {
                if let Some(key) = writes[index].key() {
                    by_key.insert(key, index);
                }
                pending.push(request);
            }
            Err(reason) => done.push((index, not_written(reason, false))),
        }
    }
    let mut attempt = 0u32;
    let mut last_failure: String;
    while !pending.is_empty() {
        attempt += 1;
        stats.calls += 1;
        let sent = std::mem::take(&mut pending);
        let result = client.batch_write_item().request_items(table, sent.clone()).send().await;
        match result {
            Ok(output) => {
                let unprocessed = output.unprocessed_items.and_then(|mut u| u.remove(table)).unwrap_or_default();
                let mut unprocessed_keys = std::collections::HashSet::new();
                for request in &unprocessed {
                    if let Some(key) = request_key(request) {
                        unprocessed_keys.insert(key);
                    }
                }
                for request in &sent {
                    if let Some(key) = request_key(request) {
                        if !unprocessed_keys.contains(&key) {
                            if let Some(&index) = by_key.get(&key) {
                                done.push((index, WriteOutcome::Written));
                            }
                        }
                    }
                }
                pending = unprocessed;
                last_failure = "still unprocessed by DynamoDB (throttled)".into();
            }
            Err(err) => {
                let retryable = is_transient_sdk_error(&err)
                    || err
                        .as_service_error()
                        .and_then(|e| aws_sdk_dynamodb::error::ProvideErrorMetadata::code(e))
                        .is_some_and(is_transient_code);
                last_failure = format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&err));
                if !retryable {
                    tracing::error!(error = %last_failure, items = sent.len(), "BatchWriteItem rejected");
                    for request in &sent {
                        if let Some(index) = request_key(request).and_then(|k| by_key.get(&k).copied()) {
                            done.push((index, not_written(format!("rejected by DynamoDB: {last_failure}"), false)));
                        }
                    }
                    break;
                }
                pending = sent;
            }
        }
        if pending.is_empty() {
            break;
        }
        let delay = backoff(config, attempt);
        let out_of_time = config.deadline.is_some_and(|deadline| Instant::now() + delay >= deadline);
        if attempt >= config.max_attempts || out_of_time {
            tracing::warn!(attempts = attempt, items = pending.len(), out_of_time, "giving up on unprocessed items");
            for request in &pending {
                if let Some(index) = request_key(request).and_then(|k| by_key.get(&k).copied()) {
                    done.push((
                        index,
                        not_written(format!("not written after {attempt} attempts: {last_failure}"), true),
                    ));
                }
            }
            break;
        }
        stats.retries += 1;
        tokio::time::sleep(delay).await;
    }
    (done, stats)
}

/// Full jitter: uniform in [0, min(max_delay, base × 2^attempt)].
pub fn backoff(config: &BatchWriterConfig, attempt: u32) -> Duration {
    let ceiling = config.base_delay.saturating_mul(1u32 << attempt.min(20)).min(config.max_delay);
    let millis = ceiling.as_millis() as u64;
    Duration::from_millis(if millis == 0 { 0 } else { fastrand::u64(0..=millis) })
}

fn request_key(request: &WriteRequest) -> Option<(String, String)> {
    let item = match (&request.put_request, &request.delete_request) {
        (Some(put), _) => &put.item,
        (_, Some(delete)) => &delete.key,
        _ => return None,
    };
    match (item.get(PK), item.get(SK)) {
        (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => Some((pk.clone(), sk.clone())),
        _ => None,
    }
}

/// DynamoDB's item size: attribute names plus values, in bytes (numbers approximated by their
/// decimal length, which over-estimates: safe for a limit check).
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(name, value)| name.len() + value_size(value)).sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.len(),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(String::len).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|x| 1 + value_size(x)).sum::<usize>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, x)| 1 + k.len() + value_size(x)).sum::<usize>(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_full_jitter() {
        let config = BatchWriterConfig::default();
        for attempt in 0..30 {
            let delay = backoff(&config, attempt);
            assert!(delay <= config.max_delay);
            assert!(delay <= config.base_delay * (1 << attempt.min(20)));
        }
        // Jitter: not always the same value.
        let samples: std::collections::HashSet<_> = (0..50).map(|_| backoff(&config, 6)).collect();
        assert!(samples.len() > 5);
    }

    #[test]
    fn item_size_counts_names_and_values() {
        let item: Item =
            [("PK".to_string(), AttributeValue::S("abc".into())), ("n".to_string(), AttributeValue::N("12".into()))]
                .into();
        assert_eq!(item_size(&item), 2 + 3 + 1 + 2);
    }
}
