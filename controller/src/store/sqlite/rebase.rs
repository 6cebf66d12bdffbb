//! The clock rebase in SQLite (see [`crate::store::rebase`]).

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::Result;
use crate::store::rebase::{ClockStore, Rebased};

#[async_trait]
impl ClockStore for SqliteStore {
    /// Recompute stored deadlines against `now` (see the module docs). Call
    /// once at start, before serving; one transaction.
    async fn rebase_clock(&self, now: i64) -> Result<Rebased> {
        let mut tx = self.writer.begin().await?;
        // Deadlines move both ways: grants look again (before the commit,
        // so no grant can run on the old bound after it).
        self.lease_bound.forget();
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
