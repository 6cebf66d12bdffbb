//! The restore checks shared by the controller and the agent.
use super::*;
use crate::roundtrip::check;

#[test]
fn spec_roundtrip() {
    check(&RestoreSpec {
        connection: "main".into(),
        source: RestoreSource {
            file: Some("/var/lib/baton/dumps/main/shop/x.sql.zst".into()),
        },
        database: "shop_copy".into(),
        replace: false,
    });
    check(&RestoreSource::default());
}

#[test]
fn database_names() {
    assert_eq!(database_refusal("shop_copy"), None);
    assert_eq!(database_refusal("a.b-c"), None);
    for bad in ["", "-x", ".x", "a b", "a`b", "a/b", &"x".repeat(65)] {
        assert!(database_refusal(bad).is_some(), "{bad:?} accepted");
    }
    for system in [
        "mysql",
        "MySQL",
        "information_schema",
        "sys",
        "master",
        "TempDB",
    ] {
        let why = database_refusal(system).expect("refused");
        assert!(why.contains("system database"), "{why}");
    }
}

#[test]
fn file_paths() {
    assert_eq!(file_refusal("/var/lib/baton/dumps/a/b/x.sql.zst"), None);
    // A pipeline reference stands in as a plain word when a pipeline is checked.
    assert_eq!(file_refusal("ref"), None);
    assert!(file_refusal("").is_some());
    assert!(file_refusal("/d/../etc/passwd").is_some());
    assert!(file_refusal("C:\\d\\..\\x").is_some());
    assert!(file_refusal("/d/x\0y").is_some());
    assert!(file_refusal(&format!("/{}", "x".repeat(5000))).is_some());
}
