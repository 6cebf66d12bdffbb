//! MySQL/MariaDB: the `procedure` and `sql` kinds (this module) and the
//! `dump` kind ([`dump`]).
//!
//! Layout: [`connection`] (driver options from the settings), [`pool`],
//! [`call`], [`session`], [`ledger`], [`kill`], [`capture`], [`value`],
//! [`failure`]; what is shared with SQL Server is in [`crate::db::common`].
//!
//! # A job from start to end
//!
//! 1. The spec is checked: the procedure name (`name` or `schema.name`, parts
//!    `[A-Za-z0-9_$]{1,64}`, quoted with backticks), parameter names
//!    (`[A-Za-z0-9_]{1,64}`, unique) and values (decimals, base64 bytes,
//!    dates). Values are always bound, never spliced into SQL. A bad spec
//!    fails for good.
//! 2. A connection of the named pool is taken ([`pool`]; at most `pool_size`
//!    jobs per connection at a time) and its `CONNECTION_ID()` kept.
//! 3. **Database-side lock**: `GET_LOCK('baton:job:<id>', 1)` in a loop until
//!    it returns 1. While another session holds it — a zombie agent still
//!    running the job after a takeover — the progress says
//!    `waiting for the database lock baton:job:<id> held by another session`.
//! 4. **Run ledger** (`exactly_once: true`, see [`ledger`]): if
//!    `baton_ledger` has a row for the job, its result is reported
//!    (`data.ledger = "replayed"`) and nothing runs. Otherwise
//!    `START TRANSACTION`, the work, the ledger row, `COMMIT`.
//! 5. The job's session settings, if any: one `SET SESSION k = ?, ...` with
//!    bound values ([`call::session_set`]).
//!    The work: `CALL` with bound IN values and `@baton_out_<n>` variables
//!    for OUT/INOUT ([`call`]), or the batch (text protocol, several
//!    statements). Every result set is read and kept within bounds
//!    ([`capture`]), then `SHOW WARNINGS`, then the OUT values.
//! 6. `RELEASE_LOCK`, and the connection goes back to the pool (which resets
//!    it).
//!
//! Cancel (any reason), lease loss and the execution timeout reach the
//! server: see [`kill`]. The job connection is dropped after a stop, never
//! reused. Errors and what retries: see [`failure`].
//!
//! # Limits of the run ledger
//!
//! The ledger row and the work commit together only if the work stays inside
//! the agent's transaction. A procedure or batch that commits by itself
//! (`COMMIT`, `START TRANSACTION` inside it, or any DDL, which commits
//! implicitly), or touches non-transactional tables (MyISAM, Aria), cannot be
//! wrapped. The agent notices one case — on MariaDB, `@@in_transaction` is 0
//! after the work — and reports it (`data.ledger_warning`, a WARN line), but
//! cannot detect every such case (a `COMMIT` followed by new DML opens a new
//! transaction that looks like ours; MySQL has no `@@in_transaction`).
//! Such jobs get at-least-once effects, as without the ledger.
//!
//! Other limits: `warnings` are those of the last statement (what
//! `SHOW WARNINGS` shows after the call or batch); procedures have no return
//! status on MySQL; `affected_rows` sums the counts of the statements that
//! returned no rows.

pub mod call;
pub mod capture;
pub mod connection;
pub mod dump;
pub mod export;
pub mod failure;
pub mod grants;
pub mod kill;
pub mod ledger;
pub mod pool;
pub mod restore;
pub mod session;
pub mod value;

use std::sync::Arc;
use std::time::Duration;

use baton_proto::{JobKind, JobSpec};
use serde_json::json;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::db::common::exec::{self, Captured, Planned};
use crate::db::common::session::Attempt;
use crate::executor::stop::{self, Stop};
use crate::executor::{BoxFuture, Executor, Job, Outcome};
use capture::Capture;
pub use capture::Limits;
use ledger::Ledger;
pub use pool::Pools;
use session::{Ctx, Done, StopFlag};

