//! `baton-controller migrate-store`: copy an SQLite store into an empty
//! PostgreSQL database, table by table, in one PostgreSQL transaction.
//!
//! - The source is opened read-only and read in one transaction (one WAL
//!   snapshot): a controller still running on it cannot make the copy
//!   inconsistent, and nothing in the file changes.
//! - The source's migrations must be current (every migration of this
//!   version applied): start this version's controller on it once first.
//! - The target is migrated, then must be empty (no job, agent, token,
//!   schedule, …); otherwise nothing is written.
//! - Columns are copied by name, typed by the target's catalogue (BIGINT,
//!   TEXT, BOOLEAN), so a column added to both schemas is copied without a
//!   change here; a target table this module does not know is an error.
//! - Ids are kept (identities are BY DEFAULT) and the identity sequences
//!   moved past the highest id; the fleet id is kept (agents and database
//!   locks are namespaced by it).
//! - Row counts are compared per table before the commit; any difference
//!   rolls everything back.

use std::path::Path;
use std::str::FromStr;

use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Connection, Row};

use super::postgres::{PgOptions, PgStore};

/// Tables in copy order (a row's references are copied before it).
pub const TABLES: &[&str] = &[
    "meta",
    "notifications",
    "notification_deliveries",
    "delivery_attempts",
    "jobs",
    "attempts",
    "agents",
    "operator_tokens",
    "enrollment_tokens",
    "audit",
    "drills",
    "drill_events",
    "schedules",
    "occurrences",
    "occurrences_pruned",
    "pipelines",
    "pipeline_runs",
    "run_steps",
];

/// Tables whose triggers write notification events (PostgreSQL 0003): off
/// during the copy, so the copy makes no event the source did not have.
const EVENT_TRIGGERS: &[&str] = &["jobs", "pipeline_runs", "drills", "occurrences"];

/// Target tables with nothing to copy (state that only lives a minute;
/// dashboard sessions: operators sign in again).
const TARGET_ONLY: &[&str] = &["enroll_attempts", "ui_sessions"];

/// Rows per INSERT statement.
const BATCH: usize = 200;

/// Migration errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source file cannot be opened or read.
    #[error("source {path}: {source}")]
    Source {
        /// The file.
        path: String,
        /// Why.
        source: sqlx::Error,
    },
    /// The source was written by an older or newer controller.
    #[error(
        "source {path}: its schema is not this version's ({detail}); start this version's controller on it once (it migrates at start), stop it, then copy"
    )]
    SourceSchema {
        /// The file.
        path: String,
        /// Which migrations differ.
        detail: String,
    },
    /// The target database failed.
    #[error("target: {0}")]
    Target(#[from] super::Error),
    /// A target statement failed.
    #[error("target: {0}")]
    TargetSql(#[from] sqlx::Error),
    /// The target already holds a store.
    #[error(
        "target is not empty: table `{table}` has {rows} rows; migrate-store only fills a new database"
    )]
    NotEmpty {
        /// The first non-empty table.
        table: String,
        /// Its rows.
        rows: i64,
    },
    /// The schemas do not match.
    #[error("schema mismatch: {0}")]
    Schema(String),
    /// A table's count differs after the copy (nothing was committed).
    #[error(
        "table `{table}`: {copied} rows in the target, {source_rows} in the source; nothing was committed"
    )]
    Count {
        /// The table.
        table: String,
        /// Rows in the target after the copy.
        copied: i64,
        /// Rows in the source.
        source_rows: i64,
    },
}

/// Rows copied per table, in [`TABLES`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied(pub Vec<(String, i64)>);

/// A column's type in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Bool,
}

/// Copy the SQLite store at `from` into the PostgreSQL database `to`.
pub async fn copy(from: &Path, to: &PgOptions) -> Result<Copied, Error> {
    let src_err = |source| Error::Source {
        path: from.display().to_string(),
        source,
    };
    let mut src = open_source(from).await.map_err(src_err)?;
    check_source_schema(&mut src, from).await?;
    // Migrates the target (advisory-locked) and finds its primary.
    let target = PgStore::open(to).await?;
    let pool = target.pool().clone();
    let result = copy_all(&mut src, &pool, from).await;
    pool.close().await;
    let _ = src.close().await;
    result
}

