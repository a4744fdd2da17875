//! Tenant ids. Every stored key starts with the tenant, so the id alphabet excludes the `#`
//! that separates key parts.

use crate::validation::FieldError;

pub const MAX_TENANT_LEN: usize = 64;

pub fn validate_tenant_id(raw: &str) -> Result<(), FieldError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_TENANT_LEN
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && raw.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric);
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "tenant",
            "INVALID_TENANT",
            "tenant ids are 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_alphabet() {
        for ok in ["dev", "acme-co", "t_1", "0"] {
            assert!(validate_tenant_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Acme", "a#b", "-x", "a b", &"x".repeat(65)] {
            assert!(validate_tenant_id(bad).is_err(), "{bad}");
        }
    }
}
