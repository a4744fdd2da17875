//! Small DynamoDB helpers: attribute access and the sharded, newest-first listing query.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::try_join_all;

use crate::ServiceError;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, ServiceError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(ServiceError::Internal(format!("stored item lacks string attribute {name}"))),
    }
}

pub fn get_opt_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

/// A number attribute as u64 (0 when absent or not a number).
pub fn get_n(item: &Item, name: &str) -> u64 {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
        _ => 0,
    }
}

/// Strongly consistent read of an entity's own item (`SK = #META`).
pub async fn get_meta(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: String,
) -> Result<Option<Item>, ServiceError> {
    let read = client
        .get_item()
        .table_name(table)
        .key(crate::keys::PK, s(pk))
        .key(crate::keys::SK, s(crate::keys::META))
        .consistent_read(true)
        .send();
    Ok(crate::deadline::bounded(read).await?.map_err(|e| ServiceError::from_sdk("dynamodb", e))?.item)
}

/// Strongly consistent read of any item by its full key.
pub async fn get_item(client: &aws_sdk_dynamodb::Client, table: &str, key: Item) -> Result<Option<Item>, ServiceError> {
    let read = client.get_item().table_name(table).set_key(Some(key)).consistent_read(true).send();
    Ok(crate::deadline::bounded(read).await?.map_err(|e| ServiceError::from_sdk("dynamodb", e))?.item)
}

/// A newest-first listing over one or more partitions (write shards) of one index.
#[derive(Debug, Clone)]
pub struct ListQuery<'a> {
    pub index: &'a str,
    pub pk_attr: &'a str,
    pub sk_attr: &'a str,
    pub partitions: Vec<String>,
    /// Inclusive lower bound of the sort key.
    pub sk_from: Option<String>,
    /// Exclusive upper bound of the sort key (the cursor, or the end of a time range).
    pub sk_before: Option<String>,
    /// A filter applied by DynamoDB after the key condition: (expression, names, values).
    /// Names and values must not use `#pk`, `#sk`, `:pk`, `:from`, `:before`.
    pub filter: Option<Filter>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub expression: String,
    pub names: Vec<(String, String)>,
    pub values: Vec<(String, AttributeValue)>,
}

impl Filter {
    /// ANDs `expression` onto the filter.
    pub fn and(&mut self, expression: impl Into<String>) -> &mut Self {
        let expression = expression.into();
        self.expression =
            if self.expression.is_empty() { expression } else { format!("{} AND {expression}", self.expression) };
        self
    }

    pub fn name(&mut self, placeholder: &str, name: &str) -> &mut Self {
        self.names.push((placeholder.to_string(), name.to_string()));
        self
    }

    pub fn value(&mut self, placeholder: &str, value: AttributeValue) -> &mut Self {
        self.values.push((placeholder.to_string(), value));
        self
    }
}

/// A page of a listing merged from several write shards.
#[derive(Debug)]
pub struct ShardedPage {
    pub items: Vec<Item>,
    /// Sort key of the last item when more items follow, to resume strictly below it.
    pub next_before: Option<String>,
}

/// Query calls per shard in one listing request: with a filter that matches little, a page
/// stops here instead of reading a tenant's whole history (each call reads at most 1 MB).
pub const MAX_QUERY_CALLS_PER_SHARD: usize = 2;
/// With a filter, each call evaluates this many items (DynamoDB's `Limit` counts items read).
const FILTERED_READ_BATCH: usize = 200;
/// The least a shard is asked for when a page's items are spread over many shards.
const MIN_SHARD_QUOTA: usize = 32;

