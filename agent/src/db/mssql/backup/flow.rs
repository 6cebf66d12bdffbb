//! One native backup job from checks to outcome (the steps are listed in the
//! module docs of [`super`]).

use std::path::Path;
use std::sync::Arc;

use baton_proto::{DumpSpec, JobResult, JobSpec};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json, json};
use tiberius::ToSql;
use tokio::time::Instant;
use tracing::{info, warn};

use super::files::{self, Layout};
use super::manifest::{self, Manifest, Verdict};
use super::sql::{self, DatabaseState, ServerInfo};
use super::{Error, Stop, progress};
use crate::db::common::paths::{DumpName, safe_component};
use crate::db::common::report::{self, Kind};
use crate::db::common::retention;
use crate::db::mssql::connection::{MssqlClient, MssqlConnection};
use crate::db::mssql::{Connections, failure};
use crate::executor::stop::Stopper;
use crate::executor::{Job, Outcome};

/// What a verified backup left in its directory, before the manifest.
struct Produced {
    size: u64,
    sha256: Result<String, String>,
    verdict: Verdict,
    finished: DateTime<Utc>,
    /// From start to end of the verification, on the monotonic clock.
    elapsed: std::time::Duration,
}

struct Run<'a> {
    job: &'a Job,
    conn: &'a MssqlConnection,
    database: &'a str,
    stop: Stopper,
    result: JobResult,
    /// `{attention_sent, acknowledged}` once a request was cancelled.
    cancel: Option<Json>,
}

/// Run one backup job.
pub(super) async fn run(connections: Arc<Connections>, job: Job) -> Outcome {
    let JobSpec::Dump(DumpSpec {
        connection,
        database,
        ..
    }) = &job.spec
    else {
        let kind = job.spec.kind();
        return Outcome::failed(false, format!("a backup executor got a {kind} job"));
    };
    let conn = match connections.get(connection) {
        Ok(c) => c,
        Err(e) => return Outcome::failed(false, e),
    };
    let mut run = Run {
        job: &job,
        conn,
        database,
        stop: Stopper::new(job.cancel.clone(), job.timeout.map(|t| Instant::now() + t)),
        result: JobResult::default(),
        cancel: None,
    };
    match run.go().await {
        Ok(()) => Outcome::succeeded(run.result),
        Err(e) => run.failed(e),
    }
}

