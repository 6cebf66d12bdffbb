use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use baton_proto::{Capabilities, JobKind, LeaseRef, PollRequest, PollResponse, RetryPolicy};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::jobs::Jobs;
use crate::presence::Presence;
use crate::store::testutil::{enrolled, noop_job, store};
use crate::store::{Store, now_ms};

#[test]
fn the_reaper_sleeps_until_the_next_deadline_but_at_most_a_second() {
    assert_eq!(reaper_sleep(None, 0), REAPER_MAX_SLEEP);
    assert_eq!(reaper_sleep(Some(300), 0), Duration::from_millis(301));
    assert_eq!(reaper_sleep(Some(-5), 0), Duration::from_millis(1));
    // A deadline an hour away (a clock that was wrong when it was computed)
    // is looked at again within a second.
    assert_eq!(reaper_sleep(Some(3_600_000), 0), REAPER_MAX_SLEEP);
    assert_eq!(reaper_sleep(Some(i64::MAX), i64::MIN), REAPER_MAX_SLEEP);
}

/// A grant kicks the reaper only when its deadline may come before the
/// reaper's next look; with the shortest TTL a job may have, none does.
#[test]
fn only_leases_shorter_than_two_reaper_looks_kick_it() {
    use baton_proto::limits::MIN_LEASE_TTL_MS;
    assert!(!crate::dispatch::reaper::needs_kick(MIN_LEASE_TTL_MS));
    assert!(!crate::dispatch::reaper::needs_kick(2_000));
    assert!(crate::dispatch::reaper::needs_kick(1_999));
    assert!(crate::dispatch::reaper::needs_kick(0));
}

/// A lease whose deadline moves from an hour away to the past without a
/// kick (what a wrong clock did: renewed by a heartbeat stamped an hour
/// back) is expired within about a second, not when the hour has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_meets_a_deadline_that_moved_earlier_without_a_kick() {
    use crate::store::GrantRequest;

    let (store, _dir) = store().await;
    let ttl = 5_000u64;
    let new = noop_job(ttl, RetryPolicy::default());
    let id = store.submit(new, 0).await.expect("submit").job.id;
    let hour = 3_600_000;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let req = GrantRequest {
        agent_id: "a1",
        groups: &groups,
        kinds: &kinds,
        connections: &[],
        stores: &[],
        max: 1,
    };
    let granted = store.grant(&req, now_ms() + hour).await.expect("grant");
    assert_eq!(granted.grants.len(), 1);
    let jobs = Jobs::new(store.clone());
    let shutdown = CancellationToken::new();
    let reaper = tokio::spawn(reaper(jobs, Arc::new(Notify::new()), shutdown.clone()));
    // Let the reaper see the hour-away deadline and go to sleep.
    tokio::time::sleep(Duration::from_millis(200)).await;
    store
        .heartbeat(
            id,
            "a1",
            &crate::store::lease::beat(1, ""),
            now_ms() - ttl as i64 - 1,
        )
        .await
        .expect("heartbeat");
    let moved = std::time::Instant::now();
    while store
        .next_lease_deadline()
        .await
        .expect("deadline")
        .is_some()
    {
        assert!(
            moved.elapsed() < Duration::from_millis(2_500),
            "the overdue lease was not expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    reaper.await.expect("reaper");
}

/// What a long poll needs, owned by the test (no HTTP).
struct Rig {
    store: Store,
    jobs: Jobs,
    presence: Presence,
    kick: Notify,
    ready: AtomicBool,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// A real SQLite store with agent `a1` enrolled for group `g`.
    async fn new() -> Arc<Rig> {
        let (store, dir) = store().await;
        enrolled(&store, "a1", &["g"]).await;
        Arc::new(Rig {
            jobs: Jobs::new(store.clone()),
            store,
            presence: Presence::default(),
            kick: Notify::new(),
            ready: AtomicBool::new(true),
            shutdown: CancellationToken::new(),
            _dir: dir,
        })
    }

    /// Agent `a1` polls group `g` with one free slot, held at most `hold`.
    async fn poll(&self, hold: Duration) -> Result<PollResponse, Error> {
        self.poll_for(1, Vec::new(), hold).await
    }

    /// Agent `a1` polls group `g` with `free` slots, naming `leases`.
    async fn poll_for(
        &self,
        free: u32,
        leases: Vec<LeaseRef>,
        hold: Duration,
    ) -> Result<PollResponse, Error> {
        let req = PollRequest {
            groups: vec!["g".into()],
            free_slots: free,
            capabilities: Capabilities {
                kinds: vec![JobKind::Noop],
                connections: vec![],
                stores: Vec::new(),
            },
            version: "test".into(),
            os: "linux".into(),
            metrics: None,
            wait_ms: None,
            leases,
            failover_ms: None,
            completions: Vec::new(),
        };
        let d = Dispatcher {
            jobs: &self.jobs,
            presence: &self.presence,
            reaper_kick: &self.kick,
            ready: &self.ready,
            shutdown: &self.shutdown,
        };
        let poll = Poll {
            agent_id: "a1",
            req: &req,
            max_hold: hold,
            started: Instant::now(),
            received: now_ms(),
            cut: None,
        };
        long_poll(d, poll).await
    }

    /// Spawn a poll held at most `hold`; returns once it is held (it looked
    /// and found nothing) together with when it began.
    async fn held_poll(
        self: &Arc<Self>,
        hold: Duration,
    ) -> (
        tokio::task::JoinHandle<Result<PollResponse, Error>>,
        Instant,
    ) {
        let rig = self.clone();
        let began = Instant::now();
        let task = tokio::spawn(async move { rig.poll(hold).await });
        while self.presence.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Its first look (a grant that finds nothing) ends well within this.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !task.is_finished(),
            "the poll answered before any work came"
        );
        (task, began)
    }
}

