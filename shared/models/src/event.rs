//! Events: who did what, when, in which session.
//!
//! Two levels of checking, as in the_eye:
//! - the **shape** ([`EventInput::parse`]) is checked synchronously at ingestion: required fields,
//!   types, lengths, timestamp syntax, size. A shape error is a 400 and nothing is queued.
//! - the **content** ([`content_violations`]) is checked by the processor (and synchronously by
//!   PUT/PATCH/bulk): `data` a non-empty object, `timestamp` not in the future. A content error
//!   becomes an error record, never a silently dropped event.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ids::parse_uuid;
use crate::validation::{body_object, check_depth, json_type_name, reject_unchangeable, FieldError, ValidationError};

pub const MAX_CATEGORY_LEN: usize = 50;
pub const MAX_NAME_LEN: usize = 150;
pub const MAX_STREAM_LEN: usize = crate::stream::MAX_STREAM_ID_LEN;
pub const DEFAULT_STREAM: &str = "default";
/// Largest event we store (its JSON form): far below DynamoDB's 400 KB item limit, and small
/// enough that SQS messages and 10,000-item bulk requests stay within their limits.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Client clocks run fast: a timestamp up to this far after `received_at` is accepted.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 60;

/// A shape-valid event as a client sent it, normalized (session form, timestamp in UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInput {
    /// Client-supplied id (idempotent retries), else assigned at ingestion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// Required on the_eye's routes (`parse`); DataStream's events have none (`crate::datastream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    /// Required on the_eye's routes; optional on DataStream's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub name: String,
    /// Any JSON value here: whether it is a non-empty object is a content rule.
    pub data: Value,
    pub timestamp: DateTime<Utc>,
    pub stream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// The timestamp as the client sent it, when `sent_at` corrected it (`apply_sent_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_timestamp: Option<DateTime<Utc>>,
}

/// A stored event as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: Uuid,
    /// `null` for an event that arrived without a session (DataStream's routes).
    pub session_id: Option<Uuid>,
    /// `null` for an event that arrived without a category.
    pub category: Option<String>,
    pub name: String,
    pub data: Value,
    pub timestamp: String,
    pub stream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    pub received_at: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    /// The timestamp the client sent, when its `sent_at` corrected it (`timestamp` is then the
    /// corrected one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_timestamp: Option<String>,
}

/// The client's clock at sending, from a body's `sent_at` (absent: `None`).
pub fn parse_sent_at(body: &Value) -> Result<Option<DateTime<Utc>>, ValidationError> {
    match body.get("sent_at") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(raw)) => Ok(Some(crate::time::parse("sent_at", raw)?)),
        Some(other) => Err(ValidationError::single(type_error("sent_at", "a timestamp string", other))),
    }
}

impl EventInput {
    /// Corrects a client clock (Segment's rule): `timestamp = received_at - (sent_at - timestamp)`,
    /// keeping what the client sent in `client_timestamp`. The event's place in time relative to
    /// the sending is kept; the client clock's offset is removed.
    pub fn apply_sent_at(&mut self, sent_at: &DateTime<Utc>, received_at: &DateTime<Utc>) -> Result<(), FieldError> {
        let skew = received_at.signed_duration_since(*sent_at);
        let corrected = self.timestamp.checked_add_signed(skew).filter(crate::time::representable);
        let Some(corrected) = corrected else {
            return Err(FieldError::new(
                "sent_at",
                "INVALID_SENT_AT",
                "sent_at is so far from the time of receipt that the corrected timestamp is out of range",
            ));
        };
        self.client_timestamp = Some(self.client_timestamp.unwrap_or(self.timestamp));
        self.timestamp = corrected;
        Ok(())
    }

