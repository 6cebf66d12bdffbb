//! Starting the tool and the client: no shell, a cleared environment, the
//! defaults file as the first argument, their own process group (recorded in
//! [`ProcessGroups`]), killed with the group when dropped; like commands, they
//! die with the agent (`executor::deathsig`, `executor::keeper`).

use std::ffi::OsString;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use super::Error;
use crate::executor::groups::{GroupGuard, ProcessGroups, Sig};

/// How a child gets started.
pub(crate) struct Spawn<'a> {
    /// The program.
    pub program: &'a Path,
    /// The defaults file (becomes the first argument).
    pub defaults: &'a Path,
    /// The other arguments.
    pub args: Vec<OsString>,
    /// Whether stdin is a pipe (else null).
    pub stdin: bool,
    /// The environment.
    pub env: &'a [(OsString, OsString)],
    /// Where the process group is recorded.
    pub groups: &'a ProcessGroups,
}

/// A running child with its group guard.
pub(crate) struct Proc {
    /// The child (pipes taken by the caller).
    pub child: Child,
    /// Kills the group when dropped.
    pub guard: GroupGuard,
}

impl Spawn<'_> {
    /// Start it.
    pub fn start(self) -> Result<Proc, Error> {
        let mut first = OsString::from("--defaults-extra-file=");
        first.push(self.defaults);
        let mut cmd = Command::new(self.program);
        cmd.arg(first)
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if self.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        crate::executor::deathsig::die_with_agent(&mut cmd);
        let child = cmd.spawn().map_err(|source| {
            Error::Setup(format!("cannot start {}: {source}", self.program.display()))
        })?;
        let guard = GroupGuard::new(self.groups, child.id());
        Ok(Proc { child, guard })
    }
}

/// Stop a child: SIGTERM to its group, SIGKILL after `grace` (or at once).
pub(crate) async fn terminate(
    proc: &mut Proc,
    at_once: bool,
    grace: Duration,
) -> std::io::Result<ExitStatus> {
    if !at_once {
        proc.guard.signal(Sig::Term);
        if let Ok(status) = tokio::time::timeout(grace, proc.child.wait()).await {
            return status;
        }
    }
    proc.guard.signal(Sig::Kill);
    if !proc.guard.has_group() {
        let _ = proc.child.start_kill();
    }
    proc.child.wait().await
}

/// How a child ended, in words.
pub(crate) fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("killed by signal {sig}");
        }
    }
    format!("ended abnormally ({status})")
}
