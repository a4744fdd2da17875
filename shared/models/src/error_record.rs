//! Error records: what became of an accepted event that could not be stored. Nothing accepted
//! is silently lost: it ends as an event or as one of these.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub id: Uuid,
    #[serde(default)]
    pub event_id: Option<Uuid>,
    #[serde(default)]
    pub session_id: Option<Uuid>,
    /// The first violation's code; `details.violations` lists them all.
    pub code: String,
    pub message: String,
    pub details: Map<String, Value>,
    /// The event as the client sent it (or the raw message, for one that did not parse).
    pub payload: Value,
    pub created_at: String,
}

/// Codes of error records.
pub mod codes {
    pub const DATA_EMPTY: &str = "DATA_EMPTY";
    pub const DATA_NOT_OBJECT: &str = "DATA_NOT_OBJECT";
    pub const TIMESTAMP_IN_FUTURE: &str = "TIMESTAMP_IN_FUTURE";
    pub const SESSION_NOT_FOUND: &str = "SESSION_NOT_FOUND";
    /// The timestamp is older than its stream's `retention_days`.
    pub const TIMESTAMP_BEYOND_RETENTION: &str = "TIMESTAMP_BEYOND_RETENTION";
    /// The id was already used by an event with different content.
    pub const ID_CONFLICT: &str = "ID_CONFLICT";
    /// A queue message that is not an Argus event message.
    pub const MALFORMED_MESSAGE: &str = "MALFORMED_MESSAGE";
}
