//! A failed database job as reported, whatever the engine: whether another
//! attempt may help, the error text, and the server's error as JSON. Each
//! engine classifies its own errors into a [`Failure`] (`mysql::failure`,
//! `mssql::failure`).

use serde_json::Value as Json;

use crate::executor::Outcome;
use crate::executor::stop;

/// Whether a server error may be retried: the job's retry policy lists its
/// code (`retry_codes`), or the code says the session, not the statement,
/// failed (`session_codes`, each engine's list).
pub fn retryable_code<C: Copy + PartialEq + Into<i64>>(
    code: C,
    retry_codes: &[i64],
    session_codes: &[C],
) -> bool {
    retry_codes.contains(&code.into()) || session_codes.contains(&code)
}

/// A failure as reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Whether the retry policy may try again.
    pub retryable: bool,
    /// The error text.
    pub message: String,
    /// The server's error, for server errors: `{code, sqlstate, message}`
    /// (MySQL), `{number, class, state, procedure, line, message}` (SQL
    /// Server).
    pub error: Option<Json>,
}

impl Failure {
    /// A failure without a server error.
    pub fn plain(retryable: bool, message: String) -> Self {
        Failure {
            retryable,
            message,
            error: None,
        }
    }

    /// The job's outcome: failed, with `data` (an object) carrying `error`.
    pub fn outcome(self, mut data: Json, truncated: bool) -> Outcome {
        if let (Json::Object(m), Some(err)) = (&mut data, self.error) {
            m.insert("error".into(), err);
        }
        stop::failed(
            self.retryable,
            self.message,
            stop::result_with(data, truncated),
        )
    }
}

#[cfg(test)]
mod tests;
