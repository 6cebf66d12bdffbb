//! The run ledger: `baton_ledger` in the connection's database, one row per
//! job whose work committed, written in the same transaction as the work.
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS `db`.`baton_ledger` (
//!   fleet VARCHAR(64) NOT NULL, job_id BIGINT NOT NULL,
//!   attempt INT NOT NULL, token BIGINT NOT NULL,
//!   committed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
//!   result LONGTEXT CHARACTER SET utf8mb4 NOT NULL,
//!   PRIMARY KEY (fleet, job_id)) ENGINE=InnoDB
//! ```
//!
//! `result` holds the JSON of the committed attempt's `JobResult.data`. It is
//! LONGTEXT rather than JSON so the text comes back as written on MySQL as
//! well as MariaDB (where JSON is LONGTEXT anyway).

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use serde_json::Value as Json;

use super::Error;
use super::call::quote_schema;
use super::value;
pub use crate::db::common::ledger::{
    Committed, mark_committed, replayed, result_text, stored_result,
};

/// The ledger table's name.
pub const TABLE: &str = "baton_ledger";
/// `ER_NO_SUCH_TABLE`.
const NO_SUCH_TABLE: u16 = 1146;
/// `ER_UNKNOWN_SYSTEM_VARIABLE` (`@@in_transaction` is MariaDB's).
const UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;

/// Where the ledger lives and whether the agent may create it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    /// Connection name (for messages).
    pub connection: String,
    /// The connection's database, quoted.
    schema: String,
    /// May the agent create the table?
    pub create: bool,
}

impl Ledger {
    /// The ledger of `database` on `connection`.
    pub fn new(connection: &str, database: &str, create: bool) -> Result<Self, Error> {
        Ok(Ledger {
            connection: connection.to_owned(),
            schema: quote_schema(database).map_err(Error::Config)?,
            create,
        })
    }

    /// `CREATE TABLE IF NOT EXISTS ...`.
    pub fn create_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {}.`{TABLE}` (\
             fleet VARCHAR(64) NOT NULL, \
             job_id BIGINT NOT NULL, \
             attempt INT NOT NULL, \
             token BIGINT NOT NULL, \
             committed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
             result LONGTEXT CHARACTER SET utf8mb4 NOT NULL, \
             PRIMARY KEY (fleet, job_id)) ENGINE=InnoDB",
            self.schema
        )
    }

    /// Look a job up (bound: fleet, job id).
    pub fn lookup_sql(&self) -> String {
        format!(
            "SELECT result, attempt, token, committed_at FROM {}.`{TABLE}` WHERE fleet = ? AND job_id = ?",
            self.schema
        )
    }

    /// Record a job (bound: fleet, job id, attempt, token, result).
    pub fn record_sql(&self) -> String {
        format!(
            "INSERT INTO {}.`{TABLE}` (fleet, job_id, attempt, token, committed_at, result) \
             VALUES (?, ?, ?, ?, CURRENT_TIMESTAMP(6), ?)",
            self.schema
        )
    }

    /// The committed attempt of `job_id`, if any. A missing table is created
    /// when allowed (and then holds nothing), else a clear error.
    pub async fn lookup(
        &self,
        conn: &mut Conn,
        fleet: &str,
        job_id: i64,
    ) -> Result<Option<Committed>, Error> {
        let mut result = match conn.exec_iter(self.lookup_sql(), (fleet, job_id)).await {
            Ok(r) => r,
            Err(mysql_async::Error::Server(e)) if e.code == NO_SUCH_TABLE => {
                if !self.create {
                    return Err(Error::Config(format!(
                        "the run ledger table {}.`{TABLE}` does not exist and create_ledger is off \
                         for connection {:?}; create it with: {}",
                        self.schema,
                        self.connection,
                        self.create_sql()
                    )));
                }
                conn.query_drop(self.create_sql()).await?;
                tracing::info!(connection = %self.connection, table = %format!("{}.{TABLE}", self.schema), "Run ledger table created");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let rows: Vec<mysql_async::Row> = result.collect().await?;
        result.drop_result().await?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let columns = row.columns();
        let mut cells = row
            .unwrap()
            .into_iter()
            .zip(columns.iter())
            .map(|(v, c)| value::to_json(v, c));
        let text = cells.next().unwrap_or(Json::Null);
        let data = match &text {
            Json::String(s) => stored_result(s),
            other => other.clone(),
        };
        let int = |v: Option<Json>| v.and_then(|v| v.as_i64()).unwrap_or_default();
        Ok(Some(Committed {
            data,
            attempt: int(cells.next()),
            token: int(cells.next()),
            committed_at: cells.next().unwrap_or(Json::Null),
        }))
    }

    /// Write the row of this attempt (inside the job's transaction).
    pub async fn record(
        &self,
        conn: &mut Conn,
        fleet: &str,
        job_id: i64,
        attempt: u32,
        token: i64,
        data: &Json,
    ) -> Result<(), Error> {
        let text = result_text(data);
        conn.exec_drop(self.record_sql(), (fleet, job_id, attempt, token, text))
            .await?;
        Ok(())
    }
}

/// Whether the session is still inside a transaction (`@@in_transaction`,
/// MariaDB); `None` when the server cannot tell (MySQL).
pub async fn in_transaction(conn: &mut Conn) -> Result<Option<bool>, Error> {
    match conn.query_first::<i64, _>("SELECT @@in_transaction").await {
        Ok(v) => Ok(v.map(|v| v != 0)),
        Err(mysql_async::Error::Server(e)) if e.code == UNKNOWN_SYSTEM_VARIABLE => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
