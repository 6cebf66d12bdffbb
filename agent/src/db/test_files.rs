//! For the tests of dump and backup files (both engines): dump names at a
//! given time, and what a directory holds.

use std::path::Path;

use baton_proto::JobId;
use chrono::{TimeZone, Utc};

use super::common::paths::DumpName;

/// The name of job `job_id`'s dump started `secs` after the epoch.
pub fn dump_name(secs: i64, job_id: JobId) -> DumpName {
    DumpName {
        started: Utc.timestamp_opt(secs, 0).single().expect("time"),
        job_id,
    }
}

/// The file names in `dir`, sorted; none when it cannot be read.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
