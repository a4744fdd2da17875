//! The asynchronous events pipeline: `enqueue` (POST /events) and `process` (the SQS-triggered
//! processor). Every message ends as a stored event or a stored error record; a message is only
//! reported failed (to be redelivered) when a write did not go through.

use crate::deadline::WithinDeadline;
use std::collections::{BTreeMap, HashMap, HashSet};

use argus_models::error_record::{codes, ErrorRecord};
use argus_models::event::EventInput;
use argus_models::tenant::validate_tenant_id;
use argus_models::{time, FieldError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::batch_writer::{write_all, BatchWriterConfig, Write};
use crate::{errors, events, sessions, Backend, ServiceError};

/// Tenant under which messages that name no valid tenant are recorded. Not a valid tenant id
/// (leading `_`), so no API key can ever read it; operators find these records in the table.
pub const UNROUTED_TENANT: &str = "_unrouted";

/// The largest SQS message the pipeline sends (SQS's long-standing 256 KiB; accepted events,
/// at most 128 KiB of request, stay well under it).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The SQS message body of one accepted event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedEvent {
    pub v: u8,
    pub tenant: String,
    pub received_at: String,
    /// Shape-valid and normalized, `id` always set.
    pub event: EventInput,
    /// The event as the client sent it, for the error record if it fails.
    pub payload: Value,
    /// The client chose the id: stored with a conditional create (see `client_ids`).
    #[serde(default)]
    pub client_id: bool,
}

/// Queues one shape-valid event; returns its id. A failed send is `Unavailable` (503): the
/// client must never get a 202 for an event that is not queued.
pub async fn enqueue(
    backend: &Backend,
    tenant: &str,
    mut event: EventInput,
    payload: Value,
) -> Result<Uuid, ServiceError> {
    let client_id = event.id.is_some();
    let id = *event.id.get_or_insert_with(|| crate::keyed_ids::id_for(0));
    let message = QueuedEvent {
        v: 1,
        tenant: tenant.to_string(),
        received_at: time::format(&time::now()),
        event,
        payload,
        client_id,
    };
    let body = serde_json::to_string(&message).map_err(|e| ServiceError::Internal(e.to_string()))?;
    // SQS refuses a longer message: that is the request's size, not an outage (413, not 503).
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(ServiceError::TooLarge {
            code: "PAYLOAD_TOO_LARGE",
            message: format!(
                "the event is {} bytes as a queue message; the queue takes {MAX_MESSAGE_BYTES}",
                body.len()
            ),
            details: serde_json::Map::from_iter([("max_bytes".to_string(), json!(MAX_MESSAGE_BYTES))]),
        });
    }
    backend
        .sqs
        .send_message()
        .queue_url(&backend.queue_url)
        .message_body(body)
        .send()
        .within_deadline()
        .await?
        .map_err(|err| {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&err), "SendMessage failed");
            // The queue refusing this message's content is the request's fault: retrying fails again.
            let refused = err.as_service_error().is_some_and(|e| {
                e.is_invalid_message_contents()
                    || aws_sdk_sqs::error::ProvideErrorMetadata::code(e) == Some("InvalidParameterValue")
            });
            if refused {
                ServiceError::bad_request("MESSAGE_REFUSED", "the event queue refused this event's content")
            } else {
                ServiceError::Unavailable {
                    component: "queue",
                    message: "the event queue is unavailable, retry later".into(),
                }
            }
        })?;
    Ok(id)
}

/// One received SQS message.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    pub message_id: String,
    pub body: String,
    /// SQS's ApproximateReceiveCount (1 on the first delivery).
    pub receive_count: u32,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessReport {
    /// Message ids to report in `batchItemFailures`.
    pub failed: Vec<String>,
    pub events_written: usize,
    pub duplicates: usize,
    pub errors_recorded: usize,
    /// For the metrics: the above, rejections by code and ingestion lag, job chunks included.
    pub counts: crate::metrics::EventCounts,
}

