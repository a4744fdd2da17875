//! DataStream Pro's event shape, mapped onto Argus's one event model, so that a client written
//! for DataStream works against Argus by changing its base URL.
//!
//! | DataStream      | Argus                     |
//! |-----------------|---------------------------|
//! | `stream_id`     | `stream`                  |
//! | `event_type`    | `name`                    |
//! | `event_id`      | `id` (client-chosen, optional: idempotent retries) |
//! | `timestamp`     | `timestamp` (optional here: the time received)     |
//! | `data`          | `data`                    |
//! | `metadata`      | `metadata`                |
//! | (none)          | `session_id`, `category`: optional, `null` when absent |

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::event::{
    bounded_string, check_depths, check_size, optional_object, stream_field, type_error, EventInput, MAX_CATEGORY_LEN,
    MAX_NAME_LEN,
};
use crate::ids::parse_uuid;
use crate::validation::{body_object, FieldError, ValidationError};

/// Parses one DataStream event. `default_stream`: the `stream_id` of a batch, used when the
/// item names none (an item's own `stream_id` wins). `received`: the timestamp of an event
/// that has none.
pub fn parse_event(
    value: &Value,
    default_stream: Option<&str>,
    received: &DateTime<Utc>,
) -> Result<EventInput, ValidationError> {
    let fields = body_object(value, "an event is a JSON object")?;
    let mut errors = ValidationError::default();
    check_depths(fields, &mut errors);
    let id = optional_uuid(fields, "event_id", &mut errors);
    let session_id = optional_uuid(fields, "session_id", &mut errors);
    let stream = stream_field(fields, "stream_id", default_stream.is_none(), &mut errors)
        .or_else(|| default_stream.map(str::to_string));
    let name = bounded_string(fields, "event_type", MAX_NAME_LEN, true, &mut errors);
    let category = bounded_string(fields, "category", MAX_CATEGORY_LEN, false, &mut errors);
    let data = match fields.get("data") {
        None => {
            errors.push(FieldError::new("data", "REQUIRED", "data is required"));
            None
        }
        Some(value) => Some(value.clone()),
    };
    let timestamp = match fields.get("timestamp") {
        // A client id makes retries idempotent only if a retry is the same event: a timestamp
        // taken from each retry's arrival would make it another (ID_CONFLICT).
        None | Some(Value::Null) if id.is_some() => {
            errors.push(FieldError::new(
                "timestamp",
                "REQUIRED",
                "timestamp is required with event_id (a retry must be the same event)",
            ));
            None
        }
        None | Some(Value::Null) => Some(*received),
        Some(Value::String(raw)) => crate::time::parse("timestamp", raw).map_err(|e| errors.push(e)).ok(),
        Some(other) => {
            errors.push(type_error("timestamp", "a timestamp string", other));
            None
        }
    };
    let metadata = optional_object(fields, "metadata", &mut errors);
    errors.clone().into_result()?;
    let event = EventInput {
        id,
        session_id,
        category,
        name: name.unwrap_or_default(),
        data: data.unwrap_or(Value::Null),
        timestamp: timestamp.unwrap_or(*received),
        stream: stream.unwrap_or_default(),
        metadata,
        client_timestamp: None,
    };
    check_size(&event)?;
    Ok(event)
}

fn optional_uuid(fields: &Map<String, Value>, field: &str, errors: &mut ValidationError) -> Option<uuid::Uuid> {
    match fields.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(raw)) => parse_uuid(field, raw).map_err(|e| errors.push(e)).ok(),
        Some(other) => {
            errors.push(type_error(field, "a UUID string", other));
            None
        }
    }
}

/// A DataStream batch body, `{"stream_id", "events": [...]}`: the batch's stream and its items.
pub fn parse_batch(body: &Value) -> Result<(String, &[Value]), ValidationError> {
    let fields = body_object(body, "expected a JSON object")?;
    let mut errors = ValidationError::default();
    let stream = stream_field(fields, "stream_id", true, &mut errors);
    let events = match fields.get("events") {
        Some(Value::Array(items)) => Some(items.as_slice()),
        None | Some(Value::Null) => {
            errors.push(FieldError::new("events", "REQUIRED", "events is required"));
            None
        }
        Some(other) => {
            errors.push(type_error("events", "an array", other));
            None
        }
    };
    errors.into_result()?;
    Ok((stream.unwrap_or_default(), events.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn received() -> DateTime<Utc> {
        crate::time::parse("t", "2026-03-01T00:00:00Z").unwrap()
    }

    #[test]
    fn datastream_sample_maps_onto_the_event_model() {
        let event = parse_event(
            &json!({
                "stream_id": "user-events", "timestamp": "2026-02-28T23:59:00Z", "event_type": "page_view",
                "data": {"user_id": "u1", "page": "/home"}, "metadata": {"source": "web"}
            }),
            None,
            &received(),
        )
        .unwrap();
        assert_eq!(event.stream, "user-events");
        assert_eq!(event.name, "page_view");
        assert_eq!(event.session_id, None);
        assert_eq!(event.category, None);
        assert_eq!(event.id, None);
        assert_eq!(crate::time::format(&event.timestamp), "2026-02-28T23:59:00.000Z");
        assert_eq!(event.metadata.unwrap()["source"], "web");
    }

    #[test]
    fn optional_fields_and_batch_stream() {
        let id = "0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b";
        let event = parse_event(
            &json!({"event_type": "click", "data": {"a": 1}, "event_id": id, "session_id": id, "category": "ui", "timestamp": "2026-02-01T00:00:00Z"}),
            Some("batch-stream"),
            &received(),
        )
        .unwrap();
        assert_eq!(event.stream, "batch-stream");
        assert_eq!(event.id.unwrap().to_string(), id);
        assert_eq!(event.session_id.unwrap().to_string(), id);
        assert_eq!(event.category.as_deref(), Some("ui"));
        let own = parse_event(&json!({"stream_id": "own", "event_type": "x", "data": {}}), Some("b"), &received());
        let own = own.unwrap();
        assert_eq!((own.stream.as_str(), own.timestamp), ("own", received()), "no timestamp: the time received");
        let retry = parse_event(&json!({"event_id": id, "event_type": "x", "data": {}}), Some("b"), &received());
        assert_eq!(retry.unwrap_err().errors[0].field, "timestamp", "a client id needs a fixed timestamp");
    }

    #[test]
    fn errors_name_datastream_fields() {
        let err = parse_event(
            &json!({"event_id": 1, "stream_id": "a b", "event_type": "", "timestamp": 5, "metadata": []}),
            None,
            &received(),
        )
        .unwrap_err();
        let fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["event_id", "stream_id", "event_type", "data", "timestamp", "metadata"]);
        let missing = parse_event(&json!({}), None, &received()).unwrap_err();
        let fields: Vec<&str> = missing.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["stream_id", "event_type", "data"]);
        assert_eq!(parse_batch(&json!({"events": {}})).unwrap_err().errors.len(), 2);
        assert_eq!(parse_batch(&json!({"stream_id": "s", "events": [1]})).unwrap().1.len(), 1);
    }
}
