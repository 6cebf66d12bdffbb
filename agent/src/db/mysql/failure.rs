//! What a failed job says and whether another attempt may help.
//!
//! - A server error keeps its code, SQLSTATE and message: the error text is
//!   `MySQL error 1213 (40001): Deadlock found ...` and `data.error` is
//!   `{code, sqlstate, message}`. It is retryable when the job's retry policy
//!   lists the code (`retry_codes`, by default 1213 deadlock and 1205 lock
//!   wait timeout), or when the code says the connection itself went away
//!   ([`CONNECTION_CODES`]).
//! - Connection and I/O errors (refused, reset, lost, connect timeout) are
//!   retryable; TLS failures and driver errors that are configuration or our
//!   own fault are not.
//! - Invalid names, parameters and missing configuration are not retryable.

use serde_json::json;

use super::Error;
pub use crate::db::common::failure::Failure;
use crate::db::common::failure::retryable_code;

/// Server codes that mean the session, not the statement, failed:
/// too many connections (1040), server shutdown (1053), too many user
/// connections (1203), connection killed (1927, MariaDB), disconnected for
/// inactivity (4031, MySQL 8). Always retryable.
pub const CONNECTION_CODES: [u16; 5] = [1040, 1053, 1203, 1927, 4031];

/// The error text of a server error.
pub fn server_message(code: u16, state: &str, message: &str) -> String {
    format!("MySQL error {code} ({state}): {message}")
}

/// Classify an error with the job's retryable codes.
pub fn classify(e: &Error, retry_codes: &[i64]) -> Failure {
    let plain = |retryable: bool| Failure::plain(retryable, e.to_string());
    match e {
        Error::Invalid(_) | Error::Config(_) => plain(false),
        Error::Password { .. } | Error::ConnectTimeout { .. } | Error::Lock { .. } => plain(true),
        // Only seen when the job was being stopped; the caller reports the stop.
        Error::Stopped => plain(false),
        Error::Mysql(m) => classify_driver(m, retry_codes),
    }
}

fn classify_driver(e: &mysql_async::Error, retry_codes: &[i64]) -> Failure {
    use mysql_async::{DriverError as D, Error as M, IoError};
    let (retryable, message) = match e {
        M::Server(s) => {
            return Failure {
                retryable: retryable_code(s.code, retry_codes, &CONNECTION_CODES),
                message: server_message(s.code, &s.state, &s.message),
                error: Some(json!({
                    "code": s.code,
                    "sqlstate": s.state,
                    "message": s.message,
                })),
            };
        }
        // rustls reports a refused certificate as an I/O error: not transient.
        M::Io(IoError::Io(io))
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
        {
            (false, format!("TLS to MySQL failed: {io}"))
        }
        M::Io(IoError::Io(io)) => (true, format!("connection to MySQL failed: {io}")),
        M::Io(IoError::Tls(t)) => (false, format!("TLS to MySQL failed: {t}")),
        M::Driver(d) => {
            let transient = matches!(
                d,
                D::ConnectionClosed
                    | D::PacketOutOfOrder
                    | D::PoolDisconnected
                    | D::UnexpectedPacket { .. }
                    | D::BadCompressedPacketHeader
            );
            (transient, format!("MySQL driver error: {d}"))
        }
        M::Other(o) => (false, format!("MySQL client error: {o}")),
        M::Url(u) => (false, format!("MySQL connection settings: {u}")),
    };
    Failure::plain(retryable, message)
}

#[cfg(test)]
mod tests;
