//! `GET /health` (no auth). The health function also serves API Gateway's `$default` route,
//! answering 404/405 with the envelope for anything unrouted.

use argus_core::{health, Backend};
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::input::route_key;
use crate::{fallback, response};

pub async fn handle(backend: &Backend, req: Request) -> Response<Body> {
    if route_key(&req) != "GET /health" {
        return fallback::handle(req).await;
    }
    let components = health::check(backend).await;
    let healthy = components.all_healthy();
    let body = json!({
        "status": if healthy { "healthy" } else { "degraded" },
        "components": components,
        "timestamp": argus_models::time::format(&argus_models::time::now()),
    });
    response::json(if healthy { 200 } else { 503 }, &body)
}
