//! One dump job from checks to outcome: [`Run::go`] calls one function per
//! numbered step of the module docs of [`super`] (steps 6–7 in [`write`],
//! 8–9 in [`after`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_proto::{DumpSpec, JobResult, JobSpec};
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tracing::{info, warn};

use super::client::{Client, literal, scalar};
use super::defaults::{self, Flavor, PrivateDir};
use super::manifest::{self, Binlog, Manifest};
use super::stream::{Tally, human_bytes};
use super::verify::Verdict;
use super::{DumpExecutor, Error, messages, space};
use crate::config::mysql::{MysqlConnection, dump_flag_allowed};
use crate::db::common::paths::{self, DumpName, Layout};
use crate::db::common::report::{self, Kind};
use crate::db::common::retention;
use crate::executor::stop::Stopper;
use crate::executor::{Job, Outcome};

mod after;
mod write;

/// Flags every dump gets, after the defaults file.
pub const BASE_FLAGS: [&str; 6] = [
    "--single-transaction",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--default-character-set=utf8mb4",
];
/// How often progress is published.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What the probe learnt.
struct Probe {
    server_version: Option<String>,
    charset: Option<(String, String)>,
    estimate: Option<u64>,
}

/// The dump tool (step 2).
struct Tool {
    path: PathBuf,
    version: String,
    flavor: Flavor,
    client: PathBuf,
}

/// What step 3 set up: the private directory holding the defaults file
/// (removed when dropped) and the SQL client that uses it.
struct Access {
    private: PrivateDir,
    defaults_file: PathBuf,
    client: Client,
}

/// When the dump started: the wall clock for the manifest, the monotonic
/// clock for its duration.
#[derive(Clone, Copy)]
struct Started {
    at: DateTime<Utc>,
    clock: Instant,
}

/// The dump file as written and checked (steps 5–7).
struct Written {
    layout: Layout,
    started: DateTime<Utc>,
    ended: DateTime<Utc>,
    /// From start to end on the monotonic clock.
    elapsed: Duration,
    arguments: Vec<String>,
    tally: Tally,
}

struct Run<'a> {
    exec: &'a DumpExecutor,
    job: &'a Job,
    spec: &'a DumpSpec,
    conn: &'a MysqlConnection,
    stop: Stopper,
    warnings: Vec<String>,
    result: JobResult,
    /// `CURRENT_USER()` as the probe found it, for grant hints.
    account: Option<String>,
}

/// Run one dump job.
pub(super) async fn run(exec: &DumpExecutor, job: Job) -> Outcome {
    let JobSpec::Dump(spec) = &job.spec else {
        let kind = job.spec.kind();
        return Outcome::failed(false, format!("a dump executor got a {kind} job"));
    };
    let Some(conn) = exec.settings.connections.get(&spec.connection) else {
        return Outcome::failed(
            false,
            Error::UnknownConnection(spec.connection.clone()).to_string(),
        );
    };
    let mut run = Run {
        exec,
        job: &job,
        spec,
        conn,
        stop: Stopper::new(job.cancel.clone(), job.timeout.map(|t| Instant::now() + t)),
        warnings: Vec::new(),
        result: JobResult::default(),
        account: None,
    };
    match run.go().await {
        Ok(()) => Outcome::succeeded(run.result),
        Err(Error::Stopped(stop)) => report::stopped(Kind::Dump, stop, &job, run.result),
        Err(e) => report::failed(Kind::Dump, e.retryable(), &e, &job, run.result),
    }
}

