//! Scoped API keys (issue 14): every route checks the scope it declares in the route table,
//! `POST /batch` checks each sub-request, and a write-only `ingest` key reads and changes
//! nothing.

use argus_api::routes::ROUTES;
use argus_models::access::{Need, Scope, Scopes};
use argus_tests::{assert_envelope, Method, TestStack};
use serde_json::{json, Value};

async fn key_with(stack: &TestStack, tenant: &str, scopes: &[Scope]) -> String {
    argus_core::apikeys::create_scoped_key(&stack.backend, tenant, None, Scopes::of(scopes)).await.unwrap().secret
}

fn concrete(pattern: &str) -> String {
    pattern.replace("{id}", "0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b")
}

async fn call(stack: &TestStack, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let body = body.map(|b| b.to_string()).or_else(|| (method != Method::GET).then(|| "{}".to_string()));
    stack.call(method, path, Some(key), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_a_key_without_its_scope_and_admits_one_with_it() {
    let stack = TestStack::start().await;
    stack.key("acme").await;
    let mut checked = 0;
    for (method, pattern, _, need) in ROUTES {
        let Need::Scope(scope) = need else { continue };
        let others: Vec<Scope> = Scope::ALL.into_iter().filter(|s| s != scope).collect();
        let without = key_with(&stack, "acme", &others).await;
        let path = concrete(pattern);
        let (status, body) = call(&stack, method, &path, &without, None).await;
        let details = assert_envelope(status, &body, 403, "INSUFFICIENT_SCOPE");
        assert_eq!(details["required_scope"], scope.as_str(), "{method} {pattern}: {body}");
        let granted: Vec<&str> =
            details["granted_scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(granted, others.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        // Only that scope: past the check (whatever the route then says of the input).
        let only = key_with(&stack, "acme", &[*scope]).await;
        let (status, body) = call(&stack, method, &path, &only, None).await;
        assert!(
            status != 403 && status != 401 && status < 500,
            "{method} {pattern} with '{}': {status} {body}",
            scope.as_str()
        );
        checked += 1;
    }
    assert!(checked >= 35, "every scoped route: {checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_key_writes_and_cannot_read_or_change_anything() {
    let stack = TestStack::start_with_processor().await;
    let full = stack.key("acme").await;
    let ingest = key_with(&stack, "acme", &[Scope::Ingest]).await;
    let (status, session) = stack.call(Method::POST, "/sessions", Some(&ingest), None).await;
    assert_eq!(status, 201, "{session}");
    let session = session["id"].as_str().unwrap().to_string();
    let event = json!({"session_id": session, "category": "app", "name": "open", "data": {"a": 1}, "timestamp": "2021-06-15T00:00:00Z"});
    let (status, accepted) = stack.post("/events", &ingest, event.clone()).await;
    assert_eq!(status, 202, "{accepted}");
    let (status, created) = stack.post("/batch/events", &ingest, json!([event])).await;
    assert!(status == 200 || status == 201, "{created}");
    let id = created["results"][0]["id"].as_str().unwrap().to_string();
    let (status, _) =
        stack.post("/ingest/events", &ingest, json!({"stream_id": "s", "event_type": "t", "data": {"x": 1}})).await;
    assert_eq!(status, 202);

    // Reads and changes: 403 naming the scope, and nothing changed.
    for (method, path, body, scope) in [
        ("GET", format!("/events/{id}"), None, "read"),
        ("GET", "/events".to_string(), None, "read"),
        ("GET", format!("/sessions/{session}"), None, "read"),
        ("GET", "/errors".to_string(), None, "read"),
        ("GET", "/webhooks".to_string(), None, "read"),
        ("GET", "/query/events?stream_id=s".to_string(), None, "read"),
        ("PATCH", format!("/events/{id}"), Some(json!({"data": {"a": 2}})), "manage"),
        ("DELETE", format!("/events/{id}"), None, "manage"),
        ("PATCH", "/streams/s".to_string(), Some(json!({"retention_days": 1})), "manage"),
        (
            "POST",
            "/webhooks".to_string(),
            Some(json!({"url": "https://a.example/", "events": ["batch.job.completed"]})),
            "manage",
        ),
    ] {
        let (status, answer) = call(&stack, method, &path, &ingest, body).await;
        assert_eq!(
            assert_envelope(status, &answer, 403, "INSUFFICIENT_SCOPE")["required_scope"],
            scope,
            "{method} {path}"
        );
    }
    let (status, stored) = stack.get(&format!("/events/{id}"), &full).await;
    assert_eq!(status, 200);
    assert_eq!(stored["data"], json!({"a": 1}), "the refused PATCH changed nothing");
    assert!(stored["deleted_at"].is_null());

    // POST /batch: each sub-request against the caller's scopes.
    let (status, batch) = stack
        .post(
            "/batch",
            &ingest,
            json!({"requests": [
                {"id": "new", "method": "POST", "path": "/sessions"},
                {"id": "read", "method": "GET", "path": format!("/events/{id}")},
                {"id": "change", "method": "DELETE", "path": format!("/events/{id}")},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    let by_id = |name: &str| batch["responses"].as_array().unwrap().iter().find(|r| r["id"] == name).unwrap().clone();
    assert_eq!(by_id("new")["status"], 201);
    for (name, scope) in [("read", "read"), ("change", "manage")] {
        let answer = by_id(name);
        assert_eq!(answer["status"], 403, "{answer}");
        assert_eq!(answer["body"]["error"]["code"], "INSUFFICIENT_SCOPE");
        assert_eq!(answer["body"]["error"]["details"]["required_scope"], scope);
    }
    let (_, stored) = stack.get(&format!("/events/{id}"), &full).await;
    assert!(stored["deleted_at"].is_null(), "the refused sub-request changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_are_stored_listed_and_changed() {
    let stack = TestStack::start().await;
    let issued =
        argus_core::apikeys::create_scoped_key(&stack.backend, "acme", None, Scopes::of(&[Scope::Read])).await.unwrap();
    let grant = argus_core::apikeys::grant_for_key(&stack.backend, &issued.secret).await.unwrap().unwrap();
    assert_eq!((grant.tenant.as_str(), grant.scopes.text()), ("acme", "read".to_string()));
    argus_core::apikeys::update_key_scopes(
        &stack.backend,
        "acme",
        &issued.key_id,
        Scopes::of(&[Scope::Ingest, Scope::Manage]),
    )
    .await
    .unwrap();
    // Read again without the instance's memory of grants (15 s), as another instance would.
    let mut fresh = stack.backend.clone();
    fresh.grants = std::sync::Arc::new(argus_core::apikeys::GrantCache::new(std::time::Duration::ZERO));
    let grant = argus_core::apikeys::grant_for_key(&fresh, &issued.secret).await.unwrap().unwrap();
    assert_eq!(grant.scopes.text(), "ingest,manage");
    let listed = argus_core::apikeys::list_keys(&stack.backend, "acme").await.unwrap();
    assert_eq!(listed.iter().find(|k| k.key_id == issued.key_id).unwrap().scopes.text(), "ingest,manage");
    // A key from before scopes (no attribute) keeps all three.
    let old = stack.key("acme").await;
    let grant = argus_core::apikeys::grant_for_key(&stack.backend, &old).await.unwrap().unwrap();
    assert_eq!(grant.scopes, Scopes::all());
    let missing =
        argus_core::apikeys::update_key_scopes(&stack.backend, "acme", "0000000000000000", Scopes::all()).await;
    assert!(matches!(missing, Err(argus_core::ServiceError::NotFound { .. })), "{missing:?}");
}
