//! The PostgreSQL backend: several controllers (replicas) on one database.
//!
//! Every operation is one transaction on a connection pool (READ
//! COMMITTED); PostgreSQL serialises conflicting writers with row locks.
//! The hot writes (successful completions, audit rows, submits without a
//! key) that arrive together share a statement and a commit ([`group`]). The rules every area follows
//! (ARCHITECTURE.md "Several controllers"):
//!
//! - A grant picks its jobs with `FOR UPDATE SKIP LOCKED`, and the fencing
//!   token comes from the job row in the same transaction: two replicas
//!   never grant one job, and a token is never issued twice.
//! - Every read-modify-write of a row locks it first (`SELECT … FOR
//!   UPDATE`) or is one conditional `UPDATE` keyed by what was read (the
//!   lease token, the state).
//! - Deadlocks and serialization failures are retried ([`PgStore::tx`]).
//! - Times are the `now` the caller passes: the controller's clock, which
//!   on PostgreSQL is anchored to the database's clock at start
//!   ([`PgStore::db_now_ms`], `crate::clock`), so replicas agree whatever
//!   their own wall clocks say.
//! - A lost connection, a standby answering (`25006`), `admin_shutdown`
//!   and the like are [`Error::Unavailable`](crate::store::Error): 503,
//!   retried by the agents; never a success.
//!
//! Layout: one file per area trait of [`crate::store`], as in
//! [`crate::store::sqlite`]: `jobs`, `lease`, `agents`, `identity`,
//! `audit`, `retention`, `drills`, `schedules`, `pipelines`, `rebase`,
//! `health`; [`hosts`]: the configured hosts and which one is the primary;
//! [`events`]: LISTEN/NOTIFY wake-ups between replicas and the periodic
//! look.

mod agents;
mod audit;
pub mod check;
mod drills;
pub mod events;
mod group;
mod health;
pub mod hosts;
mod identity;
mod jobs;
mod lease;
mod made;
mod notifications;
mod pipelines;
mod rebase;
mod retention;
mod schedules;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

use crate::store::credentials::AuthCache;
use crate::store::health::Health;
use crate::store::retention::Pruned;
use crate::store::{Error, Result};

/// Where and how to reach PostgreSQL (`[store]` in the controller's config).
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/db?…`; several hosts as
    /// `postgres://user@h1:p1,h2:p2/db`: the controller uses the one that
    /// accepts writes and moves to another when it stops doing so.
    pub url: String,
    /// The password (read from `password_file` or the environment; never
    /// in the URL of a config file).
    pub password: Option<String>,
    /// Verify the server's certificate against this CA (TLS required,
    /// `verify-full`).
    pub ca_file: Option<PathBuf>,
    /// Connections in the pool.
    pub pool_size: u32,
    /// No LISTEN (a pooler in transaction mode): wake-ups from other
    /// replicas come from the periodic look only.
    pub poll_only: bool,
}

/// How long an operation waits for a pooled connection before it is
/// answered 503 `store_unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times a transaction that hit a deadlock or a serialization
/// failure runs again.
const TX_RETRIES: u32 = 5;

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    fleet_id: String,
    /// Known credentials; the identity paths that change one invalidate it.
    auth_cache: Arc<AuthCache>,
    /// Whether the database accepts writes (`/readyz`).
    health: Arc<Health>,
    /// Rows retention deleted.
    pruned: Arc<Pruned>,
    opts: Arc<PgOptions>,
    /// This replica's tag on the signals it sends (`events`): random per
    /// open, so a replica skips its own.
    tag: Arc<str>,
    /// The hot writes that share commits ([`group`]).
    groups: Arc<Groups>,
}

/// The kinds of call that share statements and commits ([`group`]).
#[derive(Debug)]
struct Groups {
    /// Successful completions.
    succeed: group::Group<lease::Succeed, lease::Succeeded>,
    /// Audit rows.
    audit: group::Group<audit::Entry, ()>,
    /// Submits without an idempotency key.
    submit: group::Group<jobs::Submit, baton_proto::JobView>,
}

