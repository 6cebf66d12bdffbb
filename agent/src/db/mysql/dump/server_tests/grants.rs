//! Times in the manifest, and what a dump reports when the login lacks a
//! grant: the scratch database of the restore check, `mysql.proc`.

use super::*;
use crate::logging::capture::Captured as Log;

/// The dump grants of a least-privilege login on the test's database.
const DUMP: &str = "SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON `{db}`.*";

/// `2026-12-05T14:50:07.123Z`: RFC 3339 UTC with exactly three digits.
fn assert_ms_format(t: &str) {
    let b = t.as_bytes();
    assert_eq!(b.len(), 24, "{t}");
    assert!(t.ends_with('Z') && b[19] == b'.', "{t}");
    assert!(b[20..23].iter().all(u8::is_ascii_digit), "{t}");
}

#[tokio::test]
async fn manifest_times_have_milliseconds_and_agree_with_the_duration() {
    if !crate::db::test_server::available() {
        return;
    }
    let db = TestDb::new("times").await;
    db.fill().await;
    let out = db.executor(None, |_| {}).execute(db.job(false)).await;
    assert_eq!(out.completion, Completion::Succeeded, "{:?}", out.error);
    let data = out.result.data.expect("data");
    let (started, ended) = (
        data["started_at"].as_str().expect("started_at"),
        data["ended_at"].as_str().expect("ended_at"),
    );
    assert_ms_format(started);
    assert_ms_format(ended);
    let wall = (chrono::DateTime::parse_from_rfc3339(ended).expect("end")
        - chrono::DateTime::parse_from_rfc3339(started).expect("start"))
    .num_milliseconds();
    let duration = data["duration_ms"].as_i64().expect("duration_ms");
    // Wall clock against the monotonic clock: equal but for rounding (and a
    // clock step, which a test host does not make).
    assert!(
        (wall - duration).abs() <= 50,
        "{started} → {ended} vs {duration} ms"
    );
    let reported = format!(" in {:.1} s", duration as f64 / 1000.0);
    assert!(
        out.result.stdout.contains(&reported),
        "{}: {reported}",
        out.result.stdout
    );
}

#[tokio::test]
async fn a_scratch_database_that_cannot_be_created_is_reported_as_such() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut db = TestDb::new("noscratch").await;
    db.fill().await;
    let user = db.user("pw", &[DUMP, "SELECT ON mysql.proc"]).await;
    let log = Log::default();
    let guard = log.capture();
    let out = db
        .executor(Some((&user, "pw")), |_| {})
        .execute(db.job(true))
        .await;
    drop(guard);
    assert_eq!(
        out.completion,
        Completion::Failed { retryable: false },
        "{:?}",
        out.error
    );
    let error = out.error.expect("error");
    assert!(error.contains("the restore check did not run"), "{error}");
    assert!(error.contains("could not be created"), "{error}");
    assert!(error.contains("1044"), "the server's error: {error}");
    assert!(error.contains("ALL ON `baton\\_verify\\_%`.*"), "{error}");
    assert!(!error.contains("dropped"), "{error}");
    let data = out.result.data.expect("data: the dump is kept");
    let warnings = data["warnings"].to_string();
    assert!(
        !warnings.contains("dropped"),
        "nothing was created: {warnings}"
    );
    assert_eq!(data["verify"]["ok"], false);
    let log = log.text();
    assert!(log.contains("Dump failed"), "the log is captured: {log}");
    assert!(!log.contains("drop it by hand"), "{log}");
    assert!(!log.contains("Cannot drop"), "{log}");
}

#[tokio::test]
async fn routines_of_another_definer_need_mysql_proc_and_the_error_names_it() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut db = TestDb::new("proc").await;
    db.fill().await; // p and f are root's
    let with = db
        .user(
            "pw1",
            &[DUMP, "EXECUTE ON `{db}`.*", "SELECT ON mysql.proc"],
        )
        .await;
    let without = db.user("pw2", &[DUMP, "EXECUTE ON `{db}`.*"]).await;
    let blind = db.user("pw3", &[DUMP]).await;

    // Grant present: the dump has both routines, no warning.
    let out = db
        .executor(Some((&with, "pw1")), |_| {})
        .execute(db.job(false))
        .await;
    assert_eq!(out.completion, Completion::Succeeded, "{:?}", out.error);
    let data = out.result.data.expect("data");
    assert_eq!(data["warnings"], serde_json::json!([]));
    let dump = data["path"].as_str().expect("path").to_owned();
    let sql_text = run("zstd", &["-q", "-dc", &dump]);
    assert!(sql_text.contains("PROCEDURE `p`") && sql_text.contains("FUNCTION `f`"));

    // Grant absent, routines visible (EXECUTE): mariadb-dump exits 2; the
    // job fails for good naming the grant for this account.
    let out = db
        .executor(Some((&without, "pw2")), |_| {})
        .execute(db.job(false))
        .await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
    let error = out.error.expect("error");
    assert!(
        error.contains("insufficient privileges to SHOW CREATE"),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "GRANT SELECT ON mysql.proc TO '{without}'@'localhost'"
        )),
        "{error}"
    );

    // Grant absent, routines invisible (no privilege on them): the tool
    // leaves them out and exits 0; the warning says so and names the grant.
    let out = db
        .executor(Some((&blind, "pw3")), |_| {})
        .execute(db.job(false))
        .await;
    assert_eq!(out.completion, Completion::Succeeded, "{:?}", out.error);
    let data = out.result.data.expect("data");
    let dump = data["path"].as_str().expect("path").to_owned();
    assert!(!run("zstd", &["-q", "-dc", &dump]).contains("PROCEDURE `p`"));
    let warnings = data["warnings"].to_string();
    assert!(
        warnings.contains("not in the dump")
            && warnings.contains(&format!(
                "GRANT SELECT ON mysql.proc TO '{blind}'@'localhost'"
            )),
        "{warnings}"
    );
}
