use super::*;

#[test]
fn job_errors_retry_only_when_another_attempt_may_help() {
    assert!(!classify_job(&Error::Invalid("spec.params[0].name".into()), &[]).retryable);
    assert!(!classify_job(&Error::Config("no such connection".into()), &[]).retryable);
    use crate::db::mssql::connection::ConnectError;
    let reach = ConnectError::Reach {
        connection: "erp".into(),
        target: "h:1433".into(),
        source: Box::new(tiberius::error::Error::Io {
            kind: std::io::ErrorKind::ConnectionRefused,
            message: "refused".into(),
        }),
    };
    let f = classify_job(&Error::Connect(reach), &[]);
    assert!(f.retryable);
    assert!(
        f.message
            .contains("connection \"erp\": cannot reach h:1433"),
        "{}",
        f.message
    );
    let tls = ConnectError::Login {
        connection: "erp".into(),
        target: "h:1433".into(),
        source: Box::new(tiberius::error::Error::Tls(
            "invalid peer certificate".into(),
        )),
    };
    assert!(!classify_job(&Error::Connect(tls), &[]).retryable);
    assert!(
        !classify_job(
            &Error::Connect(ConnectError::Setup("no password file".into())),
            &[]
        )
        .retryable
    );
    let lock = |status| Error::Lock {
        lock: "baton:f:job:1".into(),
        status,
    };
    assert!(classify_job(&lock(-3), &[]).retryable);
    let f = classify_job(&lock(-999), &[]);
    assert!(!f.retryable);
    assert_eq!(
        f.message,
        "sp_getapplock('baton:f:job:1') returned -999 (parameter validation or other call error)"
    );
}

const DEFAULT_RETRY: [i64; 2] = [1213, 1205];

#[test]
fn server_errors_keep_every_field_and_retry_only_listed_numbers() {
    let raised = ServerError {
        number: 50000,
        class: 16,
        state: 1,
        message: "order 7 is locked",
        procedure: "dbo.close_order",
        line: 12,
    };
    let f = classify_server(&raised, &DEFAULT_RETRY);
    assert!(!f.retryable);
    assert_eq!(
        f.message,
        "SQL Server error 50000 (class 16, state 1): order 7 is locked"
    );
    assert_eq!(
        f.error,
        Some(json!({"number": 50000, "class": 16, "state": 1,
                "procedure": "dbo.close_order", "line": 12, "message": "order 7 is locked"}))
    );
    assert!(classify_server(&raised, &[50000]).retryable);
    let deadlock = ServerError {
        number: 1205,
        class: 13,
        state: 51,
        message: "deadlocked",
        procedure: "",
        line: 1,
    };
    assert!(classify_server(&deadlock, &DEFAULT_RETRY).retryable);
    assert!(!classify_server(&deadlock, &[]).retryable);
    let busy = ServerError {
        number: 40501,
        ..deadlock
    };
    assert!(classify_server(&busy, &[]).retryable);
}

#[test]
fn io_retries_tls_and_protocol_do_not() {
    let io = tiberius::error::Error::Io {
        kind: std::io::ErrorKind::ConnectionReset,
        message: "reset".into(),
    };
    let f = classify(&io, &[]);
    assert!(f.retryable && f.error.is_none(), "{f:?}");
    assert!(
        f.message.starts_with("connection to SQL Server failed"),
        "{f:?}"
    );
    let tls = classify(&tiberius::error::Error::Tls("bad certificate".into()), &[]);
    assert!(!tls.retryable);
    assert_eq!(tls.message, "TLS to SQL Server failed: bad certificate");
    let proto = classify(
        &tiberius::error::Error::Protocol("junk".into()),
        &DEFAULT_RETRY,
    );
    assert!(!proto.retryable);
}
