//! A failed database job as reported, whatever the engine: whether another
//! attempt may help, the error text, and the server's error as JSON. Each
//! engine classifies its own errors into a [`Failure`] (`mysql::failure`,
//! `mssql::failure`).

use serde_json::Value as Json;

use crate::executor::Outcome;
use crate::executor::stop;

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
