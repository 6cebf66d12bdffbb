use super::*;

#[test]
fn xml_fields_are_read() {
    let t = "<Error><Code>AccessDenied</Code><Message>no</Message></Error>";
    assert_eq!(xml_field(t, "Code").as_deref(), Some("AccessDenied"));
    assert_eq!(xml_field(t, "Message").as_deref(), Some("no"));
    assert_eq!(xml_field(t, "UploadId"), None);
}

#[test]
fn only_server_errors_and_lost_answers_are_retried() {
    let status = |status: u16, code: &str| Error::Status {
        op: "UploadPart",
        key: "k".into(),
        status,
        code: code.into(),
        message: String::new(),
    };
    assert!(status(500, "InternalError").retryable());
    assert!(status(503, "SlowDown").retryable());
    assert!(status(429, "").retryable());
    assert!(!status(403, "SignatureDoesNotMatch").retryable());
    assert!(status(403, "SignatureDoesNotMatch").bad_credentials());
    assert!(!status(404, "NoSuchBucket").retryable());
    let lost = Error::Transport {
        op: "UploadPart",
        key: "k".into(),
        message: "connection refused".into(),
    };
    assert!(lost.retryable());
}
