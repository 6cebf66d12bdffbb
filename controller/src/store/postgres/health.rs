//! [`HealthStore`] for [`PgStore`]: whether the database accepts writes
//! comes from the hosts watch ([`super::hosts`]); errors are classified in
//! [`crate::store::health`] (`Cause::of_sqlstate`).

use async_trait::async_trait;

use super::PgStore;
use crate::store::Result;
use crate::store::health::{Cause, HealthStore, StatsSnapshot};

#[async_trait]
impl HealthStore for PgStore {
    fn fleet_id(&self) -> &str {
        &self.fleet_id
    }

    fn write_failure(&self) -> Option<(Cause, String)> {
        self.health.failure()
    }

    /// The grouped hot writes ([`super::group`]): their batches and the
    /// calls in them, summed over the kinds.
    fn group_commit_stats(&self) -> StatsSnapshot {
        let g = &self.groups;
        let mut out = StatsSnapshot::default();
        for (batches, calls) in [
            g.succeed.stats().get(),
            g.audit.stats().get(),
            g.submit.stats().get(),
        ] {
            out.batches += batches;
            out.ops += calls;
        }
        out
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn database_clock_ms(&self) -> Result<Option<i64>> {
        Ok(Some(self.db_now_ms().await?))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
