use std::fs::File;
use std::time::SystemTime;

use chrono::TimeZone;

use super::*;
use crate::db::test_files::names_in;

const DAY: i64 = 86_400;

fn at(days: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + days * DAY, 0)
        .single()
        .expect("time")
}

fn name(days: i64, job: i64) -> DumpName {
    DumpName {
        started: at(days),
        job_id: job,
    }
}

fn jobs(v: &[DumpName]) -> Vec<i64> {
    let mut j: Vec<i64> = v.iter().map(|n| n.job_id).collect();
    j.sort_unstable();
    j
}

#[test]
fn keep_last_keeps_the_newest() {
    let dumps = vec![name(3, 3), name(1, 1), name(5, 5), name(2, 2), name(4, 4)];
    assert_eq!(
        jobs(&select(&dumps, Some(2), None, at(6), None)),
        vec![1, 2, 3]
    );
    assert_eq!(
        jobs(&select(&dumps, Some(5), None, at(6), None)),
        Vec::<i64>::new()
    );
    assert_eq!(
        jobs(&select(&dumps, None, None, at(6), None)),
        Vec::<i64>::new(),
        "no rule, no deletion"
    );
}

#[test]
fn max_age_deletes_the_old_ones() {
    let dumps = vec![name(0, 1), name(5, 2), name(9, 3), name(10, 4)];
    let week = Duration::from_secs(7 * DAY as u64);
    assert_eq!(
        jobs(&select(&dumps, None, Some(week), at(10), None)),
        vec![1]
    );
    // Either rule deletes.
    assert_eq!(
        jobs(&select(&dumps, Some(3), Some(week), at(10), None)),
        vec![1]
    );
    assert_eq!(
        jobs(&select(&dumps, Some(2), Some(week), at(10), None)),
        vec![1, 2]
    );
    assert_eq!(
        jobs(&select(
            &dumps,
            Some(1),
            Some(Duration::from_secs(1)),
            at(30),
            None
        )),
        vec![1, 2, 3, 4]
    );
}

#[test]
fn the_dump_just_written_is_never_deleted() {
    // Its clock went backwards: it looks older than the others.
    let dumps = vec![name(5, 1), name(6, 2), name(1, 3)];
    let protect = name(1, 3);
    assert_eq!(
        jobs(&select(&dumps, Some(1), None, at(6), Some(&protect))),
        vec![1]
    );
    assert_eq!(
        jobs(&select(
            &dumps,
            None,
            Some(Duration::from_secs(1)),
            at(60),
            Some(&protect)
        )),
        vec![1, 2]
    );
    // Same second: the job id breaks the tie.
    let same = vec![name(1, 7), name(1, 8)];
    assert_eq!(jobs(&select(&same, Some(1), None, at(2), None)), vec![7]);
}

fn touch(dir: &Path, name: &str, age: Duration) {
    let f = File::create(dir.join(name)).expect("create");
    f.set_modified(SystemTime::now() - age).expect("mtime");
}

#[test]
fn apply_deletes_dumps_with_manifests_and_only_old_leftovers() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    for n in [name(1, 1), name(2, 2), name(3, 3)] {
        touch(
            dir,
            &format!("{}{SQL_ZST_SUFFIX}", n.stem()),
            Duration::ZERO,
        );
        touch(
            dir,
            &format!("{}{MANIFEST_SUFFIX}", n.stem()),
            Duration::ZERO,
        );
    }
    let running = format!("{}{PARTIAL_SUFFIX}", name(3, 9).stem());
    touch(dir, &running, Duration::from_secs(3600));
    let crashed = format!("{}{PARTIAL_SUFFIX}", name(0, 8).stem());
    touch(dir, &crashed, LEFTOVER_AGE + Duration::from_secs(60));
    let tmp_manifest = format!("{}{MANIFEST_TMP_SUFFIX}", name(0, 8).stem());
    touch(dir, &tmp_manifest, LEFTOVER_AGE * 2);
    touch(dir, "README.txt", LEFTOVER_AGE * 30);

    let report = apply(dir, Some(1), None, at(4), Some(&name(3, 3)));
    let mut deleted = report.deleted.clone();
    deleted.sort();
    assert_eq!(
        deleted,
        vec![
            format!("{}{SQL_ZST_SUFFIX}", name(1, 1).stem()),
            format!("{}{SQL_ZST_SUFFIX}", name(2, 2).stem())
        ]
    );
    let mut leftovers = report.leftovers.clone();
    leftovers.sort();
    assert_eq!(leftovers, vec![tmp_manifest.clone(), crashed.clone()]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let left = names_in(dir);
    let mut want = vec![
        "README.txt".to_owned(),
        format!("{}{MANIFEST_SUFFIX}", name(3, 3).stem()),
        format!("{}{SQL_ZST_SUFFIX}", name(3, 3).stem()),
        running,
    ];
    want.sort();
    assert_eq!(left, want);
    let missing = apply(&dir.join("nope"), Some(1), None, at(4), None);
    assert_eq!(missing.errors.len(), 1);
}

#[test]
fn an_earlier_attempts_partial_of_the_finished_job_goes_at_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    // Job 5's first holder was SIGKILLed at day 2; the takeover finished at day 3.
    let done = name(3, 5);
    touch(
        dir,
        &format!("{}{SQL_ZST_SUFFIX}", done.stem()),
        Duration::ZERO,
    );
    let dead = format!("{}{PARTIAL_SUFFIX}", name(2, 5).stem());
    touch(dir, &dead, Duration::from_secs(60));
    // Another job's dump is still being written.
    let running = format!("{}{PARTIAL_SUFFIX}", name(3, 6).stem());
    touch(dir, &running, Duration::from_secs(60));
    let report = apply(dir, None, None, at(3), Some(&done));
    assert_eq!(report.leftovers, vec![dead.clone()]);
    assert!(!dir.join(&dead).exists());
    assert!(dir.join(&running).exists());
    // Without a finished job to compare with, a recent partial stays.
    let report = apply(dir, None, None, at(3), None);
    assert!(report.leftovers.is_empty());
    assert!(dir.join(&running).exists());
}
