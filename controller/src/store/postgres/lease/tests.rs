//! The lease contract with two replicas (two stores on one database)
//! running its paths at once. Skips without `BATON_TEST_PG_URL`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use baton_proto::{
    CompleteRequest, Completion, FencingToken, JobId, JobKind, JobResult, JobState, RetryPolicy,
};

use crate::store::Error;
use crate::store::jobs::{JobStore, NewBatch};
use crate::store::lease::{GrantRequest, LeaseStore};
use crate::store::postgres::PgStore;
use crate::store::postgres::testutil::two_replicas;
use crate::store::testutil::noop_job;

/// `n` queued noop jobs of group `g` (TTL `ttl`, one attempt, no retry).
async fn queue(s: &PgStore, n: usize, ttl: u64) -> Vec<JobId> {
    let retry = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    let batch = NewBatch {
        jobs: (0..n).map(|_| noop_job(ttl, retry.clone())).collect(),
        idempotency_key: None,
        request_hash: "q".into(),
    };
    let b = s.submit_batch(batch, 0).await.expect("queue");
    b.jobs.iter().map(|j| j.id).collect()
}

/// Grant to `agent` (at most `max`) until a grant gives nothing.
async fn grant_until_empty(s: Arc<PgStore>, agent: String, max: u32) -> Vec<(JobId, FencingToken)> {
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let mut got = Vec::new();
    loop {
        let req = GrantRequest {
            agent_id: &agent,
            groups: &groups,
            kinds: &kinds,
            connections: &[],
            stores: &[],
            max,
        };
        let g = s.grant(&req, 10).await.expect("grant");
        if g.grants.is_empty() {
            return got;
        }
        got.extend(g.grants.iter().map(|g| (g.job_id, g.token)));
    }
}

/// Issue 17 point 2: 200 queued jobs, two replicas with four grant loops
/// each: every job is granted exactly once, with token 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_grant_one_job_twice() {
    let Some((a, b, _guard)) = two_replicas().await else {
        return;
    };
    let ids = queue(&a, 200, 60_000).await;
    let mut loops = Vec::new();
    for (r, s) in [&a, &b].into_iter().enumerate() {
        for i in 0..4u32 {
            let agent = format!("agent-{r}-{i}");
            loops.push(tokio::spawn(grant_until_empty(s.clone(), agent, 1 + i % 3)));
        }
    }
    let mut granted: Vec<(JobId, FencingToken)> = Vec::new();
    for l in loops {
        granted.extend(l.await.expect("loop"));
    }
    let distinct: HashSet<JobId> = granted.iter().map(|(j, _)| *j).collect();
    assert_eq!(granted.len(), 200, "grants: {}", granted.len());
    assert_eq!(distinct, ids.iter().copied().collect::<HashSet<_>>());
    assert!(granted.iter().all(|(_, t)| *t == 1), "a token other than 1");
    let (attempts, tokens): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM attempts), (SELECT SUM(last_token)::bigint FROM jobs)",
    )
    .fetch_one(a.pool())
    .await
    .expect("count");
    assert_eq!((attempts, tokens), (200, 200));
}

fn done(token: FencingToken, completion: Completion) -> CompleteRequest {
    CompleteRequest {
        started_after_ms: None,
        token,
        completion,
        result: JobResult::default(),
        error: None,
    }
}

