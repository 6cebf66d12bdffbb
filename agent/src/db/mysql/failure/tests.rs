//! Error classification, without a server.

use mysql_async::{DriverError, IoError, ServerError};
use serde_json::json;

use super::*;

fn server(code: u16, state: &str, message: &str) -> Error {
    Error::Mysql(mysql_async::Error::Server(ServerError {
        code,
        state: state.into(),
        message: message.into(),
    }))
}

#[test]
fn server_errors_keep_code_and_state() {
    let f = classify(&server(5001, "45000", "nope"), &[1213, 1205]);
    assert!(!f.retryable);
    assert_eq!(f.message, "MySQL error 5001 (45000): nope");
    assert_eq!(
        f.error,
        Some(json!({"code": 5001, "sqlstate": "45000", "message": "nope"}))
    );
}

#[test]
fn retry_codes_decide() {
    let deadlock = server(1213, "40001", "Deadlock found");
    assert!(classify(&deadlock, &[1213, 1205]).retryable);
    assert!(!classify(&deadlock, &[]).retryable);
    assert!(classify(&server(5001, "45000", "x"), &[5001]).retryable);
    // The session went away: always worth another attempt.
    assert!(classify(&server(1040, "08004", "Too many connections"), &[]).retryable);
}

#[test]
fn connection_errors_retry_config_errors_do_not() {
    let io = Error::Mysql(mysql_async::Error::Io(IoError::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "refused",
    ))));
    let f = classify(&io, &[]);
    assert!(f.retryable);
    assert!(
        f.message.starts_with("connection to MySQL failed"),
        "{}",
        f.message
    );
    assert!(classify(&Error::Mysql(DriverError::ConnectionClosed.into()), &[]).retryable);
    assert!(
        !classify(
            &Error::Mysql(
                DriverError::StmtParamsMismatch {
                    required: 1,
                    supplied: 2
                }
                .into()
            ),
            &[]
        )
        .retryable
    );
    let timeout = Error::ConnectTimeout {
        connection: "main".into(),
        after: std::time::Duration::from_secs(10),
    };
    let f = classify(&timeout, &[]);
    assert!(f.retryable);
    assert_eq!(f.message, "no connection to main within 10s");
    assert!(!classify(&Error::Invalid("bad name".into()), &[1213]).retryable);
    assert!(!classify(&Error::Config("no ledger".into()), &[]).retryable);
    assert!(
        classify(
            &Error::Password {
                connection: "main".into(),
                message: "gone".into()
            },
            &[]
        )
        .retryable
    );
}

#[test]
fn a_refused_server_certificate_is_not_retried() {
    let io = std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
    );
    let e = Error::Mysql(mysql_async::Error::Io(mysql_async::IoError::Io(io)));
    let f = classify(&e, &[1213]);
    assert!(!f.retryable);
    assert!(f.message.contains("TLS"), "{}", f.message);
    let plain = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
    let e = Error::Mysql(mysql_async::Error::Io(mysql_async::IoError::Io(plain)));
    assert!(classify(&e, &[]).retryable);
}
