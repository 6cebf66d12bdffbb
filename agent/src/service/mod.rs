//! The Windows service `BatonAgent`: `baton-agent service run|install|uninstall`.
//!
//! - `service run` is what the Service Control Manager (SCM) starts. The service
//!   main reports StartPending, then Running once the agent is up, StopPending when
//!   Stop, Shutdown or Preshutdown arrives — which fires the agent's one shutdown
//!   token, the same drain as SIGTERM on Linux — and Stopped with the agent's exit
//!   code (a non-zero code counts as a failure for the recovery actions).
//! - `service install` registers the service: automatic start, LocalSystem, command
//!   line `"<exe>" service run [--config PATH]`, restart on failure
//!   ([`RESTART_DELAYS`], counter reset after [`FAILURE_RESET`]). The MSI registers
//!   the same service through its ServiceInstall table, which cannot hold failure
//!   actions, so the service also sets them on itself at each start.
//! - `service uninstall` stops and removes it; files stay.
//!
//! Files live under `%ProgramData%\Baton\` ([`paths`]), created on first run with an
//! ACL limited to SYSTEM and Administrators; as a service the agent logs to
//! `%ProgramData%\Baton\logs\agent.log` ([`logfile`]).
//!
//! Everything but the SCM glue is plain Rust and tested on Linux; the glue is in
//! `windows.rs` (compiled on Windows only). On other systems the commands fail
//! with [`Error::Unsupported`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub mod logfile;
pub mod paths;

#[cfg(windows)]
mod windows;

/// The service name (`sc.exe query BatonAgent`). The MSI uses the same name.
pub const SERVICE_NAME: &str = "BatonAgent";
/// The name shown in services.msc.
pub const DISPLAY_NAME: &str = "Baton Agent";
/// The description shown in services.msc.
pub const DESCRIPTION: &str = "Baton agent: runs database jobs (procedures, SQL batches, backups, commands) for the Baton controller.";
/// Delays of the restart actions after the first, second and later failures.
pub const RESTART_DELAYS: [Duration; 3] = [
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
];
/// A day without failure resets the failure counter.
pub const FAILURE_RESET: Duration = Duration::from_secs(24 * 3600);
/// Added to the agent's `shutdown_grace` in the StopPending wait hint (releasing
/// leases and flushing the outbox after the grace).
pub const STOP_MARGIN: Duration = Duration::from_secs(30);

/// Service failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not on Windows.
    #[error(
        "`baton-agent service` manages the Windows service and works only on Windows; \
         on Linux run the agent under systemd (baton-agent.service)"
    )]
    Unsupported,
    /// A call to the Service Control Manager failed.
    #[error("{action}: {reason}")]
    Scm {
        /// What was being done.
        action: String,
        /// The Windows error.
        reason: String,
    },
    /// A file or directory could not be created.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// `icacls` refused or failed.
    #[error("cannot restrict the ACL of {path} to SYSTEM and Administrators: {reason}")]
    Acl {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// An I/O error with context.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// What the service main hands to the agent: the shutdown token (cancelled by
/// Stop, Shutdown and Preshutdown) and a way to report that the agent is up.
#[derive(Clone)]
pub struct Session {
    /// The agent's one shutdown token.
    pub shutdown: CancellationToken,
    started: Arc<dyn Fn(Duration) + Send + Sync>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session whose `started` calls `on_started` (the service main reports Running).
    pub fn new(
        shutdown: CancellationToken,
        on_started: Arc<dyn Fn(Duration) + Send + Sync>,
    ) -> Self {
        Session {
            shutdown,
            started: on_started,
        }
    }

    /// Report Running. `shutdown_grace` sizes the StopPending wait hint.
    pub fn started(&self, shutdown_grace: Duration) {
        (self.started)(shutdown_grace);
    }
}

/// The agent as the service runs it: gets the session, returns the exit code
/// (0: stopped cleanly; otherwise reported as a service-specific error).
pub type Entry = Box<dyn FnOnce(Session) -> u32 + Send>;

/// What `service install` registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOptions {
    /// The agent executable (absolute).
    pub executable: PathBuf,
    /// `--config` for the service's command line (absolute), when not the default.
    pub config: Option<PathBuf>,
}

/// The service's launch arguments: `service run [--config PATH]`.
pub fn launch_arguments(config: Option<&Path>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["service".into(), "run".into()];
    if let Some(path) = config {
        args.push("--config".into());
        args.push(path.as_os_str().to_owned());
    }
    args
}

/// The StopPending wait hint for a drain of `shutdown_grace`.
pub fn stop_wait_hint(shutdown_grace: Duration) -> Duration {
    shutdown_grace.saturating_add(STOP_MARGIN)
}

/// Run as the service: blocks until the SCM stops it. `entry` runs on the service thread.
pub fn run(entry: Entry) -> Result<(), Error> {
    #[cfg(windows)]
    {
        windows::run(entry)
    }
    #[cfg(not(windows))]
    {
        drop(entry);
        Err(Error::Unsupported)
    }
}

/// Register the service (automatic start, LocalSystem, restart on failure).
/// Returns warnings (a part of the recovery settings Windows refused).
pub fn install(options: &InstallOptions) -> Result<Vec<String>, Error> {
    #[cfg(windows)]
    {
        windows::install(options)
    }
    #[cfg(not(windows))]
    {
        let _ = options;
        Err(Error::Unsupported)
    }
}

/// Stop the service if it runs, then remove it.
pub fn uninstall() -> Result<(), Error> {
    #[cfg(windows)]
    {
        windows::uninstall()
    }
    #[cfg(not(windows))]
    {
        Err(Error::Unsupported)
    }
}

#[cfg(test)]
mod tests;
