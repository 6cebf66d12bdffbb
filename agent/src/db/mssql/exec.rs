//! The `procedure` and `sql` kinds on SQL Server connections.
//!
//! # A job from start to end
//!
//! 1. The spec is checked ([`super::params`]): the procedure name
//!    (bracket-quoted), parameter names and values, typed by `sql_type` or by
//!    the value. A bad spec fails for good, naming the field.
//! 2. One connection per job ([`MssqlConnection::connect`], within
//!    `connect_timeout`, cancel- and timeout-aware) and its `@@SPID`.
//! 3. **Database-side lock**: `sp_getapplock` on `baton:<fleet>:job:<id>`,
//!    owned by the session, 1 s per call in a loop; while another session
//!    holds it (a zombie agent still running the job after a takeover) the
//!    progress says `waiting for the database lock ... held by another
//!    session`. Status -2 (cancelled), -3 (deadlock victim) or -999 fail.
//! 4. **Run ledger** (`exactly_once: true`, [`super::ledger`]): if
//!    `dbo.baton_ledger` has the job's row, its result is reported
//!    (`data.ledger = "replayed"`) and nothing runs. Otherwise
//!    `SET XACT_ABORT ON; BEGIN TRANSACTION`, the work, `@@TRANCOUNT` (0: the
//!    work ended the transaction itself → `ledger_warning`), the ledger row,
//!    `COMMIT`; on a failure `IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION`.
//! 5. The job's session settings, if any, as one plain SQL batch built from
//!    allow-listed, checked values ([`params::session_batch`]: a SET inside
//!    a parameterized request would revert when it ends). Then the work: an
//!    RPC to the procedure (IN values bound, OUT/INOUT as
//!    OUTPUT parameters, their RETURNVALUEs in `data.out`, the return status
//!    in `data.return_status`) or the batch as one SQL batch; every result
//!    set captured within bounds ([`super::capture`]).
//! 6. `sp_releaseapplock`, and the connection is closed (one connection per
//!    job: session settings never reach another job).
//!
//! # Stops
//!
//! Cancel, lease loss and the execution timeout stop reading (the request's
//! future is dropped), send a TDS ATTENTION (`cancel_query`) and wait up to
//! [`ATTENTION_GRACE`] for its acknowledgement, then drop the connection: SQL
//! Server rolls back the open transaction and frees the session's applock
//! when the session ends. Nothing is written or committed after a stop.
//! The outcome has `data.cancel = {"attention_sent", "acknowledged"}`.
//!
//! # Limits
//!
//! The ledger row and the work commit together only if the work stays inside
//! the agent's transaction. A procedure that commits or rolls back by itself
//! ends with SQL Server's error 266 (transaction count mismatch); when that is
//! its only error and `@@TRANCOUNT` is 0 afterwards, its effects stand: the
//! ledger row is written on its own (no COMMIT, which would fail with 3902)
//! and the result carries `ledger_warning`. A batch that commits by itself
//! is noticed the same way (`@@TRANCOUNT` 0). A procedure that rolled back
//! silently looks the same and is recorded as done.
//!
//! A NULL value is typed on the wire only for integer, float, bit and
//! uniqueidentifier types (tiberius 0.13 sends other NULLs as NULLTYPE, which
//! SQL Server converts to the parameter's declared type).
//! `sql` jobs have `affected_rows: null` and no job has `warnings`: tiberius
//! surfaces neither a batch's DONE counts nor INFO messages.

use std::sync::Arc;
use std::time::Duration;

use baton_proto::{JobKind, JobSpec};
use serde_json::{Value as Json, json};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Connections;
use super::capture::{Capture, Limits};
use super::failure;
use super::ledger;
use super::params;
use super::session::{self, Ctx, Done};
use crate::db::common::exec::{self, Captured, Planned};
use crate::db::common::session::Attempt;
pub use crate::db::mssql::connection::MssqlClient as Client;
use crate::db::mssql::connection::MssqlConnection;
use crate::executor::stop::{self, Stop};
use crate::executor::{BoxFuture, Executor, Job, Outcome};

