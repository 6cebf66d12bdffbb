//! The `command` kind: run an allow-listed program, no shell, in its own process group.
//!
//! The environment is cleared, then PATH/HOME/LANG/TZ are copied from the
//! agent and the job's variables added — only those named in `[command]
//! allow_env` (none by default: `LD_PRELOAD` would run anything). stdout and stderr are read at the same
//! time, each kept up to a bound, and both feed the rolling log tail. On
//! timeout or cancel the whole process group gets SIGTERM, then SIGKILL after a
//! short grace; on lease loss it gets SIGKILL at once (another agent may be
//! taking the job over). Whatever is left of the group when the program ends is
//! killed too, so no stray grandchild outlives its job.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use baton_proto::{CommandSpec, Completion, JobKind, JobResult, JobSpec};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::capture::{self, SharedBounded};
pub use super::groups::ProcessGroups;
use super::groups::{GroupGuard, Sig, is_executable};
use super::{BoxFuture, CancelReason, Error, Executor, Job, Outcome};
use crate::config::command::CommandConfig;

/// Variables copied from the agent's environment into every command's.
pub const INHERITED_ENV: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];
/// Time between SIGTERM and SIGKILL.
pub const DEFAULT_TERM_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for the output pipes to close once the program is gone.
const PIPE_GRACE: Duration = Duration::from_secs(1);

/// Settings of the command executor.
#[derive(Debug, Clone)]
pub struct CommandSettings {
    /// Allowed programs (absolute paths or bare names).
    pub allow: Vec<String>,
    /// Environment variables a job may set (`[command] allow_env`).
    pub allow_env: Vec<String>,
    /// Bytes kept per stream.
    pub max_output_bytes: usize,
    /// Time between SIGTERM and SIGKILL.
    pub term_grace: Duration,
    /// Variables every command starts with (before the job's own).
    pub base_env: Vec<(OsString, OsString)>,
    /// PATH used to resolve bare program names.
    pub search_path: Option<OsString>,
}

impl CommandSettings {
    /// From the `[command]` config, with PATH/HOME/LANG/TZ taken from this process.
    pub fn from_config(config: &CommandConfig) -> Self {
        let base_env = INHERITED_ENV
            .iter()
            .filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
            .collect();
        CommandSettings {
            allow: config.allow.clone(),
            allow_env: config.allow_env.clone(),
            max_output_bytes: config.max_output_bytes,
            term_grace: DEFAULT_TERM_GRACE,
            base_env,
            search_path: std::env::var_os("PATH"),
        }
    }
}

/// Runs `command` jobs.
#[derive(Debug, Clone)]
pub struct CommandExecutor {
    settings: CommandSettings,
    groups: ProcessGroups,
}

impl CommandExecutor {
    /// An executor with these settings.
    pub fn new(settings: CommandSettings) -> Self {
        Self::with_groups(settings, ProcessGroups::default())
    }

    /// An executor that records its process groups in `groups`.
    pub fn with_groups(settings: CommandSettings, groups: ProcessGroups) -> Self {
        CommandExecutor { settings, groups }
    }

    /// The process groups of running commands.
    pub fn process_groups(&self) -> ProcessGroups {
        self.groups.clone()
    }

