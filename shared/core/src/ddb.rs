//! Small DynamoDB helpers: attribute access and the sharded, newest-first listing query.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::try_join_all;

use crate::keys::{GSI1, GSI1PK, GSI1SK};
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

/// A page of a listing merged from several write shards.
#[derive(Debug)]
pub struct ShardedPage {
    pub items: Vec<Item>,
    /// Sort key of the last item when more items follow, to resume strictly below it.
    pub next_before: Option<String>,
}

/// Lists the items of `partitions` (the shards of one logical partition of GSI1) newest first
/// (descending GSI1SK), strictly below `before` if given, merged into one page of `limit`.
///
/// Why it is exact: every item of the next page has a sort key below this page's last one, and
/// the newest `limit` items of the union are among the newest `limit` of each shard. Asking each
/// shard for `limit + 1` tells without a further call whether anything follows.
pub async fn query_gsi1_sharded_desc(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    partitions: &[String],
    before: Option<&str>,
    limit: usize,
) -> Result<ShardedPage, ServiceError> {
    let wanted = limit + 1;
    let per_shard = partitions.iter().map(|pk| query_partition_desc(client, table, pk, before, wanted));
    let mut merged: Vec<(String, Item)> = Vec::new();
    for shard_items in try_join_all(per_shard).await? {
        for item in shard_items {
            let sort = get_s(&item, GSI1SK)?.to_string();
            merged.push((sort, item));
        }
    }
    merged.sort_by(|a, b| b.0.cmp(&a.0));
    let has_more = merged.len() > limit;
    merged.truncate(limit);
    let next_before = if has_more { merged.last().map(|(sort, _)| sort.clone()) } else { None };
    Ok(ShardedPage { items: merged.into_iter().map(|(_, item)| item).collect(), next_before })
}

async fn query_partition_desc(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    partition: &str,
    before: Option<&str>,
    wanted: usize,
) -> Result<Vec<Item>, ServiceError> {
    let mut items = Vec::new();
    let mut start_key = None;
    loop {
        let mut query = client
            .query()
            .table_name(table)
            .index_name(GSI1)
            .scan_index_forward(false)
            .limit(i32::try_from(wanted - items.len()).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start_key.take())
            .expression_attribute_names("#pk", GSI1PK)
            .expression_attribute_values(":pk", s(partition));
        query = match before {
            Some(bound) => query
                .key_condition_expression("#pk = :pk AND #sk < :before")
                .expression_attribute_names("#sk", GSI1SK)
                .expression_attribute_values(":before", s(bound)),
            None => query.key_condition_expression("#pk = :pk"),
        };
        let out = query.send().await.map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
        items.extend(out.items.unwrap_or_default());
        // A page can stop short of `Limit` at 1 MB; keep reading until we have enough.
        match out.last_evaluated_key {
            Some(key) if items.len() < wanted => start_key = Some(key),
            _ => return Ok(items),
        }
    }
}
