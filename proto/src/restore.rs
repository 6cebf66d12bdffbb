//! The `restore` job kind's spec and the checks the controller and the agent
//! share (pure: names and paths in, a refusal out).

use serde::{Deserialize, Serialize};

use crate::valid_name;

/// A restore of a dump (MySQL/MariaDB) or native backup (SQL Server) into a
/// database named in the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreSpec {
    /// Connection name configured on the agent host (where it is restored).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.\-]{1,128}$"))]
    pub connection: String,
    /// Where the dump comes from.
    pub source: RestoreSource,
    /// The database restored into (validated by the controller and the agent).
    pub database: String,
    /// Drop and replace the database when it exists; without it a restore
    /// over an existing database is refused before the file is read.
    #[serde(default)]
    pub replace: bool,
}

/// Where a restore's dump comes from. Exactly one source is given; today
/// that is `file` (an object store's `store` and `key` come next).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreSource {
    /// Absolute path on the agent of a dump (`.sql.zst`) or backup (`.bak`)
    /// that a `dump` job wrote, with its `.manifest.json` beside it; it must
    /// lie under one of the agent's dump directories. In a pipeline:
    /// `${steps.<dump step>.result.file}` with `same_agent_as`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// Longest database name a restore may create (MySQL's limit; SQL Server allows 128).
pub const MAX_DATABASE_LEN: usize = 64;
/// Longest source path.
pub const MAX_PATH_LEN: usize = 4096;

/// Databases a restore never writes into, whatever the engine (compared
/// without regard to case).
pub const SYSTEM_DATABASES: [&str; 8] = [
    "mysql",
    "information_schema",
    "performance_schema",
    "sys",
    "master",
    "model",
    "msdb",
    "tempdb",
];

/// Why `name` cannot be a restore's target database, if it cannot.
pub fn database_refusal(name: &str) -> Option<String> {
    if !valid_name(name) || name.starts_with(['.', '-']) {
        return Some(
            "must be 1-64 characters of A-Z a-z 0-9 _ . - (not starting with . or -)".into(),
        );
    }
    if name.len() > MAX_DATABASE_LEN {
        return Some(format!("must be at most {MAX_DATABASE_LEN} characters"));
    }
    if SYSTEM_DATABASES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
    {
        return Some(format!(
            "{name} is a system database; a restore never writes into it"
        ));
    }
    None
}

/// Why `path` cannot be a restore's source file, if it cannot. Where it may
/// lie (absolute, under the agent's dump directories) only the agent knows.
pub fn file_refusal(path: &str) -> Option<String> {
    if path.trim().is_empty() {
        return Some("must not be empty".into());
    }
    if path.len() > MAX_PATH_LEN {
        return Some(format!("must be at most {MAX_PATH_LEN} bytes"));
    }
    if path.contains('\0') {
        return Some("must not contain NUL bytes".into());
    }
    if path.split(['/', '\\']).any(|c| c == "..") {
        return Some("must not contain a `..` component".into());
    }
    None
}

#[cfg(test)]
mod tests;