/// How long closing a job connection may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a MySQL job could not run (classified by [`failure::classify`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is invalid (names, parameters, values).
    #[error("{0}")]
    Invalid(String),
    /// The agent's configuration does not allow the job.
    #[error("{0}")]
    Config(String),
    /// The password could not be read.
    #[error("cannot read the password of connection {connection}: {message}")]
    Password {
        /// Connection name.
        connection: String,
        /// Why.
        message: String,
    },
    /// No connection within the connect timeout.
    #[error("no connection to {connection} within {}", humantime::format_duration(*after))]
    ConnectTimeout {
        /// Connection name.
        connection: String,
        /// The timeout.
        after: Duration,
    },
    /// `GET_LOCK` returned NULL.
    #[error("GET_LOCK('{lock}') failed (returned NULL)")]
    Lock {
        /// Lock name.
        lock: String,
    },
    /// The driver or the server.
    #[error(transparent)]
    Mysql(#[from] mysql_async::Error),
    /// The job is being stopped.
    #[error("stopped")]
    Stopped,
}

/// Runs `procedure` or `sql` jobs on this agent's MySQL connections.
#[derive(Debug, Clone)]
pub struct MysqlExecutor {
    kind: JobKind,
    pools: Arc<Pools>,
    limits: Limits,
}

impl MysqlExecutor {
    /// The `procedure` executor.
    pub fn procedure(pools: Arc<Pools>) -> Self {
        MysqlExecutor {
            kind: JobKind::Procedure,
            pools,
            limits: Limits::default(),
        }
    }

    /// The `sql` executor.
    pub fn sql(pools: Arc<Pools>) -> Self {
        MysqlExecutor {
            kind: JobKind::Sql,
            ..Self::procedure(pools)
        }
    }

    /// With other capture bounds.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    async fn run(&self, job: Job) -> Outcome {
        let Planned {
            connection,
            work,
            exactly_once,
            session,
        } = match exec::prepare(&job.spec, call::plan, WORDING) {
            Ok(p) => p,
            Err(e) => return fail(&Error::Invalid(e), &job, None),
        };
        let settings = match call::session_set(session) {
            Ok(s) => s,
            Err(e) => return fail(&Error::Invalid(e), &job, None),
        };
        let ledger = match self.ledger(connection, exactly_once) {
            Ok(l) => l,
            Err(e) => return fail(&e, &job, None),
        };
        let deadline = job.timeout.map(|t| Instant::now() + t);
        let held = match self.hold(&job, connection, deadline).await {
            Ok(h) => h,
            Err(outcome) => return outcome,
        };
        let pool::Held {
            mut conn,
            id,
            side,
            permit,
        } = held;
        debug!(connection = %connection, session = id, "MySQL session taken");
        let stop_flag = StopFlag::default();
        let ctx = Ctx {
            job: Attempt::of(&job, self.pools.fleet()),
            stop: stop_flag.clone(),
            ledger,
            settings,
        };
        let mut capture = Capture::new(self.limits);
        let ended = {
            let fut = session::run(&mut conn, &ctx, &work, &mut capture);
            tokio::pin!(fut);
            match stop::work_or_stop(&job, deadline, &mut fut).await {
                Ok(r) => Ok(r),
                Err(stop) => {
                    stop_flag.raise();
                    let (side_conn, mut report) = kill::start(&side, id, stop.word()).await;
                    report.session_end = tokio::time::timeout(kill::KILL_GRACE, &mut fut)
                        .await
                        .ok()
                        .map(|r| match r {
                            Ok(_) => "completed".to_owned(),
                            Err(Error::Stopped) => "stopped".to_owned(),
                            Err(e) => failure::classify(&e, &[]).message,
                        });
                    Err((stop, side_conn, report))
                }
            }
        };
        match ended {
            Ok(result) => {
                if matches!(&result, Err(Error::Mysql(e)) if e.is_fatal()) {
                    close(conn).await;
                } else {
                    // Back to the pool, which resets the session.
                    drop(conn);
                }
                drop(permit);
                finished(result, &job, &ctx, &capture)
            }
            Err((stop, side_conn, mut report)) => {
                // Never reuse a connection after a stop.
                close(conn).await;
                kill::finish(side_conn, &mut report).await;
                drop(permit);
                stopped(stop, &job, &capture, &report)
            }
        }
    }

    /// A connection for the job, unless the job is stopped first; the
    /// outcome when there is none (naming the connection and server).
    async fn hold(
        &self,
        job: &Job,
        connection: &str,
        deadline: Option<Instant>,
    ) -> Result<pool::Held, Outcome> {
        match stop::open_unless_stopped(job, connection, deadline, self.pools.hold(connection))
            .await
        {
            Ok(Ok(h)) => Ok(h),
            Ok(Err(e)) => {
                let mut out = fail(&e, job, None);
                if let (Error::Mysql(_), Ok(c)) = (&e, self.pools.config(connection)) {
                    name_the_connection(&mut out, &c.name, &c.endpoint);
                }
                Err(out)
            }
            Err(stopped) => Err(stopped),
        }
    }

    fn ledger(&self, connection: &str, exactly_once: bool) -> Result<Option<Ledger>, Error> {
        let config = self.pools.config(connection)?;
        if !exactly_once {
            return Ok(None);
        }
        let Some(db) = &config.database else {
            return Err(Error::Config(format!(
                "exactly_once needs a run ledger, which lives in the connection's database: \
                 set `database` in [connections.{connection}]"
            )));
        };
        Ledger::new(connection, db, config.create_ledger).map(Some)
    }
}

