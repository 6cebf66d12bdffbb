//! What a job does on its SQL Server session, in order: take the applock,
//! look at the run ledger (exactly-once jobs), run the procedure or batch
//! (inside a transaction with the ledger row for exactly-once jobs), release
//! the applock. The statements are the wire contract's (S1, L1, L2, T1-T6,
//! W1, W2).

use futures_util::TryStreamExt;
use serde_json::Value as Json;
use tiberius::{ColumnData, Command, CommandItem, QueryItem, Row};
use tracing::{debug, info, warn};

use super::capture::Capture;
use super::exec::{Client, Error};
use super::ledger;
use super::params::CallPlan;
use crate::db::common::exec;
use crate::db::common::session::Attempt;
pub use crate::db::common::session::Done;
use crate::db::common::session::{lock_name, lock_wait_message, say};

/// SQL Server's "Transaction count after EXECUTE indicates a mismatching
/// number of BEGIN and COMMIT statements".
const TRANCOUNT_MISMATCH: u32 = 266;

/// Milliseconds one `sp_getapplock` waits before the loop asks again.
pub const LOCK_TIMEOUT_MS: i32 = 1000;

/// The work of a job: a procedure call (RPC) or a SQL batch.
pub type Work = exec::Work<CallPlan>;

/// What the session needs to know about the job.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The job's attempt (fleet, id, attempt, token, progress).
    pub job: Attempt<'a>,
    /// The connection name (messages).
    pub connection: &'a str,
    /// With the run ledger: whether the agent may create its table.
    pub ledger: Option<bool>,
    /// The job's session settings as one batch (`SET DATEFORMAT dmy; ...`).
    pub settings: Option<String>,
}

impl<'a> std::ops::Deref for Ctx<'a> {
    type Target = Attempt<'a>;

    fn deref(&self) -> &Attempt<'a> {
        &self.job
    }
}

/// An integer cell read leniently (tinyint to bigint).
pub fn lenient_int(row: &Row) -> i64 {
    match row.cells().next().map(|(_, v)| v) {
        Some(ColumnData::U8(Some(v))) => i64::from(*v),
        Some(ColumnData::I16(Some(v))) => i64::from(*v),
        Some(ColumnData::I32(Some(v))) => i64::from(*v),
        Some(ColumnData::I64(Some(v))) => *v,
        _ => 0,
    }
}

/// `SELECT @@SPID` (S1).
pub async fn spid(client: &mut Client) -> Result<i64, Error> {
    let row = client
        .simple_query("SELECT @@SPID")
        .await?
        .into_row()
        .await?;
    Ok(row.map_or(0, |r| lenient_int(&r)))
}

/// Run the job's session: lock, ledger, work, unlock.
pub async fn run(
    client: &mut Client,
    ctx: &Ctx<'_>,
    work: &Work,
    capture: &mut Capture,
) -> Result<Done, Error> {
    let lock = lock_name(ctx.fleet, ctx.job_id);
    take_lock(client, ctx, &lock).await?;
    let result = body(client, ctx, work, capture).await;
    if !broken(&result) {
        match release(client, &lock).await {
            Ok(()) => debug!(lock = %lock, "Applock released"),
            Err(e) => {
                warn!(lock = %lock, error = %e, "Cannot release the applock; it goes with the session")
            }
        }
    }
    result
}

/// Whether the connection is unusable after `result` (I/O, protocol).
pub fn broken<T>(result: &Result<T, Error>) -> bool {
    matches!(result, Err(Error::Tds(e)) if !matches!(e, tiberius::error::Error::Server(_)))
}

/// One `sp_getapplock` call (L1): its return status.
async fn getapplock(client: &mut Client, lock: &str) -> Result<i32, Error> {
    let mut cmd = Command::new("sp_getapplock");
    cmd.bind_param("@Resource", lock);
    cmd.bind_param("@LockMode", "Exclusive");
    cmd.bind_param("@LockOwner", "Session");
    cmd.bind_param("@LockTimeout", LOCK_TIMEOUT_MS);
    let result = cmd.exec(client).await?.into_command_result().await?;
    Ok(result.return_code() as i32)
}

/// `sp_getapplock` in a loop of short waits, saying so while another session
/// holds it.
async fn take_lock(client: &mut Client, ctx: &Ctx<'_>, lock: &str) -> Result<(), Error> {
    let mut announced = false;
    loop {
        match getapplock(client, lock).await? {
            0 | 1 => {
                if announced {
                    info!(lock = %lock, "Applock taken after waiting");
                }
                return Ok(());
            }
            -1 => {
                if !announced {
                    announced = true;
                    info!(lock = %lock, "Waiting for the applock held by another session");
                    say(ctx.progress, lock_wait_message(ctx.fleet, ctx.job_id));
                }
            }
            status => {
                return Err(Error::Lock {
                    lock: lock.to_owned(),
                    status,
                });
            }
        }
    }
}

