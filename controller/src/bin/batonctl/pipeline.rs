//! `batonctl pipeline …`: define pipelines, run them, follow and steer runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use baton_proto::pipeline::{
    PipelineList, PipelineView, RunList, RunState, RunSummary, RunView, StepCondition,
};
use baton_proto::schedule::RunId;
use chrono::{DateTime, Utc};
use clap::Subcommand;

use crate::client::{self, Api, segment, usage};
use crate::render::{
    Fields, dash, finish, fmt_ago, fmt_ms, fmt_time, indented, join_or_dash, one_line,
    spec_summary, table, truncate,
};
use crate::template::{self, TemplateArgs};
use crate::{decode, manifest, out, out_json};

/// How often `pipeline run --wait` looks at the run.
const WAIT_POLL: Duration = Duration::from_millis(500);
/// How long `--wait` tolerates an unreachable or unready controller.
const WAIT_OUTAGE: Duration = Duration::from_secs(60);
/// Longest job summary or reason in tables.
const CELL_WIDTH: usize = 60;

/// `batonctl pipeline …`.
#[derive(Debug, Subcommand)]
pub enum PipelineCmd {
    /// Create the pipelines of a TOML file (the `[[pipeline]]` tables of `batonctl apply`),
    /// or one from a template (`--template restore-drill --connection C --store S`).
    Create {
        /// The file.
        #[arg(
            short = 'f',
            long,
            value_name = "P.toml",
            required_unless_present = "template",
            conflicts_with = "template"
        )]
        file: Option<PathBuf>,
        /// A template instead of a file.
        #[command(flatten)]
        template: TemplateArgs,
    },
    /// List pipelines with their newest run.
    List,
    /// Show a pipeline's steps and its newest run.
    Show {
        /// Pipeline name.
        name: String,
    },
    /// Start a run.
    Run {
        /// Pipeline name.
        name: String,
        /// Wait until the run ends, show it, and exit 0 only if it succeeded.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long (exit 1); with --wait.
        #[arg(long, value_name = "DURATION", requires = "wait",
              value_parser = crate::submit::parse_duration_ms)]
        wait_timeout: Option<u64>,
    },
    /// Show a run: each step's state, job, agent, attempts and reason.
    Status {
        /// Run id.
        id: RunId,
    },
    /// Cancel a run (its running steps are cancelled).
    Cancel {
        /// Run id.
        id: RunId,
    },
    /// Retry a failed or cancelled run: only its failed and not-yet-run steps run again.
    Retry {
        /// Run id.
        id: RunId,
    },
    /// A pipeline's runs, newest first.
    History {
        /// Pipeline name.
        name: String,
        /// At most this many runs (1-1000).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
        /// Only runs older than this id (the next page).
        #[arg(long, value_name = "ID")]
        before: Option<RunId>,
    },
    /// Delete a pipeline (refused while a schedule names it).
    Delete {
        /// Pipeline name.
        name: String,
    },
}

fn path(name: &str, tail: &str) -> String {
    format!("/v1/pipelines/{}{tail}", segment(name))
}