impl Run<'_> {
    fn note(&self, message: String) {
        report::note(&self.job.progress, None, message);
    }

    /// The steps of the module docs of [`super`], in order.
    async fn go(&mut self) -> Result<(), Error> {
        let no_data = self.check()?; // 1
        let tool = self.tool().await?; // 2
        let access = self.access(&tool)?; // 3
        let probe = self.probe(&access.client).await?; // 4
        let (layout, started) = self.make_room(&probe, &access.private).await?; // 5
        let written = self.write(&tool, &access, layout, started).await?; // 6, 7
        let (binlog, verdict) = self
            .after_dump(&access.client, &written, &probe, no_data) // 8, 9
            .await?;
        drop(access);
        let manifest = self.manifest(&tool, &probe, &written, binlog, verdict); // 10
        let dump_path = self.write_manifest(&written, &manifest).await?;
        self.report(&written, &manifest, &dump_path)?;
        self.retention(&written.layout).await; // 11
        Ok(())
    }

    /// Step 1: the database name and the connection's extra flags; whether
    /// the dump leaves the data out (`--no-data`).
    fn check(&self) -> Result<bool, Error> {
        let database = self.spec.database.as_str();
        if !paths::safe_component(database) {
            return Err(Error::InvalidDatabase(database.to_owned()));
        }
        let flags = &self.conn.dump.extra_flags;
        if let Some(bad) = flags.iter().find(|f| !dump_flag_allowed(f)) {
            return Err(Error::Setup(format!(
                "dump flag {bad:?} is not on the allow-list"
            )));
        }
        if flags.iter().any(|f| f == "--skip-comments") {
            return Err(Error::Setup(
                "--skip-comments removes the `-- Dump completed` trailer that proves a dump \
                 complete; remove it from dump_extra_flags"
                    .into(),
            ));
        }
        if self.spec.verify && flags.iter().any(|f| f == "--no-create-info") {
            return Err(Error::Setup(
                "verify needs the CREATE TABLE statements that --no-create-info leaves out".into(),
            ));
        }
        Ok(flags.iter().any(|f| f == "--no-data"))
    }

    /// Step 2: the tool, its version (and flavour), the SQL client.
    async fn tool(&self) -> Result<Tool, Error> {
        let settings = &self.exec.settings;
        let search = settings.search_path.as_deref();
        let path = defaults::find_tool(self.conn.dump.tool.as_deref(), search)?;
        let client = defaults::find_client(&path, search)?;
        let version = self
            .stop
            .run(defaults::tool_version(&path, &settings.base_env))
            .await?;
        Ok(Tool {
            flavor: Flavor::from_version(&version),
            path,
            version,
            client,
        })
    }

    /// Step 3: the 0600 defaults file in a private directory, and the client.
    fn access(&self, tool: &Tool) -> Result<Access, Error> {
        let settings = &self.exec.settings;
        let password = self.conn.password.read().map_err(Error::Setup)?;
        let private = PrivateDir::create(
            &settings.state_dir,
            &format!("job{}-{:08x}", self.job.job_id, rand::random::<u32>()),
        )?;
        let defaults_file =
            private.write_defaults(&defaults::render(self.conn, &password, tool.flavor)?)?;
        drop(password);
        let client = Client {
            program: tool.client.clone(),
            defaults: defaults_file.clone(),
            env: settings.base_env.clone(),
            groups: self.exec.groups.clone(),
            max_stderr: settings.max_stderr_bytes,
        };
        Ok(Access {
            private,
            defaults_file,
            client,
        })
    }

    /// Step 4: server version, character set (the database exists), size
    /// estimate, whether `mysql.proc` is readable.
    async fn probe(&mut self, client: &Client) -> Result<Probe, Error> {
        let database = self.spec.database.as_str();
        self.note(format!("checking {database} on {}", self.conn.name));
        let db = literal(database);
        let statements = vec![
            "SELECT VERSION()".to_owned(),
            format!(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM \
                 information_schema.SCHEMATA WHERE SCHEMA_NAME = {db}"
            ),
            format!(
                "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM \
                 information_schema.TABLES WHERE TABLE_SCHEMA = {db}"
            ),
            format!("SELECT COUNT(*) FROM mysql.proc WHERE db = {db}"),
            "SELECT CURRENT_USER()".to_owned(),
        ];
        let stop = self.stop.clone();
        let r = stop.run(client.query(None, &statements)).await?;
        if let Some(Err(e)) = r.first() {
            return Err(Error::Client {
                message: format!("cannot query connection {}: {e}", self.conn.name),
                retryable: messages::retryable(e),
            });
        }
        let charset = match r.get(1) {
            Some(Ok(rows)) => match rows.first() {
                Some(row) => row
                    .first()
                    .cloned()
                    .flatten()
                    .zip(row.get(1).cloned().flatten()),
                None => {
                    return Err(Error::Setup(format!(
                        "database {database} does not exist on connection {} (or this login \
                         cannot see it)",
                        self.conn.name
                    )));
                }
            },
            _ => None,
        };
        self.account = r.get(4).and_then(scalar);
        if let Some(Err(e)) = r.get(3)
            && messages::error_codes(e).contains(&messages::COMMAND_DENIED)
        {
            // Verified on MariaDB 10.11: a routine of another definer that the
            // login holds no privilege on is not even listed to it, so the
            // tool leaves it out and exits 0; one it may EXECUTE is listed but
            // its body is hidden, and the tool fails (see `messages::hint`).
            // MySQL 8 has no mysql.proc (error 1146): no warning there.
            self.warnings.push(format!(
                "this login cannot read mysql.proc: routines of {database} that it holds no \
                 privilege on (another definer, no EXECUTE) are invisible to it and not in the \
                 dump; {} to dump them all",
                messages::proc_grant(self.account.as_deref())
            ));
        }
        let estimate = match self.exec.settings.size_estimate_override {
            Some(v) => Some(v),
            None => r.get(2).and_then(scalar).and_then(|v| v.parse().ok()),
        };
        Ok(Probe {
            server_version: r.first().and_then(scalar),
            charset,
            estimate,
        })
    }

    /// Step 5: where the dump goes, and whether it fits there; the partial
    /// file is noted for clean-up after a crash.
    async fn make_room(
        &mut self,
        probe: &Probe,
        private: &PrivateDir,
    ) -> Result<(Layout, Started), Error> {
        let settings = &self.exec.settings;
        let root = self
            .conn
            .dump
            .dir
            .clone()
            .unwrap_or_else(|| settings.default_dump_dir.clone());
        let started = Started {
            at: Utc::now(),
            clock: Instant::now(),
        };
        let name = DumpName {
            started: started.at,
            job_id: self.job.job_id,
        };
        let layout = Layout::new(
            &root,
            &self.conn.name,
            &self.spec.database,
            name,
            paths::SQL_ZST,
        )?;
        self.check_space(&layout.dir, probe.estimate, self.conn.dump.reserve_bytes)
            .await?;
        if let Err(e) = private.note_partial(&layout.partial()) {
            warn!(error = %e, "Cannot note the partial dump for clean-up after a crash");
        }
        Ok((layout, started))
    }

    async fn check_space(
        &mut self,
        dir: &Path,
        estimate: Option<u64>,
        reserve: u64,
    ) -> Result<(), Error> {
        let Some(estimate) = estimate else {
            self.warnings
                .push("no size estimate: free-space check skipped".into());
            return Ok(());
        };
        let probe_dir = dir.to_path_buf();
        let found = tokio::task::spawn_blocking(move || space::free_space(&probe_dir))
            .await
            .ok()
            .flatten();
        match found {
            Some((_, free)) if space::fits(estimate, free, reserve) => Ok(()),
            Some((mount, free)) => Err(Error::NoSpace {
                database: self.spec.database.clone(),
                dir: dir.display().to_string(),
                mount: mount.display().to_string(),
                estimate,
                reserve,
                needed: space::required(estimate, reserve),
                free,
            }),
            None => {
                let msg = format!(
                    "free space of the filesystem holding {} is unknown: free-space check skipped",
                    dir.display()
                );
                warn!(dir = %dir.display(), "Free space unknown; check skipped");
                self.warnings.push(msg);
                Ok(())
            }
        }
    }

    /// Step 10 (what): the manifest of the dump.
    fn manifest(
        &mut self,
        tool: &Tool,
        probe: &Probe,
        written: &Written,
        binlog: Option<Binlog>,
        verify: Option<Verdict>,
    ) -> Manifest {
        let tally = &written.tally;
        Manifest {
            format: manifest::FORMAT,
            file: format!("{}{}", written.layout.name.stem(), paths::SQL_ZST_SUFFIX),
            connection: self.conn.name.clone(),
            database: self.spec.database.clone(),
            charset: probe
                .charset
                .clone()
                .map(|(character_set, collation)| manifest::Charset {
                    character_set,
                    collation,
                }),
            server_version: probe.server_version.clone(),
            binlog,
            tool: manifest::Tool {
                path: tool.path.display().to_string(),
                version: tool.version.clone(),
            },
            arguments: written.arguments.clone(),
            compression: manifest::Compression {
                algorithm: "zstd".into(),
                level: self.exec.settings.zstd_level,
            },
            uncompressed_bytes: tally.read,
            compressed_bytes: tally.written,
            sha256: tally.sha256.clone(),
            sha256_uncompressed: tally.sha256_sql.clone(),
            estimated_bytes: probe.estimate,
            started_at: written.started,
            ended_at: written.ended,
            duration_ms: u64::try_from(written.elapsed.as_millis()).unwrap_or(u64::MAX),
            job_id: self.job.job_id,
            token: self.job.token,
            verify,
            warnings: std::mem::take(&mut self.warnings),
        }
    }

    /// Step 10 (where): `<stem>.manifest.json` written atomically, and the
    /// same JSON plus the paths as `result.data`; the dump's path. A manifest
    /// that cannot be written removes the dump.
    async fn write_manifest(
        &mut self,
        written: &Written,
        manifest: &Manifest,
    ) -> Result<PathBuf, Error> {
        let dump_path = written.layout.finished();
        let manifest_path = match report::write_manifest(&written.layout, manifest).await {
            Ok(path) => path,
            Err(report::Error::Encode(e)) => {
                return Err(Error::Setup(format!("cannot encode the manifest: {e}")));
            }
            Err(e) => {
                remove_quietly(&dump_path);
                return Err(match e {
                    report::Error::Write { path, source } => {
                        Error::io(format!("cannot write {}", path.display()), source)
                    }
                    e => Error::Setup(format!("the manifest writer panicked: {e}")),
                });
            }
        };
        self.result.data = Some(report::result_data(manifest, &dump_path, &manifest_path));
        Ok(dump_path)
    }

    /// Step 10 (what the job says): the summary in stdout and the log tail;
    /// a restore check that found differences fails the job (dump kept).
    fn report(
        &mut self,
        written: &Written,
        manifest: &Manifest,
        dump_path: &Path,
    ) -> Result<(), Error> {
        let tally = &written.tally;
        let summary = format!(
            "dumped {} on {}: {} of SQL into {} ({}) in {:.1} s",
            self.spec.database,
            self.conn.name,
            human_bytes(tally.read),
            human_bytes(tally.written),
            dump_path.display(),
            written.elapsed.as_secs_f64(),
        );
        info!(
            connection = %self.conn.name,
            database = %self.spec.database,
            file = %dump_path.display(),
            sql_bytes = tally.read,
            file_bytes = tally.written,
            sha256 = %tally.sha256,
            "Dump written"
        );
        let verdict = manifest.verify.as_ref();
        if let Some(v) = verdict.filter(|v| !v.ok) {
            self.result.stdout = summary;
            let why = v.error.clone().unwrap_or_else(|| v.mismatches.join("; "));
            return Err(Error::Verify(format!(
                "{why} (dump kept: {})",
                dump_path.display()
            )));
        }
        let verified = verdict.map_or(String::new(), |v| {
            format!("; restore check ok ({} tables)", v.tables_compared)
        });
        self.result.stdout = format!("{summary}{verified}\n");
        self.note(format!("{summary}{verified}"));
        Ok(())
    }

    /// Step 11: retention in the database's directory (never this dump).
    async fn retention(&self, layout: &Layout) {
        let dump = &self.conn.dump;
        let deleted =
            retention::after_success(paths::SQL_ZST, layout, dump.keep_last, dump.max_age).await;
        if !deleted.is_empty() {
            self.note(format!("retention deleted {}", deleted.join(", ")));
        }
    }
}

fn remove_quietly(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => info!(file = %path.display(), "Removed an unfinished dump file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(file = %path.display(), error = %e, "Cannot remove an unfinished dump file")
        }
    }
}
