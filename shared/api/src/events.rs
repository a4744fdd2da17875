//! `/events` routes, and DataStream's single-event ingestion `POST /ingest/events`.

use argus_core::events::{self, EventFilter};
use argus_core::{page::parse_limit, pipeline, Backend};
use argus_models::event::{EventChanges, EventInput, MAX_EVENT_BYTES};
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

fn require_body(body: Option<Value>) -> Result<Value, ApiError> {
    body.ok_or_else(|| ApiError::invalid_field("body", "INVALID_TYPE", "a JSON object is required"))
}

async fn route(backend: &Backend, req: &Request) -> Result<Response<Body>, ApiError> {
    let tenant = crate::input::authenticated_tenant(backend, req).await?;
    match route_key(req).as_str() {
        "POST /events" => {
            idempotent::run(backend, &tenant, req, "POST /events", || async {
                let payload = require_body(json_body(req, MAX_BODY_BYTES)?)?;
                let input = EventInput::parse(&payload)?;
                let id = pipeline::enqueue(backend, &tenant, input, payload).await?;
                argus_core::metrics::EventCounts { accepted: 1, ..Default::default() }.emit("argus-events");
                Ok(response::json(202, &json!({"status": "accepted", "id": id})))
            })
            .await
        }
        "POST /ingest/events" => {
            let started = std::time::Instant::now();
            idempotent::run(backend, &tenant, req, "POST /ingest/events", || async {
                let payload = require_body(json_body(req, MAX_BODY_BYTES)?)?;
                let input = argus_models::datastream::parse_event(&payload, None, &argus_models::time::now())?;
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