/// Run a `pipeline` subcommand.
pub async fn pipeline(api: &Api, cmd: PipelineCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        PipelineCmd::Create {
            file: Some(file), ..
        } => create(api, &file, json).await,
        PipelineCmd::Create {
            file: None,
            template,
        } => create_from_template(api, &template, json).await,
        PipelineCmd::List => {
            let answer = api.get_json("/v1/pipelines", &[]).await?;
            if json {
                return out_json(&answer).map(|()| ExitCode::SUCCESS);
            }
            let list: PipelineList = decode(&answer.body, "pipeline list")?;
            out(&render_list(&list, answer.now()))?;
            Ok(ExitCode::SUCCESS)
        }
        PipelineCmd::Show { name } => {
            let answer = api.get_json(&path(&name, ""), &[]).await?;
            if json {
                return out_json(&answer).map(|()| ExitCode::SUCCESS);
            }
            let v: PipelineView = decode(&answer.body, "pipeline")?;
            out(&render_pipeline(&v, answer.now()))?;
            Ok(ExitCode::SUCCESS)
        }
        PipelineCmd::Run {
            name,
            wait,
            wait_timeout,
        } => run(api, &name, wait, wait_timeout, json).await,
        PipelineCmd::Status { id } => {
            let answer = api.get_json(&format!("/v1/runs/{id}"), &[]).await?;
            run_answer(&answer, json)
        }
        PipelineCmd::Cancel { id } | PipelineCmd::Retry { id } => {
            let action = if matches!(cmd, PipelineCmd::Cancel { .. }) {
                "cancel"
            } else {
                "retry"
            };
            let answer = api
                .post_json::<()>(&format!("/v1/runs/{id}/{action}"), None)
                .await?;
            run_answer(&answer, json)
        }
        PipelineCmd::History {
            name,
            limit,
            before,
        } => {
            let mut query = Vec::new();
            if let Some(l) = limit {
                query.push(("limit", l.to_string()));
            }
            if let Some(b) = before {
                query.push(("before", b.to_string()));
            }
            let answer = api.get_json(&path(&name, "/runs"), &query).await?;
            if json {
                return out_json(&answer).map(|()| ExitCode::SUCCESS);
            }
            let list: RunList = decode(&answer.body, "run list")?;
            out(&render_runs(&list.runs, answer.now()))?;
            if let Some(next) = list.next_before {
                eprintln!("(more runs: add --before {next})");
            }
            Ok(ExitCode::SUCCESS)
        }
        PipelineCmd::Delete { name } => {
            api.delete(&path(&name, "")).await?;
            if json {
                out("null")?;
            } else {
                out(&format!("Pipeline {name} deleted"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `pipeline create -f FILE`: every `[[pipeline]]` of the file.
async fn create(api: &Api, file: &std::path::Path, json: bool) -> Result<ExitCode> {
    let shown = file.display().to_string();
    let text =
        std::fs::read_to_string(file).map_err(|e| usage(format!("cannot read {shown}: {e}")))?;
    let m = manifest::parse_manifest(&shown, &text).map_err(|e| usage(e.to_string()))?;
    if !m.schedules.is_empty() {
        return Err(usage(format!(
            "{shown} defines schedules too: use `batonctl apply -f {shown}`"
        )));
    }
    if m.pipelines.is_empty() {
        return Err(usage(format!("{shown} defines no [[pipeline]]")));
    }
    for p in &m.pipelines {
        let answer = api.post_json("/v1/pipelines", Some(&p.spec)).await?;
        if json {
            out_json(&answer)?;
        } else {
            out(&format!(
                "Pipeline {} created ({} steps)",
                p.spec.name,
                p.spec.steps.len()
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pipeline create --template T …`: the expanded pipeline, then its schedule.
async fn create_from_template(api: &Api, args: &TemplateArgs, json: bool) -> Result<ExitCode> {
    let t = template::expand(args).map_err(usage)?;
    let answer = api.post_json("/v1/pipelines", Some(&t.pipeline)).await?;
    if json {
        out_json(&answer)?;
    } else {
        out(&format!(
            "Pipeline {} created ({} steps: {})\n{}",
            t.pipeline.name,
            t.pipeline.steps.len(),
            t.pipeline
                .steps
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(" → "),
            t.summary
        ))?;
    }
    if let Some(schedule) = &t.schedule {
        let answer = api.post_json("/v1/schedules", Some(schedule)).await?;
        if json {
            out_json(&answer)?;
        } else {
            out(&format!(
                "Schedule {} created (cron {:?}{})",
                schedule.name,
                schedule.cron.as_deref().unwrap_or_default(),
                schedule
                    .tz
                    .as_deref()
                    .map_or(String::new(), |z| format!(" in {z}"))
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_answer(answer: &client::Answer, json: bool) -> Result<ExitCode> {
    if json {
        return out_json(answer).map(|()| ExitCode::SUCCESS);
    }
    let v: RunView = decode(&answer.body, "run")?;
    out(&render_run(&v, answer.now()))?;
    Ok(ExitCode::SUCCESS)
}

/// `pipeline run`: start it; with `--wait`, follow it to its end.
async fn run(
    api: &Api,
    name: &str,
    wait: bool,
    wait_timeout: Option<u64>,
    json: bool,
) -> Result<ExitCode> {
    let answer = api.post_json::<()>(&path(name, "/runs"), None).await?;
    let v: RunView = decode(&answer.body, "run")?;
    if !wait {
        if json {
            return out_json(&answer).map(|()| ExitCode::SUCCESS);
        }
        out(&format!("Started run {} of pipeline {name}", v.id))?;
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        out(&format!("Started run {} of pipeline {name}; waiting", v.id))?;
    }
    let (raw, done) = wait_for(api, v.id, wait_timeout.map(Duration::from_millis)).await?;
    if json {
        out_json(&raw)?;
    } else {
        out("")?;
        out(&render_run(&done, raw.now()))?;
    }
    if done.state == RunState::Succeeded {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: run {} ended {}", done.id, done.state.as_str());
        Ok(ExitCode::from(1))
    }
}

async fn wait_for(
    api: &Api,
    id: RunId,
    timeout: Option<Duration>,
) -> Result<(client::Answer, RunView)> {
    let start = Instant::now();
    let mut failing_since: Option<Instant> = None;
    loop {
        match api.get_json(&format!("/v1/runs/{id}"), &[]).await {
            Ok(answer) => {
                failing_since = None;
                let v: RunView = decode(&answer.body, "run")?;
                if v.state != RunState::Running {
                    return Ok((answer, v));
                }
            }
            Err(e) if client::is_transient(&e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= WAIT_OUTAGE {
                    return Err(e.context(format!(
                        "gave up waiting for run {id}: the controller has been unavailable for {}",
                        fmt_ms(WAIT_OUTAGE.as_millis() as u64)
                    )));
                }
            }
            Err(e) => return Err(e),
        }
        if let Some(limit) = timeout
            && start.elapsed() >= limit
        {
            bail!(
                "timed out after {} waiting for run {id}",
                fmt_ms(limit.as_millis() as u64)
            );
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// A step condition's wire name.
pub fn condition(c: StepCondition) -> &'static str {
    match c {
        StepCondition::Success => "success",
        StepCondition::Failure => "failure",
        StepCondition::Always => "always",
    }
}

fn run_line(r: &RunSummary, now: DateTime<Utc>) -> String {
    format!(
        "#{} {} {}",
        r.id,
        r.state.as_str(),
        fmt_ago(r.created_at, now)
    )
}

/// `pipeline list`.
pub fn render_list(list: &PipelineList, now: DateTime<Utc>) -> String {
    if list.pipelines.is_empty() {
        return "No pipelines.\n".to_owned();
    }
    let mut t = table(&["NAME", "GROUP", "STEPS", "TIMEOUT", "LAST RUN"]);
    for p in &list.pipelines {
        t.add_row(vec![
            p.spec.name.clone(),
            p.spec.group.clone(),
            p.spec.steps.len().to_string(),
            p.spec.timeout_ms.map_or("-".to_owned(), fmt_ms),
            p.last_run
                .as_ref()
                .map_or("-".to_owned(), |r| run_line(r, now)),
        ]);
    }
    finish(t)
}

/// `pipeline show`.
pub fn render_pipeline(p: &PipelineView, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let mut f = Fields::default();
    f.add("Pipeline", p.spec.name.clone());
    f.add("Group", p.spec.group.clone());
    f.add(
        "Timeout",
        p.spec.timeout_ms.map_or("none".to_owned(), fmt_ms),
    );
    f.add(
        "Last run",
        p.last_run
            .as_ref()
            .map_or("none".to_owned(), |r| run_line(r, now)),
    );
    f.add("Created", fmt_time(p.created_at, now));
    f.add("Updated", fmt_time(p.updated_at, now));
    f.render(&mut out);
    out.push_str("\nSteps:\n");
    let mut t = table(&["STEP", "DEPENDS ON", "ON", "SAME AGENT AS", "GROUP", "JOB"]);
    for s in &p.spec.steps {
        t.add_row(vec![
            s.name.clone(),
            join_or_dash(s.depends_on.iter().cloned()),
            condition(s.on).to_owned(),
            dash(s.same_agent_as.as_deref()),
            s.group.clone().unwrap_or_else(|| p.spec.group.clone()),
            truncate(&spec_summary(&s.job.spec), CELL_WIDTH),
        ]);
    }
    indented(&mut out, &finish(t), "  ");
    out
}

/// `pipeline status` (and `run --wait`, `cancel`, `retry`).
pub fn render_run(r: &RunView, now: DateTime<Utc>) -> String {
    let mut out = format!(
        "Run {} of pipeline {}: {} (attempt {})\n",
        r.id,
        r.pipeline,
        r.state.as_str(),
        r.attempt
    );
    let mut f = Fields::default();
    if let Some(s) = &r.schedule {
        let nominal = r
            .nominal_at
            .map(|t| format!(" at {}", crate::render_schedule::utc(t)))
            .unwrap_or_default();
        f.add("Schedule", format!("{s}{nominal}"));
    }
    f.add("Started", fmt_time(r.created_at, now));
    if let Some(t) = r.finished_at {
        f.add("Finished", fmt_time(t, now));
    }
    if let Some(t) = r.deadline_at.filter(|_| r.state == RunState::Running) {
        f.add("Deadline", fmt_time(t, now));
    }
    if let Some(e) = &r.error {
        f.add("Error", one_line(e));
    }
    f.render(&mut out);
    out.push_str("\nSteps:\n");
    let mut t = table(&[
        "STEP", "STATE", "JOB", "AGENT", "ATTEMPTS", "QUEUED", "FINISHED", "REASON",
    ]);
    for s in &r.steps {
        t.add_row(vec![
            s.name.clone(),
            s.state.as_str().to_owned(),
            s.job_id.map_or("-".to_owned(), |j| j.to_string()),
            dash(s.agent.as_deref()),
            s.attempts.to_string(),
            s.queued_at.map_or("-".to_owned(), |t| fmt_ago(t, now)),
            s.finished_at.map_or("-".to_owned(), |t| fmt_ago(t, now)),
            s.reason
                .as_deref()
                .map_or("-".to_owned(), |e| truncate(&one_line(e), CELL_WIDTH)),
        ]);
    }
    indented(&mut out, &finish(t), "  ");
    out
}

/// `pipeline history`.
pub fn render_runs(runs: &[RunSummary], now: DateTime<Utc>) -> String {
    if runs.is_empty() {
        return "No runs.\n".to_owned();
    }
    let mut t = table(&[
        "ID", "STATE", "ATTEMPT", "SCHEDULE", "STARTED", "DURATION", "ERROR",
    ]);
    for r in runs {
        let end = r.finished_at.unwrap_or(now);
        let took = (end - r.created_at)
            .num_milliseconds()
            .max(0)
            .unsigned_abs();
        t.add_row(vec![
            r.id.to_string(),
            r.state.as_str().to_owned(),
            r.attempt.to_string(),
            dash(r.schedule.as_deref()),
            fmt_ago(r.created_at, now),
            fmt_ms(took),
            r.error
                .as_deref()
                .map_or("-".to_owned(), |e| truncate(&one_line(e), CELL_WIDTH)),
        ]);
    }
    finish(t)
}

#[cfg(test)]
mod tests;
