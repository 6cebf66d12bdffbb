//! The standard `process_*` metrics of the controller's own process, read
//! at each scrape: on Linux from `/proc/self` (as Prometheus' Go client
//! does), nothing on other systems.
//!
//! - `process_cpu_seconds_total`: user + system CPU time;
//! - `process_resident_memory_bytes`, `process_virtual_memory_bytes`;
//! - `process_open_fds`, `process_max_fds`;
//! - `process_start_time_seconds`: Unix time of the start.
//!
//! Times in `/proc/self/stat` are in clock ticks of `USER_HZ`, which the
//! kernel fixes at 100 for user space on every architecture Baton builds
//! for.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Clock ticks per second in `/proc` (`USER_HZ`).
const USER_HZ: f64 = 100.0;

/// What `/proc/self` tells of the process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit of open file descriptors, when there is one.
    pub max_fds: Option<u64>,
    /// Unix seconds at the start.
    pub start_time_seconds: f64,
}

/// `process_*` metrics at each scrape.
#[derive(Debug, Clone, Copy)]
pub struct Process;

impl Collector for Process {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(f) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(f.cpu_seconds);
        cpu.encode(enc.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        gauge(
            &mut enc,
            "process_resident_memory",
            "Resident memory size in bytes",
            Some(&Unit::Bytes),
            f.resident_bytes as f64,
        )?;
        gauge(
            &mut enc,
            "process_virtual_memory",
            "Virtual memory size in bytes",
            Some(&Unit::Bytes),
            f.virtual_bytes as f64,
        )?;
        gauge(
            &mut enc,
            "process_open_fds",
            "Number of open file descriptors",
            None,
            f.open_fds as f64,
        )?;
        if let Some(max) = f.max_fds {
            gauge(
                &mut enc,
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                max as f64,
            )?;
        }
        gauge(
            &mut enc,
            "process_start_time",
            "Start time of the process since unix epoch in seconds",
            Some(&Unit::Seconds),
            f.start_time_seconds,
        )
    }
}

fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, unit, g.metric_type())?)
}

/// The figures of this process; `None` where `/proc` is missing.
pub fn read() -> Option<Figures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let mut f = parse(&stat, &boot, &status, &limits)?;
    f.open_fds = open_fds;
    Some(f)
}

/// The figures from the texts of `/proc/self/stat`, `/proc/stat`,
/// `/proc/self/status` and `/proc/self/limits` (open fds left at 0).
pub fn parse(stat: &str, boot: &str, status: &str, limits: &str) -> Option<Figures> {
    // The command name (field 2) is in parentheses and may hold spaces:
    // the fields counted from 3 start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field n of proc(5) is fields[n - 3].
    let num = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let (utime, stime, start_ticks, vsize) = (num(14)?, num(15)?, num(22)?, num(23)?);
    let btime: u64 = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    let max_fds = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok());
    Some(Figures {
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        resident_bytes: rss_kib * 1024,
        virtual_bytes: vsize,
        open_fds: 0,
        max_fds,
        start_time_seconds: btime as f64 + start_ticks as f64 / USER_HZ,
    })
}

#[cfg(test)]
mod tests;
