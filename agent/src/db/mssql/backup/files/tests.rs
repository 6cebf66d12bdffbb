use std::time::{Duration, SystemTime};

use chrono::{TimeZone, Utc};

use super::*;
use crate::db::common::paths::{DumpName, MANIFEST_SUFFIX};
use crate::db::common::retention;
use crate::db::test_files::dump_name as name;
use crate::db::test_files::names_in;

#[test]
fn layout_is_connection_database_stamp_and_job() {
    let n = DumpName {
        started: Utc
            .with_ymd_and_hms(2026, 3, 4, 5, 6, 7)
            .single()
            .expect("time"),
        job_id: 42,
    };
    let l = Layout::new(
        Path::new("/var/opt/mssql/backup"),
        "sql",
        "shop",
        n.clone(),
        BAK,
    )
    .expect("layout");
    assert_eq!(l.dir, Path::new("/var/opt/mssql/backup/sql/shop"));
    assert_eq!(
        l.partial(),
        Path::new("/var/opt/mssql/backup/sql/shop/20260304T050607Z-job42.bak.partial")
    );
    assert_eq!(
        l.finished(),
        Path::new("/var/opt/mssql/backup/sql/shop/20260304T050607Z-job42.bak")
    );
    assert_eq!(
        l.manifest(),
        Path::new("/var/opt/mssql/backup/sql/shop/20260304T050607Z-job42.manifest.json")
    );
    assert_eq!(l.file_name(BAK_SUFFIX), "20260304T050607Z-job42.bak");
    assert_eq!(
        DumpName::parse_file("20260304T050607Z-job42.bak", BAK_SUFFIX),
        Some(n)
    );
    assert_eq!(
        DumpName::parse_file("20260304T050607Z-job42.bak.partial", BAK_SUFFIX),
        None
    );
    assert_eq!(DumpName::parse_dump("20260304T050607Z-job42.bak"), None);
}

#[test]
fn names_cannot_leave_the_backup_directory() {
    for bad in ["..", ".", ".hidden", "-x", "a/b", "", "a b", "x;y", "a\\b"] {
        assert!(
            matches!(
                Layout::new(Path::new("/b"), "sql", bad, name(0, 1), BAK).map_err(Error::from),
                Err(Error::InvalidDatabase(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(
                Layout::new(Path::new("/b"), bad, "shop", name(0, 1), BAK).map_err(Error::from),
                Err(Error::Setup(_))
            ),
            "{bad:?}"
        );
    }
    assert!(Layout::new(Path::new("/b"), "sql", "shop_2.x-y", name(0, 1), BAK).is_ok());
}

#[test]
fn sha256_streams_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = tmp.path().join("x.bak.partial");
    std::fs::write(&f, b"abc").expect("write");
    assert_eq!(
        sha256_file(&f).expect("hash"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    // More than one chunk.
    let big: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&f, &big).expect("write");
    assert_eq!(
        sha256_file(&f).expect("hash"),
        hex::encode(Sha256::digest(&big))
    );
    assert!(sha256_file(&tmp.path().join("missing")).is_err());
}

#[tokio::test]
async fn unfinished_files_are_removed_and_a_missing_one_is_fine() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = tmp.path().join("x.bak.partial");
    std::fs::write(&f, b"half").expect("write");
    assert!(remove_unfinished(&f).await);
    assert!(!f.exists());
    assert!(
        remove_unfinished(&f).await,
        "already gone counts as removed"
    );
}

#[test]
fn finish_renames_into_place() {
    let tmp = tempfile::tempdir().expect("tmp");
    let l = Layout::new(tmp.path(), "sql", "shop", name(1_700_000_000, 3), BAK).expect("layout");
    create_dir(&l.dir).expect("dir");
    std::fs::write(l.partial(), b"backup").expect("write");
    finish(&l.partial(), &l.finished(), &l.dir).expect("finish");
    assert!(!l.partial().exists());
    assert_eq!(std::fs::read(l.finished()).expect("read"), b"backup");
    assert!(matches!(
        finish(&l.partial(), &l.finished(), &l.dir),
        Err(Error::Io { .. })
    ));
}

#[test]
fn retention_keeps_the_newest_backups_and_spares_the_new_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let now = Utc.timestamp_opt(1_700_000_000, 0).single().expect("now");
    let day = 86_400;
    let stems: Vec<DumpName> = (1..=4)
        .map(|i| name(1_700_000_000 - (5 - i) * day, i))
        .collect();
    for n in &stems {
        std::fs::write(dir.join(format!("{}{BAK_SUFFIX}", n.stem())), b"b").expect("bak");
        std::fs::write(dir.join(format!("{}{MANIFEST_SUFFIX}", n.stem())), b"{}").expect("m");
    }
    // A MySQL dump in the same directory is not a backup of this kind.
    let other = format!("{}.sql.zst", name(1_600_000_000, 9).stem());
    std::fs::write(dir.join(&other), b"d").expect("other");
    // A running backup's partial stays; a crashed one's (older than a day) goes.
    let running = format!("{}{BAK_PARTIAL_SUFFIX}", name(1_700_000_000, 5).stem());
    std::fs::write(dir.join(&running), b"p").expect("running");
    let crashed = format!("{}{BAK_PARTIAL_SUFFIX}", name(1_600_000_000, 6).stem());
    let f = std::fs::File::create(dir.join(&crashed)).expect("crashed");
    f.set_modified(SystemTime::now() - Duration::from_secs(2 * 86_400))
        .expect("mtime");
    drop(f);

    // keep_last = 2 keeps the two newest; the oldest is the one just
    // written (protected), so only the third newest goes.
    let report = retention::apply_for(BAK, dir, Some(2), None, now, Some(&stems[0]));
    let mut deleted = report.deleted.clone();
    deleted.sort();
    assert_eq!(deleted, vec![format!("{}{BAK_SUFFIX}", stems[1].stem())]);
    assert_eq!(report.leftovers, vec![crashed.clone()]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let left = names_in(dir);
    let mut expected = vec![
        format!("{}{BAK_SUFFIX}", stems[0].stem()),
        format!("{}{MANIFEST_SUFFIX}", stems[0].stem()),
        format!("{}{BAK_SUFFIX}", stems[2].stem()),
        format!("{}{MANIFEST_SUFFIX}", stems[2].stem()),
        format!("{}{BAK_SUFFIX}", stems[3].stem()),
        format!("{}{MANIFEST_SUFFIX}", stems[3].stem()),
        other,
        running,
    ];
    expected.sort();
    assert_eq!(left, expected);

    // max_age alone: what is older than 2 days goes (the 2-day-old one is
    // not older), the protected one never.
    let report = retention::apply_for(
        BAK,
        dir,
        None,
        Some(Duration::from_secs(2 * 86_400)),
        now,
        Some(&stems[3]),
    );
    assert_eq!(
        report.deleted,
        vec![format!("{}{BAK_SUFFIX}", stems[0].stem())]
    );
}
