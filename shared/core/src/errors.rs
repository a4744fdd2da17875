//! Error records: storage and listings.

use crate::deadline::WithinDeadline;
use argus_models::error_record::ErrorRecord;
use argus_models::ids::{parse_uuid, shard_of};
use argus_models::{FieldError, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ddb::{get_opt_s, get_s, query_sharded_desc, s, Filter, Item, ListQuery};
use crate::keys::*;
use crate::page::Page;
use crate::{cursor, Backend, ServiceError};

/// Namespace of derived error ids (a random, fixed UUID).
const ERROR_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a0c_2b4e_93f1_4d57_8c1e_5b7a_0f2d_9e31);

/// The id of the error record of an event: derived, so a redelivered message rewrites the same
/// record instead of adding a second.
pub fn error_id_for_event(tenant: &str, event_id: &Uuid) -> Uuid {
    Uuid::new_v5(&ERROR_ID_NAMESPACE, format!("event/{tenant}/{event_id}").as_bytes())
}

/// The id of the error record of a queue message that did not parse.
pub fn error_id_for_message(message_id: &str) -> Uuid {
    Uuid::new_v5(&ERROR_ID_NAMESPACE, format!("message/{message_id}").as_bytes())
}

pub fn error_item(tenant: &str, record: &ErrorRecord) -> Result<Item, ServiceError> {
    let sort = format!("{}#{}", record.created_at, record.id);
    let mut item = Item::from([
        (PK.into(), s(error_pk(tenant, &record.id))),
        (SK.into(), s(META)),
        (GSI1PK.into(), s(error_list_pk(tenant, shard_of(&record.id, ERROR_LIST_SHARDS)))),
        (GSI1SK.into(), s(&sort)),
        ("entity".into(), s("error")),
        ("id".into(), s(record.id.to_string())),
        ("code".into(), s(&record.code)),
        ("message".into(), s(&record.message)),
        ("details".into(), s(to_json(&record.details)?)),
        ("payload".into(), s(to_json(&record.payload)?)),
        ("created_at".into(), s(&record.created_at)),
    ]);
    item.insert("stream".into(), s(error_stream(&record.payload)));
    if let Some(event_id) = record.event_id {
        item.insert("event_id".into(), s(event_id.to_string()));
    }
    if let Some(session_id) = record.session_id {
        item.insert("session_id".into(), s(session_id.to_string()));
        item.insert(GSI2PK.into(), s(session_errors_pk(tenant, &session_id)));
        item.insert(GSI2SK.into(), s(sort));
    }
    Ok(item)
}

/// The stream an error record counts against in the stream's status: the one its payload names
/// (`stream`, or DataStream's `stream_id`) when that is a valid stream id, else `default`.
pub fn error_stream(payload: &serde_json::Value) -> String {
    ["stream", "stream_id"]
        .iter()
        .filter_map(|field| payload.get(*field).and_then(|v| v.as_str()))
        .find(|id| argus_models::stream::check_stream_id("stream", id).is_ok())
        .unwrap_or(argus_models::event::DEFAULT_STREAM)
        .to_string()
}

fn to_json<T: Serialize>(value: &T) -> Result<String, ServiceError> {
    serde_json::to_string(value).map_err(|e| ServiceError::Internal(e.to_string()))
}

pub fn record_from_item(item: &Item) -> Result<ErrorRecord, ServiceError> {
    let internal = |e: String| ServiceError::Internal(e);
    let opt_uuid = |name: &str| get_opt_s(item, name).and_then(|raw| Uuid::try_parse(raw).ok());
    Ok(ErrorRecord {
        id: Uuid::try_parse(get_s(item, "id")?).map_err(|e| internal(e.to_string()))?,
        event_id: opt_uuid("event_id"),
        session_id: opt_uuid("session_id"),
        code: get_s(item, "code")?.to_string(),
        message: get_s(item, "message")?.to_string(),
        details: serde_json::from_str(get_s(item, "details")?).map_err(|e| internal(e.to_string()))?,
        payload: serde_json::from_str(get_s(item, "payload")?).map_err(|e| internal(e.to_string()))?,
        created_at: get_s(item, "created_at")?.to_string(),
    })
}

