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

    /// Whether a bound cut anything.
    pub fn truncated(&self) -> bool {
        self.sets.truncated()
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

    /// The capture as `JobResult.data`.
    pub fn to_json(&self) -> Json {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiberius::ColumnType;

    fn row(values: Vec<ColumnData<'static>>) -> Row {
        let mut b = Row::builder();
        for (i, v) in values.into_iter().enumerate() {
            b = b.column(format!("c{i}"), ColumnType::Int4, v);
        }
        b.build()
    }

    fn cols(n: usize) -> Vec<Column> {
        (0..n)
            .map(|i| Column::new(format!("c{i}"), ColumnType::Int4))
            .collect()
    }

    #[test]
    fn rows_are_bounded_per_set_and_counts_skip_selects() {
        let mut c = Capture::new(Limits {
            max_rows: 2,
            ..Limits::default()
        });
        c.begin_set(&cols(1));
        for i in 0..3 {
            c.push_row(row(vec![ColumnData::I32(Some(i))]));
        }
        c.statement_done(3);
        c.statement_done(4);
        c.set_return_status(-4);
        c.set_out("total", &ColumnData::I64(Some(9)));
        let j = c.to_json();
        assert_eq!(
            j["result_sets"],
            json!([{"columns": ["c0"], "types": ["int"], "rows": [[0], [1]], "truncated": true}])
        );
        assert_eq!(j["affected_rows"], json!(4));
        assert_eq!(j["return_status"], json!(-4));
        assert_eq!(j["out"], json!({"total": 9}));
        assert_eq!(j["truncated"], json!(true));
        assert!(c.truncated());
    }

    #[test]
    fn byte_bound_omits_later_sets() {
        let mut c = Capture::new(Limits {
            max_rows: 1000,
            max_bytes: 200,
            max_warnings: 0,
        });
        c.begin_set(&cols(1));
        for i in 0..100 {
            c.push_row(row(vec![ColumnData::I32(Some(i))]));
        }
        c.begin_set(&cols(1));
        let j = c.to_json();
        let kept = j["result_sets"][0]["rows"].as_array().map_or(0, Vec::len);
        assert!(kept > 0 && kept < 100, "{j}");
        assert_eq!(j["result_sets"].as_array().map(Vec::len), Some(1));
        assert_eq!(j["result_sets_omitted"], json!(1));
        assert!(crate::db::result_sets::json_len(&j) < 400, "{j}");
        assert_eq!(j["affected_rows"], Json::Null);
    }
}