enum Outcome {
    /// Write this event item.
    Event(Box<crate::ddb::Item>),
    /// Write this error record.
    Error(Box<crate::ddb::Item>),
    /// Already stored with the same content: nothing to do.
    Duplicate,
    /// Could not be decided now (a read failed): redeliver.
    Retry,
    /// A client-chosen id: created conditionally, apart from the batch write.
    Conditional,
}

pub async fn process(backend: &Backend, all_messages: &[QueueMessage], config: &BatchWriterConfig) -> ProcessReport {
    // Job chunks (async batch jobs) go to the jobs module, concurrently; single events below.
    let (chunks, singles): (Vec<&QueueMessage>, Vec<&QueueMessage>) =
        all_messages.iter().partition(|m| crate::jobs::decode_chunk(&m.body).is_some());
    let chunk_results = futures::future::join_all(chunks.iter().map(|message| async move {
        let chunk = crate::jobs::decode_chunk(&message.body)?;
        match crate::jobs::process_chunk(backend, &chunk, message.receive_count, config).await {
            Ok(counts) => Some(Ok(counts)),
            Err(err) => {
                tracing::warn!(message_id = %message.message_id, job = %chunk.job_id, chunk = chunk.chunk, error = %err, "job chunk will be redelivered");
                Some(Err(message.message_id.clone()))
            }
        }
    }))
    .await;
    let messages: Vec<QueueMessage> = singles.into_iter().cloned().collect();
    let mut report = process_events(backend, &messages, config).await;
    for result in chunk_results.into_iter().flatten() {
        match result {
            Ok(counts) => report.counts.add(counts),
            Err(message_id) => {
                report.counts.retried += 1;
                report.failed.push(message_id);
            }
        }
    }
    report
}

