use chrono::TimeZone;

use super::*;

fn values() -> KeyValues<'static> {
    KeyValues {
        connection: "main",
        database: "sales",
        at: chrono::Utc
            .with_ymd_and_hms(2026, 3, 7, 4, 5, 6)
            .single()
            .expect("time"),
        file: "20260307T040506Z-job42.sql.zst",
    }
}

#[test]
fn the_default_template_renders_with_its_retention_prefix() {
    let (key, prefix) = render(DEFAULT_KEY, &values()).expect("render");
    assert_eq!(key, "main/sales/2026/03/07/20260307T040506Z-job42.sql.zst");
    assert_eq!(prefix, "main/sales/");
}

#[test]
fn other_templates_render() {
    let (key, prefix) = render("nightly/{database}-{yyyy}{mm}/{hh}/{file}", &values()).expect("r");
    assert_eq!(
        key,
        "nightly/sales-202603/04/20260307T040506Z-job42.sql.zst"
    );
    assert_eq!(prefix, "nightly/sales-");
    let (key, prefix) = render("{file}", &values()).expect("render");
    assert_eq!(
        (key.as_str(), prefix.as_str()),
        ("20260307T040506Z-job42.sql.zst", "")
    );
}

#[test]
fn bad_templates_are_refused_saying_why() {
    for (t, why) in [
        ("", "characters"),
        ("{connection}/{nope}/{file}", "unknown placeholder {nope}"),
        ("{connection}/{database}", "must end with {file}"),
        ("{file}/{file}", "must end with {file}"),
        ("{file}.x", "must end with {file}"),
        ("/abs/{file}", "must not start with `/`"),
        ("a//{file}", "empty"),
        ("../{file}", "`..`"),
        ("a b/{file}", "' ' is not allowed"),
        ("{connection/{file}", "unknown placeholder"),
        ("x/{file", "unclosed"),
    ] {
        let e = check_template(t).expect_err(t);
        assert!(e.contains(why), "{t}: {e}");
    }
}

#[test]
fn a_value_that_would_break_the_key_is_refused() {
    let mut v = values();
    v.database = "..";
    assert!(render(DEFAULT_KEY, &v).is_err());
    v.database = "a/b";
    assert!(render(DEFAULT_KEY, &v).is_err());
}

#[test]
fn the_spec_round_trips() {
    let s = UploadSpec {
        store: "offsite".into(),
        file: "/var/lib/baton/dumps/main/sales/x.sql.zst".into(),
        key: Some("{database}/{file}".into()),
        retention: Some(UploadRetention {
            keep_last: Some(7),
            max_age: Some("30d".into()),
        }),
    };
    let json = serde_json::to_string(&s).expect("json");
    assert_eq!(serde_json::from_str::<UploadSpec>(&json).expect("back"), s);
    let minimal: UploadSpec =
        serde_json::from_str(r#"{"store":"s","file":"/f"}"#).expect("minimal");
    assert_eq!((minimal.key, minimal.retention), (None, None));
    assert!(serde_json::from_str::<UploadSpec>(r#"{"store":"s","file":"/f","x":1}"#).is_err());
}
