//! The bound of the earliest lease deadline (`bound`): a grant skips the
//! look for overdue leases only while none can be due — never past a
//! deadline a grant, the clock rebase or a rollback moved earlier.

use baton_proto::RetryPolicy;

use super::*;
use crate::store::prelude::*;
use crate::store::testutil::{grant_noop, noop_job};

/// Grant agent `agent` up to one job of group `g` at `now`.
async fn grant(s: &SqliteStore, agent: &str, now: i64) -> Granted {
    grant_noop(s, agent, now).await
}

#[tokio::test]
async fn a_short_lease_granted_while_looks_are_skipped_is_still_expired_on_time() {
    let (s, _d) = SqliteStore::temp().await;
    s.submit(noop_job(60_000, RetryPolicy::default()), 0)
        .await
        .expect("submit");
    let first = grant(&s, "a1", 1_000).await;
    assert_eq!((first.grants.len(), first.expired), (1, 0));
    // The only lease runs until 61,000: the next grant does not look.
    s.submit(noop_job(1_000, RetryPolicy::default()), 1_050)
        .await
        .expect("submit");
    let skipped = s.lease_bound.skipped();
    let short = grant(&s, "a1", 1_100).await;
    assert_eq!((short.grants.len(), short.expired), (1, 0));
    assert_eq!(s.lease_bound.skipped(), skipped + 1, "the look was spared");
    // That grant's deadline (2,100) lowered the bound: a grant just past it
    // looks, and expires the short lease.
    let later = grant(&s, "a2", 2_101).await;
    assert_eq!(later.expired, 1, "{later:?}");
    let job = s.get_job(short.grants[0].job_id).await.expect("job");
    assert_eq!(job.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
}

#[tokio::test]
async fn after_the_rebase_at_start_a_due_lease_is_not_skipped() {
    let (s, _d) = SqliteStore::temp().await;
    s.submit(noop_job(1_000, RetryPolicy::default()), 50_000)
        .await
        .expect("submit");
    assert_eq!(grant(&s, "a1", 50_000).await.grants.len(), 1);
    // The bound says 51,000; the rebase moves the deadline to 1,000.
    let rebased = s.rebase_clock(0).await.expect("rebase");
    assert_eq!(rebased.leases, 1);
    assert_eq!(grant(&s, "a2", 2_000).await.expired, 1);
}

#[tokio::test]
async fn a_rolled_back_look_leaves_no_bound_behind() {
    let (s, _d) = SqliteStore::temp().await;
    s.submit(noop_job(1_000, RetryPolicy::default()), 0)
        .await
        .expect("submit");
    assert_eq!(grant(&s, "a1", 0).await.grants.len(), 1);
    // One operation ends the lease, looks (no lease runs: the bound would
    // say "none ever due"), then fails: everything it did is rolled back.
    let bound = s.lease_bound.clone();
    let failed: Result<()> = s
        .grouped(move |c| {
            c.execute(
                "UPDATE jobs SET state = 'cancelled', lease_expires_at = NULL",
                [],
            )?;
            expire_in(c, &bound, 10)?;
            // `fleet_id` exists: a UNIQUE violation after the writes.
            c.execute("INSERT INTO meta (key, value) VALUES ('fleet_id', 'x')", [])?;
            Ok(())
        })
        .await;
    assert!(matches!(failed, Err(Error::Sqlite(_))), "{failed:?}");
    // The lease is back, due at 1,000: the next grant past it expires it.
    assert_eq!(grant(&s, "a2", 1_001).await.expired, 1);
}
