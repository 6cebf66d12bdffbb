//! SQLite's errors classified: a write that fails because of the disk or
//! the filesystem becomes [`Error::Unavailable`] naming the [`Cause`] (see
//! [`crate::store::health`]); and [`HealthStore`] for [`SqliteStore`].
//!
//! `From<sqlx::Error> for Error` and [`Cause::of`] live in
//! [`crate::store::health`], shared by both sqlx backends.

use async_trait::async_trait;
use std::sync::atomic::Ordering;

use super::SqliteStore;
use crate::store::health::{Cause, HealthStore, StatsSnapshot};
use crate::store::{Error, Result};

#[async_trait]
impl HealthStore for SqliteStore {
    fn fleet_id(&self) -> &str {
        &self.fleet_id
    }

    fn write_failure(&self) -> Option<(Cause, String)> {
        self.health.failure()
    }

    fn group_commit_stats(&self) -> StatsSnapshot {
        let stats = self.batcher.stats();
        StatsSnapshot {
            batches: stats.batches.load(Ordering::Relaxed),
            ops: stats.ops.load(Ordering::Relaxed),
            replays: stats.replays.load(Ordering::Relaxed),
        }
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// Stop the checkpointer (a final TRUNCATE checkpoint), close the
    /// group-commit writer's connection and both pools.
    async fn close(&self) {
        if let Some(c) = &self.checkpointer {
            c.stop().await;
        }
        self.batcher.close().await;
        self.reader.close().await;
        self.writer.close().await;
    }
}

impl SqliteStore {
    /// A write outside the group-commit writer (the schedule timer's) that
    /// the disk or filesystem refused marks the store failing as a refused
    /// batch does: one ERROR, `/readyz` 503, and the writer's probe declares
    /// it healthy again. Without this a store only the timer writes to
    /// stopped firing with `/readyz` still 200.
    pub(crate) fn noted<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.note(e);
        }
        r
    }

    /// See [`SqliteStore::noted`].
    pub(crate) fn note(&self, e: &Error) {
        if let Error::Unavailable { cause, detail } = e {
            self.health.failed(*cause, detail);
        }
    }
}

/// The writer connection's errors (`super::writer`), classified as sqlx's
/// are: the disk or the filesystem refusing a write is
/// [`Error::Unavailable`].
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        let cause = match &e {
            rusqlite::Error::SqliteFailure(f, _) => Cause::of_code(i64::from(f.extended_code)),
            _ => None,
        };
        match cause {
            Some(cause) => Error::Unavailable {
                cause,
                detail: e.to_string(),
            },
            None => Error::Sqlite(e),
        }
    }
}

#[cfg(test)]
mod tests;
