//! What a backup sends to SQL Server, exactly (the wire contract's "Session"
//! and "Native backups" sections), and how the replies are read.

use tiberius::Row;

use super::Error;
use crate::db::mssql::connection::MssqlClient;
use crate::db::mssql::failure;

/// S1: the session id, for the progress poll.
pub const SPID: &str = "SELECT @@SPID";
/// B1: version, edition and banner.
pub const SERVER_INFO: &str = "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS \
     product_version, CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS edition, @@VERSION AS \
     banner";
/// B2: whether the database exists and is online (@P1 = name).
pub const DATABASE_STATE: &str =
    "SELECT state_desc, recovery_model_desc FROM sys.databases WHERE name = @P1";
/// B4: the backup's progress (@P1 = its session id).
pub const PERCENT: &str =
    "SELECT percent_complete FROM sys.dm_exec_requests WHERE session_id = @P1";
/// B5: check the backup's checksums (@P1 = the file).
pub const VERIFY: &str = "RESTORE VERIFYONLY FROM DISK = @P1 WITH CHECKSUM";

/// B3: `BACKUP DATABASE @P1 TO DISK = @P2 WITH CHECKSUM, COPY_ONLY, INIT,
/// STATS = 5`, plus `, COMPRESSION` when asked.
pub fn backup_statement(compression: bool) -> String {
    let mut s =
        String::from("BACKUP DATABASE @P1 TO DISK = @P2 WITH CHECKSUM, COPY_ONLY, INIT, STATS = 5");
    if compression {
        s.push_str(", COMPRESSION");
    }
    s
}

/// What B1 says about the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServerInfo {
    /// `SERVERPROPERTY('ProductVersion')`, e.g. `16.0.4135.4`.
    pub product_version: Option<String>,
    /// `SERVERPROPERTY('Edition')`.
    pub edition: Option<String>,
    /// `@@VERSION`.
    pub banner: Option<String>,
}

/// What B2 says about the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseState {
    /// `state_desc` (`ONLINE`, `RESTORING`, `OFFLINE`, ...).
    pub state: String,
    /// `recovery_model_desc` (`FULL`, `SIMPLE`, `BULK_LOGGED`).
    pub recovery_model: Option<String>,
}

/// A server error (or client failure) as this module's error.
pub(super) fn server(e: &tiberius::error::Error, retry_codes: &[i64]) -> Error {
    Error::Server(failure::classify(e, retry_codes))
}

/// An integer column, whatever its width.
pub fn int_column(row: &Row, idx: usize) -> Option<i64> {
    if let Ok(Some(v)) = row.try_get::<i16, _>(idx) {
        return Some(i64::from(v));
    }
    if let Ok(Some(v)) = row.try_get::<i32, _>(idx) {
        return Some(i64::from(v));
    }
    if let Ok(Some(v)) = row.try_get::<i64, _>(idx) {
        return Some(v);
    }
    if let Ok(Some(v)) = row.try_get::<u8, _>(idx) {
        return Some(i64::from(v));
    }
    None
}

/// A REAL/FLOAT column (or an integer one) as f32.
pub fn real_column(row: &Row, idx: usize) -> Option<f32> {
    if let Ok(Some(v)) = row.try_get::<f32, _>(idx) {
        return Some(v);
    }
    if let Ok(Some(v)) = row.try_get::<f64, _>(idx) {
        return Some(v as f32);
    }
    int_column(row, idx).map(|v| v as f32)
}

fn text_column(row: &Row, idx: usize) -> Option<String> {
    row.try_get::<&str, _>(idx)
        .ok()
        .flatten()
        .map(str::to_owned)
}

/// S1 `SELECT @@SPID`.
pub(super) async fn spid(client: &mut MssqlClient, retry: &[i64]) -> Result<i16, Error> {
    let row = client
        .simple_query(SPID)
        .await
        .map_err(|e| server(&e, retry))?
        .into_row()
        .await
        .map_err(|e| server(&e, retry))?
        .ok_or_else(|| Error::Reply("SELECT @@SPID returned no row".into()))?;
    int_column(&row, 0)
        .and_then(|v| i16::try_from(v).ok())
        .ok_or_else(|| Error::Reply("SELECT @@SPID returned no session id".into()))
}

/// B1 version, edition, banner.
pub(super) async fn server_info(
    client: &mut MssqlClient,
    retry: &[i64],
) -> Result<ServerInfo, Error> {
    let row = client
        .simple_query(SERVER_INFO)
        .await
        .map_err(|e| server(&e, retry))?
        .into_row()
        .await
        .map_err(|e| server(&e, retry))?;
    Ok(row.map_or_else(ServerInfo::default, |row| ServerInfo {
        product_version: text_column(&row, 0),
        edition: text_column(&row, 1),
        banner: text_column(&row, 2),
    }))
}

/// B2 the database's state; `None` when there is no such database.
pub(super) async fn database_state(
    client: &mut MssqlClient,
    database: &str,
    retry: &[i64],
) -> Result<Option<DatabaseState>, Error> {
    let row = client
        .query(DATABASE_STATE, &[&database])
        .await
        .map_err(|e| server(&e, retry))?
        .into_row()
        .await
        .map_err(|e| server(&e, retry))?;
    Ok(row.map(|row| DatabaseState {
        state: text_column(&row, 0).unwrap_or_default(),
        recovery_model: text_column(&row, 1),
    }))
}

/// B4 the backup's `percent_complete`; `None` when its session runs no
/// BACKUP/RESTORE (any more).
pub(super) async fn percent(
    client: &mut MssqlClient,
    spid: i16,
) -> Result<Option<f32>, tiberius::error::Error> {
    let row = client
        .query(PERCENT, &[&i32::from(spid)])
        .await?
        .into_row()
        .await?;
    Ok(row.and_then(|r| real_column(&r, 0)))
}

#[cfg(test)]
mod tests;
