//! The manifest written next to each native backup (`<stem>.manifest.json`)
//! and sent as the job's `result.data` (plus the paths).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::sql::ServerInfo;

pub use crate::db::common::report::result_data;

/// Version of the manifest format.
pub const FORMAT: u32 = 1;
/// The `kind` field: which engine and method made the file.
pub const KIND: &str = "mssql_native_backup";

/// What a backup is and how to trust it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    /// Format version.
    pub format: u32,
    /// Always [`KIND`].
    pub kind: String,
    /// The backup file's name (same directory).
    pub file: String,
    /// Connection name on the agent.
    pub connection: String,
    /// Database backed up.
    pub database: String,
    /// Its recovery model (`FULL`, `SIMPLE`, `BULK_LOGGED`).
    pub recovery_model: Option<String>,
    /// Version, edition and banner of the server.
    pub server: ServerInfo,
    /// Bytes of the file.
    pub size_bytes: u64,
    /// sha256 of the file (hex, as `sha256sum` prints it); null when the
    /// agent cannot read the file.
    pub sha256: Option<String>,
    /// Why `sha256` is null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256_error: Option<String>,
    /// Start of the backup (RFC 3339 UTC, milliseconds: [`baton_proto::time`]).
    #[serde(with = "baton_proto::time::ms")]
    pub started_at: DateTime<Utc>,
    /// End of the verification, same format.
    #[serde(with = "baton_proto::time::ms")]
    pub finished_at: DateTime<Utc>,
    /// Milliseconds from start to end, measured on the monotonic clock.
    pub duration_ms: u64,
    /// `WITH COMPRESSION`.
    pub compression: bool,
    /// `WITH CHECKSUM` (always).
    pub checksum: bool,
    /// `WITH COPY_ONLY` (always: the log chain and differential base of the
    /// server's own backups are left alone).
    pub copy_only: bool,
    /// `RESTORE VERIFYONLY … WITH CHECKSUM`.
    pub verify: Verdict,
    /// Job id.
    pub job_id: i64,
    /// Attempt number.
    pub attempt: u32,
    /// Fencing token of the attempt.
    pub token: i64,
}

/// The verification's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Whether the backup set verified.
    pub ok: bool,
    /// What was checked, or what failed.
    pub message: String,
}

#[cfg(test)]
mod tests;
