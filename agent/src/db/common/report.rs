//! What a `dump` job reports on either engine (MySQL's dump, SQL Server's
//! native backup): notes that go to the log tail and the progress, and how
//! the job ended when it did not succeed.

use std::path::{Path, PathBuf};

use baton_proto::{JobResult, Progress};
use tracing::{info, warn};

use super::paths::{self, Layout};
use crate::executor::stop::{self, Stop};
use crate::executor::{Job, Outcome, ProgressHandle};

/// Which `dump` executor reports (log lines and the log tail name it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `mariadb-dump`/`mysqldump` through zstd.
    Dump,
    /// SQL Server's `BACKUP DATABASE`.
    Backup,
    /// A `restore` job (either engine).
    Restore,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Dump => "dump",
            Kind::Backup => "backup",
            Kind::Restore => "restore",
        }
    }
}

/// A line in the log tail, and the progress message (with a percentage when known).
pub fn note(progress: &ProgressHandle, percent: Option<f32>, message: String) {
    progress.append_output(format!("{message}\n").as_bytes());
    progress.set_progress(Progress { percent, message });
}

/// The outcome of a job that was stopped (cancel, lease loss, timeout).
pub fn stopped(kind: Kind, stop: Stop, job: &Job, result: JobResult) -> Outcome {
    match (kind, stop) {
        (Kind::Dump, Stop::Cancel(reason)) => info!(reason = reason.as_str(), "Dump stopped"),
        (Kind::Dump, Stop::Timeout) => warn!("Dump timed out"),
        (Kind::Backup, Stop::Cancel(reason)) => info!(reason = reason.as_str(), "Backup stopped"),
        (Kind::Backup, Stop::Timeout) => warn!("Backup timed out"),
        (Kind::Restore, Stop::Cancel(reason)) => info!(reason = reason.as_str(), "Restore stopped"),
        (Kind::Restore, Stop::Timeout) => warn!("Restore timed out"),
    }
    stop::stopped(stop, job, result)
}

/// The outcome of a job that failed; the error goes to the log tail too.
pub fn failed(
    kind: Kind,
    retryable: bool,
    error: &dyn std::fmt::Display,
    job: &Job,
    result: JobResult,
) -> Outcome {
    match kind {
        Kind::Dump => warn!(retryable, error = %error, "Dump failed"),
        Kind::Backup => warn!(retryable, error = %error, "Backup failed"),
        Kind::Restore => warn!(retryable, error = %error, "Restore failed"),
    }
    job.progress
        .append_output(format!("{} failed: {error}\n", kind.word()).as_bytes());
    stop::failed(retryable, error.to_string(), result)
}

/// The job's `result.data`: the manifest plus where the files are (`path`:
/// the dump or backup, `manifest_path`).
pub fn result_data(
    manifest: &impl serde::Serialize,
    file: &Path,
    manifest_path: &Path,
) -> serde_json::Value {
    let mut value = serde_json::to_value(manifest).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("path".into(), file.display().to_string().into());
        map.insert(
            "manifest_path".into(),
            manifest_path.display().to_string().into(),
        );
    }
    value
}

/// Why a manifest could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// It could not be encoded as JSON.
    #[error("cannot encode the manifest: {0}")]
    Encode(serde_json::Error),
    /// The file could not be written (temp file, fsync, rename, fsync).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The manifest's path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The blocking task writing it failed.
    #[error("{0}")]
    Task(tokio::task::JoinError),
}

/// Write `<stem>.manifest.json` atomically (temp file, fsync, rename, fsync
/// of the directory); its path.
pub async fn write_manifest(
    layout: &Layout,
    manifest: &impl serde::Serialize,
) -> Result<PathBuf, Error> {
    let bytes = serde_json::to_vec_pretty(manifest).map_err(Error::Encode)?;
    let (path, tmp) = (layout.manifest(), layout.manifest_tmp());
    let target = path.clone();
    tokio::task::spawn_blocking(move || paths::write_atomic(&target, &tmp, &bytes))
        .await
        .map_err(Error::Task)?
        .map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}
