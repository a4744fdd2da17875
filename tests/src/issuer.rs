//! The token issuer of the tests: `tests/jwt_issuer.py`, which mints access tokens with PyJWT
//! (not Argus's code), serves their JWKS, and forges the attacks the authorizer must refuse.

use serde_json::{json, Value};

pub struct Issuer {
    _child: tokio::process::Child,
    pub base_url: String,
    http: reqwest::Client,
}

impl Issuer {
    /// Starts an issuer on a free loopback port, with the receiver's venv
    /// (`ARGUS_WEBHOOK_RECEIVER_PYTHON`, which `make test` installs with PyJWT).
    pub async fn start() -> Self {
        let (child, base_url) = crate::receiver::spawn_peer("jwt_issuer.py").await;
        Self {
            _child: child,
            base_url,
            http: {
                argus_core::aws::install_tls_provider();
                reqwest::Client::new()
            },
        }
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.base_url)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self.http.post(format!("{}{path}", self.base_url)).json(&body).send().await.expect("issuer");
        assert_eq!(response.status().as_u16(), 200);
        response.json().await.expect("issuer JSON")
    }

    /// A token with `claims`, signed by `key` (`rsa-1`, `ec-1`, `stray`: never published).
    pub async fn mint(&self, claims: &Value, key: &str) -> String {
        self.post("/mint", json!({"claims": claims, "key": key})).await["token"].as_str().expect("token").to_string()
    }

    /// Publishes a new RSA key; returns its kid.
    pub async fn rotate(&self) -> String {
        self.post("/rotate", json!({})).await["kid"].as_str().expect("kid").to_string()
    }

    /// An attack token: `none`, `hs256_public_key`, or `tampered` (claims changed by `tamper`
    /// after signing).
    pub async fn forge(&self, kind: &str, claims: &Value, tamper: &Value) -> String {
        self.post("/forge", json!({"kind": kind, "claims": claims, "tamper": tamper})).await["token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    /// How many times the JWKS was read.
    pub async fn jwks_fetches(&self) -> u64 {
        let response = self.http.get(format!("{}/_control/jwks_fetches", self.base_url)).send().await.expect("issuer");
        response.json::<Value>().await.expect("JSON")["count"].as_u64().expect("count")
    }
}
