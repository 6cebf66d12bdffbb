//! The machine a benchmark ran on, and what a process costs: resident memory
//! from `/proc/<pid>/status`, CPU time from `/proc/<pid>/stat`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SEC: f64 = 100.0;

/// The host.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub nproc: usize,
    /// CPU model name.
    pub cpu: String,
    /// Kernel release.
    pub kernel: String,
    /// Total RAM in MiB.
    pub ram_mib: u64,
    /// File system of the temp dir (where the controller's SQLite database lives).
    pub tmp_fs: String,
}

impl Machine {
    /// Read it from `/proc`.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram_kb = field_kb(&meminfo, "MemTotal:").unwrap_or(0);
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            kernel,
            ram_mib: ram_kb / 1024,
            tmp_fs: mount_of(&std::env::temp_dir()),
        }
    }

    /// One line for the table output.
    pub fn line(&self) -> String {
        format!(
            "machine: {} CPUs ({}), Linux {}, {} MiB RAM, temp dir on {}",
            self.nproc, self.cpu, self.kernel, self.ram_mib, self.tmp_fs
        )
    }
}

/// `type (device) at mount point` of the mount holding `path`.
fn mount_of(path: &std::path::Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && path.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} ({}) at {}", f[2], f[0], f[1])))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, s)| s)
        .unwrap_or_else(|| "unknown".into())
}

fn field_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l[key.len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Mem {
    /// VmRSS.
    pub vm_rss_kb: u64,
    /// RssAnon (heap, stacks).
    pub rss_anon_kb: u64,
    /// RssFile (mapped binary and libraries).
    pub rss_file_kb: u64,
}

/// `pid`'s resident memory (`pid` 0 = this process).
pub fn mem(pid: i32) -> Result<Mem> {
    let path = proc_path(pid, "status");
    let s = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    Ok(Mem {
        vm_rss_kb: field_kb(&s, "VmRSS:").context("no VmRSS")?,
        rss_anon_kb: field_kb(&s, "RssAnon:").unwrap_or(0),
        rss_file_kb: field_kb(&s, "RssFile:").unwrap_or(0),
    })
}

/// `pid`'s peak resident memory since it started (VmHWM), in KiB.
pub fn peak_rss_kb(pid: i32) -> Result<u64> {
    let path = proc_path(pid, "status");
    let s = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    field_kb(&s, "VmHWM:").context("no VmHWM")
}

/// `pid`'s user + system CPU time in ticks (`pid` 0 = this process).
pub fn cpu_ticks(pid: i32) -> Result<u64> {
    cpu_split(pid).map(|(u, s)| u + s)
}

/// `pid`'s user and system CPU time in ticks (`pid` 0 = this process).
pub fn cpu_split(pid: i32) -> Result<(u64, u64)> {
    let path = proc_path(pid, "stat");
    let s = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // Fields after the `(comm)`: state is field 3, utime 14 and stime 15.
    let rest = s.rsplit_once(')').map(|(_, r)| r).context("bad stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.len() < 13 {
        bail!("short stat line in {path}");
    }
    Ok((f[11].parse()?, f[12].parse()?))
}

fn proc_path(pid: i32, file: &str) -> String {
    if pid == 0 {
        format!("/proc/self/{file}")
    } else {
        format!("/proc/{pid}/{file}")
    }
}

/// A CPU-time reading, to compute a share of one core later.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    pid: i32,
    ticks: u64,
    sys_ticks: u64,
    at: Instant,
}

impl CpuMark {
    /// Read `pid`'s CPU time now.
    pub fn now(pid: i32) -> Result<CpuMark> {
        let (user, sys) = cpu_split(pid)?;
        Ok(CpuMark {
            pid,
            ticks: user + sys,
            sys_ticks: sys,
            at: Instant::now(),
        })
    }

    /// Percent of one core used since the mark.
    pub fn percent(&self) -> Result<f64> {
        let ticks = cpu_ticks(self.pid)?.saturating_sub(self.ticks);
        let secs = self.at.elapsed().as_secs_f64().max(1e-9);
        Ok(ticks as f64 / TICKS_PER_SEC / secs * 100.0)
    }

    /// Percent of one core spent in the kernel since the mark.
    pub fn sys_percent(&self) -> Result<f64> {
        let ticks = cpu_split(self.pid)?.1.saturating_sub(self.sys_ticks);
        let secs = self.at.elapsed().as_secs_f64().max(1e-9);
        Ok(ticks as f64 / TICKS_PER_SEC / secs * 100.0)
    }
}

/// What watching a process for a while showed.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Observed {
    /// CPU, percent of one core, over the window.
    pub cpu_percent: f64,
    /// The part of it spent in the kernel.
    pub sys_percent: f64,
    /// Memory at the end of the window.
    pub mem: Mem,
    /// Largest VmRSS seen (sampled every second).
    pub max_vm_rss_kb: u64,
}

/// Watch the processes `pids` for `window`, sampling memory every second.
pub async fn observe(pids: &[i32], window: Duration) -> Result<Vec<Observed>> {
    let marks = pids
        .iter()
        .map(|&p| CpuMark::now(p))
        .collect::<Result<Vec<_>>>()?;
    let mut maxes = vec![0u64; pids.len()];
    let end = Instant::now() + window;
    loop {
        for (i, &p) in pids.iter().enumerate() {
            maxes[i] = maxes[i].max(mem(p)?.vm_rss_kb);
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        tokio::time::sleep((end - now).min(Duration::from_secs(1))).await;
    }
    pids.iter()
        .zip(marks)
        .zip(maxes)
        .map(|((&p, m), mx)| {
            let cpu_percent = m.percent()?;
            let sys_percent = m.sys_percent()?;
            let mem = mem(p)?;
            Ok(Observed {
                cpu_percent,
                sys_percent,
                mem,
                max_vm_rss_kb: mx.max(mem.vm_rss_kb),
            })
        })
        .collect()
}

/// Raise this process's open-file limit (children inherit it) to at least
/// `wanted` when allowed: the hard limit is raised too when the process may
/// (root, or CAP_SYS_RESOURCE; never past `/proc/sys/fs/nr_open`), else the
/// soft limit goes to the hard one. Returns the new soft limit.
pub fn raise_nofile(wanted: u64) -> Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard);
    let target = wanted.min(ceiling);
    if target > hard && setrlimit(Resource::RLIMIT_NOFILE, target, target).is_ok() {
        return Ok(getrlimit(Resource::RLIMIT_NOFILE)?.0);
    }
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(getrlimit(Resource::RLIMIT_NOFILE)?.0)
}

#[cfg(test)]
mod tests;
