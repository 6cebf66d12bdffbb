//! What both engines' sessions share: the name of a job's database lock
//! (`GET_LOCK` on MySQL, `sp_getapplock` on SQL Server), how a session ended
//! well, and progress messages without a percentage.

use baton_proto::{JobId, Progress};

use super::ledger::Committed;
use crate::executor::ProgressHandle;

/// The database lock of a job: `baton:<fleet>:job:<id>` (`baton:job:<id>`
/// without a fleet id). The fleet id keeps two Baton installations that share
/// a database server from locking each other's jobs. With the controller's
/// 16-hex fleet id a name is at most 46 characters (MySQL allows 64).
pub fn lock_name(fleet: &str, job_id: JobId) -> String {
    if fleet.is_empty() {
        format!("baton:job:{job_id}")
    } else {
        format!("baton:{fleet}:job:{job_id}")
    }
}

/// The progress message while another session holds the lock.
pub fn lock_wait_message(fleet: &str, job_id: JobId) -> String {
    format!(
        "waiting for the database lock {} held by another session",
        lock_name(fleet, job_id)
    )
}

/// Which attempt of which job a session runs, and where its progress goes
/// (each engine's session context dereferences to it).
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// Fleet id (namespaces the lock and the ledger row).
    pub fleet: &'a str,
    /// Job id.
    pub job_id: JobId,
    /// Attempt number.
    pub attempt: u32,
    /// Fencing token.
    pub token: i64,
    /// Progress for heartbeats.
    pub progress: &'a ProgressHandle,
}

impl<'a> Attempt<'a> {
    /// The attempt `job` runs, namespaced by `fleet`.
    pub fn of(job: &'a crate::executor::Job, fleet: &'a str) -> Self {
        Attempt {
            fleet,
            job_id: job.job_id,
            attempt: job.attempt,
            token: job.token,
            progress: &job.progress,
        }
    }
}

/// How the session ended well.
#[derive(Debug, Clone, PartialEq)]
pub enum Done {
    /// The work ran (and, with the ledger, committed with its row).
    Ran {
        /// With the ledger: the work ended the transaction itself (COMMIT,
        /// DDL), seen as `@@in_transaction` (MariaDB) or `@@TRANCOUNT`
        /// (SQL Server) 0 before the ledger row.
        transaction_ended_early: bool,
    },
    /// An earlier attempt had committed: its result, not run again.
    Replayed(Committed),
}

/// Publish a progress message without a percentage.
pub fn say(progress: &ProgressHandle, message: String) {
    progress.set_progress(Progress {
        percent: None,
        message,
    });
}

#[cfg(test)]
mod tests;
