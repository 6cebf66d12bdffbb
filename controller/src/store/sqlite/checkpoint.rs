//! The WAL checkpointer: the write-ahead log is copied into the database
//! file beside the writer, never inside one of its commits.
//!
//! With SQLite's default (`wal_autocheckpoint` = 1000 pages) the COMMIT that
//! pushes the WAL past 1000 pages runs the checkpoint itself — the copy and
//! the database file's fsync — on the writer connection, so that batch and
//! every one queued behind it waited (a 1,000-job dispatch run: a checkpoint
//! about every 300 jobs, batch p50 0.96 ms, p99 2.3 ms). The writer
//! connections set `wal_autocheckpoint=0`; this task, on its own connection,
//! looks every [`Policy::every`] how many frames of the WAL are not yet in
//! the database file, and:
//!
//! - at [`Policy::threshold`] frames or more, runs
//!   `PRAGMA wal_checkpoint(PASSIVE)`, which waits for neither the writer nor
//!   a reader. Once the whole WAL is copied, the writer's next transaction
//!   starts the WAL again from its beginning, so the file stays about
//!   threshold frames long and is overwritten in place.
//! - when the WAL holds [`Policy::cap`] frames or more, a PASSIVE checkpoint
//!   could not finish: writes never paused long enough (frames added during
//!   the copy keep the WAL from restarting) or a read transaction holds an
//!   old snapshot. Then a PASSIVE on this connection (the bulk of the copy)
//!   is followed by a PASSIVE *on the writer connection* (through the
//!   writer pool, between two batches): no frame is added while it runs, so
//!   it copies the tail and the writer's next transaction restarts the WAL —
//!   what SQLite's autocheckpoint does at every 1000 pages, here only when
//!   the background copy fell behind. Not a RESTART from this connection: it
//!   would hold the write lock, and a writer transaction that read before it
//!   writes (a deferred BEGIN) gets SQLITE_BUSY at once, without its busy
//!   timeout (seen as 500s on agent enrollment under load). When readers
//!   still kept the tail from being copied, the writer is not asked again
//!   for a second ([`TAIL_HOLD`]; a read transaction open for long keeps any
//!   WAL from shrinking).
//! - `journal_size_limit` on the writer connections ([`Policy::journal_limit`])
//!   cuts a WAL file that grew past it back when the WAL restarts.
//!
//! How the checkpointer counts: it reads the WAL-index header in the `-shm`
//! file (SQLite file format, "WAL-index format": `mxFrame` at byte 16 of
//! the header, which is stored twice, 48 bytes each; `nBackfill` at byte 96;
//! native byte order) — one 100-byte read, no lock, no statement. A torn
//! read (the two copies differ) is skipped until the next look. Counting in
//! the commit path would need `sqlite3_wal_hook`, which sqlx does not
//! expose (and `unsafe` is denied); polling the file size cannot tell
//! copied frames from new ones. Without a readable `-shm` the WAL file's
//! size stands in.
//!
//! A failing checkpoint (disk full, read-only or unwritable file, I/O) is
//! logged (WARN) and tried again after a doubling backoff ([`Policy::backoff`]
//! up to a minute), on a fresh connection; the store's health is not
//! touched: it says whether the writer can commit, and a commit does not
//! need a checkpoint (the WAL only grows meanwhile, and any write the disk
//! refuses marks the store failing through the writer). [`Checkpointer::stop`]
//! (the store's `close`, after the server's shutdown) ends the task with a
//! `wal_checkpoint(TRUNCATE)`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, SqlitePool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The checkpointer connection's busy timeout: how long the final
/// TRUNCATE waits for the writer's batch (≤ 4 ms of work and its
/// commit) and, holding the write lock, for readers. PASSIVE never waits.
pub(crate) const BUSY: Duration = Duration::from_millis(20);

/// After a tail copy on the writer that readers kept from finishing, the
/// writer is not asked again for this long; PASSIVE beside it meanwhile.
const TAIL_HOLD: Duration = Duration::from_secs(1);

/// A WAL frame's bytes, for a page of 4 KiB (SQLite's default page size):
/// 24 bytes of frame header.
const FRAME_BYTES: u64 = 4096 + 24;

/// When the checkpointer copies the WAL.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// How often it looks at the WAL.
    pub every: Duration,
    /// Frames not yet copied that start a PASSIVE checkpoint.
    pub threshold: u32,
    /// WAL frames at which the writer copies the tail after the PASSIVE
    /// checkpoint.
    pub cap: u32,
    /// `journal_size_limit` of the writer connections, bytes.
    pub journal_limit: u64,
    /// The first wait after a failed checkpoint (then doubled, up to
    /// [`MAX_BACKOFF`]).
    pub backoff: Duration,
}

