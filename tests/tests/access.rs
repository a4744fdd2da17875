//! Rate limits and bearer tokens (issue 14), against DynamoDB Local through the runner:
//! conditional counters admit exactly N under concurrency, bulk items count against the events
//! quota, settings resolve key → tenant → tier, and access tokens minted by PyJWT are accepted
//! while every forged, stale or foreign one gets 401 with the envelope.

use std::sync::Arc;
use std::time::Duration;

use argus_core::apikeys::{self, GrantCache, KeyUpdate, Setting};
use argus_core::jwt::{JwtSettings, JwtVerifier};
use argus_core::ratelimit::{Admission, Charge};
use argus_models::access::{Scope, Scopes};
use argus_models::limits::{LimitSettings, Limits, Tier};
use argus_tests::issuer::Issuer;
use argus_tests::{assert_envelope, Method, TestStack};
use serde_json::{json, Value};

async fn key_with_limits(stack: &TestStack, tenant: &str, limits: LimitSettings) -> String {
    apikeys::create_key_with(&stack.backend, tenant, None, Scopes::all(), limits).await.unwrap().secret
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_of_n_admits_exactly_n_under_32_concurrent_clients() {
    let stack = Arc::new(TestStack::start().await);
    let limit = 50u64;
    let key =
        key_with_limits(&stack, "acme", LimitSettings { requests_per_hour: Some(limit), ..Default::default() }).await;
    let mut clients = Vec::new();
    for _ in 0..32 {
        let (stack, key) = (stack.clone(), key.clone());
        clients.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..4 {
                answers.push(stack.call_with_headers(Method::GET, "/sessions", &key, &[], None).await);
            }
            answers
        }));
    }
    let mut remaining_seen = Vec::new();
    let mut refused = 0;
    for client in clients {
        for (status, headers, body) in client.await.unwrap() {
            assert_eq!(header(&headers, "ratelimit-limit"), Some(limit), "{status} {body}");
            let reset = header(&headers, "ratelimit-reset").expect("RateLimit-Reset");
            assert!((1..=3_600).contains(&reset));
            match status {
                200 => remaining_seen.push(header(&headers, "ratelimit-remaining").expect("remaining")),
                429 => {
                    refused += 1;
                    let details = assert_envelope(status, &body, 429, "RATE_LIMITED");
                    assert_eq!(details["limit"], "requests_per_hour");
                    assert_eq!(details["value"], limit);
                    assert_eq!(details["window_seconds"], 3_600);
                    let retry_after = header(&headers, "retry-after").expect("Retry-After");
                    assert_eq!(details["reset_seconds"], retry_after);
                    assert_eq!(header(&headers, "ratelimit-remaining"), Some(0));
                }
                other => panic!("{other}: {body}"),
            }
        }
    }
    // Exactly N admitted, each seeing its own count: no two requests raced past one another.
    remaining_seen.sort_unstable();
    assert_eq!(remaining_seen, (0..limit).collect::<Vec<_>>());
    assert_eq!(refused, 32 * 4 - limit as usize);

    // Another key of the same tenant has its own counter.
    let other =
        key_with_limits(&stack, "acme", LimitSettings { requests_per_hour: Some(limit), ..Default::default() }).await;
    assert_eq!(stack.get("/sessions", &other).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_window_is_refused_from_memory_without_a_write() {
    let stack = TestStack::start().await;
    let limits = Limits { requests_per_hour: 3, events_per_hour: 10 };
    let charge = |backend: argus_core::Backend, amount: Charge| async move {
        argus_core::ratelimit::charge(&backend, "acme", "memo-test", limits, amount, 7_200).await
    };
    let one = Charge { requests: 1, events: 0 };
    for _ in 0..3 {
        assert!(matches!(charge(stack.backend.clone(), one).await.unwrap(), Admission::Admitted(_)));
    }
    // The first refusal is one failed conditional write; it teaches the instance the count.
    assert!(matches!(charge(stack.backend.clone(), one).await.unwrap(), Admission::Refused(_)));
    // Now with DynamoDB unreachable: refusals still answer, so they made no call at all.
    let mut offline = stack.backend.clone();
    let config = argus_core::aws::local_sdk_config();
    let endpoints = argus_core::Endpoints { dynamodb: Some("http://127.0.0.1:9".into()), sqs: None, s3: None };
    offline.dynamodb = argus_core::Backend::new(&config, &endpoints, "t", "q").dynamodb;
    for _ in 0..5 {
        match charge(offline.clone(), one).await.unwrap() {
            Admission::Refused(refusal) => assert_eq!((refusal.limit, refusal.reset_seconds), (3, 3_600)),
            other => panic!("{other:?}"),
        }
    }
    // A charge that could still fit is not refused from memory: it needs the write (and fails).
    assert!(charge(offline, Charge { requests: 0, events: 5 }).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_items_count_against_the_events_quota() {
    let stack = TestStack::start_with_processor().await;
    let key = key_with_limits(
        &stack,
        "acme",
        LimitSettings { requests_per_hour: Some(1_000), events_per_hour: Some(100), ..Default::default() },
    )
    .await;
    let session = stack.session(&key).await;
    let items = |n: usize| -> Value {
        json!({"items": (0..n).map(|i| json!({"session_id": session, "name": "e", "category": "c",
            "timestamp": "2026-12-01T00:00:00Z", "data": {"i": i}})).collect::<Vec<_>>()})
    };
    let post = |path: &'static str, body: Value| {
        let stack = &stack;
        let key = key.clone();
        async move { stack.call_with_headers(Method::POST, path, &key, &[], Some(body.to_string())).await }
    };
    let (status, headers, body) = post("/batch/events", items(60)).await;
    assert_eq!((status, body["succeeded"].as_u64()), (200, Some(60)), "{body}");
    assert_eq!(header(&headers, "argus-events-limit"), Some(100));
    assert_eq!(header(&headers, "argus-events-remaining"), Some(40));
    // 60 more would pass the quota: refused whole, nothing written.
    let (status, headers, body) = post("/batch/events", items(60)).await;
    let details = assert_envelope(status, &body, 429, "RATE_LIMITED");
    assert_eq!((details["limit"].as_str(), details["requested"].as_u64()), (Some("events_per_hour"), Some(60)));
    assert!(header(&headers, "retry-after").is_some());
    // A bulk call larger than the whole quota says to split it.
    let (status, _, body) = post("/batch/events", items(150)).await;
    assert_envelope(status, &body, 429, "RATE_LIMITED");
    assert!(body["error"]["message"].as_str().unwrap().contains("split"), "{body}");
    // 40 fit exactly; then a single event does not; reads are not events.
    let (status, _, body) = post("/batch/events", items(40)).await;
    assert_eq!((status, body["succeeded"].as_u64()), (200, Some(40)), "{body}");
    let single = json!({"session_id": session, "name": "e", "category": "c", "timestamp": "2026-12-01T00:00:00Z"});
    let (status, _, body) = post("/events", single).await;
    assert_envelope(status, &body, 429, "RATE_LIMITED");
    let (status, headers, _) = stack.call_with_headers(Method::GET, "/events?limit=5", &key, &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "argus-events-remaining"), Some(0));
    // Jobs and bulk updates count their items too.
    let job = json!({"operation": "create_events", "items": [{"session_id": session, "name": "e"}]});
    let (status, _, body) = post("/batch/jobs", job).await;
    assert_envelope(status, &body, 429, "RATE_LIMITED");
    let (status, _, body) = stack
        .call_with_headers(Method::PATCH, "/batch/events", &key, &[], Some(json!({"items": [{"id": "x"}]}).to_string()))
        .await;
    assert_envelope(status, &body, 429, "RATE_LIMITED");
    let stored = stack.all_pages("/events", &key, 100).await;
    assert_eq!(stored.len(), 100, "exactly the admitted events were stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_batch_counts_each_sub_request() {
    let stack = TestStack::start().await;
    let key = key_with_limits(&stack, "acme", LimitSettings { requests_per_hour: Some(5), ..Default::default() }).await;
    let batch = |n: usize| json!({"requests": (0..n).map(|i| json!({"id": format!("r{i}"), "method": "GET", "path": "/sessions"})).collect::<Vec<_>>()});
    let (status, headers, body) =
        stack.call_with_headers(Method::POST, "/batch", &key, &[], Some(batch(3).to_string())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "ratelimit-remaining"), Some(2), "3 sub-requests, 3 requests");
    let (status, _, body) =
        stack.call_with_headers(Method::POST, "/batch", &key, &[], Some(batch(3).to_string())).await;
    assert_envelope(status, &body, 429, "RATE_LIMITED");
    // A malformed body is still one request.
    let (status, headers, _) = stack.call_with_headers(Method::POST, "/batch", &key, &[], Some("{".into())).await;
    assert_eq!(status, 400);
    assert_eq!(header(&headers, "ratelimit-remaining"), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_resolve_key_then_tenant_then_tier_and_updates_take_effect() {
    let stack = TestStack::start().await;
    let limit_of = |key: String| {
        let stack = &stack;
        async move {
            let (status, headers, body) = stack.call_with_headers(Method::GET, "/sessions", &key, &[], None).await;
            assert_eq!(status, 200, "{body}");
            (header(&headers, "ratelimit-limit"), header(&headers, "argus-events-limit"))
        }
    };
    let plain = key_with_limits(&stack, "acme", LimitSettings::default()).await;
    assert_eq!(limit_of(plain).await, (Some(1_000), Some(100_000)), "standard by default");
    let pro =
        key_with_limits(&stack, "acme", LimitSettings { tier: Some(Tier::Professional), ..Default::default() }).await;
    assert_eq!(limit_of(pro).await, (Some(10_000), Some(1_000_000)));
    let settings = LimitSettings { tier: Some(Tier::Enterprise), requests_per_hour: Some(777), events_per_hour: None };
    apikeys::set_tenant_limit_settings(&stack.backend, "globex", settings).await.unwrap();
    let tenant_default = key_with_limits(&stack, "globex", LimitSettings::default()).await;
    assert_eq!(limit_of(tenant_default).await, (Some(777), Some(10_000_000)));
    let own =
        key_with_limits(&stack, "globex", LimitSettings { requests_per_hour: Some(5), ..Default::default() }).await;
    assert_eq!(limit_of(own.clone()).await, (Some(5), Some(10_000_000)));
    let unlimited =
        key_with_limits(&stack, "acme", LimitSettings { tier: Some(Tier::Unlimited), ..Default::default() }).await;
    let (status, headers, _) = stack.call_with_headers(Method::GET, "/sessions", &unlimited, &[], None).await;
    assert_eq!((status, headers.get("ratelimit-limit")), (200, None), "unlimited keys are not counted");

    // An update reaches a stack whose authorizer remembers nothing (TTL 0) at once.
    let mut backend = stack.backend.clone();
    backend.grants = Arc::new(GrantCache::new(Duration::ZERO));
    let api = TestStack::serve(backend, stack.provisioned.clone(), stack.template.clone()).await;
    let id = apikeys::key_id_of(&own);
    let update =
        KeyUpdate { requests_per_hour: Setting::Clear, tier: Setting::Set(Tier::Standard), ..Default::default() };
    apikeys::update_key(&stack.backend, "globex", &id, update).await.unwrap();
    let (_, headers, _) = api.call_with_headers(Method::GET, "/sessions", &own, &[], None).await;
    assert_eq!(header(&headers, "ratelimit-limit"), Some(777), "back to the tenant's number");
    let listed = apikeys::list_keys(&stack.backend, "globex").await.unwrap();
    let listed = listed.iter().find(|k| k.key_id == id).unwrap();
    assert_eq!(listed.limits, LimitSettings { tier: Some(Tier::Standard), ..Default::default() });
    let nothing = apikeys::update_key(&stack.backend, "globex", &id, KeyUpdate::default()).await;
    assert!(nothing.is_err());
}

fn claims(extra: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({"iss": "https://issuer.test", "aud": "argus-api", "sub": "client-1",
        "iat": now, "exp": now + 600, "tenant_id": "acme", "scope": "argus/ingest argus/read"});
    for (name, value) in extra.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

async fn bearer(stack: &TestStack, method: Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = stack.http.request(method, format!("{}{path}", stack.base_url)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_from_the_issuer_are_accepted_and_every_bad_one_gets_401() {
    let stack = TestStack::start().await;
    let issuer = Issuer::start().await;
    // Without an issuer configured, tokens are refused.
    let token = issuer.mint(&claims(json!({})), "rsa-1").await;
    let (status, body) = bearer(&stack, Method::GET, "/sessions", &token, None).await;
    assert_envelope(status, &body, 401, "TOKENS_NOT_ACCEPTED");

    let mut backend = stack.backend.clone();
    backend.jwt = Some(JwtVerifier::new(JwtSettings {
        issuer: "https://issuer.test".into(),
        audience: "argus-api".into(),
        jwks_url: issuer.jwks_url(),
        tenant_claim: "tenant_id".into(),
        scope_claim: "scope".into(),
        allow_http_loopback: true,
        refresh_interval: Duration::from_millis(500),
    }));
    let api = TestStack::serve(backend, stack.provisioned.clone(), stack.template.clone()).await;

    // Valid RS256 and ES256 tokens: the tenant and scopes come from the claims.
    let (status, session) = bearer(&api, Method::POST, "/sessions", &token, None).await;
    assert_eq!(status, 201, "{session}");
    let es = issuer.mint(&claims(json!({})), "ec-1").await;
    let (status, list) = bearer(&api, Method::GET, "/sessions", &es, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"][0]["id"], session["id"]);
    // The tenant is the token's: acme's session is not globex's.
    let globex = issuer.mint(&claims(json!({"tenant_id": "globex"})), "rsa-1").await;
    let (status, list) = bearer(&api, Method::GET, "/sessions", &globex, None).await;
    assert_eq!((status, list["items"].as_array().map(Vec::len)), (200, Some(0)));
    // Scopes: this token lacks manage.
    let path = format!("/events/{}", uuid::Uuid::now_v7());
    let (status, body) = bearer(&api, Method::DELETE, &path, &token, None).await;
    let details = assert_envelope(status, &body, 403, "INSUFFICIENT_SCOPE");
    assert_eq!(details["required_scope"], "manage");
    // A token's requests are rate limited like a key's (the tenant's tier: standard).
    let response = api.http.get(format!("{}/sessions", api.base_url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.headers().get("ratelimit-limit").and_then(|v| v.to_str().ok()), Some("1000"));
    // Many requests, one JWKS read: the keys are cached.
    for _ in 0..10 {
        assert_eq!(bearer(&api, Method::GET, "/sessions", &token, None).await.0, 200);
    }
    assert_eq!(issuer.jwks_fetches().await, 1);

    let now = chrono::Utc::now().timestamp();
    let cases: Vec<(&str, String)> = vec![
        ("expired", issuer.mint(&claims(json!({"exp": now - 120})), "rsa-1").await),
        ("not_yet_valid", issuer.mint(&claims(json!({"nbf": now + 300})), "rsa-1").await),
        ("wrong_issuer", issuer.mint(&claims(json!({"iss": "https://evil.test"})), "rsa-1").await),
        ("wrong_audience", issuer.mint(&claims(json!({"aud": "someone-else"})), "rsa-1").await),
        ("unsupported_algorithm", issuer.forge("none", &claims(json!({})), &json!({})).await),
        ("unsupported_algorithm", issuer.forge("hs256_public_key", &claims(json!({})), &json!({})).await),
        ("bad_signature", issuer.forge("tampered", &claims(json!({})), &json!({"tenant_id": "globex"})).await),
        ("missing_claim", issuer.mint(&claims(json!({"exp": null})), "rsa-1").await),
        ("malformed", "not.a.jwt".to_string()),
        ("malformed", "x".repeat(10_000)),
        ("unknown_key", issuer.mint(&claims(json!({})), "stray").await),
    ];
    for (reason, token) in &cases {
        let (status, body) = bearer(&api, Method::GET, "/sessions", token, None).await;
        let details = assert_envelope(status, &body, 401, "INVALID_TOKEN");
        assert_eq!(details["reason"], *reason, "{body}");
    }
    let response =
        api.http.get(format!("{}/sessions", api.base_url)).header("authorization", "Basic eDp5").send().await;
    let response = response.unwrap();
    assert_eq!(response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["details"]["reason"], "not_a_bearer_token");

    // Key rotation: a token signed with a newly published key is accepted after one refetch.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let fetches = issuer.jwks_fetches().await;
    let kid = issuer.rotate().await;
    let rotated = issuer.mint(&claims(json!({})), &kid).await;
    assert_eq!(bearer(&api, Method::GET, "/sessions", &rotated, None).await.0, 200);
    assert_eq!(issuer.jwks_fetches().await, fetches + 1);
    // Unknown kids cannot make the authorizer hammer the issuer: one refetch per interval.
    let stray = issuer.mint(&claims(json!({})), "stray").await;
    for _ in 0..10 {
        assert_eq!(bearer(&api, Method::GET, "/sessions", &stray, None).await.0, 401);
    }
    assert!(issuer.jwks_fetches().await <= fetches + 2);

    // A scope-less token is authenticated but may do nothing.
    let bare = issuer.mint(&claims(json!({"scope": "openid profile"})), "rsa-1").await;
    let (status, body) = bearer(&api, Method::GET, "/sessions", &bare, None).await;
    let details = assert_envelope(status, &body, 403, "INSUFFICIENT_SCOPE");
    assert_eq!(details["granted_scopes"], json!([]));
    assert_eq!(details["required_scope"], Scope::Read.as_str());
}

/// The authorizer's reads run within its deadline (its `Timeout` in AWS): a DynamoDB slower
/// than the time left makes it fail as out of time (API Gateway then answers 500), instead of
/// the invocation outliving its timeout. With time enough, the same key is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorizer_fails_at_its_deadline_instead_of_outliving_it() {
    use argus_api::authorizer::{authorize_within, AuthDecision};
    use argus_tests::fault_proxy::{FaultProxy, Faults};
    let stack = TestStack::start().await;
    let key = key_with_limits(&stack, "acme", LimitSettings::default()).await;
    let upstream = std::env::var("ARGUS_TEST_DYNAMODB_ENDPOINT").unwrap();
    let slow = FaultProxy::start(&upstream, Faults { latency: Duration::from_secs(2), ..Faults::default() }).await;
    let mut backend = stack.backend.clone();
    backend.dynamodb = slow.dynamodb_client();
    backend.grants = Arc::new(GrantCache::new(Duration::ZERO));
    let mut headers = lambda_http::http::HeaderMap::new();
    headers.insert("x-api-key", key.parse().unwrap());

    // 2.5 s left, less the 1.5 s answer reserve: the 2 s read is started and cut off after 1 s
    // (had it run to its answer, the key would have been granted, as below).
    let answer =
        authorize_within(&backend, &headers, Some(std::time::Instant::now() + Duration::from_millis(2_500))).await;
    match answer {
        Err(argus_core::ServiceError::Unavailable { component: "deadline", .. }) => {}
        other => panic!("expected out of time, got {other:?}"),
    }

    let answer = authorize_within(&backend, &headers, Some(std::time::Instant::now() + Duration::from_secs(30))).await;
    assert!(matches!(answer, Ok(AuthDecision::Granted(_))), "{answer:?}");
}
