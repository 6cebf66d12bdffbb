//! The TOML format of `batonctl apply` (and of `schedule create --file`'s
//! job table), converted to the wire specs.
//!
//! ```toml
//! [[pipeline]]
//! name = "nightly-dump"
//! group = "db"
//! timeout = "2h"
//!
//! [[pipeline.step]]            # job keys sit in the step table itself
//! name = "dump"
//! kind = "dump"
//! connection = "shop"
//! database = "shop"
//!
//! [[pipeline.step]]
//! name = "copy"
//! depends_on = ["dump"]
//! same_agent_as = "dump"
//! program = "/usr/local/bin/copy-off-host"   # kind defaults to "command"
//! args = ["${steps.dump.result.file}"]
//!
//! [[schedule]]
//! name = "nightly"
//! cron = "30 2 * * *"
//! tz = "Europe/Berlin"
//! pipeline = "nightly-dump"    # or a [schedule.job] table and `group`
//! ```
//!
//! Schedule keys: `name`, `group`, `cron`, `tz`, `every`, `anchor`,
//! `between`, `start_at`, `end_at`, `jitter`, `overlap`, `catchup`,
//! `catchup_window`, `catchup_cap`, `alert_after`, `paused`, `job` (a table)
//! or `pipeline`. Pipeline keys: `name`, `group`, `timeout`, `step` (an array
//! of tables). Step keys: `name`, `depends_on`, `on`, `same_agent_as`,
//! `group`, and the job keys. Job keys: the keys of a job spec (`kind`,
//! default `command`; `program`, `args`, `env`, `working_dir`, `connection`,
//! `sql`, `database`, `verify`, `procedure`, `params`, `exactly_once`, `session`,
//! `sleep_ms`) plus `priority`, `retry` (a table), `timeout` or
//! `timeout_ms`, `lease_ttl` or `lease_ttl_ms`, `labels` (a table).
//!
//! Durations are strings (`"15m"`, `"1h 30m"`); times are TOML offset
//! date-times or RFC 3339 strings. An unknown key is an error naming the
//! file, the key and its line.

use std::collections::BTreeMap;

use baton_proto::config::{line_of_key, parse_toml};
use baton_proto::pipeline::{PipelineSpec, StepCondition, StepSpec};
use baton_proto::schedule::{self, Catchup, JobTemplate, Overlap, ScheduleSpec};
use baton_proto::{JobKind, JobSpec};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use toml::Value;

use crate::submit::parse_duration_ms;

/// What is wrong with a manifest, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A key (or the file's syntax) is wrong.
    #[error("{file}{}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default(),
            if key.is_empty() { String::new() } else { format!(", key `{key}`") })]
    At {
        /// The file.
        file: String,
        /// Dotted key path (`schedule[0].job.program`); empty for syntax errors.
        key: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A name is defined in two places.
    #[error("{what} `{name}` is defined twice: in {first} and in {second}")]
    Duplicate {
        /// `pipeline` or `schedule`.
        what: &'static str,
        /// The name.
        name: String,
        /// Where it was first defined.
        first: String,
        /// Where it was defined again.
        second: String,
    },
}

/// A spec and the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Item<T> {
    /// The spec.
    pub spec: T,
    /// The file that defined it.
    pub file: String,
}

/// Everything the files define.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifest {
    /// Pipelines, in file order.
    pub pipelines: Vec<Item<PipelineSpec>>,
    /// Schedules, in file order.
    pub schedules: Vec<Item<ScheduleSpec>>,
}

impl Manifest {
    /// Add the definitions of another file, refusing a name defined twice.
    pub fn merge(&mut self, other: Manifest) -> Result<(), Error> {
        for p in other.pipelines {
            if let Some(first) = self.pipelines.iter().find(|x| x.spec.name == p.spec.name) {
                return Err(duplicate("pipeline", &p.spec.name, &first.file, &p.file));
            }
            self.pipelines.push(p);
        }
        for s in other.schedules {
            if let Some(first) = self.schedules.iter().find(|x| x.spec.name == s.spec.name) {
                return Err(duplicate("schedule", &s.spec.name, &first.file, &s.file));
            }
            self.schedules.push(s);
        }
        Ok(())
    }
}

fn duplicate(what: &'static str, name: &str, first: &str, second: &str) -> Error {
    Error::Duplicate {
        what,
        name: name.to_owned(),
        first: first.to_owned(),
        second: second.to_owned(),
    }
}

/// The file being read: its name (for errors) and text (for lines).
#[derive(Clone, Copy)]
struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
}

impl Ctx<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> Error {
        Error::At {
            file: self.file.to_owned(),
            key: key.to_owned(),
            line: line_of_key(self.src, key),
            message: message.into(),
        }
    }
}

