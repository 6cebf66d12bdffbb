//! The run ledger's shape, shared by both engines: one row per job whose
//! work committed, written in the same transaction as the work, holding the
//! committed attempt's `JobResult.data` as JSON text. A later attempt that
//! finds the row replays that result instead of running again. The tables
//! and statements are each engine's (`mysql::ledger`, `mssql::ledger`).

use serde_json::{Value as Json, json};

/// A committed attempt found in the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// Its `JobResult.data`.
    pub data: Json,
    /// Attempt number.
    pub attempt: i64,
    /// Fencing token.
    pub token: i64,
    /// When it committed (server time).
    pub committed_at: Json,
}

/// A ledger row's `result` text as JSON (the text itself when it does not
/// parse).
pub fn stored_result(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.to_owned()))
}

/// The `result` text of a ledger row for `data`.
pub fn result_text(data: &Json) -> String {
    serde_json::to_string(data).unwrap_or_else(|_| "null".into())
}

/// A capture's `data` marked as committed with its ledger row, with
/// `ledger_warning` when the work ended the ledger transaction itself.
pub fn mark_committed(mut data: Json, ended_early: Option<&str>) -> Json {
    if let Json::Object(m) = &mut data {
        m.insert("ledger".into(), json!("committed"));
        if let Some(warning) = ended_early {
            m.insert("ledger_warning".into(), json!(warning));
        }
    }
    data
}

/// The data reported when a committed result is replayed.
pub fn replayed(committed: &Committed) -> Json {
    let mut data = match &committed.data {
        Json::Object(m) => m.clone(),
        other => {
            let mut m = serde_json::Map::new();
            m.insert("result".into(), other.clone());
            m
        }
    };
    data.insert("ledger".into(), json!("replayed"));
    data.insert(
        "replayed_from".into(),
        json!({
            "attempt": committed.attempt,
            "token": committed.token,
            "committed_at": committed.committed_at,
        }),
    );
    Json::Object(data)
}

#[cfg(test)]
mod tests;
