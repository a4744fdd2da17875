//! Exports: the record of each export in DynamoDB (request, status, checkpoint, files), its
//! queue message, the window reader the export function pages through, and presigned
//! download URLs. The file encoders live in `argus-export`, linked by the export function only.
//!
//! One export is worked on by one invocation at a time: an invocation takes a lease on the
//! record (a conditional write), and every checkpoint it writes is conditional on still
//! holding it. A redelivered or duplicated message finds the lease held (or the export
//! finished) and is acknowledged without work; the holder's own message, if the holder dies,
//! comes back after the queue's visibility timeout, by when the lease has lapsed.

use std::time::Duration;

use argus_models::export::{export_prefix, ExportFile, ExportFilters, ExportRequest, ExportRow, ExportStatus};
use argus_models::time;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::ddb::{get_n, get_opt_s, get_s, key, query_sharded_desc, s, Filter, Item, ListQuery};
use crate::events::{epoch_now, NOT_EXPIRED};
use crate::keys::*;
use crate::page::Page;
use crate::{Backend, ServiceError};

/// How long an export's record and files are kept (the bucket's lifecycle rule expires the
/// files after the same number of days).
pub const EXPORT_KEEP_DAYS: i64 = 7;
/// Longest life of a download URL.
pub const DOWNLOAD_URL_SECONDS: u64 = 3_600;
/// Slices that end in an error, in a row, before the export is marked failed.
pub const MAX_FAILED_SLICES: u64 = 5;
/// Files one export may have: its record lists them (DynamoDB's 400 KB item) and its status
/// answer carries a presigned URL for each (Lambda's 6 MB response). With the default of a
/// million events a file, that is a billion events.
pub const MAX_EXPORT_FILES: usize = 1_000;
/// Exports a tenant may have queued or running at once: the export function's concurrency is
/// shared by every tenant.
pub const MAX_ACTIVE_EXPORTS: usize = 5;

/// Where exports go: the bucket, the export function's queue, and the S3 client.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub queue_url: String,
}

/// The export function's queue message. Carries no state: the record is the truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportMessage {
    pub tenant: String,
    pub export_id: String,
}

/// An export as stored.
#[derive(Debug, Clone)]
pub struct Export {
    pub export_id: String,
    pub tenant: String,
    pub request: ExportRequest,
    pub status: ExportStatus,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
    pub error: Option<Value>,
    pub files: Vec<ExportFile>,
    pub events: u64,
    pub bytes: u64,
    /// Where the window reader continues (the sort key below which nothing is exported yet).
    pub position: Option<String>,
    pub invocations: u64,
    pub failed_slices: u64,
    pub lease_owner: Option<String>,
    pub lease_until_ms: u64,
}

impl Export {
    /// `GET /exports/{id}` without download URLs.
    pub fn to_json(&self) -> Value {
        json!({
            "export_id": self.export_id,
            "status": self.status.name(),
            "stream_id": self.request.stream_id,
            "time_window": {"start": time::format(&self.request.start), "end": time::format(&self.request.end)},
            "format": self.request.format.name(),
            "compression": self.request.compression.name(),
            "filters": self.request.filters,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "completed_at": self.completed_at,
            "events_exported": self.events,
            "bytes_written": self.bytes,
            "files_written": self.files.len(),
            "slices": self.invocations,
            "error": self.error,
            "status_url": format!("/exports/{}", self.export_id),
        })
    }
}

fn export_sk(id: &str) -> String {
    format!("EX#{id}")
}

fn parse_id(raw: &str) -> Result<Uuid, ServiceError> {
    Uuid::try_parse(raw).map_err(|_| ServiceError::not_found("export", raw))
}

