//! Ids that a request with an `Idempotency-Key` creates are derived from the key, so a rerun of
//! the same request (after its holder died and the lock was taken over) creates the *same*
//! records, which it then finds stored (duplicates), instead of new ones under fresh ids.
//!
//! The ids stay UUID v7, time-ordered like every other id: the timestamp is the moment the key
//! was first taken (kept in the idempotency record across takeovers), the random bits a digest
//! of tenant, key, that moment and the id's position in the request. Without a key, or outside
//! a keyed request, [`id_for`] is a fresh random v7 id.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What the ids of one keyed request derive from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdSeed {
    pub tenant: String,
    pub key_hash: String,
    /// When the key was first taken (Unix milliseconds).
    pub taken_ms: u64,
}

/// Position of a job's own id (item ids use the item's index).
pub const JOB_ID_POSITION: u64 = u64::MAX;

tokio::task_local! {
    static SEED: IdSeed;
}

/// Runs `work` with `seed` (none: fresh ids).
pub async fn scope<F: std::future::Future>(seed: Option<IdSeed>, work: F) -> F::Output {
    match seed {
        Some(seed) => SEED.scope(seed, work).await,
        None => work.await,
    }
}

/// The id of the record at `position` in the current request.
pub fn id_for(position: u64) -> Uuid {
    SEED.try_with(|seed| derive(seed, position)).unwrap_or_else(|_| argus_models::ids::new_id())
}

/// The seed of one part of the current keyed request (a `POST /batch` sub-request, by its
/// id): each part derives its own ids, still the same on a rerun. `None` outside a keyed request.
pub fn child_seed(part: &str) -> Option<IdSeed> {
    SEED.try_with(|seed| IdSeed {
        key_hash: hex::encode(Sha256::digest(format!("{}\n{part}", seed.key_hash).as_bytes())),
        ..seed.clone()
    })
    .ok()
}

/// Whether ids are derived here (a keyed request).
pub fn is_keyed() -> bool {
    SEED.try_with(|_| ()).is_ok()
}

pub fn derive(seed: &IdSeed, position: u64) -> Uuid {
    let digest =
        Sha256::digest(format!("{}\n{}\n{}\n{position}", seed.tenant, seed.key_hash, seed.taken_ms).as_bytes());
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(seed.taken_ms, &random).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keyed_ids_repeat_per_position_and_stay_time_ordered_v7() {
        let seed = IdSeed { tenant: "acme".into(), key_hash: "k".into(), taken_ms: 1_764_000_000_000 };
        let (a, b) = scope(Some(seed.clone()), async { (id_for(0), id_for(1)) }).await;
        let again = scope(Some(seed.clone()), async { id_for(0) }).await;
        assert_eq!(a, again, "a rerun derives the same id");
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 7);
        let later = IdSeed { taken_ms: seed.taken_ms + 1, ..seed.clone() };
        assert!(derive(&later, 0) > a, "ordered by the time the key was taken");
        let other_tenant = IdSeed { tenant: "other".into(), ..seed.clone() };
        assert_ne!(derive(&other_tenant, 0), a);
        assert_ne!(id_for(0), id_for(0), "outside a keyed request: fresh ids");
        let (a_part, b_part, a_again) = scope(Some(seed.clone()), async {
            let a = scope(child_seed("a"), async { id_for(0) }).await;
            let b = scope(child_seed("b"), async { id_for(0) }).await;
            let a_again = scope(child_seed("a"), async { id_for(0) }).await;
            (a, b, a_again)
        })
        .await;
        assert_ne!(a_part, b_part, "each part of a request its own ids");
        assert_eq!(a_part, a_again);
        assert_eq!(child_seed("a"), None);
    }
}
