//! subrelay: a self-hosted AI API gateway.
//!
//! A request enters through [`http`] (routes, auth), lives in [`relay`] (its phases, the
//! downstream writer, failover), reaches accounts chosen by [`pool`] through [`upstream`], is
//! understood through [`protocol`] (wire facts, no I/O) and ends as a record in [`usage`],
//! priced by [`pricing`] and kept by [`store`] with everything else that outlives a restart.
//! What only lives while the gateway runs (account health and slots, sticky bindings, tokens,
//! dashboard sessions) sits behind [`runtime_state`], keyed by names.
//! See ARCHITECTURE.md for the map and the invariants.

pub mod admin;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod pool;
pub mod pricing;
pub mod protocol;
pub mod relay;
pub mod runtime_state;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod translate;
pub mod upstream;
pub mod usage;
