//! The `Idempotency-Key` header on creating routes (see `argus_core::idempotency`).

use std::future::Future;

use argus_core::idempotency::{self, Begin, StoredResponse};
use argus_core::Backend;
use lambda_http::{Body, Request, Response};

use crate::ApiError;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Runs `work` at most once per (tenant, key) within 24 h. Without the header it just runs.
pub async fn run<F, Fut>(
    backend: &Backend,
    tenant: &str,
    req: &Request,
    route: &str,
    work: F,
) -> Result<Response<Body>, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Response<Body>, ApiError>>,
{
    // A dry run (`?validate_only=true`) writes nothing, so there is nothing to protect; storing
    // its answer under the key would make the real call that follows replay the dry run.
    let dry_run = crate::input::query(req, "validate_only").as_deref() == Some("true");
    let Some(raw) = req.headers().get(HEADER) else {
        return Box::pin(work()).await;
    };
    let key = raw.to_str().map_err(|_| {
        ApiError::new(400, "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be visible ASCII").detail("header", HEADER)
    })?;
    if dry_run {
        // Checked like any key (a bad one is still a 400), then left untouched.
        idempotency::validate_key(key).map_err(|e| ApiError::from(e).detail("header", HEADER))?;
        return Box::pin(work()).await;
    }
    let body: &[u8] = match req.body() {
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    // The query string is part of the request (`?return=failures` changes the answer).
    let route = format!("{route}?{}", req.uri().query().unwrap_or(""));
    let fingerprint = idempotency::fingerprint(&route, body);
    match idempotency::begin(backend, tenant, key, &fingerprint)
        .await
        .map_err(|e| ApiError::from(e).detail("header", HEADER))?
    {
        Begin::Proceed(held) => {
            // The ids this request creates derive from the key: a rerun makes the same records.
            // Boxed: handlers' futures are large, and `POST /batch` nests them.
            let response = argus_core::keyed_ids::scope(Some(held.seed.clone()), Box::pin(work()))
                .await
                .unwrap_or_else(ApiError::into_response);
            let status = response.status().as_u16();
            // 429 is transient too (the window resets): nothing ran, and a replayed 429 would
            // outlive the limit it reports.
            if status >= 500 || status == 429 {
                // Transient: give the key back so a retry runs again.
                if let Err(err) = idempotency::release(backend, held).await {
                    tracing::warn!(error = %err, "could not release an idempotency key");
                }
            } else {
                let body = match response.body() {
                    Body::Text(text) => text.clone(),
                    Body::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    _ => String::new(),
                };
                if let Err(err) = idempotency::complete(backend, held, &StoredResponse { status, body }).await {
                    // The work is done; its answer still goes out. A retry will see the key in
                    // progress until the lock expires, never run twice.
                    tracing::error!(error = %err, "could not store an idempotent response");
                }
            }
            Ok(response)
        }
        Begin::Replay(stored) => {
            let mut response = crate::response::raw_json(stored.status, stored.body);
            response.headers_mut().insert(REPLAYED_HEADER, lambda_http::http::HeaderValue::from_static("true"));
            Ok(response)
        }
        Begin::Reused => Err(ApiError::new(
            422,
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used for a different request in the last 24 hours",
        )
        .detail("header", HEADER)),
        Begin::InProgress => Err(ApiError::new(
            409,
            "IDEMPOTENCY_IN_PROGRESS",
            "a request with this Idempotency-Key is still in progress; retry shortly",
        )
        .detail("header", HEADER)
        .detail("retryable", true)
        .with_header("retry-after", "1")),
    }
}