/// A submit through the jobs service wakes a poll held on the job's group:
/// it answers with the grant at once, not when its 20 s hold runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_wakes_a_held_poll_with_its_grant() {
    let rig = Rig::new().await;
    let hold = Duration::from_secs(20);
    let (task, began) = rig.held_poll(hold).await;
    let job = rig
        .jobs
        .submit(noop_job(5_000, RetryPolicy::default()), now_ms())
        .await
        .expect("submit");
    assert!(job.created);
    let answer = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the held poll was not woken by the submit")
        .expect("join")
        .expect("poll");
    assert!(
        began.elapsed() < hold,
        "answered by its hold, not the wake-up"
    );
    assert_eq!(answer.grants.len(), 1, "{answer:?}");
    assert_eq!(answer.grants[0].job_id, job.job.id);
    assert!(!answer.drain);
    assert!(answer.grants[0].held_ms >= 300, "{:?}", answer.grants[0]);
    let stored = rig.store.get_job(job.job.id).await.expect("job");
    assert_eq!(stored.state, baton_proto::JobState::Running);
}

/// With nothing to run, a poll is held for its whole hold and then answers
/// empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_poll_answers_empty_after_its_hold() {
    let rig = Rig::new().await;
    let hold = Duration::from_millis(1_500);
    let began = Instant::now();
    let answer = rig.poll(hold).await.expect("poll");
    let took = began.elapsed();
    assert!(answer.grants.is_empty() && !answer.drain, "{answer:?}");
    assert!(took >= hold, "answered after {took:?}, before its hold");
    assert!(took < hold + Duration::from_secs(3), "held {took:?}");
}

/// A drain through the jobs service wakes the agent's held poll, which
/// answers `drain: true` at once; a poll while not ready is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_answers_a_held_poll_and_shutdown_refuses_new_ones() {
    let rig = Rig::new().await;
    let hold = Duration::from_secs(20);
    let (task, began) = rig.held_poll(hold).await;
    rig.jobs
        .set_drain("a1", true, "test", now_ms())
        .await
        .expect("drain");
    let answer = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the held poll was not woken by the drain")
        .expect("join")
        .expect("poll");
    assert!(began.elapsed() < hold);
    assert!(answer.drain && answer.grants.is_empty(), "{answer:?}");
    rig.ready.store(false, std::sync::atomic::Ordering::Release);
    assert!(matches!(rig.poll(hold).await, Err(Error::NotReady)));
}

