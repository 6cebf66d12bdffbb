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

use super::{Result, Store};

/// What [`Store::rebase_clock`] changed.
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

impl Store {
    /// Recompute stored deadlines against `now` (see the module docs). Call
    /// once at start, before serving; one transaction.
    pub async fn rebase_clock(&self, now: i64) -> Result<Rebased> {
        let mut tx = self.writer.begin().await?;
        let leases = sqlx::query(
            "UPDATE jobs SET lease_expires_at = ?1 + lease_ttl_ms WHERE state = 'running'",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let backoffs = sqlx::query(
            "UPDATE jobs SET not_before = ?1 + MAX(0, COALESCE(json_extract(retry, '$.max_backoff_ms'), 0))
             WHERE state = 'queued'
               AND not_before > ?1 + MAX(0, COALESCE(json_extract(retry, '$.max_backoff_ms'), 0))",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let agents = sqlx::query("UPDATE agents SET last_seen = ?1 WHERE last_seen > ?1")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let drills = sqlx::query(
            "UPDATE drills SET created_at = ?1 WHERE state = 'running' AND created_at > ?1",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Rebased {
            leases,
            backoffs,
            agents,
            drills,
        })
    }
}

#[cfg(test)]
mod tests;