/// The longest wait between failing checkpoints.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Policy {
    /// SQLite's own threshold (1000 pages, about 4 MiB), off the commit
    /// path; the writer copies the tail at 4× that (16 MiB); a WAL file longer than 8 MiB is
    /// cut back at its restart. At the bulk benchmark's rate the WAL grows
    /// a few MiB in one look's 100 ms.
    pub(crate) const DEFAULT: Policy = Policy {
        every: Duration::from_millis(100),
        threshold: 1000,
        cap: 4000,
        journal_limit: 2000 * FRAME_BYTES,
        backoff: Duration::from_secs(1),
    };
}

/// Counters of one checkpointer (the process-wide ones are in
/// [`crate::telemetry`]).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Checkpoints run (each PRAGMA that succeeded).
    pub checkpoints: AtomicU64,
    /// Frames copied into the database file.
    pub frames: AtomicU64,
    /// Checkpoints that failed.
    pub failures: AtomicU64,
}

/// The checkpointer task; dropping the last handle stops it.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Read by the tests (the process-wide counters are for `/metrics`).
    #[cfg(test)]
    stats: Arc<Stats>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Checkpointer {
    /// Start checkpointing the database at `db`, connecting with `opts`;
    /// `writer` copies the tail at the cap (`None`: this task does).
    pub(crate) fn start(
        opts: SqliteConnectOptions,
        db: &Path,
        policy: Policy,
        writer: Option<SqlitePool>,
    ) -> Checkpointer {
        let stop = CancellationToken::new();
        let stats = Arc::new(Stats::default());
        let looker = Looker::new(opts, db, policy, stats.clone(), writer);
        let task = tokio::spawn(run(looker, stop.clone()));
        Checkpointer {
            stop,
            task: Mutex::new(Some(task)),
            #[cfg(test)]
            stats,
        }
    }

    /// The counters of this checkpointer.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Stop the task after a final `wal_checkpoint(TRUNCATE)`; wait for it.
    pub(crate) async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The `-wal` and `-shm` files of a database.
#[derive(Debug, Clone)]
pub(crate) struct Files {
    wal: PathBuf,
    shm: PathBuf,
}

impl Files {
    pub(crate) fn of(db: &Path) -> Files {
        let with = |suffix: &str| {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            PathBuf::from(p)
        };
        Files {
            wal: with("-wal"),
            shm: with("-shm"),
        }
    }

    /// `(frames in the WAL, frames of them already copied)`, from the
    /// WAL-index header; without it, the WAL file's length (all counted as
    /// not copied). `None` on a torn read.
    pub(crate) fn frames(&self) -> Option<(u32, u32)> {
        match read_index(&self.shm) {
            Ok(header) => header,
            Err(_) => {
                let len = std::fs::metadata(&self.wal).map_or(0, |m| m.len());
                let frames =
                    u32::try_from(len.saturating_sub(32) / FRAME_BYTES).unwrap_or(u32::MAX);
                Some((frames, 0))
            }
        }
    }
}

/// `mxFrame` and `nBackfill` from the WAL-index header at the start of
/// `shm`; `Ok(None)` when the two copies of the header differ (a write in
/// progress) or the index is not initialised.
fn read_index(shm: &Path) -> std::io::Result<Option<(u32, u32)>> {
    use std::io::Read;
    let mut head = [0u8; 100];
    std::fs::File::open(shm)?.read_exact(&mut head)?;
    let word = |at: usize| u32::from_ne_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    // isInit (byte 12) must be set, and both copies equal.
    if head[12] == 0 || head[..48] != head[48..96] {
        return Ok(None);
    }
    Ok(Some((word(16), word(96))))
}

/// What one look decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Passive,
    Tail,
}

/// What the WAL's `(frames, copied)` calls for; with the frames copied
/// before. Nothing when all are copied: the writer's next transaction
/// starts the WAL again.
fn due(frames: Option<(u32, u32)>, policy: &Policy) -> Option<(Due, u32)> {
    let (log, copied) = frames?;
    let pending = log.saturating_sub(copied);
    if pending == 0 {
        None
    } else if log >= policy.cap {
        Some((Due::Tail, copied))
    } else if pending >= policy.threshold {
        Some((Due::Passive, copied))
    } else {
        None
    }
}

/// The checkpointer's state between looks.
pub(crate) struct Looker {
    opts: SqliteConnectOptions,
    files: Files,
    policy: Policy,
    stats: Arc<Stats>,
    conn: Option<SqliteConnection>,
    /// Failed checkpoints in a row.
    failures: u32,
    /// The writer connection (its pool), which copies the tail at the cap;
    /// `None`: this connection does (tests).
    writer: Option<SqlitePool>,
    /// When a tail copy last left frames behind (readers in its way).
    held_tail: Option<Instant>,
}

