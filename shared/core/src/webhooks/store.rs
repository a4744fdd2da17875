//! The webhooks themselves: one item per webhook (its settings as a JSON document with a
//! version for optimistic updates), and a per-tenant count that caps them in the same
//! transaction that creates one.

use std::time::Duration;

use argus_models::time;
use argus_models::webhook::{
    EventType, NewWebhook, Thresholds, WebhookChanges, WebhookUrl, DEFAULT_ROTATION_GRACE, MAX_ROTATION_GRACE,
    MAX_WEBHOOKS_PER_TENANT,
};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ddb::{get_opt_s, key, s, Item};
use crate::keys::{webhook_sk, webhooks_pk, PK, SK, WEBHOOK_COUNT_SK};
use crate::{Backend, ServiceError};

/// A signing secret; the previous one keeps signing until `expires_at` after a rotation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SigningSecret {
    pub secret: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// A webhook as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub webhook_id: Uuid,
    pub url: String,
    pub events: Vec<EventType>,
    pub stream_id: Option<String>,
    #[serde(default)]
    pub thresholds: Thresholds,
    #[serde(default)]
    pub description: Option<String>,
    pub enabled: bool,
    #[serde(default)]
    pub disabled_reason: Option<String>,
    #[serde(default)]
    pub disabled_at: Option<String>,
    /// Newest first.
    pub secrets: Vec<SigningSecret>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub last_success_at: Option<String>,
    /// The first failed attempt since the last success.
    #[serde(default)]
    pub failing_since: Option<String>,
    #[serde(default)]
    pub version: u64,
}

impl Webhook {
    /// The secrets that sign now: the current one and any previous one still in its grace.
    pub fn active_secrets(&self, now: &str) -> Vec<&str> {
        self.secrets
            .iter()
            .filter(|s| s.expires_at.as_deref().is_none_or(|until| until > now))
            .map(|s| s.secret.as_str())
            .collect()
    }

    /// Whether a notification of `event` about `stream` goes to this webhook. A job is not
    /// about one stream (its items may name several): `batch.job.completed` goes to every
    /// webhook subscribed to it, stream-scoped or not.
    pub fn wants(&self, event: EventType, stream: Option<&str>) -> bool {
        if !self.enabled || !self.events.contains(&event) {
            return false;
        }
        match (&self.stream_id, stream) {
            _ if event == EventType::JobCompleted => true,
            (None, _) => true,
            (Some(mine), Some(theirs)) => mine == theirs,
            (Some(_), None) => false,
        }
    }

    /// What the API shows: everything but the secrets.
    pub fn view(&self) -> Value {
        let now = time::format(&time::now());
        let mut view = Map::new();
        view.insert("webhook_id".into(), Value::String(self.webhook_id.to_string()));
        view.insert("url".into(), Value::String(self.url.clone()));
        view.insert("events".into(), serde_json::to_value(&self.events).unwrap_or(Value::Null));
        view.insert("stream_id".into(), self.stream_id.clone().map(Value::String).unwrap_or(Value::Null));
        view.insert("thresholds".into(), serde_json::to_value(&self.thresholds).unwrap_or(Value::Null));
        view.insert("description".into(), self.description.clone().map(Value::String).unwrap_or(Value::Null));
        view.insert("enabled".into(), Value::Bool(self.enabled));
        view.insert("status".into(), Value::from(if self.enabled { "enabled" } else { "disabled" }));
        let opt = |v: &Option<String>| v.clone().map(Value::String).unwrap_or(Value::Null);
        view.insert("disabled_reason".into(), opt(&self.disabled_reason));
        view.insert("disabled_at".into(), opt(&self.disabled_at));
        view.insert("last_success_at".into(), opt(&self.last_success_at));
        view.insert("failing_since".into(), opt(&self.failing_since));
        let previous = self.secrets.iter().skip(1).filter_map(|s| s.expires_at.clone()).find(|until| *until > now);
        view.insert("previous_secret_expires_at".into(), previous.map(Value::String).unwrap_or(Value::Null));
        view.insert("created_at".into(), Value::String(self.created_at.clone()));
        view.insert("updated_at".into(), Value::String(self.updated_at.clone()));
        Value::Object(view)
    }
}

/// Only the canonical form, like every other id of the API (the id sent is the id shown).
fn parse_id(raw: &str) -> Result<Uuid, ServiceError> {
    argus_models::ids::parse_uuid("id", raw).map_err(|_| ServiceError::not_found("webhook", raw))
}

