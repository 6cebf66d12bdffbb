use baton_proto::upload::{UploadRetention, UploadSpec};

use super::*;

fn spec() -> UploadSpec {
    UploadSpec {
        store: "offsite".into(),
        file: "${steps.dump.result.file}".into(),
        key: None,
        retention: Some(UploadRetention {
            keep_last: Some(7),
            max_age: Some("30d".into()),
        }),
    }
}

#[test]
fn a_good_spec_passes() {
    check(&spec()).expect("valid");
}

/// A field and a change that breaks it.
type Case = (&'static str, fn(&mut UploadSpec));

#[test]
fn each_bad_field_is_named() {
    let cases: [Case; 6] = [
        ("spec.store", |s| s.store = "a b".into()),
        ("spec.file", |s| s.file = String::new()),
        ("spec.key", |s| s.key = Some("{nope}/{file}".into())),
        ("spec.retention.keep_last", |s| {
            s.retention = Some(UploadRetention {
                keep_last: Some(0),
                max_age: None,
            })
        }),
        ("spec.retention.max_age", |s| {
            s.retention = Some(UploadRetention {
                keep_last: None,
                max_age: Some("forever".into()),
            })
        }),
        ("spec.retention", |s| {
            s.retention = Some(UploadRetention::default())
        }),
    ];
    for (field, change) in cases {
        let mut s = spec();
        change(&mut s);
        let e = check(&s).expect_err(field);
        assert_eq!(e.field, field, "{}", e.message);
    }
}
