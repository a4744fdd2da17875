//! OAuth 2.0 / OIDC access tokens (JWT) from one configured issuer (issue 14).
//!
//! Only asymmetric signatures are accepted (RS256, ES256), each with a key of its own type from
//! the issuer's JWKS: `alg: none`, HMAC (`HS256` "signed" with the public key) and a key of the
//! other type are refused before any signature check. Signatures are checked with `ring`, the
//! library our TLS already uses. The JWKS is cached and fetched again when a token names a `kid`
//! it does not hold (key rotation), at most once per `JWKS_REFRESH_INTERVAL`, so forged `kid`s
//! cannot make us hammer the issuer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argus_models::access::{Scope, Scopes};
use argus_models::tenant::validate_tenant_id;
use argus_models::webhook::{UrlPolicy, WebhookUrl};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ServiceError;

/// Longest token read (a JWT with a few claims is under 2 KB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECONDS: i64 = 60;
/// A JWKS is fetched again for an unknown `kid` at most this often.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// A JWKS is re-read after this long even if every `kid` is known (revoked keys drop out).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(3_600);
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Where tokens come from and how to read them (`ARGUS_JWT_*`, from the template's parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    /// `iss`, exactly.
    pub issuer: String,
    /// Accepted in `aud` (string or list), or in `client_id` when a token has no `aud` (Cognito's
    /// access tokens).
    pub audience: String,
    /// The JWKS; default `<issuer>/.well-known/jwks.json` (Cognito, Auth0, Okta's default server).
    pub jwks_url: String,
    /// The claim naming the tenant.
    pub tenant_claim: String,
    /// The claim holding scopes: a space-separated string (`scope`) or a list (`scp`).
    pub scope_claim: String,
    /// Plain `http` to a loopback JWKS (the local stack's test issuer); never set when deployed.
    pub allow_http_loopback: bool,
    /// An unknown `kid` fetches the JWKS again at most this often.
    pub refresh_interval: Duration,
}

impl JwtSettings {
    /// `None` unless both `ARGUS_JWT_ISSUER` and `ARGUS_JWT_AUDIENCE` are set: then tokens are
    /// refused.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let issuer = var("ARGUS_JWT_ISSUER")?;
        let audience = var("ARGUS_JWT_AUDIENCE")?;
        Some(Self {
            jwks_url: var("ARGUS_JWT_JWKS_URL")
                .unwrap_or_else(|| format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/'))),
            issuer,
            audience,
            tenant_claim: var("ARGUS_JWT_TENANT_CLAIM").unwrap_or_else(|| "tenant_id".into()),
            scope_claim: var("ARGUS_JWT_SCOPE_CLAIM").unwrap_or_else(|| "scope".into()),
            // Only the local runner allows it (ARGUS_JWT_ALLOW_HTTP_LOOPBACK, read there).
            allow_http_loopback: false,
            refresh_interval: JWKS_REFRESH_INTERVAL,
        })
    }
}

/// Why a token was refused (the `reason` of the 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    Malformed,
    UnsupportedAlgorithm,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
    BadTenant,
    NotAnAccessToken,
}

impl TokenRejection {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim => "missing_claim",
            Self::BadTenant => "bad_tenant",
            Self::NotAnAccessToken => "not_an_access_token",
        }
    }
}

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub tenant: String,
    pub scopes: Scopes,
    /// Whose rate-limit counters a token's requests go to: its tenant's, shared by its tokens.
    pub principal: String,
}

#[derive(Debug, Clone)]
enum VerifyingKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed P-256 point (0x04 ‖ x ‖ y).
    P256(Vec<u8>),
}

#[derive(Default)]
struct Jwks {
    keys: HashMap<String, VerifyingKey>,
    fetched_at: Option<Instant>,
    /// Last fetch attempt, successful or not (the refresh interval counts from it).
    tried_at: Option<Instant>,
}

/// Verifies tokens for one issuer; shared by every request of a process (cheap to clone).
#[derive(Clone)]
pub struct JwtVerifier {
    pub settings: Arc<JwtSettings>,
    jwks: Arc<tokio::sync::Mutex<Jwks>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier").field("settings", &self.settings).finish()
    }
}

struct Parts<'a> {
    alg: String,
    kid: String,
    claims: Value,
    signing_input: &'a [u8],
    signature: Vec<u8>,
}

fn decode_part(part: &str) -> Result<Vec<u8>, TokenRejection> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenRejection::Malformed)
}

