//! Every end-to-end test of the gateway, in one test binary.
//!
//! Each file beside this one is a module of it (`tests/relay_chat.rs` → `relay_chat::…`), so
//! `cargo test --test suite relay_chat::` runs one file's tests. One binary instead of one per
//! file: each binary links the whole gateway and its dependencies (about 50 MB apiece), and fifty
//! of them filled gigabytes of `target/` — a CI machine once ran out of disk linking them.
//! `Cargo.toml` sets `autotests = false` and names this file, so a new test file is a new
//! `mod` line here.

mod admin_common;
mod common;

mod admin_api;
mod admin_audit;
mod admin_limits;
mod admin_schemathesis;
mod behind_nginx;
mod cli;
mod cli_admin;
mod cli_translate;
mod client_limits;
mod config_key_limits;
mod config_reload;
mod dashboard_browser;
mod dashboard_security;
mod dashboard_signin;
mod data_dir_modes;
mod first_hour;
mod fuzz_props;
mod group_model_map;
mod install;
mod model_fallback;
mod module_dag;
mod ops_metrics;
mod pool;
mod pool_demotion;
mod pool_quota;
mod probes;
mod proxies;
mod python_sdk;
mod python_translate;
mod relay_anthropic;
mod relay_chat;
mod relay_edges;
mod relay_failover;
mod relay_fd_exhaustion;
mod relay_hostile;
mod relay_responses;
mod relay_translate;
mod scale_out;
mod state_redis;
mod store_crash;
mod store_entities;
mod store_postgres;
mod store_restart;
mod tokens;
mod translate_guarantees;
mod upstream_http2;
mod upstream_timeouts;
mod upstream_tls;
mod usage_disk_full;
mod usage_reported;
mod websocket;
mod websocket_upstream;
mod workers;
