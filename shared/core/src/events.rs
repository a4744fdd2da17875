//! Stored events: item mapping, get, filtered listings, update, soft delete, restore.

use argus_models::event::{content_violations, Event, EventChanges, EventInput};
use argus_models::ids::{parse_uuid, shard_of};
use argus_models::stream::{expires_at, is_expired, retention_violation};
use argus_models::time;
use argus_models::{FieldError, ValidationError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::ddb::{get_opt_s, get_s, query_sharded_desc, s, Filter, Item, ListQuery};
use crate::keys::*;
use crate::page::Page;
use crate::{cursor, Backend, ServiceError};

/// The stored item of a new event. Index keys: GSI1 by session, GSI2 by category (sharded),
/// GSI3 by tenant (sharded), GSI4 by stream (sharded); all sorted by `<timestamp>#<id>`. An event without a session or
/// category is simply absent from that index (sparse). `expires_at` (TTL) is the timestamp plus
/// its stream's `retention_days`; `None` only for an event stored before streams had settings,
/// which keeps never expiring when it is changed. `shards`: the index shards to write across
/// (`WriteSettings::index_shards`).
pub fn event_item(
    tenant: &str,
    id: &Uuid,
    input: &EventInput,
    received_at: &str,
    now: &str,
    retention_days: Option<u32>,
    shards: IndexShards,
) -> Result<Item, ServiceError> {
    let timestamp = time::format(&input.timestamp);
    let sort = time_sk(&timestamp, id);
    let data = serde_json::to_string(&input.data).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let mut item = Item::from([
        (PK.into(), s(event_pk(tenant, id))),
        (SK.into(), s(META)),
        (GSI3PK.into(), s(tenant_events_pk(tenant, shard_of(id, shards.tenant)))),
        (GSI3SK.into(), s(&sort)),
        (GSI4PK.into(), s(stream_events_pk(tenant, &input.stream, shard_of(id, shards.stream)))),
        (GSI4SK.into(), s(&sort)),
        ("entity".into(), s("event")),
        ("id".into(), s(id.to_string())),
        ("name".into(), s(&input.name)),
        ("stream".into(), s(&input.stream)),
        ("data".into(), s(data)),
        ("timestamp".into(), s(&timestamp)),
        ("received_at".into(), s(received_at)),
        ("created_at".into(), s(now)),
        ("updated_at".into(), s(now)),
        ("content_hash".into(), s(content_hash(input))),
    ]);
    if let Some(days) = retention_days {
        item.insert(EXPIRES_AT.into(), AttributeValue::N(expires_at(&input.timestamp, days).to_string()));
    }
    if let Some(session) = &input.session_id {
        item.insert(GSI1PK.into(), s(session_events_pk(tenant, session)));
        item.insert(GSI1SK.into(), s(&sort));
        item.insert("session_id".into(), s(session.to_string()));
    }
    if let Some(category) = &input.category {
        item.insert(GSI2PK.into(), s(category_events_pk(tenant, category, shard_of(id, shards.category))));
        item.insert(GSI2SK.into(), s(&sort));
        item.insert("category".into(), s(category));
    }
    if let Some(metadata) = &input.metadata {
        let json = serde_json::to_string(metadata).map_err(|e| ServiceError::Internal(e.to_string()))?;
        item.insert("metadata".into(), s(json));
    }
    if let Some(sent) = &input.client_timestamp {
        item.insert("client_timestamp".into(), s(time::format(sent)));
    }
    Ok(item)
}

/// How many of its stream's summed fields (`rollup_fields`, a list that only grows) the writer
/// of an event version knew: the aggregator sums fields `0..n` of exactly this version, on its
/// insert and on its removal alike, whichever instance applies them and whatever that
/// instance has cached.
pub const SUMMED_FIELDS: &str = "summed_fields";

pub fn stamp_summed_fields(item: &mut Item, count: usize) {
    if count > 0 {
        item.insert(SUMMED_FIELDS.into(), AttributeValue::N(count.to_string()));
    }
}

/// Whether a stored event item is readable now: not soft-deleted (unless asked for) and not
/// past its retention (DynamoDB's TTL deletes it later; until then it is hidden).
pub fn is_visible(item: &Item, include_deleted: bool, now: &DateTime<Utc>) -> bool {
    let expired = match item.get(EXPIRES_AT) {
        Some(AttributeValue::N(n)) => n.parse::<i64>().is_ok_and(|at| is_expired(at, now)),
        _ => false,
    };
    !expired && (include_deleted || !item.contains_key("deleted_at"))
}

/// The condition that a stored event is not past its retention at `now` (`:epoch`), for
/// filter and condition expressions; `#expires` names `expires_at`.
pub const NOT_EXPIRED: &str = "(attribute_not_exists(#expires) OR #expires > :epoch)";

/// A digest of what the client sent (not server fields): tells a retried duplicate (same id,
/// same content) from a conflicting reuse of an id. The timestamp is the client's own: a retry
/// sent later carries another `sent_at`, hence another corrected timestamp, yet is the same event.
pub fn content_hash(input: &EventInput) -> String {
    let canonical = serde_json::json!([
        input.session_id,
        input.category,
        input.name,
        input.data,
        time::format(input.client_timestamp.as_ref().unwrap_or(&input.timestamp)),
        input.stream,
        input.metadata,
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

pub fn event_from_item(item: &Item) -> Result<Event, ServiceError> {
    let internal = |e: String| ServiceError::Internal(e);
    let uuid = |name: &str| -> Result<Uuid, ServiceError> {
        Uuid::try_parse(get_s(item, name)?).map_err(|e| internal(e.to_string()))
    };
    let session_id = match get_opt_s(item, "session_id") {
        Some(raw) => Some(Uuid::try_parse(raw).map_err(|e| internal(e.to_string()))?),
        None => None,
    };
    let metadata = match get_opt_s(item, "metadata") {
        Some(json) => Some(serde_json::from_str::<Map<String, Value>>(json).map_err(|e| internal(e.to_string()))?),
        None => None,
    };
    Ok(Event {
        id: uuid("id")?,
        session_id,
        category: get_opt_s(item, "category").map(str::to_string),
        name: get_s(item, "name")?.to_string(),
        data: serde_json::from_str(get_s(item, "data")?).map_err(|e| internal(e.to_string()))?,
        timestamp: get_s(item, "timestamp")?.to_string(),
        stream: get_s(item, "stream")?.to_string(),
        metadata,
        received_at: get_s(item, "received_at")?.to_string(),
        created_at: get_s(item, "created_at")?.to_string(),
        updated_at: get_s(item, "updated_at")?.to_string(),
        deleted_at: get_opt_s(item, "deleted_at").map(str::to_string),
        client_timestamp: get_opt_s(item, "client_timestamp").map(str::to_string),
    })
}

/// Content hashes of those of `ids` that exist in the tenant (deleted ones included).
pub async fn existing_hashes(
    backend: &Backend,
    tenant: &str,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, String>, ServiceError> {
    let keys = ids.iter().map(|id| crate::ddb::key(event_pk(tenant, id), META)).collect();
    let items =
        crate::ddb::batch_get(&backend.dynamodb, &backend.table, keys, Some("id, content_hash, expires_at")).await?;
    let now = time::now();
    // An expired item (TTL deletes it later) is gone for every read: its id is free again.
    Ok(items
        .iter()
        .filter(|item| is_visible(item, true, &now))
        .filter_map(|item| {
            let id = Uuid::try_parse(get_opt_s(item, "id")?).ok()?;
            Some((id, get_opt_s(item, "content_hash").unwrap_or_default().to_string()))
        })
        .collect())
}

/// `include_deleted`, read the same way by the listing and by `GET /events/{id}`.
pub fn parse_include_deleted(raw: Option<&str>) -> Result<bool, FieldError> {
    match raw {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(FieldError::new("include_deleted", "INVALID_FILTER", "include_deleted is true or false")),
    }
}

/// A malformed id names no event: the same 404 as a missing one.
fn event_id(raw: &str) -> Result<Uuid, ServiceError> {
    parse_uuid("id", raw).map_err(|_| ServiceError::not_found("event", raw))
}

async fn get_item(backend: &Backend, tenant: &str, id: &Uuid) -> Result<Option<Item>, ServiceError> {
    crate::ddb::get_meta(&backend.dynamodb, &backend.table, event_pk(tenant, id)).await
}

pub async fn get(backend: &Backend, tenant: &str, raw_id: &str, include_deleted: bool) -> Result<Event, ServiceError> {
    let id = event_id(raw_id)?;
    match get_item(backend, tenant, &id).await? {
        Some(item) if is_visible(&item, include_deleted, &time::now()) => event_from_item(&item),
        _ => Err(ServiceError::not_found("event", raw_id)),
    }
}

/// `GET /events` filters (the_eye's names), parsed and checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    pub session: Option<Uuid>,
    pub category: Option<String>,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Inclusive.
    pub to: Option<DateTime<Utc>>,
    pub name: Option<String>,
    pub stream: Option<String>,
    pub include_deleted: bool,
}

impl EventFilter {
    /// `param(name)` returns a query parameter's value.
    pub fn parse(param: impl Fn(&str) -> Option<String>) -> Result<Self, ServiceError> {
        let mut errors = ValidationError::default();
        let session = param("session").and_then(|raw| parse_uuid("session", &raw).map_err(|e| errors.push(e)).ok());
        let from = param("timestamp__gte")
            .and_then(|raw| time::parse("timestamp__gte", &raw).map_err(|e| errors.push(e)).ok());
        let to = param("timestamp__lte")
            .and_then(|raw| time::parse("timestamp__lte", &raw).map_err(|e| errors.push(e)).ok());
        let text = |name: &str, max: usize, errors: &mut ValidationError| {
            param(name).and_then(|value| {
                if value.is_empty() || value.chars().count() > max {
                    errors.push(FieldError::new(
                        name,
                        "INVALID_FILTER",
                        format!("{name} must be 1 to {max} characters"),
                    ));
                    None
                } else {
                    Some(value)
                }
            })
        };
        let category = text("category", argus_models::event::MAX_CATEGORY_LEN, &mut errors);
        let name = text("name", argus_models::event::MAX_NAME_LEN, &mut errors);
        let stream = text("stream", argus_models::event::MAX_STREAM_LEN, &mut errors);
        let include_deleted = parse_include_deleted(param("include_deleted").as_deref()).unwrap_or_else(|error| {
            errors.push(error);
            false
        });
        if let (Some(from), Some(to)) = (&from, &to) {
            if from > to {
                errors.push(FieldError::new(
                    "timestamp__gte",
                    "INVALID_RANGE",
                    "timestamp__gte is after timestamp__lte",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(ServiceError::BadRequest {
                code: "INVALID_FILTER",
                message: errors.message(),
                details: errors.details(),
            });
        }
        Ok(Self { session, category, from, to, name, stream, include_deleted })
    }
}

#[derive(Serialize, Deserialize)]
struct EventPosition {
    before: String,
}

/// Lists events newest `timestamp` first. Index choice: session → GSI1 (one partition);
/// category → GSI2 (category shards); otherwise GSI3 (tenant shards). The time range is part of
/// the key condition; the other filters are filter expressions on that index.
pub async fn list(
    backend: &Backend,
    tenant: &str,
    filter: &EventFilter,
    limit: usize,
    cursor_raw: Option<&str>,
) -> Result<Page<Event>, ServiceError> {
    let position = cursor_raw.map(|c| cursor::decode::<EventPosition>("events", c)).transpose()?;
    let fanout = match &filter.session {
        None => crate::streams::tenant_fanout(backend, tenant).await?,
        Some(_) => 0,
    };
    let mut expression = Filter::default();
    let (index, pk_attr, sk_attr, partitions) = match (&filter.session, &filter.category) {
        (Some(session), category) => {
            if let Some(category) = category {
                expression.and("#category = :category").name("#category", "category").value(":category", s(category));
            }
            (GSI1, GSI1PK, GSI1SK, vec![session_events_pk(tenant, session)])
        }
        (None, Some(category)) => (
            GSI2,
            GSI2PK,
            GSI2SK,
            (0..category_index_shards(fanout)).map(|shard| category_events_pk(tenant, category, shard)).collect(),
        ),
        (None, None) => (
            GSI3,
            GSI3PK,
            GSI3SK,
            (0..tenant_index_shards(fanout)).map(|shard| tenant_events_pk(tenant, shard)).collect(),
        ),
    };
    if let Some(name) = &filter.name {
        expression.and("#name = :name").name("#name", "name").value(":name", s(name));
    }
    if let Some(stream) = &filter.stream {
        expression.and("#stream = :stream").name("#stream", "stream").value(":stream", s(stream));
    }
    if !filter.include_deleted {
        expression.and("attribute_not_exists(#deleted)").name("#deleted", "deleted_at");
    }
    expression.and(NOT_EXPIRED).name("#expires", EXPIRES_AT).value(":epoch", epoch_now());
    // `<timestamp>#<id>`: everything at or after `from` sorts at or after "<from>", everything up
    // to and including `to` sorts before "<to>$" ('$' follows '#').
    let range_end = filter.to.map(|to| format!("{}$", time::format(&to)));
    let sk_before = match (position.map(|p| p.before), range_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let query = ListQuery {
        index,
        pk_attr,
        sk_attr,
        partitions,
        sk_from: filter.from.map(|from| time::format(&from)),
        sk_before,
        filter: (!expression.expression.is_empty()).then_some(expression),
        limit,
    };
    let page = query_sharded_desc(&backend.dynamodb, &backend.table, &query).await?;
    Ok(Page {
        items: page.items.iter().map(event_from_item).collect::<Result<_, _>>()?,
        next_cursor: page.next_before.map(|before| cursor::encode("events", &EventPosition { before })),
    })
}

/// `now` as the number DynamoDB compares `expires_at` with.
pub fn epoch_now() -> AttributeValue {
    AttributeValue::N(time::now().timestamp().to_string())
}

/// Content rules for a changed event, judged against now, its stream's retention included.
fn check_content(event: &Event, retention_days: Option<u32>) -> Result<(), ServiceError> {
    let timestamp = time::parse("timestamp", &event.timestamp)?;
    let now = time::now();
    let mut violations = content_violations(&event.data, &timestamp, &now);
    if let Some(days) = retention_days {
        violations.extend(retention_violation(&timestamp, days, &now));
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ValidationError { errors: violations }.into())
    }
}

/// `PUT` (`replace`) or `PATCH` an event. The write is conditional on the version read
/// (`updated_at`), so two concurrent updates cannot silently overwrite each other.
pub async fn update(
    backend: &Backend,
    tenant: &str,
    raw_id: &str,
    changes: &EventChanges,
) -> Result<Event, ServiceError> {
    let id = event_id(raw_id)?;
    let item = match get_item(backend, tenant, &id).await? {
        Some(item) if is_visible(&item, false, &time::now()) => item,
        _ => return Err(ServiceError::not_found("event", raw_id)),
    };
    let current = event_from_item(&item)?;
    let streams = [current.stream.as_str()];
    let settings = crate::streams::write_settings(backend, tenant, &streams).await?;
    // Stored before streams had settings (no `expires_at`): it never expires, and a change keeps it so.
    let retention = item.contains_key(EXPIRES_AT).then_some(settings.days(&current.stream));
    let now = time::format(&time::now());
    let shards = settings.index_shards(&current.stream);
    let (next, mut new_item) = changed_event(tenant, &current, changes, &now, retention, shards)?;
    stamp_summed_fields(&mut new_item, settings.summed_fields(&current.stream));
    let result = crate::deadline::bounded(
        backend
            .dynamodb
            .put_item()
            .table_name(&backend.table)
            .set_item(Some(new_item))
            .condition_expression(format!("updated_at = :seen AND attribute_not_exists(deleted_at) AND {NOT_EXPIRED}"))
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":seen", s(&current.updated_at))
            .expression_attribute_values(":epoch", epoch_now())
            .send(),
    )
    .await?;
    match result {
        Ok(_) => Ok(next),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
            match get_item(backend, tenant, &id).await? {
                Some(item) if is_visible(&item, false, &time::now()) => Err(ServiceError::Conflict {
                    code: "CONCURRENT_UPDATE",
                    message: "the event changed while this update was applied; read it and retry".into(),
                    details: Map::from_iter([("id".to_string(), Value::from(raw_id))]),
                }),
                _ => Err(ServiceError::not_found("event", raw_id)),
            }
        }
        Err(err) => Err(ServiceError::from_sdk("dynamodb", err)),
    }
}

/// The one update path, for single and bulk PUT/PATCH: `current` after `changes`, checked as
/// any stored event is (content rules, its stream's retention, size limit), and the item that
/// stores it (with its TTL from the new timestamp). `retention_days` is `None` for an event
/// stored without an expiry (before streams had settings): it keeps having none.
pub fn changed_event(
    tenant: &str,
    current: &Event,
    changes: &EventChanges,
    now: &str,
    retention_days: Option<u32>,
    shards: IndexShards,
) -> Result<(Event, Item), ServiceError> {
    let mut next = changes.apply(current);
    // A changed timestamp is the client's own: the sent_at correction no longer applies.
    if next.timestamp != current.timestamp {
        next.client_timestamp = None;
    }
    check_content(&next, retention_days)?;
    if serde_json::to_vec(&next).map(|v| v.len()).unwrap_or(usize::MAX) > argus_models::event::MAX_EVENT_BYTES + 1024 {
        return Err(FieldError::new("data", "TOO_LARGE", "the changed event exceeds the event size limit").into());
    }
    next.updated_at = now.to_string();
    let input = EventInput {
        id: Some(current.id),
        session_id: next.session_id,
        category: next.category.clone(),
        name: next.name.clone(),
        data: next.data.clone(),
        timestamp: time::parse("timestamp", &next.timestamp)?,
        stream: next.stream.clone(),
        metadata: next.metadata.clone(),
        client_timestamp: match &next.client_timestamp {
            Some(sent) => Some(time::parse("client_timestamp", sent)?),
            None => None,
        },
    };
    let mut item =
        event_item(tenant, &current.id, &input, &current.received_at, &current.created_at, retention_days, shards)?;
    item.insert("updated_at".into(), s(now));
    Ok((next, item))
}

/// Sets or clears `deleted_at` under `condition`. `Ok(None)` when the condition fails (the event
/// is missing, or already in the wanted state); otherwise the item as it now is.
async fn set_deleted(
    backend: &Backend,
    tenant: &str,
    id: &Uuid,
    update: &str,
    condition: &str,
) -> Result<Option<Item>, ServiceError> {
    let result = crate::deadline::bounded(
        backend
            .dynamodb
            .update_item()
            .table_name(&backend.table)
            .key(PK, s(event_pk(tenant, id)))
            .key(SK, s(META))
            .update_expression(update)
            .condition_expression(format!("{condition} AND {NOT_EXPIRED}"))
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":epoch", epoch_now())
            .expression_attribute_values(":now", s(time::format(&time::now())))
            .return_values(ReturnValue::AllNew)
            .send(),
    )
    .await?;
    match result {
        Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(None),
        Err(err) => Err(ServiceError::from_sdk("dynamodb", err)),
    }
}

/// Soft delete: the event stays stored with `deleted_at` and leaves GET and listings.
/// Deleting a missing or already deleted event is a 404.
pub async fn soft_delete(backend: &Backend, tenant: &str, raw_id: &str) -> Result<(), ServiceError> {
    let id = event_id(raw_id)?;
    let update = "SET deleted_at = :now, updated_at = :now";
    match set_deleted(backend, tenant, &id, update, "attribute_exists(PK) AND attribute_not_exists(deleted_at)").await?
    {
        Some(_) => Ok(()),
        None => Err(ServiceError::not_found("event", raw_id)),
    }
}

/// Undoes a soft delete. Restoring an event that is not deleted returns it unchanged.
pub async fn restore(backend: &Backend, tenant: &str, raw_id: &str) -> Result<Event, ServiceError> {
    let id = event_id(raw_id)?;
    let update = "SET updated_at = :now REMOVE deleted_at";
    match set_deleted(backend, tenant, &id, update, "attribute_exists(PK) AND attribute_exists(deleted_at)").await? {
        Some(item) => event_from_item(&item),
        None => get(backend, tenant, raw_id, false).await,
    }
}
