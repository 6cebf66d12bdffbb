use baton_proto::{
    AttemptOutcome, CompleteRequest, Completion, FencingToken, JobKind, JobSpec, JobState,
    RetryPolicy,
};

use crate::store::jobs::NewJob;
use crate::store::testutil::noop_job;
use crate::store::{Error, GrantRequest, Store};
use baton_proto::JobResult;

fn job(max_attempts: u32, ttl: u64) -> NewJob {
    noop_job(
        ttl,
        RetryPolicy {
            max_attempts,
            initial_backoff_ms: 100,
            jitter: 0.0,
            ..RetryPolicy::default()
        },
    )
}

fn creq(token: FencingToken, completion: Completion, error: Option<&str>) -> CompleteRequest {
    CompleteRequest {
        started_after_ms: None,
        token,
        completion,
        result: JobResult::default(),
        error: error.map(str::to_owned),
    }
}

pub(super) fn req<'a>(
    agent: &'a str,
    groups: &'a [String],
    kinds: &'a [JobKind],
) -> GrantRequest<'a> {
    GrantRequest {
        agent_id: agent,
        groups,
        kinds,
        connections: &[],
        stores: &[],
        max: 1,
    }
}

/// Conformance case `the_first_reported_start_is_kept_and_bounded`: the
/// attempt's `running_at` is the grant time plus the first start delay
/// reported (by a heartbeat or the completion, on either completion path),
/// later reports change nothing, and a delay past the report's time is
/// bounded by it.
pub async fn the_first_reported_start_is_kept_and_bounded(s: &Store) {
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms);
    let running_at = |id| async move { s.get_job(id).await.expect("get").attempts[0].running_at };
    let mut beat = crate::store::lease::beat(1, "");
    // Reported by the first heartbeat, kept by the next one and the success.
    let a = s.submit(job(1, 60_000), 0).await.expect("submit").job.id;
    s.grant(&req("a1", &groups, &kinds), 100)
        .await
        .expect("grant");
    s.heartbeat(a, "a1", &beat, 500).await.expect("hb");
    assert_eq!(running_at(a).await, None, "nothing reported yet");
    beat.started_after_ms = Some(40);
    s.heartbeat(a, "a1", &beat, 600).await.expect("hb");
    assert_eq!(running_at(a).await, at(140));
    beat.started_after_ms = Some(90);
    s.heartbeat(a, "a1", &beat, 700).await.expect("hb");
    let mut done = creq(1, Completion::Succeeded, None);
    done.started_after_ms = Some(300);
    s.complete(a, "a1", &done, 800).await.expect("complete");
    assert_eq!(running_at(a).await, at(140));
    // Reported only by a success (no heartbeat before it).
    let b = s.submit(job(1, 60_000), 0).await.expect("submit").job.id;
    s.grant(&req("a1", &groups, &kinds), 1_000)
        .await
        .expect("grant");
    done.started_after_ms = Some(25);
    s.complete(b, "a1", &done, 1_200).await.expect("complete");
    assert_eq!(running_at(b).await, at(1_025));
    // Reported only by a failure, the delay bounded by the report's time.
    let c = s.submit(job(1, 60_000), 0).await.expect("submit").job.id;
    s.grant(&req("a1", &groups, &kinds), 2_000)
        .await
        .expect("grant");
    let mut failed = creq(1, Completion::Failed { retryable: false }, Some("boom"));
    failed.started_after_ms = Some(u64::MAX);
    s.complete(c, "a1", &failed, 2_700).await.expect("complete");
    let v = s.get_job(c).await.expect("get");
    assert_eq!(v.attempts[0].running_at, at(2_700));
    assert_eq!(v.attempts[0].outcome, Some(AttemptOutcome::Failed));
}

