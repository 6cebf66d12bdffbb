//! The long poll and the lease reaper.
//!
//! Pollers of a group wait in that group's queue (`crate::jobs::Group`);
//! every change that can give the group work wakes as many of them as it
//! brought jobs, at once, and a woken poll that cannot take the work hands
//! the wake on (`crate::jobs::waiters`; ARCHITECTURE.md, "The lease
//! lifecycle", point 7).
//!
//! - [`poll`]: [`long_poll`], the agents' poll without HTTP: hold until a
//!   grant, a drain or the end of the hold.
//! - [`mod@reaper`]: sleeps until the earliest lease deadline, but never longer
//!   than [`REAPER_MAX_SLEEP`] without looking again (one indexed read), and
//!   expires leases within a few milliseconds of their deadline (point 5 there).
//!
//! Each group also has a generation, bumped by every wake-up before its
//! pollers are notified. Every change that can give a group work (submit,
//! requeue, release, expiry, retry, drill, revocation, drain and resume) goes
//! through the jobs service (`crate::jobs`), which wakes *after* its
//! transaction committed — waking is private to it — so a poller that
//! read the generations of its groups before an empty grant, and reads the
//! same values later, knows that no such change happened in between: it may
//! skip the grant (see `presence`). The reaper alone expires leases for idle
//! fleets then.

pub mod poll;
pub mod reaper;

pub use poll::{Dispatcher, HOLD_TICK, Poll, long_poll};
pub use reaper::{REAPER_MAX_SLEEP, reaper, reaper_sleep};

use crate::jobs;
use crate::presence;
use crate::store;

/// Errors of a long poll.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The controller is starting or shutting down.
    #[error("shutting down")]
    NotReady,
    /// A grant failed.
    #[error(transparent)]
    Jobs(#[from] jobs::Error),
    /// The agent's presence cannot be recorded.
    #[error(transparent)]
    Presence(#[from] presence::Error),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

#[cfg(test)]
mod tests;
