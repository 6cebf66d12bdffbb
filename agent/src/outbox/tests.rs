use super::*;
use baton_proto::{Completion, JobResult};

fn entry(job_id: JobId, token: FencingToken) -> Entry {
    Entry {
        job_id,
        request: CompleteRequest {
            started_after_ms: None,
            token,
            completion: Completion::Failed { retryable: true },
            result: JobResult {
                exit_code: Some(3),
                stdout: "out é\n".into(),
                stderr: "/w==".into(),
                stderr_encoding: Some(baton_proto::OutputEncoding::Base64),
                truncated: true,
                ..JobResult::default()
            },
            error: Some("exited with status 3".into()),
        },
    }
}

#[test]
fn write_read_remove_round_trip() {
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(state.path()).expect("open");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(outbox.dir())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    let e = entry(12, 3);
    let path = outbox.write(&e).expect("write");
    assert_eq!(path, outbox.dir().join("12-3.json"));
    assert_eq!(outbox.read(&path).expect("read"), vec![e.clone()]);
    // One completion is a plain object, as written by earlier versions.
    let value: serde_json::Value =
        serde_json::from_slice(&fs::read(&path).expect("read")).expect("json");
    assert_eq!(value["job_id"], 12);
    assert_eq!(outbox.pending().expect("list"), vec![path.clone()]);
    assert!(outbox.is_waiting(&path, e.key()));
    outbox.remove(&path, e.key()).expect("remove");
    assert!(!outbox.is_waiting(&path, e.key()));
    assert!(outbox.pending().expect("list").is_empty());
    outbox
        .remove(&path, e.key())
        .expect("removing twice is fine");
}

#[test]
fn files_are_complete_json_and_no_temp_is_left() {
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(state.path()).expect("open");
    for (job, token) in [(2, 1), (10, 4), (2, 2)] {
        outbox.write(&entry(job, token)).expect("write");
    }
    let names: Vec<String> = fs::read_dir(outbox.dir())
        .expect("dir")
        .map(|i| i.expect("item").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().all(|n| !n.ends_with(".tmp")));
    for path in outbox.pending().expect("list") {
        let value: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).expect("read")).expect("complete JSON");
        assert_eq!(value["request"]["completion"]["outcome"], "failed");
    }
    let order: Vec<_> = outbox
        .pending()
        .expect("list")
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(order, ["2-1.json", "2-2.json", "10-4.json"]);
}

#[test]
fn many_are_written_into_one_file_that_goes_with_the_last_answer() {
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(state.path()).expect("open");
    let entries = [entry(7, 1), entry(3, 2), entry(7, 2)];
    let paths: Vec<PathBuf> = outbox
        .write_many(&entries)
        .into_iter()
        .map(|r| r.expect("written"))
        .collect();
    let file = outbox.dir().join("7-1.json");
    assert_eq!(paths, vec![file.clone(); 3]);
    assert_eq!(outbox.read(&file).expect("read"), entries);
    let value: serde_json::Value =
        serde_json::from_slice(&fs::read(&file).expect("read")).expect("json");
    assert_eq!(value[1]["job_id"], 3, "a JSON array of completions");
    let names: Vec<String> = fs::read_dir(outbox.dir())
        .expect("dir")
        .map(|i| i.expect("item").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["7-1.json"]);
    // Two answered: the file stays for the third.
    outbox
        .remove_many(&[(file.clone(), (7, 2)), (file.clone(), (7, 1))])
        .expect("remove");
    assert_eq!(outbox.pending().expect("list"), vec![file.clone()]);
    assert!(!outbox.is_waiting(&file, (7, 1)));
    assert!(outbox.is_waiting(&file, (3, 2)));
    // Read again (a retry): the answered ones stay answered.
    assert_eq!(outbox.read(&file).expect("read").len(), 3);
    assert!(!outbox.is_waiting(&file, (7, 2)));
    // A duplicate answer does not count for the one still waiting.
    outbox.remove(&file, (7, 2)).expect("again");
    assert_eq!(outbox.pending().expect("list"), vec![file.clone()]);
    outbox.remove(&file, (3, 2)).expect("last");
    assert!(outbox.pending().expect("list").is_empty());
    outbox
        .remove_many(&[(file.clone(), (3, 2))])
        .expect("removing again is fine");
    assert!(outbox.write_many(&[]).is_empty());
}

#[test]
fn a_file_left_by_an_earlier_run_waits_for_all_its_entries() {
    let state = tempfile::tempdir().expect("tempdir");
    let file = {
        let outbox = Outbox::open(state.path()).expect("open");
        outbox.write_many(&[entry(1, 1), entry(2, 1)])[0]
            .as_ref()
            .expect("written")
            .clone()
    };
    let outbox = Outbox::open(state.path()).expect("reopen");
    assert!(!outbox.is_waiting(&file, (1, 1)), "not read yet");
    assert_eq!(outbox.read(&file).expect("read").len(), 2);
    outbox.remove(&file, (1, 1)).expect("first");
    assert!(file.exists());
    outbox.remove(&file, (2, 1)).expect("second");
    assert!(!file.exists());
}

#[cfg(unix)]
#[test]
fn removed_files_are_recycled_never_listed_and_adopted_at_open() {
    use std::os::unix::fs::MetadataExt;
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(state.path()).expect("open");
    let first = outbox.write(&entry(1, 1)).expect("write");
    let ino = fs::metadata(&first).expect("meta").ino();
    outbox.remove(&first, (1, 1)).expect("remove");
    assert!(!first.exists());
    let spare = outbox.dir().join(".spare-1-1");
    assert!(spare.exists());
    assert!(outbox.pending().expect("list").is_empty());
    // A longer entry is written over the spare's old bytes: complete JSON.
    let mut long = entry(2, 5);
    long.request.result.stdout = "y".repeat(5000);
    let second = outbox.write(&long).expect("write");
    assert_eq!(fs::metadata(&second).expect("meta").ino(), ino);
    assert!(!spare.exists());
    assert_eq!(outbox.read(&second).expect("read"), vec![long]);
    // A shorter one too (the old tail is truncated).
    outbox.remove(&second, (2, 5)).expect("remove");
    let third = outbox.write(&entry(3, 1)).expect("write");
    assert_eq!(outbox.read(&third).expect("read"), vec![entry(3, 1)]);
    // Spares left by an earlier run are adopted.
    outbox.remove(&third, (3, 1)).expect("remove");
    let reopened = Outbox::open(state.path()).expect("reopen");
    let fourth = reopened.write(&entry(4, 1)).expect("write");
    assert_eq!(fs::metadata(&fourth).expect("meta").ino(), ino);
    assert_eq!(reopened.pending().expect("list"), vec![fourth]);
}

#[test]
fn stale_temp_files_are_cleaned_and_bad_files_quarantined() {
    let state = tempfile::tempdir().expect("tempdir");
    let dir = Outbox::open(state.path())
        .expect("open")
        .dir()
        .to_path_buf();
    let tmp = dir.join(".5-1.json.tmp");
    fs::write(&tmp, b"{\"job_id\": 5, \"req").expect("write");
    let bad = dir.join("6-1.json");
    fs::write(&bad, b"not json").expect("write");
    let outbox = Outbox::open(state.path()).expect("reopen");
    assert!(!tmp.exists(), "removed at open");
    assert_eq!(outbox.pending().expect("list"), vec![bad.clone()]);
    assert!(matches!(outbox.read(&bad), Err(Error::Corrupt { .. })));
    let moved = outbox.quarantine(&bad).expect("quarantine");
    assert!(moved.exists());
    assert!(outbox.pending().expect("list").is_empty());
}
