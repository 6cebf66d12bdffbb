//! `schedules`: `--schedules` (10,000) schedules, each `S * * * * *` (UTC)
//! at a random second S, so about 167 firings a second, watched for
//! `--window-secs` (180). Each fires a noop job to a group no agent serves:
//! only firing is measured (overlap `allow`, so a job still queued never
//! turns the next occurrence into a skip). Firing lateness, against the
//! occurrence's fire time (nominal + jitter; jitter 0), twice: from the
//! job's `created_at` in the controller's store (read after it stopped),
//! and from the time the controller logged the committed firing (`Schedule
//! occurrence recorded`), since `created_at` is the time the timer's firing
//! began, shared by every firing of that look. Controller CPU is the share
//! of one core over the window, from `/proc`. The window starts
//! [`SETTLE`] after the last schedule was created (the firings that fell
//! behind during creation are left out). Every occurrence due in the window
//! must have fired exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use serde_json::json;
use tokio::task::JoinSet;

use super::report::{ScenarioReport, Series, Target, percentile};
use super::sysinfo::observe;
use super::{Args, Bench, GROUP};
use crate::api::Api;
use crate::sched_store;

/// From the last schedule created to the start of the window.
pub const SETTLE: Duration = Duration::from_secs(10);

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
    let rows: [(&str, &str, Option<Target>); 13] = [
        ("lateness p50 (job created_at)", "ms", None),
        (
            "lateness p99 (job created_at)",
            "ms",
            Some(Target::Le(50.0)),
        ),
        ("lateness max (job created_at)", "ms", None),
        ("lateness p50 (firing committed, log)", "ms", None),
        (
            "lateness p99 (firing committed, log)",
            "ms",
            Some(Target::Le(50.0)),
        ),
        ("lateness max (firing committed, log)", "ms", None),
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
        "lateness (job created_at) = created_at − occurrence fire_at (nominal + jitter, jitter \
         0), Unix ms on the controller's clock, from its SQLite store after it stopped; \
         created_at is when the timer's firing transaction began, shared by all firings of that look. \
         lateness (firing committed, log) = the controller log's timestamp of `Schedule \
         occurrence recorded` (after the commit) − nominal. No agent serves the group (firing \
         only), overlap allow; every occurrence due in the window checked: fired once, one job"
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
    tokio::time::sleep(SETTLE).await;
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
    let db = Evidence::open(&b).await?;
    let w = window(&db, t0, t1).await?;
    let logged = logged_lateness(&b.controller.log_text(), t0, t1);
    let mut failures = Vec::new();
    let due: usize = seconds.iter().map(|s| due_in(*s, t0, t1)).sum();
    if logged.len() != due {
        failures.push(format!(
            "{due} occurrences due in the window, {} firings logged",
            logged.len()
        ));
    }
    if w.fired != due {
        failures.push(format!(
            "{due} occurrences due in the window, {} fired ({} other rows)",
            w.fired, w.other
        ));
    }
    let dups = db.duplicate_jobs().await?;
    if dups > 0 {
        failures.push(format!("{dups} nominal times with two jobs"));
    }
    let secs = (t1 - t0) as f64 / 1000.0;
    Ok(RunResult {
        figures: vec![
            (
                "lateness p50 (job created_at)",
                percentile(&w.lateness, 50.0),
            ),
            (
                "lateness p99 (job created_at)",
                percentile(&w.lateness, 99.0),
            ),
            (
                "lateness max (job created_at)",
                percentile(&w.lateness, 100.0),
            ),
            (
                "lateness p50 (firing committed, log)",
                percentile(&logged, 50.0),
            ),
            (
                "lateness p99 (firing committed, log)",
                percentile(&logged, 99.0),
            ),
            (
                "lateness max (firing committed, log)",
                percentile(&logged, 100.0),
            ),
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

/// Lateness in ms (log timestamp − nominal) of every `Schedule occurrence
/// recorded … state="fired"` line of a controller log whose nominal time
/// is in `[t0, t1)` (Unix ms).
fn logged_lateness(log: &str, t0: i64, t1: i64) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains("Schedule occurrence recorded") && l.contains("state=\"fired\""))
        .filter_map(|l| {
            let at: DateTime<Utc> = l.split_whitespace().next()?.parse().ok()?;
            let rest = &l[l.find(" nominal=")? + " nominal=".len()..];
            let nominal: DateTime<Utc> = rest.split_whitespace().next()?.parse().ok()?;
            let n = nominal.timestamp_millis();
            (t0..t1)
                .contains(&n)
                .then(|| super::ms_between(nominal, at))
        })
        .collect()
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

/// The stopped controller's store, read for the evidence: its SQLite file
/// (read-only), or its scratch PostgreSQL database (`--store postgres`).
enum Evidence {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Evidence {
    async fn open(b: &super::Bench) -> Result<Evidence> {
        Ok(match &b.pg {
            Some(pg) => Evidence::Postgres(
                sqlx::PgPool::connect(&pg.url)
                    .await
                    .with_context(|| format!("connect to {}", pg.url))?,
            ),
            None => Evidence::Sqlite(
                sched_store::open(&sched_store::db_path(&b.controller.state_dir)).await?,
            ),
        })
    }

    /// One `BIGINT` column of `sql`, written with `?` placeholders (made
    /// `$1`, `$2`, … for PostgreSQL), bound to `binds` in order.
    async fn i64s(&self, sql: &'static str, binds: &[i64]) -> Result<Vec<i64>> {
        Ok(match self {
            Evidence::Sqlite(db) => {
                let mut q = sqlx::query_scalar(sql);
                for v in binds {
                    q = q.bind(*v);
                }
                q.fetch_all(db).await?
            }
            Evidence::Postgres(db) => {
                // Our own constant SQL, only its placeholders renumbered.
                let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(numbered(sql)));
                for v in binds {
                    q = q.bind(*v);
                }
                q.fetch_all(db).await?
            }
        })
    }

    async fn one(&self, sql: &'static str, binds: &[i64]) -> Result<i64> {
        self.i64s(sql, binds)
            .await?
            .first()
            .copied()
            .context("no row")
    }

    /// Nominal times with more than one job (jobs of a schedule's pipeline
    /// runs, which share the run's nominal time, left out); see
    /// `sched_store::duplicate_jobs`.
    async fn duplicate_jobs(&self) -> Result<i64> {
        self.one(
            "SELECT COUNT(*) FROM (SELECT 1 FROM jobs \
             WHERE schedule_id IS NOT NULL AND run_id IS NULL \
             GROUP BY schedule_id, nominal_at HAVING COUNT(*) > 1) d",
            &[],
        )
        .await
    }
}

/// `?` placeholders as PostgreSQL's `$1`, `$2`, …
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

async fn window(db: &Evidence, t0: i64, t1: i64) -> Result<Window> {
    let late = db
        .i64s(
            "SELECT j.created_at - COALESCE(o.fire_at, o.nominal) FROM occurrences o \
             JOIN jobs j ON j.id = o.job_id \
             WHERE o.state = 'fired' AND o.nominal >= ? AND o.nominal < ?",
            &[t0, t1],
        )
        .await?;
    let other = db
        .one(
            "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM occurrences \
             WHERE state != 'fired' AND nominal >= ? AND nominal < ?",
            &[t0, t1],
        )
        .await?;
    let jobs = db.one("SELECT COUNT(*) FROM jobs", &[]).await?;
    Ok(Window {
        fired: late.len(),
        lateness: late.into_iter().map(|l| l as f64).collect(),
        other: usize::try_from(other).unwrap_or(0),
        jobs: usize::try_from(jobs).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests;
