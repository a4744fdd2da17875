//! The webhook receiver of the tests: `tests/webhook_receiver.py`, which verifies every
//! signature with the `standardwebhooks` package (the specification's reference library, not
//! Argus's code) and answers as each test scripts it.

use std::process::Stdio;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

pub struct Receiver {
    child: tokio::process::Child,
    pub base_url: String,
    http: reqwest::Client,
}

/// Starts one of the tests' Python peers (`tests/<script>`, with the venv `make test` installs:
/// `ARGUS_WEBHOOK_RECEIVER_PYTHON`) and waits for its `LISTENING <port>` line: the process (killed
/// when dropped) and its base URL on loopback.
pub async fn spawn_peer(script: &str) -> (tokio::process::Child, String) {
    let python = std::env::var("ARGUS_WEBHOOK_RECEIVER_PYTHON").unwrap_or_else(|_| {
        panic!(
            "ARGUS_WEBHOOK_RECEIVER_PYTHON is not set: run the suite with `make test`, which installs the peers' venv"
        )
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let mut child = tokio::process::Command::new(python)
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {script}: {e}"));
    let stdout = child.stdout.take().expect("peer stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{script} starts within 30 s"))
        .expect("reading the peer's stdout")
        .expect("the peer printed its port");
    let port = line.strip_prefix("LISTENING ").unwrap_or_else(|| panic!("unexpected output of {script}: {line}"));
    (child, format!("http://127.0.0.1:{}", port.trim()))
}

impl Receiver {
    /// Starts a receiver on a free loopback port (`ARGUS_WEBHOOK_RECEIVER_PYTHON`: the venv
    /// `make test` installs it in).
    pub async fn start() -> Self {
        let (child, base_url) = spawn_peer("webhook_receiver.py").await;
        Self {
            child,
            base_url,
            http: {
                argus_core::aws::install_tls_provider();
                reqwest::Client::new()
            },
        }
    }

    /// The URL webhooks post to for endpoint `name`.
    pub fn url(&self, name: &str) -> String {
        format!("{}/hooks/{name}", self.base_url)
    }

    /// Configures endpoint `name`: the secrets it verifies with, and its answers in order (the
    /// last repeats), e.g. `[{"status": 500}, {"status": 200}]`.
    pub async fn endpoint(&self, name: &str, secrets: &[&str], responses: Value) {
        let response = self
            .http
            .put(format!("{}/_control/endpoints/{name}", self.base_url))
            .json(&json!({"secrets": secrets, "responses": responses}))
            .send()
            .await
            .expect("receiver control");
        assert_eq!(response.status().as_u16(), 200, "{}", response.text().await.unwrap_or_default());
    }

    /// What endpoint `name` received, in arrival order.
    pub async fn log(&self, name: &str) -> Vec<Value> {
        let log: Value = self
            .http
            .get(format!("{}/_control/log/{name}", self.base_url))
            .send()
            .await
            .expect("receiver log")
            .json()
            .await
            .expect("receiver log JSON");
        log["deliveries"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
