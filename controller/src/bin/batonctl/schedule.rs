//! `batonctl schedule …`: define schedules, operate them, read their
//! history, and preview a trigger without a controller.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use baton_proto::schedule::{
    self, BackfillRequest, Catchup, FireReport, JobTemplate, NextList, OccurrenceList, Overlap,
    ScheduleList, ScheduleSpec, ScheduleView,
};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use crate::client::{Answer, Api, segment, usage};
use crate::render_schedule as view;
use crate::submit::{JobArgs, parse_duration_ms};
use crate::{decode, manifest, out, out_json, zone};

/// How many upcoming occurrences `schedule show` lists.
const SHOW_NEXT: usize = 5;
/// How many recent missed or skipped occurrences `schedule show` lists.
const SHOW_NOT_RUN: usize = 10;
/// How much history `schedule show` reads to find them.
const SHOW_HISTORY: u32 = 200;

/// `batonctl schedule …`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Create a schedule: a trigger (--cron or --every) and what it runs
    /// (--file JOB.toml, --pipeline NAME, or --program P -- ARGS and the other job flags).
    ///
    /// Example: batonctl schedule create --name nightly --group db --cron '30 2 * * *'
    /// --tz Europe/Berlin --program /usr/local/bin/backup -- --full
    Create(Box<CreateArgs>),
    /// List schedules.
    List,
    /// Show a schedule: definition, next runs, last success, staleness, and
    /// the recent occurrences that did not run, with their reasons.
    Show {
        /// Schedule name.
        name: String,
    },
    /// Pause a schedule (occurrences that pass are recorded as missed).
    Pause {
        /// Schedule name.
        name: String,
    },
    /// Resume a paused schedule (missed occurrences follow its catch-up policy).
    Resume {
        /// Schedule name.
        name: String,
    },
    /// Fire an occurrence now (the overlap policy applies).
    Trigger {
        /// Schedule name.
        name: String,
    },
    /// Occurrences, newest first: nominal time (UTC and the zone), trigger,
    /// state, reason, job or run, outcome.
    History(HistoryArgs),
    /// Delete a schedule (its jobs and runs are kept).
    Delete {
        /// Schedule name.
        name: String,
    },
    /// Fire every occurrence of a time range once each, in order (the overlap policy applies).
    Backfill {
        /// Schedule name.
        name: String,
        /// Start of the range (RFC 3339, inclusive).
        #[arg(long, value_name = "T", value_parser = parse_time)]
        from: DateTime<Utc>,
        /// End of the range (RFC 3339, inclusive).
        #[arg(long, value_name = "T", value_parser = parse_time)]
        to: DateTime<Utc>,
    },
    /// Upcoming occurrences in UTC and in the zone: of a schedule (asks the
    /// controller), or of a trigger given by flags (computed here, no controller needed).
    ///
    /// Example: batonctl schedule next --cron '30 2 * * *' --tz Europe/Berlin
    /// --from 2027-03-27T00:00:00Z --count 3
    Next(NextArgs),
}

/// The trigger flags, shared by `create` and the offline `next`.
#[derive(Debug, Default, Clone, Args)]
pub struct TriggerArgs {
    /// Cron pattern: 5 fields, or 6 with seconds first.
    #[arg(long, value_name = "EXPR", conflicts_with = "every")]
    pub cron: Option<String>,
    /// IANA time zone of the cron pattern and of --between [default: UTC].
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// Interval trigger instead of cron, e.g. 15m or '1h 30m'.
    #[arg(long, value_name = "DUR", value_parser = parse_duration_ms)]
    pub every: Option<u64>,
    /// Where an interval is anchored (RFC 3339) [default: --start-at, else creation].
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub anchor: Option<DateTime<Utc>>,
    /// Active window HH:MM-HH:MM in the zone (may wrap past midnight);
    /// occurrences outside it are skipped and recorded.
    #[arg(long, value_name = "HH:MM-HH:MM")]
    pub between: Option<String>,
    /// No occurrence before this (RFC 3339).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub start_at: Option<DateTime<Utc>>,
    /// No occurrence after this (RFC 3339).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub end_at: Option<DateTime<Utc>>,
}

impl TriggerArgs {
    fn any(&self) -> bool {
        self.cron.is_some()
            || self.tz.is_some()
            || self.every.is_some()
            || self.anchor.is_some()
            || self.between.is_some()
            || self.start_at.is_some()
            || self.end_at.is_some()
    }

