//! Logging of the service: a service has no console, so tracing goes to
//! `%ProgramData%\Baton\logs\agent.log` (appended; at start a file over
//! [`ROTATE_BYTES`] is moved to `agent.log.1`, replacing the previous one).
//! Same filter rules as [`crate::logging`]: the config's `log_level`, unless
//! `RUST_LOG` is set.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::logging::Error;

/// A log file larger than this at start is rotated.
pub const ROTATE_BYTES: u64 = 16 * 1024 * 1024;

/// `agent.log` → `agent.log.1`.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".1");
    path.with_file_name(name)
}

/// Move `path` aside when it is over `limit` bytes. Returns whether it did.
pub fn rotate_if_large(path: &Path, limit: u64) -> std::io::Result<bool> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > limit => {
            let old = rotated(path);
            let _ = std::fs::remove_file(&old);
            std::fs::rename(path, &old)?;
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Install the global subscriber writing to `path` (its folder must exist).
pub fn init(level: &str, path: &Path) -> Result<(), Error> {
    let env_filter = crate::logging::env_filter(level)?;
    let cannot = |e: std::io::Error| Error::Init(format!("cannot open {}: {e}", path.display()));
    rotate_if_large(path, ROTATE_BYTES).map_err(cannot)?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(cannot)?;
    tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_target(false)
        .try_init()
        .map_err(|e| Error::Init(e.to_string()))
}

#[cfg(test)]
mod tests;