fn split(token: &str) -> Result<Parts<'_>, TokenRejection> {
    if token.len() > MAX_TOKEN_BYTES || !token.is_ascii() {
        return Err(TokenRejection::Malformed);
    }
    let mut pieces = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(TokenRejection::Malformed);
    };
    let header: Value = serde_json::from_slice(&decode_part(header)?).map_err(|_| TokenRejection::Malformed)?;
    let claims: Value = serde_json::from_slice(&decode_part(payload)?).map_err(|_| TokenRejection::Malformed)?;
    if !header.is_object() || !claims.is_object() {
        return Err(TokenRejection::Malformed);
    }
    // Critical extensions we do not implement must not be ignored (RFC 7515 §4.1.11).
    if header.get("crit").is_some() {
        return Err(TokenRejection::UnsupportedAlgorithm);
    }
    let alg = header.get("alg").and_then(Value::as_str).ok_or(TokenRejection::Malformed)?.to_string();
    let kid = header.get("kid").and_then(Value::as_str).unwrap_or("").to_string();
    let signing_input = &token.as_bytes()[..token.len() - signature.len() - 1];
    Ok(Parts { alg, kid, claims, signing_input, signature: decode_part(signature)? })
}

fn check_signature(key: &VerifyingKey, alg: &str, input: &[u8], signature: &[u8]) -> Result<(), TokenRejection> {
    use ring::signature;
    match (alg, key) {
        ("RS256", VerifyingKey::Rsa { n, e }) => signature::RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, input, signature)
            .map_err(|_| TokenRejection::BadSignature),
        ("ES256", VerifyingKey::P256(point)) => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(input, signature)
                .map_err(|_| TokenRejection::BadSignature)
        }
        // The header's alg never chooses the key type: a mismatch is refused.
        ("RS256" | "ES256", _) => Err(TokenRejection::UnsupportedAlgorithm),
        _ => Err(TokenRejection::UnsupportedAlgorithm),
    }
}