/// How long the server gets to acknowledge an ATTENTION.
pub const ATTENTION_GRACE: Duration = Duration::from_secs(2);
/// How long closing a job connection may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a SQL Server job could not run (classified by [`failure::classify_job`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is invalid (names, parameters, values).
    #[error("{0}")]
    Invalid(String),
    /// The agent's configuration does not allow the job.
    #[error("{0}")]
    Config(String),
    /// No session (password, network, TLS, login, connect timeout).
    #[error(transparent)]
    Connect(#[from] crate::db::mssql::connection::ConnectError),
    /// `sp_getapplock` refused the lock.
    #[error("sp_getapplock('{lock}') returned {status} ({})", failure::applock_status(*status))]
    Lock {
        /// Lock resource.
        lock: String,
        /// Return status.
        status: i32,
    },
    /// The driver or the server.
    #[error(transparent)]
    Tds(#[from] tiberius::error::Error),
}

/// Runs `procedure` or `sql` jobs on this agent's SQL Server connections.
#[derive(Debug, Clone)]
pub struct MssqlExecutor {
    kind: JobKind,
    connections: Arc<Connections>,
    limits: Limits,
}

impl MssqlExecutor {
    /// The `procedure` executor.
    pub fn procedure(connections: Arc<Connections>) -> Self {
        MssqlExecutor {
            kind: JobKind::Procedure,
            connections,
            limits: Limits::default(),
        }
    }

    /// The `sql` executor.
    pub fn sql(connections: Arc<Connections>) -> Self {
        MssqlExecutor {
            kind: JobKind::Sql,
            ..Self::procedure(connections)
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
        } = match exec::prepare(&job.spec, params::plan, WORDING) {
            Ok(p) => p,
            Err(e) => return fail(&Error::Invalid(e), &job, None),
        };
        let settings = match params::session_batch(session) {
            Ok(s) => s,
            Err(e) => return fail(&Error::Invalid(e), &job, None),
        };
        let config = match self.connections.get(connection) {
            Ok(c) => c,
            Err(e) => return fail(&Error::Config(e), &job, None),
        };
        let deadline = job.timeout.map(|t| Instant::now() + t);
        let (mut client, spid) =
            match stop::open_unless_stopped(&job, connection, deadline, open(config)).await {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => return fail(&e, &job, None),
                Err(stopped) => return stopped,
            };
        debug!(connection = %connection, session = spid, "SQL Server session opened");
        let ctx = Ctx {
            job: Attempt::of(&job, self.connections.fleet()),
            connection,
            ledger: exactly_once.then_some(config.create_ledger),
            settings,
        };
        let mut capture = Capture::new(self.limits);
        let ended = {
            let fut = session::run(&mut client, &ctx, &work, &mut capture);
            stop::work_or_stop(&job, deadline, fut).await
            // The request's future is dropped here: nothing more is read,
            // written or committed on its behalf.
        };
        match ended {
            Ok(result) => {
                if session::broken(&result) {
                    drop(client);
                } else {
                    close(client).await;
                }
                finished(result, &job, &capture)
            }
            Err(stop) => {
                let report = attention(&mut client, spid, stop).await;
                // Never reuse a connection after a stop: the session ends,
                // SQL Server rolls back and frees the applock.
                drop(client);
                stopped(stop, &job, &capture, &report)
            }
        }
    }
}

impl Executor for MssqlExecutor {
    fn kind(&self) -> JobKind {
        self.kind
    }

    fn available(&self) -> bool {
        !self.connections.is_empty()
    }

    fn handles(&self, spec: &JobSpec) -> bool {
        self.connections.handles(spec)
    }

    fn execute(&self, job: Job) -> BoxFuture<'_, Outcome> {
        Box::pin(self.run(job))
    }
}