/// Conformance case `grant_once_tokens_increase_and_expiry_requeues`.
pub async fn grant_once_tokens_increase_and_expiry_requeues(s: &Store) {
    let id = s.submit(job(3, 2000), 0).await.expect("submit").job.id;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let g1 = s
        .grant(&req("a1", &groups, &kinds), 10)
        .await
        .expect("grant");
    assert_eq!(g1.grants.len(), 1);
    assert_eq!(g1.grants[0].token, 1);
    // Nobody else gets it while the lease holds.
    let g2 = s
        .grant(&req("a2", &groups, &kinds), 20)
        .await
        .expect("grant");
    assert!(g2.grants.is_empty());
    // Heartbeat extends it past the original deadline.
    let (ttl, cancel) = s
        .heartbeat(id, "a1", &crate::store::lease::beat(1, "tail"), 1500)
        .await
        .expect("hb");
    assert_eq!((ttl, cancel), (2000, false));
    assert!(
        s.expire_leases(2500)
            .await
            .expect("expire")
            .leases
            .is_empty()
    );
    // Past the renewed deadline the lease is gone; the job is queued with backoff.
    let e = s.expire_leases(3500).await.expect("expire");
    assert_eq!(e.leases, vec![(id, 1, "a1".to_string())]);
    assert_eq!(e.woken, vec!["g".to_string()]);
    let v = s.get_job(id).await.expect("get");
    assert_eq!(v.state, JobState::Queued);
    assert_eq!(v.attempts_spent, 1);
    assert_eq!(v.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
    // Backoff: not before 3500 + 100.
    let early = s
        .grant(&req("a2", &groups, &kinds), 3550)
        .await
        .expect("grant");
    assert!(early.grants.is_empty());
    assert_eq!(early.next_ready_at, Some(3600));
    let g3 = s
        .grant(&req("a2", &groups, &kinds), 3600)
        .await
        .expect("grant");
    assert_eq!(g3.grants[0].token, 2);
    assert_eq!(g3.grants[0].attempt, 2);
    // The old holder's token is stale for every call.
    for r in [
        s.heartbeat(id, "a1", &crate::store::lease::beat(1, ""), 3700)
            .await
            .map(|_| ()),
        s.release(id, "a1", 1, "", 3700).await.map(|_| ()),
        s.complete(id, "a1", &creq(1, Completion::Succeeded, None), 3700)
            .await
            .map(|_| ()),
    ] {
        assert!(matches!(r, Err(Error::LeaseLost(_))), "{r:?}");
    }
    // The current token from another agent is refused as forbidden: the
    // lease belongs to a2, whatever token a1 presents.
    assert!(matches!(
        s.heartbeat(id, "a1", &crate::store::lease::beat(2, ""), 3700)
            .await,
        Err(Error::Forbidden(_))
    ));
    // An agent that never held the job is forbidden too.
    assert!(matches!(
        s.heartbeat(id, "a9", &crate::store::lease::beat(1, ""), 3700)
            .await,
        Err(Error::Forbidden(_))
    ));
    let (state, dup, _, _) = s
        .complete(id, "a2", &creq(2, Completion::Succeeded, None), 3800)
        .await
        .expect("complete");
    assert_eq!((state, dup), (JobState::Succeeded, false));
    // Redelivery of the same completion is recognised, not applied twice.
    let (state, dup, _, _) = s
        .complete(id, "a2", &creq(2, Completion::Succeeded, None), 3900)
        .await
        .expect("redeliver");
    assert_eq!((state, dup), (JobState::Succeeded, true));
    let v = s.get_job(id).await.expect("get");
    assert_eq!(v.attempts.len(), 2);
    assert_eq!(v.attempts_spent, 2);
    assert_eq!(v.error, None);
}

/// Conformance case `heartbeat_after_deadline_is_lease_lost_even_before_the_reaper`.
pub async fn heartbeat_after_deadline_is_lease_lost_even_before_the_reaper(s: &Store) {
    let id = s.submit(job(3, 2000), 0).await.expect("submit").job.id;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    s.grant(&req("a1", &groups, &kinds), 0)
        .await
        .expect("grant");
    assert!(matches!(
        s.heartbeat(id, "a1", &crate::store::lease::beat(1, ""), 2000)
            .await,
        Err(Error::LeaseLost(_))
    ));
}

/// Conformance case `attempts_exhausted_fail_and_release_spends_nothing`.
pub async fn attempts_exhausted_fail_and_release_spends_nothing(s: &Store) {
    let id = s.submit(job(2, 2000), 0).await.expect("submit").job.id;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    s.grant(&req("a1", &groups, &kinds), 0)
        .await
        .expect("grant");
    let (state, _) = s
        .release(id, "a1", 1, "shutdown", 10)
        .await
        .expect("release");
    assert_eq!(state, JobState::Queued);
    assert_eq!(s.get_job(id).await.expect("get").attempts_spent, 0);
    // Two failures with max_attempts = 2: queued, then failed.
    let g = s
        .grant(&req("a1", &groups, &kinds), 20)
        .await
        .expect("grant");
    let t = g.grants[0].token;
    assert_eq!(t, 2);
    let (st, _, _, _) = s
        .complete(
            id,
            "a1",
            &creq(t, Completion::Failed { retryable: true }, Some("boom")),
            30,
        )
        .await
        .expect("complete");
    assert_eq!(st, JobState::Queued);
    let g = s
        .grant(&req("a1", &groups, &kinds), 1000)
        .await
        .expect("grant");
    let t = g.grants[0].token;
    let (st, _, _, _) = s
        .complete(
            id,
            "a1",
            &creq(t, Completion::Failed { retryable: true }, Some("boom")),
            1010,
        )
        .await
        .expect("complete");
    assert_eq!(st, JobState::Failed);
    let v = s.get_job(id).await.expect("get");
    assert_eq!(v.attempts.len(), 3);
    assert_eq!(v.attempts[0].outcome, Some(AttemptOutcome::Released));
    assert_eq!(v.error.as_deref(), Some("boom"));
}

/// Conformance case `not_retryable_fails_at_once_and_cancel_reaches_heartbeat`.
pub async fn not_retryable_fails_at_once_and_cancel_reaches_heartbeat(s: &Store) {
    let id = s.submit(job(5, 2000), 0).await.expect("submit").job.id;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    s.grant(&req("a1", &groups, &kinds), 0)
        .await
        .expect("grant");
    s.cancel(id, 5).await.expect("cancel");
    let (_, cancel) = s
        .heartbeat(id, "a1", &crate::store::lease::beat(1, ""), 10)
        .await
        .expect("hb");
    assert!(cancel);
    let (st, _, _, _) = s
        .complete(id, "a1", &creq(1, Completion::Cancelled, None), 20)
        .await
        .expect("complete");
    assert_eq!(st, JobState::Cancelled);

    let id = s.submit(job(5, 2000), 30).await.expect("submit").job.id;
    s.grant(&req("a1", &groups, &kinds), 40)
        .await
        .expect("grant");
    let (st, _, _, _) = s
        .complete(
            id,
            "a1",
            &creq(1, Completion::Failed { retryable: false }, Some("bad")),
            50,
        )
        .await
        .expect("complete");
    assert_eq!(st, JobState::Failed);
}

/// Conformance case `grants_respect_group_kind_connection_priority`.
pub async fn grants_respect_group_kind_connection_priority(s: &Store) {
    let low = s.submit(job(1, 2000), 0).await.expect("submit").job.id;
    let mut hi = job(1, 2000);
    hi.submit.priority = 10;
    let high = s.submit(hi, 1).await.expect("submit").job.id;
    let mut other = job(1, 2000);
    other.submit.group = "other".into();
    s.submit(other, 2).await.expect("submit");
    let mut sql = job(1, 2000);
    sql.submit.spec = JobSpec::Sql(baton_proto::SqlSpec {
        connection: "main".into(),
        sql: "select 1".into(),
        exactly_once: false,
        session: Default::default(),
    });
    let sql_id = s.submit(sql, 3).await.expect("submit").job.id;
    let groups = vec!["g".to_string()];
    let noop = vec![JobKind::Noop];
    let mut r = req("a1", &groups, &noop);
    r.max = 10;
    let g = s.grant(&r, 10).await.expect("grant");
    assert_eq!(
        g.grants.iter().map(|g| g.job_id).collect::<Vec<_>>(),
        vec![high, low]
    );
    let sql_kinds = vec![JobKind::Sql];
    let mut r = req("a2", &groups, &sql_kinds);
    r.max = 10;
    assert!(s.grant(&r, 11).await.expect("grant").grants.is_empty());
    let conns = vec!["main".to_string()];
    r.connections = &conns;
    let g = s.grant(&r, 12).await.expect("grant");
    assert_eq!(
        g.grants.iter().map(|g| g.job_id).collect::<Vec<_>>(),
        vec![sql_id]
    );
}

/// An upload job to object store `store`.
fn upload(store: &str) -> NewJob {
    let mut j = job(1, 2000);
    j.submit.spec = JobSpec::Upload(baton_proto::upload::UploadSpec {
        store: store.into(),
        file: "/var/lib/baton/dumps/x.sql.zst".into(),
        key: None,
        retention: None,
    });
    j
}

/// Conformance case `grants_and_hand_offs_respect_the_store`: a job that
/// needs an object store (`JobSpec::store`) is granted, and handed off at
/// submit, only to an agent advertising that store; a job naming none goes
/// to any agent.
pub async fn grants_and_hand_offs_respect_the_store(s: &Store) {
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Upload, JobKind::Noop];
    let first = s.submit(upload("offsite"), 0).await.expect("submit").job.id;
    let (archive, offsite) = (vec!["archive".to_string()], vec!["offsite".to_string()]);
    let mut r = req("a1", &groups, &kinds);
    r.max = 10;
    for stores in [&[][..], &archive[..]] {
        r.stores = stores;
        let g = s.grant(&r, 10).await.expect("grant");
        assert!(g.grants.is_empty(), "{stores:?}: {:?}", g.grants);
        assert_eq!(g.next_ready_at, None, "{stores:?}");
    }
    // The hand-off path: submitted, not granted to an agent without it.
    let (second, granted) = s
        .submit_and_grant(upload("offsite"), &r, 20)
        .await
        .expect("submit and grant");
    assert!(second.created && granted.grants.is_empty(), "{granted:?}");
    assert_eq!(
        s.get_job(second.job.id).await.expect("get").state,
        JobState::Queued
    );
    // A job naming no store still goes to an agent without the one asked for.
    let plain = s.submit(job(1, 2000), 30).await.expect("submit").job.id;
    let g = s.grant(&r, 40).await.expect("grant");
    assert_eq!(
        g.grants.iter().map(|g| g.job_id).collect::<Vec<_>>(),
        vec![plain]
    );
    // An agent with the store gets both uploads, and a third by hand-off.
    let mut r2 = req("a2", &groups, &kinds);
    r2.max = 10;
    r2.stores = &offsite;
    let g = s.grant(&r2, 50).await.expect("grant");
    assert_eq!(
        g.grants.iter().map(|g| g.job_id).collect::<Vec<_>>(),
        vec![first, second.job.id]
    );
    let (third, granted) = s
        .submit_and_grant(upload("offsite"), &r2, 60)
        .await
        .expect("submit and grant");
    assert_eq!(
        granted.grants.iter().map(|g| g.job_id).collect::<Vec<_>>(),
        vec![third.job.id]
    );
    assert_eq!(
        s.get_job(third.job.id)
            .await
            .expect("get")
            .lease_agent
            .as_deref(),
        Some("a2")
    );
}

