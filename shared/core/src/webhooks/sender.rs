//! The webhook HTTP client. It resolves the host once, checks every address against the URL
//! policy (no private, loopback, link-local, multicast or unspecified ranges), and connects to
//! a checked address itself: a DNS answer that changes between the check and the connection
//! (rebinding) cannot redirect it. Redirects are not followed (a 3xx is a failed attempt), and
//! everything, connect to response headers, happens within one timeout.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use argus_models::webhook::{UrlPolicy, WebhookUrl};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    pub latency: Duration,
    /// `None` when the receiver answered (any status).
    pub failure: Option<Failure>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Refused by the SSRF rules before connecting.
    Blocked(String),
    Timeout(Duration),
    Network(String),
}

impl Failure {
    pub fn outcome(&self) -> &'static str {
        match self {
            Failure::Blocked(_) => "blocked",
            Failure::Timeout(_) => "timeout",
            Failure::Network(_) => "network",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Failure::Blocked(why) => why.clone(),
            Failure::Timeout(after) => format!("no answer within {} ms", after.as_millis()),
            Failure::Network(why) => why.clone(),
        }
    }
}

/// Which of `addresses` may be connected to: all of them, or the reason the first forbidden
/// one is refused (a host that resolves to any forbidden address is refused outright).
pub fn vet(host: &str, addresses: &[SocketAddr], policy: &UrlPolicy) -> Result<(), String> {
    if addresses.is_empty() {
        return Err(format!("{host} did not resolve"));
    }
    for address in addresses {
        policy
            .address_allowed(address.ip())
            .map_err(|reason| format!("{host} resolves to {} ({reason}): not allowed", address.ip()))?;
    }
    Ok(())
}

/// POSTs `body` to `url` with `headers`, within `timeout`.
pub async fn post(
    url: &WebhookUrl,
    policy: &UrlPolicy,
    headers: &[(&str, String)],
    body: Bytes,
    timeout: Duration,
) -> Answer {
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, attempt(url, policy, headers, body)).await;
    let latency = started.elapsed();
    match result {
        Err(_) => Answer { status: None, retry_after: None, latency, failure: Some(Failure::Timeout(timeout)) },
        Ok(Err(failure)) => Answer { status: None, retry_after: None, latency, failure: Some(failure) },
        Ok(Ok((status, retry_after))) => Answer { status: Some(status), retry_after, latency, failure: None },
    }
}

/// Resolves `url`'s host, checks every address against `policy`, and connects to a checked one.
async fn connect_checked(url: &WebhookUrl, policy: &UrlPolicy) -> Result<TcpStream, Failure> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|e| Failure::Network(format!("resolving {}: {e}", url.host)))?
        .collect();
    vet(&url.host, &addresses, policy).map_err(Failure::Blocked)?;
    let mut last_error = String::new();
    for address in &addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = format!("connecting to {address}: {e}"),
        }
    }
    Err(Failure::Network(last_error))
}

async fn tls_to(url: &WebhookUrl, stream: TcpStream) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    let config = tls_config().map_err(Failure::Network)?;
    let name = rustls::pki_types::ServerName::try_from(url.host.clone())
        .map_err(|e| Failure::Network(format!("server name {}: {e}", url.host)))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| Failure::Network(format!("TLS with {}: {e}", url.host)))
}

