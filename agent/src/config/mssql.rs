//! `[connections.<name>]` with `kind = "mssql"`: a SQL Server the agent reaches
//! over TDS (tiberius). Like MySQL, the password is never inline: it comes from
//! `password_file` or `password_env` ([`PasswordSource`]) and is read each time
//! a connection is opened.
//!
//! Keys: `host` (required), `port` (default 1433) **or** `instance` (a named
//! instance, whose TCP port the SQL Browser on UDP `browser_port`, default
//! 1434, tells at each connect), `database`, `user`, `password_file` / `password_env`,
//! `encrypt = "strict" | "required" | "off"` (default `required`), `ca_file`
//! or `trust_server_certificate = true` (one of them when encryption is on),
//! `connect_timeout` (default 10s), `command_timeout` (default 30s; `"0s"`
//! means none). Integrated (Windows) authentication is out of scope.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::connection::SettingsParser;
pub use super::connection::{Error, PasswordSource};

/// Where the SQL Server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MssqlEndpoint {
    /// A fixed TCP port.
    Port(u16),
    /// A named instance; its port comes from the SQL Browser on this UDP port.
    Instance {
        /// Instance name.
        name: String,
        /// SQL Browser UDP port (1434).
        browser_port: u16,
    },
}

/// TDS encryption mode (maps onto tiberius `EncryptionLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encrypt {
    /// TDS 8.0: TLS before PRELOGIN (tiberius `EncryptionLevel::Strict`, feature `tds80`).
    Strict,
    /// TLS negotiated in PRELOGIN (`EncryptionLevel::Required`).
    Required,
    /// No TLS at all (`EncryptionLevel::NotSupported`).
    Off,
}

/// How the server certificate is trusted when encryption is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// Verify against this CA bundle (PEM or DER).
    CaFile(PathBuf),
    /// Trust any certificate (explicit `trust_server_certificate = true`).
    TrustAny,
}

/// A SQL Server connection as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MssqlConnection {
    /// Connection name (what jobs refer to).
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// Port or named instance.
    pub endpoint: MssqlEndpoint,
    /// Default database.
    pub database: Option<String>,
    /// SQL login.
    pub user: String,
    /// Password source.
    pub password: PasswordSource,
    /// Encryption mode.
    pub encrypt: Encrypt,
    /// Certificate trust; `None` only with `encrypt = "off"`.
    pub trust: Option<ServerTrust>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Per round-trip command timeout; `None` means no limit.
    pub command_timeout: Option<Duration>,
    /// Whether the agent may create the run ledger table (`create_ledger`,
    /// default true).
    pub create_ledger: bool,
    /// Native backups (`dump` jobs).
    pub backup: BackupSettings,
}

/// Settings of `dump` jobs (native `BACKUP DATABASE`) on a connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackupSettings {
    /// `backup_dir`: where SQL Server writes backups, as both the server and
    /// the agent (on the same host) see it; absolute. Without it, `dump`
    /// jobs on the connection are refused.
    pub dir: Option<PathBuf>,
    /// `backup_compression` (default false; not every edition has it).
    pub compression: bool,
    /// `keep_last`: backups kept per database (retention).
    pub keep_last: Option<u32>,
    /// `max_age`: backups older than this are deleted (retention).
    pub max_age: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMssql {
    host: Option<String>,
    port: Option<u16>,
    instance: Option<String>,
    browser_port: Option<u16>,
    database: Option<String>,
    user: String,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    encrypt: Option<Encrypt>,
    ca_file: Option<PathBuf>,
    trust_server_certificate: Option<bool>,
    connect_timeout: Option<String>,
    command_timeout: Option<String>,
    create_ledger: Option<bool>,
    backup_dir: Option<PathBuf>,
    backup_compression: Option<bool>,
    keep_last: Option<u32>,
    max_age: Option<String>,
}

