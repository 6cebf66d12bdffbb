//! Where dumps go: `<root>/<connection>/<database>/<YYYYMMDDTHHMMSSZ>-job<id>.sql.zst`
//! with `<same stem>.manifest.json` next to it, and the durable file moves
//! (fsync, atomic rename, fsync of the directory).
//!
//! The stem, the manifest's name and the file helpers are shared with SQL Server
//! native backups (`<stem>.bak`, see [`crate::db::mssql::backup`]): only the
//! suffixes of the finished and the partial file differ ([`Suffixes`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use baton_proto::JobId;
use chrono::{DateTime, NaiveDateTime, Utc};

/// Suffix of a finished dump.
pub const SQL_ZST_SUFFIX: &str = ".sql.zst";
/// Suffix of a dump being written.
pub const PARTIAL_SUFFIX: &str = ".sql.zst.partial";
/// Suffix of a manifest.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";
/// Suffix of a manifest being written.
pub(crate) const MANIFEST_TMP_SUFFIX: &str = ".manifest.json.tmp";

const TS_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// The suffixes of one kind of backup file: finished and being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suffixes {
    /// A finished file (`.sql.zst`, `.bak`).
    pub finished: &'static str,
    /// The file while it is written (`.sql.zst.partial`, `.bak.partial`).
    pub partial: &'static str,
}

/// MySQL/MariaDB dumps: `.sql.zst` and `.sql.zst.partial`.
pub const SQL_ZST: Suffixes = Suffixes {
    finished: SQL_ZST_SUFFIX,
    partial: PARTIAL_SUFFIX,
};

/// Whether `name` may be a path component and a tool argument: a valid name
/// not starting with a dot (so neither `.`, `..` nor a hidden file) or a dash
/// (which the tool would take for an option).
pub(crate) fn safe_component(name: &str) -> bool {
    baton_proto::valid_name(name) && !name.starts_with(['.', '-'])
}

/// The stem of a dump's files: when it started and which job made it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DumpName {
    /// Start of the dump (UTC, whole seconds).
    pub started: DateTime<Utc>,
    /// The job.
    pub job_id: JobId,
}

impl DumpName {
    /// The stem `<YYYYMMDDTHHMMSSZ>-job<id>`.
    pub fn stem(&self) -> String {
        format!("{}-job{}", self.started.format(TS_FORMAT), self.job_id)
    }

    /// Parse a finished dump's file name (`<stem>.sql.zst`).
    pub fn parse_dump(file_name: &str) -> Option<DumpName> {
        Self::parse_file(file_name, SQL_ZST_SUFFIX)
    }

    /// Parse a file name `<stem><suffix>` (e.g. `<stem>.bak`).
    pub fn parse_file(file_name: &str, suffix: &str) -> Option<DumpName> {
        Self::parse_stem(file_name.strip_suffix(suffix)?)
    }

    /// Parse a stem.
    pub fn parse_stem(stem: &str) -> Option<DumpName> {
        let (ts, job) = stem.split_once("-job")?;
        if ts.len() != 16 || job.is_empty() || !job.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let started = NaiveDateTime::parse_from_str(ts, TS_FORMAT).ok()?.and_utc();
        Some(DumpName {
            started,
            job_id: job.parse().ok()?,
        })
    }
}

/// A connection or database name that cannot be a directory name (each
/// module's `Error` has a variant for both).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadName {
    /// The connection's name.
    #[error("connection name {0:?} cannot be a directory name")]
    Connection(String),
    /// The database's name.
    #[error("database name {0:?} cannot be a directory name")]
    Database(String),
}

/// The files of one dump or native backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `<root>/<connection>/<database>`.
    pub dir: PathBuf,
    /// The stem (start time and job).
    pub name: DumpName,
    /// The suffixes of the finished and the partial file.
    pub suffixes: Suffixes,
}

impl Layout {
    /// The layout of a dump or backup of `database` on `connection` under `root`.
    pub fn new(
        root: &Path,
        connection: &str,
        database: &str,
        name: DumpName,
        suffixes: Suffixes,
    ) -> Result<Layout, BadName> {
        if !safe_component(connection) {
            return Err(BadName::Connection(connection.to_owned()));
        }
        if !safe_component(database) {
            return Err(BadName::Database(database.to_owned()));
        }
        Ok(Layout {
            dir: root.join(connection).join(database),
            name,
            suffixes,
        })
    }

    fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(self.file_name(suffix))
    }

    /// `<stem><suffix>`.
    pub fn file_name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.name.stem())
    }

    /// The finished dump or verified backup.
    pub fn finished(&self) -> PathBuf {
        self.file(self.suffixes.finished)
    }

    /// The file while it is written (and, for a backup, verified).
    pub fn partial(&self) -> PathBuf {
        self.file(self.suffixes.partial)
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

/// Create `dir` and its missing parents with mode 0750.
pub(crate) fn create_dirs(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o750);
    }
    builder.create(dir)
}

/// Flush a directory's entries (after a rename or delete in it).
pub(crate) fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Open a new file for writing (mode 0640); fails when it exists.
pub(crate) fn create_new(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o640);
    }
    options.open(path)
}

/// Write `bytes` to `path` atomically: write `tmp`, fsync, rename, fsync the directory.
pub(crate) fn write_atomic(path: &Path, tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let _ = std::fs::remove_file(tmp);
    let result = (|| {
        let mut f = create_new(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(tmp, path)?;
        match path.parent() {
            Some(dir) => fsync_dir(dir),
            None => Ok(()),
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

#[cfg(all(test, unix))]
mod tests;
