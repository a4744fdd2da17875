//! One attempt of one delivery, as the notifier runs it from a `deliver` message.
//!
//! Redelivery is harmless: an attempt is claimed on the delivery item (conditional on the
//! number of attempts made and no live claim) before any HTTP call, so two copies of one
//! message make one call. The result is written under the same claim, then the next
//! attempt's message is queued; if that send fails, the message comes back and finds its own
//! attempt recorded, and only queues the next one.

use std::time::Duration;

use argus_models::time;
use argus_models::webhook::{next_delay, parse_retry_after, EventType, WebhookUrl};
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use uuid::Uuid;

use super::now_ms;
use super::outbox::{self, delivery_item, delivery_of, Attempt, Delivery, DeliveryStatus, NotifierMessage};
use super::sender::{self, Failure};
use super::signing::signature_header;
use super::store::{self, Webhook};
use crate::ddb::key;
use crate::keys::deliveries_pk;
use crate::{Backend, ServiceError};

/// A claim outlives the attempt's timeout by this much before another copy may take over.
const CLAIM_MARGIN: Duration = Duration::from_secs(30);

/// Runs attempt `attempt` (0-based) of the delivery at `sk`. `Err`: the message must come back.
pub async fn run(
    backend: &Backend,
    tenant: &str,
    webhook_id: &Uuid,
    sk: &str,
    attempt: u32,
) -> Result<(), ServiceError> {
    let pk = deliveries_pk(tenant, webhook_id);
    let Some(item) = crate::ddb::get_item(&backend.dynamodb, &backend.table, key(pk.clone(), sk)).await? else {
        return Ok(()); // expired
    };
    let delivery = delivery_of(&item)?;
    if delivery.status != DeliveryStatus::Pending {
        return Ok(());
    }
    let made = delivery.attempts.len() as u32;
    if attempt + 1 == made {
        // This message's attempt is recorded; the next one's message may not have been sent.
        return schedule(backend, tenant, &delivery, sk).await;
    }
    if attempt != made {
        return Ok(()); // an older copy
    }
    if let Some(wait) = delivery.next_attempt_at.as_deref().and_then(wait_until) {
        if wait > Duration::from_secs(1) {
            // Not due yet: waits longer than SQS's 15-minute delay hop through the queue.
            return schedule(backend, tenant, &delivery, sk).await;
        }
    }
    let claim_until = now_ms() + (backend.webhooks.attempt_timeout + CLAIM_MARGIN).as_millis() as i64;
    if !claim(backend, &pk, sk, made, claim_until).await? {
        // Another copy holds the attempt. Done already (recorded, or no longer pending): this
        // copy has nothing left to do. Still in flight: come back after the visibility timeout.
        let now = crate::ddb::get_item(&backend.dynamodb, &backend.table, key(pk.clone(), sk)).await?;
        let settled = now.as_ref().is_none_or(|item| {
            crate::ddb::get_n(item, "attempts_made") as u32 != made
                || crate::ddb::get_opt_s(item, "status") != Some("pending")
        });
        if settled {
            return Ok(());
        }
        return Err(ServiceError::Unavailable {
            component: "webhooks",
            message: "another copy of this message is attempting the delivery".into(),
        });
    }
    let webhook = store::find(backend, tenant, webhook_id).await?;
    let mut delivery = delivery;
    let outcome = match &webhook {
        None => Outcome::Abandoned("the webhook was deleted".into()),
        Some(w) if !w.enabled && delivery.event != EventType::Test => Outcome::Abandoned(format!(
            "the webhook is disabled ({})",
            w.disabled_reason.as_deref().unwrap_or("no reason given")
        )),
        Some(w) => Outcome::Attempted(send(backend, w, &delivery, made + 1).await?),
    };
    let now = time::now();
    let health = match outcome {
        Outcome::Abandoned(reason) => {
            delivery.status = DeliveryStatus::Abandoned;
            delivery.next_attempt_at = None;
            delivery.final_reason = Some(reason);
            Health::Unchanged
        }
        Outcome::Attempted(attempt) => {
            let status = attempt.status_code;
            let retry_after = attempt.retry_after_seconds.map(Duration::from_secs);
            delivery.attempts.push(attempt);
            let made = delivery.attempts.len();
            match status {
                Some(200..=299) => {
                    delivery.status = DeliveryStatus::Delivered;
                    delivery.next_attempt_at = None;
                    Health::Succeeded
                }
                Some(410) => {
                    delivery.status = DeliveryStatus::Failed;
                    delivery.next_attempt_at = None;
                    delivery.final_reason = Some("the endpoint answered 410 Gone: the webhook is disabled".into());
                    Health::Gone
                }
                _ => {
                    match next_delay(&backend.webhooks.retry_schedule, made, retry_after, fastrand::f64()) {
                        Some(wait) => {
                            delivery.next_attempt_at =
                                Some(time::format(&(now + chrono::Duration::milliseconds(wait.as_millis() as i64))));
                        }
                        None => {
                            delivery.status = DeliveryStatus::Failed;
                            delivery.next_attempt_at = None;
                            delivery.final_reason = Some(format!("no attempts left after {made}"));
                        }
                    }
                    Health::Failed
                }
            }
        }
    };
    if !record(backend, tenant, sk, &delivery, claim_until).await? {
        return Ok(()); // our claim lapsed and another copy took over: its result stands
    }
    if let Some(webhook) = &webhook {
        // A test send proves an endpoint works (or is gone); its failures are not the
        // endpoint failing real notifications.
        if delivery.event != EventType::Test || matches!(health, Health::Succeeded | Health::Gone) {
            update_health(backend, tenant, webhook, health).await?;
        }
    }
    if delivery.status == DeliveryStatus::Pending {
        schedule(backend, tenant, &delivery, sk).await?;
    }
    Ok(())
}