/// Items each of `shards` is asked for to fill a page of `limit`. `limit + 1` from each would
/// be exact in one round but reads `shards` times the page (64 × 1,001 items for a page of
/// 1,000 from a stream with 64 write shards); a share of twice the page is enough to fill it
/// almost always, and a shard that stops at its share marks where the page must end.
pub fn shard_quota(limit: usize, shards: usize) -> usize {
    let wanted = limit + 1;
    if shards <= 1 {
        return wanted;
    }
    wanted.min((2 * wanted).div_ceil(shards).max(MIN_SHARD_QUOTA))
}
/// A page's items stop at this many bytes of response (Lambda answers at most 6 MB, and the
/// body is escaped once more inside Lambda's JSON): the page ends early, with a cursor.
pub const MAX_PAGE_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Bytes an item adds to a Lambda HTTP response: its text values as escaped twice over (JSON
/// body, then that body as a JSON string), plus names and punctuation. An upper bound.
pub fn response_bytes(item: &Item) -> usize {
    fn escaped(text: &str) -> usize {
        text.bytes()
            .map(|b| match b {
                b'"' | b'\\' => 4,
                0..=0x1f => 12,
                _ => 1,
            })
            .sum()
    }
    item.iter()
        .map(|(name, value)| {
            name.len()
                + 8
                + match value {
                    AttributeValue::S(text) => escaped(text),
                    AttributeValue::N(n) => n.len(),
                    other => escaped(&format!("{other:?}")),
                }
        })
        .sum()
}

/// Runs `query` on every partition in parallel and merges the results newest first.
///
/// Why the page is exact: every item of the next page has a sort key below this page's last
/// one, and the newest `limit` items of the union are among the newest `limit` of each shard.
/// Asking each shard for `limit + 1` tells without a further call whether anything follows.
/// With many shards each is asked for a share ([`shard_quota`]); a shard that has more than
/// its share stops at its last item, like one that hit the call cap below.
///
/// Bounded: a shard stops after `MAX_QUERY_CALLS_PER_SHARD` calls. Everything at or above the
/// highest point where a shard stopped was read in every shard, so the page keeps only those
/// items and the cursor continues below that point: a page may hold fewer than `limit` items,
/// even none, and still have a `next_before`. Items also stop at `MAX_PAGE_RESPONSE_BYTES`.
pub async fn query_sharded_desc(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    query: &ListQuery<'_>,
) -> Result<ShardedPage, ServiceError> {
    // A cursor below the range's start (a cursor kept while the filter changed): nothing is
    // left, and DynamoDB would refuse `BETWEEN` with its bounds reversed (a 500, not a page).
    if let (Some(from), Some(before)) = (&query.sk_from, &query.sk_before) {
        if from >= before {
            return Ok(ShardedPage { items: Vec::new(), next_before: None });
        }
    }
    let per_shard = query.partitions.iter().map(|pk| query_partition_desc(client, table, query, pk));
    let mut merged: Vec<(String, Item)> = Vec::new();
    // The highest sort key at which a shard stopped reading before it was exhausted.
    let mut frontier: Option<String> = None;
    for (shard_items, stopped_at) in try_join_all(per_shard).await? {
        for item in shard_items {
            let sort = get_s(&item, query.sk_attr)?.to_string();
            merged.push((sort, item));
        }
        if let Some(stopped_at) = stopped_at {
            if frontier.as_ref().is_none_or(|f| stopped_at > *f) {
                frontier = Some(stopped_at);
            }
        }
    }
    merged.sort_by(|a, b| b.0.cmp(&a.0));
    if let Some(frontier) = &frontier {
        merged.retain(|(sort, _)| sort >= frontier);
    }
    let mut has_more = merged.len() > query.limit;
    merged.truncate(query.limit);
    let mut bytes = 0usize;
    let fits = merged
        .iter()
        .position(|(_, item)| {
            bytes += response_bytes(item);
            bytes > MAX_PAGE_RESPONSE_BYTES
        })
        // One item always fits: the stored-event limit is far below the page's.
        .map_or(merged.len(), |over| over.max(1));
    if fits < merged.len() {
        merged.truncate(fits);
        has_more = true;
    }
    let next_before = if has_more {
        merged.last().map(|(sort, _)| sort.clone())
    } else {
        // Fewer items than asked for because a shard stopped early: continue below its point.
        frontier
    };
    Ok(ShardedPage { items: merged.into_iter().map(|(_, item)| item).collect(), next_before })
}

/// One shard's newest items (at most `limit + 1`), and where it stopped reading if it hit the
/// call cap before it was exhausted or had enough.
async fn query_partition_desc(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    query: &ListQuery<'_>,
    partition: &str,
) -> Result<(Vec<Item>, Option<String>), ServiceError> {
    let exact = query.limit + 1;
    let wanted = shard_quota(query.limit, query.partitions.len());
    let mut calls = 0usize;
    // BETWEEN is inclusive at both ends; an exclusive upper bound with a lower bound is done
    // as BETWEEN plus dropping the (at most one) item equal to the bound.
    let (condition, drop_equal) = match (&query.sk_from, &query.sk_before) {
        (None, None) => ("#pk = :pk", false),
        (Some(_), None) => ("#pk = :pk AND #sk >= :from", false),
        (None, Some(_)) => ("#pk = :pk AND #sk < :before", false),
        (Some(_), Some(_)) => ("#pk = :pk AND #sk BETWEEN :from AND :before", true),
    };
    let mut items = Vec::new();
    let mut start_key = None;
    loop {
        let mut request = client
            .query()
            .table_name(table)
            .index_name(query.index)
            .scan_index_forward(false)
            .limit(
                i32::try_from(if query.filter.is_some() {
                    // A shard with a share reads about its share (every listing filters at
                    // least expiry, which keeps almost everything): not 200 from each of 64.
                    let floor = if wanted < exact { FILTERED_READ_BATCH.min(2 * wanted) } else { FILTERED_READ_BATCH };
                    (wanted - items.len()).max(floor)
                } else {
                    wanted - items.len() + usize::from(drop_equal)
                })
                .unwrap_or(i32::MAX),
            )
            .set_exclusive_start_key(start_key.take())
            .key_condition_expression(condition)
            .expression_attribute_names("#pk", query.pk_attr)
            .expression_attribute_values(":pk", s(partition));
        if query.sk_from.is_some() || query.sk_before.is_some() {
            request = request.expression_attribute_names("#sk", query.sk_attr);
        }
        if let Some(from) = &query.sk_from {
            request = request.expression_attribute_values(":from", s(from));
        }
        if let Some(before) = &query.sk_before {
            request = request.expression_attribute_values(":before", s(before));
        }
        if let Some(filter) = &query.filter {
            request = request.filter_expression(&filter.expression);
            for (placeholder, name) in &filter.names {
                request = request.expression_attribute_names(placeholder, name);
            }
            for (placeholder, value) in &filter.values {
                request = request.expression_attribute_values(placeholder, value.clone());
            }
        }
        let out = crate::deadline::bounded(request.send()).await?.map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
        calls += 1;
        for item in out.items.unwrap_or_default() {
            if drop_equal && get_opt_s(&item, query.sk_attr) == query.sk_before.as_deref() {
                continue;
            }
            items.push(item);
        }
        // A page stops short at 1 MB, or (with a filter) after `Limit` items were *read*:
        // keep reading until we have enough, the partition is exhausted, or the call cap.
        match out.last_evaluated_key {
            Some(key) if items.len() < wanted && calls >= MAX_QUERY_CALLS_PER_SHARD => {
                let stopped_at = get_opt_s(&key, query.sk_attr).map(str::to_string);
                return Ok((items, stopped_at));
            }
            Some(key) if items.len() < wanted => start_key = Some(key),
            last_key => {
                let more = items.len() > wanted || last_key.is_some();
                items.truncate(wanted);
                // Below a full `limit + 1` the shard's unread items could belong on this page:
                // it stops at its last item, and the page ends there.
                let stopped_at = (more && wanted < exact)
                    .then(|| items.last().and_then(|item| get_opt_s(item, query.sk_attr)).map(str::to_string))
                    .flatten();
                return Ok((items, stopped_at));
            }
        }
    }
}

/// Reads many items by key: `BatchGetItem` in calls of 100 keys, unprocessed keys retried with
/// backoff (bounded). Missing items are simply absent from the result. A key listed twice is
/// read once: DynamoDB refuses a call that names one key twice ("duplicates").
pub async fn batch_get(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: Vec<Item>,
    projection: Option<&str>,
) -> Result<Vec<Item>, ServiceError> {
    use aws_sdk_dynamodb::types::KeysAndAttributes;
    const MAX_ATTEMPTS: u32 = 8;
    let mut seen = std::collections::HashSet::new();
    let keys: Vec<Item> = keys
        .into_iter()
        .filter(|key| {
            let text = |name: &str| key.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            seen.insert((text(crate::keys::PK), text(crate::keys::SK)))
        })
        .collect();
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(100) {
        let mut request = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .set_projection_expression(projection.map(str::to_string))
                .consistent_read(true)
                .build()
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
        );
        let mut attempt = 0u32;
        while let Some(keys) = request.take() {
            attempt += 1;
            let out = crate::deadline::bounded(client.batch_get_item().request_items(table, keys).send())
                .await?
                .map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
            found.extend(out.responses.unwrap_or_default().remove(table).unwrap_or_default());
            request = out.unprocessed_keys.and_then(|mut keys| keys.remove(table)).filter(|k| !k.keys.is_empty());
            if request.is_some() {
                if attempt >= MAX_ATTEMPTS {
                    return Err(ServiceError::Unavailable {
                        component: "dynamodb",
                        message: "reads were throttled, retry later".into(),
                    });
                }
                let config = crate::batch_writer::BatchWriterConfig::default();
                if !crate::deadline::sleep_within(crate::batch_writer::backoff(&config, attempt)).await {
                    return Err(crate::deadline::out_of_time());
                }
            }
        }
    }
    Ok(found)
}

