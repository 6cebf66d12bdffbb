//! The manifest written next to each dump (`<stem>.manifest.json`) and sent
//! as the job's `result.data` (plus the paths).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::verify::Verdict;

/// Version of the manifest format.
pub const FORMAT: u32 = 1;

/// What a dump is and how to trust it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// Format version.
    pub format: u32,
    /// The dump file's name (same directory).
    pub file: String,
    /// Connection name on the agent.
    pub connection: String,
    /// Database dumped.
    pub database: String,
    /// Its default character set and collation (a `restore` creates its
    /// database with them).
    pub charset: Option<Charset>,
    /// `SELECT VERSION()`.
    pub server_version: Option<String>,
    /// Replication position, when known.
    pub binlog: Option<Binlog>,
    /// The dump tool.
    pub tool: Tool,
    /// Arguments after the defaults file.
    pub arguments: Vec<String>,
    /// Compression of the file.
    pub compression: Compression,
    /// Bytes of SQL.
    pub uncompressed_bytes: u64,
    /// Bytes of the file.
    pub compressed_bytes: u64,
    /// sha256 of the file (hex), as `sha256sum` prints it.
    pub sha256: String,
    /// sha256 of the SQL (hex), as `zstd -dc | sha256sum` prints it.
    pub sha256_uncompressed: String,
    /// Size estimate from `information_schema` (data + indexes).
    pub estimated_bytes: Option<u64>,
    /// Start of the dump (RFC 3339 UTC, milliseconds: [`baton_proto::time`]).
    #[serde(with = "baton_proto::time::ms")]
    pub started_at: DateTime<Utc>,
    /// End of the dump (before the restore check), same format.
    #[serde(with = "baton_proto::time::ms")]
    pub ended_at: DateTime<Utc>,
    /// Milliseconds from start to end, measured on the monotonic clock.
    pub duration_ms: u64,
    /// Job id.
    pub job_id: i64,
    /// Fencing token of the attempt.
    pub token: i64,
    /// Restore check verdict; null when not asked for.
    pub verify: Option<Verdict>,
    /// Things worth knowing (skipped checks, invisible routines, ...).
    pub warnings: Vec<String>,
}

/// A database's default character set and collation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Charset {
    /// `DEFAULT_CHARACTER_SET_NAME`.
    pub character_set: String,
    /// `DEFAULT_COLLATION_NAME`.
    pub collation: String,
}

/// The dump tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tool {
    /// Path.
    pub path: String,
    /// First line of `--version`.
    pub version: String,
}

/// Compression of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compression {
    /// Always `zstd`.
    pub algorithm: String,
    /// Level.
    pub level: i32,
}

/// A binlog position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binlog {
    /// Binlog file.
    pub file: Option<String>,
    /// Offset in it.
    pub position: Option<u64>,
    /// GTID position (`@@gtid_binlog_pos` on MariaDB, `@@gtid_executed` on MySQL).
    pub gtid: Option<String>,
    /// `dump`: written by the tool at its snapshot (`--master-data=2`/`--gtid`),
    /// exact. `server_after_dump`: asked right after the dump ended, so
    /// only an upper bound of the snapshot's position when writes went on.
    pub source: String,
}