    /// Checks the shape of one event. Reports every problem, each naming its field.
    /// Accepts the_eye's `"session": {"id": …}` as well as `"session_id"`.
    pub fn parse(value: &Value) -> Result<Self, ValidationError> {
        let fields = body_object(value, "an event is a JSON object")?;
        let mut errors = ValidationError::default();
        // Every field, unknown ones too: the whole event travels in the queue message.
        check_depths(fields, &mut errors);

        let id = match fields.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(raw)) => parse_uuid("id", raw).map_err(|e| errors.push(e)).ok(),
            Some(other) => {
                errors.push(type_error("id", "a UUID string", other));
                None
            }
        };
        let session_id = session_id(fields, &mut errors);
        let category = bounded_string(fields, "category", MAX_CATEGORY_LEN, true, &mut errors);
        let name = bounded_string(fields, "name", MAX_NAME_LEN, true, &mut errors);
        let stream = stream_field(fields, "stream", false, &mut errors);
        let data = match fields.get("data") {
            None => {
                errors.push(FieldError::new("data", "REQUIRED", "data is required"));
                None
            }
            Some(value) => Some(value.clone()),
        };
        let timestamp = match fields.get("timestamp") {
            None | Some(Value::Null) => {
                errors.push(FieldError::new("timestamp", "REQUIRED", "timestamp is required"));
                None
            }
            Some(Value::String(raw)) => crate::time::parse("timestamp", raw).map_err(|e| errors.push(e)).ok(),
            Some(other) => {
                errors.push(type_error("timestamp", "a timestamp string", other));
                None
            }
        };
        let metadata = optional_object(fields, "metadata", &mut errors);

        if errors.is_empty() {
            let event = Self {
                id,
                session_id,
                category,
                name: name.unwrap_or_default(),
                data: data.unwrap_or(Value::Null),
                timestamp: timestamp.unwrap_or_default(),
                stream: stream.unwrap_or_else(|| DEFAULT_STREAM.to_string()),
                metadata,
                client_timestamp: None,
            };
            match check_size(&event) {
                Ok(()) => return Ok(event),
                Err(err) => errors.push(err),
            }
        }
        Err(errors)
    }

    /// Bytes of the event's JSON form, the measure of `MAX_EVENT_BYTES`.
    pub fn stored_size(&self) -> usize {
        serde_json::to_vec(self).map(|v| v.len()).unwrap_or(usize::MAX)
    }
}

/// `MAX_EVENT_BYTES`, measured on the event's JSON form.
pub(crate) fn check_size(event: &EventInput) -> Result<(), FieldError> {
    let size = event.stored_size();
    if size > MAX_EVENT_BYTES {
        return Err(FieldError::new(
            "data",
            "TOO_LARGE",
            format!("the event is {size} bytes as JSON; the limit is {MAX_EVENT_BYTES}"),
        ));
    }
    Ok(())
}

/// A stream id field: optional or required, checked by `crate::stream::check_stream_id`.
pub(crate) fn stream_field(
    fields: &Map<String, Value>,
    field: &str,
    required: bool,
    errors: &mut ValidationError,
) -> Option<String> {
    match fields.get(field) {
        None | Some(Value::Null) => {
            if required {
                errors.push(FieldError::new(field, "REQUIRED", format!("{field} is required")));
            }
            None
        }
        Some(Value::String(raw)) => crate::stream::check_stream_id(field, raw).map_err(|e| errors.push(e)).ok(),
        Some(other) => {
            errors.push(type_error(field, "a string", other));
            None
        }
    }
}

/// Content rules (the_eye's): `data` a non-empty object, `timestamp` at most
/// `MAX_CLOCK_SKEW_SECONDS` after `received_at`. Every violation is reported.
pub fn content_violations(data: &Value, timestamp: &DateTime<Utc>, received_at: &DateTime<Utc>) -> Vec<FieldError> {
    let mut violations = Vec::new();
    match data {
        Value::Object(map) if map.is_empty() => {
            violations.push(FieldError::new("data", "DATA_EMPTY", "data must not be empty"));
        }
        Value::Object(_) => {}
        other => violations.push(FieldError::new(
            "data",
            "DATA_NOT_OBJECT",
            format!("data must be a JSON object, got {}", json_type_name(other)),
        )),
    }
    if *timestamp > *received_at + Duration::seconds(MAX_CLOCK_SKEW_SECONDS) {
        violations.push(FieldError::new(
            "timestamp",
            "TIMESTAMP_IN_FUTURE",
            format!(
                "timestamp {} is after the time it was received ({}) by more than {MAX_CLOCK_SKEW_SECONDS} s",
                crate::time::format(timestamp),
                crate::time::format(received_at)
            ),
        ));
    }
    violations
}

/// Changes to a stored event: `PUT` replaces all five fields (`metadata` may be omitted to
/// clear it), `PATCH` any subset. Identity (`id`, `session_id`) and server fields cannot change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventChanges {
    /// Sets the category (none can be cleared: the_eye's events always have one).
    pub category: Option<String>,
    pub name: Option<String>,
    pub data: Option<Value>,
    pub timestamp: Option<DateTime<Utc>>,
    /// `Some(None)` clears metadata.
    pub metadata: Option<Option<Map<String, Value>>>,
}

const CHANGEABLE: [&str; 5] = ["category", "name", "data", "timestamp", "metadata"];

