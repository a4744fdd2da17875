//! The HTTP error: a status plus the envelope. `From<ServiceError>` is the one place service
//! errors become statuses.

use argus_core::ServiceError;
use argus_models::{ErrorEnvelope, ValidationError};
use lambda_http::{Body, Response};
use serde_json::{json, Map, Value};

#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    /// Boxed: keeps `Result<_, ApiError>` small on every handler path.
    pub envelope: Box<ErrorEnvelope>,
    /// Extra headers (e.g. `Allow` on 405).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self { status, envelope: Box::new(ErrorEnvelope::new(code, message)), headers: Vec::new() }
    }

    pub fn with_details(mut self, details: Map<String, Value>) -> Self {
        self.envelope.error.details = details;
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.envelope.error.details.insert(key.to_string(), value.into());
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// 400 `VALIDATION_FAILED` for one field, with the same `details` (`field`, `fields`) as
    /// every other validation answer.
    pub fn invalid_field(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        ValidationError::single(argus_models::FieldError::new(field, code, message)).into()
    }

    pub fn unauthorized(code: &str, message: &str) -> Self {
        Self::new(401, code, message)
    }

    pub fn payload_too_large(max_bytes: usize, got: usize) -> Self {
        Self::new(413, "PAYLOAD_TOO_LARGE", format!("request body is {got} bytes; the limit is {max_bytes}"))
            .detail("max_bytes", max_bytes)
            .detail("bytes", got)
    }

    pub fn into_response(self) -> Response<Body> {
        let mut response = crate::response::json(self.status, &*self.envelope);
        for (name, value) in self.headers {
            if let Ok(value) = value.parse() {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        Self::new(400, "VALIDATION_FAILED", err.message()).with_details(err.details())
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Validation(v) => v.into(),
            ServiceError::BadRequest { code, message, details } => Self::new(400, code, message).with_details(details),
            ServiceError::NotFound { resource, id } => {
                Self::new(404, "NOT_FOUND", format!("{resource} {id} not found")).with_details(Map::from_iter([
                    ("resource".to_string(), json!(resource)),
                    ("id".to_string(), json!(id)),
                ]))
            }
            ServiceError::Conflict { code, message, details } => Self::new(409, code, message).with_details(details),
            ServiceError::TooLarge { code, message, details } => Self::new(413, code, message).with_details(details),
            ServiceError::Unavailable { component, message } => Self::new(503, "SERVICE_UNAVAILABLE", message)
                .detail("component", component)
                .detail("retryable", true)
                .with_header("retry-after", "1"),
            ServiceError::Internal(message) => {
                // The message may hold internal detail (table names, SDK output): log it, do
                // not return it.
                tracing::error!(%message, "internal error");
                Self::new(500, "INTERNAL_ERROR", "internal error")
            }
        }
    }
}

/// Handler results become responses here, once.
pub fn respond(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(ApiError::into_response)
}
