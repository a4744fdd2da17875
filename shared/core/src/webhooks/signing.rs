//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
//! keyed with the secret's bytes (`whsec_` + base64). Verified in the tests by the
//! specification's reference library, not by this code.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ServiceError;
use argus_models::webhook::{decode_base64, SECRET_PREFIX};

/// A new secret: 32 random bytes.
pub fn generate_secret() -> Result<String, ServiceError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ServiceError::Internal(format!("no randomness: {e}")))?;
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
}

/// One `v1,` signature of a message with one secret.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> Result<String, ServiceError> {
    let key = secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(decode_base64)
        .ok_or_else(|| ServiceError::Internal("a stored webhook secret does not decode".into()))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| ServiceError::Internal(e.to_string()))?;
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// The `webhook-signature` header: one signature per active secret, space-separated (during a
/// rotation the receiver may hold either secret).
pub fn signature_header(secrets: &[&str], msg_id: &str, timestamp: i64, body: &str) -> Result<String, ServiceError> {
    let signatures: Result<Vec<String>, ServiceError> =
        secrets.iter().map(|secret| sign(secret, msg_id, timestamp, body)).collect();
    Ok(signatures?.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specification_example() {
        // The example in the Standard Webhooks specification (its README and test suites).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        let signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let secret = generate_secret().unwrap();
        assert!(argus_models::webhook::check_secret("s", &secret).is_ok());
    }
}