impl MssqlConnection {
    /// Parse the settings of `[connections.<name>]` (everything but `kind`).
    /// Relative paths are taken from `base` (the config file's directory).
    pub fn parse(
        name: &str,
        settings: &BTreeMap<String, toml::Value>,
        base: Option<&Path>,
    ) -> Result<MssqlConnection, Error> {
        let s = SettingsParser::new(name, base);
        let err = |key: &str, message: String| s.err(key, message);
        let f: FileMssql = s.deserialize(settings)?;
        let host = match f.host {
            Some(h) if !h.trim().is_empty() => h,
            Some(_) => return Err(err("host", "must not be empty".into())),
            None => return Err(err("host", "set host (and port or instance)".into())),
        };
        let endpoint = endpoint(&s, f.port, f.instance, f.browser_port)?;
        if let Some(d) = &f.database
            && !baton_proto::valid_name(d)
        {
            return Err(err("database", "must be a valid name".into()));
        }
        if f.user.trim().is_empty() {
            return Err(err("user", "must not be empty".into()));
        }
        let password = s.password(f.password_file, f.password_env)?;
        let encrypt = f.encrypt.unwrap_or(Encrypt::Required);
        let trust = trust(&s, encrypt, f.ca_file, f.trust_server_certificate)?;
        let dur = |key: &str, v: &Option<String>| s.duration(key, v);
        let connect_timeout =
            dur("connect_timeout", &f.connect_timeout)?.unwrap_or(Duration::from_secs(10));
        if connect_timeout.is_zero() {
            return Err(err("connect_timeout", "must be more than 0".into()));
        }
        let command_timeout = match dur("command_timeout", &f.command_timeout)? {
            None => Some(Duration::from_secs(30)),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        };
        let backup = backup(
            &s,
            f.backup_dir,
            f.backup_compression,
            f.keep_last,
            &f.max_age,
        )?;
        Ok(MssqlConnection {
            name: name.to_owned(),
            host,
            endpoint,
            database: f.database,
            user: f.user,
            password,
            encrypt,
            trust,
            connect_timeout,
            command_timeout,
            create_ledger: f.create_ledger.unwrap_or(true),
            backup,
        })
    }
}

/// `port` or `instance` (with the SQL Browser's `browser_port`).
fn endpoint(
    s: &SettingsParser<'_>,
    port: Option<u16>,
    instance: Option<String>,
    browser_port: Option<u16>,
) -> Result<MssqlEndpoint, Error> {
    let err = |key: &str, message: String| s.err(key, message);
    Ok(match (port, instance) {
        (Some(_), Some(_)) => {
            return Err(err(
                "instance",
                "set either port or instance, not both".into(),
            ));
        }
        (Some(0), None) => return Err(err("port", "must not be 0".into())),
        (Some(p), None) => MssqlEndpoint::Port(p),
        (None, Some(i)) => {
            let ok = !i.is_empty()
                && i.len() <= 16
                && i.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '#'));
            if !ok {
                return Err(err(
                    "instance",
                    "must be 1-16 characters of A-Z a-z 0-9 _ $ #".into(),
                ));
            }
            MssqlEndpoint::Instance {
                name: i,
                browser_port: match browser_port {
                    Some(0) => return Err(err("browser_port", "must not be 0".into())),
                    Some(p) => p,
                    None => 1434,
                },
            }
        }
        (None, None) => MssqlEndpoint::Port(1433),
    })
}

/// How the server certificate is trusted (`ca_file`, `trust_server_certificate`).
fn trust(
    s: &SettingsParser<'_>,
    encrypt: Encrypt,
    ca_file: Option<PathBuf>,
    trust_server_certificate: Option<bool>,
) -> Result<Option<ServerTrust>, Error> {
    let err = |key: &str, message: String| s.err(key, message);
    Ok(match (encrypt, ca_file, trust_server_certificate) {
        (Encrypt::Off, Some(_), _) => {
            return Err(err(
                "ca_file",
                "makes no sense with encrypt = \"off\"".into(),
            ));
        }
        (Encrypt::Off, None, Some(true)) => {
            return Err(err(
                "trust_server_certificate",
                "makes no sense with encrypt = \"off\"".into(),
            ));
        }
        (Encrypt::Off, None, _) => None,
        (_, Some(_), Some(true)) => {
            return Err(err(
                "trust_server_certificate",
                "set either ca_file or trust_server_certificate = true, not both".into(),
            ));
        }
        (_, Some(ca), _) => {
            let ca = s.abs(ca);
            if let Err(e) = std::fs::metadata(&ca) {
                return Err(err("ca_file", format!("{}: {e}", ca.display())));
            }
            Some(ServerTrust::CaFile(ca))
        }
        (_, None, Some(true)) => Some(ServerTrust::TrustAny),
        (_, None, _) => {
            return Err(err(
                "ca_file",
                "with encryption on, set ca_file or trust_server_certificate = true".into(),
            ));
        }
    })
}

/// `backup_dir` (absolute), `backup_compression`, `keep_last`, `max_age`.
fn backup(
    s: &SettingsParser<'_>,
    dir: Option<PathBuf>,
    compression: Option<bool>,
    keep_last: Option<u32>,
    max_age: &Option<String>,
) -> Result<BackupSettings, Error> {
    let err = |key: &str, message: String| s.err(key, message);
    let backup_dir = match dir {
        Some(d) if !d.is_absolute() => {
            return Err(err(
                "backup_dir",
                "must be an absolute path (as SQL Server on this host sees it)".into(),
            ));
        }
        d => d,
    };
    if keep_last == Some(0) {
        return Err(err("keep_last", "must be at least 1".into()));
    }
    Ok(BackupSettings {
        dir: backup_dir,
        compression: compression.unwrap_or(false),
        keep_last,
        max_age: s.duration("max_age", max_age)?,
    })
}
