//! `/batch/*` routes (bulk create, update, soft delete, restore; jobs; the generic batch) and
//! DataStream's bulk create, `POST /ingest/batch`.

use std::time::Instant;

use argus_core::bulk::{self, BulkOutcome, BulkReport, Dialect, Mode, MAX_BYTES, MAX_ITEMS};
use argus_core::ratelimit::Charge;
use argus_core::Backend;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};

use crate::error::respond;
use crate::input::{json_body, path_param, query, route_key};
use crate::{fallback, idempotent, response, ApiError};

pub async fn handle(backend: &Backend, req: Request) -> Response<Body> {
    // Boxed: POST /batch nests every handler in its own future, which must not grow the stack.
    respond(argus_core::deadline::scope(crate::input::work_deadline(&req), Box::pin(route(backend, &req))).await)
}

/// The invocation's deadline, when running in Lambda.
fn deadline(req: &Request) -> Option<Instant> {
    crate::input::invocation_deadline(req)
}

/// Largest decompressed body of a gzip bulk request. Uncompressed, a body must fit Lambda's
/// 6 MB invoke payload (hence `MAX_BYTES`); compressed, it only has to fit once decompressed in
/// the function's memory, and the item count limit still applies.
pub const MAX_GZIP_BYTES: usize = crate::ingress::MAX_DECOMPRESSED_BYTES;

/// The byte limit of a bulk body: larger for one that arrived gzip-compressed.
pub fn bulk_byte_limit(req: &Request) -> usize {
    if req.headers().contains_key(crate::ingress::DECODED_HEADER) {
        MAX_GZIP_BYTES
    } else {
        MAX_BYTES
    }
}

/// The body, with the bulk limits in the 413's details.
fn bulk_body(req: &Request) -> Result<Value, ApiError> {
    match json_body(req, bulk_byte_limit(req)) {
        Ok(Some(body)) => Ok(body),
        Ok(None) => Err(ApiError::invalid_field("body", "REQUIRED", "a JSON body is required")),
        Err(err) if err.status == 413 => Err(err.detail("max_items", MAX_ITEMS)),
        Err(err) => Err(err),
    }
}

/// `{"mode", "items": [...]}` or a bare array (partial). Takes the body by value: a bulk body
/// is megabytes, so the items move instead of being copied.
fn mode_and_items(body: Value, list_field: &str) -> Result<(Mode, Vec<Value>), ApiError> {
    match body {
        Value::Array(items) => Ok((Mode::Partial, items)),
        Value::Object(mut fields) => {
            let mode = Mode::parse(fields.get("mode"))?;
            match fields.remove(list_field) {
                Some(Value::Array(items)) => Ok((mode, items)),
                _ => Err(ApiError::invalid_field(list_field, "INVALID_TYPE", "an array is required")),
            }
        }
        _ => Err(ApiError::invalid_field("body", "INVALID_TYPE", "a JSON object or array is required")),
    }
}

/// `?return=failures` answers only the failed items, `?return=all` (the default) every item.
/// Checked before any work: an unknown value must not run the bulk and then be ignored.
fn return_failures_only(req: &Request) -> Result<bool, ApiError> {
    match query(req, "return").as_deref() {
        None | Some("all") => Ok(false),
        Some("failures") => Ok(true),
        Some(other) => Err(ApiError::from(argus_models::ValidationError::single(argus_models::FieldError::new(
            "return",
            "INVALID_PARAMETER",
            format!("return is 'all' or 'failures', got {other:?}"),
        )))),
    }
}

fn report_response(failures_only: bool, report: BulkReport) -> Response<Body> {
    let report = if failures_only { report.only_failures() } else { report };
    response::json(200, &report.fit(crate::multi::MAX_ANSWER_BYTES))
}

fn outcome_response(failures_only: bool, outcome: BulkOutcome, atomic_status: u16) -> Response<Body> {
    match outcome {
        BulkOutcome::Report(report) => report_response(failures_only, report),
        BulkOutcome::Atomic { ids } => response::json(atomic_status, &json!({ "ids": ids })),
    }
}

/// A validate-only answer, nothing written: the per-item report, flagged; in atomic mode the
/// atomic call's own verdict (400/409 with every failure) when any item would fail.
fn validated_response(failures_only: bool, mode: Mode, report: BulkReport) -> Result<Response<Body>, ApiError> {
    if mode == Mode::Atomic {
        bulk::check_atomic(&report.results, report.results.len())
            .map_err(|err| ApiError::from(err).detail("validate_only", true))?;
    }
    let report = if failures_only { report.only_failures() } else { report };
    let mut body = serde_json::to_value(report.fit(crate::multi::MAX_ANSWER_BYTES)).unwrap_or_default();
    body["validate_only"] = json!(true);
    Ok(response::json(200, &body))
}