impl Run<'_> {
    /// Publish progress and add the line to the log tail.
    fn note(&self, percent: Option<f32>, message: String) {
        report::note(&self.job.progress, percent, message);
    }

    fn failed(mut self, e: Error) -> Outcome {
        let mut data = Map::new();
        if let Some(error) = e.server_error() {
            data.insert("error".into(), error.clone());
        }
        if let Some(cancel) = self.cancel.take() {
            data.insert("cancel".into(), cancel);
        }
        if !data.is_empty() {
            self.result.data = Some(Json::Object(data));
        }
        match e {
            Error::Stopped(stop) => report::stopped(Kind::Backup, stop, self.job, self.result),
            e => report::failed(Kind::Backup, e.retryable(), &e, self.job, self.result),
        }
    }

    /// The value of a request that ran to its end; after a stop, the
    /// ATTENTION (the request's future is gone, so the client is free).
    async fn settle<T>(
        &mut self,
        client: &mut MssqlClient,
        ended: Result<Result<T, Error>, Stop>,
    ) -> Result<T, Error> {
        match ended {
            Ok(r) => r,
            Err(stop) => {
                let acknowledged = super::attention_acknowledged(client).await;
                info!(
                    acknowledged,
                    "Sent an attention to stop the backup's request"
                );
                self.cancel = Some(json!({"attention_sent": true, "acknowledged": acknowledged}));
                Err(Error::Stopped(stop))
            }
        }
    }

    async fn go(&mut self) -> Result<(), Error> {
        let (conn, database) = (self.conn, self.database);
        if !safe_component(database) {
            return Err(Error::InvalidDatabase(database.to_owned()));
        }
        let root = conn
            .backup
            .dir
            .clone()
            .ok_or_else(|| Error::NoBackupDir(conn.name.clone()))?;
        let retry = self.job.retry_codes.clone();

        // The session: no command timeout, a backup may take hours.
        self.note(
            None,
            format!("connecting to {} to back up {database}", conn.name),
        );
        let mut client = self
            .stop
            .run(async { conn.connect_with(None).await.map_err(Error::Connect) })
            .await?;
        let ended = self.stop.until(sql::spid(&mut client, &retry)).await;
        let spid = self.settle(&mut client, ended).await?;
        let ended = self.stop.until(sql::server_info(&mut client, &retry)).await;
        let server = self.settle(&mut client, ended).await?;
        let ended = self
            .stop
            .until(sql::database_state(&mut client, database, &retry))
            .await;
        let state = match self.settle(&mut client, ended).await? {
            Some(s) if s.state.eq_ignore_ascii_case("ONLINE") => s,
            Some(s) => {
                return Err(Error::NotOnline {
                    database: database.to_owned(),
                    connection: conn.name.clone(),
                    state: s.state,
                });
            }
            None => {
                return Err(Error::NoDatabase {
                    database: database.to_owned(),
                    connection: conn.name.clone(),
                });
            }
        };

        let started = Utc::now();
        let clock = Instant::now();
        let layout = Layout::new(
            &root,
            &conn.name,
            database,
            DumpName {
                started,
                job_id: self.job.job_id,
            },
            files::BAK,
        )?;
        files::create_dir(&layout.dir)?;
        let produced = self
            .produce(&mut client, spid, &layout, &retry, clock)
            .await;
        drop(client);
        let produced = match produced {
            Ok(p) => p,
            Err(e) => {
                files::remove_unfinished(&layout.partial()).await;
                return Err(e);
            }
        };
        self.conclude(&layout, started, server, state, produced)
            .await
    }

    /// Backup, verify, hash and rename: a verified `.bak`, or an error (the
    /// caller removes the partial).
    async fn produce(
        &mut self,
        client: &mut MssqlClient,
        spid: i16,
        layout: &Layout,
        retry: &[i64],
        clock: Instant,
    ) -> Result<Produced, Error> {
        let partial = layout.partial();
        let partial_text = partial.display().to_string();
        self.back_up(client, spid, &partial_text, retry).await?;
        let verdict = self.verify(client, &partial_text, retry).await?;
        let finished = Utc::now();
        let elapsed = clock.elapsed();
        let (size, sha256) = self.hash(&partial).await?;
        files::finish(&partial, &layout.finished(), &layout.dir)?;
        Ok(Produced {
            size,
            sha256,
            verdict,
            finished,
            elapsed,
        })
    }

    /// B3, with the progress poll beside it.
    async fn back_up(
        &mut self,
        client: &mut MssqlClient,
        spid: i16,
        partial_text: &str,
        retry: &[i64],
    ) -> Result<(), Error> {
        let (conn, database) = (self.conn, self.database);
        self.note(
            Some(0.0),
            format!("backing up {database} to {partial_text}"),
        );
        info!(connection = %conn.name, database, spid, file = %partial_text, "Backup started");
        let statement = sql::backup_statement(conn.backup.compression);
        let progress = self.job.progress.clone();
        let ended = self
            .stop
            .until(async {
                let params: [&dyn ToSql; 2] = [&database, &partial_text];
                let backup = client.execute(statement, &params);
                let poll = progress::poll(conn, spid, database, progress);
                tokio::select! {
                    r = backup => r.map(drop).map_err(|e| sql::server(&e, retry)),
                    never = poll => match never {},
                }
            })
            .await;
        self.settle(client, ended).await?;
        self.note(Some(100.0), progress::message(database, 100.0));
        Ok(())
    }

    /// B5, always.
    async fn verify(
        &mut self,
        client: &mut MssqlClient,
        partial_text: &str,
        retry: &[i64],
    ) -> Result<Verdict, Error> {
        self.note(Some(100.0), "verifying the backup".into());
        let ended = self
            .stop
            .until(async {
                let params: [&dyn ToSql; 1] = [&partial_text];
                client
                    .execute(sql::VERIFY, &params)
                    .await
                    .map(drop)
                    .map_err(|e| Error::Verify(failure::classify(&e, retry)))
            })
            .await;
        self.settle(client, ended).await?;
        Ok(Verdict {
            ok: true,
            message: "RESTORE VERIFYONLY … WITH CHECKSUM: the backup set is valid".into(),
        })
    }

    /// The file, as the agent sees it: its size and sha256 (or why not).
    async fn hash(&mut self, partial: &Path) -> Result<(u64, Result<String, String>), Error> {
        let partial_text = partial.display().to_string();
        let size = match std::fs::metadata(partial) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Setup(format!(
                    "SQL Server wrote and verified {partial_text}, but this agent cannot see \
                     that file: backup_dir of connection {} must be the same directory for SQL \
                     Server and the agent",
                    self.conn.name
                )));
            }
            Err(e) => return Err(Error::io(format!("cannot stat {partial_text}"), e)),
        };
        self.note(Some(100.0), "computing the backup's sha256".into());
        let hashed = {
            let path = partial.to_path_buf();
            self.stop
                .run(async {
                    Ok::<_, Error>(
                        tokio::task::spawn_blocking(move || files::sha256_file(&path)).await,
                    )
                })
                .await?
        };
        let sha256 = match hashed {
            Ok(Ok(h)) => Ok(h),
            Ok(Err(e)) => {
                warn!(file = %partial_text, error = %e, "Cannot read the backup to hash it");
                Err(format!("the agent cannot read the file: {e}"))
            }
            Err(e) => Err(format!("hashing failed: {e}")),
        };
        Ok((size, sha256))
    }

    /// Manifest, result, retention.
    async fn conclude(
        &mut self,
        layout: &Layout,
        started: DateTime<Utc>,
        server: ServerInfo,
        state: DatabaseState,
        produced: Produced,
    ) -> Result<(), Error> {
        let (conn, database) = (self.conn, self.database);
        let backup = layout.finished();
        let manifest = self.manifest(layout, started, server, state, produced);
        let manifest_path = match report::write_manifest(layout, &manifest).await {
            Ok(path) => path,
            Err(e) => {
                // A backup without its manifest is not a finished one.
                files::remove_unfinished(&backup).await;
                return Err(match e {
                    report::Error::Write { path, source } => {
                        Error::io(format!("cannot write {}", path.display()), source)
                    }
                    report::Error::Encode(e) => {
                        Error::Setup(format!("cannot encode the manifest: {e}"))
                    }
                    report::Error::Task(e) => {
                        Error::Setup(format!("the manifest writer failed: {e}"))
                    }
                });
            }
        };
        self.result.data = Some(manifest::result_data(&manifest, &backup, &manifest_path));
        let summary = format!(
            "backed up {database} on {} into {} ({} bytes, verified) in {:.1} s",
            conn.name,
            backup.display(),
            manifest.size_bytes,
            manifest.duration_ms as f64 / 1000.0
        );
        info!(
            connection = %conn.name,
            database,
            file = %backup.display(),
            bytes = manifest.size_bytes,
            sha256 = manifest.sha256.as_deref().unwrap_or("-"),
            "Backup written and verified"
        );
        self.result.stdout = format!("{summary}\n");
        self.note(Some(100.0), summary);
        let settings = &conn.backup;
        let deleted =
            retention::after_success(files::BAK, layout, settings.keep_last, settings.max_age)
                .await;
        if !deleted.is_empty() {
            self.note(
                Some(100.0),
                format!("retention deleted {}", deleted.join(", ")),
            );
        }
        Ok(())
    }

    /// The manifest of a verified backup.
    fn manifest(
        &self,
        layout: &Layout,
        started: DateTime<Utc>,
        server: ServerInfo,
        state: DatabaseState,
        produced: Produced,
    ) -> Manifest {
        let (conn, job) = (self.conn, self.job);
        let duration_ms = u64::try_from(produced.elapsed.as_millis()).unwrap_or(u64::MAX);
        let (sha256, sha256_error) = match produced.sha256 {
            Ok(h) => (Some(h), None),
            Err(e) => (None, Some(e)),
        };
        Manifest {
            format: manifest::FORMAT,
            kind: manifest::KIND.into(),
            file: layout.file_name(files::BAK_SUFFIX),
            connection: conn.name.clone(),
            database: self.database.to_owned(),
            recovery_model: state.recovery_model,
            server,
            size_bytes: produced.size,
            sha256,
            sha256_error,
            started_at: started,
            finished_at: produced.finished,
            duration_ms,
            compression: conn.backup.compression,
            checksum: true,
            copy_only: true,
            verify: produced.verdict,
            job_id: job.job_id,
            attempt: job.attempt,
            token: job.token,
        }
    }
}