enum Outcome {
    Abandoned(String),
    Attempted(Attempt),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Unchanged,
    Succeeded,
    Failed,
    Gone,
}

fn wait_until(at: &str) -> Option<Duration> {
    let due = time::parse("next_attempt_at", at).ok()?;
    let millis = (due - time::now()).num_milliseconds();
    (millis > 0).then(|| Duration::from_millis(millis as u64))
}

/// Queues the message of the delivery's next attempt, delayed until it is due (at most 15
/// minutes: a later one arrives early and is queued again).
async fn schedule(backend: &Backend, tenant: &str, delivery: &Delivery, sk: &str) -> Result<(), ServiceError> {
    let wait = delivery.next_attempt_at.as_deref().and_then(wait_until).unwrap_or_default();
    let message = NotifierMessage::Deliver {
        tenant: tenant.to_string(),
        webhook_id: delivery.webhook_id,
        delivery_sk: sk.to_string(),
        attempt: delivery.attempts.len() as u32,
    };
    outbox::send(backend, &[(message, wait.as_secs_f64().ceil() as u64)]).await
}

async fn claim(backend: &Backend, pk: &str, sk: &str, made: u32, until: i64) -> Result<bool, ServiceError> {
    let result = crate::deadline::bounded(
        backend
            .dynamodb
            .update_item()
            .table_name(&backend.table)
            .set_key(Some(key(pk.to_string(), sk)))
            .update_expression("SET claimed_until = :until")
            .condition_expression(
                "attempts_made = :made AND #status = :pending AND (attribute_not_exists(claimed_until) OR claimed_until < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":until", AttributeValue::N(until.to_string()))
            .expression_attribute_values(":made", AttributeValue::N(made.to_string()))
            .expression_attribute_values(":pending", AttributeValue::S("pending".into()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms().to_string()))
            .send(),
    )
    .await?;
    crate::ddb::condition_held(result).map(|made| made.is_some())
}

/// Writes the delivery if our claim still holds.
async fn record(
    backend: &Backend,
    tenant: &str,
    sk: &str,
    delivery: &Delivery,
    claim: i64,
) -> Result<bool, ServiceError> {
    let result = crate::deadline::bounded(
        backend
            .dynamodb
            .put_item()
            .table_name(&backend.table)
            .set_item(Some(delivery_item(tenant, sk, delivery)?))
            .condition_expression("claimed_until = :claim")
            .expression_attribute_values(":claim", AttributeValue::N(claim.to_string()))
            .send(),
    )
    .await?;
    crate::ddb::condition_held(result).map(|made| made.is_some())
}

/// Signs and sends; the attempt as recorded.
async fn send(backend: &Backend, webhook: &Webhook, delivery: &Delivery, number: u32) -> Result<Attempt, ServiceError> {
    let started_at = time::now();
    let now_text = time::format(&started_at);
    let body = serde_json::to_string(&delivery.payload).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let timestamp = started_at.timestamp();
    let signature = signature_header(&webhook.active_secrets(&now_text), &delivery.delivery_id, timestamp, &body)?;
    let headers = [
        ("webhook-id", delivery.delivery_id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ];
    let policy = backend.webhooks.policy;
    let answer = match WebhookUrl::parse("url", &webhook.url, &policy) {
        Ok(url) => sender::post(&url, &policy, &headers, Bytes::from(body), backend.webhooks.attempt_timeout).await,
        // Stored under a laxer policy (a local stack's http URL): refused, like any blocked address.
        Err(e) => sender::Answer {
            status: None,
            retry_after: None,
            latency: Duration::ZERO,
            failure: Some(Failure::Blocked(e.message)),
        },
    };
    let retry_after =
        answer.retry_after.as_deref().and_then(|value| parse_retry_after(value, time::now())).map(|d| d.as_secs());
    let (outcome, error) = match (&answer.failure, answer.status) {
        (Some(failure), _) => (failure.outcome().to_string(), Some(failure.message())),
        (None, Some(200..=299)) => ("success".to_string(), None),
        (None, Some(status)) => ("http_status".to_string(), Some(format!("the endpoint answered {status}"))),
        (None, None) => ("network".to_string(), Some("no answer".into())),
    };
    tracing::info!(
        delivery = %delivery.delivery_id,
        webhook = %webhook.webhook_id,
        attempt = number,
        status = answer.status,
        outcome = %outcome,
        latency_ms = answer.latency.as_millis() as u64,
        "webhook attempt"
    );
    Ok(Attempt {
        attempt: number,
        started_at: now_text,
        status_code: answer.status,
        latency_ms: answer.latency.as_millis() as u64,
        outcome,
        error,
        retry_after_seconds: retry_after,
    })
}

/// Keeps the webhook's health: last success, failing since, and disabled after a 410 or after
/// failing every attempt for `disable_after`. Writes only when something changes.
async fn update_health(backend: &Backend, tenant: &str, webhook: &Webhook, health: Health) -> Result<(), ServiceError> {
    let now = time::now();
    let now_text = time::format(&now);
    let disable_after = backend.webhooks.disable_after;
    let needs_write = match health {
        Health::Unchanged => false,
        Health::Succeeded => {
            webhook.failing_since.is_some()
                || webhook.last_success_at.as_deref().and_then(|t| time::parse("t", t).ok()).is_none_or(|last| {
                    // Recorded at most once a minute: a busy webhook does not rewrite itself per call.
                    now - last > chrono::Duration::seconds(60)
                })
        }
        Health::Failed | Health::Gone => true,
    };
    if !needs_write {
        return Ok(());
    }
    store::modify(backend, tenant, &webhook.webhook_id, |w| {
        match health {
            Health::Unchanged => return Ok(false),
            Health::Succeeded => {
                w.last_success_at = Some(now_text.clone());
                w.failing_since = None;
            }
            Health::Gone => {
                if !w.enabled {
                    return Ok(false);
                }
                w.enabled = false;
                w.disabled_reason = Some("the endpoint answered 410 Gone".into());
                w.disabled_at = Some(now_text.clone());
            }
            Health::Failed => {
                let since = w.failing_since.get_or_insert_with(|| now_text.clone()).clone();
                let failing_for = time::parse("failing_since", &since).map(|t| now - t).unwrap_or_default();
                if w.enabled && failing_for >= chrono::Duration::milliseconds(disable_after.as_millis() as i64) {
                    w.enabled = false;
                    w.disabled_reason = Some(format!(
                        "every attempt failed since {since} ({} hours): re-enable with PATCH once the endpoint works",
                        failing_for.num_hours()
                    ));
                    w.disabled_at = Some(now_text.clone());
                } else if webhook.failing_since.is_some() && w.failing_since == webhook.failing_since && w.enabled {
                    return Ok(false); // already failing, nothing new to say
                }
            }
        }
        w.updated_at = now_text.clone();
        Ok(true)
    })
    .await?;
    Ok(())
}
