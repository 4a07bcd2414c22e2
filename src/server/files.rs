//! The open-file limit: raised to the hard limit at start, and the client-connection cap that
//! follows from it.
//!
//! Every client connection is a file descriptor, and so is every upstream connection it causes
//! and the store's files. A default soft limit of 1,024 would let about a thousand idle clients
//! starve the rest (`/healthz` included), so the soft limit is raised as far as the hard limit
//! allows, and `server.max_connections` (when 0) leaves most descriptors for the other uses.

/// Share of the open-file limit that client connections may take when `server.max_connections`
/// is 0: each relayed request also holds an upstream socket, and the store, the spool and the
/// upstream pools need some.
const CLIENT_SHARE_PERCENT: u64 = 40;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (logged once) and answers the soft limit
/// in force afterwards (`None` where it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rlimit::Resource;
        let (soft, hard) = match rlimit::getrlimit(Resource::NOFILE) {
            Ok(limits) => limits,
            Err(e) => {
                tracing::warn!("cannot read the open-file limit (RLIMIT_NOFILE): {e}");
                return None;
            }
        };
        if soft >= hard {
            tracing::info!("open-file limit (RLIMIT_NOFILE): {soft} (already the hard limit)");
            return Some(soft);
        }
        match rlimit::setrlimit(Resource::NOFILE, hard, hard) {
            Ok(()) => {
                tracing::info!(
                    "raised the open-file limit (RLIMIT_NOFILE) from {soft} to {hard} (the hard limit)"
                );
                Some(hard)
            }
            Err(e) => {
                tracing::warn!(
                    "cannot raise the open-file limit (RLIMIT_NOFILE) from {soft} to {hard}: {e}; keeping {soft}"
                );
                Some(soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The cap on client connections: the configured one, else a share of the open-file limit.
pub fn connection_cap(configured: Option<usize>, open_files: Option<u64>) -> usize {
    if let Some(n) = configured {
        return n;
    }
    let files = open_files.unwrap_or(1024);
    let share = files.saturating_mul(CLIENT_SHARE_PERCENT) / 100;
    usize::try_from(share).unwrap_or(usize::MAX).max(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_the_configured_one_else_a_share_of_the_file_limit() {
        assert_eq!(connection_cap(Some(3), Some(1_000_000)), 3);
        assert_eq!(connection_cap(None, Some(1024)), 409);
        assert_eq!(connection_cap(None, Some(1_048_576)), 419_430);
        assert_eq!(connection_cap(None, Some(10)), 16, "never below 16");
        assert_eq!(connection_cap(None, None), 409, "unknown: as for 1,024");
    }
}