fn doc_of(item: &Item) -> Result<Webhook, ServiceError> {
    let doc = get_opt_s(item, "doc").ok_or_else(|| ServiceError::Internal("webhook item without doc".into()))?;
    serde_json::from_str(doc).map_err(|e| ServiceError::Internal(format!("webhook doc: {e}")))
}

fn item_of(tenant: &str, webhook: &Webhook) -> Result<Item, ServiceError> {
    let doc = serde_json::to_string(webhook).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let mut item = key(webhooks_pk(tenant), &webhook_sk(&webhook.webhook_id));
    item.insert("entity".into(), s("webhook"));
    item.insert("doc".into(), s(doc));
    item.insert("version".into(), AttributeValue::N(webhook.version.to_string()));
    Ok(item)
}

/// Creates a webhook; returns it and its secret (shown once).
pub async fn create(backend: &Backend, tenant: &str, new: NewWebhook) -> Result<(Webhook, String), ServiceError> {
    let secret = match new.secret {
        Some(secret) => secret,
        None => super::signing::generate_secret()?,
    };
    let now = time::format(&time::now());
    let webhook = Webhook {
        webhook_id: Uuid::new_v4(),
        url: new.url.url,
        events: new.events,
        stream_id: new.stream_id,
        thresholds: new.thresholds,
        description: new.description,
        enabled: true,
        disabled_reason: None,
        disabled_at: None,
        secrets: vec![SigningSecret { secret: secret.clone(), created_at: now.clone(), expires_at: None }],
        created_at: now.clone(),
        updated_at: now,
        last_success_at: None,
        failing_since: None,
        version: 1,
    };
    let count = Update::builder()
        .table_name(&backend.table)
        .key(PK, s(webhooks_pk(tenant)))
        .key(SK, s(WEBHOOK_COUNT_SK))
        .update_expression("ADD n :one")
        .condition_expression("attribute_not_exists(n) OR n < :max")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .expression_attribute_values(":max", AttributeValue::N(MAX_WEBHOOKS_PER_TENANT.to_string()))
        .build()
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let put = Put::builder()
        .table_name(&backend.table)
        .set_item(Some(item_of(tenant, &webhook)?))
        .condition_expression("attribute_not_exists(PK)")
        .build()
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    // Each attempt carries a request token: an SDK retry after a commit whose answer was lost
    // is then the same transaction (not a conflict that hides a created webhook and its
    // one-time secret).
    let result = crate::ddb::transact_retrying(|| {
        backend
            .dynamodb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(count.clone()).build())
            .transact_items(TransactWriteItem::builder().put(put.clone()).build())
    })
    .await?;
    match result {
        Ok(_) => {
            if let (Some(stream), true) = (&webhook.stream_id, webhook.events.contains(&EventType::ProcessingError)) {
                super::alerts::start_counting(backend, tenant, stream).await?;
            }
            Ok((webhook, secret))
        }
        Err(err) => {
            let limit_reached = crate::ddb::condition_failed_at(&err, 0);
            if limit_reached {
                return Err(ServiceError::Conflict {
                    code: "TOO_MANY_WEBHOOKS",
                    message: format!("a tenant has at most {MAX_WEBHOOKS_PER_TENANT} webhooks; delete one first"),
                    details: Map::from_iter([("limit".to_string(), Value::from(MAX_WEBHOOKS_PER_TENANT))]),
                });
            }
            Err(ServiceError::from_sdk("dynamodb", err))
        }
    }
}

/// Every webhook of a tenant (at most 25: one query page).
pub async fn list(backend: &Backend, tenant: &str) -> Result<Vec<Webhook>, ServiceError> {
    let read = backend
        .dynamodb
        .query()
        .table_name(&backend.table)
        .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
        .expression_attribute_values(":pk", s(webhooks_pk(tenant)))
        .expression_attribute_values(":prefix", s("WH#"))
        .consistent_read(true)
        .send();
    let out = crate::deadline::bounded(read).await?.map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    out.items.unwrap_or_default().iter().map(doc_of).collect()
}

pub async fn get(backend: &Backend, tenant: &str, id: &str) -> Result<Webhook, ServiceError> {
    let webhook_id = parse_id(id)?;
    find(backend, tenant, &webhook_id).await?.ok_or_else(|| ServiceError::not_found("webhook", id))
}

