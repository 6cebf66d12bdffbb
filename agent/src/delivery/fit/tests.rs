use super::*;
use baton_proto::{Completion, ErrorCode, JobResult, OutputEncoding};

#[test]
fn data_nested_too_deep_is_replaced_before_sending() {
    let mut deep = serde_json::json!(1);
    for _ in 0..100 {
        deep = serde_json::json!([deep]);
    }
    let mut req = CompleteRequest {
        started_after_ms: None,
        token: 1,
        completion: Completion::Succeeded,
        result: JobResult {
            data: Some(deep),
            ..JobResult::default()
        },
        error: None,
    };
    bound_data_depth(&mut req);
    assert!(req.result.truncated);
    assert_eq!(req.completion, Completion::Succeeded);
    let data = req.result.data.clone().expect("a note");
    assert!(
        data["omitted"].as_str().is_some_and(|s| s.contains("32")),
        "{data}"
    );
    assert!(req.error.clone().unwrap_or_default().contains("left out"));
    // Shallow data is left alone.
    let mut ok = req.clone();
    ok.result.data = Some(serde_json::json!({"rows": [[1, 2]]}));
    ok.result.truncated = false;
    bound_data_depth(&mut ok);
    assert!(!ok.result.truncated);
}

#[test]
fn shrinking_goes_step_by_step_and_keeps_base64_whole() {
    let mut req = CompleteRequest {
        started_after_ms: None,
        token: 1,
        completion: Completion::Succeeded,
        result: JobResult {
            stdout: "é".repeat(5000), // 10,000 bytes of 2-byte characters
            stderr: "QUJD".repeat(2000),
            stderr_encoding: Some(OutputEncoding::Base64),
            data: Some(serde_json::json!({"k": 1})),
            ..JobResult::default()
        },
        error: None,
    };
    assert!(shrink(&mut req, "413"));
    assert_eq!(req.result.stdout.len(), KEPT_BYTES);
    assert_eq!(req.result.stderr.len() % 4, 0);
    assert!(req.result.stderr.len() <= KEPT_BYTES);
    assert!(req.result.truncated);
    assert!(req.result.data.is_some());
    let error = req.error.clone().expect("reason");
    assert!(error.contains("too large (413)"), "{error}");
    assert!(shrink(&mut req, "413"));
    assert!(req.result.data.is_none());
    assert!(shrink(&mut req, "413"));
    assert!(req.result.stdout.is_empty() && req.result.stderr.is_empty());
    assert_eq!(req.result.stderr_encoding, None);
    assert!(!shrink(&mut req, "413"), "nothing left to cut");
    assert_eq!(req.completion, Completion::Succeeded);
}

#[test]
fn only_size_refusals_count() {
    let e = transport::Error::refused(ErrorCode::PayloadTooLarge, "big".into());
    assert!(too_large(&e));
    let e = transport::Error::refused(ErrorCode::BadRequest, "bad".into());
    assert!(!too_large(&e));
}
