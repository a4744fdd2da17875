//! Cold start, binary size and memory of the real Lambda binaries: each release binary is
//! spawned against a minimal Lambda Runtime API on loopback, which times how long it takes to
//! ask for its first event (init) and to answer it (first invocation).

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::common::Stats;

#[derive(Default)]
struct Observed {
    next_at: Option<Instant>,
    response_at: Option<Instant>,
    response: Option<String>,
    error: Option<String>,
    served: bool,
}

pub struct Spawned {
    pub init: Duration,
    pub first_invocation: Duration,
    pub peak_rss_kib: Option<u64>,
    pub response: String,
}

/// Serves one event to one process and reports what happened.
pub async fn run_once(binary: &Path, env: &[(String, String)], event: &str) -> Result<Spawned, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let observed = Arc::new(Mutex::new(Observed::default()));
    let event = Bytes::from(event.to_string());
    let shared = observed.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (observed, event) = (shared.clone(), event.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (observed, event) = (observed.clone(), event.clone());
                    async move { Ok::<_, Infallible>(runtime_api(req, &observed, event).await) }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", binary.display()))?;
    let deadline = started + Duration::from_secs(30);
    loop {
        {
            let state = observed.lock().map_err(|_| "poisoned")?;
            if state.response_at.is_some() || state.error.is_some() {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{} did not answer within 30 s", binary.display()));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let peak_rss_kib = child.id().and_then(peak_rss);
    let _ = child.kill().await;
    server.abort();
    let state = observed.lock().map_err(|_| "poisoned")?;
    if let Some(error) = &state.error {
        return Err(format!("{} reported an error: {error}", binary.display()));
    }
    let (Some(next_at), Some(response_at)) = (state.next_at, state.response_at) else {
        return Err("incomplete invocation".into());
    };
    Ok(Spawned {
        init: next_at - started,
        first_invocation: response_at - next_at,
        peak_rss_kib,
        response: state.response.clone().unwrap_or_default(),
    })
}

async fn runtime_api(
    req: Request<hyper::body::Incoming>,
    observed: &Mutex<Observed>,
    event: Bytes,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let now = Instant::now();
    if path.ends_with("/invocation/next") {
        let first = {
            let Ok(mut state) = observed.lock() else { return Response::new(Full::new(Bytes::new())) };
            let first = !state.served;
            if first {
                state.served = true;
                state.next_at = Some(now);
            }
            first
        };
        if !first {
            // One invocation per process: the next poll waits until the process is killed.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let deadline_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() + 29_000)
            .unwrap_or(0);
        return Response::builder()
            .header("lambda-runtime-aws-request-id", "bench-request-1")
            .header("lambda-runtime-deadline-ms", deadline_ms.to_string())
            .header("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:000000000000:function:bench")
            .header("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000;Sampled=0")
            .body(Full::new(event))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if let Ok(mut state) = observed.lock() {
        if path.ends_with("/response") {
            state.response_at = Some(now);
            state.response = Some(String::from_utf8_lossy(&body).into_owned());
        } else if path.ends_with("/error") {
            state.error = Some(String::from_utf8_lossy(&body).into_owned());
        }
    }
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() = hyper::StatusCode::ACCEPTED;
    response
}

/// Peak resident set size (VmHWM) of a live process, in KiB.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// `spawns` cold starts of one binary with `event`: init and first-invocation statistics.
pub async fn cold_starts(
    binary: &Path,
    env: &[(String, String)],
    event: &str,
    spawns: usize,
) -> Result<(Stats, Stats, String), String> {
    let (mut inits, mut firsts) = (Vec::new(), Vec::new());
    let mut last = String::new();
    for _ in 0..spawns {
        let spawned = run_once(binary, env, event).await?;
        inits.push(spawned.init);
        firsts.push(spawned.first_invocation);
        last = spawned.response;
    }
    Ok((Stats::of(inits), Stats::of(firsts), last))
}

/// Status code of an HTTP function's response (API Gateway v2 response JSON), or "ok".
pub fn outcome(response: &str) -> String {
    match serde_json::from_str::<Value>(response) {
        Ok(v) if v.get("statusCode").is_some() => v["statusCode"].to_string(),
        Ok(_) => "ok".into(),
        Err(_) => "?".into(),
    }
}
