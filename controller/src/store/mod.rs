//! The durable store, behind a boundary a second backend can implement.
//!
//! The controller holds a [`Store`]: a cheap handle on one backend, an
//! `Arc<dyn Backend>`. [`Backend`] is the sum of one trait per area (as
//! restate's `storage-api` does); each area module holds its trait and the
//! plain types its methods take and return, shared by every backend:
//!
//! - [`jobs`] ([`JobStore`]): submit, get, list, cancel, retry.
//! - [`lease`] ([`LeaseStore`]): grant (poll), heartbeat, complete, release,
//!   expiry — the lease contract.
//! - [`agents`] ([`AgentStore`]): agent presence and capabilities, drain.
//! - [`identity`] ([`IdentityStore`]): operator tokens, enrollment tokens,
//!   agent secrets, revocation, and the cache of resolved credentials
//!   ([`credentials`]).
//! - [`audit`] ([`AuditStore`]): the audit log.
//! - [`retention`] ([`RetentionStore`]): finished jobs, old schedule
//!   occurrences, ended pipeline runs and old audit rows pruned in bounded
//!   batches, space given back.
//! - [`drills`] ([`DrillStore`]): failover drills, their timelines and
//!   takeover measurements.
//! - [`schedules`] ([`ScheduleStore`]): schedules, their cursors and
//!   occurrences; a firing applied in one transaction; the follow-up of
//!   ended jobs that schedules and pipelines made.
//! - [`pipelines`] ([`PipelineStore`]): pipelines, runs and their steps.
//! - [`rebase`] ([`ClockStore`]): at start, stored deadlines re-expressed in
//!   this process's clock.
//! - [`health`] ([`HealthStore`]): whether the store can commit (disk full,
//!   read-only, I/O errors become 503 `store_unavailable`; `/readyz` reads
//!   it), the fleet id, close.
//! - [`notifications`] ([`NotificationStore`]): the outbox of events
//!   (written by triggers in the transaction of the state change), their
//!   deliveries to webhooks and every attempt.
//! - [`events`] ([`EventStore`]): wake-up signals between controllers
//!   sharing the store (PostgreSQL LISTEN/NOTIFY) and the periodic look
//!   that makes a lost signal cost latency only; nothing on SQLite.
//!
//! Shared by the backends beside the traits: [`Error`], the stored row shapes
//! and their wire views (`rows`: the same columns in every sqlx backend), and
//! the drill verdict (`drills::evaluate`, pure).
//!
//! Backends: [`sqlite`] (the embedded default: one group-commit writer,
//! WAL, `synchronous=FULL`) and [`postgres`] (several controllers on one
//! database: row locks, `FOR UPDATE SKIP LOCKED` grants). Every backend must pass `conformance`, the one
//! suite of backend-neutral store tests (see its docs for how a backend runs
//! it). The store knows nothing of HTTP, auth middleware or config types:
//! callers pass plain values ([`SyncMode`], `now` in Unix ms).

pub mod agents;
pub mod audit;
#[cfg(test)]
pub(crate) mod conformance;
pub use crate::credentials;
pub mod drills;
pub mod events;
pub mod health;
pub mod identity;
pub mod jobs;
pub mod lease;
pub mod migrate;
pub mod notifications;
pub mod pipelines;
pub mod postgres;
pub mod rebase;
pub mod retention;
pub(crate) mod rows;
pub mod schedules;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod testutil;

use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use baton_proto::JobId;

pub use agents::AgentStore;
pub use audit::AuditStore;
pub use drills::DrillStore;
pub use events::EventStore;
pub use health::HealthStore;
pub use identity::IdentityStore;
pub use jobs::JobStore;
pub use lease::{Abandoned, Expired, GrantRequest, Granted, LeaseStore};
pub use notifications::NotificationStore;
pub use pipelines::PipelineStore;
pub use rebase::ClockStore;
pub use retention::RetentionStore;
pub use schedules::ScheduleStore;
pub use sqlite::SyncMode;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such job.
    #[error("job {0} not found")]
    NotFound(JobId),
    /// No such object (token, agent).
    #[error("{0} not found")]
    Missing(String),
    /// A credential was refused (enrollment).
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not touch this object (another agent's job).
    #[error("{0}")]
    Forbidden(String),
    /// The fencing token is stale, the lease ran out, or the caller does not hold it.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// The job is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// An idempotency key was reused with a different request.
    #[error("idempotency key `{0}` was already used with a different request")]
    IdempotencyConflict(String),
    /// The database failed.
    #[error("database error: {0}")]
    Db(sqlx::Error),
    /// The group-commit writer's own connection failed (`sqlite::writer`).
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// The disk or the filesystem refused a write (full, read-only, I/O
    /// error): nothing of the operation was kept (`health`).
    #[error("the store cannot commit ({cause}): {detail}")]
    Unavailable {
        /// Why.
        cause: health::Cause,
        /// The database's own message.
        detail: String,
    },
    /// The group-commit batch this operation ran in did not commit.
    #[error("commit failed: {0}")]
    Commit(String),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not parse (a bug or manual tampering).
    #[error("corrupt stored value in {0}")]
    Corrupt(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Whether an operation that failed with this error wrote nothing: the
    /// refusals every operation body decides before its first write.
    pub fn wrote_nothing(&self) -> bool {
        matches!(
            self,
            Error::NotFound(_)
                | Error::Missing(_)
                | Error::Unauthorized(_)
                | Error::Forbidden(_)
                | Error::LeaseLost(_)
                | Error::Conflict(_)
                | Error::IdempotencyConflict(_)
        )
    }
}

/// Everything a store backend implements: one trait per area. Implemented
/// for every type that implements them all; the controller holds it as
/// `Arc<dyn Backend>` ([`Store`]).
pub trait Backend:
    JobStore
    + LeaseStore
    + AgentStore
    + IdentityStore
    + AuditStore
    + RetentionStore
    + DrillStore
    + ScheduleStore
    + PipelineStore
    + ClockStore
    + HealthStore
    + EventStore
    + NotificationStore
    + fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<T> Backend for T where
    T: JobStore
        + LeaseStore
        + AgentStore
        + IdentityStore
        + AuditStore
        + RetentionStore
        + DrillStore
        + ScheduleStore
        + PipelineStore
        + ClockStore
        + HealthStore
        + EventStore
        + NotificationStore
        + fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// The store the controller holds: a cheap, cloneable handle on one backend.
/// It dereferences to `dyn Backend`, so every area's methods are called on it
/// directly (`store.submit(..)`), without importing the traits.
#[derive(Debug, Clone)]
pub struct Store(Arc<dyn Backend>);

impl Store {
    /// A handle on `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Store {
        Store(backend)
    }

    /// Open (creating if missing) and migrate the SQLite database at `path`
    /// (the embedded default backend, [`sqlite::SqliteStore`]).
    pub async fn open(path: &Path, sync: SyncMode) -> Result<Store> {
        Ok(Store::new(Arc::new(
            sqlite::SqliteStore::open(path, sync).await?,
        )))
    }
}

impl Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// The area traits, for code that calls them on a concrete backend (on a
/// [`Store`] they need no import).
pub mod prelude {
    pub use super::{
        AgentStore, AuditStore, ClockStore, DrillStore, EventStore, HealthStore, IdentityStore,
        JobStore, LeaseStore, NotificationStore, PipelineStore, RetentionStore, ScheduleStore,
    };
}

pub(crate) use rows::ts as rows_ts;

/// The controller's now in Unix milliseconds ([`crate::clock`]: immune to
/// wall-clock steps within a process).
pub use crate::clock::now_ms;
