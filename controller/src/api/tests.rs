use super::*;
use baton_proto::JobSubmit;

fn field(body: &str) -> Option<String> {
    parse_json::<JobSubmit>(body.as_bytes())
        .expect_err("must fail")
        .0
        .error
        .field
}

#[test]
fn json_errors_name_fields() {
    assert_eq!(
        field(r#"{"spec":{"kind":"noop"}}"#).as_deref(),
        Some("group")
    );
    assert_eq!(
        field(r#"{"group":"g","spec":{"kind":"command"}}"#).as_deref(),
        Some("spec.program")
    );
    assert_eq!(
        field(r#"{"group":"g","spec":{"kind":"rm"}}"#).as_deref(),
        Some("spec.kind")
    );
    assert_eq!(
        field(r#"{"group":"g","spec":{"kind":"noop"},"retry":{"max_attempts":"x"}}"#).as_deref(),
        Some("retry.max_attempts")
    );
    assert_eq!(
        field(r#"{"group":"g","spec":{"kind":"noop"},"x":1}"#).as_deref(),
        Some("x")
    );
    assert_eq!(field("{not json"), None);
}

#[test]
fn a_number_for_an_enum_names_the_field() {
    let e = parse_json::<baton_proto::auth::OperatorTokenCreate>(br#"{"name":"x","role":5}"#)
        .expect_err("number for a role");
    assert_eq!(e.0.error.field.as_deref(), Some("role"));
    assert!(!e.0.error.message.contains("malformed"), "{:?}", e.0);
    assert_eq!(
        field(r#"{"group":"g","spec":{"kind":"noop"},"retry":{"retry_on":[5]}}"#).as_deref(),
        Some("retry.retry_on[0]")
    );
    assert_eq!(
        field(r#"{"group":"g","spec":{"kind":5}}"#).as_deref(),
        Some("spec.kind")
    );
    let e = parse_json::<baton_proto::drill::DrillStart>(br#"{"group":"g","method":[]}"#)
        .expect_err("list for a method");
    assert_eq!(e.0.error.field.as_deref(), Some("method"));
    // Broken JSON is still called so, without a field.
    assert_eq!(
        field(r#"{"group":"g","spec":{"kind":"noop"},"priority":}"#),
        None
    );
}

#[test]
fn ids_are_canonical_decimal_numbers() {
    assert_eq!(parse_id("1"), Some(1));
    assert_eq!(parse_id("9223372036854775807"), Some(i64::MAX));
    for bad in [
        "",
        "+1",
        "-1",
        "0",
        "01",
        " 1",
        "1 ",
        "1e3",
        "9223372036854775808",
        "ab",
    ] {
        assert_eq!(parse_id(bad), None, "{bad:?}");
    }
}

#[test]
fn clip_cuts_on_a_character_boundary() {
    assert_eq!(clip("abc", 3), "abc");
    assert_eq!(clip("abcd", 3), "abc…");
    assert_eq!(clip("aé", 2), "a…");
}

/// JSON Schema's `integer` admits `1.0`: integral floats are integers,
/// other floats still name their field.
#[test]
fn integral_floats_are_accepted_for_integer_fields() {
    let j = parse_json::<JobSubmit>(
        br#"{"group":"g","spec":{"kind":"noop","sleep_ms":2.0},"priority":-3.0,
            "lease_ttl_ms":3e4,"retry":{"max_attempts":2.0,"jitter":0.5}}"#,
    )
    .expect("integral floats");
    assert_eq!(j.priority, -3);
    assert_eq!(j.lease_ttl_ms, Some(30_000));
    assert_eq!(j.retry.max_attempts, 2);
    assert_eq!(
        field(r#"{"group":"g","spec":{"kind":"noop"},"retry":{"max_attempts":1.5}}"#).as_deref(),
        Some("retry.max_attempts")
    );
    assert_eq!(
        field(r#"{"group":"g","spec":{"kind":"noop"},"priority":1e300}"#).as_deref(),
        Some("priority")
    );
    // Also inside an untagged enum, whose error names no float.
    let j = parse_json::<JobSubmit>(
        br#"{"group":"g","spec":{"kind":"sql","connection":"c","sql":"SELECT 1",
            "session":{"lock_wait_timeout":5.0}}}"#,
    )
    .expect("an integral float in a session value");
    let baton_proto::JobSpec::Sql(q) = j.spec else {
        panic!("not sql")
    };
    assert_eq!(
        q.session.get("lock_wait_timeout"),
        Some(&baton_proto::session::SessionValue::Int(5))
    );
}
