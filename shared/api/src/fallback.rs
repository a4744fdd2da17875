//! What API Gateway's `$default` route answers: 404 for unknown paths, 405 (with `Allow`) for a
//! known path with the wrong method. Also the answer of a handler given a route it does not own.

use lambda_http::{Body, Request, Response};

use crate::routes::{match_route, RouteMatch};
use crate::ApiError;

pub fn unmatched(req: &Request) -> ApiError {
    let method = req.method().as_str();
    let path = req.uri().path();
    match match_route(method, path) {
        RouteMatch::MethodNotAllowed { allowed } => {
            ApiError::new(405, "METHOD_NOT_ALLOWED", format!("{method} is not allowed on {path}"))
                .detail("allowed", allowed.clone())
                .with_header("allow", allowed.join(", "))
        }
        // A route this function does not serve (misrouted in the template), or none at all.
        RouteMatch::Found { .. } | RouteMatch::NotFound => {
            ApiError::new(404, "ROUTE_NOT_FOUND", format!("no route for {method} {path}")).detail("path", path)
        }
    }
}

pub async fn handle(req: Request) -> Response<Body> {
    unmatched(&req).into_response()
}
