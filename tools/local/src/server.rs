//! The HTTP side of the runner: route like API Gateway, authorize, invoke, answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use argus_api::authorizer::{self, AuthDecision};
use argus_api::ApiError;
use argus_core::Backend;
use argus_stack::{Provisioned, Route, Template};
use lambda_http::RequestExt;

use crate::functions::Functions;
use crate::limits;

/// The authorizer's binary in template.yaml.
pub const AUTHORIZER_BINARY: &str = "argus-authorizer";
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Map;
use tokio::net::TcpListener;

use argus_api::apigw::{http_api_event, match_path, IncomingRequest};

pub struct LocalApi {
    pub functions: Functions,
    pub routes: Vec<Route>,
    /// API Gateway's authorizer cache: answers per identity, for the template's `ReauthorizeEvery`.
    authorizer_ttl: std::time::Duration,
    /// The authorizer's identity sources (headers); none: it sees every request, uncached.
    identity_headers: Vec<String>,
    authorizer_cache: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, AuthDecision)>>,
}

/// Entries kept at most in the authorizer cache (a local bound; AWS's is its own).
const AUTHORIZER_CACHE_ENTRIES: usize = 10_000;

impl LocalApi {
    /// `backend` is the runner's own (unrestricted) access; each function gets its own copy of
    /// it, restricted to its policy (see `functions`).
    pub fn new(backend: &Backend, template: &Template, provisioned: &Provisioned) -> Self {
        // The functions whose handlers live outside argus-api (Parquet and Avro).
        argus_export::register_functions();
        Self {
            functions: Functions::new(backend, template, provisioned),
            routes: template.routes.clone(),
            authorizer_ttl: std::time::Duration::from_secs(template.authorizer_ttl_seconds),
            identity_headers: template.authorizer_identity_headers.clone(),
            authorizer_cache: Default::default(),
        }
    }

    /// The authorizer's answer as API Gateway gives it: from its cache while fresh (by the
    /// identity sources' values, `key`), else from the authorizer (failures are not cached).
    async fn authorize_cached(
        &self,
        function: &crate::functions::Function,
        key: &str,
        headers: &hyper::HeaderMap,
    ) -> Result<AuthDecision, Response<Full<Bytes>>> {
        if let Ok(cache) = self.authorizer_cache.lock() {
            if let Some((at, decision)) = cache.get(key) {
                if at.elapsed() < self.authorizer_ttl {
                    return Ok(decision.clone());
                }
            }
        }
        // As Lambda runs it: the deadline in its context, cut off at its timeout.
        let deadline = std::time::Instant::now() + function.timeout();
        let authorized = tokio::time::timeout(
            function.timeout(),
            authorizer::authorize_within(&function.backend, headers, Some(deadline)),
        )
        .await;
        let decision = match authorized {
            Ok(Ok(decision)) => decision,
            Ok(Err(err)) => {
                // The authorizer Lambda fails: API Gateway answers 500 itself.
                tracing::error!(error = %err, "authorizer failed");
                return Err(to_hyper(limits::gateway_answer(limits::GatewayAnswer::AuthorizerFailed)));
            }
            Err(_) => {
                tracing::error!("authorizer timed out");
                return Err(to_hyper(limits::gateway_answer(limits::GatewayAnswer::AuthorizerFailed)));
            }
        };
        if !self.authorizer_ttl.is_zero() && !self.identity_headers.is_empty() {
            if let Ok(mut cache) = self.authorizer_cache.lock() {
                if cache.len() >= AUTHORIZER_CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(key.to_string(), (std::time::Instant::now(), decision.clone()));
            }
        }
        Ok(decision)
    }

