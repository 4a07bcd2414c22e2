//! Prometheus metrics: the series, the hooks the request path calls, and the `/metrics` listener.
//!
//! Off unless `metrics.listen` is set: [`install`] then creates the one [`Metrics`] of the
//! process, and every hook starts with [`get`], so with metrics off a hook costs one load.
//! On, a hook is an atomic add on a handle made in advance (per protocol, token direction) or
//! found in a family keyed by `&'static str` labels and interned names (groups, accounts), so
//! the request path does not allocate for metrics. Label values are bounded: protocols, routes,
//! statuses, failure kinds and the names of configured groups and accounts; no model, request
//! id or other client input is a label.
//!
//! Values only known at scrape time (account state, queue length, the process) are read when
//! `/metrics` is asked for (`scrape.rs`, `process.rs`).

mod labels;
mod process;
mod scrape;

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::protocol::{Protocol, TokenUsage};
use labels::{
    AccountLabels, AccountStateLabels, AttemptLabels, Interned, OutcomeLabels, RequestLabels,
};
pub use scrape::{serve, PoolReading, ReadPool};

/// The protocol label of a request no route took.
pub const NO_PROTOCOL: &str = "none";
/// The group label of a request refused before its key was known.
pub const NO_GROUP: &str = "-";

/// Every series of the process.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: PerProtocol<Histogram>,
    ttft: PerProtocol<Histogram>,
    attempts: Family<AttemptLabels, Counter>,
    failovers: PerProtocol<Counter>,
    account_state: Family<AccountStateLabels, Gauge>,
    account_demoted: Family<AccountLabels, Gauge>,
    /// `input`, `cached_input`, `output`, `reasoning`.
    tokens: [Counter; 4],
    cost: Counter<f64, AtomicU64>,
    in_flight: Gauge,
    queue_waiting: Gauge,
    usage_pending: Gauge,
    state_backend_up: Gauge,
    state_calls: Family<labels::KindLabels, Gauge>,
    keepalive_bytes: Counter,
    token_refreshes: Family<OutcomeLabels, Counter>,
    config_reloads: Family<OutcomeLabels, Counter>,
    store_errors: Counter,
    /// Group and account names as shared label values.
    names: Interned,
}

/// One handle per protocol, made at start so a hook indexes instead of looking up.
struct PerProtocol<M>([M; 3]);

impl<M> PerProtocol<M> {
    fn of(&self, protocol: Protocol) -> &M {
        &self.0[match protocol {
            Protocol::Responses => 0,
            Protocol::Chat => 1,
            Protocol::Messages => 2,
        }]
    }
}

const PROTOCOLS: [Protocol; 3] = [Protocol::Responses, Protocol::Chat, Protocol::Messages];
const TOKEN_DIRECTIONS: [&str; 4] = ["input", "cached_input", "output", "reasoning"];

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process's metrics, when `metrics.listen` is set.
pub fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Creates the metrics (once; later calls return the same).
pub fn install() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

/// A family of `&'static str`-labelled children, one per protocol, registered and kept.
fn per_protocol<M, F>(registry: &mut Registry, name: &str, help: &str, make: F) -> PerProtocol<M>
where
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Clone
        + Send
        + Sync
        + std::fmt::Debug
        + 'static,
    F: Fn() -> M + Send + Sync + Clone + 'static,
{
    let family = Family::<labels::ProtocolLabels, M, F>::new_with_constructor(make);
    let handles = PROTOCOLS.map(|p| {
        family.get_or_create_owned(&labels::ProtocolLabels {
            protocol: p.as_str(),
        })
    });
    registry.register(name, help, family);
    PerProtocol(handles)
}

