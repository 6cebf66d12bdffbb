use sqlx::Executor;

use super::*;

/// An occurrence row: `(nominal, last_nominal, count, state, job_id)`.
type Occ<'a> = (i64, Option<i64>, i64, &'a str, Option<i64>);

/// A database with the columns the checks read, filled by `rows`:
/// occurrences `(nominal, last_nominal, count, state, job_id)` of schedule
/// 1 and jobs `(id, nominal_at)` of it.
async fn store(occ: &[Occ<'_>], jobs: &[(i64, i64)]) -> (tempfile::TempDir, SqlitePool) {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("baton.db");
    let rw = SqlitePoolOptions::new()
        .connect_with(
            SqliteConnectOptions::from_str("sqlite:")
                .expect("opts")
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .expect("create");
    rw.execute(
        "CREATE TABLE schedules (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO schedules VALUES (1, 's');
         CREATE TABLE occurrences (schedule_id INTEGER, nominal INTEGER, last_nominal INTEGER,
           count INTEGER, trigger TEXT, state TEXT, reason TEXT, job_id INTEGER);
         CREATE TABLE jobs (id INTEGER PRIMARY KEY, schedule_id INTEGER, nominal_at INTEGER,
           run_id INTEGER, created_at INTEGER);",
    )
    .await
    .expect("schema");
    for &(n, last, count, state, job) in occ {
        sqlx::query("INSERT INTO occurrences VALUES (1, ?, ?, ?, 'schedule', ?, NULL, ?)")
            .bind(n)
            .bind(last)
            .bind(count)
            .bind(state)
            .bind(job)
            .execute(&rw)
            .await
            .expect("occurrence");
    }
    for &(id, n) in jobs {
        sqlx::query("INSERT INTO jobs VALUES (?, 1, ?, NULL, ?)")
            .bind(id)
            .bind(n)
            .bind(n + 3)
            .execute(&rw)
            .await
            .expect("job");
    }
    rw.close().await;
    let db = open(&path).await.expect("open read-only");
    (dir, db)
}

#[tokio::test]
async fn a_clean_history_passes() {
    let (_d, db) = store(
        &[
            (1000, None, 1, "fired", Some(1)),
            (2000, Some(4000), 3, "missed", None),
            (5000, None, 1, "skipped", None),
            (6000, None, 1, "fired", Some(2)),
        ],
        &[(1, 1000), (2, 6000)],
    )
    .await;
    let ev = check_exactly_once(&db, "s", 1000).await.expect("clean");
    assert_eq!(ev.nominals, 6);
    assert_eq!(ev.jobs, 2);
    assert_eq!(ev.by_state.get("missed"), Some(&3));
}

#[tokio::test]
async fn gaps_duplicates_and_orphans_are_caught() {
    let gap = [
        (1000, None, 1, "fired", Some(1)),
        (3000, None, 1, "missed", None),
    ];
    let (_d, db) = store(&gap, &[(1, 1000)]).await;
    let e = check_exactly_once(&db, "s", 1000).await.expect_err("gap");
    assert!(e.to_string().contains("expected nominal 2000"), "{e}");

    let (_d, db) = store(
        &[(1000, None, 1, "fired", Some(1))],
        &[(1, 1000), (2, 1000)],
    )
    .await;
    let e = check_exactly_once(&db, "s", 1000)
        .await
        .expect_err("duplicate");
    assert!(e.to_string().contains("more than one job"), "{e}");

    let (_d, db) = store(
        &[(1000, None, 1, "fired", Some(1))],
        &[(1, 1000), (2, 2000)],
    )
    .await;
    let e = check_exactly_once(&db, "s", 1000)
        .await
        .expect_err("orphan");
    assert!(e.to_string().contains("no fired occurrence names"), "{e}");

    let (_d, db) = store(&[(1000, Some(3000), 2, "missed", None)], &[]).await;
    let e = check_exactly_once(&db, "s", 1000).await.expect_err("range");
    assert!(e.to_string().contains("inconsistent"), "{e}");

    let (_d, db) = store(&[(1000, None, 1, "fired", Some(7))], &[(7, 2000)]).await;
    let e = check_exactly_once(&db, "s", 1000)
        .await
        .expect_err("wrong job");
    assert!(e.to_string().contains("names job 7"), "{e}");
}
