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

#[test]
fn a_missing_or_unknown_field_is_named_itself() {
    let body = br#"{"group":"g","spec":{"kind":"procedure","connection":"c","procedure":"p",
            "params":[{"name":"a","value":{"type":"int","value":1}},{"mode":"out"},
            {"name":"c","value":{"type":"int"}}]}}"#;
    let (field, message) = refine(body, "spec").expect("refined");
    assert_eq!(field, "spec.params[1].name");
    assert!(message.contains("missing field `name`"), "{message}");
    let value = br#"{"spec":{"kind":"procedure","connection":"c","procedure":"p",
            "params":[{"name":"c","value":{"type":"int"}}]}}"#;
    let (field, message) = refine(value, "spec").expect("refined");
    assert_eq!(field, "spec.params[0].value");
    assert!(message.contains("missing field `value`"), "{message}");
    let unknown = br#"{"spec":{"kind":"sql","connection":"c","sql":"x","sesion":{}}}"#;
    assert_eq!(
        refine(unknown, "spec").map(|r| r.0).as_deref(),
        Some("spec.sesion")
    );
    let top = br#"{"spec":{"kind":"sql","sql":"x"}}"#;
    assert_eq!(
        refine(top, "spec").map(|r| r.0).as_deref(),
        Some("spec.connection")
    );
}
