//! Signals: the first SIGTERM or Ctrl-C starts a graceful shutdown, the second ends it.
//! SIGHUP never stops the agent: it calls the reload hook (the log filter is
//! re-read from the config) and is logged.
//! On Windows consoles: Ctrl-C, Ctrl-Break and closing the console window. (The
//! Windows service gets Stop/Shutdown from the SCM instead: see [`crate::service`].)

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Signal handling failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A handler could not be installed.
    #[error("cannot install the signal handler: {0}")]
    Install(#[from] std::io::Error),
}

/// What SIGHUP runs: says what it reloaded, or why nothing was.
pub type Reload = Box<dyn FnMut() -> Result<String, String> + Send>;

/// The name [`Signals::next`] gives SIGHUP.
const HANGUP: &str = "SIGHUP";

/// Installed signal handlers.
#[derive(Debug)]
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
    #[cfg(windows)]
    ctrl_c: tokio::signal::windows::CtrlC,
    #[cfg(windows)]
    ctrl_break: tokio::signal::windows::CtrlBreak,
    #[cfg(windows)]
    ctrl_close: tokio::signal::windows::CtrlClose,
}

impl Signals {
    /// Install the handlers (call inside the runtime, before work starts).
    pub fn install() -> Result<Self, Error> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(windows)]
        {
            use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close};
            Ok(Signals {
                ctrl_c: ctrl_c()?,
                ctrl_break: ctrl_break()?,
                ctrl_close: ctrl_close()?,
            })
        }
        #[cfg(not(any(unix, windows)))]
        Ok(Signals {})
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
                _ = self.hup.recv() => HANGUP,
            }
        }
        #[cfg(windows)]
        {
            tokio::select! {
                _ = self.ctrl_c.recv() => "Ctrl-C",
                _ = self.ctrl_break.recv() => "Ctrl-Break",
                _ = self.ctrl_close.recv() => "console closed",
            }
        }
        #[cfg(not(any(unix, windows)))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }

    /// The next stopping signal; each SIGHUP in between calls `reload`.
    async fn next_stop(&mut self, reload: &mut Reload) -> &'static str {
        loop {
            let sig = self.next().await;
            if sig != HANGUP {
                return sig;
            }
            match reload() {
                Ok(reloaded) => info!(%reloaded, "Received SIGHUP; reloaded"),
                Err(e) => warn!(error = %e, "Received SIGHUP; nothing reloaded"),
            }
        }
    }

    /// Fire `shutdown` on the first stopping signal; return on the second
    /// (exit at once then). SIGHUP calls `reload`, which says what it reloaded.
    pub async fn watch(mut self, shutdown: CancellationToken, mut reload: Reload) {
        let first = self.next_stop(&mut reload).await;
        info!(signal = first, "Shutdown requested");
        shutdown.cancel();
        let second = self.next_stop(&mut reload).await;
        warn!(signal = second, "Second signal: exiting at once");
    }
}
