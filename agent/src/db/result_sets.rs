//! The bounded result sets of a `procedure` or `sql` job, shared by the
//! MySQL and SQL Server captures (each adds its engine's extras: counts,
//! warnings, OUT values, return status).
//!
//! Bounds: `max_rows` rows per set (then the set is `truncated`) and
//! `max_bytes` of JSON over all sets (then the current set is cut and later
//! sets are counted in `result_sets_omitted`).

use serde_json::{Value as Json, json};

/// Capture bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Rows kept per result set.
    pub max_rows: usize,
    /// JSON bytes kept over all result sets.
    pub max_bytes: usize,
    /// Warnings kept.
    pub max_warnings: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rows: 1000,
            max_bytes: 1 << 20,
            max_warnings: 64,
        }
    }
}

/// Serialized length of a JSON value.
pub fn json_len(v: &Json) -> usize {
    serde_json::to_string(v).map_or(0, |s| s.len())
}

#[derive(Debug, Clone, PartialEq)]
struct Set {
    columns: Vec<String>,
    types: Vec<&'static str>,
    rows: Vec<Json>,
    truncated: bool,
}

/// The result sets kept so far, within the bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultSets {
    limits: Limits,
    sets: Vec<Set>,
    /// Whether the current set is kept (false past the byte bound).
    current_kept: bool,
    omitted: u64,
    bytes: usize,
    /// The byte bound was reached: nothing more is kept.
    full: bool,
    truncated: bool,
}

impl ResultSets {
    /// Nothing kept yet.
    pub fn new(limits: Limits) -> Self {
        ResultSets {
            limits,
            sets: Vec::new(),
            current_kept: false,
            omitted: 0,
            bytes: 0,
            full: false,
            truncated: false,
        }
    }

    /// The bounds.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether a bound cut anything.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// How many sets were left out (past the byte bound).
    pub fn omitted(&self) -> u64 {
        self.omitted
    }

    /// Start a set with these column names and types.
    pub fn begin(&mut self, names: Vec<String>, types: impl FnOnce() -> Vec<&'static str>) {
        let cost = json_len(&json!(names)) * 2 + 48;
        if self.full || self.bytes + cost > self.limits.max_bytes {
            self.full = true;
            self.current_kept = false;
            self.omitted += 1;
            self.truncated = true;
            return;
        }
        self.bytes += cost;
        self.current_kept = true;
        self.sets.push(Set {
            columns: names,
            types: types(),
            rows: Vec::new(),
            truncated: false,
        });
    }

    /// Add a row of the current set (its cells made only when it is kept;
    /// dropped, and noted, past a bound).
    pub fn push(&mut self, cells: impl FnOnce() -> Vec<Json>) {
        if !self.current_kept {
            return;
        }
        let Some(set) = self.sets.last_mut() else {
            return;
        };
        if set.truncated {
            return;
        }
        if set.rows.len() >= self.limits.max_rows {
            set.truncated = true;
            self.truncated = true;
            return;
        }
        let row = Json::Array(cells());
        let cost = json_len(&row) + 1;
        if self.bytes + cost > self.limits.max_bytes {
            set.truncated = true;
            self.truncated = true;
            self.full = true;
            return;
        }
        self.bytes += cost;
        set.rows.push(row);
    }

    /// The sets as `JobResult.data.result_sets`.
    pub fn to_json(&self) -> Json {
        Json::Array(
            self.sets
                .iter()
                .map(|s| {
                    json!({
                        "columns": s.columns,
                        "types": s.types,
                        "rows": s.rows,
                        "truncated": s.truncated,
                    })
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests;
