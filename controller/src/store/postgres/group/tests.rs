//! Group commit on PostgreSQL: calls arriving together share commits, each
//! still gets its own answer, and one bad call does not fail the others.
//! Skips without `BATON_TEST_PG_URL`.

use std::sync::Arc;

use baton_proto::{CompleteRequest, Completion, JobKind, JobState, RetryPolicy};

use crate::store::audit::{AuditRecord, AuditStore};
use crate::store::jobs::{JobStore, NewBatch};
use crate::store::lease::{GrantRequest, LeaseStore};
use crate::store::postgres::PgStore;
use crate::store::postgres::testutil::pg;
use crate::store::testutil::noop_job;

fn one_attempt() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    }
}

/// `n` jobs queued and granted to agent `a1`: (job, token) each.
async fn running(s: &PgStore, n: usize) -> Vec<(i64, i64)> {
    let batch = NewBatch {
        jobs: (0..n).map(|_| noop_job(60_000, one_attempt())).collect(),
        idempotency_key: None,
        request_hash: "q".into(),
    };
    s.submit_batch(batch, 0).await.expect("queue");
    let (groups, kinds) = (vec!["g".to_string()], vec![JobKind::Noop]);
    let req = GrantRequest {
        agent_id: "a1",
        groups: &groups,
        kinds: &kinds,
        connections: &[],
        stores: &[],
        max: n as u32,
    };
    let g = s.grant(&req, 10).await.expect("grant");
    assert_eq!(g.grants.len(), n, "every job granted");
    g.grants.iter().map(|g| (g.job_id, g.token)).collect()
}

fn success(token: i64) -> CompleteRequest {
    CompleteRequest {
        started_after_ms: None,
        token,
        completion: Completion::Succeeded,
        result: baton_proto::JobResult::default(),
        error: None,
    }
}

/// 200 successes sent at once: every one is recorded once and answered as
/// new, in fewer commits than calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_successes_share_commits_and_each_is_recorded() {
    let Some((s, _guard)) = pg().await else {
        return;
    };
    let leases = running(&s, 200).await;
    let mut set = tokio::task::JoinSet::new();
    for (job, token) in leases.clone() {
        let s = s.clone();
        set.spawn(async move { (job, s.complete(job, "a1", &success(token), 20).await) });
    }
    while let Some(r) = set.join_next().await {
        let (job, answer) = r.expect("task");
        let (state, redelivered, grp, _) = answer.expect("complete");
        assert_eq!(
            (state, redelivered, grp.as_str()),
            (JobState::Succeeded, false, "g"),
            "job {job}"
        );
    }
    for (job, _) in leases {
        let v = s.get_job(job).await.expect("get");
        assert_eq!(v.state, JobState::Succeeded, "job {job}");
        assert_eq!(v.attempts.len(), 1, "job {job}");
        assert!(v.attempts[0].ended_at.is_some(), "job {job}: attempt ended");
    }
    let (batches, calls) = s.groups.succeed.stats().get();
    assert_eq!(calls, 200, "every success went through the group");
    assert!(
        batches < calls,
        "{batches} commits for {calls} successes: none shared"
    );
}

/// The same success sent 20 times at once (an agent redelivering while the
/// first is queued): recorded once; one answer is new, the others are
/// redeliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_success_sent_twice_in_one_batch_is_recorded_once() {
    let Some((s, _guard)) = pg().await else {
        return;
    };
    let leases = running(&s, 1).await;
    let (job, token) = leases[0];
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let s = s.clone();
        set.spawn(async move { s.complete(job, "a1", &success(token), 20).await });
    }
    let mut fresh = 0;
    while let Some(r) = set.join_next().await {
        let (state, redelivered, _, _) = r.expect("task").expect("complete");
        assert_eq!(state, JobState::Succeeded);
        fresh += usize::from(!redelivered);
    }
    assert_eq!(fresh, 1, "exactly one answer records the success");
    let v = s.get_job(job).await.expect("get");
    assert_eq!((v.state, v.attempts.len()), (JobState::Succeeded, 1));
}

/// 20 audit entries at once, one of them unstorable (a NUL byte, which
/// PostgreSQL text refuses): that one fails alone; the 19 others are in
/// the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_bad_entry_fails_alone_and_the_others_are_written() {
    let Some((s, _guard)) = pg().await else {
        return;
    };
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let s = s.clone();
        set.spawn(async move {
            let actor = if i == 7 {
                "bad\0actor".to_owned()
            } else {
                format!("op{i}")
            };
            let r = AuditRecord {
                actor,
                role: "operator".into(),
                action: "POST /v1/jobs".into(),
                target: "/v1/jobs".into(),
                status: 201,
                error: None,
            };
            (i, s.audit_grouped(&r, 5).await)
        });
    }
    while let Some(r) = set.join_next().await {
        let (i, res) = r.expect("task");
        assert_eq!(res.is_err(), i == 7, "entry {i}: {res:?}");
    }
    let log = s.list_audit(None, None, 100).await.expect("list");
    let mut actors: Vec<String> = log.entries.iter().map(|e| e.actor.clone()).collect();
    actors.sort();
    let mut want: Vec<String> = (0..20)
        .filter(|i| *i != 7)
        .map(|i| format!("op{i}"))
        .collect();
    want.sort();
    assert_eq!(actors, want);
}

/// 100 submits without a key at once: 100 distinct jobs, each as
/// submitted, in fewer commits than submits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_unkeyed_submits_share_commits_and_each_gets_its_job() {
    let Some((s, _guard)) = pg().await else {
        return;
    };
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100u64 {
        let s: Arc<PgStore> = s.clone();
        set.spawn(async move {
            let ttl = 10_000 + i;
            let out = s
                .submit(noop_job(ttl, one_attempt()), 1_000 + i as i64)
                .await;
            (ttl, i, out)
        });
    }
    let mut ids = std::collections::HashSet::new();
    while let Some(r) = set.join_next().await {
        let (ttl, i, out) = r.expect("task");
        let sub = out.expect("submit");
        assert!(sub.created);
        assert!(
            ids.insert(sub.job.id),
            "job id {} answered twice",
            sub.job.id
        );
        let stored = s.get_job(sub.job.id).await.expect("get");
        assert_eq!(
            stored.lease_ttl_ms, ttl,
            "submit {i} answered another's job"
        );
        assert_eq!(stored.created_at, sub.job.created_at);
        assert_eq!(
            stored.created_at.timestamp_millis(),
            1_000 + i as i64,
            "submit {i}'s own time"
        );
        assert_eq!(stored.state, JobState::Queued);
    }
    assert_eq!(ids.len(), 100);
    let (batches, calls) = s.groups.submit.stats().get();
    assert_eq!(calls, 100);
    assert!(
        batches < calls,
        "{batches} commits for {calls} submits: none shared"
    );
}
