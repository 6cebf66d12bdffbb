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

/// Write `text` to `path` as an executable (mode 0755) a test then runs.
///
/// Not with `std::fs::write`: while this process holds the file open for
/// writing, another test's thread may fork, and its child keeps a copy of
/// that descriptor until it execs — running the script in that window
/// fails with ETXTBSY ("Text file busy"; `bad_requests_fail_for_good` did,
/// now and then, under load). `install` writes the file in its own process,
/// which no fork of this one can inherit.
pub fn executable(path: &Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).expect("write the staged script");
    let status = std::process::Command::new("install")
        .args(["-m", "755"])
        .arg(&staged)
        .arg(path)
        .status()
        .expect("run install");
    assert!(status.success(), "install {} failed", path.display());
    std::fs::remove_file(&staged).expect("remove the staged script");
}