/// The answer of a bulk create (its metrics emitted): per-item report, or 201 with the ids.
fn created_response(failures_only: bool, outcome: BulkOutcome) -> Response<Body> {
    let counts = match &outcome {
        BulkOutcome::Report(report) => argus_core::metrics::EventCounts::from_results(&report.results),
        BulkOutcome::Atomic { ids } => {
            argus_core::metrics::EventCounts { accepted: ids.len(), stored: ids.len(), ..Default::default() }
        }
    };
    counts.emit("argus-batch");
    outcome_response(failures_only, outcome, 201)
}

/// `GET /limits`: what applies to this caller, so clients size batches without hard-coding.
fn limits_of(caller: &crate::input::Caller) -> Value {
    let usage = crate::ratelimit::current_usage();
    let quota = |limit: u64, remaining: Option<u64>| {
        if limit == u64::MAX {
            json!({"limit": null, "remaining": null})
        } else {
            json!({"limit": limit, "remaining": remaining})
        }
    };
    json!({
        "bulk": {
            "max_items": MAX_ITEMS,
            "max_bytes": MAX_BYTES,
            "max_gzip_decompressed_bytes": MAX_GZIP_BYTES,
            "max_atomic_items": bulk::MAX_ATOMIC_ITEMS,
            "max_atomic_bytes": bulk::MAX_ATOMIC_BYTES,
            "max_streams_per_request": bulk::MAX_STREAMS_PER_REQUEST,
        },
        "event": {
            "max_event_bytes": argus_models::event::MAX_EVENT_BYTES,
            "max_body_bytes": crate::events::MAX_BODY_BYTES,
            "max_json_depth": argus_models::validation::MAX_JSON_DEPTH,
            "max_clock_skew_seconds": argus_models::event::MAX_CLOCK_SKEW_SECONDS,
        },
        "jobs": {"max_items": argus_core::jobs::MAX_JOB_ITEMS},
        "batch": {"max_sub_requests": crate::multi::MAX_SUB_REQUESTS},
        "request": {
            "content_encodings": ["gzip", "identity"],
            "max_decompressed_bytes": crate::ingress::MAX_DECOMPRESSED_BYTES,
            "max_compression_ratio": crate::ingress::MAX_COMPRESSION_RATIO,
            "max_uri_bytes": crate::ingress::MAX_URI_BYTES,
        },
        "rate_limits": {
            "principal": caller.principal,
            "window_seconds": argus_models::limits::WINDOW_SECONDS,
            "reset_seconds": usage.map(|u| u.reset_seconds),
            "requests_per_hour": quota(caller.limits.requests_per_hour, usage.map(|u| u.requests_remaining())),
            "events_per_hour": quota(caller.limits.events_per_hour, usage.map(|u| u.events_remaining())),
        },
    })
}

/// A bulk request's charge: one request and its items (`ratelimit`), before any work. A
/// request over the item limit is refused (413) before it is charged for its items.
async fn charge_items(backend: &Backend, caller: &crate::input::Caller, items: usize) -> Result<(), ApiError> {
    if items > MAX_ITEMS {
        bulk::check_count(items, "items")?;
    }
    crate::ratelimit::charge(backend, caller, Charge { requests: 1, events: items as u64 }).await
}

