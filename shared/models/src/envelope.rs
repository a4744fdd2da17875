//! The one error envelope every non-2xx answer uses:
//! `{"error":{"code":"UPPER_SNAKE","message":"…","details":{…}}}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub details: Map<String, Value>,
}

impl ErrorEnvelope {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { error: ErrorBody { code: code.into(), message: message.into(), details: Map::new() } }
    }

    pub fn with_details(mut self, details: Map<String, Value>) -> Self {
        self.error.details = details;
        self
    }
}