fn export_of(item: &Item) -> Result<Export, ServiceError> {
    let internal = |e: String| ServiceError::Internal(format!("export record: {e}"));
    let request: ExportRequest = serde_json::from_str(get_s(item, "request")?).map_err(|e| internal(e.to_string()))?;
    let files: Vec<ExportFile> = match get_opt_s(item, "files") {
        Some(text) => serde_json::from_str(text).map_err(|e| internal(e.to_string()))?,
        None => Vec::new(),
    };
    Ok(Export {
        export_id: get_s(item, "export_id")?.to_string(),
        tenant: get_s(item, "tenant")?.to_string(),
        status: ExportStatus::parse(get_s(item, "status")?).ok_or_else(|| internal("unknown status".into()))?,
        request,
        created_at: get_s(item, "created_at")?.to_string(),
        updated_at: get_s(item, "updated_at")?.to_string(),
        completed_at: get_opt_s(item, "completed_at").map(str::to_string),
        error: get_opt_s(item, "error").and_then(|e| serde_json::from_str(e).ok()),
        files,
        events: get_n(item, "events"),
        bytes: get_n(item, "bytes"),
        position: get_opt_s(item, "position").map(str::to_string),
        invocations: get_n(item, "invocations"),
        failed_slices: get_n(item, "failed_slices"),
        lease_owner: get_opt_s(item, "lease_owner").map(str::to_string),
        lease_until_ms: get_n(item, "lease_until_ms"),
    })
}

/// `POST /exports`: records the export and queues it. The stream must exist.
pub async fn create(backend: &Backend, tenant: &str, request: ExportRequest) -> Result<Export, ServiceError> {
    crate::streams::get(backend, tenant, &request.stream_id).await?;
    let active = active_exports(backend, tenant).await?;
    if active >= MAX_ACTIVE_EXPORTS {
        return Err(ServiceError::Conflict {
            code: "TOO_MANY_ACTIVE_EXPORTS",
            message: format!(
                "{active} exports are queued or running; a tenant may have {MAX_ACTIVE_EXPORTS} at once: wait for one to finish"
            ),
            details: serde_json::Map::from_iter([
                ("active".into(), json!(active)),
                ("max_active".into(), json!(MAX_ACTIVE_EXPORTS)),
            ]),
        });
    }
    // With an Idempotency-Key, the id derives from it: a rerun after a takeover finds its export.
    let export_id = crate::keyed_ids::id_for(0).to_string();
    let now = time::now();
    let created_at = time::format(&now);
    let request_text = serde_json::to_string(&request).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let expires = now.timestamp() + EXPORT_KEEP_DAYS * 86_400;
    let put = backend
        .dynamodb
        .put_item()
        .table_name(&backend.table)
        .item(PK, s(exports_pk(tenant)))
        .item(SK, s(export_sk(&export_id)))
        .item("entity", s("export"))
        .item("export_id", s(&export_id))
        .item("tenant", s(tenant))
        .item("request", s(request_text))
        .item("status", s(ExportStatus::Queued.name()))
        .item("created_at", s(&created_at))
        .item("updated_at", s(&created_at))
        .item("events", AttributeValue::N("0".into()))
        .item("bytes", AttributeValue::N("0".into()))
        .item(EXPIRES_AT, AttributeValue::N(expires.to_string()))
        .condition_expression("attribute_not_exists(PK)")
        .send();
    if crate::ddb::condition_held(crate::deadline::bounded(put).await?)?.is_none() {
        // The same keyed request ran before (its holder died after writing): the export exists.
        // If no slice ever ran, its message may never have been sent: send it (a duplicate
        // message finds the lease or the finished export and does nothing).
        let existing = get(backend, tenant, &export_id).await?;
        if existing.status == ExportStatus::Queued && existing.invocations == 0 {
            enqueue(backend, tenant, &export_id).await?;
        }
        return Ok(existing);
    }
    if let Err(err) = enqueue(backend, tenant, &export_id).await {
        // Not queued: say so on the record rather than leave it queued forever.
        let reason = json!({"code": "NOT_QUEUED", "message": "the export could not be queued; create it again"});
        let _ = finish(backend, tenant, &export_id, None, ExportStatus::Failed, Some(reason)).await;
        return Err(err);
    }
    Ok(Export {
        export_id,
        tenant: tenant.to_string(),
        request,
        status: ExportStatus::Queued,
        created_at: created_at.clone(),
        updated_at: created_at,
        completed_at: None,
        error: None,
        files: Vec::new(),
        events: 0,
        bytes: 0,
        position: None,
        invocations: 0,
        failed_slices: 0,
        lease_owner: None,
        lease_until_ms: 0,
    })
}

