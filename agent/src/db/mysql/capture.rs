//! Bounded capture of what a call or batch returns, as the JSON of
//! `JobResult.data`:
//!
//! ```json
//! {"result_sets": [{"columns": ["id"], "types": ["int"], "rows": [[1]], "truncated": false}],
//!  "out": {"total": "12.50"}, "affected_rows": 3,
//!  "warnings": [{"level": "Warning", "code": 1265, "message": "..."}], "truncated": false}
//! ```
//!
//! Every result set is read to its end (the connection must stay in step),
//! but only the first [`Limits::max_rows`] rows of each are kept, and nothing
//! more once the kept values reach [`Limits::max_bytes`] of JSON; a set cut
//! short says `truncated`, and sets past the byte bound are only counted
//! (`result_sets_omitted`).

use mysql_async::prelude::Protocol;
use mysql_async::{Column, QueryResult, Row};
use serde_json::{Map, Value as Json, json};

use super::value;
use crate::db::common::exec::Captured;
use crate::db::result_sets::ResultSets;
pub use crate::db::result_sets::{Limits, json_len};

/// One warning of `SHOW WARNINGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// `Note`, `Warning` or `Error`.
    pub level: String,
    /// Error code.
    pub code: u64,
    /// Text.
    pub message: String,
}

/// What a job returned so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    sets: ResultSets,
    affected_rows: u64,
    warnings: Vec<Warning>,
    warnings_omitted: usize,
    out: Option<Map<String, Json>>,
}

impl Capture {
    /// Nothing captured yet.
    pub fn new(limits: Limits) -> Self {
        Capture {
            sets: ResultSets::new(limits),
            affected_rows: 0,
            warnings: Vec::new(),
            warnings_omitted: 0,
            out: None,
        }
    }

    /// Start a result set with these columns.
    pub fn begin_set(&mut self, columns: &[Column]) {
        let names: Vec<String> = columns.iter().map(|c| c.name_str().into_owned()).collect();
        self.sets
            .begin(names, || columns.iter().map(value::type_name).collect());
    }

    /// Add a row of the current set (dropped, and noted, past a bound).
    pub fn push_row(&mut self, row: Row) {
        let columns = row.columns();
        self.push_values(row.unwrap(), &columns);
    }

    /// Add a row given as values and their columns.
    pub fn push_values(&mut self, values: Vec<mysql_async::Value>, columns: &[Column]) {
        self.sets.push(|| {
            values
                .into_iter()
                .zip(columns.iter())
                .map(|(v, c)| value::to_json(v, c))
                .collect()
        });
    }

    /// Count affected rows of a statement.
    pub fn add_affected(&mut self, n: u64) {
        self.affected_rows = self.affected_rows.saturating_add(n);
    }

    /// Add a warning (kept up to the bound).
    pub fn push_warning(&mut self, warning: Warning) {
        if self.warnings.len() < self.sets.limits().max_warnings {
            self.warnings.push(warning);
        } else {
            self.warnings_omitted += 1;
        }
    }

    /// Record an OUT/INOUT value.
    pub fn set_out(&mut self, name: &str, value: Json) {
        self.out
            .get_or_insert_with(Map::new)
            .insert(name.to_owned(), value);
    }
}

/// Read every result set of `result` into `capture`, then surface an error
/// that a later statement of the batch may have left behind (the driver
/// keeps it pending until the result is read on).
pub async fn drain<P: Protocol>(
    mut result: QueryResult<'_, '_, P>,
    capture: &mut Capture,
) -> Result<(), mysql_async::Error> {
    while !result.is_empty() {
        match result.columns() {
            Some(cols) if !cols.is_empty() => capture.begin_set(&cols),
            Some(_) => capture.add_affected(result.affected_rows()),
            // Nothing pending although more is announced: `drop_result` sorts it out.
            None => break,
        }
        result.for_each(|row| capture.push_row(row)).await?;
    }
    // The last OK packet (no rows, nothing after it) still carries a count.
    if result.columns().is_some_and(|c| c.is_empty()) {
        capture.add_affected(result.affected_rows());
    }
    result.drop_result().await
}

impl Captured for Capture {
    /// The capture as `JobResult.data`.
    fn to_json(&self) -> Json {
        let warnings: Vec<Json> = self
            .warnings
            .iter()
            .map(|w| json!({"level": w.level, "code": w.code, "message": w.message}))
            .collect();
        let mut data = Map::new();
        data.insert("result_sets".into(), self.sets.to_json());
        if let Some(out) = &self.out {
            data.insert("out".into(), Json::Object(out.clone()));
        }
        data.insert("affected_rows".into(), json!(self.affected_rows));
        data.insert("warnings".into(), Json::Array(warnings));
        data.insert("truncated".into(), json!(self.sets.truncated()));
        if self.sets.omitted() > 0 {
            data.insert("result_sets_omitted".into(), json!(self.sets.omitted()));
        }
        if self.warnings_omitted > 0 {
            data.insert("warnings_omitted".into(), json!(self.warnings_omitted));
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
