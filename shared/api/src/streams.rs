//! `/streams` and `/query` routes: a tenant's streams, their settings and status, and
//! DataStream's queries and aggregations over a stream's events.

use argus_core::analytics::{self, EventQuery};
use argus_core::{page::parse_limit, streams, Backend};
use argus_models::analytics::AggregateRequest;
use argus_models::stream::StreamChanges;
use lambda_http::{Body, Request, Response};

use crate::error::respond;
use crate::input::{json_body, path_param, query, route_key};
use crate::{fallback, response, ApiError};

/// A settings body is a few bytes; anything near this is not one.
const MAX_BODY_BYTES: usize = 16 * 1024;

pub async fn handle(backend: &Backend, req: Request) -> Response<Body> {
    // Boxed: POST /batch nests every handler in its own future, which must not grow the stack.
    respond(argus_core::deadline::scope(crate::input::work_deadline(&req), Box::pin(route(backend, &req))).await)
}

async fn route(backend: &Backend, req: &Request) -> Result<Response<Body>, ApiError> {
    let tenant = crate::input::authenticated_tenant(backend, req).await?;
    match route_key(req).as_str() {
        "GET /streams" => {
            let limit = parse_limit(query(req, "limit").as_deref())?;
            let page = streams::list(backend, &tenant, limit, query(req, "cursor").as_deref()).await?;
            Ok(response::json(200, &page))
        }
        "GET /streams/{id}" => Ok(response::json(200, &streams::get(backend, &tenant, &path_param(req, "id")?).await?)),
        "PATCH /streams/{id}" => {
            let body = json_body(req, MAX_BODY_BYTES)?
                .ok_or_else(|| ApiError::invalid_field("body", "INVALID_TYPE", "a JSON object is required"))?;
            let changes = StreamChanges::parse(&body)?;
            let stream = streams::update(backend, &tenant, &path_param(req, "id")?, &changes).await?;
            Ok(response::json(200, &stream))
        }
        "GET /streams/{id}/status" => {
            Ok(response::json(200, &analytics::status(backend, &tenant, &path_param(req, "id")?).await?))
        }
        "GET /query/events" => {
            let query = EventQuery::parse(|name| query(req, name))?;
            Ok(response::json(200, &analytics::query_events(backend, &tenant, &query).await?))
        }
        "POST /query/aggregate" => {
            let body = json_body(req, MAX_BODY_BYTES)?
                .ok_or_else(|| ApiError::invalid_field("body", "INVALID_TYPE", "a JSON object is required"))?;
            let request = AggregateRequest::parse(&body)?;
            Ok(response::json(200, &analytics::aggregate(backend, &tenant, &request).await?))
        }
        _ => Err(fallback::unmatched(req)),
    }
}
