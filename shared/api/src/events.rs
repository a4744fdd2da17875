//! `/events` routes, and DataStream's single-event ingestion `POST /ingest/events`.

use argus_core::bulk::Dialect;
use argus_core::events::{self, EventFilter};
use argus_core::{page::parse_limit, pipeline, Backend};
use argus_models::event::{EventChanges, EventInput, MAX_EVENT_BYTES};
use argus_models::ValidationError;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};

use crate::error::respond;
use crate::input::{json_body, path_param, query, route_key};
use crate::{fallback, idempotent, response, ApiError};

/// Transport limit of one event request. Twice the stored-event cap leaves room for unknown
/// fields clients send (ignored, as the_eye does) while keeping every SQS message (normalized
/// event + original payload) under SQS's 256 KiB.
pub const MAX_BODY_BYTES: usize = 2 * MAX_EVENT_BYTES;

pub async fn handle(backend: &Backend, req: Request) -> Response<Body> {
    // Boxed: POST /batch nests every handler in its own future, which must not grow the stack.
    respond(argus_core::deadline::scope(crate::input::work_deadline(&req), Box::pin(route(backend, &req))).await)
}

/// A single event checked as it would be stored (session lookup included), nothing queued:
/// 200 `{"validate_only": true, "valid": true}`, or the error the event would meet.
async fn validate_one(
    backend: &Backend,
    tenant: &str,
    payload: &Value,
    dialect: Dialect<'_>,
    sent_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Response<Body>, ApiError> {
    let report =
        argus_core::bulk::validate_events(backend, tenant, std::slice::from_ref(payload), dialect, sent_at).await?;
    let Some(result) = report.results.into_iter().next() else {
        return Err(ApiError::new(500, "INTERNAL_ERROR", "no validation result"));
    };
    match result.error {
        None => Ok(response::json(
            200,
            &json!({"validate_only": true, "valid": true, "id": result.id, "duplicate": result.duplicate}),
        )),
        Some(error) => Err(ApiError::new(result.status, &error.code, error.message.clone())
            .with_details(error.details.clone())
            .detail("validate_only", true)),
    }
}

fn require_body(body: Option<Value>) -> Result<Value, ApiError> {
    body.ok_or_else(|| ApiError::invalid_field("body", "INVALID_TYPE", "a JSON object is required"))
}

async fn route(backend: &Backend, req: &Request) -> Result<Response<Body>, ApiError> {
    let tenant = crate::input::authenticated_tenant(backend, req).await?;
    match route_key(req).as_str() {
        "POST /events" => {
            idempotent::run(backend, &tenant, req, "POST /events", || async {
                let validate_only = crate::input::validate_only(req)?;
                let payload = require_body(json_body(req, MAX_BODY_BYTES)?)?;
                let mut input = EventInput::parse(&payload)?;
                let sent_at = crate::input::sent_at(&payload)?;
                if validate_only {
                    return validate_one(backend, &tenant, &payload, Dialect::Argus, sent_at).await;
                }
                if let Some(sent_at) = &sent_at {
                    input.apply_sent_at(sent_at, &argus_models::time::now()).map_err(ValidationError::single)?;
                }
                let id = pipeline::enqueue(backend, &tenant, input, payload).await?;
                argus_core::metrics::EventCounts { accepted: 1, ..Default::default() }.emit("argus-events");
                Ok(response::json(202, &json!({"status": "accepted", "id": id})))
            })
            .await
        }
        "POST /ingest/events" => {
            let started = std::time::Instant::now();
            idempotent::run(backend, &tenant, req, "POST /ingest/events", || async {
                let validate_only = crate::input::validate_only(req)?;
                let payload = require_body(json_body(req, MAX_BODY_BYTES)?)?;
                let received = argus_models::time::now();
                let mut input = argus_models::datastream::parse_event(&payload, None, &received)?;
                let sent_at = crate::input::sent_at(&payload)?;
                if validate_only {
                    let dialect = Dialect::DataStream { stream: &input.stream };
                    return validate_one(backend, &tenant, &payload, dialect, sent_at).await;
                }
                // A missing timestamp is the receipt, on our clock: nothing to correct.
                if let Some(sent_at) = sent_at.filter(|_| payload.get("timestamp").is_some_and(|t| !t.is_null())) {
                    input.apply_sent_at(&sent_at, &received).map_err(ValidationError::single)?;
                }
                let id = pipeline::enqueue(backend, &tenant, input, payload).await?;
                argus_core::metrics::EventCounts { accepted: 1, ..Default::default() }.emit("argus-events");
                // DataStream's answer: `event_id`, and the time this request took to accept it.
                let processing_time_ms = started.elapsed().as_secs_f64() * 1000.0;
                let processing_time_ms = (processing_time_ms * 1000.0).round() / 1000.0;
                Ok(response::json(
                    202,
                    &json!({"status": "accepted", "event_id": id, "processing_time_ms": processing_time_ms}),
                ))
            })
            .await
        }
        "GET /events" => {
            let filter = EventFilter::parse(|name| query(req, name))?;
            let limit = parse_limit(query(req, "limit").as_deref())?;
            let page = events::list(backend, &tenant, &filter, limit, query(req, "cursor").as_deref()).await?;
            Ok(response::json(200, &page))
        }
        "GET /events/{id}" => {
            let include_deleted =
                events::parse_include_deleted(query(req, "include_deleted").as_deref()).map_err(|e| {
                    let errors = argus_models::ValidationError::single(e);
                    argus_core::ServiceError::BadRequest {
                        code: "INVALID_FILTER",
                        message: errors.message(),
                        details: errors.details(),
                    }
                })?;
            let event = events::get(backend, &tenant, &path_param(req, "id")?, include_deleted).await?;
            Ok(response::json(200, &event))
        }
        key @ ("PUT /events/{id}" | "PATCH /events/{id}") => {
            let body = require_body(json_body(req, MAX_BODY_BYTES)?)?;
            let changes = EventChanges::parse(&body, key.starts_with("PUT"))?;
            let event = events::update(backend, &tenant, &path_param(req, "id")?, &changes).await?;
            Ok(response::json(200, &event))
        }
        "DELETE /events/{id}" => {
            events::soft_delete(backend, &tenant, &path_param(req, "id")?).await?;
            Ok(response::no_content())
        }
        "POST /events/{id}/restore" => {
            let event = events::restore(backend, &tenant, &path_param(req, "id")?).await?;
            Ok(response::json(200, &event))
        }
        _ => Err(fallback::unmatched(req)),
    }
}
