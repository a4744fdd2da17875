//! `/exports` routes: create an export (queued for the export function), read its status and,
//! once completed, presigned download URLs; list a tenant's exports. Nothing here reads the
//! window or writes a file.

use argus_core::{exports, page::parse_limit, Backend};
use argus_models::export::{ExportRequest, ExportStatus};
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::error::respond;
use crate::idempotent;
use crate::input::{json_body, path_param, query, route_key};
use crate::{fallback, response, ApiError};

/// An export request is a few hundred bytes.
const MAX_BODY_BYTES: usize = 16 * 1024;

pub async fn handle(backend: &Backend, req: Request) -> Response<Body> {
    respond(argus_core::deadline::scope(crate::input::work_deadline(&req), Box::pin(route(backend, &req))).await)
}

async fn route(backend: &Backend, req: &Request) -> Result<Response<Body>, ApiError> {
    let tenant = crate::input::authenticated_tenant(backend, req).await?;
    match route_key(req).as_str() {
        "POST /exports" => {
            if query(req, "validate_only").is_some() {
                return Err(ApiError::invalid_field(
                    "validate_only",
                    "UNSUPPORTED_PARAMETER",
                    "POST /exports has no dry run: an export request is checked when it is created",
                ));
            }
            idempotent::run(backend, &tenant, req, "POST /exports", || async {
                let body = json_body(req, MAX_BODY_BYTES)?
                    .ok_or_else(|| ApiError::invalid_field("body", "INVALID_TYPE", "a JSON object is required"))?;
                let request = ExportRequest::parse(&body)?;
                let export = exports::create(backend, &tenant, request).await?;
                Ok(response::json(
                    202,
                    &json!({
                        "export_id": export.export_id,
                        "status": export.status.name(),
                        "status_url": format!("/exports/{}", export.export_id),
                    }),
                ))
            })
            .await
        }
        "GET /exports" => {
            let limit = parse_limit(query(req, "limit").as_deref())?;
            let page = exports::list(backend, &tenant, limit, query(req, "cursor").as_deref()).await?;
            let items: Vec<_> = page.items.iter().map(exports::Export::to_json).collect();
            Ok(response::json(200, &json!({"items": items, "next_cursor": page.next_cursor})))
        }
        "GET /exports/{id}" => {
            let export = exports::get(backend, &tenant, &path_param(req, "id")?).await?;
            let mut view = export.to_json();
            view["files"] = if export.status == ExportStatus::Completed {
                json!(exports::download_urls(backend, &export).await?)
            } else {
                json!([])
            };
            Ok(response::json(200, &view))
        }
        _ => Err(fallback::unmatched(req)),
    }
}
