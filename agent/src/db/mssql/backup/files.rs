//! The files of a native backup:
//! `<backup_dir>/<connection>/<database>/<YYYYMMDDTHHMMSSZ>-job<id>.bak`
//! (`.bak.partial` while SQL Server writes and the agent verifies it) and
//! `<stem>.manifest.json`; the sha256 of the file, its durable rename, and
//! the removal of an unfinished file.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::Error;
pub use crate::db::common::paths::Layout;
use crate::db::common::paths::{self, Suffixes};

/// Suffix of a finished, verified backup.
pub const BAK_SUFFIX: &str = ".bak";
/// Suffix of a backup being written or verified.
pub const BAK_PARTIAL_SUFFIX: &str = ".bak.partial";
/// The suffixes of native backups (for retention).
pub const BAK: Suffixes = Suffixes {
    finished: BAK_SUFFIX,
    partial: BAK_PARTIAL_SUFFIX,
};

/// Bytes read at a time when hashing.
const CHUNK: usize = 64 * 1024;
/// Attempts to remove an unfinished file, and the pause between them (SQL
/// Server may still hold the file for a moment after a cancel).
const REMOVE_TRIES: u32 = 5;
const REMOVE_PAUSE: Duration = Duration::from_millis(500);

/// Create the backup directory and its missing parents (0750).
pub(super) fn create_dir(dir: &Path) -> Result<(), Error> {
    paths::create_dirs(dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))
}

/// The sha256 (hex) of a file, read in 64 KiB chunks.
pub(super) fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hex::encode(hash.finalize()))
}

/// Rename the verified partial into place and flush the directory.
pub(super) fn finish(partial: &Path, backup: &Path, dir: &Path) -> Result<(), Error> {
    std::fs::rename(partial, backup)
        .map_err(|e| Error::io(format!("cannot rename {} into place", partial.display()), e))?;
    paths::fsync_dir(dir).map_err(|e| Error::io(format!("cannot fsync {}", dir.display()), e))
}

/// Remove an unfinished file, retrying for about two seconds; whether it is
/// gone (or never existed).
pub(super) async fn remove_unfinished(path: &Path) -> bool {
    for attempt in 1..=REMOVE_TRIES {
        match std::fs::remove_file(path) {
            Ok(()) => {
                info!(file = %path.display(), "Removed an unfinished backup file");
                if let Some(dir) = path.parent() {
                    let _ = paths::fsync_dir(dir);
                }
                return true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
            Err(e) if attempt == REMOVE_TRIES => {
                warn!(file = %path.display(), error = %e, "Cannot remove an unfinished backup file");
            }
            Err(_) => tokio::time::sleep(REMOVE_PAUSE).await,
        }
    }
    false
}

#[cfg(all(test, unix))]
mod tests;