pub async fn find(backend: &Backend, tenant: &str, id: &Uuid) -> Result<Option<Webhook>, ServiceError> {
    let item =
        crate::ddb::get_item(&backend.dynamodb, &backend.table, key(webhooks_pk(tenant), &webhook_sk(id))).await?;
    item.as_ref().map(doc_of).transpose()
}

/// Applies `change` to the stored webhook and writes it back if nobody wrote in between
/// (retried on a concurrent write). `change` returns false to write nothing.
pub async fn modify<F>(
    backend: &Backend,
    tenant: &str,
    id: &Uuid,
    mut change: F,
) -> Result<Option<Webhook>, ServiceError>
where
    F: FnMut(&mut Webhook) -> Result<bool, ServiceError>,
{
    for _ in 0..5 {
        let Some(mut webhook) = find(backend, tenant, id).await? else {
            return Ok(None);
        };
        let read_version = webhook.version;
        if !change(&mut webhook)? {
            return Ok(Some(webhook));
        }
        webhook.version = read_version + 1;
        let result = crate::deadline::bounded(
            backend
                .dynamodb
                .put_item()
                .table_name(&backend.table)
                .set_item(Some(item_of(tenant, &webhook)?))
                .condition_expression("version = :read")
                .expression_attribute_values(":read", AttributeValue::N(read_version.to_string()))
                .send(),
        )
        .await?;
        if crate::ddb::condition_held(result)?.is_some() {
            return Ok(Some(webhook));
        }
    }
    Err(ServiceError::Unavailable { component: "dynamodb", message: "the webhook keeps changing; retry".into() })
}

pub async fn update(
    backend: &Backend,
    tenant: &str,
    id: &str,
    changes: WebhookChanges,
) -> Result<Webhook, ServiceError> {
    let webhook_id = parse_id(id)?;
    let now = time::format(&time::now());
    let updated = modify(backend, tenant, &webhook_id, |webhook| {
        apply_changes(webhook, &changes, &now);
        Ok(true)
    })
    .await?
    .ok_or_else(|| ServiceError::not_found("webhook", id))?;
    // Subscribed to a stream's errors by this change: from now on, as at creation.
    let subscribed = changes.events.as_ref().is_some_and(|events| events.contains(&EventType::ProcessingError));
    if let (Some(stream), true) = (&updated.stream_id, subscribed) {
        super::alerts::start_counting(backend, tenant, stream).await?;
    }
    Ok(updated)
}

fn apply_changes(webhook: &mut Webhook, changes: &WebhookChanges, now: &str) {
    if let Some(WebhookUrl { url, .. }) = &changes.url {
        webhook.url = url.clone();
    }
    if let Some(events) = &changes.events {
        webhook.events = events.clone();
    }
    if let Some(thresholds) = &changes.thresholds {
        webhook.thresholds = thresholds.clone();
    }
    if let Some(description) = &changes.description {
        webhook.description = description.clone();
    }
    match changes.enabled {
        Some(true) => {
            // Re-enabled by its owner: failures so far are forgiven.
            webhook.enabled = true;
            webhook.disabled_reason = None;
            webhook.disabled_at = None;
            webhook.failing_since = None;
        }
        Some(false) if webhook.enabled => {
            webhook.enabled = false;
            webhook.disabled_reason = Some("disabled by the API".into());
            webhook.disabled_at = Some(now.to_string());
        }
        _ => {}
    }
    webhook.updated_at = now.to_string();
}

pub async fn delete(backend: &Backend, tenant: &str, id: &str) -> Result<(), ServiceError> {
    let webhook_id = parse_id(id)?;
    let delete = Delete::builder()
        .table_name(&backend.table)
        .set_key(Some(key(webhooks_pk(tenant), &webhook_sk(&webhook_id))))
        .condition_expression("attribute_exists(PK)")
        .build()
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let count = Update::builder()
        .table_name(&backend.table)
        .key(PK, s(webhooks_pk(tenant)))
        .key(SK, s(WEBHOOK_COUNT_SK))
        .update_expression("ADD n :minus")
        .expression_attribute_values(":minus", AttributeValue::N("-1".into()))
        .build()
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let result = crate::ddb::transact_retrying(|| {
        backend
            .dynamodb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete.clone()).build())
            .transact_items(TransactWriteItem::builder().update(count.clone()).build())
    })
    .await?;
    match result {
        Ok(_) => Ok(()),
        Err(err) if crate::ddb::condition_failed_at(&err, 0) => Err(ServiceError::not_found("webhook", id)),
        Err(err) => Err(ServiceError::from_sdk("dynamodb", err)),
    }
}

