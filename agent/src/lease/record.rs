//! The leases the agent holds, remembered in `<state_dir>/leases/log`.
//!
//! The log is append-only: `+<job_id> <token>` when the work of a lease
//! starts, `-<job_id> <token>` when the lease ends for this run (its
//! completion was delivered or is in the outbox, it was released, or it was
//! lost). A start is fdatasynced, so it survives a crash of the host too
//! (the sync, about one disk flush, runs on a blocking thread beside the
//! work, so no job waits for it; starts that arrive while a sync runs share
//! the next one, a group commit); an end is not: an end lost in a crash only
//! brings back a record the controller answers "not current", or one whose
//! completion is in the outbox, which is left out at start. One file for
//! every lease, instead of a file per lease, spares the filesystem an inode
//! allocation, a directory fsync and a deletion per job (on ext4 those made
//! the agents, not the controller, the bound of a busy fleet). The log is
//! rewritten with only the current leases at start and whenever it holds
//! many more ended lines than current ones. A torn last line (a crash in
//! the middle of a write) is ignored. Records of the previous layout (an
//! empty file `<job_id>-<token>` per lease) are still read and removed.
//!
//! If the agent is killed (SIGKILL, OOM, a crash) while holding leases, the
//! records stay. The next start reads them ([`LeaseRecords::previous`]) after
//! killing the commands the dead run left behind, and reports them to the
//! controller (`agent::predecessor`), which ends each lease still current as
//! `agent_restarted` and requeues its job at once, instead of waiting for
//! its TTL. A disk that refuses the record (full, read-only) never stops a
//! job: the agent warns that this lease falls back to its TTL after a crash.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use baton_proto::{FencingToken, JobId, LeaseRef};
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use tracing::{debug, warn};

/// Errors of the lease records.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory or the log could not be created, read or rewritten.
    #[error("lease records in {path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// The log is rewritten once it holds more lines than this and four times
/// as many as there are current leases.
const COMPACT_AFTER: usize = 4096;

/// The lease records of one state dir.
#[derive(Debug, Clone)]
pub struct LeaseRecords {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
    /// Who syncs the log, and how far it is synced.
    sync: Arc<(Mutex<Syncs>, Condvar)>,
}

/// The group commit of starts: one fdatasync covers every line appended
/// before it began.
#[derive(Debug, Default)]
struct Syncs {
    /// Lines appended and synced (counted in [`State::appended`]).
    synced: u64,
    /// A sync is running.
    running: bool,
    /// Syncs done (for tests and figures).
    count: u64,
}

/// What the log says now.
#[derive(Debug, Default)]
struct State {
    /// Current leases in the log.
    live: BTreeSet<(JobId, FencingToken)>,
    /// Current leases recorded as files (the previous layout).
    legacy: BTreeSet<(JobId, FencingToken)>,
    /// Lines in the log.
    lines: usize,
    /// Lines appended by this run (the group commit's sequence).
    appended: u64,
    /// The log opened for appending, kept between lines (opened at the
    /// first append after a start or a rewrite).
    file: Option<Arc<File>>,
}

