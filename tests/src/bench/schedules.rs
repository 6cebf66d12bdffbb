//! `schedules`: `--schedules` (10,000) schedules, each `S * * * * *` (UTC)
//! at a random second S, so about 167 firings a second, watched for
//! `--window-secs` (180). Each fires a noop job to a group no agent serves:
//! only firing is measured (overlap `allow`, so a job still queued never
//! turns the next occurrence into a skip). Firing lateness is the job's
//! `created_at` minus its occurrence's fire time (nominal + jitter; jitter
//! 0), read from the controller's store after it stopped; controller CPU is
//! the share of one core over the window, from `/proc`. Every occurrence
//! due in the window must have fired exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use nix::sys::signal::Signal;
use serde_json::json;
use tokio::task::JoinSet;

use super::report::{ScenarioReport, Series, Target, percentile};
use super::sysinfo::observe;
use super::{Args, Bench, GROUP};
use crate::api::Api;
use crate::sched_store;

/// Run the scenario `--runs` times (default 1: it lasts minutes).
pub async fn run(args: &Args) -> Result<ScenarioReport> {
    let runs = args.runs.unwrap_or(1);
    let mut rep = ScenarioReport::new("schedules", args.transport(), runs);
    rep.param("schedules", args.schedules);
    rep.param("window_secs", args.window_secs);
    rep.param("in_flight", args.in_flight);
    let mut s = Series::default();
    for _ in 0..runs {
        let r = one_run(args).await?;
        for (k, v) in r.figures {
            s.push(k, v);
        }
        rep.failures.extend(r.failures);
    }
    let rows: [(&str, &str, Option<Target>); 10] = [
        ("firing lateness p50", "ms", None),
        ("firing lateness p99", "ms", Some(Target::Le(50.0))),
        ("firing lateness max", "ms", None),
        ("controller CPU (of one core)", "%", Some(Target::Le(10.0))),
        ("controller CPU in the kernel", "%", None),
        ("controller VmRSS", "MiB", None),
        ("firings/s", "firings/s", None),
        ("occurrences fired in window", "occurrences", None),
        ("schedules created/s", "schedules/s", None),
        ("jobs in store at the end", "jobs", None),
    ];
    rep.add_rows(&s, &rows);
    rep.notes.push(
        "lateness = job created_at − occurrence fire_at (nominal + jitter, jitter 0), both \
         Unix ms on the controller's clock, read from its SQLite store after it stopped; no \
         agent serves the group (firing only), overlap allow; every occurrence due in the \
         window checked: fired once, one job"
            .into(),
    );
    Ok(rep)
}

struct RunResult {
    figures: Vec<(&'static str, f64)>,
    failures: Vec<String>,
}

async fn one_run(args: &Args) -> Result<RunResult> {
    let mut b = Bench::start(args, "").await?;
    let n = args.schedules;
    let seconds: Vec<u32> = (0..n).map(|_| rand::random_range(0..60)).collect();
    let created = Instant::now();
    create_all(&b.api, &seconds, args.in_flight).await?;
    let create_s = created.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = b.controller_pid()?;
    let t0 = Utc::now().timestamp_millis();
    let obs = observe(&[pid], Duration::from_secs(args.window_secs)).await?;
    let t1 = Utc::now().timestamp_millis();
    b.check_alive()?;
    let o = obs.first().copied().unwrap_or_default();
    let proc = b
        .controller
        .proc
        .as_mut()
        .context("controller is not running")?;
    proc.signal(Signal::SIGTERM)?;
    proc.wait_exit(Duration::from_secs(60))?;
    let db = sched_store::open(&sched_store::db_path(&b.controller.state_dir)).await?;
    let w = window(&db, t0, t1).await?;
    let mut failures = Vec::new();
    let due: usize = seconds.iter().map(|s| due_in(*s, t0, t1)).sum();
    if w.fired != due {
        failures.push(format!(
            "{due} occurrences due in the window, {} fired ({} other rows)",
            w.fired, w.other
        ));
    }
    let dups = sched_store::duplicate_jobs(&db).await?;
    if !dups.is_empty() {
        failures.push(format!("{} nominal times with two jobs", dups.len()));
    }
    let secs = (t1 - t0) as f64 / 1000.0;
    Ok(RunResult {
        figures: vec![
            ("firing lateness p50", percentile(&w.lateness, 50.0)),
            ("firing lateness p99", percentile(&w.lateness, 99.0)),
            ("firing lateness max", percentile(&w.lateness, 100.0)),
            ("controller CPU (of one core)", o.cpu_percent),
            ("controller CPU in the kernel", o.sys_percent),
            ("controller VmRSS", o.mem.vm_rss_kb as f64 / 1024.0),
            ("firings/s", w.fired as f64 / secs),
            ("occurrences fired in window", w.fired as f64),
            ("schedules created/s", n as f64 / create_s.max(1e-9)),
            ("jobs in store at the end", w.jobs as f64),
        ],
        failures,
    })
}

/// How many times second `s` of a minute falls in `[t0, t1)` (Unix ms).
fn due_in(s: u32, t0: i64, t1: i64) -> usize {
    let first_min = t0.div_euclid(60_000);
    (first_min..=t1.div_euclid(60_000))
        .map(|m| m * 60_000 + i64::from(s) * 1000)
        .filter(|t| (t0..t1).contains(t))
        .count()
}

/// Create one schedule per entry of `seconds`, `in_flight` calls at a time.
async fn create_all(api: &Api, seconds: &[u32], in_flight: usize) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let seconds: Arc<Vec<u32>> = Arc::new(seconds.to_vec());
    let mut set = JoinSet::new();
    for _ in 0..in_flight.min(seconds.len()).max(1) {
        let (api, next, seconds) = (api.clone(), next.clone(), seconds.clone());
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(s) = seconds.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let body = serde_json::to_vec(&json!({
                    "name": format!("bench-{i:05}"),
                    "group": GROUP,
                    "cron": format!("{s} * * * * *"),
                    "tz": "UTC",
                    "overlap": "allow",
                    "job": {"spec": {"kind": "noop"}, "retry": {"max_attempts": 1}},
                }))?;
                let r = api
                    .raw(reqwest::Method::POST, "/v1/schedules", Some(body), &[])
                    .await?;
                if !r.status.is_success() {
                    bail!("create schedule {i}: {} {}", r.status, r.body);
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// What the store says about occurrences due in `[t0, t1)`.
struct Window {
    lateness: Vec<f64>,
    fired: usize,
    other: usize,
    jobs: usize,
}

async fn window(db: &sqlx::SqlitePool, t0: i64, t1: i64) -> Result<Window> {
    let late: Vec<(i64,)> = sqlx::query_as(
        "SELECT j.created_at - COALESCE(o.fire_at, o.nominal) FROM occurrences o \
         JOIN jobs j ON j.id = o.job_id \
         WHERE o.state = 'fired' AND o.nominal >= ? AND o.nominal < ?",
    )
    .bind(t0)
    .bind(t1)
    .fetch_all(db)
    .await?;
    let other: (i64,) = sqlx::query_as(
        "SELECT COALESCE(SUM(count), 0) FROM occurrences \
         WHERE state != 'fired' AND nominal >= ? AND nominal < ?",
    )
    .bind(t0)
    .bind(t1)
    .fetch_one(db)
    .await?;
    let jobs: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs")
        .fetch_one(db)
        .await?;
    Ok(Window {
        fired: late.len(),
        lateness: late.into_iter().map(|(l,)| l as f64).collect(),
        other: usize::try_from(other.0).unwrap_or(0),
        jobs: usize::try_from(jobs.0).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests;