    /// A spec with this trigger and defaults elsewhere (no job, no pipeline).
    fn spec(&self, name: &str) -> Result<ScheduleSpec> {
        if self.cron.is_none() && self.every.is_none() {
            return Err(usage("give --cron EXPR or --every DUR"));
        }
        Ok(ScheduleSpec {
            name: name.to_owned(),
            group: None,
            cron: self.cron.clone(),
            tz: self.tz.clone(),
            every_ms: self.every,
            anchor: self.anchor,
            between: self.between.clone(),
            start_at: self.start_at,
            end_at: self.end_at,
            jitter_ms: 0,
            overlap: Overlap::default(),
            catchup: Catchup::default(),
            catchup_window_ms: schedule::DEFAULT_CATCHUP_WINDOW_MS,
            catchup_cap: schedule::DEFAULT_CATCHUP_CAP,
            alert_after_ms: None,
            job: None,
            pipeline: None,
            paused: false,
        })
    }
}

/// `batonctl schedule create`.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Schedule name (A-Z a-z 0-9 _ . -, at most 64).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Worker group of the job (required with a job; with --pipeline, the
    /// group of the steps that name none).
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
    /// The trigger.
    #[command(flatten)]
    pub trigger: TriggerArgs,
    /// When the previous run is still going: skip, buffer_one, allow, cancel_previous [default: skip].
    #[arg(long, value_name = "P", value_parser = parse_overlap)]
    pub overlap: Option<Overlap>,
    /// Occurrences that passed unfired: latest, all, none [default: latest].
    #[arg(long, value_name = "P", value_parser = parse_catchup)]
    pub catchup: Option<Catchup>,
    /// How old a missed occurrence may be and still be caught up [default: 1h].
    #[arg(long, value_name = "DUR", value_parser = parse_duration_ms)]
    pub catchup_window: Option<u64>,
    /// Most occurrences `--catchup all` runs at once [default: 100].
    #[arg(long, value_name = "N")]
    pub catchup_cap: Option<u32>,
    /// Deterministic delay after each nominal time, at most this.
    #[arg(long, value_name = "DUR", value_parser = parse_duration_ms)]
    pub jitter: Option<u64>,
    /// Flag the schedule stale when its last success is older than this.
    #[arg(long, value_name = "DUR", value_parser = parse_duration_ms)]
    pub alert_after: Option<u64>,
    /// Create it paused.
    #[arg(long)]
    pub paused: bool,
    /// The job template from a TOML job table (the keys of `[schedule.job]` in `batonctl apply`).
    #[arg(long, value_name = "JOB.toml", conflicts_with = "pipeline")]
    pub file: Option<PathBuf>,
    /// Run this pipeline instead of a job.
    #[arg(long, value_name = "NAME")]
    pub pipeline: Option<String>,
    /// The job from flags (as for `batonctl submit`).
    #[command(flatten)]
    pub job: JobArgs,
}

impl CreateArgs {
    /// The job template: from --file (flags override its common keys) or from the flags.
    fn job(&self) -> Result<Option<JobTemplate>> {
        if self.pipeline.is_some() {
            if self.job.any_kind_flag() || self.job.any_common_flag() {
                return Err(usage(
                    "job flags do not apply with --pipeline (each step has its own job)",
                ));
            }
            return Ok(None);
        }
        let mut job = match &self.file {
            Some(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path)
                    .map_err(|e| usage(format!("cannot read job file {shown}: {e}")))?;
                manifest::parse_job_table(&shown, &text).map_err(|e| usage(e.to_string()))?
            }
            None if self.job.any_kind_flag() => self.job.template_from_flags()?,
            None => {
                return Err(usage(
                    "give what to run: --file JOB.toml, --pipeline NAME, or --program P -- ARGS",
                ));
            }
        };
        if self.file.is_some() {
            self.job.apply_common(&mut job)?;
        }
        Ok(Some(job))
    }

    /// The spec to send.
    pub fn spec(&self) -> Result<ScheduleSpec> {
        if !schedule::valid_name(&self.name) {
            return Err(usage(format!(
                "--name `{}`: 1 to {} characters of A-Z a-z 0-9 _ . -",
                self.name,
                schedule::MAX_NAME_LEN
            )));
        }
        let job = self.job()?;
        if job.is_some() && self.group.is_none() {
            return Err(usage("--group is required for a schedule that runs a job"));
        }
        let mut spec = self.trigger.spec(&self.name)?;
        spec.group = self.group.clone();
        spec.overlap = self.overlap.unwrap_or_default();
        spec.catchup = self.catchup.unwrap_or_default();
        spec.catchup_window_ms = self
            .catchup_window
            .unwrap_or(schedule::DEFAULT_CATCHUP_WINDOW_MS);
        spec.catchup_cap = self.catchup_cap.unwrap_or(schedule::DEFAULT_CATCHUP_CAP);
        spec.jitter_ms = self.jitter.unwrap_or(0);
        spec.alert_after_ms = self.alert_after;
        spec.paused = self.paused;
        spec.job = job;
        spec.pipeline = self.pipeline.clone();
        Ok(spec)
    }
}

