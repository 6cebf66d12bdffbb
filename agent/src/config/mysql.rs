//! `[connections.<name>]` with `kind = "mysql"`: where the database is, who
//! to log in as, and where the password comes from — all on the agent host.
//!
//! The password is never in the config: it is read from `password_file`
//! (which should be 0600) or the environment variable `password_env` each time
//! a connection is opened, so rotating it needs no restart, and it never
//! appears in argv, logs or anything sent to the controller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::connection::SettingsParser;
pub use super::connection::{Error, Password, PasswordSource};

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// TCP.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix socket (no network, no TLS needed).
    Socket(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Socket(path) => write!(f, "socket {}", path.display()),
        }
    }
}

/// How the server certificate is checked when TLS is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    /// Chain and host name.
    Full,
    /// Chain only (servers whose certificate does not name the host).
    Ca,
}

/// TLS to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbTls {
    /// CA bundle; the system roots when absent.
    pub ca_file: Option<PathBuf>,
    /// What is verified.
    pub verify: Verify,
}

/// Where dumps go and how long they stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpSettings {
    /// Root directory; dumps land in `<dir>/<connection>/<database>/`.
    pub dir: Option<PathBuf>,
    /// `mariadb-dump`/`mysqldump` to use; found on PATH when absent.
    pub tool: Option<PathBuf>,
    /// Extra flags, each from [`DUMP_FLAG_ALLOW_LIST`].
    pub extra_flags: Vec<String>,
    /// Keep at most this many dumps per database.
    pub keep_last: Option<u32>,
    /// Delete dumps older than this.
    pub max_age: Option<Duration>,
    /// Space that must stay free on the dump filesystem beyond the database's
    /// size estimate (`dump_reserve_mb`, default 64 MiB).
    pub reserve_bytes: u64,
}

/// `dump_reserve_mb` when not set.
pub const DEFAULT_DUMP_RESERVE_MB: u64 = 64;

impl Default for DumpSettings {
    /// A connection without dump keys: dumps under the agent's state
    /// directory, the tool found on PATH, no extra flags, no retention.
    fn default() -> Self {
        DumpSettings {
            dir: None,
            tool: None,
            extra_flags: Vec::new(),
            keep_last: None,
            max_age: None,
            reserve_bytes: DEFAULT_DUMP_RESERVE_MB * 1024 * 1024,
        }
    }
}

/// A MySQL/MariaDB connection as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlConnection {
    /// Connection name (what jobs refer to).
    pub name: String,
    /// Where the server is.
    pub endpoint: Endpoint,
    /// Login.
    pub user: String,
    /// Password source.
    pub password: PasswordSource,
    /// Default database.
    pub database: Option<String>,
    /// Most pooled connections.
    pub pool_size: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// TLS, when on.
    pub tls: Option<DbTls>,
    /// May the agent create the run-ledger table (`baton_ledger`) when missing?
    pub create_ledger: bool,
    /// Dump settings.
    pub dump: DumpSettings,
}

