//! Retention, per `<dump_dir>/<connection>/<database>/` directory, after a
//! successful dump.
//!
//! A finished dump (`<ts>-job<id>.sql.zst`, with its `.manifest.json`) is
//! deleted when it is not among the newest `keep_last`, or when it is older
//! than `max_age` (its age comes from the time in its name). The dump just
//! written is never deleted. `.partial` files (and manifest temp files) belong
//! to dumps still running and are left alone, unless they are older than a
//! day, or are an earlier attempt's of the job that just finished (its
//! holder died: only one attempt of a job runs at a time, and this one is
//! done): then they are leftovers and go too. Other files are not touched.
//! (A restarted agent also removes the partials of the dumps its previous
//! run was killed in: `defaults::remove_leftover_dirs`.)
//!
//! [`apply`] works on MySQL dumps; [`apply_for`] on any kind of backup file
//! named `<stem><suffix>` (SQL Server's `.bak`), with the same rules.

use std::path::Path;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::paths::{DumpName, Layout, MANIFEST_SUFFIX, MANIFEST_TMP_SUFFIX, SQL_ZST, Suffixes};
#[cfg(all(test, unix))]
use super::paths::{PARTIAL_SUFFIX, SQL_ZST_SUFFIX};

/// Age past which a `.partial` is a leftover.
pub const LEFTOVER_AGE: Duration = Duration::from_secs(24 * 3600);

/// The dumps to delete among `dumps` (any order). `protect` is never chosen.
pub fn select(
    dumps: &[DumpName],
    keep_last: Option<u32>,
    max_age: Option<Duration>,
    now: DateTime<Utc>,
    protect: Option<&DumpName>,
) -> Vec<DumpName> {
    let mut sorted: Vec<&DumpName> = dumps.iter().collect();
    sorted.sort_by(|a, b| b.cmp(a)); // newest first
    let keep = keep_last.map_or(usize::MAX, |k| k as usize);
    let oldest_kept = max_age
        .and_then(|age| chrono::Duration::from_std(age).ok())
        .and_then(|age| now.checked_sub_signed(age));
    sorted
        .into_iter()
        .enumerate()
        .filter(|(i, name)| {
            let too_many = *i >= keep;
            let too_old = oldest_kept.is_some_and(|limit| name.started < limit);
            (too_many || too_old) && Some(*name) != protect
        })
        .map(|(_, name)| name.clone())
        .collect()
}

/// What retention did in one directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Dumps deleted (file names).
    pub deleted: Vec<String>,
    /// Leftover partial/temp files deleted.
    pub leftovers: Vec<String>,
    /// Files that could not be deleted, with why.
    pub errors: Vec<String>,
}

/// Apply retention to the MySQL dumps in `dir`.
pub fn apply(
    dir: &Path,
    keep_last: Option<u32>,
    max_age: Option<Duration>,
    now: DateTime<Utc>,
    protect: Option<&DumpName>,
) -> Report {
    apply_for(SQL_ZST, dir, keep_last, max_age, now, protect)
}

/// Apply retention to the files named `<stem><suffixes.finished>` in `dir`
/// (partial leftovers: `<stem><suffixes.partial>`).
pub fn apply_for(
    suffixes: Suffixes,
    dir: &Path,
    keep_last: Option<u32>,
    max_age: Option<Duration>,
    now: DateTime<Utc>,
    protect: Option<&DumpName>,
) -> Report {
    let mut report = Report::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            report.errors.push(format!("{}: {e}", dir.display()));
            return report;
        }
    };
    let mut dumps = Vec::new();
    let now_sys = SystemTime::now();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        if let Some(dump) = DumpName::parse_file(name, suffixes.finished) {
            dumps.push(dump);
        } else if name.ends_with(suffixes.partial) || name.ends_with(MANIFEST_TMP_SUFFIX) {
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now_sys.duration_since(m).ok());
            let same_job = DumpName::parse_file(name, suffixes.partial)
                .zip(protect)
                .is_some_and(|(partial, done)| partial.job_id == done.job_id);
            if same_job || age.is_some_and(|a| a > LEFTOVER_AGE) {
                remove(dir, name, &mut report.leftovers, &mut report.errors);
            }
        }
    }
    for dump in select(&dumps, keep_last, max_age, now, protect) {
        let stem = dump.stem();
        let before = report.errors.len();
        remove(
            dir,
            &format!("{stem}{}", suffixes.finished),
            &mut report.deleted,
            &mut report.errors,
        );
        if report.errors.len() == before {
            let mut manifests = Vec::new();
            remove(
                dir,
                &format!("{stem}{MANIFEST_SUFFIX}"),
                &mut manifests,
                &mut report.errors,
            );
        }
    }
    if !report.deleted.is_empty() || !report.leftovers.is_empty() {
        let _ = super::paths::fsync_dir(dir);
        info!(
            dir = %dir.display(),
            deleted = %report.deleted.join(","),
            leftovers = %report.leftovers.join(","),
            "Retention deleted old dumps"
        );
    }
    for e in &report.errors {
        warn!(dir = %dir.display(), error = %e, "Retention could not delete a file");
    }
    report
}

fn remove(dir: &Path, name: &str, done: &mut Vec<String>, errors: &mut Vec<String>) {
    match std::fs::remove_file(dir.join(name)) {
        Ok(()) => done.push(name.to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => errors.push(format!("{name}: {e}")),
    }
}

/// Retention in a finished job's directory, never touching that job's own
/// file; run in a blocking task whose log lines belong to the job's span.
/// The names deleted.
pub async fn after_success(
    suffixes: Suffixes,
    layout: &Layout,
    keep_last: Option<u32>,
    max_age: Option<Duration>,
) -> Vec<String> {
    let (dir, name) = (layout.dir.clone(), layout.name.clone());
    let span = tracing::Span::current();
    let report = tokio::task::spawn_blocking(move || {
        span.in_scope(|| apply_for(suffixes, &dir, keep_last, max_age, Utc::now(), Some(&name)))
    })
    .await;
    report.map(|r| r.deleted).unwrap_or_default()
}

#[cfg(all(test, unix))]
mod tests;
