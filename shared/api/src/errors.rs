//! `/errors` routes: what became of accepted events that could not be stored.

use argus_core::errors::{self, ErrorFilter};
use argus_core::{page::parse_limit, Backend};
use lambda_http::{Body, Request, Response};

use crate::error::respond;
use crate::input::{path_param, query, route_key};
use crate::{fallback, response, ApiError};

pub async fn handle(backend: &Backend, req: Request) -> Response<Body> {
    // Boxed: POST /batch nests every handler in its own future, which must not grow the stack.
    respond(argus_core::deadline::scope(crate::input::work_deadline(&req), Box::pin(route(backend, &req))).await)
}

async fn route(backend: &Backend, req: &Request) -> Result<Response<Body>, ApiError> {
    let tenant = crate::input::authenticated_tenant(backend, req).await?;
    match route_key(req).as_str() {
        "GET /errors" => {
            let filter = ErrorFilter::parse(|name| query(req, name))?;
            let limit = parse_limit(query(req, "limit").as_deref())?;
            let page = errors::list(backend, &tenant, &filter, limit, query(req, "cursor").as_deref()).await?;
            Ok(response::json(200, &page))
        }
        "GET /errors/{id}" => Ok(response::json(200, &errors::get(backend, &tenant, &path_param(req, "id")?).await?)),
        _ => Err(fallback::unmatched(req)),
    }
}
