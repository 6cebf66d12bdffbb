//! `trickle`: a steady trickle of jobs into a large idle fleet. N simulated
//! agents (the `idle-fleet` machinery: real enrolled identities, one held
//! poll each, one free slot) serve one group; jobs are submitted at a
//! fixed rate (default 100/s for 60 s). A simulated agent that is granted a
//! job "starts" it when the grant arrives and completes it at once, in its
//! next poll (`PollRequest::completions`, as the agent does). Reported: polls woken per job (the controller's
//! `baton_dispatch_polls_woken_total`), the controller's CPU over the
//! submit window, the polls the fleet had answered per job, and dispatch
//! from the moment each submit was sent to the grant's arrival at its agent
//! (same process, monotonic clock).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use baton_proto::lease::BatchCompleteItem;
use baton_proto::{AGENT_ID_HEADER, CompleteRequest, Completion, JobId, JobResult, limits};
use serde_json::json;
use tokio::task::JoinSet;

use super::fleet::RunResult;
use super::report::{Row, ScenarioReport, Series, Target, percentile};
use super::sysinfo::observe;
use super::{Args, Bench, GROUP, fleet};
use crate::api::Api;

/// When each job was sent (submitter) and started (its agent).
#[derive(Default)]
struct Times {
    sent: HashMap<JobId, Instant>,
    started: HashMap<JobId, Instant>,
    /// Completions the controller did not accept, and the first answer.
    refused: usize,
    first_refusal: Option<String>,
}

type Shared = Arc<Mutex<Times>>;

fn lock(t: &Shared) -> std::sync::MutexGuard<'_, Times> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run the scenario `--runs` times (default 3).
pub async fn run(args: &Args, nofile: u64) -> Result<ScenarioReport> {
    let runs = args.runs.unwrap_or(3);
    let n = args.agents;
    if (n as u64) + 256 > nofile {
        bail!("{n} agents need more than RLIMIT_NOFILE {nofile} file descriptors (lower --agents)");
    }
    let mut rep = ScenarioReport::new("trickle", args.transport(), runs);
    rep.param("agents", n);
    rep.param("jobs_per_sec", args.rate);
    rep.param("duration_secs", args.duration_secs);
    let mut s = Series::default();
    for _ in 0..runs {
        let r = one_run(args, n).await?;
        for (k, v) in r.figures {
            s.push(k, v);
        }
        rep.failures.extend(r.failures);
    }
    let rows: [(&str, &str, Option<Target>); 11] = [
        ("polls woken per job", "polls", Some(Target::Le(2.0))),
        ("woken polls that took nothing, per job", "polls", None),
        ("store commits per job", "commits", None),
        ("agent polls per job", "polls", None),
        ("controller CPU (of one core)", "%", Some(Target::Le(10.0))),
        ("controller CPU in the kernel", "%", None),
        ("submit sent→start p50", "ms", None),
        ("submit sent→start p99", "ms", Some(Target::Le(5.0))),
        ("submit sent→start max", "ms", None),
        ("jobs submitted", "jobs", None),
        ("submit rate reached", "jobs/s", None),
    ];
    rep.add_rows(&s, &rows);
    rep.rows.push(Row::new("agents", n as f64, "agents"));
    rep.notes.push(
        "each simulated agent: own enrollment token + secret, one free slot, kinds=[noop], \
         completes a granted job at once in its next poll; start = the grant's arrival at the \
         simulated agent; CPU over the submit window (controller process only)"
            .into(),
    );
    Ok(rep)
}

