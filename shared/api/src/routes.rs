//! The API's route table, for answering 404 and 405 with the envelope on API Gateway's
//! `$default` route. A test checks it against `template.yaml`, the source of truth.

/// (method, path, function binary). Each path is also served with a trailing slash.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/health", "argus-health"),
    ("POST", "/sessions", "argus-sessions"),
    ("GET", "/sessions", "argus-sessions"),
    ("GET", "/sessions/{id}", "argus-sessions"),
    ("POST", "/events", "argus-events"),
    ("GET", "/events", "argus-events"),
    ("GET", "/events/{id}", "argus-events"),
    ("PUT", "/events/{id}", "argus-events"),
    ("PATCH", "/events/{id}", "argus-events"),
    ("DELETE", "/events/{id}", "argus-events"),
    ("POST", "/events/{id}/restore", "argus-events"),
    ("POST", "/ingest/events", "argus-events"),
    ("POST", "/batch", "argus-batch"),
    ("POST", "/batch/jobs", "argus-batch"),
    ("GET", "/batch/jobs/{id}", "argus-batch"),
    ("GET", "/batch/jobs/{id}/results", "argus-batch"),
    ("POST", "/batch/events", "argus-batch"),
    ("PATCH", "/batch/events", "argus-batch"),
    ("DELETE", "/batch/events", "argus-batch"),
    ("POST", "/batch/events/restore", "argus-batch"),
    ("POST", "/ingest/batch", "argus-batch"),
    ("GET", "/errors", "argus-errors"),
    ("GET", "/errors/{id}", "argus-errors"),
    ("GET", "/streams", "argus-streams"),
    ("GET", "/streams/{id}", "argus-streams"),
    ("PATCH", "/streams/{id}", "argus-streams"),
    ("GET", "/streams/{id}/status", "argus-streams"),
    ("GET", "/query/events", "argus-streams"),
    ("POST", "/query/aggregate", "argus-streams"),
    ("POST", "/webhooks", "argus-webhooks"),
    ("GET", "/webhooks", "argus-webhooks"),
    ("GET", "/webhooks/{id}", "argus-webhooks"),
    ("PATCH", "/webhooks/{id}", "argus-webhooks"),
    ("DELETE", "/webhooks/{id}", "argus-webhooks"),
    ("POST", "/webhooks/{id}/rotate-secret", "argus-webhooks"),
    ("POST", "/webhooks/{id}/test", "argus-webhooks"),
    ("GET", "/webhooks/{id}/deliveries", "argus-webhooks"),
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
    for (route_method, pattern, _) in ROUTES {
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