    /// Answers one request exactly as API Gateway + Lambda would, bar the runner's own limits.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = match read_body(body).await {
            Ok(bytes) => bytes,
            Err(BodyError::TooLarge) => {
                return to_hyper(limits::gateway_answer(limits::GatewayAnswer::PayloadTooLarge))
            }
            Err(BodyError::Broken) => {
                return to_hyper(
                    ApiError::new(400, "BAD_REQUEST", "the request body could not be read").into_response(),
                );
            }
        };
        if let Err(err) = limits::check_request_line_and_headers(&parts) {
            return to_hyper(err.into_response());
        }
        let method = parts.method.as_str();
        let path = parts.uri.path();
        let incoming = IncomingRequest {
            method,
            raw_path: path,
            raw_query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body: &body,
            source_ip: peer.ip().to_string(),
        };
        // Route selection as API Gateway does it: an exact method + path route, else `$default`.
        let matched = self.routes.iter().find_map(|route| {
            if route.path == "$default" || !(route.method == method || route.method == "ANY") {
                return None;
            }
            match_path(&route.path, path).map(|params| (route, format!("{} {}", route.method, route.path), params))
        });
        let (route, route_key, params) = match matched {
            Some(found) => found,
            None => match self.routes.iter().find(|r| r.path == "$default") {
                Some(default) => (default, "$default".to_string(), Map::new()),
                None => return to_hyper(ApiError::new(404, "ROUTE_NOT_FOUND", "Not Found").into_response()),
            },
        };
        let authorizer_context = if route.authorized {
            let mut identity = Vec::new();
            for name in &self.identity_headers {
                match identity_source(&parts.headers, name) {
                    Some(value) if !value.is_empty() => identity.push(value),
                    // API Gateway answers a missing (or empty) identity source itself, with its
                    // own body, without invoking the authorizer.
                    _ => return to_hyper(limits::gateway_answer(limits::GatewayAnswer::MissingIdentity)),
                }
            }
            let Some(authorizer_function) = self.functions.get(AUTHORIZER_BINARY) else {
                return to_hyper(ApiError::new(500, "INTERNAL_ERROR", "no authorizer function").into_response());
            };
            match self.authorize_cached(authorizer_function, &identity.join("\n"), &parts.headers).await {
                Ok(decision) => Some(authorizer::context(&decision)),
                Err(answer) => return answer,
            }
        } else {
            None
        };
        let event = http_api_event(&incoming, &route_key, &params, authorizer_context.as_ref());
        let Some(function) = self.functions.get(&route.binary) else {
            return to_hyper(
                ApiError::new(502, "BAD_GATEWAY", format!("no function {}", route.binary)).into_response(),
            );
        };
        let event_text = event.to_string();
        // Lambda refuses an invocation payload over its limit: the function never runs.
        if event_text.len() > limits::MAX_INVOKE_PAYLOAD_BYTES {
            return to_hyper(limits::gateway_answer(limits::GatewayAnswer::RequestTooLarge));
        }
        // As the function's Lambda loop does (`argus_api::lambda`): through `ingress`.
        let lambda_request = match argus_api::ingress::request_from_event(event) {
            Ok(req) => req,
            Err(err) => return to_hyper(err.into_response()),
        };
        let started = std::time::Instant::now();
        let answer = limits::invoke_within_limits(function, |context| {
            argus_api::dispatch::invoke_http_request(
                &route.binary,
                &function.backend,
                lambda_request.with_lambda_context(context),
            )
        })
        .await;
        let response = match answer {
            Ok(Some(response)) => response,
            Ok(None) => ApiError::new(502, "BAD_GATEWAY", format!("no handler for {}", route.binary)).into_response(),
            Err(gateway) => {
                tracing::error!(%route_key, function = %route.binary, answer = ?gateway, "the invocation broke a Lambda limit");
                limits::gateway_answer(gateway)
            }
        };
        argus_api::dispatch::observe(
            &route.binary,
            &argus_api::dispatch::route_dimension(&route_key),
            &response,
            started,
        );
        tracing::debug!(%route_key, function = %route.binary, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
        to_hyper(response)
    }
}

/// The identity source as API Gateway passes it: repeated headers joined by commas.
fn identity_source(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    let mut joined: Option<String> = None;
    for value in headers.get_all(name) {
        let value = String::from_utf8_lossy(value.as_bytes());
        match joined.as_mut() {
            Some(existing) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => joined = Some(value.into_owned()),
        }
    }
    joined
}

enum BodyError {
    TooLarge,
    Broken,
}

/// Past this, an oversize upload is cut off instead of drained.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Reads the body up to HTTP API's payload limit. An oversize body is still read to its end (up to
/// `DRAIN_LIMIT`) before the 413 goes out, so the client sees the answer rather than a reset
/// connection in the middle of its upload.
async fn read_body(mut body: Incoming) -> Result<Bytes, BodyError> {
    let mut buffer = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Broken)?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total <= limits::MAX_HTTP_API_PAYLOAD_BYTES {
                buffer.extend_from_slice(&data);
            } else if total > DRAIN_LIMIT {
                break;
            }
        }
    }
    if total > limits::MAX_HTTP_API_PAYLOAD_BYTES {
        Err(BodyError::TooLarge)
    } else {
        Ok(buffer.freeze())
    }
}

fn to_hyper(response: lambda_http::Response<lambda_http::Body>) -> Response<Full<Bytes>> {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        lambda_http::Body::Empty => Bytes::new(),
        lambda_http::Body::Text(text) => Bytes::from(text),
        lambda_http::Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    Response::from_parts(parts, Full::new(bytes))
}

/// Serves `api` on `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, api: Arc<LocalApi>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                continue;
            }
        };
        let api = api.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(req, peer).await) }
            });
            // Room above API Gateway's header limit, so that `limits` answers it (with the
            // envelope) rather than hyper (with an empty body).
            let mut builder = http1::Builder::new();
            builder.max_buf_size(1024 * 1024).max_headers(1000);
            if let Err(err) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }
}
