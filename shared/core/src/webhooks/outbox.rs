//! Notifications become deliveries here, and deliveries become queue messages.
//!
//! A notification has an id chosen by its source (`job:<id>`, `errors:<stream>:<from>`, …).
//! Each webhook that wants it gets one delivery, created in one transaction with a marker
//! named by the notification, so a source that notifies twice (a redelivered message, two
//! racing functions) creates one delivery. The delivery item is the outbox: a delivery that
//! has never been attempted gets its queue message again whenever its notification repeats.

use argus_models::time;
use argus_models::webhook::{payload, EventType};
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::store::{self, Webhook};
use crate::ddb::{get_n, get_opt_s, key, s, Item};
use crate::keys::{deliveries_pk, delivery_sk, notification_marker_sk, EXPIRES_AT, PK, SK};
use crate::page::Page;
use crate::{Backend, ServiceError};

/// Deliveries (and their markers) are kept 30 days, then expire.
const DELIVERY_TTL_SECONDS: i64 = 30 * 86_400;
/// SQS's longest message delay; longer waits hop through the queue.
pub const MAX_QUEUE_DELAY_SECONDS: u64 = 900;

/// What the notifier function receives on its queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotifierMessage {
    /// Attempt number `attempt` (0-based) of one delivery.
    Deliver { tenant: String, webhook_id: Uuid, delivery_sk: String, attempt: u32 },
    /// A batch job finished: notify `batch.job.completed`.
    JobCompleted { tenant: String, job_id: Uuid },
    /// Error records arrived in a stream: notify `stream.processing_error` if its window allows.
    ErrorsCheck { tenant: String, stream: String },
    /// Minute `minute` (epoch seconds) of a stream has ended: check webhooks' thresholds.
    ThresholdsCheck { tenant: String, stream: String, minute: i64 },
}

/// Outcome of a delivery as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// No attempts left, or the endpoint answered 410.
    Failed,
    /// The webhook was deleted or disabled before it succeeded.
    Abandoned,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Abandoned => "abandoned",
        }
    }
}

/// One attempt, recorded whatever its outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based.
    pub attempt: u32,
    pub started_at: String,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// `success`, `http_status`, `timeout`, `blocked` (SSRF rule) or `network`.
    pub outcome: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub retry_after_seconds: Option<u64>,
}

/// A delivery as stored (the `doc` attribute) and shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub delivery_id: String,
    pub webhook_id: Uuid,
    pub event: EventType,
    pub payload: Value,
    pub created_at: String,
    pub status: DeliveryStatus,
    pub attempts: Vec<Attempt>,
    pub next_attempt_at: Option<String>,
    #[serde(default)]
    pub final_reason: Option<String>,
}

pub(crate) fn delivery_of(item: &Item) -> Result<Delivery, ServiceError> {
    let doc = get_opt_s(item, "doc").ok_or_else(|| ServiceError::Internal("delivery item without doc".into()))?;
    serde_json::from_str(doc).map_err(|e| ServiceError::Internal(format!("delivery doc: {e}")))
}

pub(crate) fn delivery_item(tenant: &str, sk: &str, delivery: &Delivery) -> Result<Item, ServiceError> {
    let created = time::parse("created_at", &delivery.created_at).map(|t| t.timestamp()).unwrap_or(0);
    let mut item = key(deliveries_pk(tenant, &delivery.webhook_id), sk);
    item.insert("entity".into(), s("delivery"));
    item.insert("doc".into(), s(serde_json::to_string(delivery).map_err(|e| ServiceError::Internal(e.to_string()))?));
    item.insert("status".into(), s(delivery.status.as_str()));
    item.insert("attempts_made".into(), AttributeValue::N(delivery.attempts.len().to_string()));
    item.insert(EXPIRES_AT.into(), AttributeValue::N((created + DELIVERY_TTL_SECONDS).to_string()));
    Ok(item)
}

