//! Logging: tracing to stderr, filtered by the config (`log_level`, `BATON_LOG`)
//! unless `RUST_LOG` is set, which then wins. The filter can be replaced while
//! running ([`reload`], on SIGHUP).

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

type Reloader = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Replaces the installed subscriber's filter (set by [`init`]).
static RELOAD: OnceLock<Reloader> = OnceLock::new();

/// Logging set-up failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The filter does not parse.
    #[error("bad log filter {filter:?}: {reason}")]
    Filter {
        /// The filter.
        filter: String,
        /// Why.
        reason: String,
    },
    /// A global subscriber was already set.
    #[error("logging is already initialised: {0}")]
    Init(String),
}

/// The filter: `RUST_LOG` when set and not blank, else `level` (the
/// configured one).
pub fn env_filter(level: &str) -> Result<EnvFilter, Error> {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| level.to_owned());
    EnvFilter::try_new(&filter).map_err(|e| Error::Filter {
        filter: filter.clone(),
        reason: e.to_string(),
    })
}

/// Install the global subscriber. `level` is the configured filter.
pub fn init(level: &str) -> Result<(), Error> {
    let env_filter = env_filter(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter_reloading();
    let handle = builder.reload_handle();
    builder.try_init().map_err(|e| Error::Init(e.to_string()))?;
    let _ = RELOAD.set(Box::new(move |f| {
        handle.reload(f).map_err(|e| e.to_string())
    }));
    Ok(())
}

/// Apply `level` (or `RUST_LOG` when set) to the running subscriber. Returns
/// whether a reloadable subscriber was installed.
pub fn reload(level: &str) -> Result<bool, Error> {
    let filter = env_filter(level)?;
    let Some(apply) = RELOAD.get() else {
        return Ok(false);
    };
    apply(filter).map_err(Error::Init)?;
    Ok(true)
}
