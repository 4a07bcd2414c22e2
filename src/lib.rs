//! subrelay: a self-hosted AI API gateway.
//!
//! A request enters through [`routes`] (every path) and [`http`] (client, auth, body limits,
//! refusals), lives in [`relay`] (its phases, the
//! downstream writer, failover), reaches accounts chosen by [`pool`] through [`upstream`], is
//! understood through [`protocol`] (wire facts, no I/O) and ends as a record in [`usage`],
//! priced by [`pricing`] and kept by [`store`] with everything else that outlives a restart.
//! What only lives while the gateway runs (account health and slots, sticky bindings, tokens,
//! dashboard sessions) sits behind [`runtime_state`], keyed by names.
//! See ARCHITECTURE.md for the map and the invariants.

pub(crate) mod admin;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub(crate) mod limits;
pub(crate) mod metrics;
pub(crate) mod pool;
pub mod pricing;
pub mod protocol;
pub(crate) mod relay;
pub(crate) mod routes;
pub(crate) mod runtime_state;
pub(crate) mod server;
pub(crate) mod state;
pub mod store;
pub(crate) mod telemetry;
pub mod translate;
pub(crate) mod upstream;
pub(crate) mod usage;