/// `batonctl schedule history`.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Schedule name.
    pub name: String,
    /// At most this many rows (1-1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Only occurrences before this nominal time (RFC 3339; the next page).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub before: Option<DateTime<Utc>>,
}

/// `batonctl schedule next`.
#[derive(Debug, Clone, Args)]
pub struct NextArgs {
    /// Schedule name (asks the controller); without it, the trigger flags are computed here.
    pub name: Option<String>,
    /// How many occurrences (1-1000).
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub count: u32,
    /// Offline preview: occurrences at or after this instant (RFC 3339) [default: now].
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub from: Option<DateTime<Utc>>,
    /// Offline preview: the trigger.
    #[command(flatten)]
    pub trigger: TriggerArgs,
}

/// Parse an RFC 3339 instant.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{s}`: {e} (expected RFC 3339, e.g. 2027-03-28T01:30:00Z)"))
}

fn parse_overlap(s: &str) -> Result<Overlap, String> {
    Overlap::parse(s.trim()).ok_or_else(|| {
        format!("unknown overlap `{s}` (expected one of: skip, buffer_one, allow, cancel_previous)")
    })
}

fn parse_catchup(s: &str) -> Result<Catchup, String> {
    Catchup::parse(s.trim())
        .ok_or_else(|| format!("unknown catch-up `{s}` (expected one of: latest, all, none)"))
}

/// `/v1/schedules/{name}` and below.
fn path(name: &str, tail: &str) -> String {
    format!("/v1/schedules/{}{tail}", segment(name))
}