/// The delivery id (`webhook-id` header): the same for every attempt, and for every repeat of
/// the notification.
pub fn delivery_id(tenant: &str, webhook: &Uuid, notification: &str) -> String {
    let name = format!("{tenant}\n{webhook}\n{notification}");
    format!("msg_{}", Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()).simple())
}

/// Queues `messages` (with their delays, seconds ≤ 900) on the notifier's queue.
pub async fn send(backend: &Backend, messages: &[(NotifierMessage, u64)]) -> Result<(), ServiceError> {
    if messages.is_empty() {
        return Ok(());
    }
    if backend.webhooks.queue_url.is_empty() {
        return Err(ServiceError::Internal("ARGUS_WEBHOOK_QUEUE_URL is not set".into()));
    }
    for chunk in messages.chunks(10) {
        let entries: Result<Vec<SendMessageBatchRequestEntry>, ServiceError> = chunk
            .iter()
            .enumerate()
            .map(|(i, (message, delay))| {
                let body = serde_json::to_string(message).map_err(|e| ServiceError::Internal(e.to_string()))?;
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .delay_seconds((*delay).min(MAX_QUEUE_DELAY_SECONDS) as i32)
                    .build()
                    .map_err(|e| ServiceError::Internal(e.to_string()))
            })
            .collect();
        let out = crate::deadline::bounded(
            backend.sqs.send_message_batch().queue_url(&backend.webhooks.queue_url).set_entries(Some(entries?)).send(),
        )
        .await?
        .map_err(|e| ServiceError::from_sdk("sqs", e))?;
        if let Some(failed) = out.failed.first() {
            return Err(ServiceError::Unavailable {
                component: "sqs",
                message: format!(
                    "{} of {} notifier messages not queued: {}",
                    out.failed.len(),
                    chunk.len(),
                    failed.code
                ),
            });
        }
    }
    Ok(())
}

/// Sends `event` to every webhook of `tenant` that wants it (or only to `only`), once per
/// `notification`. Returns how many deliveries it queued.
pub async fn notify(
    backend: &Backend,
    tenant: &str,
    stream: Option<&str>,
    event: EventType,
    notification: &str,
    data: Value,
    only: Option<&Uuid>,
) -> Result<usize, ServiceError> {
    let webhooks: Vec<Webhook> = store::list(backend, tenant)
        .await?
        .into_iter()
        .filter(|w| match only {
            Some(id) => &w.webhook_id == id,
            None => w.wants(event, stream),
        })
        .collect();
    let now = time::now();
    let body = payload(event, &time::format(&now), stream, data);
    let mut messages = Vec::new();
    for webhook in &webhooks {
        if let Some(sk) = create_delivery(backend, tenant, webhook, notification, event, &body, &now).await? {
            messages.push((
                NotifierMessage::Deliver {
                    tenant: tenant.to_string(),
                    webhook_id: webhook.webhook_id,
                    delivery_sk: sk,
                    attempt: 0,
                },
                0,
            ));
        }
    }
    send(backend, &messages).await?;
    Ok(messages.len())
}

