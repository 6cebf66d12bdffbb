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
//! Events are restored **disabled** ([`EventDisabler`]), so a scheduled event
//! cannot fire in the scratch database before it is dropped.

use serde::Serialize;

use super::Error;
use super::client::{Client, ident, literal, scalar};

/// What is compared between the source and the restored copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Base tables (sorted) with their checksum (`None`: not computed or NULL).
    pub tables: Vec<(String, Option<String>)>,
    /// Stored procedures and functions.
    pub routines: u64,
    /// Triggers.
    pub triggers: u64,
    /// Views.
    pub views: u64,
    /// Events.
    pub events: u64,
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
    /// The scratch database (dropped).
    pub scratch_database: String,
    /// Time the check took.
    pub duration_ms: u64,
    /// Why the check could not finish, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Object counts in the source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
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

/// Compare the source with the restored copy.
pub fn compare(source: &Snapshot, restored: &Snapshot, checksums: bool) -> (usize, Vec<String>) {
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (name, sum) in &source.tables {
        match restored.tables.iter().find(|(n, _)| n == name) {
            None => mismatches.push(format!("table `{name}` is missing from the restored copy")),
            Some((_, restored_sum)) => {
                compared += 1;
                if checksums && (sum.is_none() || restored_sum.is_none()) {
                    mismatches.push(format!(
                        "table `{name}`: no checksum ({} in the source, {} in the restored copy)",
                        sum.as_deref().unwrap_or("NULL"),
                        restored_sum.as_deref().unwrap_or("NULL"),
                    ));
                } else if checksums && sum != restored_sum {
                    mismatches.push(format!(
                        "table `{name}`: checksum {} in the source, {} in the restored copy",
                        sum.as_deref().unwrap_or("NULL"),
                        restored_sum.as_deref().unwrap_or("NULL"),
                    ));
                }
            }
        }
    }
    for (name, _) in &restored.tables {
        if !source.tables.iter().any(|(n, _)| n == name) {
            mismatches.push(format!("table `{name}` is in the restored copy only"));
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
    let sums = if checksums && !tables.is_empty() {
        let statements: Vec<String> = tables
            .iter()
            .map(|t| format!("CHECKSUM TABLE {}.{}", ident(database), ident(t)))
            .collect();
        let results = client.query(None, &statements).await?;
        let mut sums = Vec::with_capacity(tables.len());
        for (t, r) in tables.iter().zip(results) {
            match r {
                Ok(rows) => sums.push(rows.first().and_then(|row| row.last().cloned().flatten())),
                Err(e) => {
                    return Err(Error::Client {
                        retryable: super::messages::retryable(&e),
                        message: format!("cannot checksum `{database}`.`{t}`: {e}"),
                    });
                }
            }
        }
        sums
    } else {
        vec![None; tables.len()]
    };
    Ok(Snapshot {
        tables: tables.into_iter().zip(sums).collect(),
        routines: count(1),
        triggers: count(2),
        views: count(3),
        events: count(4),
    })
}

/// Rewrites a dump on its way into the client so that every `CREATE EVENT`
/// creates the event `DISABLE`d. Lines are passed through untouched except
/// event definitions (`/*!50106 CREATE*/ … EVENT … PRESERVE ENABLE …`), which
/// are held until their end of line (bounded; a longer one passes unchanged).
#[derive(Debug, Default)]
pub struct EventDisabler {
    mode: Mode,
    /// Events switched to DISABLE.
    pub disabled: usize,
}

#[derive(Debug)]
enum Mode {
    /// At the start of a line: the bytes seen so far, while they may still be the prefix.
    Start(Vec<u8>),
    /// In a line that is not an event definition.
    Pass,
    /// In an event definition line.
    Hold(Vec<u8>),
}

impl Default for Mode {
    fn default() -> Self {
        Mode::Start(Vec::new())
    }
}

const EVENT_PREFIX: &[u8] = b"/*!50106 CREATE*/";
const HOLD_LIMIT: usize = 1024 * 1024;

impl EventDisabler {
    /// Filter the next bytes into `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match &mut self.mode {
                Mode::Pass => match input.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        out.extend_from_slice(&input[..=i]);
                        input = &input[i + 1..];
                        self.mode = Mode::Start(Vec::new());
                    }
                    None => {
                        out.extend_from_slice(input);
                        input = &[];
                    }
                },
                Mode::Start(seen) => {
                    let want = EVENT_PREFIX.len() - seen.len();
                    let take = want.min(input.len());
                    let part = &input[..take];
                    if let Some(i) = part.iter().position(|b| *b == b'\n') {
                        out.extend_from_slice(seen);
                        out.extend_from_slice(&part[..=i]);
                        input = &input[i + 1..];
                        seen.clear();
                        continue;
                    }
                    seen.extend_from_slice(part);
                    input = &input[take..];
                    if !EVENT_PREFIX.starts_with(seen) {
                        out.extend_from_slice(seen);
                        self.mode = Mode::Pass;
                    } else if seen.len() == EVENT_PREFIX.len() {
                        let held = std::mem::take(seen);
                        self.mode = Mode::Hold(held);
                    }
                }
                Mode::Hold(line) => match input.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        line.extend_from_slice(&input[..=i]);
                        input = &input[i + 1..];
                        let line = std::mem::take(line);
                        self.emit_event(line, out);
                        self.mode = Mode::Start(Vec::new());
                    }
                    None => {
                        line.extend_from_slice(input);
                        input = &[];
                        if line.len() > HOLD_LIMIT {
                            out.extend_from_slice(line);
                            self.mode = Mode::Pass;
                        }
                    }
                },
            }
        }
    }

    /// The end of the input: flush what is held.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.mode, Mode::Pass) {
            Mode::Start(seen) => out.extend_from_slice(&seen),
            Mode::Pass => {}
            Mode::Hold(line) => self.emit_event(line, out),
        }
        self.mode = Mode::default();
    }

    fn emit_event(&mut self, line: Vec<u8>, out: &mut Vec<u8>) {
        const EVENT: &[u8] = b" EVENT ";
        const ENABLED: &[u8] = b" PRESERVE ENABLE";
        let at = find(&line, EVENT)
            .and_then(|e| find(&line[e..], ENABLED).map(|p| e + p + b" PRESERVE ".len()));
        match at {
            Some(p) => {
                out.extend_from_slice(&line[..p]);
                out.extend_from_slice(b"DISABLE");
                out.extend_from_slice(&line[p + b"ENABLE".len()..]);
                self.disabled += 1;
            }
            None => out.extend_from_slice(&line),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests;
