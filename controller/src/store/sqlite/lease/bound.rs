//! A lower bound, kept in memory, of the earliest lease deadline: a grant
//! skips the look for overdue leases (`expire_in`, one statement) while no
//! lease can be due.
//!
//! Sound only because this store is the only writer of its file (one
//! controller per SQLite file) and every write goes through the one writer
//! connection, so the bound sees every change in order:
//! - it is raised only by [`LeaseBound::looked`], from the earliest deadline
//!   read on the writer connection inside the transaction that uses it;
//! - every write of a deadline lowers it ([`LeaseBound::lower`]: a
//!   heartbeat before its statement, a grant right after its statements,
//!   still inside the operation — only the writer's operations, one at a
//!   time, read the bound) or
//!   forgets it ([`LeaseBound::forget`]: the clock rebase at start);
//! - a rollback forgets it (the group-commit writer does, before it runs
//!   anything else): a rolled-back completion or expiry may bring back a
//!   lease the bound no longer counts.
//!
//! When unsure it says "look": it starts forgotten. The reaper still expires
//! leases on its own schedule; this only spares the grants a read.

use std::sync::atomic::{AtomicI64, Ordering};

/// Nothing known: every grant looks.
const UNKNOWN: i64 = i64::MIN;

/// See the module docs. Shared by the store and its group-commit writer.
#[derive(Debug)]
pub(crate) struct LeaseBound {
    /// No running lease has a deadline below this (store clock, ms);
    /// `i64::MAX` when no lease runs.
    at: AtomicI64,
    /// Looks skipped (for tests and the statement-count figures).
    skipped: AtomicI64,
}

impl Default for LeaseBound {
    fn default() -> Self {
        LeaseBound {
            at: AtomicI64::new(UNKNOWN),
            skipped: AtomicI64::new(0),
        }
    }
}

impl LeaseBound {
    /// Whether a lease may be due at `now` (then the grant looks). Counts
    /// the looks it spares.
    pub(crate) fn may_be_due(&self, now: i64) -> bool {
        let due = self.at.load(Ordering::Acquire) <= now;
        if !due {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
        due
    }

    /// The writer connection read the earliest deadline of the running
    /// leases (`None`: no lease runs) in the transaction in progress.
    pub(crate) fn looked(&self, earliest: Option<i64>) {
        self.at
            .store(earliest.unwrap_or(i64::MAX), Ordering::Release);
    }

    /// A lease deadline `deadline` is about to be written.
    pub(crate) fn lower(&self, deadline: i64) {
        self.at.fetch_min(deadline, Ordering::AcqRel);
    }

    /// Deadlines changed in a way not tracked (rebase), or a rollback may
    /// have brought back leases: look at the next grant.
    pub(crate) fn forget(&self) {
        self.at.store(UNKNOWN, Ordering::Release);
    }

    /// Looks spared so far.
    #[cfg(test)]
    pub(crate) fn skipped(&self) -> i64 {
        self.skipped.load(Ordering::Relaxed)
    }
}