pub async fn get(backend: &Backend, tenant: &str, raw_id: &str) -> Result<ErrorRecord, ServiceError> {
    let id = parse_uuid("id", raw_id).map_err(|_| ServiceError::not_found("error", raw_id))?;
    let out = backend
        .dynamodb
        .get_item()
        .table_name(&backend.table)
        .key(PK, s(error_pk(tenant, &id)))
        .key(SK, s(META))
        .send()
        .within_deadline()
        .await?
        .map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    match out.item {
        Some(item) => record_from_item(&item),
        None => Err(ServiceError::not_found("error", raw_id)),
    }
}

#[derive(Debug, Clone, Default)]
pub struct ErrorFilter {
    pub session: Option<Uuid>,
    pub event_id: Option<Uuid>,
    pub code: Option<String>,
}

impl ErrorFilter {
    pub fn parse(param: impl Fn(&str) -> Option<String>) -> Result<Self, ServiceError> {
        let mut errors = ValidationError::default();
        let session = param("session").and_then(|raw| parse_uuid("session", &raw).map_err(|e| errors.push(e)).ok());
        let event_id = param("event_id").and_then(|raw| parse_uuid("event_id", &raw).map_err(|e| errors.push(e)).ok());
        let code = param("code").filter(|code| {
            let ok = !code.is_empty()
                && code.len() <= 64
                && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                errors.push(FieldError::new("code", "INVALID_FILTER", "code is an UPPER_SNAKE error code"));
            }
            ok
        });
        if !errors.is_empty() {
            return Err(ServiceError::BadRequest {
                code: "INVALID_FILTER",
                message: errors.message(),
                details: errors.details(),
            });
        }
        Ok(Self { session, event_id, code })
    }
}

#[derive(Serialize, Deserialize)]
struct ErrorPosition {
    before: String,
}

/// Newest first. `event_id` → the event's one derived record (GetItem); `session` → that
/// session's partition of GSI2; otherwise the tenant's error shards on GSI1. `code` filters.
pub async fn list(
    backend: &Backend,
    tenant: &str,
    filter: &ErrorFilter,
    limit: usize,
    cursor_raw: Option<&str>,
) -> Result<Page<ErrorRecord>, ServiceError> {
    let position = cursor_raw.map(|c| cursor::decode::<ErrorPosition>("errors", c)).transpose()?;
    if let Some(event_id) = filter.event_id {
        if position.is_some() {
            return Ok(Page { items: Vec::new(), next_cursor: None });
        }
        let id = error_id_for_event(tenant, &event_id);
        let found = match get(backend, tenant, &id.to_string()).await {
            Ok(record) => Some(record),
            Err(ServiceError::NotFound { .. }) => None,
            Err(err) => return Err(err),
        };
        let items = found
            .into_iter()
            .filter(|r| filter.session.is_none() || r.session_id == filter.session)
            .filter(|r| filter.code.as_ref().is_none_or(|code| &r.code == code))
            .collect();
        return Ok(Page { items, next_cursor: None });
    }
    let mut expression = Filter::default();
    if let Some(code) = &filter.code {
        expression.and("#code = :code").name("#code", "code").value(":code", s(code));
    }
    let (index, pk_attr, sk_attr, partitions) = match &filter.session {
        Some(session) => (GSI2, GSI2PK, GSI2SK, vec![session_errors_pk(tenant, session)]),
        None => (GSI1, GSI1PK, GSI1SK, (0..ERROR_LIST_SHARDS).map(|shard| error_list_pk(tenant, shard)).collect()),
    };
    let query = ListQuery {
        index,
        pk_attr,
        sk_attr,
        partitions,
        sk_from: None,
        sk_before: position.map(|p| p.before),
        filter: (!expression.expression.is_empty()).then_some(expression),
        limit,
    };
    let page = query_sharded_desc(&backend.dynamodb, &backend.table, &query).await?;
    Ok(Page {
        items: page.items.iter().map(record_from_item).collect::<Result<_, _>>()?,
        next_cursor: page.next_before.map(|before| cursor::encode("errors", &ErrorPosition { before })),
    })
}

/// Details of an error record: every violation, in order.
pub fn violation_details(violations: &[FieldError]) -> Map<String, Value> {
    Map::from_iter([("violations".to_string(), serde_json::json!(violations))])
}
