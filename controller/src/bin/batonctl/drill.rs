//! `batonctl drill start|list|show`: failover drills and their reports.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use baton_proto::drill::{DrillList, DrillMethod, DrillStart, DrillState, DrillView};
use chrono::{DateTime, Utc};

use crate::client::{self, Api};
use crate::render::{self, dash, finish, fmt_ms, fmt_time, table};
use crate::submit::{parse_duration_ms, read_job_file};
use crate::{decode, out, out_json};

/// How often `drill start --wait` looks at the drill.
const WAIT_POLL: Duration = Duration::from_millis(250);

/// `batonctl drill …`.
#[derive(Debug, clap::Subcommand)]
pub enum DrillCmd {
    /// Start a drill on a worker group: the holder of the drill's job is told
    /// to fail, and the takeover is measured.
    Start(StartArgs),
    /// List drills, newest first.
    List {
        /// At most this many drills (1-1000).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
    /// Show a drill's report and timeline.
    Show {
        /// Drill id.
        id: i64,
    },
}

/// `batonctl drill start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Worker group to drill.
    #[arg(long, value_name = "G")]
    pub group: String,
    /// The fault: crash, freeze, partition (on the agent holding the job) or
    /// controller-crash (the controller replica serving --agent aborts).
    #[arg(long, value_name = "M", value_parser = parse_method)]
    pub method: DrillMethod,
    /// controller-crash: the agent whose controller replica crashes (the
    /// drill's job must run on it: drill a group it serves alone).
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    /// Fault duration, e.g. 10s (must exceed the lease TTL; default: twice the TTL).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    pub duration: Option<u64>,
    /// RTO target for the takeover, e.g. 20s (default 60s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    pub rto: Option<u64>,
    /// Lease TTL of the drill's job, e.g. 5s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    pub lease_ttl: Option<u64>,
    /// The job to run (a JobSubmit in .json or .toml); default: the built-in probe.
    #[arg(long, value_name = "F")]
    pub job_file: Option<std::path::PathBuf>,
    /// Wait for the verdict; exit 1 unless the drill passed.
    #[arg(long)]
    pub wait: bool,
}

fn parse_method(s: &str) -> Result<DrillMethod, String> {
    DrillMethod::parse(&s.trim().replace('-', "_")).ok_or_else(|| {
        format!(
            "unknown method `{s}` (expected one of: crash, freeze, partition, controller-crash)"
        )
    })
}

impl StartArgs {
    /// The request body.
    pub fn request(&self, stdin: &mut dyn std::io::Read) -> Result<DrillStart> {
        let job = self
            .job_file
            .as_deref()
            .map(|p| read_job_file(p, stdin))
            .transpose()?;
        Ok(DrillStart {
            group: self.group.clone(),
            method: self.method,
            duration_ms: self.duration,
            job,
            rto_ms: self.rto,
            lease_ttl_ms: self.lease_ttl,
            agent: self.agent.clone(),
        })
    }
}

