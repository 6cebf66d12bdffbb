//! One SQL Server restore job from checks to outcome (the steps of the
//! module docs of [`super`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use baton_proto::{JobResult, JobSpec, RestoreOrigin, RestoreSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use tiberius::ToSql;
use tokio::time::Instant;
use tracing::{info, warn};

use super::sql::{self, BackupFile, Move};
use super::{Error, Stop};
use crate::config::StoreConfig;
use crate::db::common::fetch::{self, Fetched};
use crate::db::common::report::{self, Kind};
use crate::db::common::source::{self, Located};
use crate::db::mssql::backup::sql::{DATABASE_STATE, int_column};
use crate::db::mssql::backup::{BAK_SUFFIX, manifest::KIND};
use crate::db::mssql::connection::{MssqlClient, MssqlConnection};
use crate::db::mssql::{Connections, failure};
use crate::executor::stop::Stopper;
use crate::executor::{Job, Outcome};

/// What a restore reads from a backup's manifest.
#[derive(Debug, Deserialize)]
struct BackupManifest {
    kind: String,
    database: String,
}

/// One restored table.
#[derive(Debug, Clone, Serialize)]
struct Table {
    name: String,
    rows: Option<u64>,
    /// Not computed on SQL Server (see the module docs).
    checksum: Option<String>,
}

/// What the job reports in `result.data`.
#[derive(Debug, Default, Serialize)]
struct Report {
    connection: String,
    database: String,
    replaced: bool,
    source: Json,
    files: Vec<Move>,
    tables: Vec<Table>,
    checksums: bool,
    tables_compared: usize,
    mismatches: Vec<String>,
    duration_ms: u64,
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel: Option<Json>,
}

struct Run<'a> {
    connections: &'a Connections,
    stores: &'a BTreeMap<String, StoreConfig>,
    job: &'a Job,
    spec: &'a RestoreSpec,
    conn: &'a MssqlConnection,
    stop: Stopper,
    report: Report,
    retry: Vec<i64>,
}

/// Run one restore job.
pub(super) async fn run(
    connections: Arc<Connections>,
    stores: Arc<BTreeMap<String, StoreConfig>>,
    job: Job,
) -> Outcome {
    let JobSpec::Restore(spec) = &job.spec else {
        let kind = job.spec.kind();
        return Outcome::failed(false, format!("a restore executor got a {kind} job"));
    };
    let conn = match connections.get(&spec.connection) {
        Ok(c) => c,
        Err(e) => return Outcome::failed(false, e),
    };
    let started = Instant::now();
    let mut run = Run {
        connections: &connections,
        stores: &stores,
        job: &job,
        spec,
        conn,
        stop: Stopper::new(job.cancel.clone(), job.timeout.map(|t| Instant::now() + t)),
        report: Report {
            connection: conn.name.clone(),
            database: spec.database.clone(),
            ..Report::default()
        },
        retry: job.retry_codes.clone(),
    };
    let ended = run.go().await;
    run.report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if let Err(e) = &ended {
        run.report.error = e.server_error().cloned();
    }
    let summary = ended.as_ref().ok().cloned();
    let result = JobResult {
        data: serde_json::to_value(&run.report).ok(),
        stdout: summary.map(|s| format!("{s}\n")).unwrap_or_default(),
        ..JobResult::default()
    };
    match ended {
        Ok(_) => Outcome::succeeded(result),
        Err(Error::Stopped(stop)) => report::stopped(Kind::Restore, stop, &job, result),
        Err(e) => report::failed(Kind::Restore, e.retryable(), &e, &job, result),
    }
}

