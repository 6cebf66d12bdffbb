//! Migration 0009 (drills gain `controller_crash`): a store with drills and
//! their timelines from before keeps them all, with foreign keys intact.

use std::str::FromStr;

use baton_proto::drill::{DrillEventKind, DrillMethod, DrillState};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::store::drills::{DrillStore, NewDrill};
use crate::store::sqlite::{MIGRATOR, SqliteStore, SyncMode};
use crate::store::testutil::noop_job;

#[tokio::test]
async fn drills_from_before_the_rebuild_keep_their_rows_and_timelines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    let options = SqliteConnectOptions::from_str("sqlite:")
        .expect("options")
        .filename(&path)
        .create_if_missing(true)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("connect");
    MIGRATOR
        .run_to(8, &pool)
        .await
        .expect("migrations up to 0008");
    let insert = "INSERT INTO drills (id, grp, method, duration_ms, lease_ttl_ms, rto_ms, state, created_by, created_at, updated_at, fault_token, fault_agent)
                  VALUES (7, 'g', 'freeze', 4000, 2000, 9000, 'passed', 'token:t', 1000, 2000, 3, 'a1')";
    sqlx::query(insert).execute(&pool).await.expect("old drill");
    sqlx::query("INSERT INTO drill_events (drill_id, at, kind, attempt, agent, detail) VALUES (7, 1500, 'fault_sent', 1, 'a1', 'x')")
        .execute(&pool)
        .await
        .expect("old event");
    // Refused before: the method is new.
    let new_method = sqlx::query(
        "INSERT INTO drills (grp, method, duration_ms, lease_ttl_ms, rto_ms, state, created_by, created_at, updated_at)
         VALUES ('g', 'controller_crash', 1, 1, 1, 'running', 't', 1, 1)",
    )
    .execute(&pool)
    .await;
    assert!(
        new_method.is_err(),
        "the old CHECK refuses controller_crash"
    );
    pool.close().await;

    let s = SqliteStore::open(&path, SyncMode::Normal)
        .await
        .expect("open runs 0009");
    let old = s.get_drill(7).await.expect("kept");
    assert_eq!(
        (old.method, old.state),
        (DrillMethod::Freeze, DrillState::Passed)
    );
    assert_eq!(old.events.len(), 1);
    assert_eq!(old.events[0].kind, DrillEventKind::FaultSent);
    let fk_problems: Vec<(String,)> =
        sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
            .fetch_all(&s.reader)
            .await
            .expect("fk check");
    assert!(fk_problems.is_empty(), "{fk_problems:?}");
    let fk_on: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&s.writer)
        .await
        .expect("pragma");
    assert_eq!(fk_on, 1, "foreign keys are on again");
    let d = NewDrill {
        group: "g".into(),
        method: DrillMethod::ControllerCrash,
        duration_ms: 4000,
        lease_ttl_ms: 2000,
        rto_ms: 9000,
        created_by: "token:t".into(),
        agent: Some("a1".into()),
    };
    let v = s
        .create_drill(&d, noop_job(2000, Default::default()), 5_000)
        .await
        .expect("a controller_crash drill");
    assert!(v.id > 7, "ids go on after the kept rows: {}", v.id);
    assert_eq!(v.method, DrillMethod::ControllerCrash);
}

/// The takeover samples read only the attempts that ended `lease_expired`,
/// through the partial index migration 0014 made for them (not a walk of
/// every attempt).
#[tokio::test]
async fn takeover_samples_read_the_lease_expired_index() {
    let (s, _d) = SqliteStore::temp().await;
    let detail = s
        .query_plan(crate::store::drills::TAKEOVER_SAMPLES, &[])
        .await;
    assert!(
        detail
            .iter()
            .any(|d| d.ends_with(" a USING INDEX attempts_lease_expired")),
        "{detail:?}"
    );
}
