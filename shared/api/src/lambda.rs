//! The HTTP functions' Lambda loop: clients built once at cold start, then each invocation's
//! event through [`crate::ingress`] (never `lambda_http`'s own conversion, which panics on some
//! inputs) to the function's handler, and its answer back in API Gateway's payload 2.0 shape.

use std::future::Future;
use std::pin::Pin;

use argus_core::Backend;
use lambda_http::{Body, Error, LambdaEvent, Request, RequestExt, Response};
use serde_json::Value;

/// A route group's handler (`argus_api::events::handle`, …).
pub type Handler = for<'a> fn(&'a Backend, Request) -> Pin<Box<dyn Future<Output = Response<Body>> + Send + 'a>>;

/// `function` is the binary's name (the `Function` dimension of its metrics).
pub async fn run_http(function: &'static str, handler: Handler) -> Result<(), Error> {
    crate::telemetry::init_lambda();
    let backend = Backend::from_lambda_env().await?;
    let backend = &backend;
    lambda_http::lambda_runtime::run(lambda_http::service_fn(move |event: LambdaEvent<Value>| async move {
        let (payload, context) = event.into_parts();
        let started = std::time::Instant::now();
        let route = crate::dispatch::event_route(&payload);
        let response = match crate::ingress::request_from_event(payload) {
            Ok(request) => {
                crate::ratelimit::scoped(backend, handler(backend, request.with_lambda_context(context))).await
            }
            Err(err) => err.into_response(),
        };
        crate::dispatch::observe(function, &route, &response, started);
        Ok::<_, Error>(crate::dispatch::response_payload(response))
    }))
    .await
}
