//! What every `[connections.<name>]` shares, whatever the engine: errors
//! that name the full key, the password source (a file or an environment
//! variable, never inline; read each time a connection is opened) and the
//! parser of the settings table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_proto::config::ConfigError;
use baton_proto::valid_name;
use serde::Deserialize;

use super::{Resolver, mssql, mysql};

/// `[connections.<name>]`: a database on this host's reach.
// Built once at start; the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionConfig {
    /// `kind = "mysql"` (MySQL and MariaDB).
    Mysql(super::mysql::MysqlConnection),
    /// `kind = "mssql"` (SQL Server).
    Mssql(super::mssql::MssqlConnection),
    /// A kind whose executor is not built yet: accepted, not advertised.
    Reserved {
        /// Engine.
        kind: String,
    },
}

impl ConnectionConfig {
    /// The engine name.
    pub fn kind(&self) -> &str {
        match self {
            ConnectionConfig::Mysql(_) => "mysql",
            ConnectionConfig::Mssql(_) => "mssql",
            ConnectionConfig::Reserved { kind } => kind,
        }
    }
}

impl ConnectionConfig {
    /// The settings of a `kind = "mysql"` connection.
    pub fn as_mysql(&self) -> Option<&super::mysql::MysqlConnection> {
        match self {
            ConnectionConfig::Mysql(m) => Some(m),
            _ => None,
        }
    }

    /// The settings of a `kind = "mssql"` connection.
    pub fn as_mssql(&self) -> Option<&super::mssql::MssqlConnection> {
        match self {
            ConnectionConfig::Mssql(m) => Some(m),
            _ => None,
        }
    }
}

/// A configuration problem: the key under `connections.<name>` and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct Error {
    /// Full dotted key, e.g. `connections.main.password_file`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Where the password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// A file holding the password (trailing newline ignored).
    File(PathBuf),
    /// An environment variable of the agent process.
    Env(String),
}

/// A password, redacted in Debug.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The secret itself (for the driver or a 0600 defaults file only).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl PasswordSource {
    /// Read the password now.
    pub fn read(&self) -> Result<Password, String> {
        match self {
            PasswordSource::File(p) => std::fs::read_to_string(p)
                .map(|s| Password(s.trim_end_matches(['\n', '\r']).to_owned()))
                .map_err(|e| format!("cannot read password file {}: {e}", p.display())),
            PasswordSource::Env(v) => std::env::var(v)
                .map(Password)
                .map_err(|_| format!("environment variable {v} is not set")),
        }
    }
}

/// Parsing `[connections.<name>]` settings: errors name the full key,
/// relative paths are taken from the config file's directory, and the
/// password source is checked the same way for every engine.
pub(crate) struct SettingsParser<'a> {
    prefix: String,
    base: Option<&'a Path>,
}

impl<'a> SettingsParser<'a> {
    /// For connection `name`, with paths relative to `base`.
    pub(crate) fn new(name: &str, base: Option<&'a Path>) -> Self {
        SettingsParser {
            prefix: format!("connections.{name}"),
            base,
        }
    }

    /// For any table (`stores.<name>`), with paths relative to `base`.
    pub(crate) fn with_prefix(prefix: String, base: Option<&'a Path>) -> Self {
        SettingsParser { prefix, base }
    }

    /// An error about `key` (relative to the connection's table).
    pub(crate) fn err(&self, key: &str, message: String) -> Error {
        Error {
            key: if key.is_empty() {
                self.prefix.clone()
            } else {
                format!("{}.{key}", self.prefix)
            },
            message,
        }
    }

    /// Deserialize the settings, naming the failing key.
    pub(crate) fn deserialize<T: serde::de::DeserializeOwned>(
        &self,
        settings: &BTreeMap<String, toml::Value>,
    ) -> Result<T, Error> {
        let table: toml::Table = settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            self.err(&key, e.into_inner().to_string())
        })
    }

    /// `p`, relative to the config file's directory when relative.
    pub(crate) fn abs(&self, p: PathBuf) -> PathBuf {
        match self.base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p,
        }
    }

    /// A humantime duration at `key`.
    pub(crate) fn duration(
        &self,
        key: &str,
        v: &Option<String>,
    ) -> Result<Option<Duration>, Error> {
        v.as_deref()
            .map(|s| {
                humantime::parse_duration(s.trim()).map_err(|e| {
                    self.err(key, format!("{s:?} is not a duration like \"30s\": {e}"))
                })
            })
            .transpose()
    }

    /// Exactly one of `password_file` (must exist) and `password_env` (must be set).
    pub(crate) fn password(
        &self,
        file: Option<PathBuf>,
        env: Option<String>,
    ) -> Result<PasswordSource, Error> {
        match (file, env) {
            (Some(_), Some(_)) => Err(self.err(
                "password_env",
                "set either password_file or password_env, not both".into(),
            )),
            (Some(p), None) => {
                let p = self.abs(p);
                match crate::secret::check_secret_file(&p) {
                    Ok(()) => Ok(PasswordSource::File(p)),
                    Err(m) => Err(self.err("password_file", format!("{}: {m}", p.display()))),
                }
            }
            (None, Some(v)) => {
                if std::env::var_os(&v).is_none() {
                    return Err(self.err(
                        "password_env",
                        format!("environment variable {v} is not set"),
                    ));
                }
                Ok(PasswordSource::Env(v))
            }
            (None, None) => Err(self.err(
                "password_file",
                "set password_file (a 0600 file) or password_env; passwords are never inline"
                    .into(),
            )),
        }
    }
}

/// `[connections.<name>]` as written: the engine and its settings.
#[derive(Debug, Deserialize)]
pub(super) struct FileConnection {
    kind: String,
    #[serde(flatten)]
    settings: BTreeMap<String, toml::Value>,
}

impl Resolver<'_> {
    /// Every `[connections.<name>]`, parsed by its engine's settings.
    pub(super) fn connections(
        &self,
        raw: BTreeMap<String, FileConnection>,
    ) -> Result<BTreeMap<String, ConnectionConfig>, ConfigError> {
        let src = self.ctx.file_src();
        let mut out = BTreeMap::new();
        for (name, conn) in raw {
            if !valid_name(&name) {
                let key = format!("connections.{name}");
                let msg = "connection names are 1-128 characters of A-Z a-z 0-9 _ . -";
                return Err(self.ctx.err(&src, &key, msg));
            }
            let parsed = match conn.kind.as_str() {
                "mysql" | "mariadb" => ConnectionConfig::Mysql(
                    mysql::MysqlConnection::parse(&name, &conn.settings, self.ctx.dir.as_deref())
                        .map_err(|e| self.ctx.err(&src, &e.key, e.message))?,
                ),
                "mssql" => ConnectionConfig::Mssql(
                    mssql::MssqlConnection::parse(&name, &conn.settings, self.ctx.dir.as_deref())
                        .map_err(|e| self.ctx.err(&src, &e.key, e.message))?,
                ),
                other => {
                    let key = format!("connections.{name}.kind");
                    let msg = format!("unknown kind `{other}`; expected mysql or mssql");
                    return Err(self.ctx.err(&src, &key, msg));
                }
            };
            out.insert(name, parsed);
        }
        Ok(out)
    }
}