async fn open_source(from: &Path) -> Result<SqliteConnection, sqlx::Error> {
    if !from.exists() {
        return Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        )));
    }
    let opts = SqliteConnectOptions::from_str("sqlite:")?
        .filename(from)
        .read_only(true);
    SqliteConnection::connect_with(&opts).await
}

/// Every migration this version knows is applied to the source, and no
/// other.
async fn check_source_schema(src: &mut SqliteConnection, from: &Path) -> Result<(), Error> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut *src)
            .await
            .map_err(|source| Error::Source {
                path: from.display().to_string(),
                source,
            })?;
    let known: Vec<i64> = super::sqlite::MIGRATOR.iter().map(|m| m.version).collect();
    if applied != known {
        return Err(Error::SourceSchema {
            path: from.display().to_string(),
            detail: format!("applied {applied:?}, this version has {known:?}"),
        });
    }
    Ok(())
}

async fn copy_all(src: &mut SqliteConnection, pool: &PgPool, from: &Path) -> Result<Copied, Error> {
    let src_err = |source| Error::Source {
        path: from.display().to_string(),
        source,
    };
    let mut dst = pool.begin().await?;
    check_tables(&mut dst).await?;
    check_empty(&mut dst).await?;
    // One read transaction: one snapshot of the source.
    sqlx::query("BEGIN")
        .execute(&mut *src)
        .await
        .map_err(src_err)?;
    sqlx::query("DELETE FROM meta").execute(&mut *dst).await?;
    // Inside the copy's transaction: a failed copy leaves them on.
    for t in EVENT_TRIGGERS {
        let sql = format!("ALTER TABLE {t} DISABLE TRIGGER USER");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *dst)
            .await?;
    }
    let mut copied = Vec::new();
    for table in TABLES {
        let columns = shared_columns(src, &mut dst, table, from).await?;
        let source_rows =
            copy_table(src, &mut dst, table, &columns)
                .await
                .map_err(|e| match e {
                    CopyError::Source(s) => src_err(s),
                    CopyError::Target(t) => Error::TargetSql(t),
                })?;
        let rows: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut *dst)
                .await?;
        if rows != source_rows {
            return Err(Error::Count {
                table: (*table).into(),
                copied: rows,
                source_rows,
            });
        }
        if columns.iter().any(|(c, _)| c == "id") && table_has_identity(&mut dst, table).await? {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT max(id) FROM {table}), 1), (SELECT max(id) FROM {table}) IS NOT NULL)"
            )))
            .execute(&mut *dst)
            .await?;
        }
        copied.push(((*table).to_owned(), rows));
    }
    for t in EVENT_TRIGGERS {
        let sql = format!("ALTER TABLE {t} ENABLE TRIGGER USER");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *dst)
            .await?;
    }
    let _ = sqlx::query("ROLLBACK").execute(&mut *src).await;
    dst.commit().await?;
    Ok(Copied(copied))
}

/// The target has exactly the tables this module copies (plus
/// [`TARGET_ONLY`]).
async fn check_tables(dst: &mut PgConnection) -> Result<(), Error> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
           AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&mut *dst)
    .await?;
    for t in &tables {
        if !TABLES.contains(&t.as_str()) && !TARGET_ONLY.contains(&t.as_str()) {
            return Err(Error::Schema(format!(
                "the target has table `{t}`, which this version does not copy"
            )));
        }
    }
    Ok(())
}

/// No table but `meta` (the fleet id the migration made) holds a row.
async fn check_empty(dst: &mut PgConnection) -> Result<(), Error> {
    for table in TABLES.iter().filter(|t| **t != "meta") {
        let rows: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut *dst)
                .await?;
        if rows > 0 {
            return Err(Error::NotEmpty {
                table: (*table).into(),
                rows,
            });
        }
    }
    Ok(())
}

