//! The files of a native backup:
//! `<backup_dir>/<connection>/<database>/<YYYYMMDDTHHMMSSZ>-job<id>.bak`
//! (`.bak.partial` while SQL Server writes and the agent verifies it) and
//! `<stem>.manifest.json`; the sha256 of the file, its durable rename, and
//! the removal of an unfinished file.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::Error;
use crate::db::dump::paths::{
    self, DumpName, MANIFEST_SUFFIX, MANIFEST_TMP_SUFFIX, Suffixes, safe_component,
};

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

/// The files of one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `<backup_dir>/<connection>/<database>`.
    pub dir: PathBuf,
    /// The stem (start time and job).
    pub name: DumpName,
}

impl Layout {
    /// The layout of a backup of `database` on `connection` under `root`.
    pub fn new(
        root: &Path,
        connection: &str,
        database: &str,
        name: DumpName,
    ) -> Result<Layout, Error> {
        if !safe_component(connection) {
            return Err(Error::Setup(format!(
                "connection name {connection:?} cannot be a directory name"
            )));
        }
        if !safe_component(database) {
            return Err(Error::InvalidDatabase(database.to_owned()));
        }
        Ok(Layout {
            dir: root.join(connection).join(database),
            name,
        })
    }

    fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(self.file_name(suffix))
    }

    /// `<stem><suffix>`.
    pub fn file_name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.name.stem())
    }

    /// The verified backup.
    pub fn backup(&self) -> PathBuf {
        self.file(BAK_SUFFIX)
    }

    /// The backup while SQL Server writes it and it is verified.
    pub fn partial(&self) -> PathBuf {
        self.file(BAK_PARTIAL_SUFFIX)
    }

    /// The manifest.
    pub fn manifest(&self) -> PathBuf {
        self.file(MANIFEST_SUFFIX)
    }

    /// The manifest while it is written.
    pub fn manifest_tmp(&self) -> PathBuf {
        self.file(MANIFEST_TMP_SUFFIX)
    }
}

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
#[path = "files_tests.rs"]
mod tests;
