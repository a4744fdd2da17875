//! The API's route table, for answering 404 and 405 with the envelope on API Gateway's
//! `$default` route, and for the scope each route needs. A test checks it against
//! `template.yaml`, the source of truth.

use argus_models::access::{Need, Scope};

const PUBLIC: Need = Need::Public;
const ANY: Need = Need::AnyScope;
const INGEST: Need = Need::Scope(Scope::Ingest);
const READ: Need = Need::Scope(Scope::Read);
const MANAGE: Need = Need::Scope(Scope::Manage);

/// (method, path, function binary, what the caller's key needs). Each path is also served
/// with a trailing slash. The scope is declared here once; `input::authenticated_tenant`
/// enforces it for every route, and `POST /batch` for each of its sub-requests.
pub const ROUTES: &[(&str, &str, &str, Need)] = &[
    ("GET", "/health", "argus-health", PUBLIC),
    ("POST", "/sessions", "argus-sessions", INGEST),
    ("GET", "/sessions", "argus-sessions", READ),
    ("GET", "/sessions/{id}", "argus-sessions", READ),
    ("POST", "/events", "argus-events", INGEST),
    ("GET", "/events", "argus-events", READ),
    ("GET", "/events/{id}", "argus-events", READ),
    ("PUT", "/events/{id}", "argus-events", MANAGE),
    ("PATCH", "/events/{id}", "argus-events", MANAGE),
    ("DELETE", "/events/{id}", "argus-events", MANAGE),
    ("POST", "/events/{id}/restore", "argus-events", MANAGE),
    ("POST", "/ingest/events", "argus-events", INGEST),
    ("POST", "/batch", "argus-batch", ANY),
    ("POST", "/batch/jobs", "argus-batch", INGEST),
    ("GET", "/batch/jobs/{id}", "argus-batch", READ),
    ("GET", "/batch/jobs/{id}/results", "argus-batch", READ),
    ("POST", "/batch/events", "argus-batch", INGEST),
    ("PATCH", "/batch/events", "argus-batch", MANAGE),
    ("DELETE", "/batch/events", "argus-batch", MANAGE),
    ("POST", "/batch/events/restore", "argus-batch", MANAGE),
    ("POST", "/ingest/batch", "argus-batch", INGEST),
    ("GET", "/limits", "argus-batch", ANY),
    ("GET", "/errors", "argus-errors", READ),
    ("GET", "/errors/{id}", "argus-errors", READ),
    ("GET", "/streams", "argus-streams", READ),
    ("GET", "/streams/{id}", "argus-streams", READ),
    ("PATCH", "/streams/{id}", "argus-streams", MANAGE),
    ("GET", "/streams/{id}/status", "argus-streams", READ),
    ("GET", "/query/events", "argus-streams", READ),
    ("POST", "/query/aggregate", "argus-streams", READ),
    ("POST", "/webhooks", "argus-webhooks", MANAGE),
    ("GET", "/webhooks", "argus-webhooks", READ),
    ("GET", "/webhooks/{id}", "argus-webhooks", READ),
    ("PATCH", "/webhooks/{id}", "argus-webhooks", MANAGE),
    ("DELETE", "/webhooks/{id}", "argus-webhooks", MANAGE),
    ("POST", "/webhooks/{id}/rotate-secret", "argus-webhooks", MANAGE),
    ("POST", "/webhooks/{id}/test", "argus-webhooks", MANAGE),
    ("GET", "/webhooks/{id}/deliveries", "argus-webhooks", READ),
    ("POST", "/exports", "argus-exports", READ),
    ("GET", "/exports", "argus-exports", READ),
    ("GET", "/exports/{id}", "argus-exports", READ),
];

#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch {
    Found { method: &'static str, path: &'static str },
    MethodNotAllowed { allowed: Vec<&'static str> },
    NotFound,
}

/// Matches a concrete path (`/sessions/123/`) against the table.
pub fn match_route(method: &str, raw_path: &str) -> RouteMatch {
    let path = normalize(raw_path);
    let mut allowed = Vec::new();
    for (route_method, pattern, _, _) in ROUTES {
        if pattern_matches(pattern, path) {
            if route_method.eq_ignore_ascii_case(method) {
                return RouteMatch::Found { method: route_method, path: pattern };
            }
            allowed.push(*route_method);
        }
    }
    if allowed.is_empty() {
        RouteMatch::NotFound
    } else {
        RouteMatch::MethodNotAllowed { allowed }
    }
}

/// What route `method pattern` needs (`None`: not a route).
pub fn need_of(method: &str, pattern: &str) -> Option<Need> {
    ROUTES.iter().find(|(m, p, _, _)| *m == method && *p == pattern).map(|(_, _, _, need)| *need)
}

/// Strips one trailing slash (`/sessions/` → `/sessions`), keeping `/`.
pub fn normalize(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    }
}

fn pattern_matches(pattern: &str, path: &str) -> bool {
    let mut pattern_parts = pattern.split('/');
    let mut path_parts = path.split('/');
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => return true,
            (Some(p), Some(s)) if p.starts_with('{') && p.ends_with('}') => {
                if s.is_empty() {
                    return false;
                }
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        assert_eq!(match_route("POST", "/sessions/"), RouteMatch::Found { method: "POST", path: "/sessions" });
        assert_eq!(match_route("GET", "/sessions/abc"), RouteMatch::Found { method: "GET", path: "/sessions/{id}" });
        assert_eq!(match_route("DELETE", "/sessions"), RouteMatch::MethodNotAllowed { allowed: vec!["POST", "GET"] });
        assert_eq!(match_route("GET", "/nope"), RouteMatch::NotFound);
        assert_eq!(match_route("GET", "/sessions//"), RouteMatch::NotFound);
        assert_eq!(match_route("GET", "/sessions/a/b"), RouteMatch::NotFound);
        assert_eq!(match_route("GET", "/"), RouteMatch::NotFound);
    }
}