/// Parse a TOML text into a table, naming the line of a syntax error.
fn parse_table(file: &str, src: &str) -> Result<toml::Table, Error> {
    parse_toml::<toml::Table>(file, src).map_err(|e| Error::At {
        file: file.to_owned(),
        key: e.key,
        line: e.line,
        message: e.message.trim().to_owned(),
    })
}

/// Parse one manifest file (`file` names it in errors).
pub fn parse_manifest(file: &str, src: &str) -> Result<Manifest, Error> {
    let ctx = Ctx { file, src };
    let mut top = Walk::new(ctx, String::new(), parse_table(file, src)?);
    let mut manifest = Manifest::default();
    for (path, table) in top.tables("pipeline")? {
        let spec = pipeline(Walk::new(ctx, path, table))?;
        manifest.merge(Manifest {
            pipelines: vec![Item {
                spec,
                file: file.to_owned(),
            }],
            schedules: vec![],
        })?;
    }
    for (path, table) in top.tables("schedule")? {
        let spec = schedule(Walk::new(ctx, path, table))?;
        manifest.merge(Manifest {
            pipelines: vec![],
            schedules: vec![Item {
                spec,
                file: file.to_owned(),
            }],
        })?;
    }
    top.finish()?;
    Ok(manifest)
}

/// Parse a job table file (`schedule create --file`): the job keys at the top level.
pub fn parse_job_table(file: &str, src: &str) -> Result<JobTemplate, Error> {
    let ctx = Ctx { file, src };
    let mut w = Walk::new(ctx, String::new(), parse_table(file, src)?);
    let job = job(&mut w)?;
    w.finish()?;
    Ok(job)
}

fn schedule(mut w: Walk<'_>) -> Result<ScheduleSpec, Error> {
    let name = w.name()?;
    let overlap = w.enumerated(
        "overlap",
        Overlap::parse,
        "skip, buffer_one, allow, cancel_previous",
    )?;
    let catchup = w.enumerated("catchup", Catchup::parse, "latest, all, none")?;
    let job = match w.take("job") {
        None => None,
        Some((path, Value::Table(t))) => {
            let mut jw = Walk::new(w.ctx, path, t);
            let job = job(&mut jw)?;
            jw.finish()?;
            Some(job)
        }
        Some((path, _)) => return Err(w.ctx.err(&path, "expected a table ([schedule.job])")),
    };
    let spec = ScheduleSpec {
        name,
        group: w.string("group")?,
        cron: w.string("cron")?,
        tz: w.string("tz")?,
        every_ms: w.duration("every")?,
        anchor: w.time("anchor")?,
        between: w.string("between")?,
        start_at: w.time("start_at")?,
        end_at: w.time("end_at")?,
        jitter_ms: w.duration("jitter")?.unwrap_or(0),
        overlap: overlap.unwrap_or_default(),
        catchup: catchup.unwrap_or_default(),
        catchup_window_ms: w
            .duration("catchup_window")?
            .unwrap_or(schedule::DEFAULT_CATCHUP_WINDOW_MS),
        catchup_cap: w
            .typed("catchup_cap")?
            .unwrap_or(schedule::DEFAULT_CATCHUP_CAP),
        alert_after_ms: w.duration("alert_after")?,
        job,
        pipeline: w.string("pipeline")?,
        paused: w.typed("paused")?.unwrap_or(false),
    };
    w.finish()?;
    match (spec.cron.is_some(), spec.every_ms.is_some()) {
        (true, true) => return Err(w.here("give either `cron` or `every`, not both")),
        (false, false) => return Err(w.here("give `cron` or `every`")),
        _ => {}
    }
    match (spec.job.is_some(), spec.pipeline.is_some()) {
        (true, true) => {
            return Err(w.here("give either a [schedule.job] table or `pipeline`, not both"));
        }
        (false, false) => return Err(w.here("give a [schedule.job] table or `pipeline`")),
        _ => {}
    }
    if spec.job.is_some() && spec.group.is_none() {
        return Err(w.here("a schedule with a job needs `group`"));
    }
    Ok(spec)
}

fn pipeline(mut w: Walk<'_>) -> Result<PipelineSpec, Error> {
    let name = w.name()?;
    let group = w
        .string("group")?
        .ok_or_else(|| w.here("missing key `group`"))?;
    let timeout_ms = w.duration("timeout")?;
    let mut steps = Vec::new();
    for (path, table) in w.tables("step")? {
        steps.push(step(Walk::new(w.ctx, path, table))?);
    }
    w.finish()?;
    if steps.is_empty() {
        return Err(w.here("a pipeline needs at least one [[pipeline.step]]"));
    }
    Ok(PipelineSpec {
        name,
        group,
        timeout_ms,
        steps,
    })
}

