//! Record ids: UUID v7, so ids sort by creation time and can serve as sort keys.

use uuid::Uuid;

use crate::validation::FieldError;

/// A new time-ordered id for a record created now.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// Parses a client-supplied UUID (any version) in its hyphenated form.
pub fn parse_uuid(field: &str, raw: &str) -> Result<Uuid, FieldError> {
    // `Uuid::parse_str` also accepts braced/urn forms; we only take the canonical form so the
    // id a client sends is the id it gets back.
    if raw.len() != 36 {
        return Err(FieldError::new(field, "INVALID_UUID", "must be a UUID like 0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b"));
    }
    Uuid::try_parse(raw)
        .map_err(|_| FieldError::new(field, "INVALID_UUID", "must be a UUID like 0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b"))
}

/// Which of `shards` write shards a record with this id belongs to. Uses the low bits, which
/// are random in v4 and v7 ids, so records spread evenly whatever their creation time.
pub fn shard_of(id: &Uuid, shards: u32) -> u32 {
    (id.as_u128() % u128::from(shards.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_ids_sort_by_creation() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.get_version_num(), 7);
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn parse_rejects_non_canonical_forms() {
        assert!(parse_uuid("id", "0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b").is_ok());
        for bad in [
            "",
            "nope",
            "{0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b}",
            "0190f0a25f5e7c3a9a1b2c3d4e5f6a7b",
            "0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7g",
        ] {
            let err = parse_uuid("id", bad).unwrap_err();
            assert_eq!(err.field, "id");
        }
    }

    #[test]
    fn shards_spread_evenly() {
        let mut counts = [0u32; 8];
        for _ in 0..8000 {
            counts[shard_of(&new_id(), 8) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }
}