/// Issue 17 point 2: completions on one replica race the reaper of the
/// other, on leases that are due for both (the completing replica's clock
/// says 999, the reaper's 1000, the deadline is 1000). Each lease ends once:
/// either the completion is recorded and no reaper lists it, or one reaper
/// lists it and the completion is lease_lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_racing_completion_ends_each_lease_once() {
    let Some((a, b, _guard)) = two_replicas().await else {
        return;
    };
    const N: usize = 60;
    let ids = queue(&a, N, 1000).await;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let req = GrantRequest {
        agent_id: "a1",
        groups: &groups,
        kinds: &kinds,
        connections: &[],
        stores: &[],
        max: N as u32,
    };
    let g = a.grant(&req, 0).await.expect("grant");
    assert_eq!(g.grants.len(), N);
    let mut completions = Vec::new();
    for (i, id) in ids.iter().copied().enumerate() {
        let a = a.clone();
        // Half succeed (one statement), half fail (the locked path).
        let how = if i % 2 == 0 {
            Completion::Succeeded
        } else {
            Completion::Failed { retryable: false }
        };
        completions.push(tokio::spawn(async move {
            (id, a.complete(id, "a1", &done(1, how), 999).await)
        }));
    }
    let reapers: Vec<_> = (0..3)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.expire_leases(1000).await.expect("expire") })
        })
        .collect();
    let mut expired: HashMap<JobId, usize> = HashMap::new();
    for r in reapers {
        for (job, token, _) in r.await.expect("reaper").leases {
            assert_eq!(token, 1);
            *expired.entry(job).or_default() += 1;
        }
    }
    let mut won = 0;
    for c in completions {
        let (id, answer) = c.await.expect("completion");
        match answer {
            Ok((_, false, _, _)) => {
                won += 1;
                assert!(!expired.contains_key(&id), "job {id} completed and expired");
            }
            Err(Error::LeaseLost(_)) => {
                assert_eq!(
                    expired.get(&id),
                    Some(&1),
                    "job {id} lost but not expired once"
                );
            }
            other => panic!("job {id}: {other:?}"),
        }
    }
    assert!(expired.values().all(|n| *n == 1), "{expired:?}");
    assert_eq!(won + expired.len(), N);
    // Each job holds one ended attempt, whose outcome matches the winner.
    let ended: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM attempts WHERE ended_at IS NOT NULL AND outcome IS NOT NULL",
    )
    .fetch_one(a.pool())
    .await
    .expect("count");
    assert_eq!(ended, N as i64);
    let lost: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE outcome = 'lease_expired'")
            .fetch_one(a.pool())
            .await
            .expect("count");
    assert_eq!(lost as usize, expired.len());
    eprintln!("{won} completions won, {} expiries won", expired.len());
}

/// Heartbeats on one replica race the reaper of the other: a heartbeat
/// either renews the lease (and the reaper leaves it) or is lease_lost (and
/// the reaper ended it), never both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_racing_heartbeat_never_both() {
    let Some((a, b, _guard)) = two_replicas().await else {
        return;
    };
    const N: usize = 60;
    let ids = queue(&a, N, 1000).await;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let req = GrantRequest {
        agent_id: "a1",
        groups: &groups,
        kinds: &kinds,
        connections: &[],
        stores: &[],
        max: N as u32,
    };
    assert_eq!(a.grant(&req, 0).await.expect("grant").grants.len(), N);
    let beats: Vec<_> = ids
        .iter()
        .map(|id| {
            let (a, id) = (a.clone(), *id);
            tokio::spawn(async move {
                (
                    id,
                    a.heartbeat(id, "a1", &crate::store::lease::beat(1, ""), 999)
                        .await,
                )
            })
        })
        .collect();
    let reapers: Vec<_> = (0..3)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.expire_leases(1000).await.expect("expire") })
        })
        .collect();
    let mut expired: HashMap<JobId, usize> = HashMap::new();
    for r in reapers {
        for (job, _, _) in r.await.expect("reaper").leases {
            *expired.entry(job).or_default() += 1;
        }
    }
    let mut renewed = 0;
    for h in beats {
        let (id, answer) = h.await.expect("heartbeat");
        match answer {
            Ok(_) => {
                renewed += 1;
                assert!(!expired.contains_key(&id), "job {id} renewed and expired");
            }
            Err(Error::LeaseLost(_)) => assert_eq!(expired.get(&id), Some(&1), "job {id}"),
            Err(e) => panic!("job {id}: {e:?}"),
        }
    }
    assert_eq!(renewed + expired.len(), N);
    // The renewed leases hold until 1999, and end then.
    assert!(
        b.expire_leases(1998)
            .await
            .expect("expire")
            .leases
            .is_empty()
    );
    assert_eq!(
        b.expire_leases(1999).await.expect("expire").leases.len(),
        renewed
    );
    eprintln!("{renewed} heartbeats won, {} expiries won", expired.len());
}