pub fn key(pk: String, sk: &str) -> Item {
    Item::from([(crate::keys::PK.to_string(), s(pk)), (crate::keys::SK.to_string(), s(sk))])
}

/// Whether a cancelled transaction's part `index` failed its condition.
pub fn condition_failed_at<R>(
    err: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        R,
    >,
    index: usize,
) -> bool {
    match err.as_service_error() {
        Some(
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(
                cancelled,
            ),
        ) => cancelled.cancellation_reasons().get(index).and_then(|r| r.code()) == Some("ConditionalCheckFailed"),
        _ => false,
    }
}

type TransactResult = Result<
    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput,
    aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        aws_sdk_dynamodb::config::http::HttpResponse,
    >,
>;

/// Attempts [`transact_retrying`] makes while a transaction is cancelled by contention.
const TRANSACT_ATTEMPTS: u32 = 10;

/// Sends a `TransactWriteItems` built by `build` (afresh per attempt, with a new request
/// token), retrying while it is cancelled by contention only (another transaction on one of
/// its items, throttling) or fails transiently: at most 10 attempts, full-jitter backoff
/// (ceiling 40 ms doubling to 2 s), never past the deadline. Contention that outlasts them is
/// `Unavailable` (retryable: a 503, or a message SQS delivers again), not an internal error.
/// Any other outcome (a failed condition, say) is returned as it came.
pub async fn transact_retrying<F>(build: F) -> Result<TransactResult, ServiceError>
where
    F: Fn() -> aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder,
{
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let token = uuid::Uuid::new_v4().to_string();
        let result = crate::deadline::bounded(build().client_request_token(token).send()).await?;
        let retryable = match &result {
            Ok(_) => false,
            Err(err) => match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    crate::error::only_contention(
                        cancelled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")),
                    )
                }
                Some(TransactWriteItemsError::TransactionInProgressException(_)) => true,
                _ => crate::error::is_transient_sdk_error(err),
            },
        };
        if !retryable {
            return Ok(result);
        }
        let still_contended = || ServiceError::Unavailable {
            component: "dynamodb",
            message: format!(
                "a transaction was still contended (or failing transiently) after {attempt} attempts; retry"
            ),
        };
        if attempt >= TRANSACT_ATTEMPTS {
            return Err(still_contended());
        }
        let ceiling = 20u64.saturating_mul(1 << attempt).min(2_000);
        if !crate::deadline::sleep_within(std::time::Duration::from_millis(fastrand::u64(0..=ceiling))).await {
            return Err(still_contended());
        }
    }
}

