//! The `export` kind on MySQL/MariaDB connections: the query runs on a
//! connection of the job's pool — the text protocol without parameters, a
//! prepared statement (binary protocol) with them, values always bound — and
//! its first result set is read row by row from the socket (mysql_async's
//! `QueryResult::next`, nothing buffered) into an
//! [`ExportFile`]. Values are those of
//! [`super::value::to_json`]: DECIMAL exact text, binary base64, DATE /
//! DATETIME / TIMESTAMP / TIME as the server prints them, NULL null.
//!
//! Further result sets are read and dropped (a warning in the manifest). A
//! statement without a result set fails for good. A cancel, the lease loss
//! or the timeout drops the file (its `.partial` is removed), kills the
//! query from a second connection ([`super::kill`]) and closes the job's
//! connection, never reused.
//!
//! Files go to `<state_dir>/exports/<connection>/<prefix>/`; the free-space
//! reserve is the connection's `dump_reserve_mb`, retention its `keep_last`
//! / `max_age` (the dump's settings).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use baton_proto::{ExportSpec, JobKind, JobResult, JobSpec};
use mysql_async::prelude::{Protocol, Queryable};
use mysql_async::{Conn, Params, QueryResult, Value};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Pools, failure, kill, value};
use crate::db::common::export::{self, Column, ExportFile, Finished, Target};
use crate::executor::stop::{self, Stop};
use crate::executor::{BoxFuture, Executor, Job, Outcome};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot run (parameters, no result set).
    #[error("{0}")]
    Invalid(String),
    /// The file.
    #[error(transparent)]
    File(#[from] export::Error),
    /// The driver, the server or the connection.
    #[error(transparent)]
    Db(#[from] super::Error),
}

impl From<mysql_async::Error> for Error {
    fn from(e: mysql_async::Error) -> Self {
        Error::Db(super::Error::Mysql(e))
    }
}

/// Runs `export` jobs on this agent's MySQL connections.
#[derive(Debug, Clone)]
pub struct ExportExecutor {
    pools: Arc<Pools>,
    root: PathBuf,
}

impl ExportExecutor {
    /// Exports to `<state_dir>/exports`.
    pub fn new(pools: Arc<Pools>, state_dir: &Path) -> Self {
        ExportExecutor {
            pools,
            root: state_dir.join("exports"),
        }
    }

    async fn run(&self, job: Job) -> Outcome {
        let JobSpec::Export(spec) = &job.spec else {
            return fail(Error::Invalid("not an export job".into()), &job);
        };
        let (target, params) = match self.prepare(spec) {
            Ok(p) => p,
            Err(e) => return fail(e, &job),
        };
        let deadline = job.timeout.map(|t| Instant::now() + t);
        let hold = self.pools.hold(&spec.connection);
        let held = match stop::open_unless_stopped(&job, &spec.connection, deadline, hold).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return fail(e.into(), &job),
            Err(stopped) => return stopped,
        };
        let super::pool::Held {
            mut conn,
            id,
            side,
            permit,
        } = held;
        debug!(connection = %spec.connection, session = id, "MySQL session taken for an export");
        let ended = {
            let fut = stream(&mut conn, spec, params, &target, &job);
            tokio::pin!(fut);
            stop::work_or_stop(&job, deadline, &mut fut).await
            // A stopped export's future (and its file) is dropped here: the
            // `.partial` is removed.
        };
        let outcome = match ended {
            Ok(Ok(done)) => {
                drop(conn);
                succeeded(&done)
            }
            Ok(Err(e)) => {
                super::close(conn).await;
                fail(e, &job)
            }
            Err(stop) => {
                let (side_conn, mut report) = kill::start(&side, id, stop.word()).await;
                super::close(conn).await;
                kill::finish(side_conn, &mut report).await;
                stopped(stop, &job, &report)
            }
        };
        drop(permit);
        outcome
    }

    /// Where the file goes and the bound values.
    fn prepare(&self, spec: &ExportSpec) -> Result<(Target, Vec<Value>), Error> {
        let config = self.pools.config(&spec.connection)?;
        let params = spec
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                value::bind(p).map_err(|e| Error::Invalid(format!("spec.params[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let target = Target {
            root: self.root.clone(),
            connection: config.name.clone(),
            keep_last: config.dump.keep_last,
            max_age: config.dump.max_age,
            reserve: config.dump.reserve_bytes,
        };
        Ok((target, params))
    }
}

impl Executor for ExportExecutor {
    fn kind(&self) -> JobKind {
        JobKind::Export
    }

    fn available(&self) -> bool {
        !self.pools.is_empty()
    }

    fn handles(&self, spec: &JobSpec) -> bool {
        spec.connection()
            .is_some_and(|c| self.pools.config(c).is_ok())
    }

    fn execute(&self, job: Job) -> BoxFuture<'_, Outcome> {
        Box::pin(self.run(job))
    }
}

/// Run the query and write its first result set.
async fn stream(
    conn: &mut Conn,
    spec: &ExportSpec,
    params: Vec<Value>,
    target: &Target,
    job: &Job,
) -> Result<Finished, Error> {
    let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
    if params.is_empty() {
        let result = conn.query_iter(spec.query.as_str()).await?;
        write_set(result, spec, target, job, version).await
    } else {
        let result = conn
            .exec_iter(spec.query.as_str(), Params::Positional(params))
            .await?;
        write_set(result, spec, target, job, version).await
    }
}

async fn write_set<P: Protocol>(
    mut result: QueryResult<'_, '_, P>,
    spec: &ExportSpec,
    target: &Target,
    job: &Job,
    version: Option<String>,
) -> Result<Finished, Error> {
    let cols = result.columns().unwrap_or_else(|| Arc::from(Vec::new()));
    if cols.is_empty() {
        return Err(Error::Invalid(
            "spec.query: the statement returned no result set (an export needs a query that \
             returns rows)"
                .into(),
        ));
    }
    let columns = cols
        .iter()
        .map(|c| Column {
            name: c.name_str().into_owned(),
            kind: value::type_name(c).to_owned(),
        })
        .collect();
    let mut file =
        ExportFile::create(target, spec, job.job_id, columns, job.progress.clone()).await?;
    let mut values = Vec::with_capacity(cols.len());
    while let Some(row) = result.next().await? {
        values.clear();
        values.extend(
            row.unwrap()
                .into_iter()
                .zip(cols.iter())
                .map(|(v, c)| value::to_json(v, c)),
        );
        file.push(&values).await?;
    }
    let mut warnings = Vec::new();
    if !result.is_empty() {
        result.drop_result().await?;
        warnings.push(
            "the query returned more than one result set: only the first was exported".to_owned(),
        );
    }
    Ok(file.finish(version, warnings, job.token).await?)
}

fn succeeded(done: &Finished) -> Outcome {
    let summary = done.summary();
    Outcome::succeeded(JobResult {
        stdout: format!("{summary}\n"),
        data: Some(done.data()),
        ..JobResult::default()
    })
}

fn fail(e: Error, job: &Job) -> Outcome {
    let (retryable, message) = match e {
        Error::Invalid(m) => (false, m),
        Error::File(f) => (f.retryable(), f.to_string()),
        Error::Db(d) => {
            let f = failure::classify(&d, &job.retry_codes);
            (f.retryable, f.message)
        }
    };
    warn!(retryable, error = %message, "Export failed");
    job.progress
        .append_output(format!("export failed: {message}\n").as_bytes());
    stop::failed(retryable, message, JobResult::default())
}

fn stopped(stop: Stop, job: &Job, report: &kill::KillReport) -> Outcome {
    warn!(reason = stop.word(), "Export stopped; its file removed");
    stop::stopped_with(stop, job, JobResult::default(), report.text())
}

#[cfg(all(test, unix))]
mod server_tests;
