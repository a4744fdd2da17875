//! The invocation's deadline, for every AWS call made on its behalf.
//!
//! A handler runs its work inside [`scope`] with the Lambda deadline (less a reserve to build
//! the answer). Every AWS call of the services goes through [`bounded`]: it does not start once
//! the deadline has passed, and it is cut off (SDK attempts and SDK retries included) when the
//! deadline comes. The caller reports what was not done as retryable (503 `RETRY_LATER` per
//! item), so a throttled or slow DynamoDB can never make a function outlive its timeout.
//!
//! The deadline is task-local: futures joined in the same task (`join_all`,
//! `buffer_unordered`) see it; `tokio::spawn`ed tasks would not, and the services spawn none.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::ServiceError;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `work` with `deadline` as the deadline of every bounded call inside it (none: unbounded).
pub async fn scope<F: Future>(deadline: Option<Instant>, work: F) -> F::Output {
    match deadline {
        Some(deadline) => DEADLINE.scope(deadline, work).await,
        None => work.await,
    }
}

/// The current deadline, if the work runs inside a [`scope`] that set one.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// Time left before the deadline (`None`: no deadline).
pub fn remaining() -> Option<Duration> {
    current().map(|deadline| deadline.saturating_duration_since(Instant::now()))
}

/// Whether the deadline has passed.
pub fn expired() -> bool {
    remaining().is_some_and(|left| left.is_zero())
}

/// The error for work not done (or not known to be done) before the deadline: retryable.
pub fn out_of_time() -> ServiceError {
    ServiceError::Unavailable {
        component: "deadline",
        message: "not done before the function's deadline; retry".into(),
    }
}

/// Runs one AWS call within the time left: `Err` (retryable) without starting it when none is
/// left, or when it is still running at the deadline.
pub async fn bounded<F: Future>(call: F) -> Result<F::Output, ServiceError> {
    match remaining() {
        None => Ok(call.await),
        Some(left) if left.is_zero() => Err(out_of_time()),
        Some(left) => tokio::time::timeout(left, call).await.map_err(|_| out_of_time()),
    }
}

/// `call.within_deadline().await?` is [`bounded`]`(call).await?`, where a call chain reads
/// better with it (`.send().within_deadline().await?.map_err(...)`).
pub trait WithinDeadline: Future + Sized {
    fn within_deadline(self) -> impl Future<Output = Result<Self::Output, ServiceError>> {
        bounded(self)
    }
}

impl<F: Future> WithinDeadline for F {}

/// Sleeps for `delay`, or returns false at once if the deadline would pass first.
pub async fn sleep_within(delay: Duration) -> bool {
    if remaining().is_some_and(|left| left <= delay) {
        return false;
    }
    tokio::time::sleep(delay).await;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time (the deadline is a std Instant, which tokio's paused clock does not move).
    #[tokio::test]
    async fn calls_do_not_start_after_the_deadline_and_are_cut_off_at_it() {
        assert!(bounded(async { 1 }).await.is_ok(), "no deadline: unbounded");
        let deadline = Instant::now() + Duration::from_millis(300);
        scope(Some(deadline), async {
            let slow = bounded(tokio::time::sleep(Duration::from_secs(5))).await;
            assert!(matches!(slow, Err(ServiceError::Unavailable { component: "deadline", .. })));
            assert!(Instant::now() >= deadline && Instant::now() < deadline + Duration::from_millis(200));
            assert!(expired());
            let started = std::sync::atomic::AtomicBool::new(false);
            let late = bounded(async { started.store(true, std::sync::atomic::Ordering::SeqCst) }).await;
            assert!(late.is_err());
            assert!(!started.load(std::sync::atomic::Ordering::SeqCst), "nothing starts after the deadline");
            assert!(!sleep_within(Duration::from_millis(1)).await);
        })
        .await;
        assert_eq!(current(), None, "the scope ends with its work");
    }
}
