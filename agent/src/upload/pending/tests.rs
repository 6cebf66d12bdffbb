//! The records of uploads in progress: written and removed, read back as a
//! dead run's at open, garbage removed. Aborting against a real server is
//! `tests/tests/upload.rs` (kill -9 mid-upload, restart).

use super::*;

fn record(job_id: i64, store: &str) -> Record {
    Record {
        store: store.into(),
        bucket: "b".into(),
        key: format!("prod/main/x/{job_id}.bak"),
        upload_id: format!("id-{job_id}"),
        job_id,
        attempt: 2,
    }
}

#[tokio::test]
async fn a_record_is_written_then_removed_and_a_new_open_sees_what_is_left() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = t.path().join("uploads");
    let p = Pending::open(dir.clone()).expect("open");
    let a = p.add(&record(7, "s")).await.expect("recorded");
    let b = p.add(&record(8, "s")).await.expect("recorded");
    assert_eq!(a, dir.join("7-2.json"));
    assert_eq!(a, p.path_of(7, 2));
    p.remove(&a).await;
    assert!(!a.exists());
    // Removing twice is harmless.
    p.remove(&a).await;
    // A torn temp file and an unreadable record are removed at open.
    std::fs::write(dir.join("9-1.json.tmp"), b"{").expect("tmp");
    std::fs::write(dir.join("10-1.json"), b"not json").expect("bad");
    let again = Pending::open(dir.clone()).expect("reopen");
    let left = again.leftovers.lock().await.clone();
    assert_eq!(left, vec![(b, record(8, "s"))]);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["8-2.json"]);
}

#[tokio::test]
async fn a_leftover_whose_store_is_gone_is_dropped_with_its_record() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = t.path().join("uploads");
    let p = Pending::open(dir.clone()).expect("open");
    let f = p.add(&record(3, "gone")).await.expect("recorded");
    let p = Pending::open(dir).expect("reopen");
    assert_eq!(p.abort_leftovers(&BTreeMap::new()).await, 0);
    assert!(!f.exists(), "the record is gone");
    assert!(p.leftovers.lock().await.is_empty());
    // Nothing left: a second sweep does nothing.
    assert_eq!(p.abort_leftovers(&BTreeMap::new()).await, 0);
}

#[tokio::test]
async fn a_recorded_upload_of_a_job_out_of_time_is_dropped_when_its_store_is_gone() {
    let t = tempfile::tempdir().expect("tmp");
    let p = Pending::open(t.path().join("uploads")).expect("open");
    let f = p.add(&record(4, "gone")).await.expect("recorded");
    p.abort_recorded(&f, &BTreeMap::new()).await;
    assert!(!f.exists());
    // No record: nothing to do.
    p.abort_recorded(&p.path_of(5, 1), &BTreeMap::new()).await;
}
