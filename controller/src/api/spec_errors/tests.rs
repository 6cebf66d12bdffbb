use super::*;

#[test]
fn fields_inside_a_spec_are_named() {
    let body = br#"{"group":"g","spec":{"kind":"procedure","connection":"c","procedure":"p",
            "params":[{"name":"a","value":{"type":"int","value":1}},{"name":"b","mode":5,"value":{"type":"null"}}]}}"#;
    let (field, message) = refine(body, "spec").expect("refined");
    assert_eq!(field, "spec.params[1].mode");
    assert!(message.contains("integer"), "{message}");
    let batch = br#"{"jobs":[{"group":"g","spec":{"kind":"noop"}},{"group":"g","spec":{"kind":"noop","sleep_ms":"x"}}]}"#;
    assert_eq!(
        refine(batch, "jobs[1].spec").map(|r| r.0).as_deref(),
        Some("jobs[1].spec.sleep_ms")
    );
    assert_eq!(refine(body, "group"), None);
    assert_eq!(refine(br#"{"spec":{"kind":"noop"}}"#, "spec"), None);
}
