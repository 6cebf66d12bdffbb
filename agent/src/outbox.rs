//! The outbox: completions made durable before they are sent.
//!
//! One file per completion, `<state_dir>/outbox/<job_id>-<token>.json`, written
//! through a temp file, fsync, rename and fsync of the directory, so a file in
//! the outbox is always complete JSON. It is removed once the controller has
//! answered for good. Files left over from an earlier run are delivered at start.
//! Several completions can be written (or removed) together with one fsync of
//! the directory ([`Outbox::write_many`], [`Outbox::remove_many`]).
//!
//! Removed files are recycled rather than unlinked: renamed to `.spare-<job>-<token>`
//! (at most [`MAX_SPARES`]), and the next write truncates, fills and fsyncs a
//! spare before renaming it into place. Creating a file per job costs ext4 an
//! inode allocation, which under create/unlink churn scans past the recently
//! deleted inodes and was the agent's largest CPU cost in the throughput
//! benchmark. Spares start with a dot: never listed, never replayed; a spare
//! holds the bytes of an answered completion until reused (the directory is
//! 0700).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

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

/// Most recycled files kept for reuse.
pub const MAX_SPARES: usize = 256;

const SPARE_PREFIX: &str = ".spare-";

/// The outbox directory.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
    /// Recycled files, ready to be overwritten.
    spares: Arc<Mutex<Vec<PathBuf>>>,
}

impl Outbox {
    /// Open (creating it 0700 if missing) `<state_dir>/outbox`.
    pub fn open(state_dir: &Path) -> Result<Self, Error> {
        let dir = state_dir.join("outbox");
        crate::config::create_private_dir(&dir).map_err(io(&dir))?;
        let mut spares = Vec::new();
        for item in fs::read_dir(&dir).map_err(io(&dir))? {
            let item = item.map_err(io(&dir))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with(SPARE_PREFIX) {
                if spares.len() < MAX_SPARES {
                    spares.push(item.path());
                } else {
                    let _ = fs::remove_file(item.path());
                }
            }
        }
        Ok(Outbox {
            dir,
            spares: Arc::new(Mutex::new(spares)),
        })
    }

