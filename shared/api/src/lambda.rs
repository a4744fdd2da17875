//! The functions' Lambda loops: clients built once at cold start, then each invocation to the
//! function's shared handler.
//! - HTTP functions ([`run_http`]): the event through [`crate::ingress`] (never `lambda_http`'s
//!   own conversion, which panics on some inputs), the answer back in API Gateway's payload 2.0
//!   shape.
//! - Event-driven functions ([`run_event`]): the payload and the invocation's deadline, the
//!   handler's answer (a `batchItemFailures` report, …) back as it is.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use argus_core::Backend;
use lambda_http::{Body, Error, LambdaEvent, Request, RequestExt, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
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
                let request = request.with_lambda_context(context);
                let work_deadline = crate::input::work_deadline(&request);
                crate::ratelimit::scoped(backend, work_deadline, handler(backend, request)).await
            }
            Err(err) => err.into_response(),
        };
        crate::dispatch::observe(function, &route, &response, started);
        Ok::<_, Error>(crate::dispatch::response_payload(response))
    }))
    .await
}

/// An event-driven function's handler (`argus_api::aggregator::handle`, …): the event, and the
/// invocation's deadline, to its answer.
pub type EventHandler<E, R> =
    for<'a> fn(&'a Backend, E, Option<Instant>) -> Pin<Box<dyn Future<Output = Result<R, Error>> + Send + 'a>>;

/// Runs an SQS-, stream- or schedule-triggered function.
pub async fn run_event<E, R>(handler: EventHandler<E, R>) -> Result<(), Error>
where
    E: DeserializeOwned + Send + 'static,
    R: Serialize,
{
    crate::telemetry::init_lambda();
    let backend = Backend::from_lambda_env().await?;
    let backend = &backend;
    lambda_http::lambda_runtime::run(lambda_http::lambda_runtime::service_fn(move |event: LambdaEvent<E>| async move {
        let deadline = crate::dispatch::deadline_instant(event.context.deadline);
        handler(backend, event.payload, Some(deadline)).await
    }))
    .await
}
