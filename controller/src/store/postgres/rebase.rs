//! The clock rebase on PostgreSQL (see [`crate::store::rebase`]), as in
//! SQLite. With other replicas running it is safe: `now` is this replica's
//! clock, anchored to the database's, so every running lease's deadline
//! becomes `now + TTL`, never earlier than the `now + TTL` another replica
//! set at its last renewal (within a round trip); a backoff, `last_seen` or
//! drill start is only changed when it lies after `now`, which a replica on
//! the same clock never writes.

use async_trait::async_trait;
use sqlx::postgres::PgConnection;

use super::PgStore;
use crate::store::Result;
use crate::store::rebase::{ClockStore, Rebased};

/// Run `sql` (one `$1`, now); rows affected.
async fn at_now(c: &mut PgConnection, sql: &'static str, now: i64) -> Result<u64> {
    Ok(sqlx::query(sql)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected())
}

/// The four updates, in one transaction.
async fn rebase(c: &mut PgConnection, now: i64) -> Result<Rebased> {
    let leases = at_now(
        c,
        "UPDATE jobs SET lease_expires_at = $1 + lease_ttl_ms WHERE state = 'running'",
        now,
    )
    .await?;
    let backoffs = at_now(
        c,
        "UPDATE jobs SET not_before = $1 + GREATEST(0, COALESCE((retry::jsonb ->> 'max_backoff_ms')::bigint, 0))
         WHERE state = 'queued'
           AND not_before > $1 + GREATEST(0, COALESCE((retry::jsonb ->> 'max_backoff_ms')::bigint, 0))",
        now,
    )
    .await?;
    let agents = at_now(
        c,
        "UPDATE agents SET last_seen = $1 WHERE last_seen > $1",
        now,
    )
    .await?;
    let drills = at_now(
        c,
        "UPDATE drills SET created_at = $1 WHERE state = 'running' AND created_at > $1",
        now,
    )
    .await?;
    Ok(Rebased {
        leases,
        backoffs,
        agents,
        drills,
    })
}

#[async_trait]
impl ClockStore for PgStore {
    /// Recompute stored deadlines against `now` (see the module docs). Call
    /// once at start, before serving; one transaction (run again after a
    /// deadlock with another replica's writes).
    async fn rebase_clock(&self, now: i64) -> Result<Rebased> {
        self.tx(|c| Box::pin(rebase(c, now))).await
    }
}

#[cfg(test)]
mod tests;
