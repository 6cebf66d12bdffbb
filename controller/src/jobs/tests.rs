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
        started_after_ms: None,
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
                stores: &[],
                max: 1,
            },
            now,
        )
        .await
        .expect("grant");
    assert_eq!(g.grants.len(), 1, "{g:?}");
    (g.grants[0].job_id, g.grants[0].token)
}

/// Group `g`'s generation as last seen.
struct Watch {
    group: Arc<Group>,
    seen: u64,
}

impl Watch {
    /// Whether `what` woke the group (bumped its generation) since the last look.
    fn woke(&mut self, expected: bool, what: &str) {
        let now = self.group.generation();
        assert_eq!(
            now > self.seen,
            expected,
            "{what}: generation {} -> {now}",
            self.seen
        );
        self.seen = now;
    }
}

/// The jobs service over a fresh store with agent `a1` enrolled for `g`,
/// and a watch on `g` (a polled group: its wake-ups count).
async fn rig() -> (Jobs, Watch, tempfile::TempDir) {
    let (s, dir) = store().await;
    enrolled(&s, "a1", &["g"]).await;
    let jobs = Jobs::new(s);
    let group = jobs.group("g");
    (jobs, Watch { group, seen: 0 }, dir)
}

/// The writes of a job's life that give group `g` work (submit, requeue by
/// completion, release, retry, expiry) wake it after they committed; the
/// others (a repeated submit, a grant, a success, a cancel) do not.
#[tokio::test]
async fn job_writes_that_give_work_wake_the_group_and_only_those() {
    let (jobs, mut w, _d) = rig().await;
    let t = now_ms();
    let mut first = noop_job(TTL, policy());
    first.idempotency_key = Some("k".into());
    let id = jobs.submit(first.clone(), t).await.expect("submit").job.id;
    w.woke(true, "submit");
    assert!(!jobs.submit(first, t).await.expect("again").created);
    w.woke(false, "a repeated submit");

    let (got, token) = grant_one(&jobs, t + 1).await;
    assert_eq!(got, id);
    w.woke(false, "a grant");
    let failed = done(token, Completion::Failed { retryable: true });
    let (state, _) = jobs.complete(id, "a1", &failed, t + 2).await.expect("fail");
    assert_eq!(state, JobState::Queued);
    w.woke(true, "a requeue by completion");

    let (_, token) = grant_one(&jobs, t + 3).await;
    let state = jobs.release(id, "a1", token, "shutdown", t + 4).await;
    assert_eq!(state.expect("release"), JobState::Queued);
    w.woke(true, "a release");

    let (_, token) = grant_one(&jobs, t + 5).await;
    let ok = done(token, Completion::Succeeded);
    let (state, _) = jobs.complete(id, "a1", &ok, t + 6).await.expect("ok");
    assert_eq!(state, JobState::Succeeded);
    w.woke(false, "a success");

    let second = jobs.submit(noop_job(TTL, policy()), t + 7).await;
    let second = second.expect("submit").job.id;
    w.woke(true, "submit");
    jobs.store().cancel(second, t + 8).await.expect("cancel");
    w.woke(false, "a cancel of a queued job");
    jobs.retry(second, t + 9).await.expect("retry");
    w.woke(true, "an operator retry");

    grant_one(&jobs, t + 10).await;
    let expired = jobs.expire(t + 10 + TTL as i64 + 1).await.expect("expire");
    assert_eq!(expired.leases.len(), 1);
    w.woke(true, "an expiry");

    let later = t + 20 + TTL as i64;
    let (_, token) = grant_one(&jobs, later).await;
    let held = baton_proto::LeaseRef {
        job_id: second,
        token,
    };
    let stale = baton_proto::LeaseRef {
        job_id: second,
        token: token - 1,
    };
    let done = jobs
        .abandon("a1", &[stale], later + 1)
        .await
        .expect("abandon");
    assert_eq!(done.results, vec![(stale, None)]);
    w.woke(false, "a restart report of a stale lease");
    let done = jobs
        .abandon("a1", &[held], later + 1)
        .await
        .expect("abandon");
    assert_eq!(done.results, vec![(held, Some(JobState::Queued))]);
    w.woke(true, "a restart report");
}

