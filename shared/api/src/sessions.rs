//! `/sessions` routes.

use argus_core::{sessions, Backend};
use argus_models::session::NewSession;
use lambda_http::{Body, Request, Response};

use crate::error::respond;
use crate::input::{json_body, path_param, query, route_key};
use crate::{fallback, idempotent, response, ApiError};

/// A session body is `{"metadata": {...}}`; metadata is capped well below this.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub async fn handle(backend: &Backend, req: Request) -> Response<Body> {
    // Boxed: POST /batch nests every handler in its own future, which must not grow the stack.
    respond(argus_core::deadline::scope(crate::input::work_deadline(&req), Box::pin(route(backend, &req))).await)
}

async fn route(backend: &Backend, req: &Request) -> Result<Response<Body>, ApiError> {
    let tenant = crate::input::authenticated_tenant(backend, req).await?;
    match route_key(req).as_str() {
        "POST /sessions" => {
            idempotent::run(backend, &tenant, req, "POST /sessions", || async {
                let input = NewSession::from_json(json_body(req, MAX_BODY_BYTES)?)?;
                let session = sessions::create(backend, &tenant, input).await?;
                Ok(response::json(201, &session))
            })
            .await
        }
        "GET /sessions" => {
            let limit = sessions::parse_limit(query(req, "limit").as_deref())?;
            let page = sessions::list(backend, &tenant, limit, query(req, "cursor").as_deref()).await?;
            Ok(response::json(200, &page))
        }
        "GET /sessions/{id}" => {
            let session = sessions::get(backend, &tenant, &path_param(req, "id")?).await?;
            Ok(response::json(200, &session))
        }
        _ => Err(fallback::unmatched(req)),
    }
}
