//! The source checks: only files under the agent's directories, with a
//! manifest that describes them.

use super::*;

fn dump(dir: &Path) -> PathBuf {
    let d = dir.join("dumps/main/sales");
    std::fs::create_dir_all(&d).expect("dir");
    let f = d.join("20261206T010203Z-job7.sql.zst");
    std::fs::write(&f, b"data").expect("file");
    std::fs::write(
        d.join("20261206T010203Z-job7.manifest.json"),
        serde_json::json!({
            "file": "20261206T010203Z-job7.sql.zst", "connection": "main",
            "database": "sales", "sha256": "ab", "started_at": "2026-12-06T01:02:03.000Z"
        })
        .to_string(),
    )
    .expect("manifest");
    f
}

#[test]
fn a_dump_under_a_root_is_read_with_its_manifest() {
    let t = tempfile::tempdir().expect("tmp");
    let f = dump(t.path());
    let s = source(f.to_str().expect("utf8"), &[t.path().join("dumps")]).expect("source");
    assert_eq!(
        (s.connection.as_str(), s.database.as_str()),
        ("main", "sales")
    );
    assert_eq!(s.manifest_name, "20261206T010203Z-job7.manifest.json");
    assert_eq!(s.at.to_rfc3339(), "2026-12-06T01:02:03+00:00");
}

#[test]
fn files_elsewhere_are_refused() {
    let t = tempfile::tempdir().expect("tmp");
    let f = dump(t.path());
    let other = t.path().join("other");
    std::fs::create_dir_all(&other).expect("dir");
    let e = source(f.to_str().expect("utf8"), std::slice::from_ref(&other)).expect_err("outside");
    assert!(matches!(e, Error::Refused(_)), "{e}");
    assert!(e.to_string().contains("not under this agent's dump"), "{e}");
    // A `..` that leaves the root.
    let sneaky = format!("{}/dumps/../secret", t.path().display());
    std::fs::write(t.path().join("secret"), b"x").expect("secret");
    let e = source(&sneaky, &[t.path().join("dumps")]).expect_err("dotdot");
    assert!(e.to_string().contains("not under"), "{e}");
    // A symlink inside the root pointing out of it.
    #[cfg(unix)]
    {
        let link = t.path().join("dumps/main/link");
        std::os::unix::fs::symlink(t.path().join("secret"), &link).expect("symlink");
        let e = source(link.to_str().expect("utf8"), &[t.path().join("dumps")]).expect_err("link");
        assert!(e.to_string().contains("not under"), "{e}");
    }
    let e = source("relative/x.sql.zst", &[t.path().join("dumps")]).expect_err("relative");
    assert!(e.to_string().contains("not an absolute path"), "{e}");
}

#[test]
fn a_file_without_its_manifest_is_not_uploaded() {
    let t = tempfile::tempdir().expect("tmp");
    let f = dump(t.path());
    std::fs::remove_file(f.with_file_name("20261206T010203Z-job7.manifest.json")).expect("rm");
    let e = source(f.to_str().expect("utf8"), &[t.path().join("dumps")]).expect_err("no manifest");
    assert!(e.to_string().contains("manifest"), "{e}");
}

/// Refused keys end the job for good, its error naming the store and the S3
/// error code; a server error is retried, a setup error names the store once.
#[test]
fn refused_keys_fail_for_good_naming_the_store_and_the_code() {
    let status = |status: u16, code: &str| {
        Error::Store(objstore::Error::Status {
            op: "CreateMultipartUpload",
            key: "prod/x.sql.zst".into(),
            status,
            code: code.into(),
            message: "The AWS Access Key Id you provided does not exist in our records.".into(),
        })
    };
    for code in [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
    ] {
        let (retry, msg) = failure("offsite", &status(403, code));
        assert!(!retry, "{code}");
        assert!(msg.starts_with("store offsite: "), "{msg}");
        assert!(msg.contains(&format!("HTTP 403 {code}")), "{msg}");
        assert!(msg.contains("refused the keys"), "{msg}");
    }
    let (retry, msg) = failure("offsite", &status(503, "SlowDown"));
    assert!(retry);
    assert!(
        msg.starts_with("store offsite: ") && msg.contains("SlowDown"),
        "{msg}"
    );
    let setup = Error::Store(objstore::Error::Setup {
        store: "offsite".into(),
        message: "environment variable AWS_ACCESS_KEY_ID is not set".into(),
    });
    let (retry, msg) = failure("offsite", &setup);
    assert!(!retry);
    assert_eq!(msg.matches("offsite").count(), 1, "{msg}");
}