impl LeaseRecords {
    /// The records under `state_dir` (the `leases` directory is created if
    /// missing); the log is read and rewritten with its current leases.
    pub fn open(state_dir: &Path) -> Result<Self, Error> {
        let dir = state_dir.join("leases");
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut state = State::default();
        for e in fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
            if let Some(l) = e.file_name().to_str().and_then(parse_name) {
                state.legacy.insert((l.job_id, l.token));
            }
        }
        let log = dir.join("log");
        match fs::read_to_string(&log) {
            Ok(text) => replay(&text, &mut state.live),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&log)(e)),
        }
        let records = LeaseRecords {
            dir,
            state: Arc::new(Mutex::new(State::default())),
            sync: Arc::default(),
        };
        records.rewrite(&state.live).map_err(io_err(&log))?;
        state.lines = state.live.len();
        *records.lock() = state;
        Ok(records)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The leases recorded now, by job then token. Called at start, before
    /// the first poll, these are the leases of the previous run.
    pub fn previous(&self) -> Result<Vec<LeaseRef>, Error> {
        let st = self.lock();
        let all: BTreeSet<_> = st.live.union(&st.legacy).copied().collect();
        Ok(all
            .into_iter()
            .map(|(job_id, token)| LeaseRef { job_id, token })
            .collect())
    }

    /// Record a lease now held. Returns false (after a WARN) when the disk
    /// refused: the job goes on, but after a crash its lease runs out at the
    /// TTL instead of ending at the next start.
    pub fn record(&self, job_id: JobId, token: FencingToken) -> bool {
        self.record_many(&[(job_id, token)])
    }

    /// Record leases now held (one poll's grants): one append, one sync
    /// (shared with other starts, [`Self::sync_through`]). False (after one
    /// WARN) when the disk refused; the jobs go on.
    pub fn record_many(&self, leases: &[(JobId, FencingToken)]) -> bool {
        let written = self
            .append('+', leases)
            .and_then(|seq| self.sync_through(seq));
        if let Err(e) = &written {
            warn!(
                path = %self.log().display(),
                error = %e,
                leases = leases.len(),
                "Cannot record the lease under the state dir; if the agent dies, \
                 this job waits for its lease TTL instead of being requeued at restart"
            );
            let mut st = self.lock();
            for l in leases {
                st.live.remove(l);
            }
        }
        written.is_ok()
    }

    /// Forget a lease (it ended for this run). Already gone is fine.
    pub fn remove(&self, job_id: JobId, token: FencingToken) {
        let key = (job_id, token);
        let (live, legacy, compact) = {
            let mut st = self.lock();
            let live = st.live.remove(&key);
            let legacy = st.legacy.remove(&key);
            let compact = st.lines > COMPACT_AFTER && st.lines > 4 * st.live.len();
            (live, legacy, compact)
        };
        if live && let Err(e) = self.append('-', &[key]) {
            debug!(path = %self.log().display(), error = %e, "Cannot note a lease's end");
        }
        if legacy {
            let path = self.dir.join(format!("{job_id}-{token}"));
            if let Err(e) = fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                debug!(path = %path.display(), error = %e, "Cannot remove a lease record");
            }
        }
        if compact && let Err(e) = self.compact() {
            debug!(path = %self.log().display(), error = %e, "Cannot compact the lease log");
        }
    }

    /// Record one poll's leases in the background (the sync runs beside
    /// the work, not before it): one blocking task, one append and one
    /// sync for all of them; [`Recording::forget`] removes a record once
    /// written. A crash before the records are on disk only costs the TTL.
    /// One [`Recording`] per lease, in order.
    pub fn start_many(&self, leases: &[(JobId, FencingToken)]) -> Vec<Recording> {
        let written = self.spawn_record(leases.to_vec());
        leases
            .iter()
            .map(|&(job_id, token)| self.recording(written.clone(), job_id, token))
            .collect()
    }

    fn spawn_record(&self, leases: Vec<(JobId, FencingToken)>) -> Written {
        let records = self.clone();
        tokio::task::spawn_blocking(move || records.record_many(&leases))
            .map(|joined| joined.unwrap_or(false))
            .boxed()
            .shared()
    }

    fn recording(&self, written: Written, job_id: JobId, token: FencingToken) -> Recording {
        Recording {
            written,
            leases: self.clone(),
            job_id,
            token,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("log")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append lines under the lock (lines never interleave, and a
    /// compaction sees every lease whose `+` is in the log), in one write;
    /// the sequence number of the last, for [`Self::sync_through`].
    fn append(&self, sign: char, leases: &[(JobId, FencingToken)]) -> io::Result<u64> {
        use std::fmt::Write as _;
        let mut text = String::with_capacity(leases.len() * 24);
        for (job_id, token) in leases {
            let _ = writeln!(text, "{sign}{job_id} {token}");
        }
        let mut st = self.lock();
        let file = match &st.file {
            Some(f) => f.clone(),
            None => {
                let f = Arc::new(OpenOptions::new().append(true).open(self.log())?);
                st.file = Some(f.clone());
                f
            }
        };
        if let Err(e) = (&*file).write_all(text.as_bytes()) {
            // Open again next time (the file may have been replaced).
            st.file = None;
            return Err(e);
        }
        st.lines += leases.len();
        st.appended += leases.len() as u64;
        if sign == '+' {
            st.live.extend(leases.iter().copied());
        }
        Ok(st.appended)
    }

    /// Return once line `seq` is synced: by a sync that started after it
    /// was appended, this thread's or another's. One thread syncs at a
    /// time, for every line appended before it started (a group commit).
    fn sync_through(&self, seq: u64) -> io::Result<()> {
        let (lock, synced) = &*self.sync;
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if s.synced >= seq {
                return Ok(());
            }
            if !s.running {
                break;
            }
            s = synced.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.running = true;
        drop(s);
        // The log as it is now (a compaction replaces it under the same
        // lock, after syncing every current lease) and how far it goes.
        let opened = {
            let st = self.lock();
            match &st.file {
                Some(f) => Ok((f.clone(), st.appended)),
                None => File::open(self.log()).map(|f| (Arc::new(f), st.appended)),
            }
        };
        let done = opened.and_then(|(f, through)| f.sync_data().map(|()| through));
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        s.running = false;
        s.count += 1;
        if let Ok(through) = done {
            s.synced = s.synced.max(through);
        }
        synced.notify_all();
        done.map(|_| ())
    }

    /// Rewrite the log with the current leases, under the lock.
    fn compact(&self) -> io::Result<()> {
        let mut st = self.lock();
        st.file = None;
        self.rewrite(&st.live)?;
        st.lines = st.live.len();
        Ok(())
    }

    /// Replace the log with one holding `live` (temp file, sync, rename,
    /// directory sync); the caller holds the lock or is alone.
    fn rewrite(&self, live: &BTreeSet<(JobId, FencingToken)>) -> io::Result<()> {
        let tmp = self.dir.join("log.tmp");
        let mut text = String::with_capacity(live.len() * 16);
        for (job_id, token) in live {
            text.push_str(&format!("+{job_id} {token}\n"));
        }
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()?;
        fs::rename(&tmp, self.log())?;
        #[cfg(unix)]
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

/// The leases recorded under `state_dir` now, read without opening the
/// records (nothing is rewritten: safe beside a running agent, which keeps
/// its log open for appending).
pub fn recorded(state_dir: &Path) -> Result<Vec<LeaseRef>, Error> {
    let dir = state_dir.join("leases");
    let log = dir.join("log");
    let mut live = BTreeSet::new();
    match fs::read_to_string(&log) {
        Ok(text) => replay(&text, &mut live),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(Error::Io { path: log, source }),
    }
    Ok(live
        .into_iter()
        .map(|(job_id, token)| LeaseRef { job_id, token })
        .collect())
}

/// Apply the log's lines to `live`; a line that does not parse (a torn
/// last write) is skipped.
fn replay(text: &str, live: &mut BTreeSet<(JobId, FencingToken)>) {
    for line in text.lines() {
        let (sign, rest) = line.split_at(line.len().min(1));
        let Some(l) = rest.split_once(' ').and_then(|(j, t)| {
            let job_id: JobId = j.parse().ok().filter(|j| *j > 0)?;
            let token: FencingToken = t.parse().ok().filter(|t| *t > 0)?;
            Some((job_id, token))
        }) else {
            continue;
        };
        match sign {
            "+" => {
                live.insert(l);
            }
            "-" => {
                live.remove(&l);
            }
            _ => {}
        }
    }
}

/// Whether a batch of records was written and synced.
type Written = Shared<BoxFuture<'static, bool>>;

/// A lease being recorded (see [`LeaseRecords::start_many`]).
#[derive(Debug)]
pub struct Recording {
    /// The blocking task that writes (and syncs) the record, shared by one
    /// poll's grants.
    written: Written,
    leases: LeaseRecords,
    job_id: JobId,
    token: FencingToken,
}

impl Recording {
    /// The lease ended for this run: remove its record, after it was written
    /// (so a removal never comes before the file).
    pub async fn forget(self) {
        let _ = self.written.await;
        self.leases.remove(self.job_id, self.token);
    }

    /// The lease stays recorded for the next start (its completion is kept
    /// in the outbox, or its release did not reach the controller).
    pub async fn keep(self) {
        let _ = self.written.await;
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