fn seconds_buckets() -> Histogram {
    // 5 ms to about 11 minutes: a cached short answer to a long reasoning stream.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.005, 2.5, 14,
    ))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "subrelay_requests",
            "Requests answered, refused ones (401, 400, 404, 413, 429...) included, by protocol, route, status and the key's group",
            requests.clone(),
        );
        let duration = per_protocol(
            &mut registry,
            "subrelay_request_duration_seconds",
            "Time from a request's arrival to its end (the last byte of a stream)",
            seconds_buckets as fn() -> Histogram,
        );
        let ttft = per_protocol(
            &mut registry,
            "subrelay_time_to_first_token_seconds",
            "Time from a request's arrival to its first output to the client",
            seconds_buckets as fn() -> Histogram,
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "subrelay_upstream_attempts",
            "Upstream attempts by account and outcome (ok, or the failure kind)",
            attempts.clone(),
        );
        let failovers = per_protocol(
            &mut registry,
            "subrelay_failovers",
            "Failed attempts after which the request moved on to another account",
            Counter::default,
        );
        let account_state = Family::<AccountStateLabels, Gauge>::default();
        registry.register(
            "subrelay_account_state",
            "1 for the account's current state (available, cooling, disabled), 0 for the others; read at scrape",
            account_state.clone(),
        );
        let account_demoted = Family::<AccountLabels, Gauge>::default();
        registry.register(
            "subrelay_account_demoted",
            "1 when the account was far worse than the others of its groups over the last 5 minutes (error rate or time to first token) and is ranked after them, else 0; read at scrape",
            account_demoted.clone(),
        );
        let token_family = Family::<labels::DirectionLabels, Counter>::default();
        let tokens = TOKEN_DIRECTIONS.map(|direction| {
            token_family.get_or_create_owned(&labels::DirectionLabels { direction })
        });
        registry.register(
            "subrelay_tokens",
            "Tokens the upstreams reported, by direction",
            token_family,
        );
        let cost = Counter::<f64, AtomicU64>::default();
        registry.register(
            "subrelay_cost_usd",
            "Cost of the recorded requests in USD, by the price table",
            cost.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "subrelay_in_flight_requests",
            "Relayed requests between admission and their record",
            in_flight.clone(),
        );
        let queue_waiting = Gauge::default();
        registry.register(
            "subrelay_queue_waiting",
            "Requests waiting for an account slot; read at scrape",
            queue_waiting.clone(),
        );
        let usage_pending = Gauge::default();
        registry.register(
            "subrelay_usage_pending",
            "Usage rows recorded by this process and not yet in the store",
            usage_pending.clone(),
        );
        let state_backend_up = Gauge::default();
        registry.register(
            "subrelay_state_backend_up",
            "1 while the runtime state backend answers (always with state.backend local); with redis, 0 while this instance runs on its own state; read at scrape",
            state_backend_up.clone(),
        );
        let state_calls = Family::<labels::KindLabels, Gauge>::default();
        registry.register(
            "subrelay_state_redis_calls",
            "With state.backend redis: Redis round trips since start, by kind (waited: a request waited for the answer; background: pipelines sent without waiting); read at scrape",
            state_calls.clone(),
        );
        let keepalive_bytes = Counter::default();
        registry.register(
            "subrelay_keepalive_bytes",
            "Keepalive bytes written to clients while they waited",
            keepalive_bytes.clone(),
        );
        let token_refreshes = Family::<OutcomeLabels, Counter>::default();
        // Known and few: shown at 0 from the start, so a rate over them has a series to read.
        for outcome in ["ok", "invalid_grant", "error"] {
            let _ = token_refreshes.get_or_create(&OutcomeLabels { outcome });
        }
        registry.register(
            "subrelay_token_refreshes",
            "Sign-in token refreshes by outcome (ok, invalid_grant, error)",
            token_refreshes.clone(),
        );
        let config_reloads = Family::<OutcomeLabels, Counter>::default();
        for outcome in ["ok", "error"] {
            let _ = config_reloads.get_or_create(&OutcomeLabels { outcome });
        }
        registry.register(
            "subrelay_config_reloads",
            "Configuration reloads (SIGHUP, subrelay reload) by outcome: ok, or error (the file was refused and the running configuration stayed)",
            config_reloads.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "subrelay_store_errors",
            "Store operations that failed (usage writes, admin API, readiness probes)",
            store_errors.clone(),
        );
        let build_info = prometheus_client::metrics::info::Info::new(labels::BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
        });
        registry.register("subrelay_build", "The running build", build_info);
        registry.register_collector(Box::new(process::ProcessCollector));
        Self {
            registry,
            requests,
            duration,
            ttft,
            attempts,
            failovers,
            account_state,
            account_demoted,
            tokens,
            cost,
            in_flight,
            queue_waiting,
            usage_pending,
            state_backend_up,
            state_calls,
            keepalive_bytes,
            token_refreshes,
            config_reloads,
            store_errors,
            names: Interned::default(),
        }
    }

    /// A request's end: counted, and its duration and time to first output observed.
    /// `protocol` is `None` for a request no route took.
    pub fn request(
        &self,
        protocol: Option<Protocol>,
        route: &'static str,
        status: u16,
        group: &str,
        duration: Duration,
        ttft: Option<Duration>,
    ) {
        let labels = RequestLabels {
            protocol: protocol.map_or(NO_PROTOCOL, Protocol::as_str),
            route,
            status,
            group: self.names.get(group),
        };
        self.requests.get_or_create(&labels).inc();
        if let Some(protocol) = protocol {
            self.duration.of(protocol).observe(duration.as_secs_f64());
            if let Some(ttft) = ttft {
                self.ttft.of(protocol).observe(ttft.as_secs_f64());
            }
        }
    }

    pub fn tokens(&self, tokens: &TokenUsage) {
        let [input, cached, output, reasoning] = &self.tokens;
        input.inc_by(tokens.input);
        cached.inc_by(tokens.cached_input);
        output.inc_by(tokens.output);
        reasoning.inc_by(tokens.reasoning);
    }

    /// One attempt on `account`: `outcome` is `ok` or what kind of failure it was.
    pub fn attempt(&self, account: &str, outcome: &'static str) {
        let labels = AttemptLabels {
            account: self.names.get(account),
            outcome,
        };
        self.attempts.get_or_create(&labels).inc();
    }

    pub fn failover(&self, protocol: Protocol) {
        self.failovers.of(protocol).inc();
    }

    pub fn cost(&self, usd: f64) {
        if usd.is_finite() && usd > 0.0 {
            self.cost.inc_by(usd);
        }
    }

    /// A relayed request was admitted; the guard counts it out when dropped (on every path).
    pub fn in_flight(&'static self) -> InFlight {
        self.in_flight.inc();
        InFlight(self)
    }

    pub fn keepalive_bytes(&self, n: usize) {
        self.keepalive_bytes.inc_by(n as u64);
    }

    pub fn token_refresh(&self, outcome: &'static str) {
        self.token_refreshes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn config_reload(&self, outcome: &'static str) {
        self.config_reloads
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    /// A usage row was recorded (it waits for the store).
    pub fn usage_recorded(&self) {
        self.usage_pending.inc();
    }

    /// `n` usage rows reached the store. Rows replayed from an earlier run's spool were never
    /// counted in, so the gauge stops at 0.
    pub fn usage_stored(&self, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let before = self.usage_pending.dec_by(n);
        if before < n {
            self.usage_pending.set(0);
        }
    }
}

/// Holds one `subrelay_in_flight_requests`.
pub struct InFlight(&'static Metrics);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

#[cfg(test)]
mod tests;