/// Conformance case `a_drained_agent_is_granted_nothing_until_resumed`.
pub async fn a_drained_agent_is_granted_nothing_until_resumed(s: &Store) {
    crate::store::testutil::enrolled(s, "a1", &["g"]).await;
    let id = s.submit(job(3, 2000), 0).await.expect("submit").job.id;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    s.set_drain("a1", true, 5).await.expect("drain");
    let g = s
        .grant(&req("a1", &groups, &kinds), 10)
        .await
        .expect("grant");
    assert!(g.grants.is_empty(), "a drained agent got {:?}", g.grants);
    // After a resume it does.
    s.set_drain("a1", false, 20).await.expect("resume");
    let g = s
        .grant(&req("a1", &groups, &kinds), 30)
        .await
        .expect("grant");
    assert_eq!(g.grants.len(), 1);
    assert_eq!(g.grants[0].job_id, id);
}

fn held(job_id: baton_proto::JobId, token: FencingToken) -> baton_proto::LeaseRef {
    baton_proto::LeaseRef { job_id, token }
}

/// Conformance case `abandon_ends_only_the_callers_current_lease`: a restarted
/// agent's report ends its current lease as `agent_restarted` (an attempt
/// spent, backoff as for expiry) and requeues the job; a stale token,
/// another agent's lease, an expired lease and a second report change nothing.
pub async fn abandon_ends_only_the_callers_current_lease(s: &Store) {
    let id = s.submit(job(2, 2000), 0).await.expect("submit").job.id;
    let other = s.submit(job(2, 2000), 0).await.expect("submit").job.id;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let mut two = req("a1", &groups, &kinds);
    two.max = 2;
    assert_eq!(s.grant(&two, 10).await.expect("grant").grants.len(), 2);
    // Another agent cannot end a1's lease, even with the right token.
    let a = s.abandon("a2", &[held(id, 1)], 20).await.expect("abandon");
    assert_eq!(a.results, vec![(held(id, 1), None)]);
    assert!(a.woken.is_empty());
    // A token that never was current, and a job that does not exist: nothing.
    let a = s
        .abandon("a1", &[held(id, 7), held(9_999, 1)], 20)
        .await
        .expect("abandon");
    assert_eq!(a.results, vec![(held(id, 7), None), (held(9_999, 1), None)]);
    let v = s.get_job(id).await.expect("get");
    assert_eq!((v.state, v.attempts_spent), (JobState::Running, 0));
    // The current lease ends at once; the same report twice in one call is harmless.
    let a = s
        .abandon("a1", &[held(id, 1), held(id, 1)], 30)
        .await
        .expect("abandon");
    assert_eq!(
        a.results,
        vec![(held(id, 1), Some(JobState::Queued)), (held(id, 1), None)]
    );
    assert_eq!(a.woken, vec!["g".to_string()]);
    let v = s.get_job(id).await.expect("get");
    assert_eq!(v.state, JobState::Queued);
    assert_eq!(v.attempts_spent, 1);
    assert_eq!(v.attempts[0].outcome, Some(AttemptOutcome::AgentRestarted));
    assert!(v.attempts[0].ended_at.is_some());
    assert!(v.lease_agent.is_none());
    // Backoff as for an expiry: not before 30 + 100; then a2 gets token 2.
    let g = s
        .grant(&req("a2", &groups, &kinds), 100)
        .await
        .expect("grant");
    assert!(g.grants.iter().all(|g| g.job_id != id));
    let g = s
        .grant(&req("a2", &groups, &kinds), 130)
        .await
        .expect("grant");
    assert_eq!((g.grants[0].job_id, g.grants[0].token), (id, 2));
    // A stale record of a1 (token 1) reported again after the re-grant: nothing.
    let a = s.abandon("a1", &[held(id, 1)], 140).await.expect("abandon");
    assert_eq!(a.results, vec![(held(id, 1), None)]);
    let v = s.get_job(id).await.expect("get");
    assert_eq!(v.state, JobState::Running);
    assert_eq!(v.lease_agent.as_deref(), Some("a2"));
    assert_eq!(v.attempts_spent, 1);
    // The last attempt ending this way fails the job.
    let a = s.abandon("a2", &[held(id, 2)], 150).await.expect("abandon");
    assert_eq!(a.results, vec![(held(id, 2), Some(JobState::Failed))]);
    assert!(a.woken.is_empty());
    let v = s.get_job(id).await.expect("get");
    assert_eq!(v.state, JobState::Failed);
    assert_eq!(v.attempts[1].outcome, Some(AttemptOutcome::AgentRestarted));
    assert!(
        v.error.as_deref().is_some_and(|e| e.contains("restarted")),
        "{:?}",
        v.error
    );
    // A lease past its deadline (not reaped yet) is left to the expiry.
    let a = s
        .abandon("a1", &[held(other, 1)], 2010)
        .await
        .expect("abandon");
    assert_eq!(a.results, vec![(held(other, 1), None)]);
    let e = s.expire_leases(2010).await.expect("expire");
    assert!(e.leases.contains(&(other, 1, "a1".to_string())));
    assert_eq!(s.agent_restart_ends().await.expect("count"), 2);
}