/// `POST /webhooks/{id}/rotate-secret`: a new secret signs from now on; the current one keeps
/// signing beside it for `grace` (default 24 h, at most 7 days). Returns the new secret.
pub async fn rotate_secret(
    backend: &Backend,
    tenant: &str,
    id: &str,
    grace: Option<Duration>,
) -> Result<(Webhook, String), ServiceError> {
    let webhook_id = parse_id(id)?;
    let grace = grace.unwrap_or(DEFAULT_ROTATION_GRACE).min(MAX_ROTATION_GRACE);
    let secret = super::signing::generate_secret()?;
    let now = time::now();
    let now_text = time::format(&now);
    let until = time::format(&(now + chrono::Duration::milliseconds(grace.as_millis() as i64)));
    let webhook = modify(backend, tenant, &webhook_id, |webhook| {
        let mut secrets =
            vec![SigningSecret { secret: secret.clone(), created_at: now_text.clone(), expires_at: None }];
        // The current secret gets its grace; older ones keep theirs while it lasts.
        for (index, old) in webhook.secrets.iter().enumerate() {
            let mut old = old.clone();
            if index == 0 {
                old.expires_at = Some(until.clone());
            }
            if old.expires_at.as_deref().is_some_and(|t| t > now_text.as_str()) && secrets.len() < 3 {
                secrets.push(old);
            }
        }
        webhook.secrets = secrets;
        webhook.updated_at = now_text.clone();
        Ok(true)
    })
    .await?
    .ok_or_else(|| ServiceError::not_found("webhook", id))?;
    Ok((webhook, secret))
}

/// Parses the rotation body's optional `grace_period_seconds`.
pub fn parse_grace(body: Option<&Value>) -> Result<Option<Duration>, ServiceError> {
    let Some(body) = body else { return Ok(None) };
    let fields = argus_models::validation::body_object(body, "expected a JSON object")?;
    let mut errors = argus_models::ValidationError::default();
    argus_models::validation::reject_unchangeable(fields, &["grace_period_seconds"], &mut errors);
    errors.into_result()?;
    match fields.get("grace_period_seconds") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match argus_models::webhook::whole_number(value) {
            Some(seconds) if seconds <= MAX_ROTATION_GRACE.as_secs() => Ok(Some(Duration::from_secs(seconds))),
            _ => Err(argus_models::FieldError::new(
                "grace_period_seconds",
                "OUT_OF_RANGE",
                format!("grace_period_seconds must be a whole number from 0 to {}", MAX_ROTATION_GRACE.as_secs()),
            )
            .into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_routing() {
        let webhook = Webhook {
            webhook_id: Uuid::nil(),
            url: "https://a.example/".into(),
            events: vec![EventType::ProcessingError],
            stream_id: Some("s1".into()),
            thresholds: Thresholds::default(),
            description: None,
            enabled: true,
            disabled_reason: None,
            disabled_at: None,
            secrets: vec![
                SigningSecret { secret: "new".into(), created_at: "2026-01-02T00:00:00.000Z".into(), expires_at: None },
                SigningSecret {
                    secret: "old".into(),
                    created_at: "2026-01-01T00:00:00.000Z".into(),
                    expires_at: Some("2026-01-03T00:00:00.000Z".into()),
                },
            ],
            created_at: String::new(),
            updated_at: String::new(),
            last_success_at: None,
            failing_since: None,
            version: 1,
        };
        assert_eq!(webhook.active_secrets("2026-01-02T12:00:00.000Z"), ["new", "old"]);
        assert_eq!(webhook.active_secrets("2026-01-03T00:00:00.000Z"), ["new"]);
        assert!(webhook.wants(EventType::ProcessingError, Some("s1")));
        assert!(!webhook.wants(EventType::ProcessingError, Some("s2")));
        assert!(!webhook.wants(EventType::JobCompleted, Some("s1")));
        assert!(!webhook.wants(EventType::ProcessingError, None));
        let mut jobs = webhook.clone();
        jobs.events = vec![EventType::JobCompleted];
        assert!(jobs.wants(EventType::JobCompleted, None), "job completions ignore the stream scope");
        let view = webhook.view();
        assert!(!view.to_string().contains("\"new\""), "secrets never shown: {view}");
    }
}