impl Groups {
    fn start(pool: &PgPool) -> Groups {
        Groups {
            succeed: group::Group::start(pool.clone(), lease::succeed_batch),
            audit: group::Group::start(pool.clone(), audit::audit_batch),
            submit: group::Group::start(pool.clone(), jobs::submit_grouped),
        }
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-postgres");

impl PgStore {
    /// Connect to the primary among the configured hosts and migrate
    /// (migrations take an advisory lock: replicas starting together run
    /// them once).
    pub async fn open(opts: &PgOptions) -> Result<PgStore> {
        let hosts = Arc::new(hosts::Hosts::parse(opts)?);
        let primary = hosts.find_primary().await?;
        let pool = PgPoolOptions::new()
            .max_connections(opts.pool_size.max(2))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // No ping before each use (a round trip per operation): a
            // connection that died (a failover) fails its statement, which
            // answers 503 and is retried, and is not returned to the pool;
            // the hosts watch finds the new primary.
            .test_before_acquire(false)
            // Generic plans (planned once per connection): the hot
            // statements' custom planning cost more than running them
            // (a grant: 0.4–0.6 ms to plan, 0.1–0.2 ms to run). Operator
            // reads whose best plan depends on their filters plan per
            // call ([`PgStore::browse`]).
            .after_connect(|c, _| {
                Box::pin(async move {
                    sqlx::query("SET plan_cache_mode = force_generic_plan")
                        .execute(c)
                        .await?;
                    Ok(())
                })
            })
            .connect_with(primary)
            .await?;
        MIGRATOR.run(&pool).await?;
        let fleet_id: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'fleet_id'")
            .fetch_one(&pool)
            .await?;
        let health = Arc::new(Health::default());
        hosts.watch(pool.clone(), health.clone());
        Ok(PgStore {
            groups: Arc::new(Groups::start(&pool)),
            pool,
            fleet_id,
            // Short: another replica's revoke whose notification is lost
            // is honoured here within this.
            auth_cache: Arc::new(AuthCache::vouched(identity::AUTH_CACHE_TTL)),
            health,
            pruned: Arc::default(),
            opts: Arc::new(opts.clone()),
            tag: format!("{:016x}", rand::random::<u64>()).into(),
        })
    }

    /// The pool (for the listener of cross-replica wake-ups and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &PgOptions {
        &self.opts
    }

    /// The database's clock in Unix milliseconds, corrected by half the
    /// round trip: what the controller anchors its clock to on start.
    pub async fn db_now_ms(&self) -> Result<i64> {
        let sent = std::time::Instant::now();
        let ms: i64 =
            sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
                .fetch_one(&self.pool)
                .await?;
        let half_rtt = i64::try_from(sent.elapsed().as_millis() / 2).unwrap_or(0);
        Ok(ms.saturating_add(half_rtt))
    }

    /// A read-only transaction whose statements are planned for their
    /// parameters (`plan_cache_mode = auto`): for the operator reads whose
    /// filters decide the plan (`state = $1 OR $1 IS NULL` over a large
    /// table), where a generic plan could scan what an index finds.
    pub(crate) async fn browse(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL plan_cache_mode = auto")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Run `f` in one transaction and commit; a deadlock (`40P01`) or a
    /// serialization failure (`40001`) runs it again, up to
    /// [`TX_RETRIES`] times, after a short random pause. `f` must be
    /// written so that running it again is correct (it starts from what it
    /// reads).
    pub(crate) async fn tx<T, F>(&self, mut f: F) -> Result<T>
    where
        T: Send,
        F: for<'c> FnMut(&'c mut PgConnection) -> BoxFuture<'c, Result<T>> + Send,
    {
        let mut tries = 0;
        let started = std::time::Instant::now();
        let observe = || crate::telemetry::store_transaction(started.elapsed());
        loop {
            let mut tx = self.pool.begin().await?;
            let outcome = match f(&mut tx).await {
                Ok(v) => tx.commit().await.map(|()| v).map_err(Error::from),
                Err(e) => Err(e),
            };
            match outcome {
                Err(e) if retryable(&e) && tries < TX_RETRIES => {
                    tries += 1;
                    let pause = rand::random_range(1..=10u64 << tries);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                other => {
                    observe();
                    return self.noted(other);
                }
            }
        }
    }
}

/// A deadlock or a serialization failure: the transaction did nothing and
/// may run again.
fn retryable(e: &Error) -> bool {
    let Error::Db(sqlx::Error::Database(d)) = e else {
        return false;
    };
    matches!(d.code().as_deref(), Some("40P01" | "40001"))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;
