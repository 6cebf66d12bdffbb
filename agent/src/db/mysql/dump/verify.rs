//! The restore check: restore the dump into a scratch database and compare it
//! with the source.
//!
//! Compared: the list of base tables and `CHECKSUM TABLE` of each (tables the
//! dump left out with `--ignore-table` are not compared; with `--no-data` only
//! the table list is), and the numbers of routines, triggers, views and events.
//! Sequences and system-versioned tables are not checksummed (the dump holds
//! their current state only).
//!
//! **Limits, honestly.** The source's values are taken right after the dump
//! finished, from the live database, not from the snapshot the tool dumped
//! (MariaDB cannot share a transaction's snapshot with another session). Any
//! write between the tool's snapshot and that moment makes the source differ
//! from the dump and the check fail, although the dump is a correct image of
//! its snapshot; on a busy database, run the check against a quiet replica or
//! accept such false alarms. Non-transactional tables (MyISAM, Aria) are not
//! even consistent inside `--single-transaction`. Routines of other definers
//! that the login cannot see are neither dumped nor counted (see the manifest's
//! warnings). The check needs `ALL` on `baton\_verify\_%` databases, and
//! `SET USER`/`SUPER` when objects have another definer (`baton-agent
//! validate` warns about both: [`crate::db::mysql::grants`]).
//!
//! Events are restored **disabled** ([`super::rewrite::DumpFilter`]), so a scheduled event
//! cannot fire in the scratch database before it is dropped.

use serde::{Deserialize, Serialize};

use super::Error;
use super::client::{Client, ident, literal, scalar};

/// What is compared between the source and the restored copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Base tables (sorted) with their figures.
    pub tables: Vec<TableFigures>,
    /// Stored procedures and functions.
    pub routines: u64,
    /// Triggers.
    pub triggers: u64,
    /// Views.
    pub views: u64,
    /// Events.
    pub events: u64,
}

/// One base table's figures: rows and `CHECKSUM TABLE` (both `None` when
/// not computed — `--no-data` — or NULL).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFigures {
    /// Table name.
    pub name: String,
    /// `SELECT COUNT(*)`.
    pub rows: Option<u64>,
    /// `CHECKSUM TABLE`.
    pub checksum: Option<String>,
}

impl TableFigures {
    /// A table with only its name known.
    pub fn named(name: impl Into<String>) -> Self {
        TableFigures {
            name: name.into(),
            ..TableFigures::default()
        }
    }
}

/// The restore check's verdict (in the manifest and the job result).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Whether the restored copy matches.
    pub ok: bool,
    /// Tables compared.
    pub tables_compared: usize,
    /// Differences, one line each.
    pub mismatches: Vec<String>,
    /// Whether table checksums were compared (not with `--no-data`).
    pub checksums: bool,
    /// Routines/triggers/views/events in the source.
    pub objects: ObjectCounts,
    /// The source's tables with their rows and checksums as compared (what a
    /// `restore` of this dump compares its copy with).
    #[serde(default)]
    pub tables: Vec<TableFigures>,
    /// The scratch database (dropped).
    pub scratch_database: String,
    /// Time the check took.
    pub duration_ms: u64,
    /// Why the check could not finish, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Object counts in the source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectCounts {
    /// Stored procedures and functions.
    pub routines: u64,
    /// Triggers.
    pub triggers: u64,
    /// Views.
    pub views: u64,
    /// Events.
    pub events: u64,
}