/// Conformance case `submit_and_grant_hands_the_new_job_over_in_one_call`:
/// the new job is granted to the named agent (token 1, attempt 1, running);
/// a drained agent or one that cannot run the kind gets nothing and the job
/// stays queued; a replayed idempotency key grants nothing.
pub async fn submit_and_grant_hands_the_new_job_over_in_one_call(s: &Store) {
    crate::store::testutil::enrolled(s, "a1", &["g"]).await;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let (done, granted) = s
        .submit_and_grant(job(3, 2000), &req("a1", &groups, &kinds), 10)
        .await
        .expect("submit and grant");
    assert!(done.created);
    assert_eq!(granted.grants.len(), 1, "{granted:?}");
    let g = &granted.grants[0];
    assert_eq!((g.job_id, g.token, g.attempt), (done.job.id, 1, 1));
    assert_eq!(granted.ready_at, vec![10]);
    let view = s.get_job(done.job.id).await.expect("get");
    assert_eq!(view.state, JobState::Running);
    assert_eq!(view.attempts.len(), 1);
    assert_eq!(view.attempts[0].agent_id, "a1");
    // The lease is an ordinary one: its holder completes it.
    let (state, dup, _, _) = s
        .complete(done.job.id, "a1", &creq(1, Completion::Succeeded, None), 20)
        .await
        .expect("complete");
    assert_eq!((state, dup), (JobState::Succeeded, false));

    // Another kind than the agent runs: submitted, not granted.
    let sql_only = vec![JobKind::Sql];
    let (done, granted) = s
        .submit_and_grant(job(3, 2000), &req("a1", &groups, &sql_only), 30)
        .await
        .expect("submit");
    assert!(done.created && granted.grants.is_empty(), "{granted:?}");
    assert_eq!(
        s.get_job(done.job.id).await.expect("get").state,
        JobState::Queued
    );
    // A drained agent: submitted, not granted, still queued.
    s.set_drain("a1", true, 40).await.expect("drain");
    let (drained, granted) = s
        .submit_and_grant(job(3, 2000), &req("a1", &groups, &kinds), 50)
        .await
        .expect("submit");
    assert!(drained.created && granted.grants.is_empty(), "{granted:?}");
    assert_eq!(
        s.get_job(drained.job.id).await.expect("get").state,
        JobState::Queued
    );
    s.set_drain("a1", false, 60).await.expect("resume");

    // A replayed key returns the first job and grants nothing, not even the
    // queued jobs above.
    let keyed = || {
        let mut j = crate::store::testutil::new_job("g", Some("k-1"), "hash-1");
        j.lease_ttl_ms = 2000;
        j
    };
    let (first, _) = s
        .submit_and_grant(keyed(), &req("a1", &groups, &sql_only), 70)
        .await
        .expect("keyed");
    let (again, granted) = s
        .submit_and_grant(keyed(), &req("a1", &groups, &kinds), 80)
        .await
        .expect("replay");
    assert!(!again.created);
    assert_eq!(again.job.id, first.job.id);
    assert!(granted.grants.is_empty(), "{granted:?}");
}

