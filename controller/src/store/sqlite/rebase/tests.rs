use super::*;
use crate::store::jobs::NewJob;
use crate::store::prelude::*;
use crate::store::testutil::{backoff_job, granted_noop};

const HOUR: i64 = 3_600_000;

fn job(ttl: u64, max_backoff_ms: u64) -> NewJob {
    backoff_job(ttl, max_backoff_ms)
}

async fn granted(s: &SqliteStore, agent: &str, now: i64) -> usize {
    granted_noop(s, agent, now).await
}

#[tokio::test]
async fn backoffs_are_cut_to_their_policy_maximum_and_last_seen_to_now() {
    let (s, _d) = SqliteStore::temp().await;
    let parked = s
        .submit(job(5_000, 2_000), HOUR)
        .await
        .expect("submit")
        .job
        .id;
    let soon = s
        .submit(job(5_000, 60_000), HOUR)
        .await
        .expect("submit")
        .job
        .id;
    // Both granted and expired at HOUR + 6 000: backoffs of 2 s and 60 s.
    assert_eq!(granted(&s, "a1", HOUR).await, 1);
    assert_eq!(granted(&s, "a2", HOUR).await, 1);
    assert_eq!(
        s.expire_leases(HOUR + 6_000)
            .await
            .expect("expire")
            .leases
            .len(),
        2
    );
    crate::store::testutil::enrolled(&s.store(), "a3", &["g"]).await;
    sqlx::query("UPDATE agents SET last_seen = ? WHERE id = 'a3'")
        .bind(HOUR)
        .execute(&s.writer)
        .await
        .expect("last_seen");
    for state in ["running", "passed"] {
        sqlx::query(
            "INSERT INTO drills (grp, method, duration_ms, lease_ttl_ms, rto_ms, state, created_by, created_at, updated_at)
             VALUES ('g', 'crash', 10000, 5000, 20000, ?, 'test', ?, ?)",
        )
        .bind(state)
        .bind(HOUR)
        .bind(HOUR)
        .execute(&s.writer)
        .await
        .expect("drill");
    }
    // An hour back: the backoffs would end an hour from now; capped to
    // now + max_backoff (2 s and 60 s). The running drill's age starts now.
    let now = 1_000;
    let r = s.rebase_clock(now).await.expect("rebase");
    let want = Rebased {
        leases: 0,
        backoffs: 2,
        agents: 1,
        drills: 1,
    };
    assert_eq!(r, want);
    let nb = |id| {
        sqlx::query_scalar::<_, i64>("SELECT not_before FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_one(&s.reader)
    };
    assert_eq!(nb(parked).await.expect("not_before"), now + 2_000);
    assert_eq!(nb(soon).await.expect("not_before"), now + 60_000);
    let seen: i64 = sqlx::query_scalar("SELECT last_seen FROM agents WHERE id = 'a3'")
        .fetch_one(&s.reader)
        .await
        .expect("last_seen");
    assert_eq!(seen, now);
    // Nothing in the future any more: a second rebase changes nothing.
    let again = s.rebase_clock(now).await.expect("rebase");
    assert_eq!((again.backoffs, again.agents, again.drills), (0, 0, 0));
}
