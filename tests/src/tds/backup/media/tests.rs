use super::*;

#[test]
fn content_is_deterministic_sized_and_verifiable() {
    let a = content("jobs", 1, 100_000);
    assert_eq!(a.len(), 100_000);
    assert_eq!(a, content("jobs", 1, 100_000));
    assert_ne!(a, content("jobs", 2, 100_000));
    assert_eq!(
        inspect(&a),
        Verdict::Valid {
            database: "jobs".into()
        }
    );
    let mut damaged = a.clone();
    damaged[5000] ^= 1;
    assert_eq!(inspect(&damaged), Verdict::Damaged);
    assert_eq!(inspect(&a[..50_000]), Verdict::Damaged);
    assert_eq!(inspect(b"hello"), Verdict::NotABackup);
    // Tiny sizes still hold the header and the checksum.
    let tiny = content("jobs", 3, 1);
    assert!(matches!(inspect(&tiny), Verdict::Valid { .. }));
}

#[test]
fn probing_leaves_no_file_and_reports_missing_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.bak.partial");
    probe_writable(&path).expect("writable");
    assert!(!path.exists());
    let missing = dir.path().join("nope").join("x.bak");
    let err = probe_writable(&missing).expect_err("no directory");
    assert_eq!(os_error(&err, false).0, 3);
    assert_eq!(
        os_error(&probe_writable(dir.path()).expect_err("a dir"), false).0,
        5
    );
}
