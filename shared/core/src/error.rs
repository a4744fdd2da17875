//! The service layer's one error type. `argus-api` maps it to HTTP once.

use argus_models::ValidationError;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use serde_json::{Map, Value};

#[derive(Debug)]
pub enum ServiceError {
    /// The input breaks a rule; names the fields.
    Validation(ValidationError),
    /// A malformed request parameter that is not a body field (cursor, limit, filter).
    BadRequest {
        code: &'static str,
        message: String,
        details: Map<String, Value>,
    },
    /// Missing, or belonging to another tenant: the two are indistinguishable on purpose.
    NotFound {
        resource: &'static str,
        id: String,
    },
    Conflict {
        code: &'static str,
        message: String,
        details: Map<String, Value>,
    },
    /// The request exceeds a size or count limit; `details` names the limits.
    TooLarge {
        code: &'static str,
        message: String,
        details: Map<String, Value>,
    },
    /// A dependency (DynamoDB, SQS) is unreachable or throttling: safe to retry later.
    Unavailable {
        component: &'static str,
        message: String,
    },
    /// A bug or an unexpected answer from a dependency. Logged in full, reported without detail.
    Internal(String),
}

impl ServiceError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest { code, message: message.into(), details: Map::new() }
    }

    pub fn not_found(resource: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound { resource, id: id.into() }
    }

    /// Classifies an AWS SDK error (DynamoDB and SQS share the type): throttling, timeouts,
    /// 5xx and unreachable endpoints are `Unavailable` (retryable); anything else is internal.
    pub fn from_sdk<E>(component: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let transient = is_transient_sdk_error(&err);
        let message = format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&err));
        if transient {
            tracing::warn!(component, error = %message, "dependency unavailable");
            Self::Unavailable { component, message: format!("{component} is unavailable, retry later") }
        } else {
            tracing::error!(component, error = %message, "dependency call failed");
            Self::Internal(message)
        }
    }
}

/// Whether an SDK error is worth retrying: no answer at all, a 5xx, or a throttling code.
pub fn is_transient_sdk_error<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => {
            is_transient_code(service.err().code().unwrap_or_default()) || service.raw().status().is_server_error()
        }
        _ => false,
    }
}

/// Error codes AWS documents as throttling or transient.
/// Whether a cancelled transaction's reasons (their codes, `None` for untouched parts) show
/// only contention: another transaction on an item, or throttling. Retrying can then succeed.
pub fn only_contention<'a>(reasons: impl IntoIterator<Item = &'a str>) -> bool {
    let mut any = false;
    reasons.into_iter().all(|code| {
        any = true;
        matches!(code, "None" | "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded")
    }) && any
}

pub fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "ThrottlingException"
            | "Throttling"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "TransactionInProgressException"
            // A write that met a transaction on the same item: retrying it succeeds.
            | "TransactionConflictException"
            | "RequestThrottled"
    )
}

impl From<ValidationError> for ServiceError {
    fn from(err: ValidationError) -> Self {
        Self::Validation(err)
    }
}

impl From<argus_models::FieldError> for ServiceError {
    fn from(err: argus_models::FieldError) -> Self {
        Self::Validation(err.into())
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Validation(v) => write!(f, "validation failed: {}", v.message()),
            Self::BadRequest { code, message, .. } => write!(f, "{code}: {message}"),
            Self::NotFound { resource, id } => write!(f, "{resource} {id} not found"),
            Self::Conflict { code, message, .. } | Self::TooLarge { code, message, .. } => {
                write!(f, "{code}: {message}")
            }
            Self::Unavailable { component, message } => write!(f, "{component}: {message}"),
            Self::Internal(message) => write!(f, "internal error: {message}"),
        }
    }
}

impl std::error::Error for ServiceError {}