/// Connect and read `@@SPID`.
pub(super) async fn open(config: &MssqlConnection) -> Result<(Client, i64), Error> {
    let mut client = config.connect().await.map_err(Error::Connect)?;
    let spid = session::spid(&mut client).await?;
    Ok((client, spid))
}

/// What the ATTENTION did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AttentionReport {
    spid: i64,
    sent: Result<(), String>,
    acknowledged: bool,
}

impl AttentionReport {
    pub(super) fn text(&self) -> String {
        match (&self.sent, self.acknowledged) {
            (Ok(()), true) => format!(
                "attention sent to SQL Server session {}, acknowledged",
                self.spid
            ),
            (Ok(()), false) => format!(
                "attention sent to SQL Server session {}, not acknowledged within {}; \
                 connection dropped",
                self.spid,
                humantime::format_duration(ATTENTION_GRACE)
            ),
            (Err(e), _) => format!(
                "attention could not be sent to SQL Server session {} ({e}); connection dropped",
                self.spid
            ),
        }
    }

    fn json(&self) -> Json {
        json!({
            "attention_sent": self.sent.is_ok(),
            "acknowledged": self.acknowledged,
            "session_id": self.spid,
            "error": self.sent.as_ref().err(),
        })
    }
}

/// Send a TDS ATTENTION and wait for its acknowledgement, within the grace.
pub(super) async fn attention(client: &mut Client, spid: i64, stop: Stop) -> AttentionReport {
    warn!(
        session = spid,
        reason = stop.word(),
        "Stopping the job's request on SQL Server (attention)"
    );
    let (sent, acknowledged) =
        match tokio::time::timeout(ATTENTION_GRACE, client.cancel_query()).await {
            Ok(Ok(())) => (Ok(()), true),
            // Refused before writing (a request half written when its future was
            // dropped, or a command timeout) or the socket failed: not sent.
            Ok(Err(e))
                if matches!(e, tiberius::error::Error::Io { .. })
                    || e.to_string().contains("can no longer be used") =>
            {
                (Err(e.to_string()), false)
            }
            // Sent, but the reply did not end with DONE(ATTN).
            Ok(Err(e)) => {
                debug!(session = spid, error = %e, "Attention not acknowledged");
                (Ok(()), false)
            }
            Err(_) => (Ok(()), false),
        };
    info!(
        session = spid,
        attention_sent = sent.is_ok(),
        acknowledged,
        "Job request stopped on SQL Server"
    );
    AttentionReport {
        spid,
        sent,
        acknowledged,
    }
}

/// How this engine names itself in messages.
const WORDING: exec::Wording = exec::Wording {
    engine: "SQL Server",
    empty_batch: "spec.sql: the SQL batch is empty",
};

/// Close a job connection (one per job).
pub(super) async fn close(client: Client) {
    match tokio::time::timeout(CLOSE_TIMEOUT, client.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "Closing the job connection failed"),
        Err(_) => debug!("Closing the job connection timed out; dropped"),
    }
}

fn fail(e: &Error, job: &Job, capture: Option<&Capture>) -> Outcome {
    let f = failure::classify_job(e, &job.retry_codes);
    warn!(retryable = f.retryable, error = %f.message, "SQL Server job failed");
    exec::failed(f, capture.map(|c| c as &dyn Captured))
}

fn finished(result: Result<Done, Error>, job: &Job, capture: &Capture) -> Outcome {
    match result {
        Ok(done) => exec::succeeded(done, job_has_ledger(job), capture, ledger::ENDED_EARLY),
        Err(e) => fail(&e, job, Some(capture)),
    }
}

fn job_has_ledger(job: &Job) -> bool {
    match &job.spec {
        JobSpec::Procedure(p) => p.exactly_once,
        JobSpec::Sql(s) => s.exactly_once,
        _ => false,
    }
}

fn stopped(stop: Stop, job: &Job, capture: &Capture, report: &AttentionReport) -> Outcome {
    let extra = vec![("cancel", report.json())];
    exec::stopped(stop, job, capture, extra, report.text())
}