async fn process_events(backend: &Backend, messages: &[QueueMessage], config: &BatchWriterConfig) -> ProcessReport {
    let now = time::format(&time::now());
    let mut decoded: Vec<Result<QueuedEvent, Box<ErrorRecordDraft>>> = Vec::with_capacity(messages.len());
    for message in messages {
        decoded.push(decode(message, &now));
    }

    // What already exists, per tenant: sessions referenced, events with these ids, and the
    // settings (retention) of the streams named.
    let mut by_tenant: BTreeMap<&str, Named> = BTreeMap::new();
    for queued in decoded.iter().flatten() {
        let entry = by_tenant.entry(queued.tenant.as_str()).or_default();
        entry.sessions.extend(queued.event.session_id);
        entry.events.extend(queued.event.id);
        entry.streams.push(queued.event.stream.as_str());
    }
    let mut known: HashMap<&str, Result<Known, ()>> = HashMap::new();
    let mut recorded_errors: HashSet<String> = HashSet::new();
    for (tenant, named) in &by_tenant {
        let session_ids: Vec<Uuid> = named.sessions.iter().copied().collect();
        let streams = crate::bulk::distinct_streams(named.streams.iter().copied());
        let (found_sessions, found_events, retention) = tokio::join!(
            sessions::existing(backend, tenant, &session_ids),
            events::existing_hashes(backend, tenant, &named.events),
            crate::streams::write_settings(backend, tenant, &streams)
        );
        let tenant_known = match (found_sessions, found_events, retention) {
            (Ok(sessions), Ok(events), Ok(retention)) => {
                Ok(Known { sessions: sessions.into_iter().collect(), events, retention })
            }
            _ => Err(()),
        };
        known.insert(tenant, tenant_known);
    }

    let mut report = ProcessReport::default();
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(messages.len());
    for item in &decoded {
        let outcome = match item {
            Err(draft) => Outcome::Error(Box::new(draft.to_item())),
            Ok(queued) => {
                let outcome = decide(queued, known.get(queued.tenant.as_str()), &now);
                // One event id twice in a batch (a client or SDK retry): the first decides, a
                // later copy is a duplicate of it, or an ID_CONFLICT if its content differs.
                if let (Outcome::Event(_), Some(Ok(tenant_known)), Some(id)) =
                    (&outcome, known.get_mut(queued.tenant.as_str()), queued.event.id)
                {
                    tenant_known.events.insert(id, events::content_hash(&queued.event));
                }
                outcome
            }
        };
        // Two error records for one event id in one batch are one record (one key).
        let outcome = match outcome {
            Outcome::Error(item) => {
                let key = crate::ddb::get_opt_s(&item, crate::keys::PK).unwrap_or_default().to_string()
                    + crate::ddb::get_opt_s(&item, crate::keys::SK).unwrap_or_default();
                if recorded_errors.insert(key) {
                    Outcome::Error(item)
                } else {
                    Outcome::Duplicate
                }
            }
            other => other,
        };
        outcomes.push(outcome);
    }

    // Client-chosen ids are created on condition that the id is free: another invocation
    // storing the same id with other content must not be silently replaced (nor replace it).
    let mut conditional = Vec::new();
    for (index, outcome) in outcomes.iter_mut().enumerate() {
        let Some(Ok(queued)) = decoded.get(index) else { continue };
        if !queued.client_id {
            continue;
        }
        if let Outcome::Event(item) = outcome {
            let id = queued.event.id.unwrap_or_default();
            conditional.push(crate::bulk::Ready { index, id, item: (**item).clone(), client_id: true });
            *outcome = Outcome::Conditional;
        }
    }
    let mut conflict_records: Vec<(usize, crate::ddb::Item)> = Vec::new();
    for result in crate::client_ids::create(backend, conditional, config).await {
        let index = result.index;
        match (result.status, decoded.get(index)) {
            (201, Some(Ok(queued))) => {
                report.events_written += 1;
                report.counts.lag_ms.push(lag_ms(&queued.received_at));
            }
            (201, _) => report.events_written += 1,
            (200, _) => report.duplicates += 1,
            (409, Some(Ok(queued))) => conflict_records.push((index, id_conflict_record(queued, &now))),
            _ => report.failed.push(messages[index].message_id.clone()),
        }
    }

    let mut writes = Vec::new();
    let mut write_of_message = vec![None; messages.len()];
    for (index, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Outcome::Event(item) | Outcome::Error(item) => {
                write_of_message[index] = Some(writes.len());
                writes.push(Write::Put((**item).clone()));
            }
            Outcome::Duplicate => report.duplicates += 1,
            Outcome::Retry => report.failed.push(messages[index].message_id.clone()),
            Outcome::Conditional => {}
        }
    }
    for (index, item) in conflict_records {
        write_of_message[index] = Some(writes.len());
        writes.push(Write::Put(item));
    }
    let rejection_code = |write: &Write| match write {
        Write::Put(item) => crate::ddb::get_opt_s(item, "code").unwrap_or("UNKNOWN").to_string(),
        _ => "UNKNOWN".to_string(),
    };
    let (results, _) = write_all(&backend.dynamodb, &backend.table, &writes, config).await;
    for (index, write) in write_of_message.iter().enumerate() {
        let Some(write) = write else { continue };
        if results[*write].is_written() {
            match outcomes[index] {
                // Its conflict record.
                Outcome::Conditional => {
                    report.errors_recorded += 1;
                    *report.counts.rejected.entry(codes::ID_CONFLICT.to_string()).or_default() += 1;
                }
                Outcome::Event(_) => {
                    report.events_written += 1;
                    if let Some(Ok(queued)) = decoded.get(index) {
                        report.counts.lag_ms.push(lag_ms(&queued.received_at));
                    }
                }
                _ => {
                    report.errors_recorded += 1;
                    *report.counts.rejected.entry(rejection_code(&writes[*write])).or_default() += 1;
                }
            }
        } else {
            tracing::warn!(message_id = %messages[index].message_id, outcome = ?results[*write], "write failed; message will be redelivered");
            report.failed.push(messages[index].message_id.clone());
        }
    }
    report.counts.accepted = messages.len();
    report.counts.stored = report.events_written;
    report.counts.duplicates = report.duplicates;
    report.counts.retried = report.failed.len();
    report
}

