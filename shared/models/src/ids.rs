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

/// Which of `shards` write shards a record with this id belongs to: a hash of the whole id, not
/// its low bits, so a client choosing its ids (sequential, or all ending alike) cannot pile
/// them onto one shard by accident. (A client set on it could still search for ids that hash
/// alike, about `shards` tries each; per-tenant rate limits bound what that buys.)
pub fn shard_of(id: &Uuid, shards: u32) -> u32 {
    // SplitMix64 finaliser over both halves: cheap, and every input bit moves every output bit.
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let (high, low) = id.as_u64_pair();
    (mix(high ^ mix(low)) % u64::from(shards.max(1))) as u32
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
    fn ids_chosen_with_equal_low_bits_still_spread() {
        // Sequential ids, and ids whose low bits are all zero (what `id mod N` sharded on).
        let mut sequential = [0u32; 16];
        let mut zero_low = [0u32; 16];
        for n in 0..16_000u128 {
            sequential[shard_of(&Uuid::from_u128(n), 16) as usize] += 1;
            zero_low[shard_of(&Uuid::from_u128(n << 64), 16) as usize] += 1;
        }
        for counts in [sequential, zero_low] {
            assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
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
