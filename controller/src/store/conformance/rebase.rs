use baton_proto::{JobKind, RetryPolicy};

use crate::store::GrantRequest;
use crate::store::Store;
use crate::store::jobs::NewJob;
use crate::store::testutil::noop_job;

const HOUR: i64 = 3_600_000;

fn job(ttl: u64, max_backoff_ms: u64) -> NewJob {
    noop_job(
        ttl,
        RetryPolicy {
            max_attempts: 3,
            initial_backoff_ms: max_backoff_ms,
            max_backoff_ms,
            jitter: 0.0,
            ..RetryPolicy::default()
        },
    )
}

async fn granted(s: &Store, agent: &str, now: i64) -> usize {
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let req = GrantRequest {
        agent_id: agent,
        groups: &groups,
        kinds: &kinds,
        connections: &[],
        max: 1,
    };
    s.grant(&req, now).await.expect("grant").grants.len()
}

/// Conformance case `a_forward_step_while_down_expires_no_lease_early`.
pub async fn a_forward_step_while_down_expires_no_lease_early(s: &Store) {
    let id = s.submit(job(5_000, 1_000), 0).await.expect("submit").job.id;
    assert_eq!(granted(s, "a1", 10).await, 1);
    // Restarted an hour "later": the stored deadline (5 010) is long past.
    let now = HOUR;
    let r = s.rebase_clock(now).await.expect("rebase");
    assert_eq!(r.leases, 1);
    assert!(
        s.expire_leases(now)
            .await
            .expect("expire")
            .leases
            .is_empty()
    );
    // The holder's heartbeat is still accepted, and renews as usual.
    s.heartbeat(id, "a1", 1, None, "", now + 4_000)
        .await
        .expect("heartbeat after the restart");
    assert!(
        s.expire_leases(now + 8_999)
            .await
            .expect("expire")
            .leases
            .is_empty()
    );
    assert_eq!(
        s.expire_leases(now + 9_000)
            .await
            .expect("expire")
            .leases
            .len(),
        1
    );
}

/// Conformance case `a_backward_step_while_down_keeps_a_dead_lease_one_ttl_only`.
pub async fn a_backward_step_while_down_keeps_a_dead_lease_one_ttl_only(s: &Store) {
    s.submit(job(5_000, 1_000), HOUR).await.expect("submit");
    assert_eq!(granted(s, "a1", HOUR + 10).await, 1);
    // Restarted with the clock an hour back: the stored deadline is an hour ahead.
    let now = 20;
    assert_eq!(s.rebase_clock(now).await.expect("rebase").leases, 1);
    assert_eq!(
        s.next_lease_deadline().await.expect("deadline"),
        Some(now + 5_000)
    );
    assert!(
        s.expire_leases(now + 4_999)
            .await
            .expect("expire")
            .leases
            .is_empty()
    );
    assert_eq!(
        s.expire_leases(now + 5_000)
            .await
            .expect("expire")
            .leases
            .len(),
        1
    );
    // Requeued with the backoff of the new clock, and granted again.
    assert_eq!(granted(s, "a2", now + 6_000).await, 1);
}
