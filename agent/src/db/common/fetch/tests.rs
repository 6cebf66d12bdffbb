use super::*;

fn listed(keys: &[&str]) -> Vec<objstore::Listed> {
    keys.iter()
        .map(|k| objstore::Listed {
            key: (*k).to_owned(),
            size: 1,
            modified: None,
        })
        .collect()
}

#[test]
fn the_newest_object_with_its_manifest_is_picked() {
    let l = listed(&[
        "prod/main/shop/2026/12/04/20261204T020000Z-job7.sql.zst",
        "prod/main/shop/2026/12/04/20261204T020000Z-job7.manifest.json",
        "prod/main/shop/2026/12/05/20261205T020000Z-job9.sql.zst",
        "prod/main/shop/2026/12/05/20261205T020000Z-job9.manifest.json",
        // Newest, but its manifest is missing (an upload in progress).
        "prod/main/shop/2026/12/06/20261206T020000Z-job11.sql.zst",
        // Newest with a manifest, but another engine's file.
        "prod/main/shop/2026/12/06/20261206T030000Z-job12.bak",
        "prod/main/shop/2026/12/06/20261206T030000Z-job12.manifest.json",
        "prod/main/shop/notes.txt",
    ]);
    assert_eq!(
        newest(&l, ".sql.zst").as_deref(),
        Some("prod/main/shop/2026/12/05/20261205T020000Z-job9.sql.zst")
    );
    assert_eq!(
        newest(&l, ".bak").as_deref(),
        Some("prod/main/shop/2026/12/06/20261206T030000Z-job12.bak")
    );
    assert_eq!(newest(&listed(&["a/b.sql.zst"]), ".sql.zst"), None);
    assert_eq!(newest(&[], ".sql.zst"), None);
}

#[test]
fn names_and_manifest_keys() {
    assert_eq!(
        names("p/main/20261205T020000Z-job9.sql.zst", ".sql.zst"),
        Ok((
            "20261205T020000Z-job9.sql.zst".to_owned(),
            "p/main/20261205T020000Z-job9.manifest.json".to_owned()
        ))
    );
    assert_eq!(
        names("x.bak", ".bak"),
        Ok(("x.bak".to_owned(), "x.manifest.json".to_owned()))
    );
    for bad in [
        "p/main/x.bak",
        "p/main/.sql.zst",
        "p/main/-x.sql.zst",
        "p/main/a.b.sql.zst",
        "p/main/a b.sql.zst",
        "p/main/",
    ] {
        assert!(names(bad, ".sql.zst").is_err(), "{bad:?} accepted");
    }
}

#[test]
fn the_manifest_must_carry_a_sha256() {
    let sha = "AB".repeat(32);
    let m = serde_json::json!({"sha256": sha}).to_string();
    assert_eq!(
        manifest_sha256(m.as_bytes(), "k").expect("sha"),
        "ab".repeat(32)
    );
    for bad in [
        "not json",
        "{}",
        r#"{"sha256": null}"#,
        r#"{"sha256": "abc"}"#,
    ] {
        let e = manifest_sha256(bad.as_bytes(), "k").expect_err(bad);
        assert!(!e.retryable(), "{e}");
    }
}

#[test]
fn only_store_and_disk_failures_are_retried() {
    let mismatch = Error::Mismatch {
        key: "k".into(),
        what: "the download's sha256",
        expected: "a".into(),
        actual: "b".into(),
    };
    assert!(!mismatch.retryable());
    assert!(
        mismatch.to_string().contains("nothing was restored"),
        "{mismatch}"
    );
    assert!(!Error::NoStore("s".into()).retryable());
    let lost = Error::Store {
        store: "s".into(),
        source: objstore::Error::Transport {
            op: "GetObject",
            key: "k".into(),
            message: "reset".into(),
        },
    };
    assert!(lost.retryable());
}

#[test]
fn downloads_of_a_previous_run_are_removed_at_start_and_nothing_else() {
    let root = tempfile::tempdir().expect("tmp");
    let left = root.path().join(".restore-job41-0000abcd");
    std::fs::create_dir_all(&left).expect("dir");
    std::fs::write(left.join("x.sql.zst.partial"), b"half").expect("file");
    let dumps = root.path().join("main/shop");
    std::fs::create_dir_all(&dumps).expect("dir");
    std::fs::write(dumps.join("20261206T010203Z-job9.sql.zst"), b"dump").expect("file");
    std::fs::write(root.path().join(".restore-job-not-a-dir"), b"x").expect("file");
    remove_leftovers(&[root.path().to_owned(), root.path().join("missing")]);
    assert!(!left.exists());
    assert!(dumps.join("20261206T010203Z-job9.sql.zst").exists());
    assert!(root.path().join(".restore-job-not-a-dir").exists());
}
