//! One restore job from checks to outcome: [`Run::go`] calls one function
//! per numbered step of the module docs of [`super`].

use std::time::Duration;

use baton_proto::{JobResult, JobSpec, Progress, RestoreOrigin, RestoreSpec};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{info, warn};

use super::super::dump::client::{Client, Loaded, ident, literal};
use super::super::dump::defaults::{self, Flavor, PrivateDir};
use super::super::dump::manifest::Charset;
use super::super::dump::rewrite::DumpFilter;
use super::super::dump::stream::human_bytes;
use super::super::dump::verify::{self, ObjectCounts, Snapshot, TableFigures};
use super::super::dump::{self as dump_mod, messages};
use super::{Error, RestoreExecutor};
use crate::config::mysql::MysqlConnection;
use crate::db::common::fetch::{self, Fetched};
use crate::db::common::paths::{self, SQL_ZST_SUFFIX};
use crate::db::common::report::{self, Kind};
use crate::db::common::source::{self, Located};
use crate::executor::stop::Stopper;
use crate::executor::{Job, Outcome};

/// How long dropping a half-restored database may take (also after a stop).
const DROP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often progress is published while hashing and loading.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What a restore reads from a dump's manifest (other fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct DumpManifest {
    /// Set on SQL Server backups' manifests only.
    #[serde(default)]
    kind: Option<String>,
    database: String,
    #[serde(default)]
    charset: Option<Charset>,
    sha256_uncompressed: String,
    #[serde(default)]
    verify: Option<ManifestVerdict>,
}

/// The dump's restore check, as the manifest records it.
#[derive(Debug, Clone, Deserialize)]
struct ManifestVerdict {
    ok: bool,
    checksums: bool,
    objects: ObjectCounts,
    #[serde(default)]
    tables: Vec<TableFigures>,
}

/// What the job reports in `result.data`.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct Report {
    connection: String,
    database: String,
    /// Whether an existing database was dropped and replaced.
    replaced: bool,
    source: SourceReport,
    /// The restored database's tables with rows and checksums.
    tables: Vec<TableFigures>,
    objects: ObjectCounts,
    /// Whether checksums and rows were compared (the dump has data and figures).
    checksums: bool,
    /// Tables compared with the manifest (0 when it has no figures).
    tables_compared: usize,
    mismatches: Vec<String>,
    events_disabled: usize,
    duration_ms: u64,
    warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct SourceReport {
    file: String,
    manifest: String,
    /// The database the dump was made of.
    database: String,
    sha256: String,
    sql_bytes: u64,
    /// The store the object came from (the file above was its download,
    /// removed since).
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<String>,
    /// The object's key (the store's prefix included).
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

pub(super) struct Run<'a> {
    exec: &'a RestoreExecutor,
    job: &'a Job,
    spec: &'a RestoreSpec,
    conn: &'a MysqlConnection,
    stop: Stopper,
    report: Report,
    started: Instant,
}

