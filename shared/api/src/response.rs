//! Response builders.

use lambda_http::{Body, Response};
use serde::Serialize;

pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response<Body> {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_string());
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() =
        lambda_http::http::StatusCode::from_u16(status).unwrap_or(lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert("content-type", lambda_http::http::HeaderValue::from_static("application/json"));
    response
}

pub fn no_content() -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = lambda_http::http::StatusCode::NO_CONTENT;
    response
}

/// A response from an already serialized JSON body (a replayed answer).
pub fn raw_json(status: u16, body: String) -> Response<Body> {
    let mut response = Response::new(if body.is_empty() { Body::Empty } else { Body::Text(body) });
    *response.status_mut() =
        lambda_http::http::StatusCode::from_u16(status).unwrap_or(lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert("content-type", lambda_http::http::HeaderValue::from_static("application/json"));
    response
}
