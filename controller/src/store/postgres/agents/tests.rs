//! Presence with two replicas on one database.

use std::sync::Arc;

use crate::store::Store;
use crate::store::agents::{FLUSH_BATCH, PresenceRow};
use crate::store::postgres::PgStore;
use crate::store::postgres::testutil::{options, scratch_database};

fn rows(n: usize, last_seen: i64, free_slots: u32) -> Vec<PresenceRow> {
    (0..n)
        .map(|i| PresenceRow {
            id: format!("a{i:05}"),
            last_seen,
            free_slots,
            metrics: None,
        })
        .collect()
}

#[tokio::test]
async fn presence_flushed_by_two_replicas_keeps_the_latest_poll() {
    let Some((url, _guard)) = scratch_database().await else {
        return;
    };
    let a = Arc::new(PgStore::open(&options(&url)).await.expect("open a"));
    let b = Arc::new(PgStore::open(&options(&url)).await.expect("open b"));
    let n = FLUSH_BATCH + 500;
    sqlx::query(
        "INSERT INTO agents (id, groups, capabilities, version, os, first_seen, last_seen)
         SELECT 'a' || lpad(i::text, 5, '0'), '[\"g\"]', '{}', 't', 'linux', 0, 0
         FROM generate_series(0, $1 - 1) AS i",
    )
    .bind(i64::try_from(n).expect("n"))
    .execute(a.pool())
    .await
    .expect("agents");
    let (sa, sb) = (Store::new(a.clone()), Store::new(b.clone()));
    // Both replicas flush every agent at once, in opposite orders (batches
    // overlap): no deadlock reaches the caller.
    let newer = rows(n, 200, 2);
    let mut older = rows(n, 100, 1);
    older.reverse();
    let (ra, rb) = tokio::join!(sa.flush_presence(&newer), sb.flush_presence(&older));
    ra.expect("flush a");
    rb.expect("flush b");
    // A replica that saw an agent earlier flushes after one that saw it
    // later: last_seen does not move back.
    sb.flush_presence(&older).await.expect("late flush");
    let seen: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT last_seen FROM agents")
        .fetch_all(a.pool())
        .await
        .expect("q");
    assert_eq!(seen, [200]);
    let agents = sa.list_agents(200, 1000).await.expect("list");
    assert_eq!(agents.len(), n);
    assert!(agents.iter().all(|x| x.online));
}
