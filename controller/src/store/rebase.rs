//! At start, re-express in this process's clock what an earlier run stored
//! in its own ([`crate::clock`]: the wall clock may have stepped while the
//! controller was down, and nothing here can tell a step from downtime).
//!
//! - Every running lease's deadline becomes `now + its TTL`. Its holder's
//!   own deadline (its fence) is at most its last answered call + TTL,
//!   which was before this start: the new deadline is never earlier, so a
//!   forward step cannot expire a healthy lease early, and a backward step
//!   cannot keep a dead one for the length of the step — it ends within a
//!   TTL of the start. A holder that is alive renews it as usual.
//! - A queued job's `not_before` (retry backoff) is capped to `now +` its
//!   policy's `max_backoff_ms`, the longest a backoff can be, so a backward
//!   step does not park jobs.
//! - An agent's `last_seen` is capped to `now`, so a backward step does not
//!   show a silent agent online (presence keeps the later of two values).
//! - A running drill's `created_at` is capped to `now`, so a backward step
//!   does not postpone its give-up limit (drills report) by the step.

use async_trait::async_trait;

use super::Result;

/// What [`ClockStore::rebase_clock`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rebased {
    /// Running leases whose deadline was set to now + TTL.
    pub leases: u64,
    /// Queued jobs whose backoff was cut to their policy's maximum.
    pub backoffs: u64,
    /// Agents whose last_seen was in the future.
    pub agents: u64,
    /// Running drills created in the future.
    pub drills: u64,
}

/// Stored times re-expressed in this process's clock.
#[async_trait]
pub trait ClockStore {
    /// Recompute stored deadlines against `now` (see the module docs). Call
    /// once at start, before serving; one transaction.
    async fn rebase_clock(&self, now: i64) -> Result<Rebased>;
}
