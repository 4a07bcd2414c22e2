//! The pool's rules from `gateway.*`: built here, where both are known, so that neither `pool`
//! nor `config` imports the other.

use crate::config::GatewayConfig;
use crate::pool::{CooldownPolicy, PoolPolicy};

pub fn pool_policy(g: &GatewayConfig) -> PoolPolicy {
    PoolPolicy {
        cooldowns: CooldownPolicy {
            overload: g.overload_cooldown,
            max: g.max_cooldown,
        },
        sticky_ttl: g.sticky_session_ttl,
        sticky_slow_ttft: g.sticky_slow_ttft,
        sticky_slow_strikes: g.sticky_slow_strikes,
        queue_wait: g.queue_wait_timeout,
        queue_max_waiting: g.queue_max_waiting,
        connect_timeout: g.connect_timeout,
        quota_reserve_percent: f64::from(g.quota_reserve_percent),
    }
}
