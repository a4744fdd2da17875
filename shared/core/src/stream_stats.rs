//! A stream's counters split over sub-partitions, and read back merged.
//!
//! The aggregator writes a stream's rollup cells and statistics (`M#<minute>`, `TOTAL`) in
//! every transaction; a stream past ≈ 8,000 events/s would take more than one partition's
//! 1,000 writes/s on its current minute's items. A stream with `write_shards` n spreads them
//! over n / 8 sub-partitions (`<pk>` for 0, `<pk>#<k>` above): each aggregator batch adds to
//! one of them, and readers add them up (counters summed, bounds as min/max). Like the write
//! shards, the count only grows, and readers read it fresh, so they never miss a sub-partition
//! a writer used.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::ddb::{get_opt_s, s, Item};
use crate::deadline::WithinDeadline;
use crate::keys::{stream_stats_pk, stream_sub_pk};
use crate::{Backend, ServiceError};

/// Sub-partitions of a stream's counters (fresh; 1 for a stream without settings).
pub async fn sub_partitions(backend: &Backend, tenant: &str, stream: &str) -> Result<u32, ServiceError> {
    if argus_models::stream::check_stream_id("stream", stream).is_err() {
        return Ok(1);
    }
    let item = crate::ddb::get_meta(&backend.dynamodb, &backend.table, crate::keys::stream_pk(tenant, stream)).await?;
    let write_shards = item.as_ref().map_or(0, |item| crate::ddb::get_n(item, "write_shards"));
    Ok(argus_models::stream::rollup_shards(u32::try_from(write_shards).unwrap_or(0)))
}

/// Every sub-partition key of `pk`.
pub fn sub_pks(pk: &str, partitions: u32) -> Vec<String> {
    (0..partitions.max(1)).map(|k| stream_sub_pk(pk, k)).collect()
}

/// Adds `from` into `into`: numbers summed (a TTL kept as the latest); the bounds kept on
/// `TOTAL` as min (earliest) or max (latest, last received); anything else kept from the first.
pub fn merge_into(into: &mut Item, from: Item) {
    for (name, value) in from {
        match (into.get_mut(&name), value) {
            (Some(AttributeValue::N(kept)), AttributeValue::N(n)) if name == crate::keys::EXPIRES_AT => {
                let later = n.parse::<i64>().unwrap_or(0).max(kept.parse::<i64>().unwrap_or(0));
                *kept = later.to_string();
            }
            (Some(AttributeValue::N(sum)), AttributeValue::N(n)) => {
                let total = sum.parse::<i64>().unwrap_or(0) + n.parse::<i64>().unwrap_or(0);
                *sum = total.to_string();
            }
            (Some(AttributeValue::S(kept)), AttributeValue::S(text)) => {
                let earlier = text < *kept;
                match name.as_str() {
                    "earliest_timestamp" if earlier => *kept = text,
                    "latest_timestamp" | "last_received_at" if !earlier => *kept = text,
                    _ => {}
                }
            }
            (None, value) => {
                into.insert(name, value);
            }
            _ => {}
        }
    }
}

/// One statistics item of a stream (`TOTAL`, `M#<minute>`), merged over its sub-partitions;
/// `None` when none of them exists. (A `Query` per sub-partition, which every reader of the
/// statistics may already make, rather than one more action in their policies.)
pub async fn merged_stats(
    backend: &Backend,
    tenant: &str,
    stream: &str,
    sk: &str,
) -> Result<Option<Item>, ServiceError> {
    let partitions = sub_partitions(backend, tenant, stream).await?;
    merged_stats_in(backend, tenant, stream, partitions, sk).await
}

/// [`merged_stats`] for a caller that has read the sub-partition count already.
pub async fn merged_stats_in(
    backend: &Backend,
    tenant: &str,
    stream: &str,
    partitions: u32,
    sk: &str,
) -> Result<Option<Item>, ServiceError> {
    let pk = stream_stats_pk(tenant, stream);
    Ok(merged_range(backend, &pk, partitions, sk, sk, None).await?.into_values().next())
}

/// The items of `pk`'s sub-partitions with `SK BETWEEN from AND to`, merged by sort key.
pub async fn merged_range(
    backend: &Backend,
    pk: &str,
    partitions: u32,
    from: &str,
    to: &str,
    projection: Option<&str>,
) -> Result<BTreeMap<String, Item>, ServiceError> {
    let reads =
        sub_pks(pk, partitions).into_iter().map(|pk| async move { range(backend, &pk, from, to, projection).await });
    let mut merged: BTreeMap<String, Item> = BTreeMap::new();
    for items in futures::future::try_join_all(reads).await? {
        for mut item in items {
            let Some(sk) = get_opt_s(&item, crate::keys::SK).map(str::to_string) else { continue };
            item.remove(crate::keys::PK);
            match merged.get_mut(&sk) {
                Some(into) => merge_into(into, item),
                None => {
                    merged.insert(sk, item);
                }
            }
        }
    }
    Ok(merged)
}

/// Every item of one partition with `SK BETWEEN from AND to`, read consistently (the
/// aggregator's latest commits included: a count read right after it stays exact).
pub async fn range(
    backend: &Backend,
    pk: &str,
    from: &str,
    to: &str,
    projection: Option<&str>,
) -> Result<Vec<Item>, ServiceError> {
    let mut items = Vec::new();
    let mut start_key = None;
    loop {
        let out = backend
            .dynamodb
            .query()
            .table_name(&backend.table)
            .key_condition_expression("PK = :pk AND SK BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(to))
            .set_projection_expression(projection.map(str::to_string))
            .consistent_read(true)
            .set_exclusive_start_key(start_key.take())
            .send()
            .within_deadline()
            .await?
            .map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
        items.extend(out.items.unwrap_or_default());
        match out.last_evaluated_key {
            Some(key) => start_key = Some(key),
            None => return Ok(items),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: i64) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }

    #[test]
    fn sub_partitions_add_up() {
        assert_eq!(sub_pks("T#a#STAT#s", 1), vec!["T#a#STAT#s"]);
        assert_eq!(sub_pks("T#a#STAT#s", 3), vec!["T#a#STAT#s", "T#a#STAT#s#1", "T#a#STAT#s#2"]);
        let mut total = Item::from([
            ("stored".into(), n(5)),
            ("earliest_timestamp".into(), s("2026-01-02T00:00:00.000Z")),
            ("latest_timestamp".into(), s("2026-01-03T00:00:00.000Z")),
            ("last_received_at".into(), s("2026-01-03T00:00:01.000Z")),
            ("expires_at".into(), n(100)),
        ]);
        merge_into(
            &mut total,
            Item::from([
                ("stored".into(), n(7)),
                ("errors".into(), n(2)),
                ("earliest_timestamp".into(), s("2026-01-01T00:00:00.000Z")),
                ("latest_timestamp".into(), s("2026-01-02T12:00:00.000Z")),
                ("last_received_at".into(), s("2026-01-04T00:00:00.000Z")),
                ("expires_at".into(), n(160)),
            ]),
        );
        assert_eq!(total["stored"], n(12));
        assert_eq!(total["errors"], n(2));
        assert_eq!(total["earliest_timestamp"], s("2026-01-01T00:00:00.000Z"));
        assert_eq!(total["latest_timestamp"], s("2026-01-03T00:00:00.000Z"));
        assert_eq!(total["last_received_at"], s("2026-01-04T00:00:00.000Z"));
        assert_eq!(total["expires_at"], n(160), "a TTL is not a count");
    }
}
