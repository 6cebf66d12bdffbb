//! Signals: the first SIGTERM or Ctrl-C starts a graceful shutdown, the second ends it.

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Signal handling failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A handler could not be installed.
    #[error("cannot install the signal handler: {0}")]
    Install(#[from] std::io::Error),
}

/// Installed signal handlers.
#[derive(Debug)]
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
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
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }

    /// Fire `shutdown` on the first signal; return on the second (exit at once then).
    pub async fn watch(mut self, shutdown: CancellationToken) {
        let first = self.next().await;
        info!(signal = first, "Shutdown requested");
        shutdown.cancel();
        let second = self.next().await;
        warn!(signal = second, "Second signal: exiting at once");
    }
}
