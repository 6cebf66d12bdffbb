//! One dump job from checks to outcome (the steps are listed in the module
//! docs of [`super`]).

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use baton_proto::{DumpSpec, JobResult, JobSpec, Progress};
use chrono::{SubsecRound, Utc};
use tokio::io::BufWriter;
use tokio::time::Instant;
use tracing::{info, warn};

use super::client::{Client, literal, scalar};
use super::defaults::{self, Flavor, PrivateDir};
use super::manifest::{self, Manifest};
use super::process::{Spawn, describe_exit, terminate};
use super::stream::{self, Tally, human_bytes};
use super::{DumpExecutor, Error, Stop, messages, space};
use crate::config::mysql::{MysqlConnection, dump_flag_allowed};
use crate::db::common::paths::{self, DumpName, Layout};
use crate::db::common::retention;
use crate::executor::capture::{self, SharedBounded};
use crate::executor::stop::{self, Stopper};
use crate::executor::{CancelReason, Job, Outcome};

#[path = "flow_after.rs"]
mod after;

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
/// How long the stderr pipe may stay open after the tool ended.
const PIPE_GRACE: Duration = Duration::from_secs(1);

/// What the probe learnt.
struct Probe {
    server_version: Option<String>,
    charset: Option<(String, String)>,
    estimate: Option<u64>,
}

struct Run<'a> {
    exec: &'a DumpExecutor,
    job: &'a Job,
    spec: &'a DumpSpec,
    conn: &'a MysqlConnection,
    stop: Stopper,
    warnings: Vec<String>,
    result: JobResult,
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
    };
    match run.go().await {
        Ok(()) => Outcome::succeeded(run.result),
        Err(e) => run.failed(e),
    }
}

