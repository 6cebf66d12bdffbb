//! `batonctl pipeline create --template …`: pipelines (and a schedule)
//! expanded here, in batonctl, into the ordinary pipeline and schedule API,
//! so the controller knows nothing of templates and a template's pipeline
//! is edited, applied and run like any other.
//!
//! `restore-drill` (issue 19 point 6; MySQL/MariaDB connections: the drop
//! step is MySQL SQL): prove that the newest dump in a store restores.
//! 1. `restore`: the newest `.sql.zst` under the prefix whose manifest
//!    exists, downloaded and its sha256 checked against the manifest, is
//!    restored into a scratch database (`baton_drill_<name>`, replaced if a
//!    previous drill left one) and its tables, rows and checksums compared
//!    with the manifest's figures (the restore job does all of it).
//! 2. `drop_scratch` (`on = "always"`, on the same agent): `DROP DATABASE IF
//!    EXISTS` the scratch database, whether the restore passed or not.
//!
//! The run is the report: it fails when the restore fails (a handler that
//! ran does not turn a run into a success), which sends the
//! `pipeline_failed` notification like any pipeline's; the restore step's
//! result data holds the figures compared.

use std::collections::BTreeMap;

use baton_proto::pipeline::{PipelineSpec, StepCondition, StepSpec};
use baton_proto::schedule::{self, Catchup, JobTemplate, Overlap, ScheduleSpec};
use baton_proto::{JobSpec, RestoreSource, RestoreSpec, RetryPolicy, SqlSpec};
use clap::{Args, ValueEnum};

/// Pipeline templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Template {
    /// Restore the newest backup of a store into a scratch database, compare
    /// it with its manifest, drop the scratch database.
    RestoreDrill,
}

/// The flags of `pipeline create --template`.
#[derive(Debug, Clone, Default, Args)]
pub struct TemplateArgs {
    /// Make the pipeline from this template instead of a file.
    #[arg(long, value_enum, value_name = "TEMPLATE")]
    pub template: Option<Template>,
    /// restore-drill: the MySQL/MariaDB connection restored into (a scratch database on it).
    #[arg(long, value_name = "C", requires = "template")]
    pub connection: Option<String>,
    /// restore-drill: the object store (`[stores.<name>]` on the agents) holding the backups.
    #[arg(long, value_name = "S", requires = "template")]
    pub store: Option<String>,
    /// restore-drill: key prefix under the store's prefix; the newest object under it
    /// is restored (default `<connection>/`, where uploads of that connection go).
    #[arg(long, value_name = "P", requires = "template")]
    pub prefix: Option<String>,
    /// Pipeline (and schedule) name (default `restore-drill-<connection>`).
    #[arg(long, value_name = "NAME", requires = "template")]
    pub name: Option<String>,
    /// Worker group of the steps (default `default`).
    #[arg(long, value_name = "G", requires = "template")]
    pub group: Option<String>,
    /// Also create a schedule running the pipeline on this cron (5 or 6 fields).
    #[arg(long, value_name = "CRON", requires = "template")]
    pub schedule: Option<String>,
    /// IANA time zone of --schedule (default UTC).
    #[arg(long, value_name = "TZ", requires = "schedule")]
    pub tz: Option<String>,
}

/// What a template expands to.
#[derive(Debug, Clone, PartialEq)]
pub struct Expanded {
    /// The pipeline.
    pub pipeline: PipelineSpec,
    /// Its schedule, with `--schedule`.
    pub schedule: Option<ScheduleSpec>,
    /// One line on what was made.
    pub summary: String,
}

/// The prefix of every drill's scratch database (grant ``ALL ON `baton\_drill\_%`.*``).
pub const SCRATCH_PREFIX: &str = "baton_drill_";

/// Expand the template `args` names; a usage error names the flag.
pub fn expand(args: &TemplateArgs) -> Result<Expanded, String> {
    match args.template {
        Some(Template::RestoreDrill) => restore_drill(args),
        None => Err("give --template or -f FILE".into()),
    }
}

/// The scratch database of the drill `name`: `baton_drill_` and the name
/// (without a `restore-drill-` in front) in `[a-z0-9_]`, at most 64 characters.
pub fn scratch_database(name: &str) -> String {
    let short = name.strip_prefix("restore-drill-").unwrap_or(name);
    let mut db: String = SCRATCH_PREFIX.to_owned();
    db.extend(short.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        }
    }));
    db.truncate(baton_proto::restore::MAX_DATABASE_LEN);
    db
}

fn restore_drill(args: &TemplateArgs) -> Result<Expanded, String> {
    let connection = args
        .connection
        .clone()
        .ok_or("--template restore-drill needs --connection C (where the scratch database goes)")?;
    let store = args
        .store
        .clone()
        .ok_or("--template restore-drill needs --store S (the store holding the backups)")?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("restore-drill-{connection}"));
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| format!("{connection}/"));
    let group = args.group.clone().unwrap_or_else(|| "default".into());
    let scratch = scratch_database(&name);
    let labels = BTreeMap::from([("template".to_owned(), "restore-drill".to_owned())]);
    let job = |spec: JobSpec, retry: RetryPolicy| JobTemplate {
        spec,
        priority: 0,
        retry,
        timeout_ms: None,
        lease_ttl_ms: None,
        labels: labels.clone(),
    };
    let restore = StepSpec {
        name: "restore".into(),
        depends_on: Vec::new(),
        on: StepCondition::Success,
        same_agent_as: None,
        group: None,
        job: job(
            JobSpec::Restore(RestoreSpec {
                connection: connection.clone(),
                source: RestoreSource {
                    store: Some(store.clone()),
                    key_prefix: Some(prefix.clone()),
                    ..RestoreSource::default()
                },
                database: scratch.clone(),
                replace: true,
            }),
            RetryPolicy::default(),
        ),
    };
    let drop_scratch = StepSpec {
        name: "drop_scratch".into(),
        depends_on: vec!["restore".into()],
        on: StepCondition::Always,
        same_agent_as: Some("restore".into()),
        group: None,
        job: job(
            JobSpec::Sql(SqlSpec {
                connection: connection.clone(),
                sql: format!("DROP DATABASE IF EXISTS `{scratch}`"),
                exactly_once: false,
                session: Default::default(),
            }),
            RetryPolicy::default(),
        ),
    };
    let pipeline = PipelineSpec {
        name: name.clone(),
        group,
        timeout_ms: None,
        steps: vec![restore, drop_scratch],
    };
    let schedule = args.schedule.as_ref().map(|cron| ScheduleSpec {
        name: name.clone(),
        group: None,
        cron: Some(cron.clone()),
        tz: args.tz.clone(),
        every_ms: None,
        anchor: None,
        between: None,
        start_at: None,
        end_at: None,
        jitter_ms: 0,
        overlap: Overlap::default(),
        catchup: Catchup::default(),
        catchup_window_ms: schedule::DEFAULT_CATCHUP_WINDOW_MS,
        catchup_cap: schedule::DEFAULT_CATCHUP_CAP,
        alert_after_ms: None,
        job: None,
        pipeline: Some(name.clone()),
        paused: false,
    });
    let summary = format!(
        "restore-drill: the newest backup under {prefix:?} in store {store} restored into \
         {scratch} on {connection} and compared with its manifest, then {scratch} dropped"
    );
    Ok(Expanded {
        pipeline,
        schedule,
        summary,
    })
}

#[cfg(test)]
mod tests;
