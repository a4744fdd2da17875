//! EventBridge `Schedule` events, done locally: each scheduled function of the template is
//! invoked at its rate with its own backend and deadline, as the scheduler would.

use std::time::{Duration, Instant};

use crate::functions::Function;

/// Invokes `function` every `every` until the task is dropped.
pub async fn run(function: Function, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let deadline = Instant::now() + function.timeout();
        let invoked = tokio::time::timeout(
            function.timeout(),
            argus_api::dispatch::invoke_json(&function.spec.binary, &function.backend, "{}", Some(deadline)),
        )
        .await;
        match invoked {
            Ok(Ok(report)) => tracing::debug!(function = %function.spec.logical_id, %report, "scheduled run"),
            Ok(Err(err)) => tracing::warn!(function = %function.spec.logical_id, error = %err, "scheduled run failed"),
            Err(_) => tracing::warn!(function = %function.spec.logical_id, "scheduled run timed out"),
        }
    }
}