/// Flags an operator may add to the dump tool (besides `--ignore-table=db.table`).
/// (`--skip-comments` is not allowed: it drops the `-- Dump completed` trailer
/// that proves a dump is complete.)
pub const DUMP_FLAG_ALLOW_LIST: [&str; 8] = [
    "--skip-lock-tables",
    "--no-data",
    "--no-create-info",
    "--skip-add-drop-table",
    "--skip-extended-insert",
    "--gtid",
    "--master-data=2",
    "--flush-logs",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMysql {
    host: Option<String>,
    port: Option<u16>,
    socket: Option<PathBuf>,
    user: String,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    database: Option<String>,
    pool_size: Option<usize>,
    connect_timeout: Option<String>,
    tls: Option<FileTls>,
    create_ledger: Option<bool>,
    dump_dir: Option<PathBuf>,
    dump_tool: Option<PathBuf>,
    #[serde(default)]
    dump_extra_flags: Vec<String>,
    keep_last: Option<u32>,
    max_age: Option<String>,
    dump_reserve_mb: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    ca_file: Option<PathBuf>,
    verify: Option<Verify>,
}

impl MysqlConnection {
    /// Parse the settings of `[connections.<name>]` (everything but `kind`).
    /// Relative paths are taken from `base` (the config file's directory).
    pub fn parse(
        name: &str,
        settings: &BTreeMap<String, toml::Value>,
        base: Option<&Path>,
    ) -> Result<MysqlConnection, Error> {
        let s = SettingsParser::new(name, base);
        let err = |key: &str, message: String| s.err(key, message);
        let f: FileMysql = s.deserialize(settings)?;
        let endpoint = endpoint(&s, f.host, f.socket, f.port)?;
        if f.user.trim().is_empty() {
            return Err(err("user", "must not be empty".into()));
        }
        let password = s.password(f.password_file, f.password_env)?;
        if let Some(d) = &f.database
            && !baton_proto::valid_name(d)
        {
            return Err(err("database", "must be a valid name".into()));
        }
        let pool_size = f.pool_size.unwrap_or(4);
        if !(1..=64).contains(&pool_size) {
            return Err(err("pool_size", "must be between 1 and 64".into()));
        }
        let dur = |key: &str, v: &Option<String>| s.duration(key, v);
        let connect_timeout =
            dur("connect_timeout", &f.connect_timeout)?.unwrap_or(Duration::from_secs(10));
        let tls = f.tls.map(|t| tls(&s, t)).transpose()?;
        let dump = dump(
            &s,
            f.dump_dir,
            f.dump_tool,
            f.dump_extra_flags,
            f.keep_last,
            &f.max_age,
            f.dump_reserve_mb,
        )?;
        Ok(MysqlConnection {
            name: name.to_owned(),
            endpoint,
            user: f.user,
            password,
            database: f.database,
            pool_size,
            connect_timeout,
            tls,
            create_ledger: f.create_ledger.unwrap_or(true),
            dump,
        })
    }
}

/// `host` (and `port`) or `socket`.
fn endpoint(
    p: &SettingsParser<'_>,
    host: Option<String>,
    socket: Option<PathBuf>,
    port: Option<u16>,
) -> Result<Endpoint, Error> {
    let err = |key: &str, message: String| p.err(key, message);
    Ok(match (host, socket) {
        (Some(_), Some(_)) => {
            return Err(err(
                "socket",
                "set either host (and port) or socket, not both".into(),
            ));
        }
        (None, Some(socket)) => {
            if port.is_some() {
                return Err(err("port", "a port makes no sense with a socket".into()));
            }
            Endpoint::Socket(p.abs(socket))
        }
        (Some(host), None) => {
            if host.trim().is_empty() {
                return Err(err("host", "must not be empty".into()));
            }
            Endpoint::Tcp {
                host,
                port: port.unwrap_or(3306),
            }
        }
        (None, None) => return Err(err("host", "set host (and port) or socket".into())),
    })
}

/// `[connections.<name>.tls]`: the CA file must exist.
fn tls(s: &SettingsParser<'_>, t: FileTls) -> Result<DbTls, Error> {
    let ca_file = t.ca_file.map(|p| s.abs(p));
    if let Some(ca) = &ca_file
        && let Err(e) = std::fs::metadata(ca)
    {
        return Err(s.err("tls.ca_file", format!("{}: {e}", ca.display())));
    }
    Ok(DbTls {
        ca_file,
        verify: t.verify.unwrap_or(Verify::Full),
    })
}

/// The `dump` settings: extra flags from the allow-list, retention, reserve.
fn dump(
    s: &SettingsParser<'_>,
    dir: Option<PathBuf>,
    tool: Option<PathBuf>,
    extra_flags: Vec<String>,
    keep_last: Option<u32>,
    max_age: &Option<String>,
    reserve_mb: Option<u64>,
) -> Result<DumpSettings, Error> {
    let err = |key: &str, message: String| s.err(key, message);
    for (i, flag) in extra_flags.iter().enumerate() {
        if !dump_flag_allowed(flag) {
            return Err(err(
                &format!("dump_extra_flags[{i}]"),
                format!(
                    "`{flag}` is not allowed; allowed: {} and --ignore-table=<db>.<table>",
                    DUMP_FLAG_ALLOW_LIST.join(", ")
                ),
            ));
        }
    }
    if keep_last == Some(0) {
        return Err(err("keep_last", "must be at least 1".into()));
    }
    Ok(DumpSettings {
        dir: dir.map(|p| s.abs(p)),
        tool: tool.map(|p| s.abs(p)),
        extra_flags,
        keep_last,
        max_age: s.duration("max_age", max_age)?,
        reserve_bytes: reserve_mb
            .unwrap_or(DEFAULT_DUMP_RESERVE_MB)
            .checked_mul(1024 * 1024)
            .ok_or_else(|| err("dump_reserve_mb", "too large".into()))?,
    })
}

/// Whether an extra dump flag is on the allow-list.
pub fn dump_flag_allowed(flag: &str) -> bool {
    if DUMP_FLAG_ALLOW_LIST.contains(&flag) {
        return true;
    }
    match flag.strip_prefix("--ignore-table=") {
        Some(t) => t
            .split_once('.')
            .is_some_and(|(d, t)| baton_proto::valid_name(d) && baton_proto::valid_name(t)),
        None => false,
    }
}

#[cfg(test)]
mod tests;
