//! What a failed SQL Server job says and whether another attempt may help.
//!
//! - A server error keeps number, class (severity), state, procedure and
//!   line: the error text is `SQL Server error 1205 (class 13, state 51):
//!   Transaction ... was deadlocked ...` and `data.error` is
//!   `{number, class, state, procedure, line, message}`. It is retryable when
//!   the job's retry policy lists the number (`retry_codes`; SQL Server's
//!   deadlock victim is 1205, in the default list), or when the number says
//!   the session itself failed ([`CONNECTION_NUMBERS`]).
//! - I/O errors (refused, reset, timed out) are retryable; TLS failures,
//!   protocol, encoding and conversion errors are not.
//! - A job's own errors ([`classify_job`]): an invalid spec or configuration
//!   is not retryable; no session (network, login, connect timeout) is;
//!   `sp_getapplock` returning -3 (deadlock victim) or -2 (cancelled) is,
//!   -999 (a parameter error) is not.

use serde_json::json;

use super::exec::Error;

/// Server error numbers that mean the session, not the statement, failed:
/// server shutting down (6005, 6006), the connection was killed (596),
/// Azure SQL transient errors (40197 service error, 40501 service busy,
/// 40613 database unavailable, 49918/49919/49920 not enough resources).
pub const CONNECTION_NUMBERS: [u32; 9] =
    [596, 6005, 6006, 40197, 40501, 40613, 49918, 49919, 49920];

/// A failure as reported (`error`: `{number, class, state, procedure, line,
/// message}` for server errors).
pub use crate::db::common::failure::Failure;
use crate::db::common::failure::retryable_code;

/// An ERROR token's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError<'a> {
    /// Error number (50000 for RAISERROR with text).
    pub number: u32,
    /// Class (severity).
    pub class: u8,
    /// State.
    pub state: u8,
    /// Message text.
    pub message: &'a str,
    /// Procedure it was raised in (empty for a batch).
    pub procedure: &'a str,
    /// Line in the batch or procedure.
    pub line: u32,
}

/// The error text of a server error.
pub fn server_message(e: &ServerError<'_>) -> String {
    format!(
        "SQL Server error {} (class {}, state {}): {}",
        e.number, e.class, e.state, e.message
    )
}

/// Classify a server error with the job's retryable codes.
pub fn classify_server(e: &ServerError<'_>, retry_codes: &[i64]) -> Failure {
    Failure {
        retryable: retryable_code(e.number, retry_codes, &CONNECTION_NUMBERS),
        message: server_message(e),
        error: Some(json!({
            "number": e.number,
            "class": e.class,
            "state": e.state,
            "procedure": e.procedure,
            "line": e.line,
            "message": e.message,
        })),
    }
}

/// Classify a tiberius error with the job's retryable codes.
pub fn classify(e: &tiberius::error::Error, retry_codes: &[i64]) -> Failure {
    use tiberius::error::Error as T;
    let (retryable, message) = match e {
        T::Server(t) => {
            return classify_server(
                &ServerError {
                    number: t.code(),
                    class: t.class(),
                    state: t.state(),
                    message: t.message(),
                    procedure: t.procedure(),
                    line: t.line(),
                },
                retry_codes,
            );
        }
        T::Io { .. } => (true, format!("connection to SQL Server failed: {e}")),
        T::Tls(t) => (false, format!("TLS to SQL Server failed: {t}")),
        T::Routing { host, port } => (
            false,
            format!("SQL Server redirected to {host}:{port}; redirection is not supported"),
        ),
        other => (false, format!("SQL Server client error: {other}")),
    };
    Failure::plain(retryable, message)
}

/// What an `sp_getapplock` return status means.
pub fn applock_status(status: i32) -> &'static str {
    match status {
        0 => "granted",
        1 => "granted after waiting",
        -1 => "timed out",
        -2 => "cancelled",
        -3 => "chosen as deadlock victim",
        -999 => "parameter validation or other call error",
        _ => "unexpected status",
    }
}

/// Classify a job's error with the job's retryable codes.
pub fn classify_job(e: &Error, retry_codes: &[i64]) -> Failure {
    let plain = |retryable: bool| Failure::plain(retryable, e.to_string());
    match e {
        Error::Invalid(_) | Error::Config(_) => plain(false),
        Error::Connect(c) => plain(c.retryable()),
        Error::Lock { status, .. } => plain(matches!(status, -2 | -3)),
        Error::Tds(t) => classify(t, retry_codes),
    }
}

#[cfg(test)]
mod tests;
