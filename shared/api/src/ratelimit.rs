//! Rate limits at the HTTP layer: what each route charges, the 429 answer, and the
//! `RateLimit-*` headers on every authorised answer.
//!
//! A request is charged once. Most routes charge one request when the caller is authenticated
//! (`input::authenticated_caller`); single-event routes add one event to the same write. Bulk
//! routes know their item count only once the body is read, so they charge request and items
//! together then ([`charge`]); if such a handler answers before charging (a 400, a replayed
//! Idempotency-Key), the one request is charged after the fact, so nothing goes uncounted.

use std::future::Future;
use std::sync::Mutex;

use argus_core::ratelimit::{Admission, Charge, Refusal, Usage};
use argus_core::Backend;
use argus_models::limits::{LimitKind, WINDOW_SECONDS};
use lambda_http::{Body, Response};

use crate::input::Caller;
use crate::ApiError;

/// What a route charges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteCharge {
    /// One request, at authentication.
    Request,
    /// One request and one event, at authentication (single-event ingestion).
    RequestAndEvent,
    /// Charged by the handler once it knows the item count (bulk, jobs, `POST /batch`).
    Deferred,
}

/// The charge of a route of `routes::ROUTES`.
pub fn route_charge(method: &str, pattern: &str) -> RouteCharge {
    match (method, pattern) {
        ("POST", "/events") | ("POST", "/ingest/events") => RouteCharge::RequestAndEvent,
        ("POST", "/batch")
        | ("POST", "/batch/jobs")
        | ("POST", "/batch/events")
        | ("PATCH", "/batch/events")
        | ("DELETE", "/batch/events")
        | ("POST", "/batch/events/restore")
        | ("POST", "/ingest/batch") => RouteCharge::Deferred,
        _ => RouteCharge::Request,
    }
}

#[derive(Default)]
struct State {
    usage: Option<Usage>,
    /// A deferred route's caller not charged yet.
    pending: Option<Caller>,
}

tokio::task_local! {
    static STATE: Mutex<State>;
}

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> Option<T> {
    STATE.try_with(|state| state.lock().ok().map(|mut s| f(&mut s))).ok().flatten()
}

/// Runs one request's handler: settles a deferred charge it left, and puts the caller's
/// standing in the `RateLimit-*` headers of its answer. `work_deadline` is the request's
/// (`input::work_deadline`): the handler opens its own scope with it, and the deferred charge,
/// made after the handler returned, is bounded by it too.
pub async fn scoped(
    backend: &Backend,
    work_deadline: Option<std::time::Instant>,
    handler: impl Future<Output = Response<Body>>,
) -> Response<Body> {
    STATE
        .scope(Mutex::new(State::default()), async {
            let mut response = handler.await;
            if let Some(caller) = with_state(|s| s.pending.take()).flatten() {
                // The handler answered before charging: one request, admitted or not. Past the
                // deadline it is not made (the answer matters more than the count).
                let one = Charge { requests: 1, events: 0 };
                let _ = argus_core::deadline::scope(work_deadline, charge(backend, &caller, one)).await;
            }
            if let Some(usage) = with_state(|s| s.usage).flatten() {
                add_headers(&mut response, &usage);
            }
            response
        })
        .await
}

/// The caller's standing after this request's charge, if it was charged.
pub fn current_usage() -> Option<Usage> {
    with_state(|s| s.usage).flatten()
}

/// Marks a deferred route's caller: [`scoped`] charges one request if the handler does not.
pub fn defer(caller: &Caller) {
    with_state(|s| s.pending = Some(caller.clone()));
}

/// Charges `amount` to the caller, or refuses the request with 429 `RATE_LIMITED`. Sub-requests
/// of `POST /batch` are charged by it, not again one by one.
pub async fn charge(backend: &Backend, caller: &Caller, amount: Charge) -> Result<(), ApiError> {
    if caller.subrequest {
        return Ok(());
    }
    with_state(|s| s.pending = None);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    match argus_core::ratelimit::charge(backend, &caller.tenant, &caller.principal, caller.limits, amount, now).await? {
        Admission::Admitted(usage) => {
            with_state(|s| s.usage = Some(usage));
            Ok(())
        }
        Admission::Refused(refusal) => {
            let spent = Usage {
                limits: caller.limits,
                requests_used: refusal.requests_used,
                events_used: refusal.events_used,
                reset_seconds: refusal.reset_seconds,
            };
            with_state(|s| s.usage = Some(spent));
            Err(rate_limited(&refusal))
        }
    }
}

/// 429 with the limit passed, its value, the window and the seconds until it resets.
pub fn rate_limited(refusal: &Refusal) -> ApiError {
    let unit = match refusal.kind {
        LimitKind::Requests => "requests",
        LimitKind::Events => "events",
    };
    let message = if refusal.requested > refusal.limit {
        format!(
            "this request alone needs {} {unit}, more than the limit of {} per hour: split it",
            refusal.requested, refusal.limit
        )
    } else {
        format!(
            "rate limit reached: {} {unit} per hour; the window resets in {} s",
            refusal.limit, refusal.reset_seconds
        )
    };
    ApiError::new(429, "RATE_LIMITED", message)
        .detail("limit", refusal.kind.as_str())
        .detail("value", refusal.limit)
        .detail("window_seconds", WINDOW_SECONDS)
        .detail("reset_seconds", refusal.reset_seconds)
        .detail("requested", refusal.requested)
        .with_header("retry-after", refusal.reset_seconds.to_string())
}

/// `RateLimit-Limit/Remaining/Reset` (requests; the IETF draft's fields) and the events quota
/// as `Argus-Events-Limit/Remaining`. Unlimited keys get none.
fn add_headers(response: &mut Response<Body>, usage: &Usage) {
    let mut set = |name: &'static str, value: u64| {
        if let Ok(value) = lambda_http::http::HeaderValue::from_str(&value.to_string()) {
            response.headers_mut().insert(name, value);
        }
    };
    if usage.limits.requests_per_hour != u64::MAX {
        set("ratelimit-limit", usage.limits.requests_per_hour);
        set("ratelimit-remaining", usage.requests_remaining());
        set("ratelimit-reset", usage.reset_seconds);
    }
    if usage.limits.events_per_hour != u64::MAX {
        set("argus-events-limit", usage.limits.events_per_hour);
        set("argus-events-remaining", usage.events_remaining());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_charge_and_bulk_routes_count_items() {
        for (method, pattern, _, need) in crate::routes::ROUTES {
            let charge = route_charge(method, pattern);
            let bulk = pattern.starts_with("/batch") && *method != "GET" || *pattern == "/ingest/batch";
            assert_eq!(charge == RouteCharge::Deferred, bulk, "{method} {pattern}");
            if *need == argus_models::access::Need::Public {
                assert_eq!(charge, RouteCharge::Request);
            }
        }
    }

    #[test]
    fn refusals_say_which_limit_and_when_it_resets() {
        let refusal = Refusal {
            kind: LimitKind::Events,
            limit: 100,
            requested: 500,
            reset_seconds: 42,
            requests_used: 3,
            events_used: 0,
        };
        let err = rate_limited(&refusal);
        assert_eq!(err.status, 429);
        assert_eq!(err.envelope.error.details["limit"], "events_per_hour");
        assert_eq!(err.envelope.error.details["reset_seconds"], 42);
        assert!(err.envelope.error.message.contains("split it"));
        assert!(err.headers.contains(&("retry-after", "42".to_string())));
    }
}