/// Conformance case `ready_in_sees_only_queued_jobs_past_their_backoff`:
/// what a woken poll reads before handing its wake on.
pub async fn ready_in_sees_only_queued_jobs_past_their_backoff(s: &Store) {
    let (g, other) = (vec!["g".to_string()], vec!["other".to_string()]);
    assert!(!s.ready_in(&g, 0).await.expect("ready_in"), "empty store");
    s.submit(job(3, 2000), 0).await.expect("submit");
    assert!(s.ready_in(&g, 0).await.expect("ready_in"));
    assert!(
        !s.ready_in(&other, 0).await.expect("ready_in"),
        "another group"
    );
    let both = vec!["other".to_string(), "g".to_string()];
    assert!(s.ready_in(&both, 0).await.expect("ready_in"));
    let kinds = vec![JobKind::Noop];
    let got = s.grant(&req("a1", &g, &kinds), 10).await.expect("grant");
    assert_eq!(got.grants.len(), 1);
    assert!(!s.ready_in(&g, 10).await.expect("ready_in"), "running");
    // Requeued by expiry with a 100 ms backoff: ready only after it.
    s.expire_leases(5_000).await.expect("expire");
    assert!(
        !s.ready_in(&g, 5_050).await.expect("ready_in"),
        "in backoff"
    );
    assert!(s.ready_in(&g, 5_100).await.expect("ready_in"));
}