/// Run a `drill` subcommand.
pub async fn drill(api: &Api, cmd: DrillCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        DrillCmd::Start(args) => {
            let req = args.request(&mut std::io::stdin().lock())?;
            let answer = api.post_json("/v1/drills", Some(&req)).await?;
            let view: DrillView = decode(&answer.body, "drill")?;
            if !args.wait {
                if json {
                    out_json(&answer)?;
                } else {
                    out(&format!(
                        "Started drill {} ({} on group {}, job {})",
                        view.id,
                        view.method,
                        view.group,
                        view.job_id.map_or("-".to_owned(), |j| j.to_string())
                    ))?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !json {
                out(&format!(
                    "Started drill {} ({} on group {}); waiting for the verdict",
                    view.id, view.method, view.group
                ))?;
            }
            let (raw, done) = wait(api, view.id).await?;
            if json {
                out_json(&raw)?;
            } else {
                out("")?;
                out(&render_drill(&done))?;
            }
            Ok(if done.state == DrillState::Passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        DrillCmd::List { limit } => {
            let query: Vec<(&str, String)> = limit
                .map(|l| ("limit", l.to_string()))
                .into_iter()
                .collect();
            let answer = api.get_json("/v1/drills", &query).await?;
            if json {
                return out_json(&answer).map(|()| ExitCode::SUCCESS);
            }
            let list: DrillList = decode(&answer.body, "drill list")?;
            out(&render_list(&list, Utc::now()))?;
            Ok(ExitCode::SUCCESS)
        }
        DrillCmd::Show { id } => {
            let answer = api.get_json(&format!("/v1/drills/{id}"), &[]).await?;
            if json {
                return out_json(&answer).map(|()| ExitCode::SUCCESS);
            }
            let view: DrillView = decode(&answer.body, "drill")?;
            out(&render_drill(&view))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn wait(api: &Api, id: i64) -> Result<(client::Answer, DrillView)> {
    let start = Instant::now();
    loop {
        match api.get_json(&format!("/v1/drills/{id}"), &[]).await {
            Ok(answer) => {
                let view: DrillView = decode(&answer.body, "drill")?;
                if view.state != DrillState::Running {
                    return Ok((answer, view));
                }
            }
            Err(e) if client::is_transient(&e) && start.elapsed() < Duration::from_secs(600) => {}
            Err(e) => return Err(e),
        }
        if start.elapsed() > Duration::from_secs(3600) {
            bail!("gave up waiting for drill {id} after an hour");
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

fn opt_ms(v: Option<i64>) -> String {
    v.map_or("-".to_owned(), |ms| fmt_ms(ms.max(0) as u64))
}

/// `drill list` as a table.
pub fn render_list(list: &DrillList, now: DateTime<Utc>) -> String {
    if list.drills.is_empty() {
        return "No drills.\n".to_owned();
    }
    let mut t = table(&[
        "ID", "GROUP", "METHOD", "STATE", "TAKEOVER", "RTO", "JOB", "STARTED",
    ]);
    for d in &list.drills {
        t.add_row(vec![
            d.id.to_string(),
            d.group.clone(),
            d.method.to_string(),
            d.state.to_string(),
            opt_ms(d.report.as_ref().and_then(|r| r.takeover_ms)),
            fmt_ms(d.rto_ms),
            d.job_id.map_or("-".to_owned(), |j| j.to_string()),
            fmt_time(d.created_at, now),
        ]);
    }
    finish(t)
}

/// `drill show`: the report, then the timeline with times relative to the start.
pub fn render_drill(d: &DrillView) -> String {
    let mut s = format!(
        "Drill {}: {} on group {} — {}\n",
        d.id, d.method, d.group, d.state
    );
    s.push_str(&format!(
        "  job {}   lease TTL {}   fault duration {}   RTO {}   by {}\n",
        d.job_id.map_or("-".to_owned(), |j| j.to_string()),
        fmt_ms(d.lease_ttl_ms),
        fmt_ms(d.duration_ms),
        fmt_ms(d.rto_ms),
        d.created_by
    ));
    if let Some(r) = &d.report {
        s.push_str(&format!(
            "  holder {} → {}   detection {}   takeover {}   total {}   attempts {}\n",
            dash(r.holder.as_deref()),
            dash(r.new_holder.as_deref()),
            opt_ms(r.detection_ms),
            opt_ms(r.takeover_ms),
            opt_ms(r.total_ms),
            r.attempts
        ));
        if let Some(ms) = r.failover_ms {
            s.push_str(&format!(
                "  agent failover to another controller: {}\n",
                opt_ms(Some(ms))
            ));
        }
        let eo = serde_json::to_value(r.exactly_once)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        s.push_str(&format!(
            "  exactly once: {eo} — {}\n",
            r.exactly_once_evidence
        ));
        if r.passed {
            s.push_str("  verdict: PASSED\n");
        } else {
            s.push_str("  verdict: NOT PASSED\n");
            for why in &r.reasons {
                s.push_str(&format!("    - {why}\n"));
            }
        }
    }
    if !d.events.is_empty() {
        s.push_str("\nTimeline:\n");
        let mut t = table(&["+TIME", "EVENT", "AGENT", "ATTEMPT", "DETAIL"]);
        for e in &d.events {
            let rel = (e.at - d.created_at).num_milliseconds();
            t.add_row(vec![
                format!("+{}", render::fmt_ms(rel.max(0) as u64)),
                e.kind.to_string(),
                dash(e.agent.as_deref()),
                e.attempt.map_or("-".to_owned(), |a| a.to_string()),
                dash(e.detail.as_deref()),
            ]);
        }
        for line in finish(t).lines() {
            s.push_str("  ");
            s.push_str(line);
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests;