/// Milliseconds from `received_at` (RFC 3339) to now.
fn lag_ms(received_at: &str) -> f64 {
    time::parse("received_at", received_at)
        .map(|received| (time::now() - received).num_milliseconds().max(0) as f64)
        .unwrap_or(0.0)
}

/// What a batch's messages of one tenant name: sessions, event ids, streams.
#[derive(Default)]
struct Named<'a> {
    sessions: HashSet<Uuid>,
    events: Vec<Uuid>,
    streams: Vec<&'a str>,
}

/// What a batch's tenant already has: its sessions and events named, its streams' retention.
struct Known {
    sessions: HashSet<Uuid>,
    events: HashMap<Uuid, String>,
    retention: crate::streams::WriteSettings,
}

fn decide(queued: &QueuedEvent, known: Option<&Result<Known, ()>>, now: &str) -> Outcome {
    let tenant = queued.tenant.as_str();
    let Some(Ok(Known { sessions, events: existing, retention })) = known else {
        return Outcome::Retry;
    };
    let id = queued.event.id.unwrap_or_default();
    let hash = events::content_hash(&queued.event);
    let mut violations = Vec::new();
    match existing.get(&id) {
        Some(stored) if *stored == hash => return Outcome::Duplicate,
        Some(_) => violations.push(FieldError::new(
            "id",
            codes::ID_CONFLICT,
            format!("event {id} already exists with different content"),
        )),
        None => {}
    }
    let received_at = time::parse("received_at", &queued.received_at).unwrap_or_else(|_| time::now());
    violations.extend(crate::bulk::new_event_violations(
        &queued.event,
        &received_at,
        &time::now(),
        sessions,
        retention,
    ));
    if violations.is_empty() {
        let days = Some(retention.days(&queued.event.stream));
        let shards = retention.index_shards(&queued.event.stream);
        return match events::event_item(tenant, &id, &queued.event, &queued.received_at, now, days, shards) {
            Ok(mut item) => {
                events::stamp_summed_fields(&mut item, retention.summed_fields(&queued.event.stream));
                Outcome::Event(Box::new(item))
            }
            Err(_) => Outcome::Retry,
        };
    }
    let draft = ErrorRecordDraft {
        tenant: tenant.to_string(),
        record: ErrorRecord {
            id: errors::error_id_for_event(tenant, &id),
            event_id: Some(id),
            session_id: queued.event.session_id,
            code: violations[0].code.to_string(),
            message: violations.iter().map(|v| v.message.as_str()).collect::<Vec<_>>().join("; "),
            details: errors::violation_details(&violations),
            payload: queued.payload.clone(),
            created_at: now.to_string(),
        },
    };
    Outcome::Error(Box::new(draft.to_item()))
}

/// The `ID_CONFLICT` record of an event whose client-chosen id another event holds.
fn id_conflict_record(queued: &QueuedEvent, now: &str) -> crate::ddb::Item {
    let tenant = queued.tenant.as_str();
    let id = queued.event.id.unwrap_or_default();
    let violations =
        vec![FieldError::new("id", codes::ID_CONFLICT, format!("event {id} already exists with different content"))];
    ErrorRecordDraft {
        tenant: tenant.to_string(),
        record: ErrorRecord {
            id: errors::error_id_for_event(tenant, &id),
            event_id: Some(id),
            session_id: queued.event.session_id,
            code: codes::ID_CONFLICT.to_string(),
            message: violations[0].message.clone(),
            details: errors::violation_details(&violations),
            payload: queued.payload.clone(),
            created_at: now.to_string(),
        },
    }
    .to_item()
}