impl EventChanges {
    pub fn parse(value: &Value, replace: bool) -> Result<Self, ValidationError> {
        let fields = body_object(value, "expected a JSON object")?;
        let mut errors = ValidationError::default();
        check_depths(fields, &mut errors);
        reject_unchangeable(fields, &CHANGEABLE, &mut errors);
        let mut changes = Self {
            category: bounded_string(fields, "category", MAX_CATEGORY_LEN, replace, &mut errors),
            name: bounded_string(fields, "name", MAX_NAME_LEN, replace, &mut errors),
            ..Self::default()
        };
        match fields.get("data") {
            None if replace => errors.push(FieldError::new("data", "REQUIRED", "data is required")),
            None => {}
            Some(data) => changes.data = Some(data.clone()),
        }
        match fields.get("timestamp") {
            None | Some(Value::Null) if replace => {
                errors.push(FieldError::new("timestamp", "REQUIRED", "timestamp is required"))
            }
            None => {}
            Some(Value::String(raw)) => {
                changes.timestamp = crate::time::parse("timestamp", raw).map_err(|e| errors.push(e)).ok()
            }
            Some(other) => errors.push(type_error("timestamp", "a timestamp string", other)),
        }
        if replace || fields.contains_key("metadata") {
            changes.metadata = Some(optional_object(fields, "metadata", &mut errors));
        }
        if !replace && fields.is_empty() {
            errors.push(FieldError::new("body", "EMPTY_PATCH", "name at least one field to change"));
        }
        errors.into_result()?;
        Ok(changes)
    }

    /// The event as it would be after these changes.
    pub fn apply(&self, event: &Event) -> Event {
        let mut next = event.clone();
        if let Some(category) = &self.category {
            next.category = Some(category.clone());
        }
        if let Some(name) = &self.name {
            next.name = name.clone();
        }
        if let Some(data) = &self.data {
            next.data = data.clone();
        }
        if let Some(timestamp) = &self.timestamp {
            next.timestamp = crate::time::format(timestamp);
        }
        if let Some(metadata) = &self.metadata {
            next.metadata = metadata.clone();
        }
        next
    }
}

pub(crate) fn type_error(field: &str, expected: &str, got: &Value) -> FieldError {
    FieldError::new(field, "INVALID_TYPE", format!("expected {expected}, got {}", json_type_name(got)))
}

fn session_id(fields: &Map<String, Value>, errors: &mut ValidationError) -> Option<Uuid> {
    match (fields.get("session_id"), fields.get("session")) {
        (Some(Value::String(raw)), _) => parse_uuid("session_id", raw).map_err(|e| errors.push(e)).ok(),
        (Some(other), _) if !other.is_null() => {
            errors.push(type_error("session_id", "a UUID string", other));
            None
        }
        (_, Some(Value::Object(session))) => match session.get("id") {
            Some(Value::String(raw)) => parse_uuid("session.id", raw).map_err(|e| errors.push(e)).ok(),
            Some(other) => {
                errors.push(type_error("session.id", "a UUID string", other));
                None
            }
            None => {
                errors.push(FieldError::new("session.id", "REQUIRED", "session.id is required"));
                None
            }
        },
        // the_eye also accepts the session's id directly as `session`.
        (_, Some(Value::String(raw))) => parse_uuid("session", raw).map_err(|e| errors.push(e)).ok(),
        (_, Some(other)) if !other.is_null() => {
            errors.push(type_error("session", "an object {\"id\": …}", other));
            None
        }
        _ => {
            errors.push(FieldError::new("session_id", "REQUIRED", "session_id (or session.id) is required"));
            None
        }
    }
}

pub(crate) fn bounded_string(
    fields: &Map<String, Value>,
    field: &str,
    max_chars: usize,
    required: bool,
    errors: &mut ValidationError,
) -> Option<String> {
    match fields.get(field) {
        None | Some(Value::Null) => {
            if required {
                errors.push(FieldError::new(field, "REQUIRED", format!("{field} is required")));
            }
            None
        }
        Some(Value::String(text)) => {
            let chars = text.chars().count();
            if chars == 0 || chars > max_chars {
                errors.push(FieldError::new(
                    field,
                    "INVALID_LENGTH",
                    format!("{field} must be 1 to {max_chars} characters, got {chars}"),
                ));
                None
            } else if text.chars().any(char::is_control) {
                errors.push(FieldError::new(
                    field,
                    "INVALID_CHARACTERS",
                    format!("{field} must not contain control characters"),
                ));
                None
            } else {
                Some(text.clone())
            }
        }
        Some(other) => {
            errors.push(type_error(field, "a string", other));
            None
        }
    }
}

