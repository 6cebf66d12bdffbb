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
    std::fs::remove_dir_all(records.dir()).expect("rmdir");
    std::fs::write(records.dir(), b"").expect("file");
    assert!(!records.record(1, 1));
    records.remove(1, 1);
}

fn refs(v: &[(i64, i64)]) -> Vec<LeaseRef> {
    v.iter()
        .map(|&(job_id, token)| LeaseRef { job_id, token })
        .collect()
}

/// One file for every lease: no file per lease is created, a torn last
/// line (a crash mid-write) is skipped, and the log is rewritten at start
/// with only the current leases.
#[test]
fn one_log_holds_every_lease_and_a_torn_line_is_skipped() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let run = LeaseRecords::open(dir.path()).expect("open");
        for job in 1..=50 {
            assert!(run.record(job, 1));
        }
        for job in 2..=50 {
            run.remove(job, 1);
        }
        let names: Vec<_> = std::fs::read_dir(run.dir())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().into_string().expect("utf-8"))
            .collect();
        assert_eq!(names, vec!["log".to_string()], "a file per lease");
    }
    let log = dir.path().join("leases").join("log");
    let mut text = std::fs::read_to_string(&log).expect("log");
    text.push_str("+77 4\n+78");
    std::fs::write(&log, text).expect("tear");
    let next = LeaseRecords::open(dir.path()).expect("open");
    assert_eq!(next.previous().expect("read"), refs(&[(1, 1), (77, 4)]));
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "+1 1\n+77 4\n",
        "rewritten at start"
    );
}

/// Records of the previous layout (a file per lease) are reported and
/// removed with their lease.
#[test]
fn files_of_the_previous_layout_are_read_and_removed() {
    let dir = tempfile::tempdir().expect("tmp");
    let leases = dir.path().join("leases");
    std::fs::create_dir_all(&leases).expect("dir");
    std::fs::write(leases.join("5-2"), b"").expect("old");
    let run = LeaseRecords::open(dir.path()).expect("open");
    assert!(run.record(6, 1));
    assert_eq!(run.previous().expect("read"), refs(&[(5, 2), (6, 1)]));
    run.remove(5, 2);
    assert!(!leases.join("5-2").exists());
    assert_eq!(run.previous().expect("read"), refs(&[(6, 1)]));
}

/// A busy run's log is compacted: it stays short, and the leases still
/// held are in it.
#[test]
fn a_long_log_is_compacted_keeping_the_current_leases() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = LeaseRecords::open(dir.path()).expect("open");
    assert!(run.record(1, 9));
    for job in 2..=3000 {
        assert!(run.record(job, 1));
        run.remove(job, 1);
    }
    let log = std::fs::read_to_string(run.dir().join("log")).expect("log");
    assert!(log.lines().count() < 4096, "{} lines", log.lines().count());
    drop(run);
    let next = LeaseRecords::open(dir.path()).expect("open");
    assert_eq!(next.previous().expect("read"), refs(&[(1, 9)]));
}

/// Starts recorded while a sync runs share the next one: eight starts
/// appended while the group commit is held, one fdatasync for all of them,
/// and each durable (read back after a restart).
#[test]
fn starts_that_arrive_together_share_one_sync() {
    let dir = tempfile::tempdir().expect("tmp");
    let records = LeaseRecords::open(dir.path()).expect("open");
    let held = records.sync.0.lock().expect("sync lock");
    let threads: Vec<_> = (1..=8)
        .map(|job| {
            let r = records.clone();
            std::thread::spawn(move || r.record(job, 1))
        })
        .collect();
    while records.lock().appended < 8 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(held);
    for t in threads {
        assert!(t.join().expect("thread"), "recorded");
    }
    assert_eq!(records.sync.0.lock().expect("sync lock").count, 1);
    // One more on its own: its own sync.
    assert!(records.record(9, 1));
    assert_eq!(records.sync.0.lock().expect("sync lock").count, 2);
    drop(records);
    let next = LeaseRecords::open(dir.path()).expect("reopen");
    assert_eq!(next.previous().expect("read").len(), 9);
}

/// One poll's grants are recorded together: one append and one sync for
/// all of them; each recording can be forgotten on its own.
#[tokio::test]
async fn one_polls_leases_share_one_write_and_one_sync() {
    let dir = tempfile::tempdir().expect("tmp");
    let records = LeaseRecords::open(dir.path()).expect("open");
    let mut recs = records.start_many(&[(4, 1), (5, 1), (6, 2)]);
    assert_eq!(recs.len(), 3);
    let last = recs.pop().expect("three");
    last.keep().await;
    assert_eq!(records.sync.0.lock().expect("sync lock").count, 1);
    for r in recs {
        r.forget().await;
    }
    assert_eq!(records.sync.0.lock().expect("sync lock").count, 1);
    drop(records);
    let next = LeaseRecords::open(dir.path()).expect("reopen");
    assert_eq!(next.previous().expect("read"), refs(&[(6, 2)]));
}

/// `recorded` reads the log as it is, beside a run that keeps it open, and
/// changes nothing: the run's later lines still land in the same log.
#[tokio::test]
async fn the_log_can_be_read_beside_a_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = LeaseRecords::open(dir.path()).expect("open");
    assert!(run.record(1, 1));
    assert_eq!(recorded(dir.path()).expect("read"), refs(&[(1, 1)]));
    assert!(run.record(2, 1));
    run.remove(1, 1);
    assert_eq!(recorded(dir.path()).expect("read"), refs(&[(2, 1)]));
}