/// An error record not yet stored.
struct ErrorRecordDraft {
    tenant: String,
    record: ErrorRecord,
}

impl ErrorRecordDraft {
    fn to_item(&self) -> crate::ddb::Item {
        // Serializing plain values cannot fail; an empty item would be rejected by the writer
        // (no key) and the message redelivered, never dropped.
        errors::error_item(&self.tenant, &self.record).unwrap_or_default()
    }
}

/// A message body that is not a `QueuedEvent` becomes a `MALFORMED_MESSAGE` error record (in its
/// tenant if it names a valid one), so a poison message is recorded once, not retried forever.
fn decode(message: &QueueMessage, now: &str) -> Result<QueuedEvent, Box<ErrorRecordDraft>> {
    let parse_error = match serde_json::from_str::<QueuedEvent>(&message.body) {
        Ok(queued) if queued.event.id.is_some() && validate_tenant_id(&queued.tenant).is_ok() => return Ok(queued),
        Ok(_) => "the message lacks an event id or a valid tenant".to_string(),
        Err(err) => err.to_string(),
    };
    let raw: Option<Value> = serde_json::from_str(&message.body).ok();
    let tenant = raw
        .as_ref()
        .and_then(|v| v.get("tenant"))
        .and_then(Value::as_str)
        .filter(|t| validate_tenant_id(t).is_ok())
        .unwrap_or(UNROUTED_TENANT)
        .to_string();
    tracing::error!(message_id = %message.message_id, %tenant, error = %parse_error, "poison message recorded");
    Err(Box::new(ErrorRecordDraft {
        tenant,
        record: ErrorRecord {
            id: errors::error_id_for_message(&message.message_id),
            event_id: None,
            session_id: None,
            code: codes::MALFORMED_MESSAGE.to_string(),
            message: format!("the queue message is not an Argus event: {parse_error}"),
            details: serde_json::Map::from_iter([("message_id".to_string(), json!(message.message_id))]),
            payload: raw.unwrap_or_else(|| Value::String(message.body.chars().take(64 * 1024).collect())),
            created_at: now.to_string(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argus_models::validation::MAX_JSON_DEPTH;

    fn nested(levels: usize) -> Value {
        let mut value = json!("leaf");
        for i in 0..levels {
            value = if i % 2 == 0 { json!([value]) } else { json!({ "k": value }) };
        }
        value
    }

    fn client_event(data: Value) -> Value {
        json!({
            "session_id": "0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b", "category": "c", "name": "n",
            "timestamp": "2026-01-01T00:00:00Z", "data": {"deep": data.clone()},
            "metadata": {"deep": data.clone()}, "unknown_field": {"deep": data},
        })
    }

    /// The API accepts an event only if the processor can read the message it becomes: one depth
    /// limit at the edge, and every wrapper around it within the JSON parser's own limit.
    #[test]
    fn the_deepest_accepted_event_is_a_message_the_processor_reads() {
        let payload = client_event(nested(MAX_JSON_DEPTH - 1));
        let mut event = EventInput::parse(&payload).expect("the deepest event is accepted");
        event.id = Some(Uuid::nil());
        let message = QueuedEvent {
            v: 1,
            tenant: "t1".into(),
            received_at: time::format(&time::now()),
            event,
            payload: payload.clone(),
            client_id: false,
        };
        let body = serde_json::to_string(&message).unwrap();
        let decoded = decode(&QueueMessage { message_id: "m".into(), body, receive_count: 1 }, "now")
            .unwrap_or_else(|draft| panic!("not readable: {}", draft.record.message));
        assert_eq!(decoded.payload, payload);

        let refused = EventInput::parse(&client_event(nested(MAX_JSON_DEPTH))).unwrap_err();
        let fields: Vec<_> = refused.errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(fields, [("data", "TOO_DEEP"), ("metadata", "TOO_DEEP"), ("unknown_field", "TOO_DEEP")]);
    }
}
