//! The leases the agent holds, remembered under `<state_dir>/leases/`.
//!
//! Each lease is an empty file named `<job_id>-<token>`, created when the
//! work starts (the directory is then fsynced, so the name survives a crash
//! of the host too; the fsync, about one disk flush, runs on a blocking
//! thread beside the work, so no job waits for it) and removed when the lease ends
//! for this run: its completion was delivered or is in the outbox, it was
//! released, or it was lost. An empty file needs no temp file and rename: it
//! is there or not. Removal is not fsynced: a removal lost in a crash only
//! brings back a record the controller answers "not current", or one whose
//! completion is in the outbox, which is left out at start.
//!
//! If the agent is killed (SIGKILL, OOM, a crash) while holding leases, the
//! files stay. The next start reads them ([`LeaseRecords::previous`]) after
//! killing the commands the dead run left behind, and reports them to the
//! controller (`agent::predecessor`), which ends each lease still current as
//! `agent_restarted` and requeues its job at once, instead of waiting for
//! its TTL. A disk that refuses the record (full, read-only) never stops a
//! job: the agent warns that this lease falls back to its TTL after a crash.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use baton_proto::{FencingToken, JobId, LeaseRef};
use tracing::{debug, warn};

/// Errors of the lease records.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory could not be created or read.
    #[error("lease records in {path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// The directory of lease records.
#[derive(Debug, Clone)]
pub struct LeaseRecords {
    dir: PathBuf,
}

impl LeaseRecords {
    /// The records under `state_dir` (the `leases` directory is created if missing).
    pub fn open(state_dir: &Path) -> Result<Self, Error> {
        let dir = state_dir.join("leases");
        fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(LeaseRecords { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The leases recorded now, by job then token. Called at start, before
    /// the first poll, these are the leases of the previous run. Files whose
    /// names are not `<job_id>-<token>` are left alone.
    pub fn previous(&self) -> Result<Vec<LeaseRef>, Error> {
        let entries = fs::read_dir(&self.dir).map_err(|source| Error::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut out: Vec<LeaseRef> = entries
            .flatten()
            .filter_map(|e| parse_name(e.file_name().to_str()?))
            .collect();
        out.sort_by_key(|l| (l.job_id, l.token));
        Ok(out)
    }

    /// Record a lease now held. Returns false (after a WARN) when the disk
    /// refused: the job goes on, but after a crash its lease runs out at the
    /// TTL instead of ending at the next start.
    pub fn record(&self, job_id: JobId, token: FencingToken) -> bool {
        let path = self.path(job_id, token);
        let written = File::create(&path).and_then(|_| self.sync_dir());
        if let Err(e) = &written {
            warn!(
                path = %path.display(),
                error = %e,
                "Cannot record the lease under the state dir; if the agent dies, \
                 this job waits for its lease TTL instead of being requeued at restart"
            );
            let _ = fs::remove_file(&path);
        }
        written.is_ok()
    }

    /// Forget a lease (it ended for this run). Already gone is fine.
    pub fn remove(&self, job_id: JobId, token: FencingToken) {
        let path = self.path(job_id, token);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => debug!(path = %path.display(), error = %e, "Cannot remove a lease record"),
        }
    }

    /// Record a lease in the background (the directory fsync runs beside the
    /// work, not before it); [`Recording::forget`] removes the record once
    /// written. A crash before the record is on disk only costs the TTL.
    pub fn start(&self, job_id: JobId, token: FencingToken) -> Recording {
        let leases = self.clone();
        Recording {
            task: tokio::task::spawn_blocking(move || leases.record(job_id, token)),
            leases: self.clone(),
            job_id,
            token,
        }
    }

    fn path(&self, job_id: JobId, token: FencingToken) -> PathBuf {
        self.dir.join(format!("{job_id}-{token}"))
    }

    fn sync_dir(&self) -> io::Result<()> {
        #[cfg(unix)]
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

/// A lease being recorded (see [`LeaseRecords::start`]).
#[derive(Debug)]
pub struct Recording {
    task: tokio::task::JoinHandle<bool>,
    leases: LeaseRecords,
    job_id: JobId,
    token: FencingToken,
}

impl Recording {
    /// The lease ended for this run: remove its record, after it was written
    /// (so a removal never comes before the file).
    pub async fn forget(self) {
        let _ = self.task.await;
        self.leases.remove(self.job_id, self.token);
    }

    /// The lease stays recorded for the next start (its completion is kept
    /// in the outbox, or its release did not reach the controller).
    pub async fn keep(self) {
        let _ = self.task.await;
    }
}

/// `<job_id>-<token>`, both positive.
fn parse_name(name: &str) -> Option<LeaseRef> {
    let (job, token) = name.split_once('-')?;
    let job_id: JobId = job.parse().ok().filter(|j| *j > 0)?;
    let token: FencingToken = token.parse().ok().filter(|t| *t > 0)?;
    Some(LeaseRef { job_id, token })
}

#[cfg(test)]
mod tests;
