//! Process metrics read from `/proc/self` at scrape time (Linux; elsewhere none are shown).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, the
/// names Prometheus's own client libraries use.
#[derive(Debug)]
pub(super) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(sample) = Sample::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(sample.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time of the process in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let rss = ConstGauge::new(sample.resident_bytes);
        rss.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory of the process in bytes",
            None,
            rss.metric_type(),
        )?)?;
        let fds = ConstGauge::new(sample.open_fds);
        fds.encode(encoder.encode_descriptor(
            "process_open_fds",
            "Open file descriptors of the process",
            None,
            fds.metric_type(),
        )?)?;
        Ok(())
    }
}

struct Sample {
    cpu_seconds: f64,
    resident_bytes: i64,
    open_fds: i64,
}

impl Sample {
    #[cfg(target_os = "linux")]
    #[allow(
        clippy::disallowed_methods,
        reason = "/proc reads at scrape time, on the scrape's blocking thread (scrape.rs)"
    )]
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size();
        let (utime, stime) = cpu_ticks(&stat)?;
        let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(Self {
            cpu_seconds: (utime + stime) as f64 / ticks,
            resident_bytes: i64::try_from(resident_pages.saturating_mul(page as u64)).ok()?,
            // The directory's own descriptor, open while it is read, is not the process's.
            open_fds: i64::try_from(open_fds.saturating_sub(1)).ok()?,
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn read() -> Option<Self> {
        None
    }
}

/// `utime` and `stime` (fields 14 and 15) of `/proc/self/stat`; counted after the command
/// name's closing parenthesis, since the name itself may hold spaces.
fn cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')': field 3 (state) is the first; utime is field 14, so the 12th from here.
    let mut fields = rest.split_whitespace().skip(11);
    let utime = fields.next()?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    #[test]
    fn cpu_ticks_are_fields_14_and_15_even_with_a_spaced_name() {
        let stat = "1234 (sub relay) S 1 1234 1234 0 -1 4194560 500 0 0 0 77 33 0 0 20 0 3 0 99";
        assert_eq!(super::cpu_ticks(stat), Some((77, 33)));
    }
}
