//! `idle-fleet`: N simulated agents in this process, each a real enrolled
//! identity (its own single-use enrollment token, `POST /v1/agents/enroll`)
//! long-polling `POST /v1/agents/{id}/poll` with its own secret, forever, like
//! the real agent's poll loop. Once all N hold a poll, the controller's RSS
//! and CPU are watched for `--measure-secs`. One HTTP client (one pool, one
//! connection per held poll) serves the whole fleet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use baton_proto::{AGENT_ID_HEADER, Capabilities, JobKind, PollRequest, limits};
use serde_json::json;
use tokio::task::JoinSet;

use super::report::{Row, ScenarioReport, Series, Target};
use super::sysinfo::{CpuMark, observe};
use super::{Args, Bench, GROUP};
use crate::api::Api;

/// Concurrent calls while creating tokens and enrolling.
const SETUP_CONCURRENCY: usize = 32;

/// Run the scenario `--runs` times (default 3).
pub async fn run(args: &Args, nofile: u64) -> Result<ScenarioReport> {
    let runs = args.runs.unwrap_or(3);
    let n = args.agents;
    if (n as u64) + 256 > nofile {
        bail!("{n} agents need more than RLIMIT_NOFILE {nofile} file descriptors (lower --agents)");
    }
    let mut rep = ScenarioReport::new("idle-fleet", args.transport(), runs);
    rep.param("agents", n);
    rep.param("measure_secs", args.measure_secs);
    rep.param("poll_hold_ms", limits::DEFAULT_POLL_HOLD_MS);
    rep.param("controllers", args.replicas);
    let mut s = Series::default();
    for _ in 0..runs {
        let r = one_run(args, n).await?;
        for (k, v) in r.figures {
            s.push(k, v);
        }
        rep.failures.extend(r.failures);
    }
    let rows: [(&str, &str, Option<Target>); 13] = [
        ("controller VmRSS", "MiB", Some(Target::Le(300.0))),
        ("controller RssAnon", "MiB", None),
        ("controller RssFile", "MiB", None),
        ("controller max VmRSS", "MiB", None),
        ("controller CPU (of one core)", "%", Some(Target::Le(5.0))),
        ("controller CPU in the kernel", "%", None),
        ("bench process CPU (of one core)", "%", None),
        ("bench process VmRSS", "MiB", None),
        ("fleet polls/s", "polls/s", None),
        ("poll errors in window", "errors", None),
        ("tokens + enrollments", "s", None),
        ("ramp until all online", "s", None),
        ("agents online at the end", "agents", None),
    ];
    rep.add_rows(&s, &rows);
    rep.rows.push(Row::new("agents", n as f64, "agents"));
    rep.notes.push(format!(
        "each simulated agent: own enrollment token + secret, polls with free_slots=1, \
         kinds=[noop], wait_ms={}, first poll at a random point of one hold period (so polls \
         arrive spread out, as a long-running fleet's do); the controller's enroll_per_minute \
         and limits on callers without a credential raised for the setup",
        limits::DEFAULT_POLL_HOLD_MS
    ));
    Ok(rep)
}

/// The controller settings a simulated fleet needs: thousands of agents
/// enrolling and connecting at once.
pub const FLEET_LIMITS: &str = "enroll_per_minute = 100000000\nmax_unauthenticated = 1024\nmax_unauthenticated_per_address = 1024\n";

