//! What a job does on its session, in order: take the database lock, look
//! at the run ledger (exactly-once jobs), run the call or batch (inside a
//! transaction with the ledger row for exactly-once jobs), release the lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params};
use serde_json::Value as Json;
use tracing::{debug, info, warn};

use super::call::CallPlan;
use super::capture::{self, Capture, Warning};
use super::ledger::{self, Ledger};
use super::{Error, value};
use crate::db::common::exec;
use crate::db::common::session::Attempt;
pub use crate::db::common::session::{Done, lock_name, lock_wait_message, say};

/// Seconds one `GET_LOCK` waits before the loop asks again.
pub const LOCK_POLL_SECS: u64 = 1;

/// The work of a job: a procedure call, or a SQL batch (text protocol,
/// several statements allowed).
pub type Work = exec::Work<CallPlan>;

/// Set when the job is being stopped; the session checks it between
/// statements so it never commits after a stop was decided.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Mark the job as stopping.
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// `Err(Stopped)` once raised.
    pub fn check(&self) -> Result<(), Error> {
        if self.0.load(Ordering::SeqCst) {
            Err(Error::Stopped)
        } else {
            Ok(())
        }
    }
}

/// What the session needs to know about the job.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The job's attempt (fleet, id, attempt, token, progress).
    pub job: Attempt<'a>,
    /// Raised on stop.
    pub stop: StopFlag,
    /// The run ledger, for exactly-once jobs.
    pub ledger: Option<Ledger>,
    /// `SET SESSION k = ?, ...` and its values: the job's session settings.
    pub settings: Option<(String, Vec<mysql_async::Value>)>,
}

impl<'a> std::ops::Deref for Ctx<'a> {
    type Target = Attempt<'a>;

    fn deref(&self) -> &Attempt<'a> {
        &self.job
    }
}

/// Run the job's session: lock, ledger, work, unlock.
pub async fn run(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    work: &Work,
    capture: &mut Capture,
) -> Result<Done, Error> {
    let lock = lock_name(ctx.fleet, ctx.job_id);
    take_lock(conn, ctx, &lock).await?;
    let result = body(conn, ctx, work, capture).await;
    let broken = matches!(&result, Err(Error::Mysql(e)) if e.is_fatal());
    if !broken {
        match conn.exec_drop("DO RELEASE_LOCK(?)", (lock.as_str(),)).await {
            Ok(()) => debug!(lock = %lock, "Database lock released"),
            Err(e) => {
                warn!(lock = %lock, error = %e, "Cannot release the database lock; it goes with the session")
            }
        }
    }
    result
}

/// `GET_LOCK` in a loop of short waits, saying so while another session holds it.
async fn take_lock(conn: &mut Conn, ctx: &Ctx<'_>, lock: &str) -> Result<(), Error> {
    let mut announced = false;
    loop {
        ctx.stop.check()?;
        let got: Option<Option<i64>> = conn
            .exec_first("SELECT GET_LOCK(?, ?)", (lock, LOCK_POLL_SECS))
            .await?;
        match got.flatten() {
            Some(1) => {
                if announced {
                    info!(lock = %lock, "Database lock taken after waiting");
                }
                return Ok(());
            }
            Some(0) => {
                if !announced {
                    announced = true;
                    info!(lock = %lock, "Waiting for the database lock held by another session");
                    say(ctx.progress, lock_wait_message(ctx.fleet, ctx.job_id));
                }
            }
            _ => {
                ctx.stop.check()?;
                return Err(Error::Lock {
                    lock: lock.to_owned(),
                });
            }
        }
    }
}

async fn body(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    work: &Work,
    capture: &mut Capture,
) -> Result<Done, Error> {
    let Some(ledger) = &ctx.ledger else {
        run_work(conn, ctx, work, capture).await?;
        return Ok(Done::Ran {
            transaction_ended_early: false,
        });
    };
    if let Some(committed) = ledger.lookup(conn, ctx.fleet, ctx.job_id).await? {
        info!(
            committed_attempt = committed.attempt,
            committed_token = committed.token,
            "Run ledger has a committed result; replaying it"
        );
        return Ok(Done::Replayed(committed));
    }
    ctx.stop.check()?;
    conn.query_drop("START TRANSACTION").await?;
    let result = in_transaction(conn, ctx, ledger, work, capture).await;
    if let Err(e) = &result {
        let usable = !matches!(e, Error::Mysql(m) if m.is_fatal());
        if usable && let Err(rb) = conn.query_drop("ROLLBACK").await {
            warn!(error = %rb, "Rollback failed");
        }
    }
    result
}

