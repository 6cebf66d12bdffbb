//! [`HealthStore`] for [`PgStore`]: whether the database accepts writes
//! comes from the hosts watch ([`super::hosts`]); errors are classified in
//! [`crate::store::health`] (`Cause::of_sqlstate`).

use async_trait::async_trait;

use super::PgStore;
use crate::store::health::{Cause, HealthStore, StatsSnapshot};
use crate::store::{Error, Result};

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

impl PgStore {
    /// Pass `r` on; a refusal by the database server's disk (full,
    /// read-only, an I/O error, a damaged file) marks the store failing
    /// (`/readyz`, one ERROR), as on SQLite. The hosts watch declares it
    /// healthy again once it answers and no write has been refused for
    /// [`crate::store::health::QUIET`]. An unreachable server is the
    /// watch's to judge (a busy pool is not a failing store).
    pub(crate) fn noted<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(Error::Unavailable { cause, detail }) = &r
            && cause.is_storage()
        {
            self.health.failed(*cause, detail);
        }
        r
    }
}
