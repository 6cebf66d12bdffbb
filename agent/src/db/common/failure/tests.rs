//! The retry rule for server codes and the failed outcome.

use serde_json::json;

use super::*;

#[test]
fn a_code_retries_when_the_policy_lists_it_or_the_session_failed() {
    let session: [u16; 2] = [1040, 1053];
    assert!(retryable_code(1213u16, &[1213, 1205], &session));
    assert!(retryable_code(1053u16, &[], &session));
    assert!(!retryable_code(1064u16, &[1213], &session));
    assert!(retryable_code(596u32, &[], &[596u32]));
}

#[test]
fn the_outcome_carries_the_server_error_in_data() {
    let f = Failure {
        retryable: false,
        message: "MySQL error 1064 (42000): syntax".into(),
        error: Some(json!({"code": 1064})),
    };
    let out = f.outcome(json!({"affected_rows": 0}), false);
    assert_eq!(
        out.error.as_deref(),
        Some("MySQL error 1064 (42000): syntax")
    );
    let data = out.result.data.expect("data");
    assert_eq!(data["error"]["code"], 1064);
    assert_eq!(data["affected_rows"], 0);
    let plain = Failure::plain(true, "connection refused".into()).outcome(json!({}), false);
    assert_eq!(plain.error.as_deref(), Some("connection refused"));
    assert!(matches!(
        plain.completion,
        baton_proto::Completion::Failed { retryable: true }
    ));
}