/// One run's figures and what went wrong.
pub struct RunResult {
    /// `(metric, value)` pairs.
    pub figures: Vec<(&'static str, f64)>,
    /// Harness failures.
    pub failures: Vec<String>,
}

async fn one_run(args: &Args, n: usize) -> Result<RunResult> {
    let mut b = Bench::start(args, FLEET_LIMITS).await?;
    let setup = Instant::now();
    let agents = enroll_all(&b.api, n).await?;
    let setup_s = setup.elapsed().as_secs_f64();

    let polls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut fleet = JoinSet::new();
    let ramp = Instant::now();
    let apis = b.apis();
    for (k, (id, secret)) in agents.iter().enumerate() {
        // Spread over the replicas (`--replicas`), as a load balancer would.
        let api = apis[k % apis.len()].sharing(secret);
        let (id, polls, errors, in_flight) =
            (id.clone(), polls.clone(), errors.clone(), in_flight.clone());
        // Real agents' polls are spread over the hold, not synchronised:
        // each simulated agent starts at a random point of one hold period.
        let phase = Duration::from_millis(rand::random_range(0..limits::DEFAULT_POLL_HOLD_MS));
        fleet.spawn(async move {
            tokio::time::sleep(phase).await;
            poll_forever(api, id, polls, errors, in_flight).await
        });
    }
    wait_all_online(&mut b, n, &in_flight).await?;
    let ramp_s = ramp.elapsed().as_secs_f64();
    // Let the first-round polls settle into their hold.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let pids = b.controller_pids()?;
    let me = CpuMark::now(0)?;
    let (p0, e0) = (
        polls.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    let window = Duration::from_secs(args.measure_secs);
    let started = Instant::now();
    let obs = observe(&pids, window).await?;
    let secs = started.elapsed().as_secs_f64();
    let own_cpu = me.percent()?;
    let own_mem = super::sysinfo::mem(0)?;
    let (p1, e1) = (
        polls.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    b.check_alive()?;
    let online = b
        .api
        .agents()
        .await?
        .agents
        .iter()
        .filter(|a| a.online)
        .count();
    fleet.abort_all();
    // With replicas: the sum over every controller process.
    let o = obs.iter().fold(Default::default(), sum_observed);
    let mib = |kb: u64| kb as f64 / 1024.0;
    let mut failures = Vec::new();
    if online < n {
        failures.push(format!("only {online}/{n} agents online at the end"));
    }
    Ok(RunResult {
        figures: vec![
            ("controller VmRSS", mib(o.mem.vm_rss_kb)),
            ("controller RssAnon", mib(o.mem.rss_anon_kb)),
            ("controller RssFile", mib(o.mem.rss_file_kb)),
            ("controller max VmRSS", mib(o.max_vm_rss_kb)),
            ("controller CPU (of one core)", o.cpu_percent),
            ("controller CPU in the kernel", o.sys_percent),
            ("bench process CPU (of one core)", own_cpu),
            ("bench process VmRSS", mib(own_mem.vm_rss_kb)),
            ("fleet polls/s", (p1 - p0) as f64 / secs),
            ("poll errors in window", (e1 - e0) as f64),
            ("tokens + enrollments", setup_s),
            ("ramp until all online", ramp_s),
            ("agents online at the end", online as f64),
        ],
        failures,
    })
}

fn sum_observed(
    a: super::sysinfo::Observed,
    b: &super::sysinfo::Observed,
) -> super::sysinfo::Observed {
    let mut s = a;
    s.cpu_percent += b.cpu_percent;
    s.sys_percent += b.sys_percent;
    s.mem.vm_rss_kb += b.mem.vm_rss_kb;
    s.mem.rss_anon_kb += b.mem.rss_anon_kb;
    s.mem.rss_file_kb += b.mem.rss_file_kb;
    s.max_vm_rss_kb += b.max_vm_rss_kb;
    s
}

/// Create `n` single-use enrollment tokens and enroll `sim-00001` … with them.
pub(super) async fn enroll_all(api: &Api, n: usize) -> Result<Vec<(String, String)>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..SETUP_CONCURRENCY.min(n.max(1)) {
        let (api, next) = (api.clone(), next.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(out);
                }
                let id = format!("sim-{:05}", i + 1);
                let token = api.enrollment_token(&[GROUP.to_owned()]).await?;
                let body = serde_json::to_vec(&json!({
                    "token": token,
                    "agent_id": id,
                    "hostname": "bench",
                    "version": env!("CARGO_PKG_VERSION"),
                }))?;
                let raw = api
                    .raw(reqwest::Method::POST, "/v1/agents/enroll", Some(body), &[])
                    .await?;
                if !raw.status.is_success() {
                    bail!("enroll {id}: {} {}", raw.status, raw.body);
                }
                let secret = raw.body["secret"]
                    .as_str()
                    .context("enroll answer has no secret")?
                    .to_owned();
                out.push((id, secret));
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        all.extend(r??);
    }
    all.sort();
    Ok(all)
}

/// One simulated agent: poll, and poll again when the hold ends, forever.
async fn poll_forever(
    api: Api,
    id: String,
    polls: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    in_flight: Arc<AtomicUsize>,
) {
    let body = poll_body();
    let path = format!("/v1/agents/{id}/poll");
    loop {
        in_flight.fetch_add(1, Ordering::Relaxed);
        let r = api
            .raw(
                reqwest::Method::POST,
                &path,
                Some(body.clone()),
                &[(AGENT_ID_HEADER, &id)],
            )
            .await;
        in_flight.fetch_sub(1, Ordering::Relaxed);
        match r {
            Ok(raw) if raw.status.is_success() => {
                polls.fetch_add(1, Ordering::Relaxed);
                if let Some(ms) = raw.body["retry_after_ms"].as_u64() {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            }
            _ => {
                errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Wait until the controller lists all `n` online and `n` polls are in flight.
pub(super) async fn wait_all_online(
    b: &mut Bench,
    n: usize,
    in_flight: &AtomicUsize,
) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(300);
    let mut last_error = None;
    loop {
        let online = match b.api.agents().await {
            Ok(l) => l.agents.iter().filter(|a| a.online).count(),
            Err(e) => {
                last_error = Some(format!("{e:#}"));
                0
            }
        };
        if online >= n && in_flight.load(Ordering::Relaxed) >= n {
            return Ok(());
        }
        b.check_alive()?;
        if Instant::now() > end {
            bail!(
                "after 300 s only {online}/{n} agents online, {} polls in flight{}",
                in_flight.load(Ordering::Relaxed),
                last_error
                    .map(|e| format!(" (listing the agents: {e})"))
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The poll body of a simulated agent: group [`GROUP`], one free slot,
/// noop jobs only, the longest hold.
pub fn poll_body() -> Vec<u8> {
    serde_json::to_vec(&poll_request()).unwrap_or_default()
}

/// The poll of a simulated agent (see [`poll_body`]).
pub fn poll_request() -> PollRequest {
    PollRequest {
        groups: vec![GROUP.to_owned()],
        free_slots: 1,
        capabilities: Capabilities {
            kinds: vec![JobKind::Noop],
            connections: Vec::new(),
            stores: Vec::new(),
        },
        version: env!("CARGO_PKG_VERSION").to_owned(),
        os: std::env::consts::OS.to_owned(),
        metrics: None,
        wait_ms: Some(limits::DEFAULT_POLL_HOLD_MS),
        leases: Vec::new(),
        failover_ms: None,
        completions: Vec::new(),
    }
}