/// The keys of a JWKS document we can use: RSA and P-256 signing keys with a `kid`.
fn parse_jwks(document: &Value) -> HashMap<String, VerifyingKey> {
    let mut keys = HashMap::new();
    for jwk in document.get("keys").and_then(Value::as_array).into_iter().flatten() {
        let field = |name: &str| jwk.get(name).and_then(Value::as_str);
        let Some(kid) = field("kid") else { continue };
        if field("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let bytes = |name: &str| field(name).and_then(|v| URL_SAFE_NO_PAD.decode(v).ok());
        let key = match (field("kty"), field("alg")) {
            (Some("RSA"), None | Some("RS256")) => match (bytes("n"), bytes("e")) {
                (Some(n), Some(e)) => VerifyingKey::Rsa { n, e },
                _ => continue,
            },
            (Some("EC"), None | Some("ES256")) if field("crv") == Some("P-256") => match (bytes("x"), bytes("y")) {
                (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                    VerifyingKey::P256([&[0x04][..], &x, &y].concat())
                }
                _ => continue,
            },
            _ => continue,
        };
        keys.insert(kid.to_string(), key);
    }
    keys
}

fn number(claims: &Value, name: &str) -> Option<i64> {
    claims.get(name).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

impl JwtSettings {
    /// Checks the claims of a token whose signature is valid, at `now` (epoch seconds).
    fn grant_of(&self, claims: &Value, now: i64) -> Result<TokenGrant, TokenRejection> {
        let exp = number(claims, "exp").ok_or(TokenRejection::MissingClaim)?;
        if now > exp.saturating_add(LEEWAY_SECONDS) {
            return Err(TokenRejection::Expired);
        }
        if number(claims, "nbf").is_some_and(|nbf| now < nbf.saturating_sub(LEEWAY_SECONDS)) {
            return Err(TokenRejection::NotYetValid);
        }
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(TokenRejection::WrongIssuer);
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == self.audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(self.audience.as_str())),
            None => claims.get("client_id").and_then(Value::as_str) == Some(self.audience.as_str()),
            _ => false,
        };
        if !audience_ok {
            return Err(TokenRejection::WrongAudience);
        }
        // Cognito's ID tokens carry the app client as `aud` too: only access tokens are accepted.
        if claims.get("token_use").and_then(Value::as_str).is_some_and(|use_| use_ != "access") {
            return Err(TokenRejection::NotAnAccessToken);
        }
        claims.get("sub").and_then(Value::as_str).ok_or(TokenRejection::MissingClaim)?;
        let tenant = claims.get(&self.tenant_claim).and_then(Value::as_str).ok_or(TokenRejection::MissingClaim)?;
        validate_tenant_id(tenant).map_err(|_| TokenRejection::BadTenant)?;
        // `scope: "ingest read"` or `scp: ["ingest"]`; a resource-server prefix (Cognito's
        // `argus/ingest`) is dropped. Names we do not know grant nothing.
        let names: Vec<&str> = match claims.get(&self.scope_claim) {
            Some(Value::String(text)) => text.split_whitespace().collect(),
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let scopes: Vec<Scope> =
            names.iter().filter_map(|name| Scope::parse(name.rsplit('/').next().unwrap_or(name))).collect();
        // One counter per tenant for all its tokens: the tenant's limits are not multiplied by
        // its number of users or clients.
        let digest = Sha256::digest(format!("{}\n{tenant}", self.issuer).as_bytes());
        Ok(TokenGrant {
            tenant: tenant.to_string(),
            scopes: Scopes::of(&scopes),
            principal: format!("jwt-{}", &hex::encode(digest)[..16]),
        })
    }
}

impl JwtVerifier {
    pub fn new(settings: JwtSettings) -> Self {
        Self { settings: Arc::new(settings), jwks: Default::default() }
    }

    /// Verifies `token` at `now` (epoch seconds). `Ok(Err(_))` is a refused token; `Err(_)` is
    /// a JWKS that could not be read (the authorizer then fails, as for a DynamoDB outage).
    pub async fn verify(&self, token: &str, now: i64) -> Result<Result<TokenGrant, TokenRejection>, ServiceError> {
        let parts = match split(token.trim()) {
            Ok(parts) => parts,
            Err(rejection) => return Ok(Err(rejection)),
        };
        if parts.alg != "RS256" && parts.alg != "ES256" {
            return Ok(Err(TokenRejection::UnsupportedAlgorithm));
        }
        let Some(key) = self.key(&parts.kid).await? else {
            return Ok(Err(TokenRejection::UnknownKey));
        };
        if let Err(rejection) = check_signature(&key, &parts.alg, parts.signing_input, &parts.signature) {
            return Ok(Err(rejection));
        }
        Ok(self.settings.grant_of(&parts.claims, now))
    }

    /// The key `kid`, fetching the JWKS when it is unknown (at most once per refresh interval)
    /// or old.
    async fn key(&self, kid: &str) -> Result<Option<VerifyingKey>, ServiceError> {
        let mut jwks = self.jwks.lock().await;
        let stale = jwks.fetched_at.is_none_or(|at| at.elapsed() > JWKS_MAX_AGE);
        if !stale {
            if let Some(key) = jwks.keys.get(kid) {
                return Ok(Some(key.clone()));
            }
        }
        let may_fetch = jwks.tried_at.is_none_or(|at| at.elapsed() >= self.settings.refresh_interval);
        if !may_fetch && jwks.keys.is_empty() {
            // The last fetch failed and the interval has not passed: still unavailable, not
            // "unknown key" (a valid token must not read as a bad one while the issuer is down).
            return Err(ServiceError::Unavailable {
                component: "jwks",
                message: format!("{} could not be read", self.settings.jwks_url),
            });
        }
        if may_fetch {
            jwks.tried_at = Some(Instant::now());
            match self.fetch().await {
                Ok(keys) => {
                    jwks.keys = keys;
                    jwks.fetched_at = Some(Instant::now());
                }
                // Keys already held keep working while the issuer is unreachable.
                Err(err) if !jwks.keys.is_empty() => tracing::warn!(error = %err, "JWKS refresh failed"),
                Err(err) => {
                    return Err(ServiceError::Unavailable { component: "jwks", message: err });
                }
            }
        }
        Ok(jwks.keys.get(kid).cloned())
    }

    async fn fetch(&self) -> Result<HashMap<String, VerifyingKey>, String> {
        let policy = UrlPolicy { allow_http_loopback: self.settings.allow_http_loopback };
        let url = WebhookUrl::parse("jwks_url", &self.settings.jwks_url, &policy).map_err(|e| e.message)?;
        // Within the authorizer's deadline too, which is shorter than this in all.
        let fetch =
            tokio::time::timeout(JWKS_FETCH_TIMEOUT, crate::webhooks::sender::get(&url, &policy, MAX_JWKS_BYTES));
        let body = crate::deadline::bounded(fetch)
            .await
            .map_err(|err| format!("{}: {err}", self.settings.jwks_url))?
            .map_err(|_| format!("{}: no answer within {JWKS_FETCH_TIMEOUT:?}", self.settings.jwks_url))??;
        let document: Value =
            serde_json::from_slice(&body).map_err(|e| format!("{}: not a JWKS: {e}", self.settings.jwks_url))?;
        let keys = parse_jwks(&document);
        tracing::info!(keys = keys.len(), url = %self.settings.jwks_url, "JWKS fetched");
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> JwtSettings {
        JwtSettings {
            issuer: "https://issuer.example".into(),
            audience: "argus".into(),
            jwks_url: "https://issuer.example/.well-known/jwks.json".into(),
            tenant_claim: "tenant_id".into(),
            scope_claim: "scope".into(),
            allow_http_loopback: false,
            refresh_interval: JWKS_REFRESH_INTERVAL,
        }
    }

    fn claims(extra: Value) -> Value {
        let mut base = json!({"iss": "https://issuer.example", "aud": "argus", "sub": "client-1",
            "exp": 2_000, "tenant_id": "acme", "scope": "argus/ingest read unknown"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base
    }

    #[test]
    fn claims_are_checked_with_leeway() {
        let s = settings();
        let grant = s.grant_of(&claims(json!({})), 1_000).unwrap();
        assert_eq!(grant.tenant, "acme");
        assert_eq!(grant.scopes, Scopes::of(&[Scope::Ingest, Scope::Read]));
        assert!(grant.principal.starts_with("jwt-") && grant.principal.len() == 20);
        assert!(s.grant_of(&claims(json!({})), 2_000 + LEEWAY_SECONDS).is_ok());
        assert_eq!(s.grant_of(&claims(json!({})), 2_001 + LEEWAY_SECONDS), Err(TokenRejection::Expired));
        assert_eq!(s.grant_of(&claims(json!({"nbf": 1_100})), 1_000), Err(TokenRejection::NotYetValid));
        assert!(s.grant_of(&claims(json!({"nbf": 1_050})), 1_000).is_ok());
        assert_eq!(s.grant_of(&claims(json!({"iss": "https://evil"})), 1_000), Err(TokenRejection::WrongIssuer));
        assert_eq!(s.grant_of(&claims(json!({"aud": "other"})), 1_000), Err(TokenRejection::WrongAudience));
        assert!(s.grant_of(&claims(json!({"aud": ["x", "argus"]})), 1_000).is_ok());
        assert!(s.grant_of(&claims(json!({"aud": null, "client_id": "argus"})), 1_000).is_ok());
        assert_eq!(s.grant_of(&claims(json!({"aud": null})), 1_000), Err(TokenRejection::WrongAudience));
        assert_eq!(s.grant_of(&claims(json!({"exp": null})), 1_000), Err(TokenRejection::MissingClaim));
        assert_eq!(s.grant_of(&claims(json!({"tenant_id": "../x"})), 1_000), Err(TokenRejection::BadTenant));
        assert_eq!(s.grant_of(&claims(json!({"token_use": "id"})), 1_000), Err(TokenRejection::NotAnAccessToken));
        assert!(s.grant_of(&claims(json!({"token_use": "access"})), 1_000).is_ok());
        let other_subject = s.grant_of(&claims(json!({"sub": "client-2"})), 1_000).unwrap();
        assert_eq!(other_subject.principal, grant.principal, "one counter per tenant");
        let list = s.grant_of(&claims(json!({"scope": ["manage"]})), 1_000).unwrap();
        assert_eq!(list.scopes, Scopes::of(&[Scope::Manage]));
    }

    #[test]
    fn malformed_tokens_are_refused_without_panicking() {
        for token in ["", "a.b", "a.b.c.d", "!!.!!.!!", "eyJhbGciOiJub25lIn0.e30.", &"a".repeat(MAX_TOKEN_BYTES + 1)] {
            assert!(split(token).is_err() || split(token).unwrap().alg == "none", "{token}");
        }
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","crit":["b64"]}"#);
        assert_eq!(split(&format!("{header}.e30.AA")).err(), Some(TokenRejection::UnsupportedAlgorithm));
    }

    #[test]
    fn jwks_keeps_only_usable_signing_keys() {
        let doc = json!({"keys": [
            {"kid": "r", "kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kid": "enc", "kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kid": "hs", "kty": "oct", "k": "c2VjcmV0"},
            {"kid": "ec-short", "kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"}
        ]});
        let keys = parse_jwks(&doc);
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["r"]);
        // An RSA key never verifies an ES256 token, nor any key an HS256 one.
        assert_eq!(check_signature(&keys["r"], "ES256", b"x", b"y").err(), Some(TokenRejection::UnsupportedAlgorithm));
        assert_eq!(check_signature(&keys["r"], "HS256", b"x", b"y").err(), Some(TokenRejection::UnsupportedAlgorithm));
    }
}
