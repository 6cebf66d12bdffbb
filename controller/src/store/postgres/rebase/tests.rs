//! The rebase's PostgreSQL statements on rows written directly (the
//! behaviour through the other areas is the conformance suite's).

use baton_proto::RetryPolicy;

use super::*;
use crate::store::postgres::testutil;

const HOUR: i64 = 3_600_000;

/// A job of `state` with lease TTL 5 s, `retry`, `not_before` and (when
/// running) `lease_expires_at`; its id.
async fn job(s: &PgStore, state: &str, retry: &str, not_before: i64, lease: Option<i64>) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO jobs (grp, kind, spec, retry, lease_ttl_ms, state, not_before, lease_agent, lease_token,
                           lease_expires_at, created_at, updated_at)
         VALUES ('g', 'noop', '{}', $1, 5000, $2, $3, $4, $5, $6, 0, 0) RETURNING id",
    )
    .bind(retry)
    .bind(state)
    .bind(not_before)
    .bind(lease.map(|_| "a1"))
    .bind(lease.map(|_| 1_i64))
    .bind(lease)
    .fetch_one(&s.pool)
    .await
    .expect("job")
}

async fn column(s: &PgStore, sql: &'static str, id: i64) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&s.pool)
        .await
        .expect("column")
}

/// An hour back: leases become now + TTL, backoffs are cut to their
/// policy's `max_backoff_ms` (read from the JSON text column; a policy
/// without one counts as 0), `last_seen` and a running drill's start to
/// now; a second rebase changes only the leases.
#[tokio::test]
async fn stored_times_are_rebased_from_the_json_policy_and_capped_to_now() {
    let Some((s, _guard)) = testutil::pg().await else {
        return;
    };
    let policy = |max: u64| {
        serde_json::to_string(&RetryPolicy {
            max_backoff_ms: max,
            ..RetryPolicy::default()
        })
        .expect("policy")
    };
    let parked = job(&s, "queued", &policy(2_000), 2 * HOUR, None).await;
    let soon = job(&s, "queued", &policy(60_000), 2 * HOUR, None).await;
    let bare = job(&s, "queued", "{}", 2 * HOUR, None).await;
    let due = job(&s, "queued", &policy(60_000), 500, None).await;
    let running = job(&s, "running", &policy(2_000), 0, Some(HOUR + 5_000)).await;
    sqlx::query(
        "INSERT INTO agents (id, groups, capabilities, version, os, first_seen, last_seen)
         VALUES ('a3', '[\"g\"]', '{}', '0', 'linux', $1, $1), ('a4', '[\"g\"]', '{}', '0', 'linux', 10, 10)",
    )
    .bind(HOUR)
    .execute(&s.pool)
    .await
    .expect("agents");
    for state in ["running", "passed"] {
        sqlx::query(
            "INSERT INTO drills (grp, method, duration_ms, lease_ttl_ms, rto_ms, state, created_by, created_at, updated_at)
             VALUES ('g', 'crash', 10000, 5000, 20000, $1, 'test', $2, $2)",
        )
        .bind(state)
        .bind(HOUR)
        .execute(&s.pool)
        .await
        .expect("drill");
    }

    let now = 1_000;
    let r = s.rebase_clock(now).await.expect("rebase");
    let want = Rebased {
        leases: 1,
        backoffs: 3,
        agents: 1,
        drills: 1,
    };
    assert_eq!(r, want);
    let nb = "SELECT not_before FROM jobs WHERE id = $1";
    assert_eq!(column(&s, nb, parked).await, now + 2_000);
    assert_eq!(column(&s, nb, soon).await, now + 60_000);
    assert_eq!(column(&s, nb, bare).await, now, "no max_backoff_ms: 0");
    assert_eq!(column(&s, nb, due).await, 500, "a due job is left alone");
    let lease = "SELECT lease_expires_at FROM jobs WHERE id = $1";
    assert_eq!(column(&s, lease, running).await, now + 5_000);
    let seen: Vec<i64> = sqlx::query_scalar("SELECT last_seen FROM agents ORDER BY id")
        .fetch_all(&s.pool)
        .await
        .expect("last_seen");
    assert_eq!(seen, [now, 10]);
    let started: Vec<i64> = sqlx::query_scalar("SELECT created_at FROM drills ORDER BY id")
        .fetch_all(&s.pool)
        .await
        .expect("drills");
    assert_eq!(started, [now, HOUR], "only the running drill");

    let again = s.rebase_clock(now + 100).await.expect("rebase");
    let want = Rebased {
        leases: 1,
        ..Rebased::default()
    };
    assert_eq!(again, want, "nothing else lies after now");
    assert_eq!(column(&s, lease, running).await, now + 5_100);
}
