//! `baton-controller validate` on PostgreSQL: is the database reachable,
//! are its migrations the ones this controller ships (none pending, none
//! unknown), and will an acknowledged commit survive a crash or a failover
//! (`synchronous_commit`, `synchronous_standby_names`). Reads only: it
//! never migrates.
//!
//! [`check`] gathers the [`Facts`] from the primary; [`findings`] judges
//! them (pure, so every rule is tested without a standby).

use std::collections::BTreeMap;

use sqlx::ConnectOptions;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::{MIGRATOR, PgOptions, hosts};
use crate::store::Result;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// As it should be.
    Ok,
    /// Works, but can lose acknowledged work on a failover.
    Warning,
    /// The controller must not run like this (`validate` exits 78).
    Error,
}

/// One line of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How bad.
    pub level: Level,
    /// What, and what to do.
    pub text: String,
}

impl Finding {
    fn new(level: Level, text: impl Into<String>) -> Finding {
        Finding {
            level,
            text: text.into(),
        }
    }
}

/// A migration the database recorded (`_sqlx_migrations`).
#[derive(Debug, Clone)]
pub struct Applied {
    /// Its version.
    pub version: i64,
    /// Whether it finished.
    pub success: bool,
    /// Its checksum when it ran.
    pub checksum: Vec<u8>,
}

/// What the primary said.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `host:port` of the primary.
    pub primary: String,
    /// Recorded migrations.
    pub applied: Vec<Applied>,
    /// `SHOW synchronous_commit` in the controller's session.
    pub synchronous_commit: String,
    /// `SHOW synchronous_standby_names`.
    pub synchronous_standby_names: String,
    /// Standbys streaming from the primary (`pg_stat_replication` rows).
    pub standbys: i64,
}

/// Check the configured database: the findings, in order. An unreachable
/// database is one [`Level::Error`] finding.
pub async fn check(opts: &PgOptions) -> Vec<Finding> {
    match facts(opts).await {
        Ok(f) => findings(&f, &known_migrations()),
        Err(e) => vec![Finding::new(
            Level::Error,
            format!("PostgreSQL: no primary reachable: {e}"),
        )],
    }
}

/// The migrations this controller ships: version → checksum.
fn known_migrations() -> BTreeMap<i64, Vec<u8>> {
    MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| (m.version, m.checksum.to_vec()))
        .collect()
}

async fn facts(opts: &PgOptions) -> Result<Facts> {
    let primary = hosts::Hosts::parse(opts)?.find_primary().await?;
    let mut c: PgConnection = primary.connect().await?;
    let has_table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut c)
        .await?;
    let applied = if has_table {
        let rows: Vec<(i64, bool, Vec<u8>)> = sqlx::query_as(
            "SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&mut c)
        .await?;
        rows.into_iter()
            .map(|(version, success, checksum)| Applied {
                version,
                success,
                checksum,
            })
            .collect()
    } else {
        Vec::new()
    };
    let show = |what: &'static str| sqlx::query_scalar::<_, String>(what);
    let synchronous_commit = show("SHOW synchronous_commit").fetch_one(&mut c).await?;
    let synchronous_standby_names = show("SHOW synchronous_standby_names")
        .fetch_one(&mut c)
        .await?;
    let standbys: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_replication")
        .fetch_one(&mut c)
        .await?;
    let _ = c.close().await;
    Ok(Facts {
        primary: format!("{}:{}", primary.get_host(), primary.get_port()),
        applied,
        synchronous_commit,
        synchronous_standby_names,
        standbys,
    })
}

/// Judge `f` against the migrations this controller ships.
pub fn findings(f: &Facts, known: &BTreeMap<i64, Vec<u8>>) -> Vec<Finding> {
    let mut out = vec![Finding::new(
        Level::Ok,
        format!("PostgreSQL: primary {} reachable", f.primary),
    )];
    out.push(migrations(f, known));
    out.extend(durability(f));
    out
}