/// Conformance case `cancelled_holders_are_the_agents_of_cancelled_running_leases`:
/// what a starting controller marks for cancel notices — each agent holding
/// a running lease whose job was asked to cancel, once; not a queued job's
/// cancel, not the agent of an uncancelled lease, nobody once the job ended.
pub async fn cancelled_holders_are_the_agents_of_cancelled_running_leases(s: &Store) {
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    assert!(s.cancelled_holders().await.expect("holders").is_empty());
    let mut two = req("a1", &groups, &kinds);
    two.max = 2;
    let a = s.submit(job(2, 60_000), 0).await.expect("submit").job.id;
    let b = s.submit(job(2, 60_000), 0).await.expect("submit").job.id;
    let granted = s.grant(&two, 10).await.expect("grant").grants;
    assert_eq!(granted.len(), 2);
    let c = s.submit(job(2, 60_000), 20).await.expect("submit").job.id;
    assert_eq!(
        s.grant(&req("a2", &groups, &kinds), 30)
            .await
            .expect("grant")
            .grants
            .len(),
        1
    );
    let queued = s.submit(job(2, 60_000), 40).await.expect("submit").job.id;
    s.cancel(queued, 50).await.expect("cancel a queued job");
    assert!(s.cancelled_holders().await.expect("holders").is_empty());
    // a2's lease is not cancelled; both of a1's are: a1 once.
    s.cancel(a, 60).await.expect("cancel");
    s.cancel(b, 60).await.expect("cancel");
    assert_eq!(
        s.cancelled_holders().await.expect("holders"),
        vec!["a1".to_string()]
    );
    for g in &granted {
        s.complete(
            g.job_id,
            "a1",
            &creq(g.token, Completion::Cancelled, None),
            70,
        )
        .await
        .expect("complete");
    }
    assert!(s.cancelled_holders().await.expect("holders").is_empty());
    assert_eq!(s.get_job(c).await.expect("get").state, JobState::Running);
}