/// The tenant's exports that are queued or running (a Query of its exports partition, which
/// holds a week of exports; checked at creation, so two racing creations may both pass).
async fn active_exports(backend: &Backend, tenant: &str) -> Result<usize, ServiceError> {
    let mut count = 0usize;
    let mut start = None;
    loop {
        let query = backend
            .dynamodb
            .query()
            .table_name(&backend.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .filter_expression(format!("#status IN (:queued, :running) AND {NOT_EXPIRED}"))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":pk", s(exports_pk(tenant)))
            .expression_attribute_values(":prefix", s("EX#"))
            .expression_attribute_values(":queued", s(ExportStatus::Queued.name()))
            .expression_attribute_values(":running", s(ExportStatus::Running.name()))
            .expression_attribute_values(":epoch", epoch_now())
            .select(aws_sdk_dynamodb::types::Select::Count)
            .set_exclusive_start_key(start.take())
            .send();
        let out = crate::deadline::bounded(query).await?.map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
        count += out.count.max(0) as usize;
        match out.last_evaluated_key {
            Some(key) if count < MAX_ACTIVE_EXPORTS => start = Some(key),
            _ => return Ok(count),
        }
    }
}

/// Queues (or re-queues, to continue) an export for the export function.
pub async fn enqueue(backend: &Backend, tenant: &str, export_id: &str) -> Result<(), ServiceError> {
    enqueue_after(backend, tenant, export_id, 0).await
}

/// Queues an export to run after `delay_seconds` (at most 900, SQS's longest delay): a failed
/// slice's retry, with backoff.
pub async fn enqueue_after(
    backend: &Backend,
    tenant: &str,
    export_id: &str,
    delay_seconds: i32,
) -> Result<(), ServiceError> {
    let body = serde_json::to_string(&ExportMessage { tenant: tenant.into(), export_id: export_id.into() })
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let send = backend
        .sqs
        .send_message()
        .queue_url(&backend.exports.queue_url)
        .message_body(body)
        .delay_seconds(delay_seconds.clamp(0, 900))
        .send();
    crate::deadline::bounded(send).await?.map_err(|e| ServiceError::from_sdk("sqs", e))?;
    Ok(())
}

pub async fn get(backend: &Backend, tenant: &str, raw_id: &str) -> Result<Export, ServiceError> {
    let id = parse_id(raw_id)?.to_string();
    find(backend, tenant, &id).await?.ok_or_else(|| ServiceError::not_found("export", raw_id))
}

/// The record, read strongly consistent (the export function decides on it).
pub async fn find(backend: &Backend, tenant: &str, export_id: &str) -> Result<Option<Export>, ServiceError> {
    let read = backend
        .dynamodb
        .get_item()
        .table_name(&backend.table)
        .set_key(Some(key(exports_pk(tenant), &export_sk(export_id))))
        .consistent_read(true)
        .send();
    let out = crate::deadline::bounded(read).await?.map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    let Some(item) = out.item else { return Ok(None) };
    // Past its expiry the record is gone for every reader, whether or not TTL has removed it.
    if get_n(&item, EXPIRES_AT) > 0 && get_n(&item, EXPIRES_AT) <= time::now().timestamp() as u64 {
        return Ok(None);
    }
    export_of(&item).map(Some)
}

