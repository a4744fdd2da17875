//! Logging setup.

/// JSON logs for CloudWatch, level from `AWS_LAMBDA_LOG_LEVEL` / `RUST_LOG` (default info).
pub fn init_lambda() {
    let filter = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string())
        .to_lowercase();
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_target(false)
        .with_current_span(false)
        .without_time()
        .with_ansi(false)
        .try_init();
}

/// Human-readable logs for the local runner and tools (`RUST_LOG`, default info).
pub fn init_local() {
    let filter =
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_target(false)
        .try_init();
}