pub(crate) fn check_depths(fields: &Map<String, Value>, errors: &mut ValidationError) {
    for (key, value) in fields {
        if let Err(err) = check_depth(key, value) {
            errors.push(err);
        }
    }
}

pub(crate) fn optional_object(
    fields: &Map<String, Value>,
    field: &str,
    errors: &mut ValidationError,
) -> Option<Map<String, Value>> {
    match fields.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(other) => {
            errors.push(type_error(field, "an object", other));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SID: &str = "0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b";

    #[test]
    fn the_eye_sample_payload_is_accepted() {
        let event = EventInput::parse(&json!({
            "session": {"id": SID},
            "category": "page",
            "name": "view",
            "data": {"path": "/home"},
            "timestamp": "2021-06-15 00:00:00"
        }))
        .unwrap();
        assert_eq!(event.session_id.map(|s| s.to_string()).as_deref(), Some(SID));
        assert_eq!(crate::time::format(&event.timestamp), "2021-06-15T00:00:00.000Z");
        assert_eq!(event.stream, "default");
        assert_eq!(event.id, None);
    }

    #[test]
    fn every_shape_error_names_its_field() {
        let err = EventInput::parse(&json!({
            "id": "nope",
            "session_id": 5,
            "category": "",
            "name": "x".repeat(151),
            "timestamp": "soon",
            "stream": ["a"],
            "metadata": "m"
        }))
        .unwrap_err();
        let fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["id", "session_id", "category", "name", "stream", "data", "timestamp", "metadata"]);
        assert_eq!(EventInput::parse(&json!([])).unwrap_err().errors[0].field, "body");
        let missing = EventInput::parse(&json!({})).unwrap_err();
        assert!(missing.errors.iter().all(|e| e.code == "REQUIRED"));
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let ok = json!({"session_id": SID, "category": "é".repeat(50), "name": "n", "data": {"a": 1}, "timestamp": "2021-06-15T00:00:00Z"});
        assert!(EventInput::parse(&ok).is_ok());
        let bad = json!({"session_id": SID, "category": "é".repeat(51), "name": "n", "data": {"a": 1}, "timestamp": "2021-06-15T00:00:00Z"});
        assert_eq!(EventInput::parse(&bad).unwrap_err().errors[0].code, "INVALID_LENGTH");
        let control = json!({"session_id": SID, "category": "a\u{0}b", "name": "n", "data": {}, "timestamp": "2021-06-15T00:00:00Z"});
        assert_eq!(EventInput::parse(&control).unwrap_err().errors[0].code, "INVALID_CHARACTERS");
    }

    #[test]
    fn oversize_event_is_rejected() {
        let big = json!({"session_id": SID, "category": "c", "name": "n", "data": {"blob": "x".repeat(MAX_EVENT_BYTES)}, "timestamp": "2021-06-15T00:00:00Z"});
        assert_eq!(EventInput::parse(&big).unwrap_err().errors[0].code, "TOO_LARGE");
    }

    #[test]
    fn content_rules_report_every_violation() {
        let received = crate::time::parse("t", "2026-01-01T00:00:00Z").unwrap();
        let future = received + Duration::seconds(61);
        let codes =
            |data: Value, ts| content_violations(&data, &ts, &received).into_iter().map(|v| v.code).collect::<Vec<_>>();
        assert_eq!(codes(json!({}), future), ["DATA_EMPTY", "TIMESTAMP_IN_FUTURE"]);
        assert_eq!(codes(json!([1]), received), ["DATA_NOT_OBJECT"]);
        assert_eq!(codes(json!(null), received), ["DATA_NOT_OBJECT"]);
        assert!(codes(json!({"a": 1}), received + Duration::seconds(60)).is_empty());
    }

    #[test]
    fn changes_put_requires_all_patch_any() {
        assert!(EventChanges::parse(&json!({"name": "x"}), true).is_err());
        let patch = EventChanges::parse(&json!({"name": "x"}), false).unwrap();
        assert_eq!(patch.name.as_deref(), Some("x"));
        assert_eq!(patch.metadata, None);
        let err = EventChanges::parse(&json!({"session_id": SID}), false).unwrap_err();
        assert_eq!(err.errors[0].code, "NOT_CHANGEABLE");
        assert_eq!(EventChanges::parse(&json!({}), false).unwrap_err().errors[0].code, "EMPTY_PATCH");
        let put = EventChanges::parse(
            &json!({"category": "c", "name": "n", "data": {"a": 1}, "timestamp": "2021-06-15 00:00:00"}),
            true,
        )
        .unwrap();
        assert_eq!(put.metadata, Some(None));
    }
}
