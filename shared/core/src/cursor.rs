//! Opaque pagination cursors: base64url of a small JSON document naming its listing, the
//! position, and a check value. Clients must not build them; a cursor that does not decode, was
//! altered, or comes from another listing is a 400 `INVALID_CURSOR`, never a 500.
//!
//! The check value is a digest, not a secret MAC: it catches corrupted or hand-edited cursors.
//! A deliberately forged one still only names a position, and positions are checked too (no
//! empty or oversize key values, which DynamoDB would refuse).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ServiceError;

/// Longest position value accepted (sort keys here are far shorter).
const MAX_POSITION_VALUE: usize = 512;

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The listing this cursor belongs to.
    l: String,
    /// The position.
    p: Value,
    /// Check value over `l` and `p`.
    c: String,
}

fn check_value(listing: &str, position: &Value) -> String {
    let digest = Sha256::digest(format!("argus-cursor\n{listing}\n{position}").as_bytes());
    hex::encode(&digest[..8])
}

pub fn encode<T: Serialize>(listing: &str, position: &T) -> String {
    // Serializing a plain struct of strings cannot fail.
    let p = serde_json::to_value(position).unwrap_or(Value::Null);
    let envelope = Envelope { l: listing.to_string(), c: check_value(listing, &p), p };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&envelope).unwrap_or_default())
}

pub fn decode<T: DeserializeOwned>(listing: &str, raw: &str) -> Result<T, ServiceError> {
    let invalid = || ServiceError::bad_request("INVALID_CURSOR", "cursor is not one this listing returned");
    if raw.is_empty() || raw.len() > 2048 {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw.as_bytes()).map_err(|_| invalid())?;
    let envelope: Envelope = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if envelope.l != listing || envelope.c != check_value(listing, &envelope.p) {
        return Err(invalid());
    }
    let fields_ok = envelope.p.as_object().is_some_and(|fields| {
        fields.values().all(|v| {
            v.as_str().is_some_and(|s| !s.is_empty() && s.len() <= MAX_POSITION_VALUE && !s.contains(char::is_control))
        })
    });
    if !fields_ok {
        return Err(invalid());
    }
    serde_json::from_value(envelope.p).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Pos {
        before: String,
    }

    fn forge(listing: &str, p: Value, c: Option<&str>) -> String {
        let c = c.map(str::to_string).unwrap_or_else(|| check_value(listing, &p));
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&Envelope { l: listing.into(), p, c }).unwrap())
    }

    #[test]
    fn round_trip_garbage_tampering_and_other_listings() {
        let pos = Pos { before: "x#1".into() };
        assert_eq!(decode::<Pos>("events", &encode("events", &pos)).unwrap(), pos);
        let invalid =
            |r: Result<Pos, ServiceError>| matches!(r, Err(ServiceError::BadRequest { code: "INVALID_CURSOR", .. }));
        for bad in ["", "!!!", "e30", "eyJ4IjoxfQ", &"A".repeat(3000)] {
            assert!(invalid(decode::<Pos>("events", bad)), "{bad}");
        }
        // Another listing's cursor.
        assert!(invalid(decode::<Pos>("sessions", &encode("events", &pos))));
        // Edited position with the old check value.
        assert!(invalid(decode::<Pos>("events", &forge("events", serde_json::json!({"before": "y"}), Some("00")))));
        // Forged with a right check value, but a position DynamoDB would refuse.
        for p in [
            serde_json::json!({"before": ""}),
            serde_json::json!({"before": 5}),
            serde_json::json!({"before": "a\u{0}"}),
        ] {
            assert!(invalid(decode::<Pos>("events", &forge("events", p.clone(), None))), "{p}");
        }
        assert!(invalid(decode::<Pos>(
            "events",
            &forge("events", serde_json::json!({"before": "x".repeat(600)}), None)
        )));
    }
}
