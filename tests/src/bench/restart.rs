//! `restart`: a controller and one one-slot agent; per run a long noop job
//! (lease TTL `--ttl-ms`, default 15000), SIGKILL of its holder at a random
//! point of the heartbeat cycle, and an immediate restart of the same agent
//! (same identity and state dir, as systemd's `Restart=always` does). The
//! restarted agent reports the dead run's lease; the controller ends the
//! attempt `agent_restarted` and the job is granted again. Measured from the
//! restart (spawn of the new process): the attempt's end, and the re-grant
//! (attempt 2's start). Both are controller times on the same host. Without
//! the report both would be about one TTL after the last renewal.

use std::time::Duration;

use anyhow::{Result, bail};
use baton_proto::{AttemptOutcome, JobState};
use chrono::Utc;
use serde_json::json;

use super::report::{Row, ScenarioReport, Target, percentile};
use super::{Args, Bench, GROUP, ms_between};

/// Run `--runs` kill-and-restart cycles (default 20).
pub async fn run(args: &Args) -> Result<ScenarioReport> {
    let runs = args.runs.unwrap_or(20);
    let ttl = args.ttl_ms.unwrap_or(15_000);
    let mut rep = ScenarioReport::new("restart", args.transport(), runs);
    rep.param("agents", 1);
    rep.param("ttl_ms", ttl);
    let mut b = Bench::start(args, "").await?;
    b.add_agents(1, 1).await?;
    b.wait_online(1).await?;
    let job = json!({
        "group": GROUP,
        "spec": {"kind": "noop", "sleep_ms": 3 * ttl + 10_000},
        "lease_ttl_ms": ttl,
        "retry": {"max_attempts": 3, "initial_backoff_ms": 0, "jitter": 0.0},
        "labels": {"source": "bench-restart"},
    });
    let (mut ended, mut regranted) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        let id = b.api.submit(job.clone()).await?.id;
        b.api.wait_running(id, Duration::from_secs(30)).await?;
        let phase = rand::random::<f64>() * ttl as f64 / 3.0;
        tokio::time::sleep(Duration::from_micros((phase * 1000.0) as u64)).await;
        b.check_alive()?;
        if let Some(p) = b.agents[0].proc.as_mut() {
            p.kill9();
        }
        let restarted = Utc::now();
        b.agents[0].restart()?;
        let j = b
            .api
            .wait_for(
                id,
                Duration::from_millis(2 * ttl + 30_000),
                "re-granted",
                |j| j.state == JobState::Running && j.attempts.len() == 2,
            )
            .await?;
        let (old, new) = (&j.attempts[0], &j.attempts[1]);
        if old.outcome != Some(AttemptOutcome::AgentRestarted) {
            bail!(
                "job {id}: attempt 1 ended {:?}, not agent_restarted",
                old.outcome
            );
        }
        ended.push(ms_between(
            restarted,
            old.ended_at.unwrap_or(new.started_at),
        ));
        regranted.push(ms_between(restarted, new.started_at));
        b.api.cancel(id).await?;
        b.api
            .wait_terminal(id, Duration::from_millis(2 * ttl + 15_000))
            .await?;
    }
    b.check_alive()?;
    for (what, v) in [
        ("restart → attempt ended", &ended),
        ("restart → re-grant", &regranted),
    ] {
        let mut p50 = Row::new(&format!("{what} p50"), percentile(v, 50.0), "ms");
        p50.spread = Some((percentile(v, 0.0), percentile(v, 100.0)));
        rep.rows.push(p50);
        rep.rows.push(
            Row::new(&format!("{what} p99"), percentile(v, 99.0), "ms")
                .target(Target::Le(ttl as f64)),
        );
    }
    rep.notes.push(
        "kill at a uniformly random delay in [0, TTL/3) after the job is running, then an \
         immediate restart; the target is the TTL, which is what the lease cost before \
         (from the last renewal); retry: initial_backoff_ms = 0"
            .into(),
    );
    Ok(rep)
}
