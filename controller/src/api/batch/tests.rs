use super::*;

#[test]
fn parse_errors_name_the_job() {
    let field = |body: &str| {
        super::super::parse_json::<JobBatchSubmit>(body.as_bytes())
            .expect_err("must fail")
            .0
            .error
            .field
    };
    assert_eq!(
            field(r#"{"jobs":[{"group":"g","spec":{"kind":"noop"}},{"group":"g","spec":{"kind":"command"}}]}"#)
                .as_deref(),
            Some("jobs[1].spec.program")
        );
    assert_eq!(
        field(r#"{"jobs":[{"group":"g","spec":{"kind":"noop","sleep_ms":"x"}}]}"#).as_deref(),
        // As for a single submit: a type error inside a spec names its field.
        Some("jobs[0].spec.sleep_ms")
    );
    assert_eq!(field(r#"{"job":[]}"#).as_deref(), Some("job"));
}
