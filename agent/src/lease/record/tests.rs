use super::*;

#[test]
fn records_outlive_the_run_and_removed_ones_do_not() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        // A run records three leases, ends one, and dies.
        let run = LeaseRecords::open(dir.path()).expect("open");
        assert!(run.record(12, 3));
        assert!(run.record(7, 1));
        assert!(run.record(9, 2));
        run.remove(9, 2);
        run.remove(9, 2); // twice is fine
    }
    std::fs::write(dir.path().join("leases").join("junk"), b"").expect("junk");
    std::fs::write(dir.path().join("leases").join("0-1"), b"").expect("zero");
    let next = LeaseRecords::open(dir.path()).expect("open");
    assert_eq!(
        next.previous().expect("read"),
        vec![
            LeaseRef {
                job_id: 7,
                token: 1
            },
            LeaseRef {
                job_id: 12,
                token: 3
            }
        ]
    );
}

#[test]
fn a_refused_record_warns_and_the_job_goes_on() {
    let dir = tempfile::tempdir().expect("tmp");
    let records = LeaseRecords::open(dir.path()).expect("open");
    // The directory is gone and a file took its name: every create fails
    // (as on a full or read-only disk), even for root.
    std::fs::remove_dir(records.dir()).expect("rmdir");
    std::fs::write(records.dir(), b"").expect("file");
    assert!(!records.record(1, 1));
    records.remove(1, 1);
}
