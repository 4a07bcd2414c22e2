//! Logging: human-readable or JSON lines on stdout, filtered by `log.level`; and, with
//! `telemetry.otlp_endpoint` set, each request's span exported over OTLP/HTTP.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogConfig, LogFormat, TelemetryConfig};

/// The span of a relayed request (`relay::request_span`), the only one exported.
pub const REQUEST_SPAN_TARGET: &str = "subrelay::request";

/// The log filter (`log.level`), replaced by a configuration reload.
static LEVEL: std::sync::OnceLock<reload::Handle<EnvFilter, Registry>> = std::sync::OnceLock::new();

/// Replaces the log filter with `level` (validated by the config's load). Fails when logging
/// was not set up by [`init`] or the filter does not parse.
pub fn set_level(level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    LEVEL
        .get()
        .ok_or_else(|| "logging is not set up".to_owned())?
        .reload(filter)
        .map_err(|e| e.to_string())
}

/// Keeps the trace exporter; dropping it sends the spans still queued (at exit).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // The SDK's own default is 5 s, which a loaded machine can miss for one last POST
            // (the whole export of the queued spans): the exit waits up to 15 s for it.
            if let Err(e) = provider.shutdown_with_timeout(std::time::Duration::from_secs(15)) {
                tracing::warn!("the last spans could not be exported: {e}");
            }
        }
    }
}

/// Installs the global subscriber. Called once at start-up (before any runtime: the exporter
/// runs on a thread of its own); a second call is ignored.
pub fn init(log: &LogConfig, telemetry: &TelemetryConfig) -> Telemetry {
    // The level was validated at load; the fallback is for a filter that became invalid since.
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: a file, a pipe or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stdout);
    let fmt = match log.format {
        LogFormat::Pretty => fmt.with_target(true).boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .boxed(),
    };
    let (provider, export, failed) = match telemetry.otlp_traces_url.as_deref().map(exporter) {
        Some(Ok(provider)) => {
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("subrelay"))
                .with_filter(Targets::new().with_target(REQUEST_SPAN_TARGET, tracing::Level::INFO));
            (Some(provider), Some(layer), None)
        }
        Some(Err(e)) => (None, None, Some(e)),
        None => (None, None, None),
    };
    let (filter, level) = reload::Layer::new(filter);
    let _ = LEVEL.set(level);
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(export)
        .try_init();
    if let Some(e) = failed {
        tracing::error!("spans are not exported (telemetry.otlp_endpoint): {e}");
    }
    Telemetry { provider }
}

/// Spans batched and posted as protobuf to `url` from the SDK's own thread.
fn exporter(url: &str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("subrelay")
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