/// Drain, resume, revocation, a batch submit and a drill wake group `g`.
#[tokio::test]
async fn agent_batch_and_drill_writes_wake_the_group() {
    let (jobs, mut w, _d) = rig().await;
    let t = now_ms();
    jobs.set_drain("a1", true, "ops", t).await.expect("drain");
    w.woke(true, "a drain");
    jobs.set_drain("a1", false, "ops", t).await.expect("resume");
    w.woke(true, "a resume");

    let batch = NewBatch {
        jobs: vec![noop_job(TTL, policy()), noop_job(TTL, policy())],
        idempotency_key: None,
        request_hash: "b".into(),
    };
    let made = jobs.submit_batch(batch, t + 1).await.expect("batch");
    assert!(made.created && made.jobs.len() == 2);
    w.woke(true, "a batch submit");

    let (held, _) = grant_one(&jobs, t + 2).await;
    w.woke(false, "a grant");
    let r = jobs.revoke_agent("a1", "ops", t + 3).await;
    assert_eq!(r.expect("revoke").jobs, vec![held]);
    w.woke(true, "a revocation");

    let start = DrillStart {
        group: "g".into(),
        method: DrillMethod::Crash,
        duration_ms: None,
        job: None,
        rto_ms: None,
        lease_ttl_ms: Some(2_000),
        agent: None,
    };
    let (drill, job) = crate::drills::plan(
        &start,
        crate::drills::Limits {
            default_ttl_ms: 15_000,
            max_spec_bytes: 256 << 10,
            allow_controller_crash: false,
        },
        "ops",
    )
    .expect("plan");
    jobs.create_drill(&drill, job, t + 4).await.expect("drill");
    w.woke(true, "a drill");
}

/// A write the store refuses wakes nobody.
#[tokio::test]
async fn a_refused_write_wakes_nobody() {
    let (s, _d) = store().await;
    let jobs = Jobs::new(s);
    let group = jobs.group("g");
    let refused = jobs.release(42, "a1", 1, "shutdown", now_ms()).await;
    assert!(matches!(refused, Err(Error::Store(_))), "{refused:?}");
    assert!(jobs.retry(42, now_ms()).await.is_err());
    assert_eq!(group.generation(), 0);
}

#[tokio::test]
async fn wake_bumps_the_generation_and_wakes_registered_pollers() {
    let w = Wakers::default();
    w.wake("db", 1, &Need::Any); // nobody polls `db` yet: nothing to remember
    let g = w.get("db");
    assert_eq!(g.generation(), 0);
    let other = w.get("web");
    let p = Poller::new("a1", &[JobKind::Noop], &[], &[]);
    let _reg = p.register(std::slice::from_ref(&g));
    w.wake("db", 1, &Need::Any);
    assert_eq!(g.generation(), 1);
    assert_eq!(other.generation(), 0, "other groups keep their generation");
    // The registered poller was woken (it completes without another wake).
    tokio::time::timeout(std::time::Duration::from_secs(5), p.woken())
        .await
        .expect("woken");
    assert_eq!(p.take_handed().len(), 1);
    assert!(Arc::ptr_eq(&g, &w.get("db")));
}

/// The operator's cancel of a running job wakes its holder's waits (and
/// no other agent's); an agent has a wake-up entry only while one of its
/// polls waits for cancel notices.
#[tokio::test]
async fn a_cancel_wakes_the_holder_and_agent_entries_live_only_while_waited_on() {
    let (s, _dir) = store().await;
    enrolled(&s, "a1", &["g"]).await;
    let jobs = Jobs::new(s);
    jobs.submit(noop_job(TTL, policy()), now_ms())
        .await
        .expect("submit");
    let (id, _) = grant_one(&jobs, now_ms()).await;
    let (w1, w1b, other) = (
        jobs.agent_wait("a1"),
        jobs.agent_wait("a1"),
        jobs.agent_wait("a2"),
    );
    assert_eq!(jobs.wakers.agents_waiting(), 2);
    let mut woken = Box::pin(w1.notify.notified());
    woken.as_mut().enable();
    let mut not_woken = Box::pin(other.notify.notified());
    not_woken.as_mut().enable();
    let v = jobs.cancel(id, now_ms()).await.expect("cancel");
    assert_eq!(v.state, JobState::Running);
    tokio::time::timeout(std::time::Duration::from_secs(5), woken)
        .await
        .expect("the holder was not woken");
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(100), not_woken)
            .await
            .is_err(),
        "another agent was woken"
    );
    // The holder is marked until one of its polls finds nothing to tell;
    // a cancel since keeps the mark.
    let mark = jobs.cancel_mark("a1").expect("a1 marked");
    assert_eq!(jobs.cancel_mark("a2"), None);
    jobs.wakers.wake_agent("a1");
    jobs.cancels_told("a1", mark);
    let later = jobs.cancel_mark("a1").expect("a cancel came since");
    jobs.cancels_told("a1", later);
    assert_eq!(jobs.cancel_mark("a1"), None);
    drop(w1);
    assert_eq!(
        jobs.wakers.agents_waiting(),
        2,
        "a1 still has a waiting poll"
    );
    drop((w1b, other));
    assert_eq!(jobs.wakers.agents_waiting(), 0);
}

