//! Logging of the service: a service has no console, so tracing goes to
//! `%ProgramData%\Baton\logs\agent.log` (appended; at start a file over
//! [`ROTATE_BYTES`] is moved to `agent.log.1`, replacing the previous one).
//! Same filter rules and formats as [`crate::logging`]: the config's
//! `log_level` (unless `RUST_LOG` is set) and `log_format`.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use baton_proto::config::LogFormat;

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

/// Install the global subscriber writing `format` lines to `path` (its
/// folder must exist).
pub fn init(level: &str, format: LogFormat, path: &Path) -> Result<(), Error> {
    let cannot = |e: std::io::Error| Error::Init(format!("cannot open {}: {e}", path.display()));
    rotate_if_large(path, ROTATE_BYTES).map_err(cannot)?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(cannot)?;
    crate::logging::install(level, format, Mutex::new(file), false)
}

#[cfg(test)]
mod tests;
