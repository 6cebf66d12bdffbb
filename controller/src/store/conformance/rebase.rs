use baton_proto::drill::DrillMethod;
use baton_proto::{Capabilities, JobKind};

use crate::store::agents::AgentSeen;
use crate::store::drills::NewDrill;
use crate::store::jobs::NewJob;
use crate::store::rebase::Rebased;
use crate::store::testutil::{backoff_job, enrolled, granted_noop};
use crate::store::{GrantRequest, Store, rows_ts};

const HOUR: i64 = 3_600_000;

fn job(ttl: u64, max_backoff_ms: u64) -> NewJob {
    backoff_job(ttl, max_backoff_ms)
}

async fn granted(s: &Store, agent: &str, now: i64) -> usize {
    granted_noop(&**s, agent, now).await
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
    s.heartbeat(id, "a1", &crate::store::lease::beat(1, ""), now + 4_000)
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

/// Conformance case: after a backward step, what was stored in the future
/// is brought back, observed through what the traits answer: a parked
/// backoff ends at most its policy maximum after the start, an agent's
/// `last_seen` becomes now, a running drill's age starts now; a second
/// rebase changes nothing.
pub async fn backoffs_last_seen_and_drills_from_the_future_are_capped(s: &Store) {
    s.submit(job(5_000, 2_000), HOUR).await.expect("submit");
    s.submit(job(5_000, 60_000), HOUR).await.expect("submit");
    // Both granted and expired at HOUR + 6 000: backoffs of 2 s and 60 s.
    assert_eq!(granted(s, "a1", HOUR).await, 1);
    assert_eq!(granted(s, "a2", HOUR).await, 1);
    let e = s.expire_leases(HOUR + 6_000).await.expect("expire");
    assert_eq!(e.leases.len(), 2);
    enrolled(s, "a3", &["h"]).await;
    let groups = vec!["h".to_string()];
    let caps = Capabilities {
        kinds: vec![JobKind::Noop],
        connections: vec![],
        stores: Vec::new(),
    };
    let seen = AgentSeen {
        id: "a3",
        groups: &groups,
        capabilities: &caps,
        version: "0.1.0",
        os: "linux",
        free_slots: 1,
        metrics: None,
    };
    s.agent_polled(&seen, HOUR).await.expect("poll");
    // A running drill (its job waits in group `d`, queued since HOUR).
    let drill = NewDrill {
        group: "d".into(),
        method: DrillMethod::Crash,
        duration_ms: 10_000,
        lease_ttl_ms: 5_000,
        rto_ms: 20_000,
        created_by: "test".into(),
        agent: None,
    };
    let mut drill_job = job(5_000, 1_000);
    drill_job.submit.group = "d".into();
    let d = s
        .create_drill(&drill, drill_job, HOUR)
        .await
        .expect("drill");

    // An hour back.
    let now = 1_000;
    let r = s.rebase_clock(now).await.expect("rebase");
    let want = Rebased {
        leases: 0,
        backoffs: 3,
        agents: 1,
        drills: 1,
    };
    assert_eq!(r, want, "two backoffs and the drill's queued job");
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let req = GrantRequest {
        agent_id: "a4",
        groups: &groups,
        kinds: &kinds,
        connections: &[],
        stores: &[],
        max: 1,
    };
    let early = s.grant(&req, now + 1_999).await.expect("grant");
    assert!(early.grants.is_empty());
    assert_eq!(early.next_ready_at, Some(now + 2_000));
    let first = s.grant(&req, now + 2_000).await.expect("grant");
    assert_eq!(first.grants.len(), 1, "the 2 s backoff ends 2 s after now");
    let later = s.grant(&req, now + 2_000).await.expect("grant");
    assert!(later.grants.is_empty());
    assert_eq!(later.next_ready_at, Some(now + 60_000));
    let agents = s.list_agents(now, 1_000).await.expect("agents");
    let a3 = agents.iter().find(|a| a.id == "a3").expect("a3");
    assert_eq!(a3.last_seen, rows_ts(now));
    let view = s.get_drill(d.id).await.expect("drill");
    assert_eq!(view.created_at, rows_ts(now));
    // Nothing in the future any more: a second rebase changes nothing.
    let again = s.rebase_clock(now).await.expect("rebase");
    assert_eq!((again.backoffs, again.agents, again.drills), (0, 0, 0));
}
