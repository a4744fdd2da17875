//! Validation errors that name the offending field, so a client can fix exactly that field.

use serde::Serialize;
use serde_json::{json, Map, Value};

/// One field's problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self { field: field.into(), code, message: message.into() }
    }
}

/// All problems found in one input (we report every one, not only the first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationError {
    pub errors: Vec<FieldError>,
}

impl ValidationError {
    pub fn single(err: FieldError) -> Self {
        Self { errors: vec![err] }
    }

    pub fn push(&mut self, err: FieldError) {
        self.errors.push(err);
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn into_result(self) -> Result<(), ValidationError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// A one-line summary naming the fields.
    pub fn message(&self) -> String {
        match self.errors.as_slice() {
            [] => "invalid input".to_string(),
            [one] => format!("{}: {}", one.field, one.message),
            many => format!(
                "{} invalid fields: {}",
                many.len(),
                many.iter().map(|e| e.field.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// `{"field": first field, "fields": [{field, code, message}, …]}` for the envelope.
    pub fn details(&self) -> Map<String, Value> {
        let mut details = Map::new();
        if let Some(first) = self.errors.first() {
            details.insert("field".into(), json!(first.field));
        }
        details.insert("fields".into(), json!(self.errors));
        details
    }
}

impl From<FieldError> for ValidationError {
    fn from(err: FieldError) -> Self {
        Self::single(err)
    }
}

/// Shape of a JSON value as clients think of it, for "expected object, got array" messages.
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
