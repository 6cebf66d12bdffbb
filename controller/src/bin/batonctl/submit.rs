//! Building a [`JobSubmit`]: from flags, or from a JSON/TOML job file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use baton_proto::schedule::JobTemplate;
use baton_proto::spec_errors::refine_value;
use baton_proto::{
    CommandSpec, DumpSpec, JobKind, JobSpec, JobState, JobSubmit, NoopSpec, RetryPolicy,
    SessionValue, SqlSpec,
};
use clap::Args;

use crate::client::usage;

/// Group used when `--group` is not given.
pub const DEFAULT_GROUP: &str = "default";

/// `batonctl submit` flags.
#[derive(Debug, Default, Clone, Args)]
pub struct SubmitArgs {
    /// Read the whole job (a JobSubmit) from a .json or .toml file; `-` reads JSON on stdin.
    /// Common flags (--group, --priority, --max-attempts, --timeout, --lease-ttl, --label)
    /// override the file.
    #[arg(short = 'f', long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Worker group that runs the job [default: default].
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
    /// What to run and how (kind flags and common flags).
    #[command(flatten)]
    pub job: JobArgs,
    /// Make the submission idempotent: the same key and body return the same job.
    #[arg(long, value_name = "K")]
    pub idempotency_key: Option<String>,
    /// Accept the job even though no enrolled agent of the group advertises its
    /// connection (or none serves the group) yet, e.g. for an agent not enrolled yet.
    #[arg(long)]
    pub allow_unplaced: bool,
    /// Wait until the job is finished, print it, and exit 0 only if it succeeded;
    /// prints why the job is blocked (stderr) when it is and whenever that changes.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (exit 1); with --wait.
    #[arg(long, value_name = "DURATION", requires = "wait", value_parser = parse_duration_ms)]
    pub wait_timeout: Option<u64>,
}

/// The flags that describe a job without its group: the kind flags (which
/// conflict with a `file` argument of the command that flattens them) and
/// the common flags. Shared by `submit` and `schedule create`.
#[derive(Debug, Default, Clone, Args)]
pub struct JobArgs {
    /// Job kind: command, noop, sql, dump (procedure only through --file) [default: command].
    #[arg(long, value_name = "KIND", value_parser = parse_kind, conflicts_with = "file")]
    pub kind: Option<JobKind>,
    /// Program to run (command jobs); its arguments follow `--`.
    #[arg(long, value_name = "P", conflicts_with = "file")]
    pub program: Option<String>,
    /// Program arguments (command jobs), after `--`.
    #[arg(last = true, value_name = "ARGS", conflicts_with = "file")]
    pub args: Vec<String>,
    /// Environment variable for the program (command jobs), repeatable; the
    /// agent refuses names missing from its `[command] allow_env`.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_key_value, conflicts_with = "file")]
    pub env: Vec<(String, String)>,
    /// Working directory on the agent host (command jobs).
    #[arg(long, value_name = "DIR", conflicts_with = "file")]
    pub workdir: Option<String>,
    /// How long a noop job waits (e.g. 2s, 500ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms, conflicts_with = "file")]
    pub sleep: Option<u64>,
    /// Connection name configured on the agent (sql and dump jobs).
    #[arg(long, value_name = "C", conflicts_with = "file")]
    pub connection: Option<String>,
    /// SQL batch to run (sql jobs).
    #[arg(long, value_name = "TEXT", conflicts_with = "file")]
    pub sql: Option<String>,
    /// Database to dump (dump jobs).
    #[arg(long, value_name = "D", conflicts_with = "file")]
    pub database: Option<String>,
    /// Run the SQL batch inside a transaction with the run ledger (sql jobs).
    #[arg(long, conflicts_with = "file")]
    pub exactly_once: bool,
    /// Restore the dump into a scratch database and compare checksums (dump jobs).
    #[arg(long, conflicts_with = "file")]
    pub verify: bool,
    /// Priority; higher runs first [default: 0].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Attempts allowed in total (1 = no retry) [default: 3].
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Execution timeout, measured by the agent (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    pub timeout: Option<u64>,
    /// Lease TTL (e.g. 15s; floor 2s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    pub lease_ttl: Option<u64>,
    /// Label for filtering, repeatable.
    #[arg(long = "label", value_name = "K=V", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// Session setting applied before the call or batch (procedure and sql
    /// jobs; with --file too, over the file's `session`), repeatable:
    /// `time_zone=+00:00`, `timestamp=2026-11-26T00:00:00Z`, `DATEFORMAT=dmy`.
    #[arg(long = "session", value_name = "K=V", value_parser = parse_key_value)]
    pub session: Vec<(String, String)>,
}

/// Parse `k=v` (the value may hold `=`; the key may not be empty).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        Some(_) => Err(format!("`{s}`: the key before `=` is empty")),
        None => Err(format!("`{s}`: expected KEY=VALUE")),
    }
}