/// Run a `schedule` subcommand.
pub async fn schedule(api: &Api, cmd: ScheduleCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        ScheduleCmd::Create(args) => {
            let spec = args.spec()?;
            let answer = api.post_json("/v1/schedules", Some(&spec)).await?;
            state_answer(&answer, "created", json)
        }
        ScheduleCmd::List => {
            let answer = api.get_json("/v1/schedules", &[]).await?;
            if json {
                return out_json(&answer).map(|()| ExitCode::SUCCESS);
            }
            let list: ScheduleList = decode(&answer.body, "schedule list")?;
            out(&view::render_list(&list, answer.now()))?;
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCmd::Show { name } => show(api, &name, json).await,
        ScheduleCmd::Pause { name } => {
            let answer = api.post_json::<()>(&path(&name, "/pause"), None).await?;
            state_answer(&answer, "paused", json)
        }
        ScheduleCmd::Resume { name } => {
            let answer = api.post_json::<()>(&path(&name, "/resume"), None).await?;
            state_answer(&answer, "resumed", json)
        }
        ScheduleCmd::Trigger { name } => {
            let answer = api.post_json::<()>(&path(&name, "/trigger"), None).await?;
            fire_answer(&name, &answer, json)
        }
        ScheduleCmd::Backfill { name, from, to } => {
            if from > to {
                return Err(usage("--from is after --to"));
            }
            let req = BackfillRequest { from, to };
            let answer = api.post_json(&path(&name, "/backfill"), Some(&req)).await?;
            fire_answer(&name, &answer, json)
        }
        ScheduleCmd::History(args) => history(api, &args, json).await,
        ScheduleCmd::Delete { name } => {
            api.delete(&path(&name, "")).await?;
            if json {
                out("null")?;
            } else {
                out(&format!("Schedule {name} deleted"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCmd::Next(args) => next(api, &args, json).await,
    }
}

fn state_answer(answer: &Answer, verb: &str, json: bool) -> Result<ExitCode> {
    if json {
        return out_json(answer).map(|()| ExitCode::SUCCESS);
    }
    let v: ScheduleView = decode(&answer.body, "schedule")?;
    out(&view::render_state_line(verb, &v, answer.now()))?;
    Ok(ExitCode::SUCCESS)
}

fn fire_answer(name: &str, answer: &Answer, json: bool) -> Result<ExitCode> {
    if json {
        return out_json(answer).map(|()| ExitCode::SUCCESS);
    }
    let r: FireReport = decode(&answer.body, "fire report")?;
    out(&view::render_fire_report(name, &r))?;
    Ok(ExitCode::SUCCESS)
}

/// `schedule show`: the view, its next runs and its recent history.
async fn show(api: &Api, name: &str, json: bool) -> Result<ExitCode> {
    let answer = api.get_json(&path(name, ""), &[]).await?;
    if json {
        return out_json(&answer).map(|()| ExitCode::SUCCESS);
    }
    let v: ScheduleView = decode(&answer.body, "schedule")?;
    let next = api
        .get_json(&path(name, "/next"), &[("count", SHOW_NEXT.to_string())])
        .await?;
    let next: NextList = decode(&next.body, "next occurrences")?;
    let history = api
        .get_json(
            &path(name, "/history"),
            &[("limit", SHOW_HISTORY.to_string())],
        )
        .await?;
    let history: OccurrenceList = decode(&history.body, "history")?;
    let local = zone::local_writer(&v.spec, v.created_at);
    out(&view::render_show(
        &v,
        Some(&next),
        &view::not_run(&history, SHOW_NOT_RUN),
        answer.now(),
        &local,
    ))?;
    Ok(ExitCode::SUCCESS)
}

async fn history(api: &Api, args: &HistoryArgs, json: bool) -> Result<ExitCode> {
    let mut query = Vec::new();
    if let Some(b) = args.before {
        query.push(("before", view::utc(b)));
    }
    if let Some(l) = args.limit {
        query.push(("limit", l.to_string()));
    }
    let answer = api.get_json(&path(&args.name, "/history"), &query).await?;
    if json {
        return out_json(&answer).map(|()| ExitCode::SUCCESS);
    }
    let list: OccurrenceList = decode(&answer.body, "history")?;
    let sched = api.get_json(&path(&args.name, ""), &[]).await?;
    let v: ScheduleView = decode(&sched.body, "schedule")?;
    let local = zone::local_writer(&v.spec, v.created_at);
    out(&view::render_history(&list, view::zone(&v.spec), &local))?;
    if let Some(next) = list.next_before {
        eprintln!("(more: add --before {})", view::utc(next));
    }
    Ok(ExitCode::SUCCESS)
}

/// The offline preview's request, checked: `None` when `args` names a schedule.
pub fn preview_spec(args: &NextArgs) -> Result<Option<ScheduleSpec>> {
    match (&args.name, args.trigger.any() || args.from.is_some()) {
        (Some(_), true) => Err(usage(
            "give a schedule NAME or trigger flags (--cron/--every, --tz, --from ...), not both",
        )),
        (Some(_), false) => Ok(None),
        (None, _) if args.trigger.cron.is_none() && args.trigger.every.is_none() => Err(usage(
            "give a schedule NAME, or --cron EXPR or --every DUR for a preview",
        )),
        (None, _) => {
            let mut spec = args.trigger.spec("preview")?;
            // Trigger::new wants a target; the preview never runs it.
            spec.pipeline = Some("preview".to_owned());
            Ok(Some(spec))
        }
    }
}

async fn next(api: &Api, args: &NextArgs, json: bool) -> Result<ExitCode> {
    let (list, now) = match (preview_spec(args)?, &args.name) {
        (Some(spec), _) => {
            let from = args.from.unwrap_or_else(Utc::now);
            let list = zone::preview(&spec, from, args.count as usize)
                .map_err(|e| usage(e.to_string()))?;
            if json {
                out(&serde_json::to_string_pretty(&list)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            (list, None)
        }
        (None, Some(name)) => {
            let answer = api
                .get_json(&path(name, "/next"), &[("count", args.count.to_string())])
                .await?;
            if json {
                return out_json(&answer).map(|()| ExitCode::SUCCESS);
            }
            (
                decode(&answer.body, "next occurrences")?,
                Some(answer.now()),
            )
        }
        (None, None) => return Err(usage("give a schedule NAME or --cron/--every")),
    };
    out(&view::render_next(&list, now))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