/// `GET /exports`: newest first.
pub async fn list(
    backend: &Backend,
    tenant: &str,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<Export>, ServiceError> {
    #[derive(Serialize, Deserialize)]
    struct Position {
        sk: String,
    }
    const LISTING: &str = "exports";
    let pk = exports_pk(tenant);
    let mut query = backend
        .dynamodb
        .query()
        .table_name(&backend.table)
        .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
        .filter_expression(NOT_EXPIRED)
        .expression_attribute_names("#expires", EXPIRES_AT)
        .expression_attribute_values(":pk", s(pk.clone()))
        .expression_attribute_values(":prefix", s("EX#"))
        .expression_attribute_values(":epoch", epoch_now())
        .scan_index_forward(false)
        .limit(limit as i32);
    if let Some(raw) = cursor {
        let position: Position = crate::cursor::decode(LISTING, raw)?;
        if !position.sk.starts_with("EX#") {
            return Err(ServiceError::bad_request("INVALID_CURSOR", "cursor is not one this listing returned"));
        }
        query = query.exclusive_start_key(PK, s(pk)).exclusive_start_key(SK, s(position.sk));
    }
    let out = crate::deadline::bounded(query.send()).await?.map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    let items = out.items.unwrap_or_default().iter().map(export_of).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = out
        .last_evaluated_key
        .and_then(|k| get_opt_s(&k, SK).map(str::to_string))
        .map(|sk| crate::cursor::encode(LISTING, &Position { sk }));
    Ok(Page { items, next_cursor })
}

/// Download URLs of a completed export's files, each valid for at most an hour (and never past
/// the files' own expiry).
pub async fn download_urls(backend: &Backend, export: &Export) -> Result<Vec<Value>, ServiceError> {
    use aws_sdk_s3::presigning::PresigningConfig;
    let created = time::parse("created_at", &export.created_at).map_err(|e| ServiceError::Internal(e.message))?;
    let left = (created.timestamp() + EXPORT_KEEP_DAYS * 86_400 - time::now().timestamp()).max(1) as u64;
    let lifetime = Duration::from_secs(DOWNLOAD_URL_SECONDS.min(left));
    let expires_at = time::format(&(time::now() + chrono::Duration::seconds(lifetime.as_secs() as i64)));
    let mut urls = Vec::with_capacity(export.files.len());
    for file in &export.files {
        let config = PresigningConfig::expires_in(lifetime).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let request = backend
            .exports
            .s3
            .get_object()
            .bucket(&backend.exports.bucket)
            .key(&file.key)
            .presigned(config)
            .await
            .map_err(|e| ServiceError::Internal(format!("presigning {}: {e}", file.key)))?;
        urls.push(json!({
            "url": request.uri(),
            "expires_at": expires_at,
            "events": file.events,
            "bytes": file.bytes,
            "file": file.key.rsplit('/').next().unwrap_or(&file.key),
        }));
    }
    Ok(urls)
}

/// Takes the lease on an export for one invocation (`owner`) until `until_ms` (epoch ms).
/// `None`: finished, gone, or another invocation holds it.
pub async fn claim(
    backend: &Backend,
    message: &ExportMessage,
    owner: &str,
    until_ms: u64,
) -> Result<Option<Export>, ServiceError> {
    let Some(export) = find(backend, &message.tenant, &message.export_id).await? else { return Ok(None) };
    if export.status.is_final() {
        return Ok(None);
    }
    let now_ms = time::now().timestamp_millis().max(0) as u64;
    let update = backend
        .dynamodb
        .update_item()
        .table_name(&backend.table)
        .set_key(Some(key(exports_pk(&message.tenant), &export_sk(&message.export_id))))
        // An attempt counts as failed until its first checkpoint resets the count: a slice that
        // crashes or times out is counted too, not only one that returns an error.
        .update_expression("SET lease_owner = :owner, lease_until_ms = :until, #status = :running, updated_at = :now ADD invocations :one, failed_slices :one")
        .condition_expression(
            "attribute_exists(PK) AND #status IN (:queued, :running) AND (attribute_not_exists(lease_until_ms) OR lease_until_ms < :now_ms)",
        )
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":owner", s(owner))
        .expression_attribute_values(":until", AttributeValue::N(until_ms.to_string()))
        .expression_attribute_values(":now_ms", AttributeValue::N(now_ms.to_string()))
        .expression_attribute_values(":running", s(ExportStatus::Running.name()))
        .expression_attribute_values(":queued", s(ExportStatus::Queued.name()))
        .expression_attribute_values(":now", s(time::format(&time::now())))
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
        .return_values_on_condition_check_failure(
            aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
        )
        .send();
    match crate::deadline::bounded(update).await? {
        Ok(out) => out.attributes.as_ref().map(export_of).transpose(),
        Err(err) => {
            // The SDK may resend a write whose answer was lost: if the lease found is ours,
            // the first attempt took it.
            use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
            if let Some(UpdateItemError::ConditionalCheckFailedException(failed)) = err.as_service_error() {
                let ours = failed.item().is_some_and(|item| get_opt_s(item, "lease_owner") == Some(owner));
                return match failed.item() {
                    Some(item) if ours => export_of(item).map(Some),
                    _ => Ok(None),
                };
            }
            Err(ServiceError::from_sdk("dynamodb", err))
        }
    }
}