/// A conditional write's result: `Some(output)` if it was made, `None` if its condition
/// failed (someone else moved first: not an error), other failures as `ServiceError`.
pub fn condition_held<T, E>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>,
) -> Result<Option<T>, ServiceError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(output) => Ok(Some(output)),
        Err(err) if err.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException") => {
            Ok(None)
        }
        Err(err) => Err(ServiceError::from_sdk("dynamodb", err)),
    }
}

#[cfg(test)]
mod tests {
    use super::shard_quota;

    #[test]
    fn shards_are_asked_for_a_share_of_twice_the_page() {
        // One partition, or few shards and small pages: the exact `limit + 1` as before.
        assert_eq!(shard_quota(1000, 1), 1001);
        assert_eq!(shard_quota(20, 16), 21);
        // Many shards: twice the page spread over them, at least 32 each.
        assert_eq!(shard_quota(1000, 8), 251);
        assert_eq!(shard_quota(1000, 64), 32);
        assert_eq!(shard_quota(100, 64), 32);
        for (limit, shards) in [(1, 64), (50, 4), (1000, 16), (999, 3)] {
            let quota = shard_quota(limit, shards);
            assert!(quota >= 1 && quota <= limit + 1);
            assert!(quota * shards >= (limit + 1).min(32 * shards), "{limit}/{shards}");
        }
    }
}