impl Looker {
    pub(crate) fn new(
        opts: SqliteConnectOptions,
        db: &Path,
        policy: Policy,
        stats: Arc<Stats>,
        writer: Option<SqlitePool>,
    ) -> Looker {
        Looker {
            opts,
            files: Files::of(db),
            policy,
            stats,
            conn: None,
            failures: 0,
            writer,
            held_tail: None,
        }
    }

    /// How long until the next look.
    fn wait(&self) -> Duration {
        if self.failures == 0 {
            self.policy.every
        } else {
            backoff(self.policy.backoff, self.failures)
        }
    }

    /// Look at the WAL; checkpoint when due.
    pub(crate) async fn look(&mut self) {
        let Some((mut what, copied)) = due(self.files.frames(), &self.policy) else {
            return;
        };
        if what == Due::Tail && self.held_tail.is_some_and(|t| t.elapsed() < TAIL_HOLD) {
            what = Due::Passive;
        }
        let writer = self.writer.as_ref();
        match checkpoint(
            &mut self.conn,
            &self.opts,
            writer,
            what,
            copied,
            &self.stats,
        )
        .await
        {
            Ok(left) => {
                if what == Due::Tail {
                    self.held_tail = left.then(Instant::now);
                }
                if self.failures > 0 {
                    tracing::info!(failures = self.failures, "WAL checkpoints succeed again");
                }
                self.failures = 0;
            }
            Err(e) => {
                // A fresh connection for the next try.
                self.conn = None;
                self.failures = self.failures.saturating_add(1);
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::checkpoint_failed();
                tracing::warn!(
                    error = %e,
                    failures = self.failures,
                    retry_in_ms = self.wait().as_millis() as u64,
                    "WAL checkpoint failed; the WAL grows until one succeeds"
                );
            }
        }
    }

    /// At shutdown: copy everything and cut the WAL file to zero bytes.
    async fn finish(self) {
        if let Err(e) = last_checkpoint(self.conn, &self.opts).await {
            tracing::warn!(error = %e, "Final WAL checkpoint failed");
        }
    }
}

/// The task: look, checkpoint when due, until `stop`.
async fn run(mut looker: Looker, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(looker.wait()) => {}
        }
        looker.look().await;
    }
    looker.finish().await;
}

/// The wait after `failures` failed checkpoints in a row.
fn backoff(first: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    first.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

/// A `wal_checkpoint` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Passive,
    Truncate,
}

impl Mode {
    /// Run it on `c`: `(busy, log, checkpointed)`.
    async fn run(self, c: &mut SqliteConnection) -> sqlx::Result<(i64, i64, i64)> {
        let sql = match self {
            Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
            Mode::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
        };
        sqlx::query_as(sql).fetch_one(&mut *c).await
    }
}

/// Run the checkpoint `what` asks for; count it. `copied`: the frames
/// already copied before it (so the count is what this one copied).
/// Whether frames were left behind by the last copy (readers in its way).
async fn checkpoint(
    conn: &mut Option<SqliteConnection>,
    opts: &SqliteConnectOptions,
    writer: Option<&SqlitePool>,
    what: Due,
    copied: u32,
    stats: &Stats,
) -> sqlx::Result<bool> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(opts.connect().await?),
    };
    let mut last = Mode::Passive.run(c).await?;
    count(last, i64::from(copied), "passive", stats);
    if what == Due::Tail {
        let before = last.2;
        // On the writer connection: no frame is added while it copies.
        last = match writer {
            Some(pool) => {
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(pool)
                    .await?
            }
            None => Mode::Passive.run(c).await?,
        };
        count(last, before, "tail", stats);
    }
    let (_, log, done) = last;
    Ok(done < log)
}

/// Count a checkpoint's `(busy, log, checkpointed)`; `before`: the frames
/// copied before it.
fn count((busy, log, done): (i64, i64, i64), before: i64, mode: &str, stats: &Stats) {
    // A restarted WAL counts from its start.
    let frames = if done < before { done } else { done - before };
    let frames = u64::try_from(frames).unwrap_or(0);
    stats.checkpoints.fetch_add(1, Ordering::Relaxed);
    stats.frames.fetch_add(frames, Ordering::Relaxed);
    crate::telemetry::checkpointed(frames);
    tracing::debug!(
        mode,
        busy,
        log,
        checkpointed = done,
        frames,
        "WAL checkpoint"
    );
}

/// At shutdown: copy everything and cut the WAL file to zero bytes.
async fn last_checkpoint(
    conn: Option<SqliteConnection>,
    opts: &SqliteConnectOptions,
) -> sqlx::Result<()> {
    let mut c = match conn {
        Some(c) => c,
        None => opts.connect().await?,
    };
    let (busy, log, done) = Mode::Truncate.run(&mut c).await?;
    tracing::debug!(busy, log, checkpointed = done, "Final WAL checkpoint");
    c.close().await
}

#[cfg(test)]
mod tests;
