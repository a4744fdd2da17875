//! `/webhooks` routes: a tenant's webhooks, their secrets, test sends and delivery log.
//! Nothing here calls a receiver: deliveries go through the notifier's queue.

use argus_core::webhooks::{self, outbox, store};
use argus_core::{page::parse_limit, Backend};
use argus_models::webhook::{NewWebhook, WebhookChanges};
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::error::respond;
use crate::input::{json_body, path_param, query, route_key};
use crate::{fallback, response, ApiError};

/// A webhook body is a few hundred bytes.
const MAX_BODY_BYTES: usize = 16 * 1024;

pub async fn handle(backend: &Backend, req: Request) -> Response<Body> {
    respond(argus_core::deadline::scope(crate::input::work_deadline(&req), Box::pin(route(backend, &req))).await)
}

fn required_body(req: &Request) -> Result<serde_json::Value, ApiError> {
    json_body(req, MAX_BODY_BYTES)?
        .ok_or_else(|| ApiError::invalid_field("body", "INVALID_TYPE", "a JSON object is required"))
}

async fn route(backend: &Backend, req: &Request) -> Result<Response<Body>, ApiError> {
    let tenant = crate::input::authenticated_tenant(backend, req).await?;
    let policy = backend.webhooks.policy;
    match route_key(req).as_str() {
        "POST /webhooks" => {
            let new = NewWebhook::parse(&required_body(req)?, &policy)?;
            let (webhook, secret) = store::create(backend, &tenant, new).await?;
            let mut view = webhook.view();
            // The secret is shown here and on rotation only.
            view["secret"] = json!(secret);
            Ok(response::json(201, &view))
        }
        "GET /webhooks" => {
            let items: Vec<_> = store::list(backend, &tenant).await?.iter().map(|w| w.view()).collect();
            Ok(response::json(200, &json!({"items": items, "next_cursor": null})))
        }
        "GET /webhooks/{id}" => {
            Ok(response::json(200, &store::get(backend, &tenant, &path_param(req, "id")?).await?.view()))
        }
        "PATCH /webhooks/{id}" => {
            let changes = WebhookChanges::parse(&required_body(req)?, &policy)?;
            let webhook = store::update(backend, &tenant, &path_param(req, "id")?, changes).await?;
            Ok(response::json(200, &webhook.view()))
        }
        "DELETE /webhooks/{id}" => {
            store::delete(backend, &tenant, &path_param(req, "id")?).await?;
            Ok(response::no_content())
        }
        "POST /webhooks/{id}/rotate-secret" => {
            let body = json_body(req, MAX_BODY_BYTES)?;
            let grace = store::parse_grace(body.as_ref())?;
            let (webhook, secret) = store::rotate_secret(backend, &tenant, &path_param(req, "id")?, grace).await?;
            let mut view = webhook.view();
            view["secret"] = json!(secret);
            Ok(response::json(200, &view))
        }
        "POST /webhooks/{id}/test" => {
            let id = path_param(req, "id")?;
            let delivery_id = webhooks::send_test(backend, &tenant, &id).await?;
            Ok(response::json(
                202,
                &json!({
                    "delivery_id": delivery_id,
                    "status": "queued",
                    "deliveries_url": format!("/webhooks/{id}/deliveries"),
                }),
            ))
        }
        "GET /webhooks/{id}/deliveries" => {
            let limit = parse_limit(query(req, "limit").as_deref())?;
            let page = outbox::list_deliveries(
                backend,
                &tenant,
                &path_param(req, "id")?,
                limit,
                query(req, "cursor").as_deref(),
            )
            .await?;
            Ok(response::json(200, &page))
        }
        _ => Err(fallback::unmatched(req)),
    }
}