/// A controller that starts (a fresh `Jobs` over the same store) has none of
/// the previous run's cancel marks until `mark_cancelled_holders`, which
/// marks the holder of a cancelled running lease and no other agent.
#[tokio::test]
async fn a_restart_marks_the_holders_of_leases_cancelled_before_it() {
    let (s, _dir) = store().await;
    enrolled(&s, "a1", &["g"]).await;
    let before = Jobs::new(s.clone());
    before
        .submit(noop_job(TTL, policy()), now_ms())
        .await
        .expect("submit");
    let (id, _) = grant_one(&before, now_ms()).await;
    before.cancel(id, now_ms()).await.expect("cancel");
    assert!(before.cancel_mark("a1").is_some());
    drop(before);
    let after = Jobs::new(s);
    assert_eq!(after.cancel_mark("a1"), None, "marks live in memory");
    assert_eq!(after.mark_cancelled_holders().await.expect("mark"), 1);
    assert!(after.cancel_mark("a1").is_some(), "the holder is marked");
    assert_eq!(after.cancel_mark("a2"), None);
}

/// Whether the schedule timer was told a job may have ended (takes the
/// notice: the next look starts afresh).
fn timer_told(jobs: &Jobs) -> bool {
    use futures_util::FutureExt;
    jobs.ended().notified().now_or_never().is_some()
}

/// A plain job's end leaves the schedule timer asleep (its follow-up look
/// would find nothing); the end of a job a schedule made wakes it, and the
/// look then follows that job up.
#[tokio::test]
async fn only_the_end_of_a_job_a_schedule_made_wakes_the_schedule_timer() {
    use crate::store::conformance::schedules::{at, firing, occ, spec};
    use baton_proto::schedule::OccurrenceState;
    let (jobs, _w, _d) = rig().await;
    let t = now_ms();
    timer_told(&jobs);
    for (i, how) in [
        Completion::Succeeded,
        Completion::Failed { retryable: false },
    ]
    .into_iter()
    .enumerate()
    {
        let t = t + 1_000 * i as i64;
        let plain = jobs.submit(noop_job(TTL, policy()), t).await;
        let plain = plain.expect("submit").job.id;
        let (id, token) = grant_one(&jobs, t + 1).await;
        assert_eq!(id, plain);
        let (state, _) = jobs
            .complete(id, "a1", &done(token, how), t + 2)
            .await
            .expect("end");
        assert!(state.is_terminal(), "{state}");
        assert!(!timer_told(&jobs), "a plain job's end ({how:?})");

        let (sched, _) = jobs
            .store()
            .put_schedule(&spec(&format!("s{i}")), at(t), true, t)
            .await
            .expect("schedule");
        let fired = jobs
            .fire(
                &firing(
                    sched.id,
                    Some((t, t + 60_000)),
                    vec![occ(t, OccurrenceState::Fired)],
                ),
                t + 3,
            )
            .await
            .expect("fire");
        let made = fired.occurrences[0].job_id.expect("job made");
        let (id, token) = grant_one(&jobs, t + 4).await;
        assert_eq!(id, made);
        let (state, _) = jobs
            .complete(id, "a1", &done(token, how), t + 5)
            .await
            .expect("end");
        assert!(state.is_terminal(), "{state}");
        assert!(timer_told(&jobs), "a scheduled job's end ({how:?})");
        let followed = jobs.follow_up(t + 6, 10, TTL).await.expect("follow up");
        assert_eq!(followed.jobs, vec![made]);
    }
}

/// A submit handed to a parked poll lets the poll's task run (and answer
/// its agent) before the submit itself returns: the agent's start comes
/// before the submitter's 201, not after it and its log line.
#[tokio::test]
async fn a_handed_submit_lets_the_poll_answer_first() {
    let (jobs, _w, _d) = rig().await;
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let poll = {
        let (jobs, order) = (jobs.clone(), order.clone());
        tokio::spawn(async move {
            let mut ticket = jobs.park(crate::store::lease::OwnedGrant {
                agent_id: "a1".into(),
                groups: vec!["g".into()],
                kinds: vec![JobKind::Noop],
                connections: Vec::new(),
                stores: Vec::new(),
                max: 1,
            });
            let handed = ticket.handed().await;
            order.lock().expect("order").push("poll answered");
            handed
        })
    };
    // The test runtime has one thread: let the poll park first.
    while jobs.handoffs.is_empty() {
        tokio::task::yield_now().await;
    }
    let done = jobs
        .submit(noop_job(TTL, policy()), now_ms())
        .await
        .expect("submit");
    order.lock().expect("order").push("submit returned");
    let handed = poll.await.expect("poll task").expect("handed a grant");
    assert_eq!(handed.grants.len(), 1, "{handed:?}");
    assert_eq!(handed.grants[0].job_id, done.job.id);
    assert_eq!(
        *order.lock().expect("order"),
        ["poll answered", "submit returned"]
    );
}