async fn target_columns(dst: &mut PgConnection, table: &str) -> Result<Vec<(String, Kind)>, Error> {
    let cols: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *dst)
    .await?;
    cols.into_iter()
        .map(|(name, ty)| {
            let kind = match ty.as_str() {
                "bigint" | "integer" => Kind::Int,
                "text" => Kind::Text,
                "boolean" => Kind::Bool,
                other => {
                    return Err(Error::Schema(format!(
                        "{table}.{name} has type {other}, which migrate-store cannot copy"
                    )));
                }
            };
            Ok((name, kind))
        })
        .collect()
}

/// The target's columns that the source has too. A source column the
/// target lacks is an error (its data would be lost); a target column the
/// source lacks (PostgreSQL-only bookkeeping such as `jobs.batch_first`,
/// the replay of a keyed batch made on PostgreSQL; one made on SQLite
/// replays by its consecutive ids) is left to its default.
async fn shared_columns(
    src: &mut SqliteConnection,
    dst: &mut PgConnection,
    table: &str,
    from: &Path,
) -> Result<Vec<(String, Kind)>, Error> {
    let source: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)")
        .bind(table)
        .fetch_all(&mut *src)
        .await
        .map_err(|source| Error::Source {
            path: from.display().to_string(),
            source,
        })?;
    let target = target_columns(dst, table).await?;
    if let Some(lost) = source.iter().find(|c| !target.iter().any(|(t, _)| t == *c)) {
        return Err(Error::Schema(format!(
            "{table}.{lost} exists in the source but not in the target"
        )));
    }
    Ok(target
        .into_iter()
        .filter(|(c, _)| source.contains(c))
        .collect())
}

async fn table_has_identity(dst: &mut PgConnection, table: &str) -> Result<bool, Error> {
    let seq: Option<String> = sqlx::query_scalar("SELECT pg_get_serial_sequence($1, 'id')")
        .bind(table)
        .fetch_one(&mut *dst)
        .await?;
    Ok(seq.is_some())
}

enum CopyError {
    Source(sqlx::Error),
    Target(sqlx::Error),
}

/// Copy one table in batches, streaming the source (bounded memory); the
/// number of source rows.
async fn copy_table(
    src: &mut SqliteConnection,
    dst: &mut PgConnection,
    table: &str,
    columns: &[(String, Kind)],
) -> Result<i64, CopyError> {
    let list = columns
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let select = format!("SELECT {list} FROM {table}");
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&mut *src);
    let mut batch: Vec<SqliteRow> = Vec::with_capacity(BATCH);
    let mut total = 0i64;
    loop {
        let next = rows.try_next().await.map_err(CopyError::Source)?;
        let done = next.is_none();
        if let Some(row) = next {
            batch.push(row);
        }
        if batch.len() == BATCH || (done && !batch.is_empty()) {
            total += batch.len() as i64;
            insert_batch(dst, table, &list, columns, &batch).await?;
            batch.clear();
        }
        if done {
            return Ok(total);
        }
    }
}

async fn insert_batch(
    dst: &mut PgConnection,
    table: &str,
    list: &str,
    columns: &[(String, Kind)],
    batch: &[SqliteRow],
) -> Result<(), CopyError> {
    let mut sql = format!("INSERT INTO {table} ({list}) VALUES ");
    for r in 0..batch.len() {
        let base = r * columns.len();
        let marks: Vec<String> = (1..=columns.len())
            .map(|i| format!("${}", base + i))
            .collect();
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&marks.join(", "));
        sql.push(')');
    }
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in batch {
        for (i, (_, kind)) in columns.iter().enumerate() {
            let src = CopyError::Source;
            q = match kind {
                Kind::Int => q.bind(row.try_get::<Option<i64>, _>(i).map_err(src)?),
                Kind::Text => q.bind(row.try_get::<Option<String>, _>(i).map_err(src)?),
                Kind::Bool => q.bind(row.try_get::<Option<bool>, _>(i).map_err(src)?),
            };
        }
    }
    q.execute(&mut *dst).await.map_err(CopyError::Target)?;
    Ok(())
}

#[cfg(test)]
mod tests;
