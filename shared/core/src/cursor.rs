//! Opaque pagination cursors: base64url of a small JSON document. Clients must not build them;
//! a cursor that does not decode is a 400, never a 500.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{de::DeserializeOwned, Serialize};

use crate::ServiceError;

pub fn encode<T: Serialize>(position: &T) -> String {
    // Serializing a plain struct of strings cannot fail.
    let json = serde_json::to_vec(position).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

pub fn decode<T: DeserializeOwned>(raw: &str) -> Result<T, ServiceError> {
    let invalid = || ServiceError::bad_request("INVALID_CURSOR", "cursor is not one this API returned");
    if raw.len() > 2048 {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw.as_bytes()).map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Pos {
        before: String,
    }

    #[test]
    fn round_trip_and_garbage() {
        let pos = Pos { before: "x#1".into() };
        assert_eq!(decode::<Pos>(&encode(&pos)).unwrap(), pos);
        for bad in ["", "!!!", "e30", &"A".repeat(3000)] {
            assert!(
                matches!(decode::<Pos>(bad), Err(ServiceError::BadRequest { code: "INVALID_CURSOR", .. })),
                "{bad}"
            );
        }
    }
}