async fn one_run(args: &Args, n: usize) -> Result<RunResult> {
    let mut b = Bench::start(args, fleet::FLEET_LIMITS).await?;
    let agents = fleet::enroll_all(&b.api, n).await?;
    let times: Shared = Arc::default();
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let mut fleet_tasks = JoinSet::new();
    for (id, secret) in &agents {
        let api = b.api.sharing(secret);
        let (id, times) = (id.clone(), times.clone());
        let (in_flight, answered) = (in_flight.clone(), answered.clone());
        let phase = Duration::from_millis(rand::random_range(0..limits::DEFAULT_POLL_HOLD_MS));
        fleet_tasks.spawn(async move {
            tokio::time::sleep(phase).await;
            serve(api, id, times, in_flight, answered).await;
        });
    }
    fleet::wait_all_online(&mut b, n, &in_flight).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let before = counters(&b.api).await?;
    let polls_before = answered.load(Ordering::Relaxed);
    let pids = b.controller_pids()?;
    let window = Duration::from_secs(args.duration_secs);
    let watch = tokio::spawn(async move { observe(&pids, window).await });
    let submitted = submit_at_rate(&b.api, args.rate, window, &times).await?;
    let obs = watch.await.context("observer")??;
    // Every job started, or 10 s passed.
    let end = Instant::now() + Duration::from_secs(10);
    while lock(&times).started.len() < submitted.0 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = counters(&b.api).await?;
    let polls = answered.load(Ordering::Relaxed) - polls_before;
    b.check_alive()?;
    fleet_tasks.abort_all();

    let t = lock(&times);
    let mut lat: Vec<f64> = t
        .sent
        .iter()
        .filter_map(|(id, sent)| {
            let st = t.started.get(id)?;
            Some(st.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let mut failures = Vec::new();
    if t.refused > 0 {
        failures.push(format!(
            "{} completions refused (their jobs ran to lease expiry), the first: {}",
            t.refused,
            t.first_refusal.as_deref().unwrap_or("?")
        ));
    }
    if lat.len() < submitted.0 {
        failures.push(format!(
            "only {}/{} jobs started within 10 s of the last submit",
            lat.len(),
            submitted.0
        ));
    }
    let jobs = submitted.0.max(1) as f64;
    let cpu = obs.iter().map(|o| o.cpu_percent).sum();
    let sys = obs.iter().map(|o| o.sys_percent).sum();
    Ok(RunResult {
        figures: vec![
            ("polls woken per job", (after.woken - before.woken) / jobs),
            (
                "woken polls that took nothing, per job",
                (after.wasted - before.wasted) / jobs,
            ),
            (
                "store commits per job",
                (after.commits - before.commits) / jobs,
            ),
            ("agent polls per job", polls as f64 / jobs),
            ("controller CPU (of one core)", cpu),
            ("controller CPU in the kernel", sys),
            ("submit sent→start p50", percentile(&lat, 50.0)),
            ("submit sent→start p99", percentile(&lat, 99.0)),
            ("submit sent→start max", percentile(&lat, 100.0)),
            ("jobs submitted", submitted.0 as f64),
            ("submit rate reached", submitted.0 as f64 / submitted.1),
        ],
        failures,
    })
}

/// Submit noop jobs at `rate` per second for `window`, each call on its own
/// task (a slow answer does not delay the next); returns how many were
/// accepted and the seconds it took.
async fn submit_at_rate(
    api: &Api,
    rate: u32,
    window: Duration,
    times: &Shared,
) -> Result<(usize, f64)> {
    let body = serde_json::to_vec(&json!({
        "group": GROUP,
        "spec": {"kind": "noop", "sleep_ms": 0},
        "retry": {"max_attempts": 1},
        "allow_unplaced": true,
    }))?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let began = Instant::now();
    let mut calls = JoinSet::new();
    while began.elapsed() < window {
        tick.tick().await;
        let (api, body, times) = (api.clone(), body.clone(), times.clone());
        calls.spawn(async move {
            let sent = Instant::now();
            let raw = api
                .raw(reqwest::Method::POST, "/v1/jobs", Some(body), &[])
                .await?;
            if !raw.status.is_success() {
                bail!("submit refused: {} {}", raw.status, raw.body);
            }
            let id = raw.body["id"].as_i64().context("submit answer has no id")?;
            lock(&times).sent.insert(id, sent);
            Ok(())
        });
    }
    let secs = began.elapsed().as_secs_f64();
    let mut ok = 0;
    while let Some(r) = calls.join_next().await {
        r??;
        ok += 1;
    }
    Ok((ok, secs))
}

/// The controller's counters the scenario reports per job.
struct Counters {
    /// Polls woken.
    woken: f64,
    /// Woken polls that took nothing.
    wasted: f64,
    /// Store commits: SQLite group commits, PostgreSQL transactions.
    commits: f64,
}

/// The controller's [`Counters`] so far.
async fn counters(api: &Api) -> Result<Counters> {
    let text = api.metrics().await?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .with_context(|| format!("/metrics has no {name}"))
    };
    Ok(Counters {
        woken: value("baton_dispatch_polls_woken_total")?,
        wasted: value("baton_dispatch_wakes_wasted_total")?,
        commits: value("baton_group_commit_batch_ops_count")?
            + value("baton_store_transaction_seconds_count")?,
    })
}

/// One simulated agent: poll; on a grant, note its start and carry its
/// completion in the next poll (as the agent does: one request per job);
/// forever.
async fn serve(
    api: Api,
    id: String,
    times: Shared,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    answered: Arc<AtomicU64>,
) {
    let empty = fleet::poll_body();
    let path = format!("/v1/agents/{id}/poll");
    let headers = [(AGENT_ID_HEADER, id.as_str())];
    let mut carry: Vec<BatchCompleteItem> = Vec::new();
    loop {
        let carried = carry.len();
        let body = if carry.is_empty() {
            empty.clone()
        } else {
            let mut req = fleet::poll_request();
            req.completions = std::mem::take(&mut carry);
            serde_json::to_vec(&req).unwrap_or_default()
        };
        in_flight.fetch_add(1, Ordering::Relaxed);
        let r = api
            .raw(reqwest::Method::POST, &path, Some(body), &headers)
            .await;
        in_flight.fetch_sub(1, Ordering::Relaxed);
        let raw = match r {
            Ok(r) if r.status.is_success() => r,
            other => {
                // The completions it carried are lost to this simulation.
                if carried > 0 {
                    let why = match other {
                        Ok(r) => format!("poll carrying completions: {} {}", r.status, r.body),
                        Err(e) => format!("poll carrying completions: {e:#}"),
                    };
                    refused(&times, why);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        answered.fetch_add(1, Ordering::Relaxed);
        let completed = raw.body["completed"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if completed.len() != carried {
            refused(
                &times,
                format!("{carried} carried, {} answered", completed.len()),
            );
        }
        for c in completed {
            if c.get("code").is_some() {
                refused(&times, c.to_string());
            }
        }
        let grants = raw.body["grants"].as_array().cloned().unwrap_or_default();
        for g in grants {
            let started = Instant::now();
            let (Some(job), Some(token)) = (g["job_id"].as_i64(), g["token"].as_i64()) else {
                continue;
            };
            lock(&times).started.insert(job, started);
            let done = CompleteRequest {
                token,
                completion: Completion::Succeeded,
                result: JobResult::default(),
                error: None,
                started_after_ms: Some(0),
            };
            carry.push(BatchCompleteItem::new(job, done));
        }
    }
}

/// A completion (or the poll carrying it) the controller did not accept.
fn refused(times: &Shared, why: String) {
    let mut t = lock(times);
    t.refused += 1;
    t.first_refusal.get_or_insert(why);
}