impl Run<'_> {
    fn note(&self, message: String) {
        report::note(&self.job.progress, None, message);
    }

    fn server(&self, e: &tiberius::error::Error) -> Error {
        Error::Server(failure::classify(e, &self.retry))
    }

    async fn go(&mut self) -> Result<String, Error> {
        let database = self.spec.database.clone();
        if let Some(why) = baton_proto::restore::database_refusal(&database) {
            return Err(Error::Setup(format!("spec.database: {why}")));
        }
        let spec: &RestoreSpec = self.spec;
        let origin = spec
            .source
            .origin()
            .map_err(|(field, why)| Error::Setup(format!("spec.{field}: {why}")))?;
        let early = match origin {
            RestoreOrigin::File(file) => {
                let located = self.locate(file)?;
                let sha256 = self.manifest(&located).await?;
                Some((located, sha256))
            }
            RestoreOrigin::Object { .. } | RestoreOrigin::Latest { .. } => None,
        };
        self.note(format!(
            "connecting to {} to restore {database}",
            self.conn.name
        ));
        let mut client = self
            .stop
            .run(async { self.conn.connect_with(None).await.map_err(Error::Connect) })
            .await?;
        let exists = self.exists(&mut client).await?;
        // The download is removed when dropped (at the end, or on any
        // failure or stop).
        let (located, sha256, _download) = match early {
            Some((located, sha256)) => (located, sha256, None),
            None => {
                let fetched = self.fetch(origin).await?;
                let located = self.locate(&fetched.file.to_string_lossy())?;
                let sha256 = self.manifest(&located).await?;
                self.report.source["store"] = json!(fetched.store);
                self.report.source["key"] = json!(fetched.key);
                (located, sha256, Some(fetched))
            }
        };
        self.integrity(&located, &sha256).await?;
        let path = located.file.display().to_string();
        let moves = self.plan(&mut client, &path).await?;
        let restored = self.restore(&mut client, &path, &moves, exists).await;
        if let Err(e) = restored {
            drop(client);
            self.clean_up(exists).await;
            return Err(e);
        }
        self.report.replaced = exists;
        self.report.files = moves;
        self.figures(&mut client).await?;
        let text = format!(
            "restored {path} into {database} on {}{} ({} tables)",
            self.conn.name,
            if exists { " (replaced)" } else { "" },
            self.report.tables.len()
        );
        info!(connection = %self.conn.name, database = %database, file = %path, "Restore done");
        self.note(text.clone());
        Ok(text)
    }

    /// The object downloaded under the connection's `backup_dir` (SQL
    /// Server reads the file there) and verified.
    async fn fetch(&self, origin: RestoreOrigin<'_>) -> Result<Fetched, Error> {
        let root = self.conn.backup.dir.clone().ok_or_else(|| {
            Error::Setup(format!(
                "connection {} has no backup_dir: a restore from a store downloads the backup \
                 there (nothing was done)",
                self.conn.name
            ))
        })?;
        self.note("downloading the backup from the store".into());
        let job_id = self.job.job_id.to_string();
        let req = fetch::Request {
            origin,
            suffix: BAK_SUFFIX,
            root: &root,
            job_id: &job_id,
        };
        let fetched = self
            .stop
            .until(fetch::fetch(self.stores, req, |_| {}))
            .await??;
        self.note(format!(
            "downloaded {} from store {}, sha256 {} as its manifest says",
            fetched.key, fetched.store, fetched.sha256
        ));
        Ok(fetched)
    }

    /// A `.bak` under one of the agent's backup directories.
    fn locate(&self, file: &str) -> Result<Located, Error> {
        let roots: Vec<PathBuf> = self
            .connections
            .iter()
            .filter_map(|c| c.backup.dir.clone())
            .collect();
        Ok(source::locate(file, &roots, BAK_SUFFIX)?)
    }

    /// The manifest: a native backup's, with a sha256.
    async fn manifest(&mut self, located: &Located) -> Result<String, Error> {
        let (manifest, sha256): (BackupManifest, String) = source::read_manifest(located).await?;
        if manifest.kind != KIND {
            return Err(source::Error::BadManifest {
                path: located.manifest.display().to_string(),
                why: format!("it describes a {}, not a SQL Server backup", manifest.kind),
            }
            .into());
        }
        self.report.source = json!({
            "file": located.file.display().to_string(),
            "manifest": located.manifest.display().to_string(),
            "database": manifest.database,
            "sha256": sha256,
        });
        Ok(sha256)
    }

    /// The value of a request run to its end; after a stop, the ATTENTION.
    async fn settle<T>(
        &mut self,
        client: &mut MssqlClient,
        ended: Result<Result<T, Error>, Stop>,
    ) -> Result<T, Error> {
        match ended {
            Ok(r) => r,
            Err(stop) => {
                let acknowledged = crate::db::mssql::backup::attention_acknowledged(client).await;
                info!(
                    acknowledged,
                    "Sent an attention to stop the restore's request"
                );
                self.report.cancel =
                    Some(json!({"attention_sent": true, "acknowledged": acknowledged}));
                Err(Error::Stopped(stop))
            }
        }
    }

    /// B2: whether the target exists; refused without `replace`.
    async fn exists(&mut self, client: &mut MssqlClient) -> Result<bool, Error> {
        let database = self.spec.database.clone();
        let ended = self
            .stop
            .until(async {
                let stream = client
                    .query(DATABASE_STATE, &[&database])
                    .await
                    .map_err(|e| self.server(&e))?;
                let row = stream.into_row().await.map_err(|e| self.server(&e))?;
                Ok(row.is_some())
            })
            .await;
        let exists = self.settle(client, ended).await?;
        if exists && !self.spec.replace {
            return Err(Error::Exists {
                database,
                connection: self.conn.name.clone(),
            });
        }
        Ok(exists)
    }

    /// The file's sha256 against the manifest's.
    async fn integrity(&self, located: &Located, expected: &str) -> Result<(), Error> {
        self.note(format!("checking the sha256 of {}", located.file.display()));
        let actual = self
            .stop
            .until(source::sha256_file(&located.file, |_| {}))
            .await?
            .map_err(|e| Error::Io {
                what: format!("cannot read {}", located.file.display()),
                source: e,
            })?;
        Ok(source::matches(&located.file, expected, &actual)?)
    }

    /// R1 and R2: the backup's files and where they go.
    async fn plan(&mut self, client: &mut MssqlClient, path: &str) -> Result<Vec<Move>, Error> {
        let ended = self
            .stop
            .until(async {
                let params: [&dyn ToSql; 1] = [&path];
                let rows = client
                    .query(sql::FILELIST, &params)
                    .await
                    .map_err(|e| self.server(&e))?
                    .into_first_result()
                    .await
                    .map_err(|e| self.server(&e))?;
                let files: Vec<BackupFile> = rows
                    .iter()
                    .map(|r| BackupFile {
                        logical: sql::text(r, "LogicalName").unwrap_or_default(),
                        physical: sql::text(r, "PhysicalName").unwrap_or_default(),
                        kind: sql::text(r, "Type").unwrap_or_default(),
                    })
                    .collect();
                let paths = client
                    .simple_query(sql::DEFAULT_PATHS)
                    .await
                    .map_err(|e| self.server(&e))?
                    .into_row()
                    .await
                    .map_err(|e| self.server(&e))?;
                let data = paths.as_ref().and_then(|r| sql::text(r, "data_path"));
                let log = paths.as_ref().and_then(|r| sql::text(r, "log_path"));
                Ok((files, data, log))
            })
            .await;
        let (files, data, log) = self.settle(client, ended).await?;
        if files.is_empty() || files.iter().any(|f| f.logical.is_empty()) {
            return Err(Error::Reply(
                "RESTORE FILELISTONLY returned no files (or one without a LogicalName)".into(),
            ));
        }
        Ok(sql::plan_moves(
            &files,
            &self.spec.database,
            data.as_deref(),
            log.as_deref(),
        ))
    }

    /// R3.
    async fn restore(
        &mut self,
        client: &mut MssqlClient,
        path: &str,
        moves: &[Move],
        exists: bool,
    ) -> Result<(), Error> {
        let database = self.spec.database.clone();
        self.note(format!("restoring {path} into {database}"));
        let statement = sql::restore_statement(moves.len(), exists);
        let ended = self
            .stop
            .until(async {
                let mut params: Vec<&dyn ToSql> = vec![&database, &path];
                for m in moves {
                    params.push(&m.logical);
                    params.push(&m.physical);
                }
                client
                    .execute(statement, &params)
                    .await
                    .map(drop)
                    .map_err(|e| self.server(&e))
            })
            .await;
        self.settle(client, ended).await
    }

    /// After a failed or stopped restore: a new database is dropped (on a
    /// new connection); a replaced one is left as SQL Server left it.
    async fn clean_up(&mut self, existed: bool) {
        let database = self.spec.database.clone();
        if existed {
            self.report.warnings.push(format!(
                "the restore over the existing database {database} (replace = true) did not \
                 finish: SQL Server leaves it RESTORING; restore again"
            ));
            return;
        }
        let dropped = async {
            let mut client = self.conn.connect().await.map_err(Error::Connect)?;
            client
                .simple_query(sql::drop_statement(&database))
                .await
                .map_err(|e| self.server(&e))?
                .into_results()
                .await
                .map_err(|e| self.server(&e))?;
            Ok::<_, Error>(())
        };
        match tokio::time::timeout(std::time::Duration::from_secs(30), dropped).await {
            Ok(Ok(())) => self.note(format!("dropped the half-restored database {database}")),
            Ok(Err(e)) => self.drop_failed(&database, &e.to_string()),
            Err(_) => self.drop_failed(&database, "no answer in 30 s"),
        }
    }

    fn drop_failed(&mut self, database: &str, why: &str) {
        warn!(
            database,
            error = why,
            "Cannot drop the half-restored database; drop it by hand"
        );
        self.report.warnings.push(format!(
            "the half-restored database {database} could not be dropped: {why}; drop it by hand"
        ));
    }

    /// R4: tables and rows of the restored database.
    async fn figures(&mut self, client: &mut MssqlClient) -> Result<(), Error> {
        let statement = sql::figures_statement(&self.spec.database);
        let ended = self
            .stop
            .until(async {
                client
                    .simple_query(statement)
                    .await
                    .map_err(|e| self.server(&e))?
                    .into_first_result()
                    .await
                    .map_err(|e| self.server(&e))
            })
            .await;
        let rows = self.settle(client, ended).await?;
        self.report.tables = rows
            .iter()
            .map(|r| Table {
                name: format!(
                    "{}.{}",
                    sql::text(r, "schema_name").unwrap_or_default(),
                    sql::text(r, "table_name").unwrap_or_default()
                ),
                rows: int_column(r, 2).and_then(|n| u64::try_from(n).ok()),
                checksum: None,
            })
            .collect();
        self.report.warnings.push(
            "SQL Server backup manifests carry no table figures: tables and rows are reported, \
             nothing was compared (integrity: the file's sha256 and RESTORE … WITH CHECKSUM)"
                .into(),
        );
        Ok(())
    }
}
