//! `footprint`: one enrolled, idle, long-polling agent (1 slot) watched for
//! `--measure-secs` after a 5 s settle (RSS from `/proc/<pid>/status`, CPU from
//! `/proc/<pid>/stat`), the idle controller beside it, and the sizes of the
//! release binaries (stripped by the release profile).

use std::time::Duration;

use anyhow::{Context, Result};

use super::report::{Row, ScenarioReport, Series, Target};
use super::sysinfo::observe;
use super::{Args, Bench};
use crate::proc::bin_dir;

const SETTLE: Duration = Duration::from_secs(5);

/// Run the scenario `--runs` times (default 3).
pub async fn run(args: &Args) -> Result<ScenarioReport> {
    let runs = args.runs.unwrap_or(3);
    let mut rep = ScenarioReport::new("footprint", args.transport(), runs);
    rep.param("measure_secs", args.measure_secs);
    rep.param("settle_secs", SETTLE.as_secs());
    let mut s = Series::default();
    for _ in 0..runs {
        let mut b = Bench::start(args, "").await?;
        b.add_agents(1, 1).await?;
        b.wait_online(1).await?;
        tokio::time::sleep(SETTLE).await;
        let agent = b.agents[0]
            .proc
            .as_ref()
            .and_then(|p| p.pid())
            .context("agent is not running")?
            .as_raw();
        let ctl = b.controller_pid()?;
        let obs = observe(&[agent, ctl], Duration::from_secs(args.measure_secs)).await?;
        b.check_alive()?;
        let mib = |kb: u64| kb as f64 / 1024.0;
        let (a, c) = (obs[0], obs[1]);
        s.push("agent VmRSS", mib(a.mem.vm_rss_kb));
        s.push("agent RssAnon", mib(a.mem.rss_anon_kb));
        s.push("agent RssFile", mib(a.mem.rss_file_kb));
        s.push("agent max VmRSS", mib(a.max_vm_rss_kb));
        s.push("agent CPU (of one core)", a.cpu_percent);
        s.push("controller VmRSS (idle, 1 agent)", mib(c.mem.vm_rss_kb));
        s.push("controller CPU (of one core)", c.cpu_percent);
    }
    let rows: [(&str, &str, Option<Target>); 7] = [
        ("agent VmRSS", "MiB", Some(Target::Le(10.0))),
        ("agent RssAnon", "MiB", None),
        ("agent RssFile", "MiB", None),
        ("agent max VmRSS", "MiB", None),
        ("agent CPU (of one core)", "%", Some(Target::Le(0.1))),
        ("controller VmRSS (idle, 1 agent)", "MiB", None),
        ("controller CPU (of one core)", "%", None),
    ];
    rep.add_rows(&s, &rows);
    for name in ["baton-agent", "baton-controller", "batonctl"] {
        let p = bin_dir().join(name);
        let bytes = std::fs::metadata(&p)
            .with_context(|| format!("stat {}", p.display()))?
            .len();
        let mut r = Row::new(&format!("{name} binary"), bytes as f64 / 1e6, "MB");
        if name == "baton-agent" {
            r = r.target(Target::Le(15.0));
        }
        rep.rows.push(r);
        rep.notes
            .push(format!("{name}: {bytes} bytes ({})", p.display()));
    }
    Ok(rep)
}