/// Creates the delivery of `notification` to `webhook` unless it exists. Returns its key when
/// it needs its first message (new, or created earlier and never attempted).
async fn create_delivery(
    backend: &Backend,
    tenant: &str,
    webhook: &Webhook,
    notification: &str,
    event: EventType,
    body: &Value,
    now: &chrono::DateTime<chrono::Utc>,
) -> Result<Option<String>, ServiceError> {
    let id = delivery_id(tenant, &webhook.webhook_id, notification);
    let sk = delivery_sk(now.timestamp_millis(), &id);
    let delivery = Delivery {
        delivery_id: id,
        webhook_id: webhook.webhook_id,
        event,
        payload: body.clone(),
        created_at: time::format(now),
        status: DeliveryStatus::Pending,
        attempts: Vec::new(),
        next_attempt_at: Some(time::format(now)),
        final_reason: None,
    };
    let pk = deliveries_pk(tenant, &webhook.webhook_id);
    let mut marker = key(pk.clone(), &notification_marker_sk(notification));
    marker.insert("delivery_sk".into(), s(sk.clone()));
    marker.insert(EXPIRES_AT.into(), AttributeValue::N((now.timestamp() + DELIVERY_TTL_SECONDS).to_string()));
    let put = |item: Item| {
        Put::builder()
            .table_name(&backend.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(|e| ServiceError::Internal(e.to_string()))
    };
    let (marker, record) = (put(marker)?, put(delivery_item(tenant, &sk, &delivery)?)?);
    let result = crate::ddb::transact_retrying(|| {
        backend
            .dynamodb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(marker.clone()).build())
            .transact_items(TransactWriteItem::builder().put(record.clone()).build())
    })
    .await?;
    let err = match result {
        Ok(_) => return Ok(Some(sk)),
        Err(err) => err,
    };
    let marker_exists = crate::ddb::condition_failed_at(&err, 0);
    if !marker_exists {
        return Err(ServiceError::from_sdk("dynamodb", err));
    }
    // Notified before: the delivery exists. Queue it again only if it was never attempted
    // (its first message may not have been sent); an attempted one schedules itself.
    let marker =
        crate::ddb::get_item(&backend.dynamodb, &backend.table, key(pk.clone(), &notification_marker_sk(notification)))
            .await?
            .ok_or_else(|| ServiceError::Internal("delivery marker vanished".into()))?;
    let existing_sk = get_opt_s(&marker, "delivery_sk").unwrap_or_default().to_string();
    let existing = crate::ddb::get_item(&backend.dynamodb, &backend.table, key(pk, &existing_sk)).await?;
    Ok(existing
        .filter(|item| get_n(item, "attempts_made") == 0 && get_opt_s(item, "status") == Some("pending"))
        .map(|_| existing_sk))
}

/// `GET /webhooks/{id}/deliveries`: newest first.
pub async fn list_deliveries(
    backend: &Backend,
    tenant: &str,
    id: &str,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<Delivery>, ServiceError> {
    let webhook = store::get(backend, tenant, id).await?;
    #[derive(Serialize, Deserialize)]
    struct Position {
        sk: String,
    }
    const LISTING: &str = "webhook-deliveries";
    let pk = deliveries_pk(tenant, &webhook.webhook_id);
    let mut query = backend
        .dynamodb
        .query()
        .table_name(&backend.table)
        .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
        .expression_attribute_values(":pk", s(pk.clone()))
        .expression_attribute_values(":prefix", s("D#"))
        .scan_index_forward(false)
        .limit(limit as i32);
    if let Some(raw) = cursor {
        let position: Position = crate::cursor::decode(LISTING, raw)?;
        if !position.sk.starts_with("D#") {
            return Err(ServiceError::bad_request("INVALID_CURSOR", "cursor is not one this listing returned"));
        }
        query = query.exclusive_start_key(PK, s(pk)).exclusive_start_key(SK, s(position.sk));
    }
    let out = crate::deadline::bounded(query.send()).await?.map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    let items: Result<Vec<Delivery>, ServiceError> = out.items.unwrap_or_default().iter().map(delivery_of).collect();
    let next_cursor = out
        .last_evaluated_key
        .and_then(|k| get_opt_s(&k, SK).map(str::to_string))
        .map(|sk| crate::cursor::encode(LISTING, &Position { sk }));
    Ok(Page { items: items?, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_ids() {
        let message = NotifierMessage::ErrorsCheck { tenant: "t".into(), stream: "s".into() };
        let text = serde_json::to_string(&message).unwrap();
        assert_eq!(text, r#"{"kind":"errors_check","tenant":"t","stream":"s"}"#);
        assert_eq!(serde_json::from_str::<NotifierMessage>(&text).unwrap(), message);
        let webhook = Uuid::new_v4();
        assert_eq!(delivery_id("t", &webhook, "job:1"), delivery_id("t", &webhook, "job:1"));
        assert_ne!(delivery_id("t", &webhook, "job:1"), delivery_id("t", &webhook, "job:2"));
        assert_ne!(delivery_id("t", &webhook, "job:1"), delivery_id("u", &webhook, "job:1"));
    }
}
