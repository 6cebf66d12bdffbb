//! Bounded capture of what a procedure or batch returns, as the JSON of
//! `JobResult.data` — the MySQL executor's layout, plus `return_status`:
//!
//! ```json
//! {"result_sets": [{"columns": ["id"], "types": ["int"], "rows": [[1]], "truncated": false}],
//!  "out": {"total": "12.50"}, "return_status": 0, "affected_rows": 3,
//!  "warnings": [], "truncated": false}
//! ```
//!
//! Every result set is read to its end (the connection must stay in step),
//! but only the first [`Limits::max_rows`] rows of each are kept, and nothing
//! more once the kept values reach [`Limits::max_bytes`] of JSON; a set cut
//! short says `truncated`, and sets past the byte bound are only counted
//! (`result_sets_omitted`). `affected_rows` sums the counts of statements
//! that returned no rows; tiberius does not surface the counts of a SQL
//! batch, so for `sql` jobs it is `null`. `warnings` stays empty: tiberius
//! does not surface INFO messages.

use serde_json::{Map, Value as Json, json};
use tiberius::{Column, ColumnData, Row};

pub use crate::db::result_sets::Limits;
use crate::db::result_sets::ResultSets;

use super::value;
use crate::db::common::exec::Captured;

/// What a job returned so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    sets: ResultSets,
    /// A result set began since the last statement count.
    set_open: bool,
    affected_rows: Option<u64>,
    out: Option<Map<String, Json>>,
    return_status: Option<i32>,
}

impl Capture {
    /// Nothing captured yet.
    pub fn new(limits: Limits) -> Self {
        Capture {
            sets: ResultSets::new(limits),
            set_open: false,
            affected_rows: None,
            out: None,
            return_status: None,
        }
    }

    /// Start a result set with these columns.
    pub fn begin_set(&mut self, columns: &[Column]) {
        self.set_open = true;
        let names: Vec<String> = columns.iter().map(|c| c.name().to_owned()).collect();
        self.sets.begin(names, || {
            columns
                .iter()
                .map(|c| value::type_name(c.column_type()))
                .collect()
        });
    }

    /// Add a row of the current set (dropped, and noted, past a bound).
    pub fn push_row(&mut self, row: Row) {
        self.sets
            .push(|| row.cells().map(|(_, v)| value::to_json(v)).collect());
    }

    /// A statement ended with this count (DONE, DONEINPROC): counted as
    /// affected rows unless it returned a result set.
    pub fn statement_done(&mut self, rows: u64) {
        let n = self.affected_rows.get_or_insert(0);
        if self.set_open {
            self.set_open = false;
        } else {
            *n = n.saturating_add(rows);
        }
    }

    /// Record an OUT/INOUT value (`name` without `@`).
    pub fn set_out(&mut self, name: &str, value: &ColumnData<'static>) {
        self.out
            .get_or_insert_with(Map::new)
            .insert(name.to_owned(), value::to_json(value));
    }

    /// Record the procedure's return status.
    pub fn set_return_status(&mut self, status: i32) {
        self.return_status = Some(status);
    }
}

impl Captured for Capture {
    /// The capture as `JobResult.data`.
    fn to_json(&self) -> Json {
        let mut data = Map::new();
        data.insert("result_sets".into(), self.sets.to_json());
        if let Some(out) = &self.out {
            data.insert("out".into(), Json::Object(out.clone()));
        }
        if let Some(status) = self.return_status {
            data.insert("return_status".into(), json!(status));
        }
        data.insert("affected_rows".into(), json!(self.affected_rows));
        data.insert("warnings".into(), json!([]));
        data.insert("truncated".into(), json!(self.sets.truncated()));
        if self.sets.omitted() > 0 {
            data.insert("result_sets_omitted".into(), json!(self.sets.omitted()));
        }
        Json::Object(data)
    }

    /// Whether a bound cut anything.
    fn truncated(&self) -> bool {
        self.sets.truncated()
    }
}

#[cfg(test)]
mod tests;
