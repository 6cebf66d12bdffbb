use baton_proto::drill::{DrillMethod, DrillStart};
use baton_proto::{Completion, JobKind, JobResult, RetryOn, RetryPolicy};

use super::*;
use crate::store::jobs::NewBatch;
use crate::store::now_ms;
use crate::store::testutil::{enrolled, noop_job, store};

const TTL: u64 = 5_000;

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff_ms: 0,
        jitter: 0.0,
        retry_on: vec![RetryOn::Error, RetryOn::LeaseExpired],
        ..RetryPolicy::default()
    }
}

fn done(token: FencingToken, completion: Completion) -> CompleteRequest {
    CompleteRequest {
        token,
        completion,
        result: JobResult::default(),
        error: Some("boom".into()),
    }
}

/// Grant agent `a1` one job of group `g` at `now`: `(job, token)`.
async fn grant_one(jobs: &Jobs, now: i64) -> (JobId, FencingToken) {
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let g = jobs
        .grant(
            &GrantRequest {
                agent_id: "a1",
                groups: &groups,
                kinds: &kinds,
                connections: &[],
                max: 1,
            },
            now,
        )
        .await
        .expect("grant");
    assert_eq!(g.grants.len(), 1, "{g:?}");
    (g.grants[0].job_id, g.grants[0].token)
}

/// Every write that can give group `g` work bumps its generation (wakes its
/// pollers) after it committed; writes that give no work do not.
#[tokio::test]
async fn every_write_that_gives_work_wakes_the_group_and_only_those() {
    let (s, _d) = store().await;
    enrolled(&s, "a1", &["g"]).await;
    let wakers = Arc::new(Wakers::default());
    let group = wakers.get("g");
    let jobs = Jobs::new(s.clone(), wakers.clone());
    let mut seen = 0;
    let mut woke = |expected: bool, what: &str| {
        let now = group.generation();
        assert_eq!(now > seen, expected, "{what}: generation {seen} -> {now}");
        seen = now;
    };
    let t = now_ms();

    let mut first = noop_job(TTL, policy());
    first.idempotency_key = Some("k".into());
    let id = jobs.submit(first.clone(), t).await.expect("submit").job.id;
    woke(true, "submit");
    assert!(!jobs.submit(first, t).await.expect("again").created);
    woke(false, "a repeated submit");

    let (got, token) = grant_one(&jobs, t + 1).await;
    assert_eq!(got, id);
    woke(false, "a grant");
    let failed = done(token, Completion::Failed { retryable: true });
    let (state, _) = jobs.complete(id, "a1", &failed, t + 2).await.expect("fail");
    assert_eq!(state, JobState::Queued);
    woke(true, "a requeue by completion");

    let (_, token) = grant_one(&jobs, t + 3).await;
    let state = jobs.release(id, "a1", token, "shutdown", t + 4).await;
    assert_eq!(state.expect("release"), JobState::Queued);
    woke(true, "a release");

    let (_, token) = grant_one(&jobs, t + 5).await;
    let ok = done(token, Completion::Succeeded);
    let (state, _) = jobs.complete(id, "a1", &ok, t + 6).await.expect("ok");
    assert_eq!(state, JobState::Succeeded);
    woke(false, "a success");

    let second = jobs
        .submit(noop_job(TTL, policy()), t + 7)
        .await
        .expect("submit")
        .job
        .id;
    woke(true, "submit");
    s.cancel(second, t + 8).await.expect("cancel");
    woke(false, "a cancel of a queued job");
    jobs.retry(second, t + 9).await.expect("retry");
    woke(true, "an operator retry");

    grant_one(&jobs, t + 10).await;
    let expired = jobs.expire(t + 10 + TTL as i64 + 1).await.expect("expire");
    assert_eq!(expired.leases.len(), 1);
    woke(true, "an expiry");

    let later = t + 2 * TTL as i64 + 100;
    jobs.set_drain("a1", true, "ops", later)
        .await
        .expect("drain");
    woke(true, "a drain");
    jobs.set_drain("a1", false, "ops", later)
        .await
        .expect("resume");
    woke(true, "a resume");

    grant_one(&jobs, later + 1).await;
    let r = jobs.revoke_agent("a1", "ops", later + 2).await;
    assert_eq!(r.expect("revoke").jobs, vec![second]);
    woke(true, "a revocation");

    let batch = NewBatch {
        jobs: vec![noop_job(TTL, policy()), noop_job(TTL, policy())],
        idempotency_key: None,
        request_hash: "b".into(),
    };
    let made = jobs.submit_batch(batch, later + 3).await.expect("batch");
    assert!(made.created && made.jobs.len() == 2);
    woke(true, "a batch submit");

    let start = DrillStart {
        group: "g".into(),
        method: DrillMethod::Crash,
        duration_ms: None,
        job: None,
        rto_ms: None,
        lease_ttl_ms: Some(2_000),
    };
    let (drill, job) = crate::drills::plan(&start, 15_000, 256 << 10, "ops").expect("plan");
    jobs.create_drill(&drill, job, later + 4)
        .await
        .expect("drill");
    woke(true, "a drill");
}

/// A write the store refuses wakes nobody.
#[tokio::test]
async fn a_refused_write_wakes_nobody() {
    let (s, _d) = store().await;
    let wakers = Arc::new(Wakers::default());
    let group = wakers.get("g");
    let jobs = Jobs::new(s, wakers.clone());
    let refused = jobs.release(42, "a1", 1, "shutdown", now_ms()).await;
    assert!(matches!(refused, Err(Error::Store(_))), "{refused:?}");
    assert!(jobs.retry(42, now_ms()).await.is_err());
    assert_eq!(group.generation(), 0);
}