/// A stale token never completes: after the reaper of one replica ended
/// lease 1 and the job went to another agent (token 2), the first holder's
/// completion on the other replica is lease_lost, and the second holder's
/// counts once even when delivered to both replicas at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_token_is_lease_lost_and_a_double_delivery_counts_once() {
    let Some((a, b, _guard)) = two_replicas().await else {
        return;
    };
    let retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff_ms: 0,
        max_backoff_ms: 0,
        jitter: 0.0,
        ..RetryPolicy::default()
    };
    let id = a
        .submit(noop_job(1000, retry), 0)
        .await
        .expect("submit")
        .job
        .id;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let req = |agent| GrantRequest {
        agent_id: agent,
        groups: &groups,
        kinds: &kinds,
        connections: &[],
        stores: &[],
        max: 1,
    };
    assert_eq!(
        a.grant(&req("a1"), 0).await.expect("grant").grants[0].token,
        1
    );
    let e = b.expire_leases(1000).await.expect("expire");
    assert_eq!(e.leases.len(), 1);
    assert!(
        b.expire_leases(1001)
            .await
            .expect("again")
            .leases
            .is_empty()
    );
    let g2 = b.grant(&req("a2"), 5000).await.expect("grant");
    assert_eq!(g2.grants[0].token, 2);
    let stale = a
        .complete(id, "a1", &done(1, Completion::Succeeded), 5001)
        .await;
    assert!(matches!(stale, Err(Error::LeaseLost(_))), "{stale:?}");
    let twice = done(2, Completion::Succeeded);
    let (x, y) = tokio::join!(
        a.complete(id, "a2", &twice, 5002),
        b.complete(id, "a2", &twice, 5002),
    );
    let (x, y) = (x.expect("a"), y.expect("b"));
    assert_eq!((x.0, y.0), (JobState::Succeeded, JobState::Succeeded));
    assert!(x.1 != y.1, "exactly one is the redelivery: {x:?} {y:?}");
    let spent: i64 = sqlx::query_scalar("SELECT attempts_spent FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(a.pool())
        .await
        .expect("spent");
    assert_eq!(spent, 2);
}

/// Operator cancels on one replica race grants on the other: a job the
/// cancel found queued ends cancelled and is granted to nobody; a job
/// granted first runs with its cancel mark set.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_racing_grant_either_cancels_or_marks() {
    let Some((a, b, _guard)) = two_replicas().await else {
        return;
    };
    const N: usize = 60;
    let ids = queue(&a, N, 60_000).await;
    let grants = tokio::spawn(grant_until_empty(a.clone(), "a1".into(), 1));
    let cancels: Vec<_> = ids
        .iter()
        .map(|id| {
            let (b, id) = (b.clone(), *id);
            tokio::spawn(async move { b.cancel(id, 10).await.expect("cancel") })
        })
        .collect();
    let granted: HashSet<JobId> = grants
        .await
        .expect("grants")
        .into_iter()
        .map(|(j, _)| j)
        .collect();
    for c in cancels {
        let v = c.await.expect("cancel");
        if granted.contains(&v.id) {
            assert_eq!(v.state, JobState::Running, "job {}", v.id);
            assert!(v.cancel_requested, "job {}", v.id);
        } else {
            assert_eq!(v.state, JobState::Cancelled, "job {}", v.id);
            assert!(v.attempts.is_empty(), "job {}", v.id);
        }
    }
    eprintln!("{} granted before their cancel", granted.len());
}

/// A drained agent is granted nothing (read in the grant statement).
#[tokio::test]
async fn a_drained_agent_is_granted_nothing() {
    let Some((a, _b, _guard)) = two_replicas().await else {
        return;
    };
    queue(&a, 1, 1000).await;
    sqlx::query(
        "INSERT INTO agents (id, groups, capabilities, version, os, first_seen, last_seen, drained_at)
         VALUES ('a1', '[\"g\"]', '{}', 'v', 'linux', 0, 0, 0)",
    )
    .execute(a.pool())
    .await
    .expect("agent");
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let req = |agent| GrantRequest {
        agent_id: agent,
        groups: &groups,
        kinds: &kinds,
        connections: &[],
        stores: &[],
        max: 1,
    };
    assert!(
        a.grant(&req("a1"), 1)
            .await
            .expect("grant")
            .grants
            .is_empty()
    );
    assert_eq!(a.grant(&req("a2"), 1).await.expect("grant").grants.len(), 1);
}
