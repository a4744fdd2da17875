//! `stream.threshold_exceeded`: each webhook's thresholds checked against one minute of a
//! stream's arrivals (the aggregator's exact per-minute statistics), firing when a metric
//! crosses above its threshold, not on every minute it stays there.
//!
//! The aggregator queues a check of minute M once M has ended (delayed to M's end + a margin),
//! and again if arrivals of M are counted later. The check keeps, per webhook, stream and
//! metric, whether the metric was above and the minute of that crossing; checks of older
//! minutes are ignored, and a re-check of the same minute may only turn it above, so checks
//! arriving late or twice change nothing. A metric above at the last crossing counts as below
//! again after a minute without arrivals.

use argus_models::rollup::{lag_quantile_seconds, Level, LAG_BUCKETS};
use argus_models::time;
use argus_models::webhook::{EventType, Thresholds};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use uuid::Uuid;

use crate::ddb::{get_n, get_opt_s, key};
use crate::keys::{stream_stats_minute_sk, webhooks_pk};
use crate::{Backend, ServiceError};

/// A check waits this long after its minute ends (arrivals of the minute still being counted).
pub const SETTLE_SECONDS: i64 = 5;

/// One minute of a stream, measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Minute {
    pub stored: u64,
    pub errors: u64,
    pub lag_p95_seconds: Option<f64>,
}

/// (metric, value, threshold) for every threshold set, and whether the value is above it.
pub fn evaluate(thresholds: &Thresholds, minute: &Minute) -> Vec<(&'static str, f64, f64, bool)> {
    let mut out = Vec::new();
    if let Some(limit) = thresholds.events_per_minute {
        out.push(("events_per_minute", minute.stored as f64, limit as f64, minute.stored > limit));
    }
    if let Some(limit) = thresholds.error_rate {
        let arrived = minute.stored + minute.errors;
        let rate = if arrived == 0 { 0.0 } else { minute.errors as f64 / arrived as f64 };
        out.push(("error_rate", rate, limit, rate > limit));
    }
    if let Some(limit) = thresholds.lag_seconds {
        let lag = minute.lag_p95_seconds.unwrap_or(0.0);
        out.push(("lag_seconds", lag, limit, lag > limit));
    }
    out
}

fn state_sk(webhook: &Uuid, stream: &str, metric: &str) -> String {
    format!("TH#{webhook}#{metric}#{stream}")
}

/// Checks minute `minute` (epoch seconds of its start) of `stream` for every webhook that set
/// thresholds on it.
pub async fn check(backend: &Backend, tenant: &str, stream: &str, minute: i64) -> Result<(), ServiceError> {
    let webhooks: Vec<_> = super::store::list(backend, tenant)
        .await?
        .into_iter()
        .filter(|w| w.wants(EventType::ThresholdExceeded, Some(stream)) && !w.thresholds.is_empty())
        .collect();
    if webhooks.is_empty() {
        return Ok(());
    }
    let partitions = crate::stream_stats::sub_partitions(backend, tenant, stream).await?;
    let stats =
        crate::stream_stats::merged_stats_in(backend, tenant, stream, partitions, &stream_stats_minute_sk(minute))
            .await?
            .unwrap_or_default();
    let mut histogram = [0u64; LAG_BUCKETS];
    for (bucket, slot) in histogram.iter_mut().enumerate() {
        *slot = get_n(&stats, &format!("lag_{bucket:02}"));
    }
    let measured = Minute {
        stored: get_n(&stats, "stored"),
        errors: get_n(&stats, "errors"),
        lag_p95_seconds: lag_quantile_seconds(&histogram, 0.95),
    };
    let start = chrono::DateTime::from_timestamp(minute, 0).unwrap_or_default();
    let end = chrono::DateTime::from_timestamp(minute + Level::Minute.seconds(), 0).unwrap_or_default();
    // Read once, when a crossing needs it: the same for every webhook and metric.
    let mut minute_before_quiet = None;
    for webhook in &webhooks {
        for (metric, value, threshold, above) in evaluate(&webhook.thresholds, &measured) {
            let state_key = key(webhooks_pk(tenant), &state_sk(&webhook.webhook_id, stream, metric));
            let state = crate::ddb::get_item(&backend.dynamodb, &backend.table, state_key.clone()).await?;
            let (mut was_above, seen) = match &state {
                Some(item) => (get_opt_s(item, "above") == Some("true"), get_n(item, "minute") as i64),
                None => (false, i64::MIN),
            };
            if minute < seen || (minute == seen && (was_above || !above)) {
                continue; // older news (a re-check of the same minute may only find it above)
            }
            if was_above && minute > seen + Level::Minute.seconds() {
                let quiet = match minute_before_quiet {
                    Some(quiet) => quiet,
                    None => *minute_before_quiet.insert(quiet(backend, tenant, stream, partitions, minute).await?),
                };
                if quiet {
                    // The minute before had no arrivals: every metric was below then.
                    was_above = false;
                }
            }
            if above == was_above {
                continue; // no crossing
            }
            if above {
                let data = json!({
                    "error_message": format!(
                        "{metric} was {} in stream '{stream}' from {} to {}, above the threshold {threshold}",
                        round(value),
                        time::format(&start),
                        time::format(&end)
                    ),
                    "affected_events": measured.stored + measured.errors,
                    "metric": metric,
                    "value": round(value),
                    "threshold": threshold,
                    "window": {"start": time::format(&start), "end": time::format(&end)},
                });
                let notification = format!("threshold:{}:{stream}:{metric}:{minute}", webhook.webhook_id);
                super::outbox::notify(
                    backend,
                    tenant,
                    Some(stream),
                    EventType::ThresholdExceeded,
                    &notification,
                    data,
                    Some(&webhook.webhook_id),
                )
                .await?;
            }
            record(backend, state_key, above, minute).await?;
        }
    }
    Ok(())
}