fn step(mut w: Walk<'_>) -> Result<StepSpec, Error> {
    let name = w.name()?;
    let on = w.enumerated("on", parse_condition, "success, failure, always")?;
    let spec = StepSpec {
        name,
        depends_on: w.typed("depends_on")?.unwrap_or_default(),
        on: on.unwrap_or_default(),
        same_agent_as: w.string("same_agent_as")?,
        group: w.string("group")?,
        job: job(&mut w)?,
    };
    w.finish()?;
    Ok(spec)
}

fn parse_condition(s: &str) -> Option<StepCondition> {
    match s {
        "success" => Some(StepCondition::Success),
        "failure" => Some(StepCondition::Failure),
        "always" => Some(StepCondition::Always),
        _ => None,
    }
}

/// Keys of the job table that are not the spec's.
const TEMPLATE_KEYS: [&str; 7] = [
    "priority",
    "retry",
    "timeout",
    "timeout_ms",
    "lease_ttl",
    "lease_ttl_ms",
    "labels",
];

/// Step and schedule keys that are not job keys (left to the caller).
const NOT_JOB_KEYS: [&str; 5] = ["name", "depends_on", "on", "same_agent_as", "group"];

/// Take the job keys out of `w`: the template keys, then every other key
/// (except the step keys) as the spec.
fn job(w: &mut Walk<'_>) -> Result<JobTemplate, Error> {
    let priority = w.typed("priority")?.unwrap_or(0);
    let retry = w.typed("retry")?.unwrap_or_default();
    let timeout_ms = w.duration_or_ms("timeout")?;
    let lease_ttl_ms = w.duration_or_ms("lease_ttl")?;
    let labels: BTreeMap<String, String> = w.typed("labels")?.unwrap_or_default();
    let spec_keys: Vec<String> = w
        .table
        .keys()
        .filter(|k| !TEMPLATE_KEYS.contains(&k.as_str()) && !NOT_JOB_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    let mut spec = toml::Table::new();
    for k in spec_keys {
        if let Some(v) = w.table.remove(&k) {
            spec.insert(k, v);
        }
    }
    if spec.is_empty() {
        return Err(w.here("no job: give `kind` and its keys (e.g. `program`)"));
    }
    let kind_path = w.key_path("kind");
    let kind = match spec.remove("kind") {
        None => JobKind::Command,
        Some(Value::String(k)) => JobKind::parse(&k).ok_or_else(|| {
            let all: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
            w.ctx.err(
                &kind_path,
                format!("unknown kind `{k}` (expected one of: {})", all.join(", ")),
            )
        })?,
        Some(_) => return Err(w.ctx.err(&kind_path, "expected a string")),
    };
    let (path, spec) = (w.path.clone(), Value::Table(spec));
    // Each kind's own struct, so a bad value is named by its key.
    let spec = match kind {
        JobKind::Command => JobSpec::Command(w.deserialize(&path, spec)?),
        JobKind::Procedure => JobSpec::Procedure(w.deserialize(&path, spec)?),
        JobKind::Sql => JobSpec::Sql(w.deserialize(&path, spec)?),
        JobKind::Dump => JobSpec::Dump(w.deserialize(&path, spec)?),
        JobKind::Noop => JobSpec::Noop(w.deserialize(&path, spec)?),
        JobKind::Export => JobSpec::Export(w.deserialize(&path, spec)?),
        JobKind::Restore => JobSpec::Restore(w.deserialize(&path, spec)?),
        JobKind::Upload => JobSpec::Upload(w.deserialize(&path, spec)?),
    };
    Ok(JobTemplate {
        spec,
        priority,
        retry,
        timeout_ms,
        lease_ttl_ms,
        labels,
    })
}

/// A table being read: keys are taken out as they are read, and what is
/// left at the end is unknown.
struct Walk<'a> {
    ctx: Ctx<'a>,
    path: String,
    table: toml::Table,
}

