//! Multipart uploads in progress, one small record each under
//! `<state_dir>/uploads/` (`<job_id>-<attempt>.json`: store, bucket, key,
//! upload id), so that a run that dies mid-upload does not leave its parts
//! in the bucket.
//!
//! - A record is written (temp file, sync, rename) once the server gave the
//!   upload its id, and removed once the upload completed or was aborted.
//!   An abort that failed keeps it.
//! - At start, every record there is a dead run's ([`Pending::open`]). The
//!   agent aborts those uploads in the background ([`Pending::abort_leftovers`]),
//!   and every upload job awaits the same sweep before it starts its own, so
//!   a takeover by the restarted agent restarts the upload from the first
//!   part on a clean bucket (no resume: the new attempt's file is read again
//!   whole, to check its sha256). A 404 (`NoSuchUpload`: the upload completed
//!   or was aborted before the kill) counts as done; a failed abort stays
//!   for the next sweep.
//! - A job that ran out of time is dropped mid-upload: its record is aborted
//!   at once ([`Pending::abort_recorded`]).
//!
//! A state dir that refuses the record never stops an upload: the agent
//! warns that this upload is left to the bucket's lifecycle rule after a
//! crash (as a run killed between the upload's creation and its record is).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::StoreConfig;
use crate::objstore::{self, Client};

/// One multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The store's name in the agent's config.
    pub store: String,
    /// The bucket (the store's when the upload began).
    pub bucket: String,
    /// The object key, prefix included.
    pub key: String,
    /// The server's id of the upload.
    pub upload_id: String,
    /// The job.
    pub job_id: i64,
    /// Its attempt.
    pub attempt: u32,
}

/// The records of one state dir.
#[derive(Debug)]
pub struct Pending {
    dir: PathBuf,
    /// The dead run's records not aborted yet, with their files.
    leftovers: tokio::sync::Mutex<Vec<(PathBuf, Record)>>,
}

impl Pending {
    /// Create `dir` if needed and take the records in it as a dead run's.
    /// Unreadable records and torn temp files are removed (with a warning).
    pub fn open(dir: PathBuf) -> io::Result<Pending> {
        std::fs::create_dir_all(&dir)?;
        let mut leftovers = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if !name.ends_with(".json") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let record = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
            match record {
                Some(r) => leftovers.push((path, r)),
                None => {
                    warn!(file = %path.display(), "Unreadable record of a multipart upload removed");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        leftovers.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Pending {
            dir,
            leftovers: tokio::sync::Mutex::new(leftovers),
        })
    }

    /// The record file of a job's attempt.
    pub fn path_of(&self, job_id: i64, attempt: u32) -> PathBuf {
        self.dir.join(format!("{job_id}-{attempt}.json"))
    }

    /// Record an upload; its file, or None when it could not be written
    /// (warned: after a crash that upload is the lifecycle rule's).
    pub async fn add(&self, record: &Record) -> Option<PathBuf> {
        let path = self.path_of(record.job_id, record.attempt);
        let written = match serde_json::to_vec(record) {
            Ok(bytes) => {
                let (p, dir) = (path.clone(), self.dir.clone());
                tokio::task::spawn_blocking(move || write_synced(&dir, &p, &bytes))
                    .await
                    .unwrap_or_else(|e| Err(io::Error::other(e)))
            }
            Err(e) => Err(io::Error::other(e)),
        };
        match written {
            Ok(()) => Some(path),
            Err(e) => {
                warn!(file = %path.display(), error = %e, "Cannot record the multipart upload; after a crash the bucket's lifecycle rule must remove it");
                None
            }
        }
    }

    /// Forget a record (its upload completed or was aborted).
    pub async fn remove(&self, path: &Path) {
        if let Err(e) = tokio::fs::remove_file(path).await
            && e.kind() != io::ErrorKind::NotFound
        {
            warn!(file = %path.display(), error = %e, "Cannot remove the record of a multipart upload");
        }
    }

    /// Abort the dead run's uploads; how many could not be (kept for the
    /// next call). Concurrent callers wait for the one sweeping.
    pub async fn abort_leftovers(&self, stores: &BTreeMap<String, StoreConfig>) -> usize {
        let mut left = self.leftovers.lock().await;
        let mut kept = Vec::new();
        for (path, r) in left.drain(..) {
            if abort(
                &r,
                stores,
                "Aborted a multipart upload left by a previous run",
            )
            .await
            {
                self.remove(&path).await;
            } else {
                kept.push((path, r));
            }
        }
        *left = kept;
        left.len()
    }

    /// Abort the upload recorded in `path`, if any (a job dropped mid-upload).
    pub async fn abort_recorded(&self, path: &Path, stores: &BTreeMap<String, StoreConfig>) {
        let Ok(bytes) = tokio::fs::read(path).await else {
            return;
        };
        let Ok(r) = serde_json::from_slice::<Record>(&bytes) else {
            self.remove(path).await;
            return;
        };
        if abort(
            &r,
            stores,
            "Aborted the multipart upload of a job out of time",
        )
        .await
        {
            self.remove(path).await;
        }
    }
}

/// Abort `r`'s upload; whether the record can go (aborted, already gone,
/// or its store is no longer configured).
async fn abort(r: &Record, stores: &BTreeMap<String, StoreConfig>, done: &str) -> bool {
    let Some(store) = stores.get(&r.store) else {
        warn!(store = %r.store, bucket = %r.bucket, key = %r.key, "A multipart upload's store is no longer configured; the bucket's lifecycle rule must remove it");
        return true;
    };
    let mut s3 = store.as_s3().clone();
    s3.bucket.clone_from(&r.bucket);
    let result = match Client::new(&s3) {
        Ok(client) => client.abort(&r.key, &r.upload_id).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            info!(store = %r.store, key = %r.key, job_id = r.job_id, attempt = r.attempt, "{done}");
            true
        }
        Err(objstore::Error::Status { status: 404, .. }) => {
            info!(store = %r.store, key = %r.key, job_id = r.job_id, attempt = r.attempt, "A recorded multipart upload is already gone (completed or aborted)");
            true
        }
        Err(e) => {
            warn!(store = %r.store, key = %r.key, job_id = r.job_id, error = %e, "Cannot abort a recorded multipart upload; trying again later");
            false
        }
    }
}

/// Write `bytes` to `path` through a synced temp file and a rename; a temp
/// file that could not be completed (a full disk) is removed.
fn write_synced(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests;
