//! Locating a restore's source and reading its manifest.
use super::*;

fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("dumps");
    let dir = root.join("main").join("shop");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("20270101T000000Z-job7.sql.zst");
    std::fs::write(&file, b"dump bytes").expect("write");
    (tmp, root, file)
}

const SHA: &str = "0d6d7d6f0d4ef1cbd8bd1e64b6f7bd8a6bd9c3d0e9e2a6b3a8c5f4f9a1b2c3d4";

#[test]
fn a_file_under_a_root_is_found_with_its_manifest_path() {
    let (tmp, root, file) = tree();
    let got = locate(
        file.to_str().expect("utf8"),
        &[tmp.path().join("x"), root],
        ".sql.zst",
    )
    .expect("located");
    assert_eq!(got.file, std::fs::canonicalize(&file).expect("canon"));
    assert_eq!(
        got.manifest.file_name().and_then(|n| n.to_str()),
        Some("20270101T000000Z-job7.manifest.json")
    );
}

#[test]
fn paths_outside_the_roots_relative_or_of_another_kind_are_refused() {
    let (tmp, root, file) = tree();
    let roots = [root.clone()];
    let outside = tmp.path().join("elsewhere.sql.zst");
    std::fs::write(&outside, b"x").expect("write");
    let err = |p: &Path, suffix| {
        locate(p.to_str().expect("utf8"), &roots, suffix)
            .expect_err("refused")
            .to_string()
    };
    assert!(err(&outside, ".sql.zst").contains("not under a dump directory"));
    // A symlink inside a root pointing outside is resolved first.
    let link = root.join("main").join("link.sql.zst");
    std::os::unix::fs::symlink(&outside, &link).expect("symlink");
    assert!(err(&link, ".sql.zst").contains("not under a dump directory"));
    // `..` that climbs out is resolved too.
    let climbing = root
        .join("main")
        .join("..")
        .join("..")
        .join("elsewhere.sql.zst");
    assert!(err(&climbing, ".sql.zst").contains("not under a dump directory"));
    assert!(err(&file, ".bak").contains("is not a .bak file"));
    assert!(err(&root.join("main"), ".sql.zst").contains("not a .sql.zst file"));
    assert!(err(&root.join("nope.sql.zst"), ".sql.zst").contains("cannot be read"));
    let relative = locate("dumps/x.sql.zst", &roots, ".sql.zst").expect_err("relative");
    assert!(relative.to_string().contains("not an absolute path"));
}

#[derive(Debug, serde::Deserialize)]
struct Min {
    database: String,
}

#[tokio::test]
async fn manifests_are_read_and_checked() {
    let (_tmp, root, file) = tree();
    let located = locate(file.to_str().expect("utf8"), &[root], ".sql.zst").expect("located");
    let missing = read_manifest::<Min>(&located).await.expect_err("missing");
    assert!(
        missing.to_string().contains("no readable manifest"),
        "{missing}"
    );
    for (text, why) in [
        ("not json", "not JSON"),
        (r#"{"database": "shop"}"#, "no sha256"),
        (
            r#"{"database": "shop", "sha256": null}"#,
            "cannot be verified",
        ),
        (r#"{"sha256": "ab"}"#, "no sha256"),
        (
            &format!(r#"{{"sha256": "{SHA}"}}"#),
            "missing field `database`",
        ),
    ] {
        std::fs::write(&located.manifest, text).expect("write");
        let e = read_manifest::<Min>(&located).await.expect_err(text);
        assert!(e.to_string().contains(why), "{text}: {e}");
    }
    std::fs::write(
        &located.manifest,
        format!(
            r#"{{"database": "shop", "sha256": "{}", "more": 1}}"#,
            SHA.to_uppercase()
        ),
    )
    .expect("write");
    let (m, sha) = read_manifest::<Min>(&located).await.expect("read");
    assert_eq!((m.database.as_str(), sha.as_str()), ("shop", SHA));
}

#[tokio::test]
async fn the_hash_is_the_files_and_a_mismatch_names_both() {
    let (_tmp, _root, file) = tree();
    let mut seen = 0;
    let sum = sha256_file(&file, |n| seen = n).await.expect("hash");
    assert_eq!(seen, 10);
    assert_eq!(sum, hex::encode(Sha256::digest(b"dump bytes")));
    assert!(matches(&file, &sum.to_uppercase(), &sum).is_ok());
    let e = matches(&file, SHA, &sum).expect_err("mismatch").to_string();
    assert!(
        e.contains(SHA) && e.contains(&sum) && e.contains("nothing was done"),
        "{e}"
    );
}
