//! Lambda's and API Gateway's limits, which the emulators and an in-process handler call would
//! not enforce. The runner applies each one and answers what API Gateway (HTTP API, Lambda
//! proxy integration) answers in AWS when it is crossed; docs/limits.md lists them.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_http::{Body, Context, Response};

use crate::functions::Function;

/// HTTP API's own payload limit: a bigger request is refused before any Lambda runs.
pub const MAX_HTTP_API_PAYLOAD_BYTES: usize = 10 * 1024 * 1024;
/// Lambda's synchronous invocation payload limit (request event and response, each).
pub const MAX_INVOKE_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
pub const MAX_RESPONSE_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// HTTP API's limit on the request line and header values together.
pub const MAX_REQUEST_LINE_AND_HEADER_BYTES: usize = 10_240;
/// Longest path + query the runner forwards (the functions refuse longer ones too: `ingress`).
pub const MAX_URI_BYTES: usize = argus_api::ingress::MAX_URI_BYTES;

/// HTTP API's maximum integration timeout.
pub const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What API Gateway answers itself when a limit is crossed (never our error envelope: the
/// function did not produce the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayAnswer {
    /// Request over HTTP API's 10 MB payload limit.
    PayloadTooLarge,
    /// Invocation event over Lambda's 6 MB: Lambda refuses the invoke.
    RequestTooLarge,
    /// Function response over Lambda's 6 MB: the invocation fails.
    ResponseTooLarge,
    /// The function ran past its `Timeout`.
    FunctionTimedOut,
    /// The integration ran past HTTP API's 30 s.
    IntegrationTimedOut,
    /// The authorizer failed or timed out.
    AuthorizerFailed,
    /// The request lacks the authorizer's identity source (the `x-api-key` header).
    MissingIdentity,
}

impl GatewayAnswer {
    pub fn status_and_message(self) -> (u16, &'static str) {
        match self {
            GatewayAnswer::PayloadTooLarge => (413, "Request Entity Too Large"),
            GatewayAnswer::RequestTooLarge
            | GatewayAnswer::ResponseTooLarge
            | GatewayAnswer::FunctionTimedOut
            | GatewayAnswer::AuthorizerFailed => (500, "Internal Server Error"),
            GatewayAnswer::IntegrationTimedOut => (503, "Service Unavailable"),
            GatewayAnswer::MissingIdentity => (401, "Unauthorized"),
        }
    }
}

