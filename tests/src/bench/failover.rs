//! `failover`: a controller and 3 one-slot agents; per run a long noop job
//! with a lease TTL (`--ttl-ms`; default both 2000 and 15000) and a retry on
//! `lease_expired`, SIGKILL of its holder at a random point of the heartbeat
//! cycle (t_kill), and the `Lease granted` line of another agent for that job
//! (t_start). Takeover = t_start − t_kill. Every `Lease granted` line for the
//! job beyond the two expected is a duplicate start. The job is then
//! cancelled and the killed agent restarted for the next run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use baton_proto::JobId;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::report::{Row, ScenarioReport, Target, percentile};
use super::{Args, Bench, GROUP, grants_in, ms_between};

const AGENTS: usize = 3;

/// Run `--runs` kills (default 20) for each TTL.
pub async fn run(args: &Args) -> Result<ScenarioReport> {
    let kills = args.runs.unwrap_or(20);
    let ttls = args.ttl_ms.map_or_else(|| vec![2_000, 15_000], |t| vec![t]);
    let mut rep = ScenarioReport::new("failover", args.transport(), kills);
    rep.param("agents", AGENTS);
    rep.param("kills_per_ttl", kills);
    rep.param("ttl_ms", json!(ttls));
    for ttl in ttls {
        let r = one_ttl(args, ttl, kills).await?;
        let t = &r.takeovers;
        let target = Target::Le(ttl as f64 + 200.0);
        let spread = Some((percentile(t, 0.0), percentile(t, 100.0)));
        let mut p50 = Row::new(
            &format!("takeover p50, TTL {ttl} ms"),
            percentile(t, 50.0),
            "ms",
        );
        p50.spread = spread;
        rep.rows.push(p50);
        rep.rows.push(
            Row::new(
                &format!("takeover p99, TTL {ttl} ms"),
                percentile(t, 99.0),
                "ms",
            )
            .target(target),
        );
        rep.rows.push(Row::new(
            &format!("takeover max, TTL {ttl} ms"),
            percentile(t, 100.0),
            "ms",
        ));
        rep.rows.push(
            Row::new(
                &format!("duplicate starts, TTL {ttl} ms"),
                r.duplicates as f64,
                "starts",
            )
            .target(Target::Le(0.0)),
        );
        if r.duplicates > 0 {
            rep.failures.push(format!(
                "{} duplicate `Lease granted` lines with TTL {ttl} ms",
                r.duplicates
            ));
        }
        rep.failures.extend(r.failures);
    }
    rep.notes.push(
        "kill at a uniformly random delay in [0, TTL/3) after the job is running (the \
         heartbeat period), so takeovers sample the whole renewal cycle; retry: \
         initial_backoff_ms = 0"
            .into(),
    );
    Ok(rep)
}

struct TtlResult {
    takeovers: Vec<f64>,
    duplicates: usize,
    failures: Vec<String>,
}

async fn one_ttl(args: &Args, ttl: u64, kills: usize) -> Result<TtlResult> {
    let mut b = Bench::start(args, "").await?;
    b.add_agents(AGENTS, 1).await?;
    b.wait_online(AGENTS).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut out = TtlResult {
        takeovers: Vec::with_capacity(kills),
        duplicates: 0,
        failures: Vec::new(),
    };
    let job = json!({
        "group": GROUP,
        "spec": {"kind": "noop", "sleep_ms": 3 * ttl + 10_000},
        "lease_ttl_ms": ttl,
        "retry": {"max_attempts": 3, "initial_backoff_ms": 0, "jitter": 0.0,
                  "retry_on": ["lease_expired"]},
        "labels": {"source": "bench-failover"},
    });
    for _ in 0..kills {
        let id = b.api.submit(job.clone()).await?.id;
        let (_, holder) = b.api.wait_running(id, Duration::from_secs(30)).await?;
        let phase = rand::random::<f64>() * ttl as f64 / 3.0;
        tokio::time::sleep(Duration::from_micros((phase * 1000.0) as u64)).await;
        let idx = b
            .agents
            .iter()
            .position(|a| a.opts.id == holder)
            .with_context(|| format!("holder {holder} is not one of ours"))?;
        b.check_alive()?;
        let t_kill = Utc::now();
        if let Some(p) = b.agents[idx].proc.as_mut() {
            p.kill9();
        }
        let t_start = match wait_takeover(&b, id, idx, ttl).await {
            Ok(t) => t,
            Err(e) => {
                out.failures.push(format!("job {id}: {e:#}"));
                b.agents[idx].restart()?;
                continue;
            }
        };
        out.takeovers.push(ms_between(t_kill, t_start));
        b.api.cancel(id).await?;
        b.api
            .wait_terminal(id, Duration::from_millis(2 * ttl + 15_000))
            .await?;
        let restarted = Utc::now();
        b.agents[idx].restart()?;
        wait_seen_since(&b, &holder, restarted).await?;
        let starts: usize = b
            .agents
            .iter()
            .map(|a| {
                grants_in(&a.dir.join("agent.log"))
                    .iter()
                    .filter(|(j, _)| *j == id)
                    .count()
            })
            .sum();
        out.duplicates += starts.saturating_sub(2);
    }
    b.check_alive()?;
    Ok(out)
}

/// Wait for another agent's `Lease granted` line for `id`.
async fn wait_takeover(b: &Bench, id: JobId, killed: usize, ttl: u64) -> Result<DateTime<Utc>> {
    let end = Instant::now() + Duration::from_millis(3 * ttl + 30_000);
    loop {
        for (i, a) in b.agents.iter().enumerate() {
            if i == killed {
                continue;
            }
            if let Some((_, ts)) = grants_in(&a.dir.join("agent.log"))
                .into_iter()
                .find(|(j, _)| *j == id)
            {
                return Ok(ts);
            }
        }
        if Instant::now() > end {
            bail!(
                "no other agent started the job within {} ms",
                3 * ttl + 30_000
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until the controller saw `agent` poll after `since`.
async fn wait_seen_since(b: &Bench, agent: &str, since: DateTime<Utc>) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(l) = b.api.agents().await
            && l.agents
                .iter()
                .any(|a| a.id == agent && a.last_seen > since)
        {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("{agent} did not poll again within 30 s of its restart");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