/// Parse a human duration (`30s`, `1m30s`, `500ms`) into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}`: {e} (examples: 500ms, 30s, 5m, 1h)"))?;
    u64::try_from(d.as_millis()).map_err(|_| format!("`{s}`: too long"))
}

/// Parse a job kind name.
pub fn parse_kind(s: &str) -> Result<JobKind, String> {
    JobKind::parse(s.trim()).ok_or_else(|| {
        let all: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown kind `{s}` (expected one of: {})", all.join(", "))
    })
}

/// Parse a job state name.
pub fn parse_state(s: &str) -> Result<JobState, String> {
    JobState::parse(s.trim()).ok_or_else(|| {
        let all: Vec<&str> = JobState::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown state `{s}` (expected one of: {})", all.join(", "))
    })
}

fn procedure_needs_file() -> anyhow::Error {
    usage("procedure jobs can only be submitted with --file (a JSON or TOML JobSubmit)")
}

/// Collect `k=v` pairs into a map, refusing a key given twice.
pub fn to_map(pairs: &[(String, String)], what: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for (k, v) in pairs {
        if map.insert(k.clone(), v.clone()).is_some() {
            return Err(usage(format!("{what} `{k}` given twice")));
        }
    }
    Ok(map)
}

impl JobArgs {
    /// Whether any kind flag (what to run) was given.
    pub fn any_kind_flag(&self) -> bool {
        self.kind.is_some() || self.kind_flags().iter().any(|(_, given, _)| *given)
    }

    /// Whether any common flag (priority, attempts, timeouts, labels) was given.
    pub fn any_common_flag(&self) -> bool {
        self.priority.is_some()
            || self.max_attempts.is_some()
            || self.timeout.is_some()
            || self.lease_ttl.is_some()
            || !self.labels.is_empty()
            || !self.session.is_empty()
    }

    /// The flags that only make sense for some kinds, with whether each was given.
    fn kind_flags(&self) -> [(&'static str, bool, &'static [JobKind]); 10] {
        use JobKind::*;
        [
            ("--program", self.program.is_some(), &[Command]),
            ("arguments after --", !self.args.is_empty(), &[Command]),
            ("--env", !self.env.is_empty(), &[Command]),
            ("--workdir", self.workdir.is_some(), &[Command]),
            ("--sleep", self.sleep.is_some(), &[Noop]),
            ("--connection", self.connection.is_some(), &[Sql, Dump]),
            ("--sql", self.sql.is_some(), &[Sql]),
            ("--exactly-once", self.exactly_once, &[Sql]),
            ("--verify", self.verify, &[Dump]),
            ("--database", self.database.is_some(), &[Dump]),
        ]
    }

    /// The spec described by the kind flags.
    pub fn spec_from_flags(&self) -> Result<JobSpec> {
        let kind = self.kind.unwrap_or(JobKind::Command);
        if kind == JobKind::Procedure {
            return Err(procedure_needs_file());
        }
        for (flag, given, kinds) in self.kind_flags() {
            if given && !kinds.contains(&kind) {
                return Err(usage(format!("{flag} does not apply to {kind} jobs")));
            }
        }
        let required = |v: &Option<String>, flag: &str| -> Result<String> {
            v.clone()
                .ok_or_else(|| usage(format!("{flag} is required for {kind} jobs")))
        };
        Ok(match kind {
            JobKind::Command => JobSpec::Command(CommandSpec {
                program: required(&self.program, "--program")?,
                args: self.args.clone(),
                env: to_map(&self.env, "environment variable")?,
                working_dir: self.workdir.clone(),
            }),
            JobKind::Noop => JobSpec::Noop(NoopSpec {
                sleep_ms: self.sleep.unwrap_or(0),
            }),
            JobKind::Sql => JobSpec::Sql(SqlSpec {
                connection: required(&self.connection, "--connection")?,
                sql: required(&self.sql, "--sql")?,
                exactly_once: self.exactly_once,
                session: Default::default(),
            }),
            JobKind::Dump => JobSpec::Dump(DumpSpec {
                connection: required(&self.connection, "--connection")?,
                database: required(&self.database, "--database")?,
                verify: self.verify,
            }),
            JobKind::Procedure => return Err(procedure_needs_file()),
            JobKind::Export => {
                return Err(usage(
                    "export jobs can only be submitted with --file (a JSON or TOML JobSubmit)",
                ));
            }
            JobKind::Restore => {
                return Err(usage(
                    "restore jobs can only be submitted with --file (a JSON or TOML JobSubmit)",
                ));
            }
            JobKind::Upload => {
                return Err(usage(
                    "upload jobs can only be submitted with --file (a JSON or TOML JobSubmit) \
                     or as a pipeline step",
                ));
            }
        })
    }

