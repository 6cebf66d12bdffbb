use chrono::TimeZone;

use super::*;

fn l(key: &str) -> Listed {
    Listed {
        key: key.into(),
        size: 1,
        modified: None,
    }
}

fn with_manifest(dir: &str, stem: &str) -> Vec<Listed> {
    vec![
        l(&format!("{dir}/{stem}.sql.zst")),
        l(&format!("{dir}/{stem}.manifest.json")),
    ]
}

#[test]
fn keep_last_deletes_the_oldest_with_their_manifests_only() {
    let mut listed = Vec::new();
    listed.extend(with_manifest("m/db/2026/12/01", "20261201T010000Z-job1"));
    listed.extend(with_manifest("m/db/2026/12/02", "20261202T010000Z-job2"));
    listed.extend(with_manifest("m/db/2026/12/03", "20261203T010000Z-job3"));
    // No manifest: left alone however old.
    listed.push(l("m/db/2026/11/01/20261101T010000Z-job0.sql.zst"));
    // Not a dump name: left alone.
    listed.push(l("m/db/README"));
    let now = chrono::Utc
        .with_ymd_and_hms(2026, 12, 3, 2, 0, 0)
        .single()
        .expect("t");
    let r = UploadRetention {
        keep_last: Some(1),
        max_age: None,
    };
    let written = "m/db/2026/12/03/20261203T010000Z-job3.sql.zst";
    let plan = plan(&listed, &r, written, now).expect("plan");
    let keys: Vec<&str> = plan.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "m/db/2026/12/02/20261202T010000Z-job2.sql.zst",
            "m/db/2026/12/01/20261201T010000Z-job1.sql.zst"
        ]
    );
    assert_eq!(
        plan[0].manifest,
        "m/db/2026/12/02/20261202T010000Z-job2.manifest.json"
    );
}

#[test]
fn the_object_just_written_is_never_deleted() {
    // Written with an older name than the others (a re-run): still kept.
    let mut listed = with_manifest("p", "20261201T010000Z-job1");
    listed.extend(with_manifest("p", "20261202T010000Z-job2"));
    let now = chrono::Utc
        .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
        .single()
        .expect("t");
    let r = UploadRetention {
        keep_last: Some(1),
        max_age: Some("1d".into()),
    };
    let plan = plan(&listed, &r, "p/20261201T010000Z-job1.sql.zst", now).expect("plan");
    let keys: Vec<&str> = plan.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["p/20261202T010000Z-job2.sql.zst"]);
}

#[test]
fn max_age_deletes_by_the_time_in_the_name_without_last_modified() {
    let mut listed = with_manifest("p", "20261201T010000Z-job1");
    listed.extend(with_manifest("p", "20261210T010000Z-job2"));
    listed.extend(with_manifest("p", "20261211T010000Z-job3"));
    let now = chrono::Utc
        .with_ymd_and_hms(2026, 12, 11, 2, 0, 0)
        .single()
        .expect("t");
    let r = UploadRetention {
        keep_last: None,
        max_age: Some("7d".into()),
    };
    let plan = plan(&listed, &r, "p/20261211T010000Z-job3.sql.zst", now).expect("plan");
    let keys: Vec<&str> = plan.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["p/20261201T010000Z-job1.sql.zst"]);
}

fn at(h: u32, m: u32, s: u32) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .with_ymd_and_hms(2026, 12, 6, h, m, s)
        .single()
        .expect("t")
}

/// An object and its manifest, written at `modified` by the store's clock.
fn written_at(stem: &str, modified: chrono::DateTime<chrono::Utc>) -> Vec<Listed> {
    with_manifest("p", stem)
        .into_iter()
        .map(|l| Listed {
            modified: Some(modified),
            ..l
        })
        .collect()
}

#[test]
fn max_age_counts_from_last_modified_by_the_stores_clock() {
    let r = UploadRetention {
        keep_last: None,
        max_age: Some("30m".into()),
    };
    // Named at 10:00:00 by the agent; then its clock stepped +1 h and the
    // next one is named 11:00:01, a second later by the store's clock.
    let mut listed = written_at("20261206T100000Z-job1", at(10, 0, 0));
    listed.extend(written_at("20261206T110001Z-job2", at(10, 0, 1)));
    // The agent's clock (11:00:02) would age job1 by an hour: kept.
    let plan1 = plan(&listed, &r, "p/20261206T110001Z-job2.sql.zst", at(10, 0, 2)).expect("plan");
    assert_eq!(plan1, []);
    // A clock stepped back: a name an hour old, written a second ago: kept.
    let listed = written_at("20261206T090000Z-job3", at(10, 0, 1));
    let plan2 = plan(&listed, &r, "p/other.sql.zst", at(10, 0, 2)).expect("plan");
    assert_eq!(plan2, []);
    // Written 31 min ago by the store's clock, whatever its name: deleted.
    let mut listed = written_at("20261206T103000Z-job4", at(9, 30, 0));
    listed.extend(written_at("20261206T110000Z-job5", at(10, 1, 0)));
    let plan3 = plan(&listed, &r, "p/20261206T110000Z-job5.sql.zst", at(10, 1, 1)).expect("plan");
    let keys: Vec<&str> = plan3.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["p/20261206T103000Z-job4.sql.zst"]);
}