/// A poll with no free slot that names a running lease is held for its
/// cancel notices only: a submit does not answer it, the operator's cancel
/// of that lease does, at once; a poll naming a stale token is not answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_answers_the_holders_notices_only_poll_at_once() {
    let rig = Rig::new().await;
    let job = rig
        .jobs
        .submit(noop_job(90_000, RetryPolicy::default()), now_ms())
        .await
        .expect("submit");
    let granted = rig.poll(Duration::from_secs(1)).await.expect("poll");
    let g = &granted.grants[0];
    let lease = LeaseRef {
        job_id: g.job_id,
        token: g.token,
    };
    let stale = LeaseRef {
        token: g.token - 1,
        ..lease
    };
    let hold = Duration::from_secs(20);
    let spawn = |leases: Vec<LeaseRef>| {
        let rig = rig.clone();
        tokio::spawn(async move { rig.poll_for(0, leases, hold).await })
    };
    let (notices, wrong) = (spawn(vec![lease]), spawn(vec![stale]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Work for the group does not answer a poll with no free slot.
    rig.jobs
        .submit(noop_job(5_000, RetryPolicy::default()), now_ms())
        .await
        .expect("submit");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!notices.is_finished() && !wrong.is_finished());
    let asked = Instant::now();
    let cancelled = rig.jobs.cancel(job.job.id, now_ms()).await.expect("cancel");
    assert_eq!(cancelled.state, baton_proto::JobState::Running);
    let answer = tokio::time::timeout(Duration::from_secs(10), notices)
        .await
        .expect("the cancel did not answer the held poll")
        .expect("join")
        .expect("poll");
    assert!(asked.elapsed() < hold, "answered by its hold");
    assert_eq!(answer.cancels, vec![lease], "{answer:?}");
    assert!(answer.grants.is_empty(), "{answer:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!wrong.is_finished(), "a stale token got a cancel notice");
    wrong.abort();
    // A new poll naming the cancelled lease is answered at once.
    let again = rig.poll_for(0, vec![lease], hold).await.expect("poll");
    assert_eq!(again.cancels, vec![lease]);
}

/// A poll with no free slot and no lease has nothing to wait for: it
/// answers at once (what agents that do not name leases get).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_with_no_slot_and_no_lease_answers_at_once() {
    let rig = Rig::new().await;
    let began = Instant::now();
    let answer = rig
        .poll_for(0, Vec::new(), Duration::from_secs(20))
        .await
        .expect("poll");
    assert!(answer.grants.is_empty() && answer.cancels.is_empty());
    assert!(began.elapsed() < Duration::from_secs(10));
}

/// A submit while a poll that can take the job is held hands the job to it
/// in the submit's own transaction: the poll answers with the grant, and the
/// group is not woken (its generation is unchanged) — one commit, no second
/// grant transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_hands_its_job_to_a_held_poll_without_waking_the_group() {
    let rig = Rig::new().await;
    let hold = Duration::from_secs(20);
    let (task, _) = rig.held_poll(hold).await;
    let generation = rig.jobs.group("g").generation();
    let job = rig
        .jobs
        .submit(noop_job(5_000, RetryPolicy::default()), now_ms())
        .await
        .expect("submit");
    let answer = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the held poll got nothing")
        .expect("join")
        .expect("poll");
    assert_eq!(answer.grants.len(), 1, "{answer:?}");
    assert_eq!(
        (answer.grants[0].job_id, answer.grants[0].token),
        (job.job.id, 1)
    );
    assert_eq!(
        rig.jobs.group("g").generation(),
        generation,
        "the group was woken: the job went the two-commit way"
    );
    let stored = rig.store.get_job(job.job.id).await.expect("job");
    assert_eq!(stored.state, baton_proto::JobState::Running);
    assert_eq!(stored.attempts.len(), 1);
}

/// A held poll whose agent was drained behind its back (straight in the
/// store, no wake-up) is taken by a submit, which grants it nothing: the job
/// stays queued, the group is woken, and the poll learns of the drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_that_grants_nothing_wakes_the_group() {
    let rig = Rig::new().await;
    let hold = Duration::from_secs(20);
    let (task, began) = rig.held_poll(hold).await;
    rig.store
        .set_drain("a1", true, now_ms())
        .await
        .expect("drain");
    let generation = rig.jobs.group("g").generation();
    let job = rig
        .jobs
        .submit(noop_job(5_000, RetryPolicy::default()), now_ms())
        .await
        .expect("submit");
    assert_ne!(rig.jobs.group("g").generation(), generation, "not woken");
    let answer = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the held poll was not answered")
        .expect("join")
        .expect("poll");
    assert!(began.elapsed() < hold, "answered by its hold");
    assert!(answer.grants.is_empty() && answer.drain, "{answer:?}");
    let stored = rig.store.get_job(job.job.id).await.expect("job");
    assert_eq!(stored.state, baton_proto::JobState::Queued);
}

mod wakes;