async fn attempt(
    url: &WebhookUrl,
    policy: &UrlPolicy,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<(u16, Option<String>), Failure> {
    let stream = connect_checked(url, policy).await?;
    if url.https {
        exchange(TokioIo::new(tls_to(url, stream).await?), url, headers, body).await
    } else {
        exchange(TokioIo::new(stream), url, headers, body).await
    }
}

/// GETs `url` under the same address rules, and returns its 200 body (at most `max_bytes`).
/// Used for an OIDC issuer's JWKS; the caller bounds the time.
pub async fn get(url: &WebhookUrl, policy: &UrlPolicy, max_bytes: usize) -> Result<Bytes, String> {
    let describe = |failure: Failure| match failure {
        Failure::Blocked(reason) | Failure::Network(reason) => reason,
        other => format!("{other:?}"),
    };
    let stream = connect_checked(url, policy).await.map_err(describe)?;
    if url.https {
        fetch(TokioIo::new(tls_to(url, stream).await.map_err(describe)?), url, max_bytes).await
    } else {
        fetch(TokioIo::new(stream), url, max_bytes).await
    }
}

async fn fetch<T>(io: T, url: &WebhookUrl, max_bytes: usize) -> Result<Bytes, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("HTTP: {e}"))?;
    let _driver = AbortOnDrop(tokio::spawn(connection));
    let request = hyper::Request::get(url.target.as_str())
        .header(hyper::header::HOST, authority(url))
        .header(hyper::header::ACCEPT, "application/json")
        .header(hyper::header::USER_AGENT, "Argus/1.0")
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let result = async {
        let response = sender.send_request(request).await.map_err(|e| format!("HTTP: {e}"))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(format!("{} answered {}", url.url, response.status()));
        }
        let limited = http_body_util::Limited::new(response.into_body(), max_bytes);
        let collected = limited.collect().await.map_err(|e| format!("{}: {e}", url.url))?;
        Ok(collected.to_bytes())
    }
    .await;
    result
}

/// The task driving one connection, stopped when the exchange ends, however it ends: also when
/// a caller's timeout drops the exchange half way, which a trailing `abort()` would miss.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn authority(url: &WebhookUrl) -> String {
    let host = if url.host.contains(':') { format!("[{}]", url.host) } else { url.host.clone() };
    let default_port = if url.https { 443 } else { 80 };
    if url.port == default_port {
        host
    } else {
        format!("{host}:{}", url.port)
    }
}

async fn exchange<T>(
    io: T,
    url: &WebhookUrl,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<(u16, Option<String>), Failure>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let network = |e: hyper::Error| Failure::Network(format!("HTTP: {e}"));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(network)?;
    let _driver = AbortOnDrop(tokio::spawn(connection));
    let mut request = hyper::Request::post(url.target.as_str())
        .header(hyper::header::HOST, authority(url))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "Argus-Webhooks/1.0");
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request.body(Full::new(body)).map_err(|e| Failure::Network(format!("request: {e}")))?;
    let response = sender.send_request(request).await.map_err(network);
    // Only the status and headers matter; the body is not read.
    let response = response?;
    let retry_after =
        response.headers().get(hyper::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
    Ok((response.status().as_u16(), retry_after))
}

/// One TLS configuration per process: the system's roots, ring, HTTP/1.1.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no trusted root certificates on this system".to_string());
            }
            let mut config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vetting_checks_every_address() {
        let strict = UrlPolicy::default();
        let public: SocketAddr = "93.184.216.34:443".parse().unwrap();
        let metadata: SocketAddr = "169.254.169.254:443".parse().unwrap();
        let loopback6: SocketAddr = "[::1]:443".parse().unwrap();
        assert!(vet("a.example", &[public], &strict).is_ok());
        // A name whose answer mixes a public and a forbidden address is refused.
        let refused = vet("rebind.example", &[public, metadata], &strict).unwrap_err();
        assert!(refused.contains("169.254.169.254"), "{refused}");
        assert!(vet("a.example", &[loopback6], &strict).is_err());
        assert!(vet("a.example", &[], &strict).is_err());
        assert!(vet("localhost", &[loopback6], &UrlPolicy { allow_http_loopback: true }).is_ok());
    }

    #[tokio::test]
    async fn refuses_before_connecting() {
        // A listener on loopback that records whether anyone connected.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url =
            WebhookUrl::parse("url", &format!("http://127.0.0.1:{port}/"), &UrlPolicy { allow_http_loopback: true })
                .unwrap();
        let answer = post(&url, &UrlPolicy::default(), &[], Bytes::from_static(b"{}"), Duration::from_secs(2)).await;
        assert!(matches!(answer.failure, Some(Failure::Blocked(_))), "{answer:?}");
        // A name, resolved at send time, is judged by the addresses it resolves to.
        let by_name =
            WebhookUrl { url: String::new(), https: false, host: "localhost".into(), port, target: "/".into() };
        let answer =
            post(&by_name, &UrlPolicy::default(), &[], Bytes::from_static(b"{}"), Duration::from_secs(2)).await;
        match &answer.failure {
            Some(Failure::Blocked(why)) => assert!(why.contains("resolves to"), "{why}"),
            other => panic!("{other:?}"),
        }
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "no connection was made");
    }
}
