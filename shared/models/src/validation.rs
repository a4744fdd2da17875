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

/// A request body (or bulk item) as a JSON object, or the one `body` error saying what it is:
/// `"{expected}, got <type>"`.
pub fn body_object<'a>(value: &'a Value, expected: &str) -> Result<&'a Map<String, Value>, ValidationError> {
    match value {
        Value::Object(fields) => Ok(fields),
        other => {
            Err(FieldError::new("body", "INVALID_TYPE", format!("{expected}, got {}", json_type_name(other))).into())
        }
    }
}

/// A `NOT_CHANGEABLE` error for each key of a change (PATCH body) outside `changeable`.
pub fn reject_unchangeable(fields: &Map<String, Value>, changeable: &[&str], errors: &mut ValidationError) {
    for key in fields.keys() {
        if !changeable.contains(&key.as_str()) {
            errors.push(FieldError::new(
                key.clone(),
                "NOT_CHANGEABLE",
                format!("only {} can be changed", changeable.join(", ")),
            ));
        }
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

/// Deepest nesting of objects and arrays accepted in a client's JSON value (`data`,
/// `metadata`). One limit, checked where the value is accepted, far enough below the JSON
/// parsers' own limit (128) that every message and record wrapping such a value stays readable.
pub const MAX_JSON_DEPTH: usize = 64;

/// Levels of nesting: a scalar is 0, `{}` and `[]` are 1, `{"a": []}` is 2.
pub fn json_depth(value: &Value) -> usize {
    // Iterative: depth is what is being measured, so it must not be what limits the measuring.
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    deepest
}

/// `TOO_DEEP` when `value` nests deeper than [`MAX_JSON_DEPTH`].
pub fn check_depth(field: &str, value: &Value) -> Result<(), FieldError> {
    let depth = json_depth(value);
    if depth > MAX_JSON_DEPTH {
        return Err(FieldError::new(
            field,
            "TOO_DEEP",
            format!("{field} nests {depth} levels of objects and arrays; the limit is {MAX_JSON_DEPTH}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> Value {
        let mut value = json!(1);
        for i in 0..levels {
            value = if i % 2 == 0 { json!([value]) } else { json!({ "k": value }) };
        }
        value
    }

    #[test]
    fn depth_counts_objects_and_arrays() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!({})), 1);
        assert_eq!(json_depth(&json!({"a": [], "b": {"c": [1]}})), 3);
        assert_eq!(json_depth(&nested(64)), 64);
        assert!(check_depth("data", &nested(64)).is_ok());
        assert_eq!(check_depth("data", &nested(65)).unwrap_err().code, "TOO_DEEP");
    }
}
