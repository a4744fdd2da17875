//! The HTTP side: one client, gzip request bodies, and retries with full-jitter backoff that
//! honour `Retry-After` (429, 503, other 5xx, network errors).

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

/// Where and who: from flags, the environment, or the config file (`config::resolve`).
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub api_key: String,
}

#[derive(Clone)]
pub struct Api {
    target: Target,
    http: reqwest::Client,
    pub max_attempts: u32,
}

/// An answer that is not worth retrying (4xx other than 429), or retries ran out.
#[derive(Debug)]
pub struct CallError {
    pub status: Option<u16>,
    pub body: Value,
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "{status}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

const BASE_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Full jitter: a uniform wait in [0, min(cap, base·2^attempt)], at least `retry_after`.
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let ceiling = BASE_DELAY.saturating_mul(2u32.saturating_pow(attempt.min(16))).min(MAX_DELAY);
    let jittered = ceiling.mul_f64(fastrand::f64());
    jittered.max(retry_after.unwrap_or_default())
}

pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

impl Api {
    pub fn new(target: Target) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("argus-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self { target, http, max_attempts: 10 })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.target.url.trim_end_matches('/'))
    }

    /// GET with retries; the JSON answer, or why not.
    pub async fn get(&self, path: &str) -> Result<Value, CallError> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// POST of `body`, gzip-compressed, with retries of whole-request failures.
    pub async fn post_gzip(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let bytes = serde_json::to_vec(body).map_err(|e| CallError {
            status: None,
            body: Value::Null,
            message: e.to_string(),
        })?;
        self.call(reqwest::Method::POST, path, Some(gzip(&bytes))).await
    }

    async fn call(&self, method: reqwest::Method, path: &str, gzipped: Option<Vec<u8>>) -> Result<Value, CallError> {
        let mut attempt = 0;
        loop {
            let mut request =
                self.http.request(method.clone(), self.url(path)).header("x-api-key", &self.target.api_key);
            if let Some(body) = &gzipped {
                request = request
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .body(body.clone());
            }
            let (retry_after, failure) = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    if status < 400 {
                        return Ok(body);
                    }
                    let message = body["error"]["message"].as_str().unwrap_or("").to_string();
                    let error = CallError { status: Some(status), body, message };
                    if status != 429 && status < 500 {
                        return Err(error);
                    }
                    (retry_after, error)
                }
                Err(err) => (None, CallError { status: None, body: Value::Null, message: format!("network: {err}") }),
            };
            attempt += 1;
            if attempt >= self.max_attempts {
                return Err(failure);
            }
            tokio::time::sleep(backoff(attempt, retry_after)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_jittered_and_honours_retry_after() {
        for attempt in 0..30 {
            assert!(backoff(attempt, None) <= MAX_DELAY);
        }
        assert!(backoff(1, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        let waits: std::collections::HashSet<_> = (0..20).map(|_| backoff(5, None)).collect();
        assert!(waits.len() > 1, "jittered");
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gzip(b"{\"a\":1}")[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, "{\"a\":1}");
    }
}