/// Records a finished file (if the stretch of the window held any event) and where the reader
/// continues; with `position` `None` (the window is read) the same write completes the export,
/// so a completed export can never be read again from the start. `false`: the lease was lost
/// (the file is rewritten under the same key by whoever holds it now). Totals are written as
/// values, not added: a resent write changes nothing.
pub async fn checkpoint(
    backend: &Backend,
    export: &Export,
    owner: &str,
    file: Option<&ExportFile>,
    position: Option<&str>,
) -> Result<bool, ServiceError> {
    let mut files = export.files.clone();
    files.extend(file.cloned());
    let files_text = serde_json::to_string(&files).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let (events, bytes) = file.map_or((0, 0), |f| (f.events, f.bytes));
    let now = time::format(&time::now());
    let mut set =
        vec!["files = :files", "updated_at = :now", "failed_slices = :zero", "events = :events", "bytes = :bytes"];
    let mut remove = Vec::new();
    match position {
        Some(_) => set.push("#position = :position"),
        None => {
            remove.extend(["#position", "lease_owner", "lease_until_ms"]);
            set.extend(["#status = :completed", "completed_at = :now"]);
        }
    }
    let expression = format!("SET {} REMOVE {}", set.join(", "), remove.join(", "));
    let expression = expression.trim_end_matches(" REMOVE ").to_string();
    let mut update = backend
        .dynamodb
        .update_item()
        .table_name(&backend.table)
        .set_key(Some(key(exports_pk(&export.tenant), &export_sk(&export.export_id))))
        .update_expression(expression)
        .condition_expression("lease_owner = :owner AND #status = :running")
        .expression_attribute_names("#status", "status")
        .expression_attribute_names("#position", "position")
        .expression_attribute_values(":owner", s(owner))
        .expression_attribute_values(":running", s(ExportStatus::Running.name()))
        .expression_attribute_values(":files", s(files_text))
        .expression_attribute_values(":events", AttributeValue::N((export.events + events).to_string()))
        .expression_attribute_values(":bytes", AttributeValue::N((export.bytes + bytes).to_string()))
        .expression_attribute_values(":now", s(now))
        .expression_attribute_values(":zero", AttributeValue::N("0".into()));
    update = match position {
        Some(position) => update.expression_attribute_values(":position", s(position)),
        None => update.expression_attribute_values(":completed", s(ExportStatus::Completed.name())),
    };
    Ok(crate::ddb::condition_held(crate::deadline::bounded(update.send()).await?)?.is_some())
}

/// Gives the lease back (the slice ended with work left, or failed): the next message takes it
/// at once. A successful slice has reset the failure count at its checkpoints.
pub async fn release(backend: &Backend, export: &Export, owner: &str) -> Result<(), ServiceError> {
    let expression = "REMOVE lease_owner, lease_until_ms SET updated_at = :now";
    let update = backend
        .dynamodb
        .update_item()
        .table_name(&backend.table)
        .set_key(Some(key(exports_pk(&export.tenant), &export_sk(&export.export_id))))
        .update_expression(expression)
        .condition_expression("lease_owner = :owner")
        .expression_attribute_values(":owner", s(owner))
        .expression_attribute_values(":now", s(time::format(&time::now())));
    crate::ddb::condition_held(crate::deadline::bounded(update.send()).await?)?;
    Ok(())
}