pub fn gateway_answer(answer: GatewayAnswer) -> Response<Body> {
    let (status, message) = answer.status_and_message();
    let mut response = Response::new(Body::Text(serde_json::json!({ "message": message }).to_string()));
    *response.status_mut() =
        lambda_http::http::StatusCode::from_u16(status).unwrap_or(lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        lambda_http::http::header::CONTENT_TYPE,
        lambda_http::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// API Gateway's request-size limits before any routing: an over-long URI is a 414, request
/// line and headers over their limit a 431, both with the envelope.
pub fn check_request_line_and_headers(parts: &lambda_http::http::request::Parts) -> Result<(), argus_api::ApiError> {
    let uri_bytes = parts.uri.path().len() + parts.uri.query().map_or(0, str::len);
    if uri_bytes > MAX_URI_BYTES {
        return Err(argus_api::ApiError::new(
            414,
            "URI_TOO_LONG",
            format!("path and query are {uri_bytes} bytes; the limit is {MAX_URI_BYTES}"),
        )
        .detail("max_bytes", MAX_URI_BYTES));
    }
    let request_line = parts.method.as_str().len() + parts.uri.to_string().len() + 10;
    // AWS counts the request line and the header values (not their names).
    let headers: usize = parts.headers.values().map(|value| value.len()).sum();
    if request_line + headers > MAX_REQUEST_LINE_AND_HEADER_BYTES {
        return Err(argus_api::ApiError::new(
            431,
            "HEADERS_TOO_LARGE",
            format!(
                "request line and headers are {} bytes; the limit is {MAX_REQUEST_LINE_AND_HEADER_BYTES}",
                request_line + headers
            ),
        )
        .detail("max_bytes", MAX_REQUEST_LINE_AND_HEADER_BYTES));
    }
    Ok(())
}

/// The Lambda context of one invocation of `function`: its deadline is now + `Timeout`.
pub fn invocation_context(function: &Function) -> Context {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let mut context = Context::default();
    context.request_id = uuid::Uuid::new_v4().to_string();
    context.deadline = now_ms + function.timeout().as_millis() as u64;
    context.invoked_function_arn =
        format!("arn:aws:lambda:us-east-1:000000000000:function:{}", function.spec.logical_id);
    context
}

/// The size of the payload 2.0 response Lambda would return for `response`.
pub fn response_payload_bytes(response: &Response<Body>) -> usize {
    let body_len = match response.body() {
        Body::Text(text) => serde_json::to_string(text).map(|s| s.len()).unwrap_or(text.len()),
        // Binary bodies go out base64-encoded.
        Body::Binary(bytes) => bytes.len().div_ceil(3) * 4 + 2,
        _ => 2,
    };
    let headers: usize = response.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 6).sum();
    body_len + headers + 64
}

/// Runs one HTTP invocation as Lambda would: with the function's deadline in its context, cut
/// off at its `Timeout` (or HTTP API's 30 s, whichever is first), and its answer refused if
/// over Lambda's response limit.
pub async fn invoke_within_limits<F, Fut>(
    function: &Function,
    invoke: F,
) -> Result<Option<Response<Body>>, GatewayAnswer>
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Option<Response<Body>>>,
{
    let timeout = function.timeout();
    let cut_off = timeout.min(INTEGRATION_TIMEOUT);
    match tokio::time::timeout(cut_off, invoke(invocation_context(function))).await {
        Err(_) if timeout > INTEGRATION_TIMEOUT => Err(GatewayAnswer::IntegrationTimedOut),
        Err(_) => Err(GatewayAnswer::FunctionTimedOut),
        Ok(Some(response)) if response_payload_bytes(&response) > MAX_RESPONSE_PAYLOAD_BYTES => {
            Err(GatewayAnswer::ResponseTooLarge)
        }
        Ok(answer) => Ok(answer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argus_stack::template::FunctionSpec;

    fn function(timeout_seconds: u64) -> Function {
        let config = argus_core::aws::local_sdk_config();
        Function {
            spec: FunctionSpec {
                logical_id: "TestFunction".into(),
                binary: "argus-test".into(),
                timeout_seconds,
                memory_mb: 128,
                policy: Vec::new(),
            },
            backend: argus_core::Backend::new(&config, &argus_core::Endpoints::default(), "t", "q"),
        }
    }

    fn ok(body: String) -> Option<Response<Body>> {
        Some(Response::new(Body::Text(body)))
    }

    #[tokio::test(start_paused = true)]
    async fn the_handler_is_cut_off_at_its_timeout_and_sees_it_as_its_deadline() {
        let short = function(3);
        let answer = invoke_within_limits(&short, |context| async move {
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
            let left = context.deadline.saturating_sub(now_ms);
            assert!((2_900..=3_000).contains(&left), "deadline {left} ms away");
            tokio::time::sleep(Duration::from_secs(4)).await;
            ok("late".into())
        })
        .await;
        assert_eq!(answer.err(), Some(GatewayAnswer::FunctionTimedOut));
        // A function allowed longer than HTTP API's integration timeout is cut at 30 s: 503.
        let long = function(60);
        let answer = invoke_within_limits(&long, |_| async {
            tokio::time::sleep(Duration::from_secs(31)).await;
            ok("late".into())
        })
        .await;
        assert_eq!(answer.err(), Some(GatewayAnswer::IntegrationTimedOut));
        let answer = invoke_within_limits(&short, |_| async { ok("{}".into()) }).await;
        assert!(matches!(answer, Ok(Some(_))));
    }

    #[tokio::test]
    async fn a_response_over_six_mb_is_api_gateways_500() {
        let f = function(3);
        let answer = invoke_within_limits(&f, |_| async { ok("x".repeat(MAX_RESPONSE_PAYLOAD_BYTES)) }).await;
        assert_eq!(answer.err(), Some(GatewayAnswer::ResponseTooLarge));
        let answer = invoke_within_limits(&f, |_| async { ok("x".repeat(MAX_RESPONSE_PAYLOAD_BYTES - 4096)) }).await;
        assert!(matches!(answer, Ok(Some(_))));
    }

    #[test]
    fn response_size_counts_json_escaping() {
        let quotes = Response::new(Body::Text("\"".repeat(1000)));
        assert!(response_payload_bytes(&quotes) >= 2000);
        let big = Response::new(Body::Text("x".repeat(MAX_RESPONSE_PAYLOAD_BYTES)));
        assert!(response_payload_bytes(&big) > MAX_RESPONSE_PAYLOAD_BYTES);
    }

    #[test]
    fn gateway_answers_are_not_the_envelope() {
        let response = gateway_answer(GatewayAnswer::ResponseTooLarge);
        assert_eq!(response.status().as_u16(), 500);
        let Body::Text(text) = response.body() else { panic!("text body") };
        assert_eq!(text, r#"{"message":"Internal Server Error"}"#);
    }
}
