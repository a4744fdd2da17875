//! Pages of listings.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::ServiceError;

pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

/// `{"items": [...], "next_cursor": null | "<opaque>"}`
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Validates the `limit` query parameter: 1..=MAX_PAGE, default DEFAULT_PAGE.
pub fn parse_limit(raw: Option<&str>) -> Result<usize, ServiceError> {
    match raw {
        None => Ok(DEFAULT_PAGE),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(ServiceError::BadRequest {
                code: "INVALID_LIMIT",
                message: format!("limit must be an integer from 1 to {MAX_PAGE}"),
                details: Map::from_iter([("field".to_string(), Value::from("limit"))]),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_bounds() {
        assert_eq!(parse_limit(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(parse_limit(Some("1")).unwrap(), 1);
        assert_eq!(parse_limit(Some("1000")).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "ten", "", "1e3"] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
