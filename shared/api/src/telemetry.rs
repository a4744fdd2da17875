//! Logging setup.

/// JSON logs for CloudWatch, level from `AWS_LAMBDA_LOG_LEVEL` / `RUST_LOG` (default info).
pub fn init_lambda() {
    let filter = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string())
        .to_lowercase();
    let _ = tracing::subscriber::set_global_default(lambda_subscriber(&filter, std::io::stdout));
}

/// The functions' log format: one JSON object per line. Each line carries the invocation's
/// span (`lambda_runtime` opens one per invocation with `requestId` and, with active tracing,
/// `xrayTraceId`), so every log line of a request can be found from its X-Ray trace.
pub fn lambda_subscriber<W>(filter: &str, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_target(false)
        .with_current_span(true)
        .with_span_list(false)
        .without_time()
        .with_ansi(false)
        .with_writer(writer)
        .finish()
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    /// Every log line inside an invocation carries its X-Ray trace id, from the span the Lambda
    /// runtime itself opens.
    #[test]
    fn log_lines_carry_the_invocation_trace_id() {
        let buffer: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = buffer.clone();
        let writer = move || Writer(sink.clone());
        let subscriber = super::lambda_subscriber("info", writer);
        let mut context = lambda_http::Context::default();
        context.request_id = "req-1".into();
        context.xray_trace_id =
            Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into());
        tracing::subscriber::with_default(subscriber, || {
            let span = lambda_http::lambda_runtime::layers::trace::request_span(&context);
            let _entered = span.enter();
            tracing::info!(events = 3, "processed");
        });
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["span"]["xrayTraceId"], context.xray_trace_id.clone().unwrap());
        assert_eq!(line["span"]["requestId"], "req-1");
        assert_eq!(line["fields"]["message"], "processed");
    }

    struct Writer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
