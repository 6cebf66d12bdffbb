//! `[store]`: which store backend, and how to reach PostgreSQL.
//!
//! ```toml
//! [store]
//! url = "postgres://baton@db1:5432,db2:5432/baton"  # default: SQLite in state_dir
//! password_file = "/etc/baton/pg.password"          # or BATON_CONTROLLER_STORE_PASSWORD
//! ca_file = "/etc/baton/pg-ca.pem"                  # TLS, server verified (verify-full)
//! pool_size = 16
//! poll_only = false                                 # true behind PgBouncer (transaction mode)
//! ```
//!
//! `url` may also be `sqlite:PATH` (the same as `database = PATH`). A
//! password inside the URL is refused: it would sit in a file many people
//! read, and in `ps` output of tools given the URL.

use std::path::PathBuf;

use baton_proto::config::ConfigError;
use baton_proto::env;
use serde::Deserialize;

use super::{Sources, SyncMode};

/// `[store]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStore {
    url: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    pool_size: Option<u32>,
    poll_only: Option<bool>,
}

/// Where the controller keeps its state.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// One SQLite file (the embedded default).
    Sqlite {
        /// The file.
        path: PathBuf,
        /// How commits reach the disk.
        sync: SyncMode,
    },
    /// PostgreSQL, shared by several controllers.
    Postgres(PgConfig),
}

/// `[store]` for PostgreSQL, resolved (the server hands it to
/// `store::postgres::PgOptions`).
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// One or several hosts (`pgurl`).
    pub url: String,
    /// From `password_file` or `BATON_CONTROLLER_STORE_PASSWORD`.
    pub password: Option<String>,
    /// A pinned CA: TLS required, certificate verified.
    pub ca_file: Option<PathBuf>,
    /// Connections per controller.
    pub pool_size: u32,
    /// No LISTEN (a pooler in transaction mode).
    pub poll_only: bool,
}

/// The default pool size: enough for the hot paths of one replica.
pub const DEFAULT_POOL_SIZE: u32 = 16;

impl Sources<'_> {
    /// `[store]` resolved: the URL from the environment or the file; the
    /// password from the environment or `password_file` (read now, so a
    /// missing file is a config error naming it).
    pub(super) fn store(
        &self,
        file: Option<FileStore>,
        database: PathBuf,
        sync: SyncMode,
    ) -> Result<StoreConfig, ConfigError> {
        let file = file.unwrap_or_default();
        let (url, url_err): (Option<String>, Box<dyn Fn(String) -> ConfigError + '_>) =
            match self.env.get(env::CONTROLLER_STORE_URL.name) {
                Some(u) => (
                    Some(u.clone()),
                    Box::new(|m| self.env_err(env::CONTROLLER_STORE_URL.name, "store.url", m)),
                ),
                None => (
                    file.url.clone(),
                    Box::new(|m| self.file_err("store.url", m)),
                ),
            };
        let Some(url) = url else {
            return Ok(StoreConfig::Sqlite {
                path: database,
                sync,
            });
        };
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = PathBuf::from(path.trim_start_matches("//"));
            return Ok(StoreConfig::Sqlite { path, sync });
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(url_err(
                "must start with postgres:// (several controllers) or sqlite:".into(),
            ));
        }
        if crate::pgurl::url_has_password(&url) {
            return Err(url_err(
                "holds a password: put it in [store] password_file or BATON_CONTROLLER_STORE_PASSWORD"
                    .into(),
            ));
        }
        if let Err(why) = crate::pgurl::split_hosts(&url) {
            return Err(url_err(why));
        }
        let password = self.store_password(&file)?;
        if let Some(ca) = &file.ca_file
            && let Err(e) = std::fs::metadata(ca)
        {
            return Err(self.file_err("store.ca_file", format!("{}: {e}", ca.display())));
        }
        let pool_size = file.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
        if !(2..=1000).contains(&pool_size) {
            return Err(self.file_err("store.pool_size", "must be between 2 and 1000".into()));
        }
        Ok(StoreConfig::Postgres(PgConfig {
            url,
            password,
            ca_file: file.ca_file,
            pool_size,
            poll_only: file.poll_only.unwrap_or(false),
        }))
    }

    fn store_password(&self, file: &FileStore) -> Result<Option<String>, ConfigError> {
        if let Some(p) = self.env.get(env::CONTROLLER_STORE_PASSWORD.name) {
            return Ok(Some(p.clone()));
        }
        let Some(path) = &file.password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            self.file_err("store.password_file", format!("{}: {e}", path.display()))
        })?;
        let pw = text.trim_end_matches(['\r', '\n']).to_owned();
        if pw.is_empty() {
            return Err(self.file_err(
                "store.password_file",
                format!("{} is empty", path.display()),
            ));
        }
        Ok(Some(pw))
    }
}

#[cfg(test)]
mod tests;