/// `sp_releaseapplock` (L2).
async fn release(client: &mut Client, lock: &str) -> Result<(), Error> {
    let mut cmd = Command::new("sp_releaseapplock");
    cmd.bind_param("@Resource", lock);
    cmd.bind_param("@LockOwner", "Session");
    cmd.exec(client).await?.into_command_result().await?;
    Ok(())
}

async fn batch(client: &mut Client, sql: &str) -> Result<(), Error> {
    client.simple_query(sql).await?.into_results().await?;
    Ok(())
}

async fn body(
    client: &mut Client,
    ctx: &Ctx<'_>,
    work: &Work,
    capture: &mut Capture,
) -> Result<Done, Error> {
    let Some(create) = ctx.ledger else {
        run_work(client, ctx, work, capture).await?;
        return Ok(Done::Ran {
            transaction_ended_early: false,
        });
    };
    if let Some(committed) =
        ledger::lookup(client, ctx.connection, create, ctx.fleet, ctx.job_id).await?
    {
        info!(
            committed_attempt = committed.attempt,
            committed_token = committed.token,
            "Run ledger has a committed result; replaying it"
        );
        return Ok(Done::Replayed(committed));
    }
    batch(client, ledger::BEGIN_SQL).await?;
    let result = in_transaction(client, ctx, work, capture).await;
    if result.is_err()
        && !broken(&result)
        && let Err(rb) = batch(client, ledger::ROLLBACK_SQL).await
    {
        warn!(error = %rb, "Rollback failed");
    }
    result
}

async fn in_transaction(
    client: &mut Client,
    ctx: &Ctx<'_>,
    work: &Work,
    capture: &mut Capture,
) -> Result<Done, Error> {
    // A procedure that commits (or rolls back) by itself ends with error 266
    // ("Transaction count after EXECUTE indicates a mismatching number of
    // BEGIN and COMMIT statements"): with no earlier error and no
    // transaction left, its effects stand, so the ledger records them.
    let mismatch = match run_work(client, ctx, work, capture).await {
        Ok(()) => None,
        Err(Error::Tds(tiberius::error::Error::Server(e))) if e.code() == TRANCOUNT_MISMATCH => {
            Some(e)
        }
        Err(e) => return Err(e),
    };
    let ended = ledger::trancount(client).await? == 0;
    if let Some(e) = mismatch
        && !ended
    {
        return Err(Error::Tds(tiberius::error::Error::Server(e)));
    }
    if ended {
        warn!(
            "The job ended the ledger transaction itself; its effects and the ledger row are \
             not atomic"
        );
    }
    let data: Json = exec::committed_data(capture, ended, ledger::ENDED_EARLY);
    ledger::record(client, ctx.fleet, ctx.job_id, ctx.attempt, ctx.token, &data).await?;
    if !ended {
        // Without a transaction the row committed on its own, and SQL Server
        // refuses a COMMIT without BEGIN (3902).
        batch(client, ledger::COMMIT_SQL).await?;
    }
    Ok(Done::Ran {
        transaction_ended_early: ended,
    })
}

/// The procedure (W1) or the batch (W2), captured.
async fn run_work(
    client: &mut Client,
    ctx: &Ctx<'_>,
    work: &Work,
    capture: &mut Capture,
) -> Result<(), Error> {
    if let Some(settings) = &ctx.settings {
        batch(client, settings).await?;
        debug!(batch = %settings, "Session settings applied");
    }
    match work {
        Work::Call(plan) => {
            say(ctx.progress, format!("running EXEC {}", plan.procedure));
            let mut cmd = Command::new(plan.procedure.as_str());
            for p in &plan.params {
                if p.output {
                    cmd.bind_out_param(p.name.as_str(), p.value.clone());
                } else {
                    cmd.bind_param(p.name.as_str(), p.value.clone());
                }
            }
            let mut stream = cmd.exec(client).await?;
            while let Some(item) = stream.try_next().await? {
                match item {
                    CommandItem::Metadata(m) => capture.begin_set(m.columns()),
                    CommandItem::Row(row) => capture.push_row(row),
                    CommandItem::ReturnStatus(s) => capture.set_return_status(s as i32),
                    CommandItem::ReturnValue(rv) => {
                        let name = rv.name().trim_start_matches('@');
                        // The name as given in the job (the server may change its case).
                        let key = plan
                            .params
                            .iter()
                            .find(|p| p.key.eq_ignore_ascii_case(name))
                            .map_or(name, |p| p.key.as_str());
                        capture.set_out(key, rv.data());
                    }
                    CommandItem::RowsAffected(n) => capture.statement_done(n),
                }
            }
        }
        Work::Batch(sql) => {
            say(ctx.progress, "running the SQL batch".into());
            let mut stream = client.simple_query(sql.as_str()).await?;
            while let Some(item) = stream.try_next().await? {
                match item {
                    QueryItem::Metadata(m) => capture.begin_set(m.columns()),
                    QueryItem::Row(row) => capture.push_row(row),
                }
            }
        }
    }
    Ok(())
}