/// Whether the minute before `minute` had no arrivals (no statistics item).
async fn quiet(
    backend: &Backend,
    tenant: &str,
    stream: &str,
    partitions: u32,
    minute: i64,
) -> Result<bool, ServiceError> {
    let before = stream_stats_minute_sk(minute - Level::Minute.seconds());
    Ok(crate::stream_stats::merged_stats_in(backend, tenant, stream, partitions, &before).await?.is_none())
}

fn round(value: f64) -> f64 {
    (value * 1_000_000.0).round() / 1_000_000.0
}

async fn record(backend: &Backend, state_key: crate::ddb::Item, above: bool, minute: i64) -> Result<(), ServiceError> {
    let result = crate::deadline::bounded(
        backend
            .dynamodb
            .update_item()
            .table_name(&backend.table)
            .set_key(Some(state_key))
            // Kept 30 days past the crossing it records.
            .update_expression("SET above = :above, #minute = :minute, expires_at = :ttl")
            .expression_attribute_values(":ttl", AttributeValue::N((minute + 30 * 86_400).to_string()))
            .condition_expression("attribute_not_exists(#minute) OR #minute <= :minute")
            .expression_attribute_names("#minute", "minute")
            .expression_attribute_values(":above", AttributeValue::S(above.to_string()))
            .expression_attribute_values(":minute", AttributeValue::N(minute.to_string()))
            .send(),
    )
    .await?;
    crate::ddb::condition_held(result).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_against_thresholds() {
        let thresholds = Thresholds { error_rate: Some(0.1), lag_seconds: Some(2.0), events_per_minute: Some(100) };
        let quiet = Minute { stored: 50, errors: 2, lag_p95_seconds: Some(0.5) };
        assert!(evaluate(&thresholds, &quiet).iter().all(|(_, _, _, above)| !above));
        let busy = Minute { stored: 101, errors: 30, lag_p95_seconds: Some(4.0) };
        let fired: Vec<&str> = evaluate(&thresholds, &busy).iter().filter(|m| m.3).map(|m| m.0).collect();
        assert_eq!(fired, ["events_per_minute", "error_rate", "lag_seconds"]);
        let empty = Minute { stored: 0, errors: 0, lag_p95_seconds: None };
        assert!(evaluate(&thresholds, &empty).iter().all(|(_, value, _, above)| *value == 0.0 && !above));
        assert!(evaluate(&Thresholds::default(), &busy).is_empty());
    }
}
