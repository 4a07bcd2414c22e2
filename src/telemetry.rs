//! Logging: human-readable or JSON lines on stdout, filtered by `log.level`; and, with
//! `telemetry.otlp_endpoint` set, each request's span exported over OTLP/HTTP.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::level_filters::LevelFilter;
use tracing::span;
use tracing::subscriber::Interest;
use tracing::{Event, Metadata};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
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
                .with_filter(Fresh(request_spans()));
            (Some(provider), Some(layer), None)
        }
        Some(Err(e)) => (None, None, Some(e)),
        None => (None, None, None),
    };
    let (filter, level) = reload::Layer::new(filter);
    let _ = LEVEL.set(level);
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(Fresh(filter)))
        .with(export)
        .try_init();
    if let Some(e) = failed {
        tracing::error!("spans are not exported (telemetry.otlp_endpoint): {e}");
    }
    Telemetry { provider }
}

/// What the exporter takes: the request spans alone.
fn request_spans() -> Targets {
    Targets::new().with_target(REQUEST_SPAN_TARGET, tracing::Level::INFO)
}

/// A per-layer filter whose callsites are never cached as `always`, so the subscriber asks
/// [`Filter::enabled`] before each span and event it lets through.
///
/// A per-layer filter's yes or no goes from `enabled` to the layer through a thread-local; a
/// callsite cached as `always` skips `enabled` and the layer reads whatever the last check on
/// that thread left there. The `log` bridge checks with metadata of its own and leaves a "no"
/// behind when nothing wants it: sqlx asks whether to log each statement, on the runtime's
/// thread with PostgreSQL (SQLite's statements run on threads of their own), and the next
/// request span or `always` event on that thread then reached neither the log nor the OTLP
/// exporter (tracing-subscriber's bug, tokio-rs/tracing#2519). Callsites no filter wants stay
/// cached as `never`.
struct Fresh<F>(F);

impl<S, F: Filter<S>> Filter<S> for Fresh<F> {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        self.0.enabled(meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        let interest = self.0.callsite_enabled(meta);
        if interest.is_always() {
            Interest::sometimes()
        } else {
            interest
        }
    }

    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        self.0.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.0.on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.0.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.0.on_exit(id, ctx);
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.0.on_close(id, ctx);
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::{Arc, Mutex};

    use tracing::callsite::{Callsite, Identifier};
    use tracing::field::FieldSet;
    use tracing::metadata::Kind;
    use tracing::{Dispatch, Level, Subscriber};
    use tracing_subscriber::registry::LookupSpan;

    use super::*;

    struct RequestCallsite;

    impl Callsite for RequestCallsite {
        fn set_interest(&self, _: Interest) {}

        fn metadata(&self) -> &Metadata<'_> {
            &REQUEST
        }
    }

    static CALLSITE: RequestCallsite = RequestCallsite;

    /// What `relay::request_span`'s callsite holds.
    static REQUEST: Metadata<'static> = Metadata::new(
        "request",
        REQUEST_SPAN_TARGET,
        Level::INFO,
        None,
        None,
        None,
        FieldSet::new(&[], Identifier(&CALLSITE)),
        Kind::SPAN,
    );

    /// Which layers saw a new span.
    struct Seen(&'static str, Arc<Mutex<Vec<&'static str>>>);

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Seen {
        fn on_new_span(&self, _: &span::Attributes<'_>, _: &span::Id, _: Context<'_, S>) {
            self.1.lock().unwrap().push(self.0);
        }
    }

    /// The `log` bridge's question about one of sqlx's statement lines (`log_enabled!`, with
    /// metadata made per call as `tracing-log` makes it), then a request span made as `info_span!` makes it with
    /// the interest its callsite cached: which layers saw the span.
    fn after_a_log_check(
        dispatch: &Dispatch,
        seen: &Mutex<Vec<&'static str>>,
    ) -> Vec<&'static str> {
        let statement = Metadata::new(
            "log event",
            "sqlx::query",
            Level::DEBUG,
            None,
            None,
            None,
            FieldSet::new(&["message"], Identifier(&CALLSITE)),
            Kind::EVENT,
        );
        // Its answer is "yes" (the registry says no only when every one of 64 filters does):
        // sqlx then makes its own event, whose callsite is cached `never`, so nothing reads the
        // "no" each filter left.
        dispatch.enabled(&statement);
        let interest = dispatch.register_callsite(&REQUEST);
        assert!(!interest.is_never());
        if interest.is_always() || dispatch.enabled(&REQUEST) {
            let values = REQUEST.fields().value_set(&[]);
            let id = dispatch.new_span(&span::Attributes::new_root(&REQUEST, &values));
            dispatch.try_close(id);
        }
        seen.lock().unwrap().clone()
    }

    #[test]
    fn a_request_span_after_a_refused_log_check_reaches_the_log_and_the_exporter() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let fresh = Dispatch::new(
            tracing_subscriber::registry()
                .with(
                    Seen("log", Arc::clone(&seen))
                        .with_filter(Fresh(EnvFilter::new("info,usage=debug"))),
                )
                .with(Seen("export", Arc::clone(&seen)).with_filter(Fresh(request_spans()))),
        );
        assert_eq!(after_a_log_check(&fresh, &seen), ["log", "export"]);

        // The same filters cached as `always` lose the span: what `Fresh` is for (once
        // tracing-subscriber fixes this, this part fails and `Fresh` can go).
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cached = Dispatch::new(
            tracing_subscriber::registry()
                .with(
                    Seen("log", Arc::clone(&seen)).with_filter(EnvFilter::new("info,usage=debug")),
                )
                .with(Seen("export", Arc::clone(&seen)).with_filter(request_spans())),
        );
        assert_eq!(after_a_log_check(&cached, &seen), Vec::<&str>::new());
    }
}