/// Run one restore job.
pub(super) async fn run(exec: &RestoreExecutor, job: Job) -> Outcome {
    let JobSpec::Restore(spec) = &job.spec else {
        let kind = job.spec.kind();
        return Outcome::failed(false, format!("a restore executor got a {kind} job"));
    };
    let Some(conn) = exec.settings().connections.get(&spec.connection) else {
        let e = Error::UnknownConnection(spec.connection.clone());
        return Outcome::failed(false, e.to_string());
    };
    let mut run = Run {
        exec,
        job: &job,
        spec,
        conn,
        stop: Stopper::new(job.cancel.clone(), job.timeout.map(|t| Instant::now() + t)),
        report: Report {
            connection: conn.name.clone(),
            database: spec.database.clone(),
            ..Report::default()
        },
        started: Instant::now(),
    };
    let ended = run.go().await;
    run.report.duration_ms = u64::try_from(run.started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let result = JobResult {
        data: serde_json::to_value(&run.report).ok(),
        ..JobResult::default()
    };
    match ended {
        Ok(summary) => Outcome::succeeded(JobResult {
            stdout: format!("{summary}\n"),
            ..result
        }),
        Err(Error::Stopped(stop)) => report::stopped(Kind::Restore, stop, &job, result),
        Err(e) => report::failed(Kind::Restore, e.retryable(), &e, &job, result),
    }
}

impl<'a> Run<'a> {
    fn note(&self, message: String) {
        report::note(&self.job.progress, None, message);
    }

    /// The steps of the module docs of [`super`], in order; the summary line.
    async fn go(&mut self) -> Result<String, Error> {
        let origin = self.check()?; // 1
        let early = match origin {
            RestoreOrigin::File(file) => {
                let located = self.locate(file)?; // 2
                let (manifest, sha256) = self.manifest(&located).await?;
                Some((located, manifest, sha256))
            }
            RestoreOrigin::Object { .. } | RestoreOrigin::Latest { .. } => None,
        };
        let (_private, client) = self.access().await?; // 3
        let exists = self.exists(&client).await?; // 4
        // The download is removed when dropped: after the load, or on any
        // failure or stop.
        let (located, manifest, sha256, _download) = match early {
            Some((located, manifest, sha256)) => (located, manifest, sha256, None),
            None => {
                let fetched = self.fetch(origin).await?; // 4a
                let located = self.locate(&fetched.file.to_string_lossy())?; // 2
                let (manifest, sha256) = self.manifest(&located).await?;
                self.report.source.store = Some(fetched.store.clone());
                self.report.source.key = Some(fetched.key.clone());
                (located, manifest, sha256, Some(fetched))
            }
        };
        self.integrity(&located, &sha256).await?; // 5
        self.create(&client, exists, &manifest).await?; // 6
        let stop = self.stop.clone();
        let loaded = stop
            .run(self.load_and_compare(&client, &located, &manifest, &sha256))
            .await;
        match loaded {
            Ok(()) => Ok(self.summary()),
            Err(e) => {
                self.drop_target(&client).await;
                Err(e)
            }
        }
    }

    /// Step 1: the target's name and the one source.
    fn check(&self) -> Result<RestoreOrigin<'a>, Error> {
        let spec: &'a RestoreSpec = self.spec;
        if let Some(message) = baton_proto::restore::database_refusal(&spec.database) {
            return Err(Error::Invalid {
                field: "database",
                message,
            });
        }
        spec.source
            .origin()
            .map_err(|(field, message)| Error::Invalid { field, message })
    }

    /// Step 4a: the object downloaded under the connection's dump directory
    /// and verified; the directory goes when the returned value is dropped.
    async fn fetch(&self, origin: RestoreOrigin<'_>) -> Result<Fetched, Error> {
        let settings = self.exec.settings();
        let root = self
            .conn
            .dump
            .dir
            .clone()
            .unwrap_or_else(|| settings.default_dump_dir.clone());
        let what = match origin {
            RestoreOrigin::Object { store, key } => format!("{key} from store {store}"),
            RestoreOrigin::Latest { store, prefix } => {
                format!("the newest object under {prefix:?} from store {store}")
            }
            RestoreOrigin::File(f) => f.to_owned(),
        };
        self.note(format!("downloading {what}"));
        let job_id = self.job.job_id.to_string();
        let req = fetch::Request {
            origin,
            suffix: SQL_ZST_SUFFIX,
            root: &root,
            job_id: &job_id,
        };
        let progress = self.job.progress.clone();
        let mut next = Instant::now();
        let fetching = fetch::fetch(self.exec.stores(), req, |read| {
            if Instant::now() >= next {
                next = Instant::now() + PROGRESS_EVERY;
                progress.set_progress(Progress {
                    percent: None,
                    message: format!("download: {} read", human_bytes(read)),
                });
            }
        });
        let fetched = self.stop.until(fetching).await??;
        self.note(format!(
            "downloaded {} ({}), sha256 {} as its manifest says",
            fetched.key,
            human_bytes(fetched.size),
            fetched.sha256
        ));
        Ok(fetched)
    }

    /// Step 2: the file under a dump directory, and its manifest's path.
    fn locate(&self, file: &str) -> Result<Located, Error> {
        let roots = self.exec.settings().dump_roots();
        Ok(source::locate(file, &roots, SQL_ZST_SUFFIX)?)
    }

    /// Step 2 (the manifest): a MySQL dump's, with its sha256.
    async fn manifest(&mut self, located: &Located) -> Result<(DumpManifest, String), Error> {
        let (manifest, sha256): (DumpManifest, String) = source::read_manifest(located).await?;
        let bad = |why: String| source::Error::BadManifest {
            path: located.manifest.display().to_string(),
            why,
        };
        if let Some(kind) = &manifest.kind {
            return Err(bad(format!("it describes a {kind}, not a MySQL/MariaDB dump")).into());
        }
        if !paths::safe_component(&manifest.database) {
            return Err(bad(format!(
                "database {:?} is not a valid name",
                manifest.database
            ))
            .into());
        }
        self.report.source = SourceReport {
            file: located.file.display().to_string(),
            manifest: located.manifest.display().to_string(),
            database: manifest.database.clone(),
            sha256: sha256.clone(),
            ..SourceReport::default()
        };
        Ok((manifest, sha256))
    }

    /// Step 3: the client with a private defaults file (removed when the
    /// returned directory is dropped).
    async fn access(&self) -> Result<(PrivateDir, Client), Error> {
        let settings = self.exec.settings();
        let search = settings.search_path.as_deref();
        let tool = defaults::find_tool(self.conn.dump.tool.as_deref(), search)?;
        let program = defaults::find_client(&tool, search)?;
        let version = self
            .stop
            .run(defaults::tool_version(&tool, &settings.base_env))
            .await?;
        let password = self.conn.password.read().map_err(dump_mod::Error::Setup)?;
        let private = PrivateDir::create(
            &settings.state_dir,
            &format!("restore{}-{:08x}", self.job.job_id, rand::random::<u32>()),
        )?;
        let text = defaults::render(self.conn, &password, Flavor::from_version(&version))?;
        let defaults = private.write_defaults(&text)?;
        drop(password);
        let client = Client {
            program,
            defaults,
            env: settings.base_env.clone(),
            groups: self.exec.dump.process_groups(),
            max_stderr: settings.max_stderr_bytes,
        };
        Ok((private, client))
    }

    /// Step 4: whether the target exists; refused without `replace`.
    async fn exists(&self, client: &Client) -> Result<bool, Error> {
        let database = &self.spec.database;
        let statements = vec![format!(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
            literal(database)
        )];
        let r = self.stop.run(client.query(None, &statements)).await?;
        let exists = match r.into_iter().next() {
            Some(Ok(rows)) => !rows.is_empty(),
            Some(Err(e)) => {
                return Err(dump_mod::Error::Client {
                    retryable: messages::retryable(&e),
                    message: format!("cannot query connection {}: {e}", self.conn.name),
                }
                .into());
            }
            None => false,
        };
        if exists && !self.spec.replace {
            return Err(Error::Exists {
                database: database.clone(),
                connection: self.conn.name.clone(),
            });
        }
        Ok(exists)
    }

    /// Step 5: the file's sha256 against the manifest's.
    async fn integrity(&self, located: &Located, expected: &str) -> Result<(), Error> {
        self.note(format!("checking the sha256 of {}", located.file.display()));
        let progress = self.job.progress.clone();
        let mut next = Instant::now();
        let hashing = source::sha256_file(&located.file, |read| {
            if Instant::now() >= next {
                next = Instant::now() + PROGRESS_EVERY;
                progress.set_progress(Progress {
                    percent: None,
                    message: format!("checking the sha256: {} read", human_bytes(read)),
                });
            }
        });
        let actual = self.stop.until(hashing).await?.map_err(|e| {
            dump_mod::Error::io(format!("cannot read {}", located.file.display()), e)
        })?;
        Ok(source::matches(&located.file, expected, &actual)?)
    }

    /// Step 6: drop the existing database (`replace`), create the target.
    async fn create(
        &mut self,
        client: &Client,
        exists: bool,
        manifest: &DumpManifest,
    ) -> Result<(), Error> {
        let target = ident(&self.spec.database);
        let mut statements = Vec::new();
        if exists {
            statements.push(format!("DROP DATABASE {target}"));
            self.report.replaced = true;
        }
        let charset = manifest
            .charset
            .as_ref()
            .filter(|c| plain(&c.character_set) && plain(&c.collation))
            .map_or(String::new(), |c| {
                format!(" CHARACTER SET {} COLLATE {}", c.character_set, c.collation)
            });
        statements.push(format!("CREATE DATABASE {target}{charset}"));
        self.note(format!(
            "{} {} on {}",
            if exists { "replacing" } else { "creating" },
            self.spec.database,
            self.conn.name
        ));
        let r = match self.stop.run(client.query(None, &statements)).await {
            Ok(r) => r,
            Err(e) => {
                // No answer: the database may exist now.
                self.drop_target(client).await;
                return Err(e.into());
            }
        };
        if let Some(e) = r.into_iter().find_map(Result::err) {
            if exists {
                self.drop_target(client).await;
            }
            return Err(dump_mod::Error::Client {
                retryable: messages::retryable(&e),
                message: format!("cannot create database {}: {e}", self.spec.database),
            }
            .into());
        }
        Ok(())
    }

    /// Steps 7 and 8: load, then the figures and their comparison.
    async fn load_and_compare(
        &mut self,
        client: &Client,
        located: &Located,
        manifest: &DumpManifest,
        sha256: &str,
    ) -> Result<(), Error> {
        let loaded = self.load(client, located, manifest).await?;
        self.report.source.sql_bytes = loaded.sql_bytes;
        self.report.events_disabled = loaded.filter.disabled;
        if loaded.filter.disabled > 0 {
            self.report.warnings.push(format!(
                "{} event(s) restored disabled; ALTER EVENT … ENABLE to run them",
                loaded.filter.disabled
            ));
        }
        source::matches(&located.file, sha256, &loaded.sha256)?;
        if !loaded
            .sha256_sql
            .eq_ignore_ascii_case(&manifest.sha256_uncompressed)
        {
            return Err(Error::Mismatch(format!(
                "the SQL read has sha256 {}, the manifest says {}",
                loaded.sha256_sql, manifest.sha256_uncompressed
            )));
        }
        self.compare(client, manifest).await
    }

    /// Step 7: the file into the target, through the dump filter.
    async fn load(
        &self,
        client: &Client,
        located: &Located,
        manifest: &DumpManifest,
    ) -> Result<Loaded, Error> {
        self.note(format!(
            "loading {} into {}",
            located.file.display(),
            self.spec.database
        ));
        let filter = DumpFilter::new(true, Some((&manifest.database, &self.spec.database)));
        let progress = self.job.progress.clone();
        let mut next = Instant::now();
        let loaded = client
            .restore(&self.spec.database, &located.file, filter, |read| {
                if Instant::now() >= next {
                    next = Instant::now() + PROGRESS_EVERY;
                    progress.set_progress(Progress {
                        percent: None,
                        message: format!("restore: {} of SQL loaded", human_bytes(read)),
                    });
                }
            })
            .await?;
        Ok(loaded)
    }

    /// Step 8: the restored database's figures against the manifest's.
    async fn compare(&mut self, client: &Client, manifest: &DumpManifest) -> Result<(), Error> {
        self.note(format!("taking the figures of {}", self.spec.database));
        let expected = manifest.verify.as_ref().filter(|v| v.ok);
        let checksums = expected.is_none_or(|v| v.checksums);
        let restored = verify::snapshot(client, &self.spec.database, &[], checksums).await?;
        self.report.tables = restored.tables.clone();
        self.report.objects = ObjectCounts {
            routines: restored.routines,
            triggers: restored.triggers,
            views: restored.views,
            events: restored.events,
        };
        let Some(expected) = expected else {
            self.report.warnings.push(
                "the dump's manifest has no table figures (made without verify, or its check \
                 failed): nothing was compared"
                    .into(),
            );
            return Ok(());
        };
        let source = Snapshot {
            tables: expected.tables.clone(),
            routines: expected.objects.routines,
            triggers: expected.objects.triggers,
            views: expected.objects.views,
            events: expected.objects.events,
        };
        let (compared, mismatches) = verify::compare(&source, &restored, checksums);
        self.report.checksums = checksums;
        self.report.tables_compared = compared;
        self.report.mismatches = mismatches.clone();
        if mismatches.is_empty() {
            Ok(())
        } else {
            Err(Error::Mismatch(mismatches.join("; ")))
        }
    }

    /// Drop the target after a failure or stop (it was created, or may have
    /// been); a failure to drop is a warning naming it.
    async fn drop_target(&mut self, client: &Client) {
        let database = self.spec.database.clone();
        let sql = vec![format!("DROP DATABASE IF EXISTS {}", ident(&database))];
        let dropped = tokio::time::timeout(DROP_TIMEOUT, client.query(None, &sql)).await;
        let error = match dropped {
            Ok(Ok(r)) => r.into_iter().next().and_then(Result::err),
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("no answer in 30 s".into()),
        };
        match error {
            None => {
                info!(database = %database, "Dropped the half-restored database");
                self.note(format!("dropped the half-restored database {database}"));
            }
            Some(e) => {
                warn!(database = %database, error = %e, "Cannot drop the half-restored database; drop it by hand");
                self.report.warnings.push(format!(
                    "the half-restored database {database} could not be dropped: {e}; drop it by hand"
                ));
            }
        }
    }

    /// The summary line (stdout and the log tail).
    fn summary(&self) -> String {
        let r = &self.report;
        let compared = if r.tables_compared > 0 || !r.mismatches.is_empty() {
            format!("; {} tables match the manifest", r.tables_compared)
        } else {
            "; no figures in the manifest to compare with".into()
        };
        let from = match (&r.source.store, &r.source.key) {
            (Some(store), Some(key)) => format!("{key} from store {store}"),
            _ => r.source.file.clone(),
        };
        let text = format!(
            "restored {from} ({} of SQL) into {} on {}{}{compared}",
            human_bytes(r.source.sql_bytes),
            r.database,
            r.connection,
            if r.replaced { " (replaced)" } else { "" },
        );
        info!(connection = %r.connection, database = %r.database, file = %r.source.file, tables = r.tables.len(), "Restore done");
        self.note(text.clone());
        text
    }
}

/// Whether a character set or collation name can be spliced as is.
fn plain(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
