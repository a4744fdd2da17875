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
use crate::error::is_transient_sdk_error;
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
            // Measured (`argus-bench writer-concurrency`, docs/benchmarks.md): 10,000 items reach
            // their best rate at 8 calls in flight (2x of 1); 16 and 32 add nothing.
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
        // Nothing starts after the deadline; a call still running at it is cut off, and its
        // items are reported retryable (a retry with the same ids is a duplicate, never a double).
        let out_of_time = config.deadline.is_some_and(|deadline| Instant::now() >= deadline);
        let call = client.batch_write_item().request_items(table, pending.clone()).send();
        // The writer's own budget only stops new attempts; a call in flight runs on, up to the
        // invocation's hard deadline (`deadline::bounded`).
        let result =
            if out_of_time { Err(crate::deadline::out_of_time()) } else { crate::deadline::bounded(call).await };
        let result = match result {
            Ok(result) => result,
            Err(_) => {
                let what = if attempt == 0 { "not attempted" } else { "not confirmed" };
                tracing::warn!(items = pending.len(), attempts = attempt, "batch write stopped at the deadline");
                for request in &pending {
                    if let Some(index) = request_key(request).and_then(|k| by_key.get(&k).copied()) {
                        done.push((index, not_written(format!("{what} before the deadline"), true)));
                    }
                }
                break;
            }
        };
        attempt += 1;
        stats.calls += 1;
        let sent = std::mem::take(&mut pending);
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
                // The modeled variants too: an error's code is only in its metadata when parsed
                // from a response.
                let retryable = is_transient_sdk_error(&err)
                    || err.as_service_error().is_some_and(|e| {
                        e.is_provisioned_throughput_exceeded_exception()
                            || e.is_request_limit_exceeded()
                            || e.is_throttling_exception()
                            || e.is_internal_server_error()
                            || e.is_replicated_write_conflict_exception()
                    });
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
        let out_of_time = config.deadline.is_some_and(|deadline| Instant::now() + delay >= deadline)
            || crate::deadline::remaining().is_some_and(|left| left <= delay);
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
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::operation::batch_write_item::{BatchWriteItemError, BatchWriteItemOutput};
    use aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException;
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    const TABLE: &str = "t";

    fn put(n: usize) -> Write {
        Write::Put(Item::from([
            (PK.to_string(), AttributeValue::S(format!("k{n}"))),
            (SK.to_string(), AttributeValue::S("s".into())),
            ("v".to_string(), AttributeValue::N(n.to_string())),
        ]))
    }

    fn requests_of(writes: &[usize]) -> Vec<WriteRequest> {
        writes.iter().map(|&n| put(n).to_request().unwrap()).collect()
    }

    /// The PK values a request carries, sorted.
    fn keys_in(input: &aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput) -> Vec<String> {
        let mut keys: Vec<String> = input
            .request_items()
            .and_then(|items| items.get(TABLE))
            .into_iter()
            .flatten()
            .filter_map(request_key)
            .map(|(pk, _)| pk)
            .collect();
        keys.sort();
        keys
    }

    fn fast() -> BatchWriterConfig {
        BatchWriterConfig {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            ..Default::default()
        }
    }

    fn no_sdk_retries(builder: aws_sdk_dynamodb::config::Builder) -> aws_sdk_dynamodb::config::Builder {
        builder.retry_config(RetryConfig::disabled())
    }

    #[tokio::test]
    async fn three_unprocessed_then_none_is_one_retry_of_exactly_those_three() {
        let first = mock!(Client::batch_write_item)
            .match_requests(|req| keys_in(req) == ["k0", "k1", "k2", "k3", "k4"])
            .then_output(|| BatchWriteItemOutput::builder().unprocessed_items(TABLE, requests_of(&[1, 3, 4])).build());
        let retry = mock!(Client::batch_write_item)
            .match_requests(|req| keys_in(req) == ["k1", "k3", "k4"])
            .then_output(|| BatchWriteItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&first, &retry], no_sdk_retries);
        let writes: Vec<Write> = (0..5).map(put).collect();
        let (outcomes, stats) = write_all(&client, TABLE, &writes, &fast()).await;
        assert!(outcomes.iter().all(WriteOutcome::is_written), "{outcomes:?}");
        assert_eq!((first.num_calls(), retry.num_calls()), (1, 1));
        assert_eq!(stats, WriteStats { calls: 2, retries: 1 });
    }

    #[tokio::test]
    async fn a_throttled_call_is_retried_whole() {
        let throttled = mock!(Client::batch_write_item).then_error(|| {
            BatchWriteItemError::ProvisionedThroughputExceededException(
                ProvisionedThroughputExceededException::builder().message("slow down").build(),
            )
        });
        let retry = mock!(Client::batch_write_item)
            .match_requests(|req| keys_in(req).len() == 3)
            .then_output(|| BatchWriteItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&throttled, &retry], no_sdk_retries);
        let writes: Vec<Write> = (0..3).map(put).collect();
        let (outcomes, stats) = write_all(&client, TABLE, &writes, &fast()).await;
        assert!(outcomes.iter().all(WriteOutcome::is_written));
        assert_eq!(stats.calls, 2);
    }

    #[tokio::test]
    async fn a_validation_error_is_reported_not_retried() {
        let rejected = mock!(Client::batch_write_item).then_error(|| {
            BatchWriteItemError::generic(
                aws_sdk_dynamodb::error::ErrorMetadata::builder()
                    .code("ValidationException")
                    .message("bad item")
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rejected], no_sdk_retries);
        let writes: Vec<Write> = (0..2).map(put).collect();
        let (outcomes, stats) = write_all(&client, TABLE, &writes, &fast()).await;
        assert_eq!(stats.calls, 1);
        for outcome in outcomes {
            assert!(matches!(outcome, WriteOutcome::NotWritten { retryable: false, .. }), "{outcome:?}");
        }
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_reporting_retryable() {
        let never = mock!(Client::batch_write_item)
            .sequence()
            .output(|| BatchWriteItemOutput::builder().unprocessed_items(TABLE, requests_of(&[1])).build())
            .times(4)
            .build();
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&never], no_sdk_retries);
        let writes: Vec<Write> = (0..2).map(put).collect();
        let config = BatchWriterConfig { max_attempts: 4, ..fast() };
        let (outcomes, stats) = write_all(&client, TABLE, &writes, &config).await;
        assert_eq!(outcomes[0], WriteOutcome::Written);
        assert!(matches!(&outcomes[1], WriteOutcome::NotWritten { retryable: true, .. }), "{:?}", outcomes[1]);
        assert_eq!(stats, WriteStats { calls: 4, retries: 3 });
        assert_eq!(never.num_calls(), 4);
    }

    #[tokio::test]
    async fn stops_at_the_deadline() {
        let never = mock!(Client::batch_write_item)
            .then_output(|| BatchWriteItemOutput::builder().unprocessed_items(TABLE, requests_of(&[0])).build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&never], no_sdk_retries);
        let config = BatchWriterConfig {
            max_attempts: 1000,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(40),
            deadline: Some(Instant::now() + Duration::from_millis(300)),
            ..Default::default()
        };
        let started = Instant::now();
        let (outcomes, stats) = write_all(&client, TABLE, &[put(0)], &config).await;
        assert!(started.elapsed() < Duration::from_millis(400));
        assert!(stats.calls < 1000);
        assert!(matches!(&outcomes[0], WriteOutcome::NotWritten { retryable: true, .. }));
    }

    #[tokio::test]
    async fn chunks_of_25_without_repeated_keys_and_oversize_rejected_up_front() {
        let any = mock!(Client::batch_write_item)
            .match_requests(|req| {
                let keys = keys_in(req);
                let unique: std::collections::HashSet<&String> = keys.iter().collect();
                keys.len() <= MAX_ITEMS_PER_CALL && unique.len() == keys.len()
            })
            .then_output(|| BatchWriteItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&any], no_sdk_retries);
        let mut writes: Vec<Write> = (0..60).map(put).collect();
        writes.push(put(7)); // a second write of k7: supersedes the first
        let mut huge = put(99);
        if let Write::Put(item) = &mut huge {
            item.insert("blob".into(), AttributeValue::S("x".repeat(MAX_ITEM_BYTES)));
        }
        writes.push(huge);
        let (outcomes, stats) = write_all(&client, TABLE, &writes, &fast()).await;
        assert_eq!(stats.calls, 3, "60 distinct keys: 25 + 25 + 10");
        assert_eq!(any.num_calls(), 3);
        assert!(outcomes[..61].iter().all(WriteOutcome::is_written));
        assert!(matches!(&outcomes[61], WriteOutcome::NotWritten { retryable: false, .. }));
    }

    #[test]
    fn backoff_is_bounded_full_jitter() {
        let config = BatchWriterConfig::default();
        for attempt in 0..30 {
            let delay = backoff(&config, attempt);
            assert!(delay <= config.max_delay);
            assert!(delay <= config.base_delay * (1 << attempt.min(20)));
        }
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