impl Executor for MysqlExecutor {
    fn kind(&self) -> JobKind {
        self.kind
    }

    fn available(&self) -> bool {
        !self.pools.is_empty()
    }

    fn handles(&self, spec: &JobSpec) -> bool {
        spec.connection()
            .is_some_and(|c| self.pools.config(c).is_ok())
    }

    fn execute(&self, job: Job) -> BoxFuture<'_, Outcome> {
        Box::pin(self.run(job))
    }
}

/// How this engine names itself in messages.
const WORDING: exec::Wording = exec::Wording {
    engine: "MySQL",
    empty_batch: "the SQL batch is empty",
};

/// Close a connection for good (it is not returned to the pool).
async fn close(conn: mysql_async::Conn) {
    if tokio::time::timeout(CLOSE_TIMEOUT, conn.disconnect())
        .await
        .is_err()
    {
        debug!("Closing the job connection timed out; dropped");
    }
}

/// Say which connection and server a connect failure was about: an
/// operator with several connections (or agents) needs it to act.
fn name_the_connection(out: &mut Outcome, name: &str, endpoint: &connection::Endpoint) {
    if let Some(error) = out.error.as_mut() {
        *error = format!("connection {name:?} ({endpoint}): {error}");
    }
}

fn fail(e: &Error, job: &Job, capture: Option<&Capture>) -> Outcome {
    let f = failure::classify(e, &job.retry_codes);
    warn!(retryable = f.retryable, error = %f.message, "MySQL job failed");
    exec::failed(f, capture.map(|c| c as &dyn Captured))
}

fn finished(result: Result<Done, Error>, job: &Job, ctx: &Ctx<'_>, capture: &Capture) -> Outcome {
    match result {
        Ok(done) => exec::succeeded(done, ctx.ledger.is_some(), capture, session::ENDED_EARLY),
        Err(e) => fail(&e, job, Some(capture)),
    }
}

fn stopped(stop: Stop, job: &Job, capture: &Capture, report: &kill::KillReport) -> Outcome {
    let extra = vec![("killed", json!(report.killed())), ("kill", report.json())];
    exec::stopped(stop, job, capture, extra, report.text())
}

#[cfg(test)]
mod server_tests;