impl<'a> Walk<'a> {
    fn new(ctx: Ctx<'a>, path: String, table: toml::Table) -> Walk<'a> {
        Walk { ctx, path, table }
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// An error about the table itself.
    fn here(&self, message: &str) -> Error {
        self.ctx.err(&self.path, message)
    }

    fn take(&mut self, key: &str) -> Option<(String, Value)> {
        self.table.remove(key).map(|v| (self.key_path(key), v))
    }

    /// The required `name`, checked.
    fn name(&mut self) -> Result<String, Error> {
        let path = self.key_path("name");
        let name = self
            .string("name")?
            .ok_or_else(|| self.here("missing key `name`"))?;
        if !schedule::valid_name(&name) {
            return Err(self.ctx.err(
                &path,
                format!(
                    "`{name}` is not a valid name (1 to {} characters of A-Z a-z 0-9 _ . -)",
                    schedule::MAX_NAME_LEN
                ),
            ));
        }
        Ok(name)
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, Error> {
        match self.take(key) {
            None => Ok(None),
            Some((_, Value::String(s))) => Ok(Some(s)),
            Some((path, _)) => Err(self.ctx.err(&path, "expected a string")),
        }
    }

    fn enumerated<T>(
        &mut self,
        key: &str,
        parse: fn(&str) -> Option<T>,
        expected: &str,
    ) -> Result<Option<T>, Error> {
        let path = self.key_path(key);
        match self.string(key)? {
            None => Ok(None),
            Some(s) => parse(&s).map(Some).ok_or_else(|| {
                self.ctx.err(
                    &path,
                    format!("unknown value `{s}` (expected one of: {expected})"),
                )
            }),
        }
    }

    fn duration(&mut self, key: &str) -> Result<Option<u64>, Error> {
        match self.take(key) {
            None => Ok(None),
            Some((path, Value::String(s))) => parse_duration_ms(&s)
                .map(Some)
                .map_err(|e| self.ctx.err(&path, e)),
            Some((path, _)) => Err(self.ctx.err(
                &path,
                "expected a duration string such as \"15m\" or \"1h 30m\"",
            )),
        }
    }

    /// `key` as a duration string, or `key_ms` as milliseconds (not both).
    fn duration_or_ms(&mut self, key: &str) -> Result<Option<u64>, Error> {
        let ms_key = format!("{key}_ms");
        if self.table.contains_key(key) && self.table.contains_key(&ms_key) {
            return Err(self.ctx.err(
                &self.key_path(&ms_key),
                format!("give `{key}` or `{ms_key}`, not both"),
            ));
        }
        match self.duration(key)? {
            Some(ms) => Ok(Some(ms)),
            None => self.typed(&ms_key),
        }
    }

    fn time(&mut self, key: &str) -> Result<Option<DateTime<Utc>>, Error> {
        let (path, text) = match self.take(key) {
            None => return Ok(None),
            Some((path, Value::String(s))) => (path, s),
            Some((path, Value::Datetime(d))) => (path, d.to_string()),
            Some((path, _)) => return Err(self.ctx.err(&path, "expected a date-time")),
        };
        DateTime::parse_from_rfc3339(&text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| {
                self.ctx.err(
                    &path,
                    format!("`{text}`: {e} (expected RFC 3339 with an offset, e.g. 2027-01-01T02:00:00Z)"),
                )
            })
    }

    /// `key` deserialized as `T`.
    fn typed<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, Error> {
        match self.take(key) {
            None => Ok(None),
            Some((path, v)) => self.deserialize(&path, v).map(Some),
        }
    }

    /// Deserialize `v` (found at `path`), naming the inner key at fault.
    fn deserialize<T: DeserializeOwned>(&self, path: &str, v: Value) -> Result<T, Error> {
        let json = serde_json::to_value(&v).map_err(|e| self.ctx.err(path, e.to_string()))?;
        serde_path_to_error::deserialize::<_, T>(json).map_err(|e| {
            let inner = e.path().to_string();
            let message = e.into_inner().to_string();
            let mut key = path.to_owned();
            if let Some(field) = unknown_field(&message) {
                key = join(&key, field);
            } else if !inner.is_empty() && inner != "." {
                key = join(&key, &inner);
            }
            self.ctx.err(&key, message)
        })
    }

    /// The tables of an array of tables `key` (`[[key]]`), with their paths.
    fn tables(&mut self, key: &str) -> Result<Vec<(String, toml::Table)>, Error> {
        match self.take(key) {
            None => Ok(vec![]),
            Some((path, Value::Array(items))) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Table(t) => Ok((format!("{path}[{i}]"), t)),
                    _ => Err(self.ctx.err(&format!("{path}[{i}]"), "expected a table")),
                })
                .collect(),
            Some((path, _)) => Err(self.ctx.err(
                &path,
                format!("expected an array of tables: write [[{path}]] for each"),
            )),
        }
    }

    /// Refuse what was not read: the unknown key on the earliest line.
    fn finish(&self) -> Result<(), Error> {
        let first = self
            .table
            .keys()
            .map(|k| {
                let path = self.key_path(k);
                (line_of_key(self.ctx.src, &path), path, k.clone())
            })
            .min();
        match first {
            None => Ok(()),
            Some((_, path, k)) => Err(self.ctx.err(&path, format!("unknown key `{k}`"))),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else if key.starts_with('[') {
        format!("{path}{key}")
    } else {
        format!("{path}.{key}")
    }
}

/// The field named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests;