    /// The program to start for `program`, if the allow-list has it.
    pub fn resolve(&self, program: &str) -> Result<PathBuf, String> {
        if !self.settings.allow.iter().any(|a| a == program) {
            return Err(format!(
                "program {program:?} is not in this agent's command allow-list"
            ));
        }
        let path = Path::new(program);
        if path.is_absolute() {
            return Ok(path.to_path_buf());
        }
        let search = self.settings.search_path.as_deref().unwrap_or_default();
        std::env::split_paths(search)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| format!("program {program:?} was not found in the agent's PATH"))
    }

    /// Refuse a job that sets a variable `[command] allow_env` does not name.
    fn check_env(&self, spec: &CommandSpec) -> Result<(), String> {
        match spec
            .env
            .keys()
            .find(|k| !self.settings.allow_env.contains(k))
        {
            Some(name) => Err(format!(
                "environment variable {name:?} is not in this agent's [command] allow_env \
                 (a job may set only the variables listed there)"
            )),
            None => Ok(()),
        }
    }

    async fn run(&self, job: Job) -> Outcome {
        let JobSpec::Command(spec) = &job.spec else {
            let kind = job.spec.kind();
            return Outcome::failed(false, format!("a command executor got a {kind} job"));
        };
        let program = match self.resolve(&spec.program) {
            Ok(p) => p,
            Err(msg) => return Outcome::failed(false, msg),
        };
        if let Err(msg) = self.check_env(spec) {
            return Outcome::failed(false, msg);
        }
        let mut child = match self.spawn(&program, spec) {
            Ok(c) => c,
            Err(e) => return Outcome::failed(false, e.to_string()),
        };
        let guard = GroupGuard::new(&self.groups, child.id());
        debug!(pid = child.id(), program = %program.display(), "Command started");

        let limit = self.settings.max_output_bytes;
        let (out, err) = (SharedBounded::new(limit), SharedBounded::new(limit));
        let readers = [
            child
                .stdout
                .take()
                .map(|s| tokio::spawn(capture::drain(s, out.clone(), job.progress.clone()))),
            child
                .stderr
                .take()
                .map(|s| tokio::spawn(capture::drain(s, err.clone(), job.progress.clone()))),
        ];

        let deadline = job.timeout.map(|t| Instant::now() + t);
        let stop = tokio::select! {
            biased;
            reason = job.cancel.cancelled() => Stop::Cancel(reason),
            () = sleep_until_opt(deadline) => Stop::Timeout,
            status = child.wait() => Stop::Exited(status),
        };
        let (stop, status) = match stop {
            Stop::Exited(status) => (StopKind::Exited, status),
            Stop::Cancel(reason) => {
                let now = reason == CancelReason::LeaseLost;
                let status = self.terminate(&mut child, &guard, now).await;
                (StopKind::Cancel(reason), status)
            }
            Stop::Timeout => (
                StopKind::Timeout,
                self.terminate(&mut child, &guard, false).await,
            ),
        };
        // Kill whatever is left of the group so the pipes close.
        drop(guard);
        for reader in readers.into_iter().flatten() {
            let abort = reader.abort_handle();
            if tokio::time::timeout(PIPE_GRACE, reader).await.is_err() {
                warn!("Output pipe still open after the command ended; output cut");
                abort.abort();
            }
        }
        ended(&job, stop, status, &out, &err)
    }

    fn spawn(&self, program: &Path, spec: &CommandSpec) -> Result<Child, Error> {
        let mut cmd = Command::new(program);
        cmd.args(&spec.args)
            .env_clear()
            .envs(self.settings.base_env.iter().map(|(k, v)| (k, v)))
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        super::deathsig::die_with_agent(&mut cmd);
        if let Some(dir) = &spec.working_dir {
            cmd.current_dir(dir);
        }
        cmd.spawn().map_err(|source| Error::Spawn {
            program: spec.program.clone(),
            source,
        })
    }

    /// Stop the program: SIGTERM to the group, SIGKILL after the grace (or at once).
    async fn terminate(
        &self,
        child: &mut Child,
        guard: &GroupGuard,
        at_once: bool,
    ) -> std::io::Result<ExitStatus> {
        if !at_once {
            guard.signal(Sig::Term);
            if let Ok(status) = tokio::time::timeout(self.settings.term_grace, child.wait()).await {
                return status;
            }
        }
        guard.signal(Sig::Kill);
        if !guard.has_group() {
            let _ = child.start_kill();
        }
        child.wait().await
    }
}

impl Executor for CommandExecutor {
    fn kind(&self) -> JobKind {
        JobKind::Command
    }

    fn available(&self) -> bool {
        !self.settings.allow.is_empty()
    }

    fn execute(&self, job: Job) -> BoxFuture<'_, Outcome> {
        Box::pin(self.run(job))
    }
}

enum Stop {
    Cancel(CancelReason),
    Timeout,
    Exited(std::io::Result<ExitStatus>),
}

enum StopKind {
    Cancel(CancelReason),
    Timeout,
    Exited,
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = nix::sys::signal::Signal::try_from(sig)
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|_| format!("signal {sig}"));
            return format!("killed by signal {name} ({sig})");
        }
    }
    format!("ended abnormally ({status})")
}

/// The outcome of a command that ended (`stop` says how), with its output.
fn ended(
    job: &Job,
    stop: StopKind,
    status: std::io::Result<ExitStatus>,
    out: &SharedBounded,
    err: &SharedBounded,
) -> Outcome {
    let (out, err) = (out.get().encode(), err.get().encode());
    let result = JobResult {
        exit_code: status.as_ref().ok().and_then(ExitStatus::code),
        stdout: out.text,
        stdout_encoding: out.encoding,
        stderr: err.text,
        stderr_encoding: err.encoding,
        truncated: out.cut || err.cut,
        data: None,
    };
    let failed = |error: String, result: JobResult| Outcome {
        completion: Completion::Failed { retryable: true },
        result,
        error: Some(error),
    };
    match (stop, status) {
        (StopKind::Cancel(reason), _) => Outcome::cancelled(reason, result),
        (StopKind::Timeout, _) => Outcome::timed_out(job.timeout.unwrap_or_default(), result),
        (StopKind::Exited, Err(e)) => failed(format!("cannot wait for the command: {e}"), result),
        (StopKind::Exited, Ok(s)) if s.success() => Outcome::succeeded(result),
        (StopKind::Exited, Ok(s)) => failed(describe_exit(s), result),
    }
}

#[cfg(all(test, unix))]
mod tests;
