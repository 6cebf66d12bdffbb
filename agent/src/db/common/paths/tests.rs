use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::db::test_files::dump_name as name;
use chrono::TimeZone;

#[test]
fn layout_is_connection_database_stamp_and_job() {
    let n = DumpName {
        started: Utc
            .with_ymd_and_hms(2025, 3, 4, 5, 6, 7)
            .single()
            .expect("time"),
        job_id: 42,
    };
    let l = Layout::new(
        Path::new("/var/lib/baton/dumps"),
        "main",
        "shop",
        n.clone(),
        SQL_ZST,
    )
    .expect("layout");
    assert_eq!(l.dir, Path::new("/var/lib/baton/dumps/main/shop"));
    assert_eq!(
        l.finished(),
        Path::new("/var/lib/baton/dumps/main/shop/20250304T050607Z-job42.sql.zst")
    );
    assert_eq!(
        l.partial(),
        Path::new("/var/lib/baton/dumps/main/shop/20250304T050607Z-job42.sql.zst.partial")
    );
    assert_eq!(
        l.manifest(),
        Path::new("/var/lib/baton/dumps/main/shop/20250304T050607Z-job42.manifest.json")
    );
    assert_eq!(
        l.manifest_tmp(),
        Path::new("/var/lib/baton/dumps/main/shop/20250304T050607Z-job42.manifest.json.tmp")
    );
    assert_eq!(
        DumpName::parse_dump("20250304T050607Z-job42.sql.zst"),
        Some(n)
    );
}

#[test]
fn names_parse_back_and_sort_by_time_then_job() {
    let a = name(1_700_000_000, 9);
    let b = name(1_700_000_001, 1);
    assert_eq!(DumpName::parse_stem(&a.stem()), Some(a.clone()));
    assert!(a < b);
    assert!(name(5, 1) < name(5, 2));
    for bad in [
        "20250304T050607Z-job42.sql.zst.partial",
        "20250304T050607Z-job.sql.zst",
        "20250304T050607Z-jobx.sql.zst",
        "2025-03-04-job1.sql.zst",
        "20251304T050607Z-job1.sql.zst",
        "notes.txt",
    ] {
        assert_eq!(DumpName::parse_dump(bad), None, "{bad}");
    }
}

#[test]
fn paths_cannot_escape_the_dump_directory() {
    for bad in ["..", ".", ".hidden", "-rf", "a/b", "", "a b", "x;y"] {
        assert!(!safe_component(bad), "{bad:?}");
        assert!(
            Layout::new(Path::new("/d"), "main", bad, name(0, 1), SQL_ZST).is_err(),
            "{bad:?}"
        );
        assert!(
            Layout::new(Path::new("/d"), bad, "shop", name(0, 1), SQL_ZST).is_err(),
            "{bad:?}"
        );
    }
    for good in ["shop", "shop_2", "a.b", "x-y"] {
        assert!(safe_component(good), "{good:?}");
    }
}

#[test]
fn directories_are_0750_files_0640_and_writes_atomic() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("main/shop");
    create_dirs(&dir).expect("dirs");
    create_dirs(&dir).expect("again");
    for d in [&dir, &tmp.path().join("main")] {
        let mode = std::fs::metadata(d).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode & !0o750, 0, "{mode:o} (umask may only remove bits)");
    }
    let f = dir.join("x.partial");
    drop(create_new(&f).expect("create"));
    assert!(
        create_new(&f).is_err(),
        "create_new refuses an existing file"
    );
    let mode = std::fs::metadata(&f).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode & !0o640, 0, "{mode:o}");
    let target = dir.join("m.json");
    let tmpf = dir.join("m.json.tmp");
    std::fs::write(&tmpf, "stale").expect("stale tmp");
    write_atomic(&target, &tmpf, b"{}").expect("write");
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "{}");
    assert!(!tmpf.exists());
    write_atomic(&target, &tmpf, b"{\"a\":1}").expect("replace");
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "{\"a\":1}");
    fsync_dir(&dir).expect("fsync dir");
}
