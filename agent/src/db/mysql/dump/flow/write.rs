//! Steps 6 and 7 of a dump: the tool's output streamed through zstd into
//! `<stem>.sql.zst.partial`, the success criteria, then fsync, rename and
//! fsync of the directory. Any failure removes the partial file.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use baton_proto::Progress;
use chrono::Utc;
use tokio::io::BufWriter;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::info;

use super::super::process::{Proc, Spawn, describe_exit, terminate};
use super::super::stream::{self, Tally, human_bytes};
use super::super::{Error, Stop, messages};
use super::{Access, BASE_FLAGS, PROGRESS_EVERY, Run, Started, Tool, Written, remove_quietly};
use crate::db::common::paths::{self, Layout};
use crate::executor::CancelReason;
use crate::executor::capture::{self, SharedBounded};

/// How long the stderr pipe may stay open after the tool ended.
const PIPE_GRACE: Duration = Duration::from_secs(1);

/// The compressed file being written.
type Writer = BufWriter<tokio::fs::File>;

/// The tool while it runs: its process group, the file, its stderr.
struct Running {
    proc: Proc,
    writer: Writer,
    stderr: SharedBounded,
    stderr_task: Option<JoinHandle<()>>,
}

impl Run<'_> {
    /// Steps 6 and 7: `<tool> --defaults-extra-file=F <BASE_FLAGS> [extra
    /// flags] <database>` into the partial file, checked and renamed.
    pub(super) async fn write(
        &mut self,
        tool: &Tool,
        access: &Access,
        layout: Layout,
        started: Started,
    ) -> Result<Written, Error> {
        let mut arguments: Vec<String> = BASE_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        arguments.extend(self.conn.dump.extra_flags.iter().cloned());
        arguments.push(self.spec.database.clone());
        let partial = layout.partial();
        let running = self
            .start_tool(&tool.path, &access.defaults_file, &arguments, &layout)
            .await?;
        let written = match self.pump(running, &partial).await {
            Ok((tally, status, writer)) => match self.judge(&tool.path, &tally, status) {
                Ok(()) => finish(writer, &partial, &layout.finished(), &layout.dir)
                    .await
                    .map(|()| tally),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let tally = written.inspect_err(|_| remove_quietly(&partial))?;
        Ok(Written {
            layout,
            started: started.at,
            ended: Utc::now(),
            elapsed: started.clock.elapsed(),
            arguments,
            tally,
        })
    }

    /// Create the directory and the partial file, start the tool.
    async fn start_tool(
        &self,
        tool: &Path,
        defaults_file: &Path,
        arguments: &[String],
        layout: &Layout,
    ) -> Result<Running, Error> {
        let settings = &self.exec.settings;
        let partial = layout.partial();
        paths::create_dirs(&layout.dir)
            .map_err(|e| Error::io(format!("cannot create {}", layout.dir.display()), e))?;
        let file = paths::create_new(&partial)
            .map_err(|e| Error::io(format!("cannot create {}", partial.display()), e))?;
        let started = Spawn {
            program: tool,
            defaults: defaults_file,
            args: arguments.iter().map(OsString::from).collect(),
            stdin: false,
            env: &settings.base_env,
            groups: &self.exec.groups,
        }
        .start();
        let mut proc = started.inspect_err(|_| remove_quietly(&partial))?;
        info!(
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
        let stderr = SharedBounded::new(settings.max_stderr_bytes);
        let stderr_task =
            proc.child.stderr.take().map(|s| {
                tokio::spawn(capture::drain(s, stderr.clone(), self.job.progress.clone()))
            });
        Ok(Running {
            proc,
            writer: BufWriter::with_capacity(256 * 1024, tokio::fs::File::from_std(file)),
            stderr,
            stderr_task,
        })
    }

    /// Stream stdout through zstd into the file until the tool ends (or the
    /// job is stopped: the group is killed); keep its stderr in the result.
    async fn pump(
        &mut self,
        mut running: Running,
        partial: &Path,
    ) -> Result<(Tally, std::io::Result<ExitStatus>, Writer), Error> {
        let term_grace = self.exec.settings.term_grace;
        let level = self.exec.settings.zstd_level;
        let stdout = running.proc.child.stdout.take();
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
        let (proc, writer) = (&mut running.proc, &mut running.writer);
        let pumped = tokio::select! {
            biased;
            stop = self.stop.stopped() => Err(stop),
            r = async {
                let tally = match stdout {
                    Some(out) => stream::pump(out, writer, level, PROGRESS_EVERY, report).await,
                    None => Err(std::io::Error::other("the tool's stdout is not a pipe")),
                };
                (tally, proc.child.wait().await)
            } => Ok(r),
        };
        let (tally, status) = match pumped {
            Err(stop) => {
                let at_once = stop == Stop::Cancel(CancelReason::LeaseLost);
                let _ = terminate(&mut running.proc, at_once, term_grace).await;
                return Err(Error::Stopped(stop));
            }
            Ok((Err(e), _)) => {
                let _ = terminate(&mut running.proc, true, term_grace).await;
                return Err(Error::io(format!("cannot write {}", partial.display()), e));
            }
            Ok((Ok(tally), status)) => (tally, status),
        };
        let Running {
            proc,
            writer,
            stderr,
            stderr_task,
        } = running;
        drop(proc); // kills whatever is left of the group, so stderr closes
        if let Some(task) = stderr_task {
            let abort = task.abort_handle();
            if tokio::time::timeout(PIPE_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
        let captured = stderr.get();
        self.result.stderr = captured.to_string_lossy();
        self.result.truncated = captured.truncated();
        Ok((tally, status, writer))
    }

    /// Step 7: exit status 0, no error line on stderr, and the SQL ends with
    /// the `-- Dump completed` trailer.
    fn judge(
        &mut self,
        tool: &Path,
        tally: &Tally,
        status: std::io::Result<ExitStatus>,
    ) -> Result<(), Error> {
        let status = status.map_err(|e| Error::io("cannot wait for the dump tool", e))?;
        self.result.exit_code = status.code();
        let stderr = &self.result.stderr;
        let name = tool.file_name().map_or_else(
            || tool.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let hint = messages::hint(stderr, self.account.as_deref());
        if !status.success() {
            return Err(Error::Tool {
                message: format!(
                    "{name} {}: {}{hint}",
                    describe_exit(status),
                    messages::summary(stderr)
                ),
                retryable: messages::retryable(stderr),
            });
        }
        if !messages::error_lines(stderr).is_empty() {
            return Err(Error::Tool {
                message: format!(
                    "{name} reported errors: {}{hint}",
                    messages::summary(stderr)
                ),
                retryable: messages::retryable(stderr),
            });
        }
        if !tally.edges.ends_with_trailer() {
            return Err(Error::Tool {
                message: format!(
                    "{name} exited 0 but its output does not end with the `-- Dump completed` \
                     trailer: the dump is incomplete"
                ),
                retryable: true,
            });
        }
        Ok(())
    }
}

/// Flush, fsync, rename the partial into place, fsync the directory.
async fn finish(writer: Writer, partial: &Path, dump: &Path, dir: &Path) -> Result<(), Error> {
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
