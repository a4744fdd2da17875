//! Sessions: create, get, list newest first across write shards.

use crate::deadline::WithinDeadline;
use argus_models::ids::{parse_uuid, shard_of};
use argus_models::session::{NewSession, Session};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ddb::{batch_get, get_opt_s, get_s, key, query_sharded_desc, s, Item, ListQuery};
use crate::keys::{session_list_pk, session_pk, GSI1, GSI1PK, GSI1SK, META, PK, SESSION_LIST_SHARDS, SK};
use crate::{cursor, Backend, ServiceError};

pub use crate::page::{parse_limit, Page, DEFAULT_PAGE, MAX_PAGE};

#[derive(Serialize, Deserialize)]
struct ListPosition {
    /// GSI1 sort key of the last item returned.
    before: String,
}

pub async fn create(backend: &Backend, tenant: &str, input: NewSession) -> Result<Session, ServiceError> {
    // Under an Idempotency-Key the id derives from the key: a rerun finds the session it made.
    let id = crate::keyed_ids::id_for(0);
    match create_with_id(backend, tenant, id, input.clone()).await {
        Err(ServiceError::Conflict { code: "SESSION_EXISTS", .. }) if crate::keyed_ids::is_keyed() => {
            let existing = get(backend, tenant, &id.to_string()).await?;
            if existing.metadata == input.metadata {
                Ok(existing)
            } else {
                Err(ServiceError::Internal(format!("keyed session {id} exists with other metadata")))
            }
        }
        other => other,
    }
}

/// Creates a session with a given id (imports, fixtures). An existing id is a conflict.
pub async fn create_with_id(
    backend: &Backend,
    tenant: &str,
    id: Uuid,
    input: NewSession,
) -> Result<Session, ServiceError> {
    let created_at = argus_models::time::format(&argus_models::time::now());
    let mut put = backend
        .dynamodb
        .put_item()
        .table_name(&backend.table)
        .item(PK, s(session_pk(tenant, &id)))
        .item(SK, s(META))
        .item(GSI1PK, s(session_list_pk(tenant, shard_of(&id, SESSION_LIST_SHARDS))))
        .item(GSI1SK, s(id.to_string()))
        .item("entity", s("session"))
        .item("id", s(id.to_string()))
        .item("created_at", s(&created_at))
        // A v7 id colliding is astronomically unlikely; the condition makes it impossible to
        // overwrite a session silently anyway.
        .condition_expression("attribute_not_exists(PK)");
    if let Some(metadata) = &input.metadata {
        let json = serde_json::to_string(metadata).map_err(|e| ServiceError::Internal(e.to_string()))?;
        put = put.item("metadata", s(json));
    }
    put.send().within_deadline().await?.map_err(|e| {
        if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) {
            ServiceError::Conflict {
                code: "SESSION_EXISTS",
                message: format!("session {id} already exists"),
                details: Map::from_iter([("id".to_string(), Value::from(id.to_string()))]),
            }
        } else {
            ServiceError::from_sdk("dynamodb", e)
        }
    })?;
    Ok(Session { id, created_at, metadata: input.metadata })
}

pub async fn get(backend: &Backend, tenant: &str, raw_id: &str) -> Result<Session, ServiceError> {
    // A malformed id cannot name any session: same 404 as a missing one.
    let id = parse_uuid("id", raw_id).map_err(|_| ServiceError::not_found("session", raw_id))?;
    let out = backend
        .dynamodb
        .get_item()
        .table_name(&backend.table)
        .key(PK, s(session_pk(tenant, &id)))
        .key(SK, s(META))
        .send()
        .within_deadline()
        .await?
        .map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    match out.item {
        Some(item) => session_from_item(&item),
        None => Err(ServiceError::not_found("session", raw_id)),
    }
}

/// Which of `ids` exist in the tenant (one BatchGetItem per 100 ids).
pub async fn existing(backend: &Backend, tenant: &str, ids: &[Uuid]) -> Result<Vec<Uuid>, ServiceError> {
    let keys = ids.iter().map(|id| key(session_pk(tenant, id), META)).collect();
    let items = batch_get(&backend.dynamodb, &backend.table, keys, Some("id")).await?;
    Ok(items.iter().filter_map(|item| get_opt_s(item, "id").and_then(|raw| Uuid::try_parse(raw).ok())).collect())
}

pub async fn list(
    backend: &Backend,
    tenant: &str,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<Session>, ServiceError> {
    let position = cursor.map(|c| cursor::decode::<ListPosition>("sessions", c)).transpose()?;
    let query = ListQuery {
        index: GSI1,
        pk_attr: GSI1PK,
        sk_attr: GSI1SK,
        partitions: (0..SESSION_LIST_SHARDS).map(|shard| session_list_pk(tenant, shard)).collect(),
        sk_from: None,
        sk_before: position.map(|p| p.before),
        filter: None,
        limit,
    };
    let page = query_sharded_desc(&backend.dynamodb, &backend.table, &query).await?;
    Ok(Page {
        items: page.items.iter().map(session_from_item).collect::<Result<_, _>>()?,
        next_cursor: page.next_before.map(|before| cursor::encode("sessions", &ListPosition { before })),
    })
}

fn session_from_item(item: &Item) -> Result<Session, ServiceError> {
    let id = Uuid::try_parse(get_s(item, "id")?).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let metadata = match get_opt_s(item, "metadata") {
        Some(json) => {
            Some(serde_json::from_str::<Map<String, Value>>(json).map_err(|e| ServiceError::Internal(e.to_string()))?)
        }
        None => None,
    };
    Ok(Session { id, created_at: get_s(item, "created_at")?.to_string(), metadata })
}