    fn spares(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.spares.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Write and fsync `json` under a temporary (dot) name: a recycled file
    /// when one is left, else a new temp file. Returns that name.
    fn stage(&self, name: &str, json: &[u8]) -> Result<PathBuf, Error> {
        while let Some(spare) = self.spares().pop() {
            let opened = fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&spare);
            if let Ok(mut file) = opened {
                file.write_all(json).map_err(io(&spare))?;
                file.sync_all().map_err(io(&spare))?;
                return Ok(spare);
            }
        }
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(json).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        Ok(tmp)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write `entry` durably; returns its path.
    pub fn write(&self, entry: &Entry) -> Result<PathBuf, Error> {
        self.write_many(std::slice::from_ref(entry))
            .pop()
            .unwrap_or_else(|| {
                Err(Error::Io {
                    path: self.dir.clone(),
                    source: std::io::Error::other("no result for the entry"),
                })
            })
    }

    /// Write several entries durably with one directory fsync: each file is
    /// written and fsynced under its temp name, all are renamed, then the
    /// directory is fsynced once. One result per entry, in order.
    pub fn write_many(&self, entries: &[Entry]) -> Vec<Result<PathBuf, Error>> {
        let staged: Vec<Result<(PathBuf, PathBuf), Error>> = entries
            .iter()
            .map(|entry| {
                let name = entry.file_name();
                let path = self.dir.join(&name);
                let json = serde_json::to_vec_pretty(entry).map_err(|source| Error::Corrupt {
                    path: path.clone(),
                    source,
                })?;
                Ok((self.stage(&name, &json)?, path))
            })
            .collect();
        let renamed: Vec<Result<PathBuf, Error>> = staged
            .into_iter()
            .map(|r| {
                let (tmp, path) = r?;
                fs::rename(&tmp, &path).map_err(io(&path))?;
                Ok(path)
            })
            .collect();
        if !renamed.iter().any(Result::is_ok) {
            return renamed;
        }
        match self.sync_dir() {
            Ok(()) => renamed,
            Err(e) => {
                let msg = e.to_string();
                renamed
                    .into_iter()
                    .map(|r| {
                        r.and_then(|_| {
                            Err(Error::Io {
                                path: self.dir.clone(),
                                source: std::io::Error::other(msg.clone()),
                            })
                        })
                    })
                    .collect()
            }
        }
    }

    /// Remove several delivered (or dropped) entries with one directory fsync.
    pub fn remove_many(&self, paths: &[PathBuf]) -> Result<(), Error> {
        let mut removed = false;
        for path in paths {
            removed |= self.take_out(path)?;
        }
        if removed { self.sync_dir() } else { Ok(()) }
    }

    /// Remove a delivered (or dropped) entry.
    pub fn remove(&self, path: &Path) -> Result<(), Error> {
        self.remove_many(&[path.to_path_buf()])
    }

    /// Take one entry out of the outbox: recycled as a spare while there is
    /// room, else unlinked. False when it was already gone.
    fn take_out(&self, path: &Path) -> Result<bool, Error> {
        let recycle = self.spares().len() < MAX_SPARES;
        // No `.json` in a spare's name: nothing that counts outbox entries sees it.
        if recycle && let Some(name) = path.file_stem() {
            let spare = self
                .dir
                .join(format!("{SPARE_PREFIX}{}", name.to_string_lossy()));
            match fs::rename(path, &spare) {
                Ok(()) => {
                    self.spares().push(spare);
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(_) => {}
            }
        }
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
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
    fn many_are_written_and_removed_together() {
        let state = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(state.path()).expect("open");
        let entries = [entry(7, 1), entry(3, 2), entry(7, 2)];
        let paths: Vec<PathBuf> = outbox
            .write_many(&entries)
            .into_iter()
            .map(|r| r.expect("written"))
            .collect();
        assert_eq!(paths[0], outbox.dir().join("7-1.json"));
        for (path, e) in paths.iter().zip(&entries) {
            assert_eq!(&outbox.read(path).expect("read"), e);
        }
        let names: Vec<String> = fs::read_dir(outbox.dir())
            .expect("dir")
            .map(|i| i.expect("item").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        assert_eq!(outbox.pending().expect("list").len(), 3);
        outbox.remove_many(&paths[..2]).expect("remove");
        assert_eq!(outbox.pending().expect("list"), vec![paths[2].clone()]);
        outbox.remove_many(&paths).expect("removing again is fine");
        assert!(outbox.pending().expect("list").is_empty());
        assert!(outbox.write_many(&[]).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn removed_files_are_recycled_never_listed_and_adopted_at_open() {
        use std::os::unix::fs::MetadataExt;
        let state = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(state.path()).expect("open");
        let first = outbox.write(&entry(1, 1)).expect("write");
        let ino = fs::metadata(&first).expect("meta").ino();
        outbox.remove(&first).expect("remove");
        assert!(!first.exists());
        let spare = outbox.dir().join(".spare-1-1");
        assert!(spare.exists());
        assert!(outbox.pending().expect("list").is_empty());
        // A longer entry is written over the spare's old bytes: complete JSON.
        let mut long = entry(2, 5);
        long.request.result.stdout = "y".repeat(5000);
        let second = outbox.write(&long).expect("write");
        assert_eq!(fs::metadata(&second).expect("meta").ino(), ino);
        assert!(!spare.exists());
        assert_eq!(outbox.read(&second).expect("read"), long);
        // A shorter one too (the old tail is truncated).
        outbox.remove(&second).expect("remove");
        let third = outbox.write(&entry(3, 1)).expect("write");
        assert_eq!(outbox.read(&third).expect("read"), entry(3, 1));
        // Spares left by an earlier run are adopted.
        outbox.remove(&third).expect("remove");
        let reopened = Outbox::open(state.path()).expect("reopen");
        let fourth = reopened.write(&entry(4, 1)).expect("write");
        assert_eq!(fs::metadata(&fourth).expect("meta").ino(), ino);
        assert_eq!(reopened.pending().expect("list"), vec![fourth]);
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