    /// Apply the common flags on top of `job`.
    pub fn apply_common(&self, job: &mut JobTemplate) -> Result<()> {
        if let Some(p) = self.priority {
            job.priority = p;
        }
        if let Some(n) = self.max_attempts {
            if n == 0 {
                return Err(usage("--max-attempts must be at least 1"));
            }
            job.retry.max_attempts = n;
        }
        if let Some(t) = self.timeout {
            job.timeout_ms = Some(t);
        }
        if let Some(t) = self.lease_ttl {
            job.lease_ttl_ms = Some(t);
        }
        for (k, v) in to_map(&self.labels, "label")? {
            job.labels.insert(k, v);
        }
        let settings = to_map(&self.session, "session setting")?;
        if !settings.is_empty() {
            let kind = job.spec.kind();
            let session = match &mut job.spec {
                JobSpec::Procedure(p) => &mut p.session,
                JobSpec::Sql(s) => &mut s.session,
                _ => {
                    return Err(usage(format!(
                        "--session applies to procedure and sql jobs, not {kind} jobs"
                    )));
                }
            };
            for (k, v) in settings {
                // As text: the controller and the agent read numbers in it.
                session.insert(k, SessionValue::Text(v));
            }
        }
        Ok(())
    }

    /// The template described by the kind flags, with the common flags applied.
    pub fn template_from_flags(&self) -> Result<JobTemplate> {
        let mut job = JobTemplate {
            spec: self.spec_from_flags()?,
            priority: 0,
            retry: RetryPolicy::default(),
            timeout_ms: None,
            lease_ttl_ms: None,
            labels: BTreeMap::new(),
        };
        self.apply_common(&mut job)?;
        Ok(job)
    }
}

impl SubmitArgs {
    /// The job to submit: from `--file` (read through `stdin` for `-`) or from the flags.
    pub fn build(&self, stdin: &mut dyn std::io::Read) -> Result<JobSubmit> {
        let (template, file_group, file_unplaced) = match &self.file {
            Some(path) => {
                let submit = read_job_file(path, stdin)?;
                let group = submit.group.clone();
                let unplaced = submit.allow_unplaced;
                let mut template = JobTemplate::from(submit);
                self.job.apply_common(&mut template)?;
                (template, Some(group), unplaced)
            }
            None => (self.job.template_from_flags()?, None, false),
        };
        let group = self
            .group
            .clone()
            .or(file_group)
            .unwrap_or_else(|| DEFAULT_GROUP.to_owned());
        let mut job = template.submit(&group);
        job.allow_unplaced = self.allow_unplaced || file_unplaced;
        Ok(job)
    }
}

/// Read a JobSubmit from `path`: TOML for `.toml`, JSON for `.json` and for `-` (stdin).
pub fn read_job_file(path: &Path, stdin: &mut dyn std::io::Read) -> Result<JobSubmit> {
    let shown = path.display().to_string();
    if path.as_os_str() == "-" {
        let mut text = String::new();
        stdin
            .read_to_string(&mut text)
            .map_err(|e| usage(format!("cannot read the job from stdin: {e}")))?;
        return parse_job_json("<stdin>", &text);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let parse: fn(&str, &str) -> Result<JobSubmit> = match ext.as_deref() {
        Some("json") => parse_job_json,
        Some("toml") => parse_job_toml,
        _ => {
            return Err(usage(format!(
                "job file {shown}: unknown extension (use .json or .toml, or - for JSON on stdin)"
            )));
        }
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read job file {shown}: {e}")))?;
    parse(&shown, &text)
}

/// Parse a JSON JobSubmit, naming the field at fault.
pub fn parse_job_json(name: &str, text: &str) -> Result<JobSubmit> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, JobSubmit>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let refined = serde_json::from_str(text)
            .ok()
            .and_then(|root| refine_value(&root, &path));
        match refined {
            Some((path, message)) => usage(format!("job file {name}: {path}: {message}")),
            None if path.is_empty() || path == "." => usage(format!("job file {name}: {inner}")),
            None => usage(format!("job file {name}: {path}: {inner}")),
        }
    })
}

/// Parse a TOML JobSubmit, naming the line and key at fault.
pub fn parse_job_toml(name: &str, text: &str) -> Result<JobSubmit> {
    baton_proto::config::parse_toml::<JobSubmit>(name, text).map_err(|e| {
        // A spec is tagged by `kind`, so serde names only `spec`: name the
        // field inside it as the JSON path does.
        let refined = toml::from_str::<toml::Value>(text)
            .ok()
            .and_then(|v| serde_json::to_value(v).ok())
            .and_then(|root| refine_value(&root, &e.key));
        let (key, message) = refined.unwrap_or_else(|| (e.key.clone(), e.message.clone()));
        let mut msg = format!("job file {name}");
        if let Some(line) = e.line {
            msg.push_str(&format!(", line {line}"));
        }
        if !key.is_empty() {
            msg.push_str(&format!(", key `{key}`"));
        }
        msg.push_str(": ");
        msg.push_str(message.trim());
        usage(msg)
    })
}

/// An idempotency key for a submit that gave none (`batonctl-` and 128
/// random bits in hex): a repeat on another controller returns the same job.
pub fn auto_key() -> String {
    format!("batonctl-{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests;
