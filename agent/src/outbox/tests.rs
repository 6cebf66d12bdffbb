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
                stdout: "out é\nsecond line\n".into(),
                stderr: "/w==".into(),
                stderr_encoding: Some(baton_proto::OutputEncoding::Base64),
                truncated: true,
                ..JobResult::default()
            },
            error: Some("exited with status 3".into()),
        },
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("dir")
        .map(|i| i.expect("item").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn log_bytes(outbox: &Outbox) -> Vec<u8> {
    fs::read(outbox.dir().join(LOG)).expect("log")
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
    outbox.write(&e).expect("write");
    assert_eq!(outbox.pending().expect("read"), vec![e.clone()]);
    assert_eq!(waiting(state.path()).expect("waiting"), vec![e.clone()]);
    assert!(outbox.is_waiting(e.key()));
    outbox.remove(e.key()).expect("remove");
    assert!(!outbox.is_waiting(e.key()));
    assert!(outbox.pending().expect("read").is_empty());
    assert!(waiting(state.path()).expect("waiting").is_empty());
    outbox.remove(e.key()).expect("removing twice is fine");
    assert!(
        Outbox::open(state.path())
            .expect("reopen")
            .pending()
            .expect("read")
            .is_empty()
    );
}

#[test]
fn completions_written_together_are_one_append_in_one_file_and_survive_a_restart() {
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(state.path()).expect("open");
    outbox
        .write_many(&[entry(7, 1), entry(3, 2), entry(7, 2)])
        .expect("write");
    outbox.write(&entry(1, 9)).expect("write");
    assert_eq!(
        names(outbox.dir()),
        ["log"],
        "no file per completion or batch"
    );
    let text = String::from_utf8(log_bytes(&outbox)).expect("utf-8");
    assert_eq!(text.lines().count(), 4, "one line per record: {text}");
    outbox.remove_many(&[(7, 2), (1, 9)]).expect("remove");
    let want = vec![entry(3, 2), entry(7, 1)];
    assert_eq!(outbox.pending().expect("read"), want, "by job, then token");
    drop(outbox);
    let reopened = Outbox::open(state.path()).expect("reopen");
    assert_eq!(reopened.pending().expect("read"), want);
    assert!(reopened.is_waiting((3, 2)) && !reopened.is_waiting((7, 2)));
    // Reopening rewrote the log with the waiting ones only.
    let text = String::from_utf8(log_bytes(&reopened)).expect("utf-8");
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(reopened.write_many(&[]).is_ok());
}

/// A crash in the middle of the last write, cut all along the last record: the earlier completions are all there, the torn one is not, and
/// the log takes new records after it.
#[test]
fn a_torn_last_record_is_ignored_at_every_cut() {
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(state.path()).expect("open");
    outbox
        .write_many(&[entry(1, 1), entry(2, 1)])
        .expect("write");
    let before = log_bytes(&outbox).len();
    outbox.write(&entry(3, 1)).expect("write");
    let full = log_bytes(&outbox);
    drop(outbox);
    let log = state.path().join("outbox").join(LOG);
    // Every byte of the header and the end, every 7th byte between.
    let cuts = (before..full.len()).filter(|c| {
        c - before <= HEADER + 1 || full.len() - c <= 3 || (c - before).is_multiple_of(7)
    });
    for cut in cuts {
        fs::write(&log, &full[..cut]).expect("tear");
        assert_eq!(
            waiting(state.path()).expect("waiting"),
            vec![entry(1, 1), entry(2, 1)],
            "cut at {cut}"
        );
        let outbox = Outbox::open(state.path()).expect("reopen");
        assert_eq!(outbox.pending().expect("read").len(), 2, "cut at {cut}");
        outbox.write(&entry(4, 1)).expect("write after the tear");
        drop(outbox);
        let again = Outbox::open(state.path()).expect("reopen");
        let keys: Vec<Key> = again
            .pending()
            .expect("read")
            .iter()
            .map(Entry::key)
            .collect();
        assert_eq!(keys, [(1, 1), (2, 1), (4, 1)], "cut at {cut}");
        assert!(!state.path().join("outbox/log.damaged").exists());
    }
}

#[test]
fn a_damaged_record_before_the_end_is_skipped_and_the_log_kept_aside() {
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(state.path()).expect("open");
    for job in 1..=3 {
        outbox.write(&entry(job, 1)).expect("write");
    }
    let mut bytes = log_bytes(&outbox);
    drop(outbox);
    // One byte of the second record's payload flipped: its checksum fails.
    let second = bytes.iter().position(|b| *b == b'\n').expect("newline") + 1;
    bytes[second + HEADER + 5] ^= 0x20;
    let log = state.path().join("outbox").join(LOG);
    fs::write(&log, &bytes).expect("damage");
    let keys = |entries: Vec<Entry>| entries.iter().map(Entry::key).collect::<Vec<_>>();
    assert_eq!(
        keys(waiting(state.path()).expect("waiting")),
        [(1, 1), (3, 1)]
    );
    let outbox = Outbox::open(state.path()).expect("reopen");
    assert_eq!(keys(outbox.pending().expect("read")), [(1, 1), (3, 1)]);
    let aside = state.path().join("outbox/log.damaged");
    assert_eq!(fs::read(aside).expect("kept aside"), bytes);
}

#[test]
fn a_lost_tombstone_only_brings_an_answered_completion_back() {
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(state.path()).expect("open");
    outbox
        .write_many(&[entry(1, 1), entry(2, 1)])
        .expect("write");
    let before = log_bytes(&outbox).len();
    outbox.remove((1, 1)).expect("remove");
    let full = log_bytes(&outbox);
    assert!(full.len() > before, "a tombstone was appended");
    drop(outbox);
    let log = state.path().join("outbox").join(LOG);
    fs::write(&log, &full[..full.len() - 1]).expect("tear the tombstone");
    let keys: Vec<Key> = Outbox::open(state.path())
        .expect("reopen")
        .pending()
        .expect("read")
        .iter()
        .map(Entry::key)
        .collect();
    assert_eq!(keys, [(1, 1), (2, 1)]);
}

#[test]
fn a_mostly_answered_log_is_compacted_and_keeps_the_waiting_ones() {
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(state.path()).expect("open");
    let mut big = entry(1, 1);
    big.request.result.stdout = "x".repeat(64 * 1024);
    outbox
        .write(&entry(999, 2))
        .expect("write the one that waits");
    let mut peak = 0;
    for job in 1..=64 {
        big.job_id = job;
        outbox.write(&big).expect("write");
        peak = peak.max(log_bytes(&outbox).len());
        outbox.remove((job, 1)).expect("remove");
    }
    assert!(peak as u64 > COMPACT_AFTER_BYTES, "the log grew: {peak}");
    let now = log_bytes(&outbox).len();
    assert!(now < peak / 4, "compacted: {now} of {peak}");
    assert_eq!(outbox.pending().expect("read"), vec![entry(999, 2)]);
    assert_eq!(names(outbox.dir()), ["log"], "no temp file left");
    // Appends after a compaction go to the new log.
    outbox.write(&entry(1000, 1)).expect("write");
    drop(outbox);
    let keys: Vec<Key> = Outbox::open(state.path())
        .expect("reopen")
        .pending()
        .expect("read")
        .iter()
        .map(Entry::key)
        .collect();
    assert_eq!(keys, [(999, 2), (1000, 1)]);
}

/// Files of the previous layout: a file per completion (an object) or per
/// batch (an array), spares and temp files. They are read once into the
/// log and removed; one that does not parse is moved aside.
#[test]
fn files_of_the_previous_layout_are_moved_into_the_log_once() {
    let state = tempfile::tempdir().expect("tempdir");
    let dir = state.path().join("outbox");
    fs::create_dir_all(&dir).expect("dir");
    let write_json = |name: &str, v: &dyn erased::Json| fs::write(dir.join(name), v.bytes());
    write_json("5-1.json", &entry(5, 1)).expect("single");
    write_json("7-1.json", &vec![entry(7, 1), entry(6, 2)]).expect("batch");
    fs::write(dir.join(".spare-4-1"), b"{\"old\": true}").expect("spare");
    fs::write(dir.join(".8-1.json.tmp"), b"{\"job_id\": 8, \"req").expect("tmp");
    fs::write(dir.join("9-1.json"), b"not json").expect("bad");
    let want = vec![entry(5, 1), entry(6, 2), entry(7, 1)];
    assert_eq!(waiting(state.path()).expect("waiting"), want);
    assert_eq!(names(&dir).len(), 5, "reading changes nothing");

    let outbox = Outbox::open(state.path()).expect("open");
    assert_eq!(outbox.pending().expect("read"), want);
    assert_eq!(names(&dir), ["9-1.json.bad", "log"]);
    outbox.remove((6, 2)).expect("remove");
    drop(outbox);
    // Crash before the old files went: read again, the log's tombstones
    // answer them too, nothing is doubled.
    write_json("7-1.json", &vec![entry(7, 1), entry(6, 2)]).expect("batch again");
    let outbox = Outbox::open(state.path()).expect("reopen");
    assert_eq!(
        outbox.pending().expect("read"),
        vec![entry(5, 1), entry(7, 1)]
    );
    assert_eq!(names(&dir), ["9-1.json.bad", "log"]);
}

/// JSON of an entry or a list of them, for the old-layout files.
mod erased {
    pub trait Json {
        fn bytes(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn bytes(&self) -> Vec<u8> {
            serde_json::to_vec_pretty(self).expect("json")
        }
    }
}

#[test]
fn a_record_is_length_checksum_and_one_json_line() {
    let mut buf = Vec::new();
    encode(&Record::Completion(entry(2, 3)), &mut buf).expect("encode");
    let text = String::from_utf8(buf.clone()).expect("utf-8");
    assert!(
        text.ends_with("}\n") && text.matches('\n').count() == 1,
        "{text}"
    );
    let payload = &buf[HEADER..buf.len() - 1];
    assert_eq!(&text[..8], format!("{:08x}", payload.len()));
    assert_eq!(&text[9..17], format!("{:08x}", crc32fast::hash(payload)));
    let (record, n) = decode(&buf).expect("decode");
    assert_eq!(n, buf.len());
    assert!(matches!(record, Record::Completion(e) if e == entry(2, 3)));
    let mut done = Vec::new();
    encode(
        &Record::Done {
            job_id: 2,
            token: 3,
        },
        &mut done,
    )
    .expect("encode");
    let done = String::from_utf8(done).expect("utf-8");
    assert!(
        done.ends_with(" {\"done\":{\"job_id\":2,\"token\":3}}\n"),
        "{done}"
    );
    // Header, payload or newline changed: not a record.
    for at in [0, 9, HEADER + 1, buf.len() - 1] {
        let mut bad = buf.clone();
        bad[at] ^= 0x01;
        assert!(decode(&bad).is_none(), "byte {at} changed");
    }
}