async fn route(backend: &Backend, req: &Request) -> Result<Response<Body>, ApiError> {
    let caller = crate::input::authenticated_caller(backend, req).await?;
    let tenant = caller.tenant.clone();
    match route_key(req).as_str() {
        "POST /batch" => {
            idempotent::run(backend, &tenant, req, "POST /batch", || async {
                let responses = crate::multi::run(backend, &caller, &bulk_body(req)?).await?;
                Ok(response::json(200, &json!({ "responses": responses })))
            })
            .await
        }
        "POST /batch/jobs" => {
            idempotent::run(backend, &tenant, req, "POST /batch/jobs", || async {
                let validate_only = crate::input::validate_only(req)?;
                let body = bulk_body(req)?;
                let items = body.get("items").and_then(Value::as_array).map_or(0, Vec::len);
                // Shape and size first (400/413): a job refused whole spends no events.
                argus_core::jobs::check_request(&body)?;
                if validate_only {
                    // Validated now, item by item: as costly as a bulk call of that size.
                    bulk::check_count(items, "items")?;
                    charge_items(backend, &caller, items).await?;
                    let report = argus_core::jobs::validate(backend, &tenant, &body).await?;
                    return validated_response(false, Mode::Partial, report);
                }
                crate::ratelimit::charge(backend, &caller, Charge { requests: 1, events: items as u64 }).await?;
                let accepted = argus_core::jobs::create(backend, &tenant, &body).await?;
                Ok(response::json(202, &accepted))
            })
            .await
        }
        "GET /limits" => Ok(response::json(200, &limits_of(&caller))),
        "GET /batch/jobs/{id}" => {
            Ok(response::json(200, &argus_core::jobs::get(backend, &tenant, &path_param(req, "id")?).await?))
        }
        "GET /batch/jobs/{id}/results" => {
            let limit = argus_core::page::parse_limit(query(req, "limit").as_deref())?;
            let page = argus_core::jobs::results(
                backend,
                &tenant,
                &path_param(req, "id")?,
                query(req, "status").as_deref(),
                limit,
                query(req, "cursor").as_deref(),
            )
            .await?;
            Ok(response::json(200, &page))
        }
        "POST /batch/events" => {
            idempotent::run(backend, &tenant, req, "POST /batch/events", || async {
                let failures_only = return_failures_only(req)?;
                let validate_only = crate::input::validate_only(req)?;
                let body = bulk_body(req)?;
                let sent_at = if body.is_object() { crate::input::sent_at(&body)? } else { None };
                let (mode, items) = mode_and_items(body, "items")?;
                bulk::check_mode(mode, items.len())?;
                // A dry run reads as much as the real call (sessions, ids, streams): same charge.
                if validate_only {
                    charge_items(backend, &caller, items.len()).await?;
                    let report = bulk::validate_events(backend, &tenant, &items, Dialect::Argus, sent_at).await?;
                    return validated_response(failures_only, mode, report);
                }
                charge_items(backend, &caller, items.len()).await?;
                let outcome =
                    bulk::create_events(backend, &tenant, &items, mode, deadline(req), Dialect::Argus, sent_at).await?;
                Ok(created_response(failures_only, outcome))
            })
            .await
        }
        "POST /ingest/batch" => {
            idempotent::run(backend, &tenant, req, "POST /ingest/batch", || async {
                let failures_only = return_failures_only(req)?;
                let validate_only = crate::input::validate_only(req)?;
                let mut body = bulk_body(req)?;
                let stream = argus_models::datastream::parse_batch(&body)?.0;
                let mode = Mode::parse(body.get("mode"))?;
                let sent_at = crate::input::sent_at(&body)?;
                // A bulk body is megabytes: the items move out of it, no copy.
                let items = match body.get_mut("events") {
                    Some(Value::Array(items)) => std::mem::take(items),
                    _ => Vec::new(),
                };
                let dialect = Dialect::DataStream { stream: &stream };
                bulk::check_mode(mode, items.len())?;
                if validate_only {
                    charge_items(backend, &caller, items.len()).await?;
                    let report = bulk::validate_events(backend, &tenant, &items, dialect, sent_at).await?;
                    return validated_response(failures_only, mode, report);
                }
                charge_items(backend, &caller, items.len()).await?;
                let outcome =
                    bulk::create_events(backend, &tenant, &items, mode, deadline(req), dialect, sent_at).await?;
                Ok(created_response(failures_only, outcome))
            })
            .await
        }
        "PATCH /batch/events" => {
            let failures_only = return_failures_only(req)?;
            let (mode, items) = mode_and_items(bulk_body(req)?, "items")?;
            charge_items(backend, &caller, items.len()).await?;
            let outcome = bulk::update_events(backend, &tenant, &items, mode).await?;
            Ok(outcome_response(failures_only, outcome, 200))
        }
        key @ ("DELETE /batch/events" | "POST /batch/events/restore") => {
            let failures_only = return_failures_only(req)?;
            let body = bulk_body(req)?;
            let (mode, ids) = mode_and_items(body, "ids")?;
            if mode == Mode::Atomic {
                return Err(ApiError::new(
                    400,
                    "UNSUPPORTED_MODE",
                    "bulk delete and restore are partial: each id on its own",
                )
                .detail("field", "mode"));
            }
            charge_items(backend, &caller, ids.len()).await?;
            let report = bulk::delete_or_restore(backend, &tenant, &ids, key.starts_with("POST")).await?;
            Ok(report_response(failures_only, report))
        }
        _ => Err(fallback::unmatched(req)),
    }
}