/// Compare the source with the restored copy: every table by name and, with
/// `checksums` (the data was dumped), its rows and checksum; object counts.
pub fn compare(source: &Snapshot, restored: &Snapshot, checksums: bool) -> (usize, Vec<String>) {
    let mut mismatches = Vec::new();
    let mut compared = 0;
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".into());
    for src in &source.tables {
        let name = &src.name;
        let Some(copy) = restored.tables.iter().find(|t| &t.name == name) else {
            mismatches.push(format!("table `{name}` is missing from the restored copy"));
            continue;
        };
        compared += 1;
        if !checksums {
            continue;
        }
        if let (Some(a), Some(b)) = (src.rows, copy.rows)
            && a != b
        {
            mismatches.push(format!(
                "table `{name}`: {a} rows in the source, {b} in the restored copy"
            ));
        }
        if src.checksum.is_none() || copy.checksum.is_none() {
            mismatches.push(format!(
                "table `{name}`: no checksum ({} in the source, {} in the restored copy)",
                text(&src.checksum),
                text(&copy.checksum),
            ));
        } else if src.checksum != copy.checksum {
            mismatches.push(format!(
                "table `{name}`: checksum {} in the source, {} in the restored copy",
                text(&src.checksum),
                text(&copy.checksum),
            ));
        }
    }
    for copy in &restored.tables {
        if !source.tables.iter().any(|t| t.name == copy.name) {
            mismatches.push(format!(
                "table `{}` is in the restored copy only",
                copy.name
            ));
        }
    }
    for (what, s, r) in [
        ("routines", source.routines, restored.routines),
        ("triggers", source.triggers, restored.triggers),
        ("views", source.views, restored.views),
        ("events", source.events, restored.events),
    ] {
        if s != r {
            mismatches.push(format!(
                "{what}: {s} in the source, {r} in the restored copy"
            ));
        }
    }
    (compared, mismatches)
}

/// Take the snapshot of `database`: tables (without `ignored`), their
/// checksums when `checksums`, and the object counts.
pub(crate) async fn snapshot(
    client: &Client,
    database: &str,
    ignored: &[String],
    checksums: bool,
) -> Result<Snapshot, Error> {
    let db = literal(database);
    let statements = vec![
        format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {db} \
             AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
        ),
        format!("SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {db}"),
        format!("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {db}"),
        format!("SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {db}"),
        format!("SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {db}"),
    ];
    let results = client.query(None, &statements).await?;
    let fail = |what: &str, r: &Result<_, String>| match r {
        Err(e) => Some(Error::Client {
            message: format!("cannot list the {what} of {database}: {e}"),
            retryable: super::messages::retryable(e),
        }),
        Ok(_) => None,
    };
    let names = ["tables", "routines", "triggers", "views", "events"];
    for (what, r) in names.iter().zip(&results) {
        if let Some(e) = fail(what, r) {
            return Err(e);
        }
    }
    let count = |i: usize| -> u64 {
        results
            .get(i)
            .and_then(scalar)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let tables: Vec<String> = match results.first() {
        Some(Ok(rows)) => rows
            .iter()
            .filter_map(|r| r.first().cloned().flatten())
            .filter(|t| !ignored.iter().any(|i| i == t))
            .collect(),
        _ => Vec::new(),
    };
    let tables = if checksums && !tables.is_empty() {
        figures(client, database, tables).await?
    } else {
        tables.into_iter().map(TableFigures::named).collect()
    };
    Ok(Snapshot {
        tables,
        routines: count(1),
        triggers: count(2),
        views: count(3),
        events: count(4),
    })
}

/// Rows and `CHECKSUM TABLE` of each of `tables` in `database`.
async fn figures(
    client: &Client,
    database: &str,
    tables: Vec<String>,
) -> Result<Vec<TableFigures>, Error> {
    let statements: Vec<String> = tables
        .iter()
        .flat_map(|t| {
            let table = format!("{}.{}", ident(database), ident(t));
            [
                format!("CHECKSUM TABLE {table}"),
                format!("SELECT COUNT(*) FROM {table}"),
            ]
        })
        .collect();
    let results = client.query(None, &statements).await?;
    let mut out = Vec::with_capacity(tables.len());
    for (t, pair) in tables.into_iter().zip(results.chunks(2)) {
        let (sum, rows) = match pair {
            [Ok(sum), rows @ Ok(_)] => (sum, rows),
            [Err(e), _] | [_, Err(e)] => {
                return Err(Error::Client {
                    retryable: super::messages::retryable(e),
                    message: format!("cannot checksum `{database}`.`{t}`: {e}"),
                });
            }
            _ => break,
        };
        out.push(TableFigures {
            checksum: sum.first().and_then(|row| row.last().cloned().flatten()),
            rows: scalar(rows).and_then(|v| v.parse().ok()),
            name: t,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
