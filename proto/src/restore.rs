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
    /// over an existing database is refused before the file is read (or
    /// the object downloaded).
    #[serde(default)]
    pub replace: bool,
}

/// Where a restore's dump comes from: exactly one of `file`, or `store` with
/// one of `key` and `key_prefix`.
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
    /// Object store configured on the agent host (`[stores.<name>]`) holding
    /// an object an `upload` job wrote, with its `.manifest.json` next to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// The object's key under the store's prefix
    /// (`main/shop/2026/12/06/20261206T020000Z-job41.sql.zst`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Or: the newest object under this key prefix (under the store's
    /// prefix; newest by the time in its dump name) whose manifest exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
}

/// Where a restore's dump comes from, once the source is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// A file on the agent.
    File(&'a str),
    /// One object of a store.
    Object {
        /// Store name.
        store: &'a str,
        /// Key under the store's prefix.
        key: &'a str,
    },
    /// The newest object under a prefix.
    Latest {
        /// Store name.
        store: &'a str,
        /// Key prefix under the store's prefix (may be empty).
        prefix: &'a str,
    },
}

/// A refused source: the field inside `source` and why.
pub type SourceRefusal = (&'static str, String);

impl RestoreSource {
    /// The one origin this source names, or the field that is wrong and why
    /// (`source.file`, `source.store`, `source.key`, `source.key_prefix`).
    pub fn origin(&self) -> Result<Origin<'_>, SourceRefusal> {
        let object = self.key.is_some() || self.key_prefix.is_some();
        match (&self.file, &self.store) {
            (Some(_), Some(_)) => Err((
                "source.file",
                "give either `file`, or `store` with `key` or `key_prefix`, not both".into(),
            )),
            (Some(_), None) if object => Err((
                "source.file",
                "give either `file`, or `store` with `key` or `key_prefix`, not both".into(),
            )),
            (Some(f), None) => match file_refusal(f) {
                Some(why) => Err(("source.file", why)),
                None => Ok(Origin::File(f)),
            },
            (None, None) if object => Err((
                "source.store",
                "required with `key` or `key_prefix`: the store holding the object".into(),
            )),
            (None, None) => Err((
                "source.file",
                "required: the dump or backup file on the agent, or `store` with `key` or \
                 `key_prefix`"
                    .into(),
            )),
            (None, Some(store)) => {
                if !valid_name(store) {
                    return Err(("source.store", "must be a valid store name".into()));
                }
                match (&self.key, &self.key_prefix) {
                    (Some(_), Some(_)) => Err((
                        "source.key",
                        "give either `key` or `key_prefix`, not both".into(),
                    )),
                    (Some(key), None) => match key_refusal(key, false) {
                        Some(why) => Err(("source.key", why)),
                        None => Ok(Origin::Object { store, key }),
                    },
                    (None, Some(prefix)) => match key_refusal(prefix, true) {
                        Some(why) => Err(("source.key_prefix", why)),
                        None => Ok(Origin::Latest { store, prefix }),
                    },
                    (None, None) => Err((
                        "source.key",
                        "required with `store`: the object's `key`, or `key_prefix` for the \
                         newest object under it"
                            .into(),
                    )),
                }
            }
        }
    }
}

/// Longest object key or key prefix.
pub const MAX_KEY_LEN: usize = 1024;

/// Why `key` cannot be an object key (or, with `prefix`, a key prefix, which
/// may be empty or end with `/`), if it cannot: at most 1024 bytes, no NUL or
/// control characters, no leading `/`, no empty (but a prefix's last), `.` or
/// `..` segment.
pub fn key_refusal(key: &str, prefix: bool) -> Option<String> {
    if key.is_empty() {
        return (!prefix).then(|| "must not be empty".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Some(format!("must be at most {MAX_KEY_LEN} bytes"));
    }
    if key.chars().any(char::is_control) {
        return Some("must not contain control characters".into());
    }
    if key.starts_with('/') {
        return Some("must not start with `/` (the store's prefix comes first)".into());
    }
    let body = if prefix {
        key.strip_suffix('/').unwrap_or(key)
    } else {
        key
    };
    if body
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Some("must not hold empty, `.` or `..` segments".into());
    }
    None
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
