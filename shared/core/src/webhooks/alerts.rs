//! `stream.processing_error`: one notification per stream per window, not one per bad event.
//!
//! The aggregator counts a stream's error records exactly once (`STAT` `TOTAL`.`errors`). A
//! small state item per stream remembers how many of them were notified and when. A check
//! (queued by the aggregator whenever a batch holds error records, and again at the end of a
//! window) notifies the difference at once if the last notification is a window old (the
//! first error of a quiet stream goes out immediately), or queues itself for the window's end.
//!
//! A notification is claimed before it is fanned out (`pending_from`/`pending_to`, by a
//! conditional update on the count notified), and fanned out under an id named by its range,
//! so concurrent or repeated checks notify each error once.

use argus_models::time;
use argus_models::webhook::EventType;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;

use super::now_ms;
use super::outbox::{self, NotifierMessage};
use crate::ddb::{get_n, key, Item};
use crate::keys::{error_alert_sk, webhooks_pk, STATS_TOTAL};
use crate::{Backend, ServiceError};

/// Checks a stream's errors. A stream never notified before starts from the count recorded
/// when a webhook scoped to it was created (`start_counting`), else from zero: the first
/// notification then covers the stream's errors so far. (A baseline taken by the first check
/// itself would race the aggregator's concurrent batches and could skip errors.)
pub async fn check(backend: &Backend, tenant: &str, stream: &str) -> Result<(), ServiceError> {
    // Nobody listening: nothing to keep (no writes for tenants without such a webhook).
    let listening =
        super::store::list(backend, tenant).await?.iter().any(|w| w.wants(EventType::ProcessingError, Some(stream)));
    if !listening {
        return Ok(());
    }
    // A lost claim means another check notified up to what it read: look again (errors may
    // have arrived after its read), a few times, then let the message come back.
    for _ in 0..3 {
        if check_once(backend, tenant, stream).await? {
            return Ok(());
        }
    }
    Err(ServiceError::Unavailable { component: "webhooks", message: "error alert state keeps changing; retry".into() })
}

/// One look at the stream's errors. False: another check claimed first.
async fn check_once(backend: &Backend, tenant: &str, stream: &str) -> Result<bool, ServiceError> {
    let state_key = key(webhooks_pk(tenant), &error_alert_sk(stream));
    let state = crate::ddb::get_item(&backend.dynamodb, &backend.table, state_key.clone()).await?.unwrap_or_default();
    // A claimed notification whose fan-out did not finish: finish it first.
    if state.contains_key("pending_to") {
        let (from, to) = (get_n(&state, "pending_from"), get_n(&state, "pending_to"));
        fan_out(backend, tenant, stream, from, to).await?;
        clear_pending(backend, &state_key, to).await?;
    }
    let total = crate::stream_stats::merged_stats(backend, tenant, stream, STATS_TOTAL)
        .await?
        .map(|item| get_n(&item, "errors"))
        .unwrap_or(0);
    let notified = get_n(&state, "notified");
    if total <= notified {
        return Ok(true);
    }
    let window_ms = backend.webhooks.error_window.as_millis() as i64;
    let now = now_ms();
    let due = get_n(&state, "notified_at") as i64 + window_ms;
    if now >= due {
        if !claim(backend, &state_key, &state, notified, total, now).await? {
            return Ok(false);
        }
        fan_out(backend, tenant, stream, notified, total).await?;
        clear_pending(backend, &state_key, total).await?;
        return Ok(true);
    }
    // Within the window: one check queued for its end is enough.
    if (get_n(&state, "check_at") as i64) < due {
        let delay = ((due - now) as f64 / 1000.0).ceil() as u64;
        let message = NotifierMessage::ErrorsCheck { tenant: tenant.to_string(), stream: stream.to_string() };
        outbox::send(backend, &[(message, delay)]).await?;
        let _ = crate::deadline::bounded(
            backend
                .dynamodb
                .update_item()
                .table_name(&backend.table)
                .set_key(Some(state_key))
                .update_expression("SET check_at = :due")
                .condition_expression("attribute_not_exists(check_at) OR check_at < :due")
                .expression_attribute_values(":due", AttributeValue::N(due.to_string()))
                .send(),
        )
        .await?;
    }
    Ok(true)
}

/// A new webhook scoped to `stream` hears of the stream's errors from now on: records the
/// current count as notified, unless the stream already has alert state.
pub async fn start_counting(backend: &Backend, tenant: &str, stream: &str) -> Result<(), ServiceError> {
    let total = crate::stream_stats::merged_stats(backend, tenant, stream, STATS_TOTAL)
        .await?
        .map(|item| get_n(&item, "errors"))
        .unwrap_or(0);
    let mut item = key(webhooks_pk(tenant), &error_alert_sk(stream));
    item.insert("notified".into(), AttributeValue::N(total.to_string()));
    item.insert("notified_at".into(), AttributeValue::N("0".into()));
    let result = crate::deadline::bounded(
        backend
            .dynamodb
            .put_item()
            .table_name(&backend.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .send(),
    )
    .await?;
    crate::ddb::condition_held(result).map(|_| ())
}

/// Claims errors `(notified, total]` for one notification. False: another check moved first.
async fn claim(
    backend: &Backend,
    state_key: &Item,
    state: &Item,
    notified: u64,
    total: u64,
    now: i64,
) -> Result<bool, ServiceError> {
    let condition = if state.contains_key("notified") { "notified = :old" } else { "attribute_not_exists(notified)" };
    let update = backend
        .dynamodb
        .update_item()
        .table_name(&backend.table)
        .set_key(Some(state_key.clone()))
        // No TTL: the stream's error total never expires, so neither may the count notified
        // (a state deleted after a quiet month would report every earlier error again).
        // `REMOVE` clears the TTL that states written before this rule carry.
        .update_expression(
            "SET notified = :total, notified_at = :now, pending_from = :old, pending_to = :total REMOVE expires_at",
        )
        .condition_expression(condition)
        .expression_attribute_values(":total", AttributeValue::N(total.to_string()))
        .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
        .expression_attribute_values(":old", AttributeValue::N(notified.to_string()));
    crate::ddb::condition_held(crate::deadline::bounded(update.send()).await?).map(|made| made.is_some())
}

async fn clear_pending(backend: &Backend, state_key: &Item, to: u64) -> Result<(), ServiceError> {
    let result = crate::deadline::bounded(
        backend
            .dynamodb
            .update_item()
            .table_name(&backend.table)
            .set_key(Some(state_key.clone()))
            .update_expression("REMOVE pending_from, pending_to")
            .condition_expression("pending_to = :to")
            .expression_attribute_values(":to", AttributeValue::N(to.to_string()))
            .send(),
    )
    .await?;
    crate::ddb::condition_held(result).map(|_| ())
}

async fn fan_out(backend: &Backend, tenant: &str, stream: &str, from: u64, to: u64) -> Result<(), ServiceError> {
    let affected = to.saturating_sub(from);
    if affected == 0 {
        return Ok(());
    }
    let data = json!({
        "error_message": format!(
            "{affected} event{} in stream '{stream}' failed processing; GET /errors lists the error records",
            if affected == 1 { "" } else { "s" }
        ),
        "affected_events": affected,
        "errors_total": to,
        "notified_at": time::format(&time::now()),
    });
    outbox::notify(
        backend,
        tenant,
        Some(stream),
        EventType::ProcessingError,
        &format!("errors:{stream}:{from}"),
        data,
        None,
    )
    .await?;
    Ok(())
}