impl Run<'_> {
    fn note(&self, message: String) {
        self.job
            .progress
            .append_output(format!("{message}\n").as_bytes());
        self.job.progress.set_progress(Progress {
            percent: None,
            message,
        });
    }

    fn failed(self, e: Error) -> Outcome {
        let job_id = self.job.job_id;
        match e {
            Error::Stopped(stop) => {
                match stop {
                    Stop::Cancel(reason) => info!(job_id, reason = reason.as_str(), "Dump stopped"),
                    Stop::Timeout => warn!(job_id, "Dump timed out"),
                }
                stop::stopped(stop, self.job, self.result)
            }
            e => {
                let retryable = e.retryable();
                warn!(job_id, retryable, error = %e, "Dump failed");
                self.job
                    .progress
                    .append_output(format!("dump failed: {e}\n").as_bytes());
                stop::failed(retryable, e.to_string(), self.result)
            }
        }
    }

    async fn go(&mut self) -> Result<(), Error> {
        let settings = &self.exec.settings;
        let (spec, conn) = (self.spec, self.conn);
        let database = spec.database.as_str();
        if !paths::safe_component(database) {
            return Err(Error::InvalidDatabase(database.to_owned()));
        }
        let flags = &conn.dump.extra_flags;
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
        let no_data = flags.iter().any(|f| f == "--no-data");
        if spec.verify && flags.iter().any(|f| f == "--no-create-info") {
            return Err(Error::Setup(
                "verify needs the CREATE TABLE statements that --no-create-info leaves out".into(),
            ));
        }

        // Tool, client, credentials.
        let search = settings.search_path.as_deref();
        let tool = defaults::find_tool(conn.dump.tool.as_deref(), search)?;
        let client_program = defaults::find_client(&tool, search)?;
        let version = self
            .stop
            .run(defaults::tool_version(&tool, &settings.base_env))
            .await?;
        let flavor = Flavor::from_version(&version);
        let password = conn.password.read().map_err(Error::Setup)?;
        let private = PrivateDir::create(
            &settings.state_dir,
            &format!("job{}-{:08x}", self.job.job_id, rand::random::<u32>()),
        )?;
        let defaults_file = private.write_defaults(&defaults::render(conn, &password, flavor)?)?;
        drop(password);
        let client = Client {
            program: client_program,
            defaults: defaults_file.clone(),
            env: settings.base_env.clone(),
            groups: self.exec.groups.clone(),
            max_stderr: settings.max_stderr_bytes,
        };

        // Probe and free space.
        self.note(format!("checking {database} on {}", conn.name));
        let stop = self.stop.clone();
        let probe = stop.run(self.probe(&client, database)).await?;
        let root = conn
            .dump
            .dir
            .clone()
            .unwrap_or_else(|| settings.default_dump_dir.clone());
        let started = Utc::now().trunc_subsecs(0);
        let layout = Layout::new(
            &root,
            &conn.name,
            database,
            DumpName {
                started,
                job_id: self.job.job_id,
            },
            paths::SQL_ZST,
        )?;
        self.check_space(&layout.dir, probe.estimate, self.conn.dump.reserve_bytes)
            .await?;
        if let Err(e) = private.note_partial(&layout.partial()) {
            warn!(job_id = self.job.job_id, error = %e, "Cannot note the partial dump for clean-up after a crash");
        }

        // Dump.
        let mut arguments: Vec<String> = BASE_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        arguments.extend(flags.iter().cloned());
        arguments.push(database.to_owned());
        let tally = self
            .dump(&tool, &defaults_file, &arguments, &layout)
            .await?;
        let ended = Utc::now();

        // After the dump: source snapshot, binlog, restore check. A stop or a
        // retryable failure from here on removes the dump.
        let dump_path = layout.finished();
        let after = self
            .after_dump(&client, &tally, &probe, &dump_path, no_data)
            .await;
        let (binlog, verdict) = match after {
            Ok(v) => v,
            Err(e) => {
                remove_quietly(&dump_path);
                let _ = paths::fsync_dir(&layout.dir);
                return Err(e);
            }
        };
        drop(private);

        let file_name = format!("{}{}", layout.name.stem(), paths::SQL_ZST_SUFFIX);
        let manifest = Manifest {
            format: manifest::FORMAT,
            file: file_name,
            connection: conn.name.clone(),
            database: database.to_owned(),
            server_version: probe.server_version,
            binlog,
            tool: manifest::Tool {
                path: tool.display().to_string(),
                version,
            },
            arguments,
            compression: manifest::Compression {
                algorithm: "zstd".into(),
                level: settings.zstd_level,
            },
            uncompressed_bytes: tally.read,
            compressed_bytes: tally.written,
            sha256: tally.sha256.clone(),
            sha256_uncompressed: tally.sha256_sql.clone(),
            estimated_bytes: probe.estimate,
            started_at: started,
            ended_at: ended,
            job_id: self.job.job_id,
            token: self.job.token,
            verify: verdict.clone(),
            warnings: std::mem::take(&mut self.warnings),
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::Setup(format!("cannot encode the manifest: {e}")))?;
        let (manifest_path, tmp) = (layout.manifest(), layout.manifest_tmp());
        let written = {
            let (path, tmp) = (manifest_path.clone(), tmp.clone());
            tokio::task::spawn_blocking(move || paths::write_atomic(&path, &tmp, &json)).await
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                remove_quietly(&dump_path);
                return Err(Error::io(
                    format!("cannot write {}", manifest_path.display()),
                    e,
                ));
            }
            Err(e) => {
                remove_quietly(&dump_path);
                return Err(Error::Setup(format!("the manifest writer panicked: {e}")));
            }
        }
        self.result.data = Some(result_data(&manifest, &dump_path, &manifest_path));
        let summary = format!(
            "dumped {database} on {}: {} of SQL into {} ({}) in {:.1} s",
            conn.name,
            human_bytes(tally.read),
            human_bytes(tally.written),
            dump_path.display(),
            (ended - started).num_milliseconds() as f64 / 1000.0,
        );
        info!(
            job_id = self.job.job_id,
            connection = %conn.name,
            database,
            file = %dump_path.display(),
            sql_bytes = tally.read,
            file_bytes = tally.written,
            sha256 = %tally.sha256,
            "Dump written"
        );
        if let Some(v) = verdict.as_ref().filter(|v| !v.ok) {
            self.result.stdout = summary;
            let why = v.error.clone().unwrap_or_else(|| v.mismatches.join("; "));
            return Err(Error::Verify(format!(
                "{why} (dump kept: {})",
                dump_path.display()
            )));
        }
        let verified = verdict.as_ref().map_or(String::new(), |v| {
            format!("; restore check ok ({} tables)", v.tables_compared)
        });
        self.result.stdout = format!("{summary}{verified}\n");
        self.note(format!("{summary}{verified}"));

        let (dir, keep, age, name) = (
            layout.dir.clone(),
            conn.dump.keep_last,
            conn.dump.max_age,
            layout.name.clone(),
        );
        let report = tokio::task::spawn_blocking(move || {
            retention::apply(&dir, keep, age, Utc::now(), Some(&name))
        })
        .await;
        if let Ok(report) = report
            && !report.deleted.is_empty()
        {
            self.note(format!("retention deleted {}", report.deleted.join(", ")));
        }
        Ok(())
    }

    async fn probe(&mut self, client: &Client, database: &str) -> Result<Probe, Error> {
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
        ];
        let r = client.query(None, &statements).await?;
        if let Some(Err(e)) = r.first() {
            return Err(Error::Client {
                message: format!("cannot query connection {}: {e}", self.conn.name),
                retryable: messages::retryable(e),
            });
        }
        let charset = match r.get(1) {
            Some(Ok(rows)) => match rows.first() {
                Some(row) => match (
                    row.first().cloned().flatten(),
                    row.get(1).cloned().flatten(),
                ) {
                    (Some(cs), Some(coll)) => Some((cs, coll)),
                    _ => None,
                },
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
        if matches!(r.get(3), Some(Err(_))) {
            self.warnings.push(
                "this login cannot read mysql.proc: routines of other definers that it has no \
                 privilege on are silently left out by the dump tool"
                    .into(),
            );
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
                warn!(job_id = self.job.job_id, dir = %dir.display(), "Free space unknown; check skipped");
                self.warnings.push(msg);
                Ok(())
            }
        }
    }

    /// Run the tool into `<stem>.sql.zst.partial`, check it, rename it.
    async fn dump(
        &mut self,
        tool: &Path,
        defaults_file: &Path,
        arguments: &[String],
        layout: &Layout,
    ) -> Result<Tally, Error> {
        let settings = &self.exec.settings;
        let partial = layout.partial();
        paths::create_dirs(&layout.dir)
            .map_err(|e| Error::io(format!("cannot create {}", layout.dir.display()), e))?;
        let file = paths::create_new(&partial)
            .map_err(|e| Error::io(format!("cannot create {}", partial.display()), e))?;
        let mut proc = match (Spawn {
            program: tool,
            defaults: defaults_file,
            args: arguments.iter().map(OsString::from).collect(),
            stdin: false,
            env: &settings.base_env,
            groups: &self.exec.groups,
        })
        .start()
        {
            Ok(p) => p,
            Err(e) => {
                remove_quietly(&partial);
                return Err(e);
            }
        };
        info!(
            job_id = self.job.job_id,
            connection = %self.conn.name,
            database = %self.spec.database,
            tool = %tool.display(),
            pid = ?proc.child.id(),
            file = %partial.display(),
            "Dump started"
        );
        self.note(format!(
            "dumping {} into {}",
            self.spec.database,
            partial.display()
        ));
        let err = SharedBounded::new(settings.max_stderr_bytes);
        let err_task = proc
            .child
            .stderr
            .take()
            .map(|s| tokio::spawn(capture::drain(s, err.clone(), self.job.progress.clone())));
        let stdout = proc.child.stdout.take();
        let mut writer = BufWriter::with_capacity(256 * 1024, tokio::fs::File::from_std(file));
        let progress = self.job.progress.clone();
        let started = Instant::now();
        let report = |read: u64, written: u64| {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            progress.set_progress(Progress {
                percent: None,
                message: format!(
                    "dumping: {} of SQL read, {} written ({}/s)",
                    human_bytes(read),
                    human_bytes(written),
                    human_bytes((read as f64 / secs) as u64)
                ),
            });
        };
        let level = settings.zstd_level;
        let pumped = tokio::select! {
            biased;
            stop = self.stop.stopped() => Err(stop),
            r = async {
                let tally = match stdout {
                    Some(out) => stream::pump(out, &mut writer, level, PROGRESS_EVERY, report).await,
                    None => Err(std::io::Error::other("the tool's stdout is not a pipe")),
                };
                (tally, proc.child.wait().await)
            } => Ok(r),
        };
        let (tally, status) = match pumped {
            Err(stop) => {
                let at_once = stop == Stop::Cancel(CancelReason::LeaseLost);
                let _ = terminate(&mut proc, at_once, settings.term_grace).await;
                drop(writer);
                remove_quietly(&partial);
                return Err(Error::Stopped(stop));
            }
            Ok((Err(e), _)) => {
                let _ = terminate(&mut proc, true, settings.term_grace).await;
                drop(writer);
                remove_quietly(&partial);
                return Err(Error::io(format!("cannot write {}", partial.display()), e));
            }
            Ok((Ok(tally), status)) => (tally, status),
        };
        drop(proc); // kills whatever is left of the group, so stderr closes
        if let Some(task) = err_task {
            let abort = task.abort_handle();
            if tokio::time::timeout(PIPE_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
        let captured = err.get();
        let stderr = captured.to_string_lossy();
        self.result.stderr = stderr.clone();
        self.result.truncated = captured.truncated();
        let status = status.map_err(|e| Error::io("cannot wait for the dump tool", e));
        self.result.exit_code = status.as_ref().ok().and_then(|s| s.code());
        let name = tool.file_name().map_or_else(
            || tool.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let verdict = match status {
            Err(e) => Err(e),
            Ok(s) if !s.success() => Err(Error::Tool {
                message: format!(
                    "{name} {}: {}",
                    describe_exit(s),
                    messages::summary(&stderr)
                ),
                retryable: messages::retryable(&stderr),
            }),
            Ok(_) if !messages::error_lines(&stderr).is_empty() => Err(Error::Tool {
                message: format!("{name} reported errors: {}", messages::summary(&stderr)),
                retryable: messages::retryable(&stderr),
            }),
            Ok(_) if !tally.edges.ends_with_trailer() => Err(Error::Tool {
                message: format!(
                    "{name} exited 0 but its output does not end with the `-- Dump completed` \
                     trailer: the dump is incomplete"
                ),
                retryable: true,
            }),
            Ok(_) => Ok(()),
        };
        let finished = match verdict {
            Ok(()) => finish(writer, &partial, &layout.finished(), &layout.dir).await,
            Err(e) => Err(e),
        };
        if let Err(e) = finished {
            remove_quietly(&partial);
            return Err(e);
        }
        Ok(tally)
    }
}

/// Flush, fsync, rename the partial into place, fsync the directory.
async fn finish(
    writer: BufWriter<tokio::fs::File>,
    partial: &Path,
    dump: &Path,
    dir: &Path,
) -> Result<(), Error> {
    let file = writer.into_inner();
    file.sync_all()
        .await
        .map_err(|e| Error::io(format!("cannot fsync {}", partial.display()), e))?;
    drop(file);
    tokio::fs::rename(partial, dump)
        .await
        .map_err(|e| Error::io(format!("cannot rename {} into place", partial.display()), e))?;
    paths::fsync_dir(dir).map_err(|e| Error::io(format!("cannot fsync {}", dir.display()), e))
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

/// The job's `result.data`: the manifest plus where the files are.
pub(crate) fn result_data(
    manifest: &Manifest,
    dump: &Path,
    manifest_path: &Path,
) -> serde_json::Value {
    let mut value = serde_json::to_value(manifest).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("path".into(), dump.display().to_string().into());
        map.insert(
            "manifest_path".into(),
            manifest_path.display().to_string().into(),
        );
    }
    value
}