/// Ends an export: completed (every event of the window is in its files) or failed with a
/// reason. With `owner`, only while that invocation holds the lease.
pub async fn finish(
    backend: &Backend,
    tenant: &str,
    export_id: &str,
    owner: Option<&str>,
    status: ExportStatus,
    error: Option<Value>,
) -> Result<bool, ServiceError> {
    let now = time::format(&time::now());
    let mut update = backend
        .dynamodb
        .update_item()
        .table_name(&backend.table)
        .set_key(Some(key(exports_pk(tenant), &export_sk(export_id))))
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":status", s(status.name()))
        .expression_attribute_values(":now", s(&now));
    let mut expression = "SET #status = :status, updated_at = :now, completed_at = :now".to_string();
    if let Some(error) = error {
        expression.push_str(", #error = :error");
        update = update
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":error", s(error.to_string()));
    }
    expression.push_str(" REMOVE lease_owner, lease_until_ms");
    update = update.update_expression(expression);
    update = match owner {
        Some(owner) => {
            update.condition_expression("lease_owner = :owner").expression_attribute_values(":owner", s(owner))
        }
        None => update.condition_expression("attribute_exists(PK)"),
    };
    Ok(crate::ddb::condition_held(crate::deadline::bounded(update.send()).await?)?.is_some())
}

/// Reads an export's window page by page, newest first: exactly the events `GET /query/events`
/// lists for the window (soft-deleted and expired events excluded), with the export's filters.
#[derive(Debug, Clone)]
pub struct WindowReader {
    tenant: String,
    stream: String,
    start: String,
    filters: ExportFilters,
    /// Sort key below which the next page starts; `None` once the window is read.
    before: Option<String>,
}

impl WindowReader {
    pub fn new(export: &Export) -> Self {
        let end = time::format(&export.request.end);
        Self {
            tenant: export.tenant.clone(),
            stream: export.request.stream_id.clone(),
            start: time::format(&export.request.start),
            filters: export.request.filters.clone(),
            before: Some(export.position.clone().map_or(end.clone(), |p| p.min(end))),
        }
    }

    pub fn exhausted(&self) -> bool {
        self.before.is_none()
    }

    /// Where the reader stands (the checkpoint).
    pub fn position(&self) -> Option<&str> {
        self.before.as_deref()
    }

    /// The next page (up to `limit` events; possibly none while more follow).
    pub async fn next_page(&mut self, backend: &Backend, limit: usize) -> Result<Vec<ExportRow>, ServiceError> {
        let Some(before) = self.before.clone() else { return Ok(Vec::new()) };
        // Read fresh for every page: a count raised while the export runs applies at once.
        let shards = crate::streams::get(backend, &self.tenant, &self.stream).await?.write_shards;
        let mut filter = Filter::default();
        filter.and("attribute_not_exists(#deleted)").name("#deleted", "deleted_at");
        filter.and(NOT_EXPIRED).name("#expires", EXPIRES_AT).value(":epoch", epoch_now());
        if let Some(name) = &self.filters.event_type {
            filter.and("#name = :name").name("#name", "name").value(":name", s(name));
        }
        if let Some(category) = &self.filters.category {
            filter.and("#category = :category").name("#category", "category").value(":category", s(category));
        }
        if let Some(session) = &self.filters.session_id {
            filter.and("#session = :session").name("#session", "session_id").value(":session", s(session));
        }
        let list = ListQuery {
            index: GSI4,
            pk_attr: "GSI4PK",
            sk_attr: "GSI4SK",
            partitions: stream_event_partitions(&self.tenant, &self.stream, shards),
            sk_from: Some(self.start.clone()),
            sk_before: Some(before),
            filter: Some(filter),
            limit,
        };
        let page = query_sharded_desc(&backend.dynamodb, &backend.table, &list).await?;
        self.before = page.next_before;
        page.items.iter().map(row_of).collect()
    }
}

/// An event item as an export row.
pub fn row_of(item: &Item) -> Result<ExportRow, ServiceError> {
    let event = crate::events::event_from_item(item)?;
    Ok(ExportRow {
        event_id: event.id.to_string(),
        stream_id: event.stream,
        timestamp: time::parse("timestamp", &event.timestamp).map_err(|e| ServiceError::Internal(e.message))?,
        event_type: event.name,
        category: event.category,
        session_id: event.session_id.map(|id| id.to_string()),
        data: event.data.to_string(),
        metadata: event.metadata.map(|m| Value::Object(m).to_string()),
    })
}

/// The key prefix of an export's files.
pub fn files_prefix(export: &Export) -> String {
    export_prefix(&export.tenant, &export.export_id)
}
