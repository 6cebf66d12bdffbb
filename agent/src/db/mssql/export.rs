//! The `export` kind on SQL Server connections: the query is sent with its
//! parameters bound (`@P1`, `@P2`, ... through `sp_executesql`, tiberius's
//! `Query`), and its first result set is read item by item from tiberius's
//! `QueryStream` (nothing buffered) into an
//! [`ExportFile`]. Values are those of
//! [`super::value::to_json`]: decimals and money exact text, binary base64,
//! dates and times as `sqlcmd` prints them, uniqueidentifier upper-case,
//! NULL null.
//!
//! Further result sets are read and dropped (a warning in the manifest). A
//! statement without a result set fails for good. A cancel, the lease loss
//! or the timeout drops the file (its `.partial` is removed), sends a TDS
//! ATTENTION and drops the connection (one per job, never reused).
//!
//! Files go to `<state_dir>/exports/<connection>/<prefix>/`; retention uses
//! the connection's `keep_last` / `max_age`; the free-space reserve is the
//! dumps' default (64 MiB).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use baton_proto::{ExportSpec, JobKind, JobResult, JobSpec};
use futures_util::TryStreamExt;
use serde_json::Value as Json;
use tiberius::{ColumnData, Query, QueryItem};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::exec::{self, Client};
use super::{Connections, failure, params, value};
use crate::db::common::export::{self, Column, ExportFile, Finished, Target};
use crate::db::common::space;
use crate::executor::stop;
use crate::executor::{BoxFuture, Executor, Job, Outcome};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file.
    #[error(transparent)]
    File(#[from] export::Error),
    /// The spec, the connection, the driver or the server.
    #[error(transparent)]
    Db(#[from] exec::Error),
}

impl From<tiberius::error::Error> for Error {
    fn from(e: tiberius::error::Error) -> Self {
        Error::Db(exec::Error::Tds(e))
    }
}

/// Runs `export` jobs on this agent's SQL Server connections.
#[derive(Debug, Clone)]
pub struct ExportExecutor {
    connections: Arc<Connections>,
    root: PathBuf,
}

impl ExportExecutor {
    /// Exports to `<state_dir>/exports`.
    pub fn new(connections: Arc<Connections>, state_dir: &Path) -> Self {
        ExportExecutor {
            connections,
            root: state_dir.join("exports"),
        }
    }

    async fn run(&self, job: Job) -> Outcome {
        let JobSpec::Export(spec) = &job.spec else {
            return fail(
                exec::Error::Invalid("not an export job".into()).into(),
                &job,
            );
        };
        let (config, target, bound) = match self.prepare(spec) {
            Ok(p) => p,
            Err(e) => return fail(e.into(), &job),
        };
        let deadline = job.timeout.map(|t| Instant::now() + t);
        let opened =
            stop::open_unless_stopped(&job, &spec.connection, deadline, exec::open(config));
        let (mut client, spid) = match opened.await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return fail(e.into(), &job),
            Err(stopped) => return stopped,
        };
        debug!(connection = %spec.connection, session = spid, "SQL Server session opened for an export");
        let ended = {
            let fut = stream(&mut client, spec, bound, &target, &job);
            stop::work_or_stop(&job, deadline, fut).await
            // A stopped export's future (and its file) is dropped here: the
            // `.partial` is removed.
        };
        match ended {
            Ok(Ok(done)) => {
                exec::close(client).await;
                succeeded(&done)
            }
            Ok(Err(e)) => {
                drop(client);
                fail(e, &job)
            }
            Err(stop) => {
                let report = exec::attention(&mut client, spid, stop).await;
                drop(client);
                warn!(reason = stop.word(), "Export stopped; its file removed");
                stop::stopped_with(stop, &job, JobResult::default(), report.text())
            }
        }
    }

    /// The connection, where the file goes and the bound values.
    fn prepare<'a>(
        &'a self,
        spec: &ExportSpec,
    ) -> Result<
        (
            &'a super::connection::MssqlConnection,
            Target,
            Vec<ColumnData<'static>>,
        ),
        exec::Error,
    > {
        let config = self
            .connections
            .get(&spec.connection)
            .map_err(exec::Error::Config)?;
        let bound = spec
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                params::bind(p, None)
                    .map_err(|e| exec::Error::Invalid(format!("spec.params[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let target = Target {
            root: self.root.clone(),
            connection: config.name.clone(),
            keep_last: config.backup.keep_last,
            max_age: config.backup.max_age,
            reserve: space::MARGIN,
        };
        Ok((config, target, bound))
    }
}

impl Executor for ExportExecutor {
    fn kind(&self) -> JobKind {
        JobKind::Export
    }

    fn available(&self) -> bool {
        !self.connections.is_empty()
    }

    fn handles(&self, spec: &JobSpec) -> bool {
        self.connections.handles(spec)
    }

    fn execute(&self, job: Job) -> BoxFuture<'_, Outcome> {
        Box::pin(self.run(job))
    }
}

/// Run the query and write its first result set.
async fn stream(
    client: &mut Client,
    spec: &ExportSpec,
    bound: Vec<ColumnData<'static>>,
    target: &Target,
    job: &Job,
) -> Result<Finished, Error> {
    let mut query = Query::new(spec.query.as_str());
    for value in bound {
        query.bind(value);
    }
    let mut stream = query.query(client).await?;
    let mut file: Option<ExportFile> = None;
    let mut extra_sets = false;
    let mut values: Vec<Json> = Vec::new();
    while let Some(item) = stream.try_next().await? {
        match item {
            QueryItem::Metadata(meta) if meta.result_index() == 0 => {
                let columns = meta
                    .columns()
                    .iter()
                    .map(|c| Column {
                        name: c.name().to_owned(),
                        kind: value::type_name(c.column_type()).to_owned(),
                    })
                    .collect();
                let created =
                    ExportFile::create(target, spec, job.job_id, columns, job.progress.clone())
                        .await?;
                file = Some(created);
            }
            QueryItem::Metadata(_) => extra_sets = true,
            QueryItem::Row(row) if row.result_index() == 0 => {
                let Some(f) = file.as_mut() else { continue };
                values.clear();
                values.extend(row.into_iter().map(|v| value::to_json(&v)));
                f.push(&values).await?;
            }
            QueryItem::Row(_) => {}
        }
    }
    let Some(file) = file else {
        return Err(exec::Error::Invalid(
            "spec.query: the statement returned no result set (an export needs a query that \
             returns rows)"
                .into(),
        )
        .into());
    };
    let mut warnings = Vec::new();
    if extra_sets {
        warnings.push(
            "the query returned more than one result set: only the first was exported".to_owned(),
        );
    }
    Ok(file.finish(None, warnings, job.token).await?)
}

fn succeeded(done: &Finished) -> Outcome {
    Outcome::succeeded(JobResult {
        stdout: format!("{}\n", done.summary()),
        data: Some(done.data()),
        ..JobResult::default()
    })
}

fn fail(e: Error, job: &Job) -> Outcome {
    let (retryable, message) = match e {
        Error::File(f) => (f.retryable(), f.to_string()),
        Error::Db(d) => {
            let f = failure::classify_job(&d, &job.retry_codes);
            (f.retryable, f.message)
        }
    };
    warn!(retryable, error = %message, "Export failed");
    job.progress
        .append_output(format!("export failed: {message}\n").as_bytes());
    stop::failed(retryable, message, JobResult::default())
}

#[cfg(all(test, unix))]
mod tests;