fn versions(v: &[i64]) -> String {
    v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

fn migrations(f: &Facts, known: &BTreeMap<i64, Vec<u8>>) -> Finding {
    let failed: Vec<i64> = f
        .applied
        .iter()
        .filter(|a| !a.success)
        .map(|a| a.version)
        .collect();
    if !failed.is_empty() {
        return Finding::new(
            Level::Error,
            format!(
                "PostgreSQL: migration {} did not finish (the database is dirty); repair it by hand before starting a controller",
                versions(&failed)
            ),
        );
    }
    let unknown: Vec<i64> = f
        .applied
        .iter()
        .map(|a| a.version)
        .filter(|v| !known.contains_key(v))
        .collect();
    if !unknown.is_empty() {
        return Finding::new(
            Level::Error,
            format!(
                "PostgreSQL: the database has migrations this controller does not know ({}): a newer controller migrated it; run that version (or newer) on every replica",
                versions(&unknown)
            ),
        );
    }
    let changed: Vec<i64> = f
        .applied
        .iter()
        .filter(|a| known.get(&a.version).is_some_and(|c| *c != a.checksum))
        .map(|a| a.version)
        .collect();
    if !changed.is_empty() {
        return Finding::new(
            Level::Error,
            format!(
                "PostgreSQL: migration {} was applied with different contents than this controller ships",
                versions(&changed)
            ),
        );
    }
    let pending: Vec<i64> = known
        .keys()
        .copied()
        .filter(|v| !f.applied.iter().any(|a| a.version == *v))
        .collect();
    if !pending.is_empty() {
        return Finding::new(
            Level::Error,
            format!(
                "PostgreSQL: {} migration(s) not applied yet ({}): run `baton-controller init` (or start one controller of this version) to apply them, then validate again",
                pending.len(),
                versions(&pending)
            ),
        );
    }
    Finding::new(
        Level::Ok,
        format!(
            "PostgreSQL: migrations current ({} applied)",
            f.applied.len()
        ),
    )
}

/// What a crash or a failover can lose.
fn durability(f: &Facts) -> Vec<Finding> {
    let commit = f.synchronous_commit.as_str();
    if commit == "off" {
        return vec![Finding::new(
            Level::Error,
            "PostgreSQL: synchronous_commit is off: a commit is acknowledged before it is on disk, so a crash of the database loses jobs, completions and fencing-token increments the controller already acknowledged (a token can then be issued twice); set synchronous_commit = on for the controller's role or database",
        )];
    }
    let names = f.synchronous_standby_names.trim();
    if names.is_empty() {
        let text = if f.standbys > 0 {
            format!(
                "PostgreSQL: replication is asynchronous: {} standby(s) stream from the primary but synchronous_standby_names is empty, so a failover to a standby can lose transactions the controller already acknowledged (jobs, completions, fencing-token increments: a token could be issued twice); set synchronous_standby_names (Patroni: synchronous_mode: true) with synchronous_commit = on",
                f.standbys
            )
        } else {
            "PostgreSQL: no synchronous standby (synchronous_standby_names is empty, no standby streams): a failover to a standby added later would lose transactions the controller already acknowledged; for high availability use a synchronous standby (synchronous_standby_names, synchronous_commit = on)".to_owned()
        };
        return vec![Finding::new(Level::Warning, text)];
    }
    let mut out = Vec::new();
    if commit == "local" {
        out.push(Finding::new(
            Level::Warning,
            "PostgreSQL: synchronous_commit is local: commits do not wait for the synchronous standby, so a failover can lose acknowledged transactions; set synchronous_commit = on",
        ));
    } else {
        out.push(Finding::new(
            Level::Ok,
            format!("PostgreSQL: synchronous_commit = {commit}, synchronous standby {names}"),
        ));
    }
    if f.standbys == 0 {
        out.push(Finding::new(
            Level::Warning,
            format!("PostgreSQL: synchronous_standby_names is {names} but no standby streams now: every commit waits until one connects"),
        ));
    }
    out
}

#[cfg(test)]
mod tests;
