//! The outbox: completions made durable before they are sent.
//!
//! One file per completion, `<state_dir>/outbox/<job_id>-<token>.json`, written
//! through a temp file, fsync, rename and fsync of the directory, so a file in
//! the outbox is always complete JSON. It is removed once the controller has
//! answered for good. Files left over from an earlier run are delivered at start.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use baton_proto::{CompleteRequest, FencingToken, JobId};
use serde::{Deserialize, Serialize};

/// Outbox failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system call failed.
    #[error("outbox {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not a valid entry.
    #[error("outbox {path}: not a valid completion: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One completion waiting for delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The job it completes.
    pub job_id: JobId,
    /// The body of `POST /v1/jobs/{job_id}/complete`.
    pub request: CompleteRequest,
}

impl Entry {
    /// The token of the grant it completes.
    pub fn token(&self) -> FencingToken {
        self.request.token
    }

    /// The file name for this entry.
    pub fn file_name(&self) -> String {
        format!("{}-{}.json", self.job_id, self.request.token)
    }
}

/// The outbox directory.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// Open (creating it 0700 if missing) `<state_dir>/outbox`.
    pub fn open(state_dir: &Path) -> Result<Self, Error> {
        let dir = state_dir.join("outbox");
        crate::config::create_private_dir(&dir).map_err(io(&dir))?;
        Ok(Outbox { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write `entry` durably; returns its path.
    pub fn write(&self, entry: &Entry) -> Result<PathBuf, Error> {
        let name = entry.file_name();
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let json = serde_json::to_vec_pretty(entry).map_err(|source| Error::Corrupt {
            path: path.clone(),
            source,
        })?;
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&json).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        self.sync_dir()?;
        Ok(path)
    }

    /// Remove a delivered (or dropped) entry.
    pub fn remove(&self, path: &Path) -> Result<(), Error> {
        match fs::remove_file(path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(path)(e)),
        }
    }

    /// Read one entry.
    pub fn read(&self, path: &Path) -> Result<Entry, Error> {
        let bytes = fs::read(path).map_err(io(path))?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Corrupt {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Paths of every waiting entry, oldest job first. Leftover temp files
    /// (a crash between create and rename) are removed: their completion was
    /// never durable, so it was never acknowledged to anyone either.
    pub fn pending(&self) -> Result<Vec<PathBuf>, Error> {
        let mut out = Vec::new();
        for item in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let item = item.map_err(io(&self.dir))?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
            } else if !name.starts_with('.') && name.ends_with(".json") {
                out.push(path);
            }
        }
        out.sort_by_key(|p| sort_key(p));
        Ok(out)
    }

    /// Move a file that cannot be read aside (`.bad`) so it is not retried forever.
    pub fn quarantine(&self, path: &Path) -> Result<PathBuf, Error> {
        let bad = path.with_extension("json.bad");
        fs::rename(path, &bad).map_err(io(path))?;
        self.sync_dir()?;
        Ok(bad)
    }

    fn sync_dir(&self) -> Result<(), Error> {
        #[cfg(unix)]
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }
}

/// `(job_id, token)` parsed from a file name, for a stable order.
fn sort_key(path: &Path) -> (i64, i64, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = stem
        .splitn(2, '-')
        .map(|p| p.parse::<i64>().unwrap_or(i64::MAX));
    let job = parts.next().unwrap_or(i64::MAX);
    let token = parts.next().unwrap_or(i64::MAX);
    (job, token, stem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::{Completion, JobResult};

    fn entry(job_id: JobId, token: FencingToken) -> Entry {
        Entry {
            job_id,
            request: CompleteRequest {
                token,
                completion: Completion::Failed { retryable: true },
                result: JobResult {
                    exit_code: Some(3),
                    stdout: "out é\n".into(),
                    stderr: String::new(),
                    truncated: true,
                    data: None,
                },
                error: Some("exited with status 3".into()),
            },
        }
    }

    #[test]
    fn write_read_remove_round_trip() {
        let state = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(state.path()).expect("open");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(outbox.dir())
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let e = entry(12, 3);
        let path = outbox.write(&e).expect("write");
        assert_eq!(path, outbox.dir().join("12-3.json"));
        assert_eq!(outbox.read(&path).expect("read"), e);
        assert_eq!(outbox.pending().expect("list"), vec![path.clone()]);
        outbox.remove(&path).expect("remove");
        assert!(outbox.pending().expect("list").is_empty());
        outbox.remove(&path).expect("removing twice is fine");
    }

    #[test]
    fn files_are_complete_json_and_no_temp_is_left() {
        let state = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(state.path()).expect("open");
        for (job, token) in [(2, 1), (10, 4), (2, 2)] {
            outbox.write(&entry(job, token)).expect("write");
        }
        let names: Vec<String> = fs::read_dir(outbox.dir())
            .expect("dir")
            .map(|i| i.expect("item").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.iter().all(|n| !n.ends_with(".tmp")));
        for path in outbox.pending().expect("list") {
            let value: serde_json::Value =
                serde_json::from_slice(&fs::read(&path).expect("read")).expect("complete JSON");
            assert_eq!(value["request"]["completion"]["outcome"], "failed");
        }
        let order: Vec<_> = outbox
            .pending()
            .expect("list")
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(order, ["2-1.json", "2-2.json", "10-4.json"]);
    }

    #[test]
    fn stale_temp_files_are_cleaned_and_bad_files_quarantined() {
        let state = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(state.path()).expect("open");
        let tmp = outbox.dir().join(".5-1.json.tmp");
        fs::write(&tmp, b"{\"job_id\": 5, \"req").expect("write");
        let bad = outbox.dir().join("6-1.json");
        fs::write(&bad, b"not json").expect("write");
        assert_eq!(outbox.pending().expect("list"), vec![bad.clone()]);
        assert!(!tmp.exists());
        assert!(matches!(outbox.read(&bad), Err(Error::Corrupt { .. })));
        let moved = outbox.quarantine(&bad).expect("quarantine");
        assert!(moved.exists());
        assert!(outbox.pending().expect("list").is_empty());
    }
}
