//! Sessions: the unit events belong to.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::validation::{json_type_name, FieldError, ValidationError};

/// Largest serialized `metadata` we store on a session (keeps items far below DynamoDB's 400 KB).
pub const MAX_SESSION_METADATA_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: Uuid,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// `POST /sessions` input: an empty body, `{}` or `{"metadata": {...}}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewSession {
    pub metadata: Option<Map<String, Value>>,
}

impl NewSession {
    /// Validates a parsed body. `None` means the body was empty.
    pub fn from_json(body: Option<Value>) -> Result<Self, ValidationError> {
        let Some(body) = body else {
            return Ok(Self::default());
        };
        let Value::Object(mut fields) = body else {
            return Err(FieldError::new(
                "body",
                "INVALID_TYPE",
                format!("expected a JSON object, got {}", json_type_name(&body)),
            )
            .into());
        };
        let mut errors = ValidationError::default();
        let metadata = match fields.remove("metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => {
                if let Err(err) = crate::validation::check_depth("metadata", &Value::Object(map.clone())) {
                    errors.push(err);
                }
                let size = serde_json::to_string(&map).map(|s| s.len()).unwrap_or(usize::MAX);
                if size > MAX_SESSION_METADATA_BYTES {
                    errors.push(FieldError::new(
                        "metadata",
                        "TOO_LARGE",
                        format!("must serialize to at most {MAX_SESSION_METADATA_BYTES} bytes, got {size}"),
                    ));
                }
                Some(map)
            }
            Some(other) => {
                errors.push(FieldError::new(
                    "metadata",
                    "INVALID_TYPE",
                    format!("expected an object, got {}", json_type_name(&other)),
                ));
                None
            }
        };
        for unknown in fields.keys() {
            errors.push(FieldError::new(unknown.clone(), "UNKNOWN_FIELD", "sessions accept only 'metadata'"));
        }
        errors.into_result()?;
        Ok(Self { metadata })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_and_metadata_bodies() {
        assert_eq!(NewSession::from_json(None).unwrap(), NewSession::default());
        assert_eq!(NewSession::from_json(Some(json!({}))).unwrap(), NewSession::default());
        let s = NewSession::from_json(Some(json!({"metadata": {"app": "web"}}))).unwrap();
        assert_eq!(s.metadata.unwrap()["app"], "web");
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        let err = NewSession::from_json(Some(json!([1]))).unwrap_err();
        assert_eq!(err.errors[0].field, "body");
        let err = NewSession::from_json(Some(json!({"metadata": "x", "colour": 1}))).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["metadata", "colour"]);
        let big = "x".repeat(MAX_SESSION_METADATA_BYTES);
        let err = NewSession::from_json(Some(json!({"metadata": {"k": big}}))).unwrap_err();
        assert_eq!(err.errors[0].code, "TOO_LARGE");
    }
}
