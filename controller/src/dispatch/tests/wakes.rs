//! Targeted wake-ups through the real jobs service, store and long poll:
//! one job wakes one poll, a poll that cannot take the job hands the wake
//! on, and many jobs wake enough polls to take them all.

use std::time::Duration;

use baton_proto::JobSpec;
use tokio::task::JoinHandle;

use super::*;
use crate::store::jobs::NewBatch;

/// What a simulated agent's poll asks.
#[derive(Clone)]
struct Agent {
    id: String,
    kinds: Vec<JobKind>,
    connections: Vec<&'static str>,
    free: u32,
}

impl Agent {
    fn noop(id: String) -> Agent {
        Agent {
            id,
            kinds: vec![JobKind::Noop],
            connections: Vec::new(),
            free: 1,
        }
    }
}

impl Rig {
    /// Agent `a` polls group `g`, held at most `hold`.
    async fn poll_as(&self, a: &Agent, hold: Duration) -> Result<PollResponse, Error> {
        let req = PollRequest {
            groups: vec!["g".into()],
            free_slots: a.free,
            capabilities: Capabilities {
                kinds: a.kinds.clone(),
                connections: a
                    .connections
                    .iter()
                    .map(|c| baton_proto::ConnectionInfo {
                        name: (*c).into(),
                        kind: "mysql".into(),
                    })
                    .collect(),
                stores: Vec::new(),
            },
            version: "test".into(),
            os: "linux".into(),
            metrics: None,
            wait_ms: None,
            leases: Vec::new(),
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
            agent_id: &a.id,
            req: &req,
            max_hold: hold,
            started: Instant::now(),
            received: now_ms(),
            cut: None,
        };
        long_poll(d, poll).await
    }

    /// Enroll `agents` and hold a 30 s poll for each, in this order (the
    /// first is the longest held); returns once all of them wait.
    async fn hold_all(
        self: &Arc<Self>,
        agents: &[Agent],
    ) -> Vec<JoinHandle<Result<PollResponse, Error>>> {
        let group = self.jobs.group("g");
        let mut tasks = Vec::new();
        for a in agents {
            enrolled(&self.store, &a.id, &["g"]).await;
            let before = group.waiting();
            let (rig, a) = (self.clone(), a.clone());
            tasks.push(tokio::spawn(async move {
                rig.poll_as(&a, Duration::from_secs(30)).await
            }));
            wait_for(|| group.waiting() > before, "the poll to wait").await;
        }
        // Their first looks are done: each waits in the queue.
        tokio::time::sleep(Duration::from_millis(100)).await;
        tasks
    }
}

/// Wait until `cond` holds (10 s at most).
async fn wait_for(cond: impl Fn() -> bool, what: &str) {
    let end = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The granted answers among `tasks` once `n` of them answered; the
/// others are still held (and aborted).
async fn answers(
    tasks: Vec<JoinHandle<Result<PollResponse, Error>>>,
    n: usize,
) -> Vec<(usize, PollResponse)> {
    wait_for(
        || tasks.iter().filter(|t| t.is_finished()).count() >= n,
        "the grants",
    )
    .await;
    // Give any further (wrong) answer time to show.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut out = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if t.is_finished() {
            out.push((i, t.await.expect("join").expect("poll")));
        } else {
            t.abort();
        }
    }
    out
}

/// The answers with a grant (a poll that saw its agent's drain answers
/// `drain: true` at once).
fn granted(answers: Vec<(usize, PollResponse)>) -> Vec<(usize, PollResponse)> {
    answers
        .into_iter()
        .filter(|(_, a)| {
            assert!(a.drain || !a.grants.is_empty(), "an empty answer: {a:?}");
            !a.grants.is_empty()
        })
        .collect()
}

fn sql_job(connection: &str) -> crate::store::jobs::NewJob {
    let mut j = noop_job(5_000, RetryPolicy::default());
    j.submit.spec = serde_json::from_value(serde_json::json!({
        "kind": "sql", "connection": connection, "sql": "select 1"
    }))
    .expect("sql spec");
    assert!(matches!(j.submit.spec, JobSpec::Sql(_)));
    j
}

/// One job for a group of 100 idle polls wakes one of them (at most two),
/// which takes it; the other 99 sleep on. (A batch of one: a single submit
/// would hand the job to a parked poll without any wake, `jobs::handoff`,
/// tested below.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_wakes_one_of_a_hundred_idle_polls() {
    let rig = Rig::new().await;
    let agents: Vec<Agent> = (0..100).map(|i| Agent::noop(format!("s{i:03}"))).collect();
    let tasks = rig.hold_all(&agents).await;
    let group = rig.jobs.group("g");
    let woken_before = group.woken_total();
    let batch = NewBatch {
        jobs: vec![noop_job(5_000, RetryPolicy::default())],
        idempotency_key: None,
        request_hash: "one".into(),
    };
    let done = rig
        .jobs
        .submit_batch(batch, now_ms())
        .await
        .expect("submit");
    let got = answers(tasks, 1).await;
    let woken = group.woken_total() - woken_before;
    assert_eq!(got.len(), 1, "only the granted poll answers: {got:?}");
    assert_eq!(got[0].1.grants[0].job_id, done.jobs[0].id);
    assert!((1..=2).contains(&woken), "{woken} polls woken for one job");
}

