//! What `serve` logs and traces: log lines on stderr (`RUST_LOG` filters
//! them), and, only when an OTLP endpoint is given, every request as an
//! OpenTelemetry span sent over OTLP/HTTP in batches. Off by default.

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

use crate::serve::LogFormat;

/// The OTLP/HTTP path of traces, added to an endpoint given without it.
const TRACES_PATH: &str = "/v1/traces";

/// The trace pipeline while it runs; [`Traces::shutdown`] sends what is
/// still buffered.
pub(crate) struct Traces(Option<SdkTracerProvider>);

impl Traces {
    /// Installs the subscriber: log lines per `format` and, with
    /// `otlp_endpoint` (e.g. `http://127.0.0.1:4318`), request spans
    /// exported to it. Spans carry the method, path and outcome of each
    /// request, never a body, header or token.
    pub(crate) fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<Self> {
        let logs = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let lines = fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr);
        let lines = match format {
            LogFormat::Human => lines.with_filter(logs).boxed(),
            LogFormat::Json => lines.json().with_filter(logs).boxed(),
        };
        let Some(endpoint) = otlp_endpoint else {
            let _ = tracing_subscriber::registry().with(lines).try_init();
            return Ok(Self(None));
        };
        let url = traces_url(endpoint);
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(url.clone())
            .build()
            .with_context(|| format!("setting up the OTLP exporter for {url}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("agentauth").build())
            .build();
        // tower-http opens each request's span at DEBUG: traced even where
        // the log lines show only INFO.
        let spans = Targets::new()
            .with_target("tower_http", Level::DEBUG)
            .with_default(Level::INFO);
        let otel = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("agentauth"))
            .with_filter(spans);
        let _ = tracing_subscriber::registry()
            .with(lines)
            .with(otel)
            .try_init();
        tracing::info!(endpoint = %url, "sending traces over OTLP");
        Ok(Self(Some(provider)))
    }

    /// Sends the spans still buffered and stops the exporter.
    pub(crate) async fn shutdown(self) {
        if let Some(provider) = self.0 {
            let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = flushed {
                eprintln!("warning: flushing traces failed: {e}");
            }
        }
    }
}

/// `endpoint` with the traces path, unless it names it already.
fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with(TRACES_PATH) {
        endpoint.to_owned()
    } else {
        format!("{endpoint}{TRACES_PATH}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        for (given, url) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
            ("http://c:4318/v1/traces", "http://c:4318/v1/traces"),
        ] {
            assert_eq!(traces_url(given), url);
        }
    }
}