async fn in_transaction(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    ledger: &Ledger,
    work: &Work,
    capture: &mut Capture,
) -> Result<Done, Error> {
    run_work(conn, ctx, work, capture).await?;
    ctx.stop.check()?;
    let ended = ledger::in_transaction(conn).await? == Some(false);
    if ended {
        warn!(
            "The job ended the ledger transaction itself (COMMIT or DDL); its effects and the \
             ledger row are not atomic"
        );
    }
    let data = exec::committed_data(capture, ended, ENDED_EARLY);
    ledger
        .record(conn, ctx.fleet, ctx.job_id, ctx.attempt, ctx.token, &data)
        .await?;
    ctx.stop.check()?;
    conn.query_drop("COMMIT").await?;
    Ok(Done::Ran {
        transaction_ended_early: ended,
    })
}

/// The warning of a job that ended the ledger transaction itself.
pub const ENDED_EARLY: &str = "the job ended the ledger transaction itself (COMMIT or DDL): its \
     effects and the ledger row were not committed atomically";

/// The call or batch itself, captured; then the warnings and OUT values.
async fn run_work(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    work: &Work,
    capture: &mut Capture,
) -> Result<(), Error> {
    ctx.stop.check()?;
    if let Some((sql, values)) = &ctx.settings {
        conn.exec_drop(sql.as_str(), Params::Positional(values.clone()))
            .await?;
        debug!(statement = %sql, "Session settings applied");
    }
    match work {
        Work::Call(plan) => {
            if let Some((sql, values)) = &plan.set {
                conn.exec_drop(sql.as_str(), Params::Positional(values.clone()))
                    .await?;
            }
            say(ctx.progress, format!("running CALL {}", plan.procedure));
            let params = if plan.params.is_empty() {
                Params::Empty
            } else {
                Params::Positional(plan.params.clone())
            };
            let result = conn.exec_iter(plan.call.as_str(), params).await?;
            capture::drain(result, capture).await?;
            warnings(conn, capture).await?;
            if let Some(select) = &plan.select_out {
                let result = conn.query_iter(select.as_str()).await?;
                let rows: Vec<mysql_async::Row> = result.collect_and_drop().await?;
                if let Some(row) = rows.into_iter().next() {
                    let columns = row.columns();
                    for ((v, c), (name, hint)) in
                        row.unwrap().into_iter().zip(columns.iter()).zip(&plan.outs)
                    {
                        let cell = value::to_json(v, c);
                        let cell = match hint {
                            Some(hint) => value::apply_hint(cell, hint),
                            None => cell,
                        };
                        capture.set_out(name, cell);
                    }
                }
            }
        }
        Work::Batch(sql) => {
            say(ctx.progress, "running the SQL batch".into());
            let result = conn.query_iter(sql.as_str()).await?;
            capture::drain(result, capture).await?;
            warnings(conn, capture).await?;
        }
    }
    Ok(())
}

/// `SHOW WARNINGS` of the last statement.
async fn warnings(conn: &mut Conn, capture: &mut Capture) -> Result<(), Error> {
    let result = conn.query_iter("SHOW WARNINGS").await?;
    let rows: Vec<mysql_async::Row> = result.collect_and_drop().await?;
    for row in rows {
        let columns = row.columns();
        let cells: Vec<Json> = row
            .unwrap()
            .into_iter()
            .zip(columns.iter())
            .map(|(v, c)| value::to_json(v, c))
            .collect();
        let text = |i: usize| match cells.get(i) {
            Some(Json::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        capture.push_warning(Warning {
            level: text(0),
            code: cells.get(1).and_then(Json::as_u64).unwrap_or_default(),
            message: text(2),
        });
    }
    Ok(())
}

/// Poll a session's presence from another connection until it is gone.
pub async fn wait_gone(side: &mut Conn, id: u64, within: Duration) -> Result<bool, Error> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let n: Option<i64> = side
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?",
                (id,),
            )
            .await?;
        if n.unwrap_or(0) == 0 {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