/// A single submit to the same 100 idle polls hands its job to one parked
/// poll in the submit's transaction: that poll answers, nobody is woken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_submit_to_a_hundred_idle_polls_wakes_none() {
    let rig = Rig::new().await;
    let agents: Vec<Agent> = (0..100).map(|i| Agent::noop(format!("s{i:03}"))).collect();
    let tasks = rig.hold_all(&agents).await;
    let group = rig.jobs.group("g");
    let woken_before = group.woken_total();
    let job = rig
        .jobs
        .submit(noop_job(5_000, RetryPolicy::default()), now_ms())
        .await
        .expect("submit");
    let got = answers(tasks, 1).await;
    assert_eq!(got.len(), 1, "only the granted poll answers: {got:?}");
    assert_eq!(got[0].1.grants[0].job_id, job.job.id);
    assert_eq!(group.woken_total() - woken_before, 0, "a poll was woken");
}

/// A poll that cannot take the job (another connection, a drain its poll
/// has not seen yet) hands the wake on, and a poll that can gets the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_that_cannot_take_the_job_hands_the_wake_on() {
    let rig = Rig::new().await;
    let plain = Agent::noop("plain".into());
    let mut drained = Agent::noop("drained".into());
    drained.kinds.push(JobKind::Sql);
    drained.connections.push("db");
    let able = Agent {
        id: "able".into(),
        ..drained.clone()
    };
    // Longest held first: the two that cannot take the job.
    let tasks = rig.hold_all(&[plain, drained, able]).await;
    // Drained in the store only: no wake, so its poll does not know yet.
    rig.store
        .set_drain("drained", true, now_ms())
        .await
        .expect("drain");
    // A sql job that went back to the queue (a release, whose wake does
    // not know what the job needs): the oldest poll (`plain`) is woken,
    // cannot take it, and hands the wake on.
    let job = rig
        .store
        .submit(sql_job("db"), now_ms())
        .await
        .expect("submit");
    let holder = Agent {
        id: "holder".into(),
        ..Agent::noop(String::new())
    };
    enrolled(&rig.store, "holder", &["g"]).await;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Sql];
    let conns = vec!["db".to_string()];
    let g = rig
        .store
        .grant(
            &crate::store::GrantRequest {
                agent_id: &holder.id,
                groups: &groups,
                kinds: &kinds,
                connections: &conns,
                stores: &[],
                max: 1,
            },
            now_ms(),
        )
        .await
        .expect("grant");
    assert_eq!(g.grants.len(), 1);
    rig.jobs
        .release(job.job.id, "holder", g.grants[0].token, "test", now_ms())
        .await
        .expect("release");
    let got = granted(answers(tasks, 1).await);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, 2, "the able poll took it: {got:?}");
    assert_eq!(got[0].1.grants[0].job_id, job.job.id);
}

/// The drained poll hands a submit's wake on too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_poll_hands_a_submits_wake_on() {
    let rig = Rig::new().await;
    let tasks = rig
        .hold_all(&[Agent::noop("drained".into()), Agent::noop("able".into())])
        .await;
    rig.store
        .set_drain("drained", true, now_ms())
        .await
        .expect("drain");
    let job = rig
        .jobs
        .submit(noop_job(5_000, RetryPolicy::default()), now_ms())
        .await
        .expect("submit");
    let got = granted(answers(tasks, 1).await);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, 1, "the able poll took it: {got:?}");
    assert_eq!(got[0].1.grants[0].job_id, job.job.id);
}

/// A batch of 10 jobs wakes enough of 20 one-slot polls to take them all;
/// three jobs requeued by one wake (a revocation wakes each group once)
/// are all taken too: a poll that took all it could while work remains
/// hands the wake on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_jobs_at_once_wake_enough_polls_to_take_them_all() {
    let rig = Rig::new().await;
    let agents: Vec<Agent> = (0..20).map(|i| Agent::noop(format!("s{i:02}"))).collect();
    let tasks = rig.hold_all(&agents).await;
    let group = rig.jobs.group("g");
    let before = group.woken_total();
    let batch = NewBatch {
        jobs: (0..10)
            .map(|_| noop_job(5_000, RetryPolicy::default()))
            .collect(),
        idempotency_key: None,
        request_hash: "b".into(),
    };
    rig.jobs.submit_batch(batch, now_ms()).await.expect("batch");
    let got = answers(tasks, 10).await;
    assert_eq!(got.len(), 10, "{got:?}");
    assert!(got.iter().all(|(_, a)| a.grants.len() == 1));
    let woken = group.woken_total() - before;
    // Each job wakes one poll; a poll that took all it could checks for
    // work left and may hand its wake on while the others' grants are
    // still under way: at most two per job.
    assert!(
        (10..=20).contains(&woken),
        "{woken} polls woken for 10 jobs"
    );

    // Three jobs held by one agent, requeued by its revocation.
    let mut held = Agent::noop("held".into());
    held.free = 3;
    enrolled(&rig.store, "held", &["g"]).await;
    for _ in 0..3 {
        rig.store
            .submit(noop_job(5_000, RetryPolicy::default()), now_ms())
            .await
            .expect("submit");
    }
    let first = rig
        .poll_as(&held, Duration::from_secs(1))
        .await
        .expect("poll");
    assert_eq!(first.grants.len(), 3);
    let agents: Vec<Agent> = (0..6).map(|i| Agent::noop(format!("t{i}"))).collect();
    let tasks = rig.hold_all(&agents).await;
    let r = rig
        .jobs
        .revoke_agent("held", "test", now_ms())
        .await
        .expect("revoke");
    assert_eq!(r.jobs.len(), 3);
    let got = answers(tasks, 3).await;
    assert_eq!(got.len(), 3, "{got:?}");
}
