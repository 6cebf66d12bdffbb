//! `replica-failover` (`--store postgres --replicas 2` or more): one real
//! agent that knows every controller's URL holds its poll on one replica;
//! that replica is killed with SIGKILL (`--runs` times, default 20) and
//! started again on the same port. Measured: from the kill to the agent's
//! `Lease granted` of a job submitted through another replica right after
//! the kill — when the agent takes work again. (The agent's own
//! `failover_ms` runs to the next *answer*, which for an idle agent is the
//! end of its next held poll, so it is not used here.)

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::report::{Row, ScenarioReport, Target, percentile};
use super::store::StoreKind;
use super::{Args, Bench, GROUP};
use crate::proc::{Agent, AgentOpts};

/// Run the scenario.
pub async fn run(args: &Args) -> Result<ScenarioReport> {
    if args.store != StoreKind::Postgres || args.replicas < 2 {
        bail!("replica-failover needs --store postgres --replicas 2 (or more)");
    }
    let kills = args.runs.unwrap_or(20);
    let mut rep = ScenarioReport::new("replica-failover", args.transport(), kills);
    rep.param("controllers", args.replicas);
    rep.param("kills", kills);
    let mut b = Bench::start(args, "").await?;
    let urls: Vec<String> = std::iter::once(b.controller.url())
        .chain(b.replicas.iter().map(|c| c.url()))
        .collect();
    let mut o = AgentOpts::new("agent-1");
    o.groups = vec![GROUP.into()];
    if let Some(p) = &b.pki {
        o.extra = p.agent_toml(false);
    }
    o.enrollment_token = Some(b.api.enrollment_token(&o.groups).await?);
    b.agents.push(Agent::start_urls(b.tmp.path(), &urls, o)?);
    b.wait_online(1).await?;
    let mut current = 0usize; // the agent prefers the first URL
    let mut samples = Vec::with_capacity(kills);
    for _ in 0..kills {
        // Let the agent settle into a held poll on `current`.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let seen = switches(&b.agents[0].log_text()).len();
        kill(&mut b, current);
        let killed = chrono::Utc::now();
        let other = (current + 1) % urls.len();
        let api = if other == 0 {
            b.api.clone()
        } else {
            b.replicas[other - 1].api()
        };
        let job = api
            .submit(serde_json::json!({"group": GROUP, "spec": {"kind": "noop"}}))
            .await?;
        let started = granted_at(&b, job.id).await?;
        samples.push(super::ms_between(killed, started));
        let (to, _) = next_switch(&b, seen).await?;
        restart(&mut b, current).await?;
        current = urls
            .iter()
            .position(|u| *u == to)
            .with_context(|| format!("the agent switched to an unknown URL {to}"))?;
    }
    let mut p50 = Row::new(
        "kill → agent takes a job through another replica p50",
        percentile(&samples, 50.0),
        "ms",
    );
    p50.spread = Some((percentile(&samples, 0.0), percentile(&samples, 100.0)));
    rep.rows.push(p50);
    rep.rows.push(
        Row::new(
            "kill → agent takes a job through another replica p99",
            percentile(&samples, 99.0),
            "ms",
        )
        .target(Target::Le(5_000.0)),
    );
    rep.notes.push(
        "from the SIGKILL to the agent's `Lease granted` (its log's timestamp, same host) of a \
         noop job submitted through another replica right after the kill; the killed replica \
         is restarted before the next kill"
            .into(),
    );
    Ok(rep)
}

fn kill(b: &mut Bench, i: usize) {
    if i == 0 {
        b.controller.kill9();
    } else {
        b.replicas[i - 1].kill9();
    }
}

async fn restart(b: &mut Bench, i: usize) -> Result<()> {
    if i == 0 {
        b.controller.restart().await
    } else {
        b.replicas[i - 1].restart().await
    }
}

/// `(to, failover_ms)` of each `Switched controller` line of a log.
fn switches(log: &str) -> Vec<(String, f64)> {
    log.lines()
        .filter(|l| l.contains("Switched controller"))
        .filter_map(|l| {
            let to = field(l, "to")?;
            let ms = field(l, "failover_ms")?.parse().ok()?;
            Some((to, ms))
        })
        .collect()
}

fn field(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = line[at..].trim_start_matches('"');
    let end = rest.find([' ', '"']).unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// When the agent's log says it was granted `id`.
async fn granted_at(b: &Bench, id: baton_proto::JobId) -> Result<chrono::DateTime<chrono::Utc>> {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let log = b.agents[0].log_text();
        if let Some((_, at)) = log
            .lines()
            .filter_map(super::parse_grant)
            .find(|(j, _)| *j == id)
        {
            return Ok(at);
        }
        if Instant::now() > end {
            bail!("the agent was not granted job {id} within 60 s of the kill");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Wait for the switch after the first `seen` ones.
async fn next_switch(b: &Bench, seen: usize) -> Result<(String, f64)> {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = switches(&b.agents[0].log_text()).get(seen) {
            return Ok(s.clone());
        }
        if Instant::now() > end {
            bail!("the agent did not switch controllers within 60 s of the kill");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
