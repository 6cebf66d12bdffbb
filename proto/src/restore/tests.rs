//! The restore checks shared by the controller and the agent.
use super::*;
use crate::roundtrip::check;

#[test]
fn spec_roundtrip() {
    check(&RestoreSpec {
        connection: "main".into(),
        source: RestoreSource {
            file: Some("/var/lib/baton/dumps/main/shop/x.sql.zst".into()),
            ..Default::default()
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

fn src(
    file: Option<&str>,
    store: Option<&str>,
    key: Option<&str>,
    prefix: Option<&str>,
) -> RestoreSource {
    RestoreSource {
        file: file.map(str::to_owned),
        store: store.map(str::to_owned),
        key: key.map(str::to_owned),
        key_prefix: prefix.map(str::to_owned),
    }
}

#[test]
fn exactly_one_origin() {
    let field = |s: RestoreSource| s.origin().map(|_| ()).map_err(|(f, _)| f);
    assert_eq!(
        src(Some("/d/x.sql.zst"), None, None, None).origin(),
        Ok(Origin::File("/d/x.sql.zst"))
    );
    assert_eq!(
        src(None, Some("offsite"), Some("main/shop/x.sql.zst"), None).origin(),
        Ok(Origin::Object {
            store: "offsite",
            key: "main/shop/x.sql.zst"
        })
    );
    assert_eq!(
        src(None, Some("offsite"), None, Some("main/")).origin(),
        Ok(Origin::Latest {
            store: "offsite",
            prefix: "main/"
        })
    );
    assert_eq!(
        src(None, Some("offsite"), None, Some("")).origin(),
        Ok(Origin::Latest {
            store: "offsite",
            prefix: ""
        })
    );
    assert_eq!(field(src(None, None, None, None)), Err("source.file"));
    assert_eq!(
        field(src(Some("/d/x"), Some("s"), None, None)),
        Err("source.file")
    );
    assert_eq!(
        field(src(Some("/d/x"), None, Some("k"), None)),
        Err("source.file")
    );
    assert_eq!(field(src(None, None, Some("k"), None)), Err("source.store"));
    assert_eq!(
        field(src(None, Some("a b"), Some("k"), None)),
        Err("source.store")
    );
    assert_eq!(field(src(None, Some("s"), None, None)), Err("source.key"));
    assert_eq!(
        field(src(None, Some("s"), Some("k"), Some("p/"))),
        Err("source.key")
    );
    assert_eq!(
        field(src(None, Some("s"), Some("/k"), None)),
        Err("source.key")
    );
    assert_eq!(
        field(src(None, Some("s"), Some(""), None)),
        Err("source.key")
    );
    assert_eq!(
        field(src(None, Some("s"), None, Some("a//b"))),
        Err("source.key_prefix")
    );
    check(&src(None, Some("offsite"), None, Some("main/")));
}

#[test]
fn keys() {
    assert_eq!(key_refusal("main/shop/2026/12/06/x.sql.zst", false), None);
    assert_eq!(key_refusal("main/shop/", true), None);
    assert!(key_refusal("main/shop/", false).is_some());
    for bad in ["a/../b", "./a", "a\nb", "/a", &"k".repeat(1025)] {
        assert!(key_refusal(bad, false).is_some(), "{bad:?} accepted");
        assert!(
            key_refusal(bad, true).is_some(),
            "{bad:?} accepted as a prefix"
        );
    }
}
