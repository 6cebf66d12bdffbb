//! The run ledger on SQL Server: `dbo.baton_ledger` in the connection's
//! database, one row per job whose work committed, written in the same
//! transaction as the work (same contract as MySQL's, see
//! [`crate::db::common::ledger`]).
//!
//! `result` holds the JSON of the committed attempt's `JobResult.data`;
//! `committed_at` is read back as ISO 8601 text (`CONVERT(..., 127)`).

use serde_json::{Value as Json, json};
use tiberius::Row;

pub use crate::db::common::ledger::{Committed, replayed};
use crate::db::common::ledger::{result_text, stored_result};

use super::exec::{Client, Error};

/// `CREATE TABLE` unless it exists (sent when `create_ledger` is on).
pub const CREATE_SQL: &str = "IF OBJECT_ID(N'dbo.baton_ledger', N'U') IS NULL CREATE TABLE dbo.baton_ledger (fleet nvarchar(64) NOT NULL, job_id bigint NOT NULL, attempt int NOT NULL, token bigint NOT NULL, committed_at datetime2(3) NOT NULL, result nvarchar(max) NOT NULL, CONSTRAINT pk_baton_ledger PRIMARY KEY (fleet, job_id))";

/// Look a job up (@P1 fleet, @P2 job id).
pub const LOOKUP_SQL: &str = "SELECT attempt, token, CONVERT(nvarchar(33), committed_at, 127) AS committed_at, result FROM dbo.baton_ledger WHERE fleet = @P1 AND job_id = @P2";

/// Record a job (@P1 fleet, @P2 job id, @P3 attempt, @P4 token, @P5 result).
pub const RECORD_SQL: &str = "INSERT INTO dbo.baton_ledger (fleet, job_id, attempt, token, committed_at, result) VALUES (@P1, @P2, @P3, @P4, SYSUTCDATETIME(), @P5)";

/// Start the job's transaction; errors inside it doom it.
pub const BEGIN_SQL: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION";
/// Whether our transaction is still open.
pub const TRANCOUNT_SQL: &str = "SELECT @@TRANCOUNT";
/// Commit the work with its ledger row.
pub const COMMIT_SQL: &str = "COMMIT TRANSACTION";
/// Roll back whatever is open (best effort after a failure).
pub const ROLLBACK_SQL: &str = "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION";

/// `Invalid object name` (the table is missing).
const INVALID_OBJECT: u32 = 208;

/// The warning of a job that ended the ledger transaction itself.
pub const ENDED_EARLY: &str = "the job ended the ledger transaction itself (COMMIT or ROLLBACK): \
     its effects and the ledger row were not committed atomically";

/// Create the table when allowed (T1), then look the job up (T2).
pub async fn lookup(
    client: &mut Client,
    connection: &str,
    create: bool,
    fleet: &str,
    job_id: i64,
) -> Result<Option<Committed>, Error> {
    if create {
        client
            .simple_query(CREATE_SQL)
            .await?
            .into_results()
            .await?;
    }
    let found = async {
        client
            .query(LOOKUP_SQL, &[&fleet, &job_id])
            .await?
            .into_row()
            .await
    }
    .await;
    let row = match found {
        Ok(r) => r,
        Err(tiberius::error::Error::Server(e)) if e.code() == INVALID_OBJECT && !create => {
            return Err(Error::Config(format!(
                "the run ledger table dbo.baton_ledger does not exist and create_ledger is off \
                 for connection {connection:?}; create it with: {CREATE_SQL}"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(row.map(|r| committed(&r)))
}

fn committed(row: &Row) -> Committed {
    let attempt: Option<i32> = row.try_get(0).ok().flatten();
    let token: Option<i64> = row.try_get(1).ok().flatten();
    let at: Option<&str> = row.try_get(2).ok().flatten();
    let text: Option<&str> = row.try_get(3).ok().flatten();
    let data = match text {
        Some(s) => stored_result(s),
        None => Json::Null,
    };
    Committed {
        data,
        attempt: attempt.map_or(0, i64::from),
        token: token.unwrap_or_default(),
        committed_at: at.map_or(Json::Null, |s| json!(s)),
    }
}

/// Write this attempt's row (T5, inside the job's transaction).
pub async fn record(
    client: &mut Client,
    fleet: &str,
    job_id: i64,
    attempt: u32,
    token: i64,
    data: &Json,
) -> Result<(), Error> {
    let text = result_text(data);
    let attempt = i32::try_from(attempt).unwrap_or(i32::MAX);
    client
        .execute(RECORD_SQL, &[&fleet, &job_id, &attempt, &token, &text])
        .await?;
    Ok(())
}

/// `@@TRANCOUNT` (T4).
pub async fn trancount(client: &mut Client) -> Result<i64, Error> {
    let row = client.simple_query(TRANCOUNT_SQL).await?.into_row().await?;
    Ok(row.map_or(0, |r| super::session::lenient_int(&r)))
}
