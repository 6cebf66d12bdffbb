//! The writer's own SQLite connection, on a thread of its own.
//!
//! sqlx runs each SQLite connection on a worker thread and sends it every
//! statement over a channel: a statement costs a message and a thread
//! wake-up each way, and `BEGIN` and `COMMIT` a third (sqlx waits for their
//! acknowledgement). A submit handed to a parked poll took five such calls,
//! a lone completion three; on a 2-core host the wake-ups, not SQLite, were
//! most of the writer's time (ARCHITECTURE "Performance paths"). Here a whole
//! batch is ONE job for this thread: it begins, runs every operation's
//! statements straight on the connection (rusqlite, prepared statements
//! cached), commits, and hands the batch back.
//!
//! The connection is opened on first use with the writer pool's settings
//! (`synchronous`, `busy_timeout`, foreign keys, no auto-checkpoint, the
//! journal size limit) and dropped after a failed batch, to be opened afresh
//! for the next one (what the writer pool does with its sqlx connection).
//! Batches never run beside a write of the sqlx writer pool: the writer task
//! holds that pool's only connection while this thread runs a batch.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::{Error, Result};

/// How to open the writer's connection.
#[derive(Debug, Clone)]
pub(crate) struct Opener {
    /// The database file.
    pub path: PathBuf,
    /// `synchronous=FULL` (else `NORMAL`).
    pub full: bool,
    /// `journal_size_limit`, bytes.
    pub journal_limit: u64,
}

/// Prepared statements kept per connection.
const CACHED_STATEMENTS: usize = 64;

impl Opener {
    fn open(&self) -> Result<Connection> {
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(Duration::from_secs(10))?;
        c.pragma_update(
            None,
            "synchronous",
            if self.full { "FULL" } else { "NORMAL" },
        )?;
        c.pragma_update(None, "foreign_keys", "ON")?;
        // The checkpointer copies the WAL, never a commit.
        c.pragma_update(None, "wal_autocheckpoint", 0)?;
        c.pragma_update(None, "journal_size_limit", self.journal_limit as i64)?;
        c.set_prepared_statement_cache_capacity(CACHED_STATEMENTS);
        Ok(c)
    }
}

/// The writer connection's slot on its thread: `None` until opened, and
/// again after a failed batch dropped it.
pub(crate) struct Slot {
    conn: Option<Connection>,
    opener: Opener,
}

impl Slot {
    /// The connection, opened if need be.
    pub(crate) fn get(&mut self) -> Result<&Connection> {
        if self.conn.is_none() {
            self.conn = Some(self.opener.open()?);
        }
        self.conn
            .as_ref()
            .ok_or_else(|| Error::Commit("the writer connection did not open".into()))
    }

    /// Roll back whatever is open and drop the connection: after a failed
    /// COMMIT SQLite may or may not have rolled back by itself; a fresh
    /// connection leaves no doubt.
    pub(crate) fn discard(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = c.execute_batch("ROLLBACK");
        }
    }
}

/// A job for the writer thread.
pub(crate) type Job = Box<dyn FnOnce(&mut Slot) + Send>;

/// The handle of the writer thread; the thread ends (closing its
/// connection) when the handle is dropped or [`Engine::close`]d.
#[derive(Debug)]
pub(crate) struct Engine {
    jobs: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
}

impl Engine {
    /// Start the thread; the connection opens with the first job.
    pub(crate) fn start(opener: Opener) -> Result<Engine> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("baton-sqlite-writer".into())
            .spawn(move || {
                let mut slot = Slot { conn: None, opener };
                for job in rx {
                    job(&mut slot);
                }
            })
            .map_err(|e| Error::Commit(format!("cannot start the writer thread: {e}")))?;
        Ok(Engine {
            jobs: std::sync::Mutex::new(Some(tx)),
        })
    }

    /// Run `job` on the writer thread.
    pub(crate) fn send(&self, job: Job) -> Result<()> {
        let stopped = || Error::Commit("the writer thread has stopped".into());
        let jobs = self.jobs.lock().map_err(|_| stopped())?;
        jobs.as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())
    }

    /// Close the connection, and end the thread once the jobs queued
    /// before ran; later batches fail.
    pub(crate) async fn close(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let closing: Job = Box::new(move |slot| {
            slot.conn.take();
            let _ = tx.send(());
        });
        if self.send(closing).is_ok() {
            let _ = rx.await;
        }
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
    }
}
