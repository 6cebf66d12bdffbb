//! Two replicas (two stores on one PostgreSQL scratch database, each with
//! its own jobs service, presence and signals task): a change on one
//! reaches the polls held on the other well before their hold ends, with
//! the listener, after its connection was killed, and with `poll_only`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use baton_proto::{Capabilities, JobKind, LeaseRef, PollRequest, PollResponse, RetryPolicy};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::dispatch::{self, Dispatcher, Poll};
use crate::jobs::Jobs;
use crate::presence::Presence;
use crate::store::postgres::{PgStore, testutil};
use crate::store::testutil::{enrolled, noop_job};
use crate::store::{Store, now_ms};

/// The hold of every poll here: an answer well before it came from a wake.
const HOLD: Duration = Duration::from_secs(20);
/// What a wake from another replica may take at most here (the periodic
/// look is 1 s; the listener far less).
const BOUND: Duration = Duration::from_secs(3);

struct Replica {
    store: Store,
    jobs: Jobs,
    presence: Presence,
    kick: Notify,
    ready: AtomicBool,
    shutdown: CancellationToken,
}

impl Replica {
    async fn open(url: &str, poll_only: bool) -> Arc<Replica> {
        let mut o = testutil::options(url);
        o.poll_only = poll_only;
        let store = Store::new(Arc::new(PgStore::open(&o).await.expect("open")));
        let r = Arc::new(Replica {
            jobs: Jobs::new(store.clone()),
            store,
            presence: Presence::default(),
            kick: Notify::new(),
            ready: AtomicBool::new(true),
            shutdown: CancellationToken::new(),
        });
        tokio::spawn(r.jobs.clone().run_signals(r.shutdown.clone()));
        r
    }

    /// Agent `a1` polls group `g` with `free` slots, naming `leases`.
    async fn poll(&self, free: u32, leases: Vec<LeaseRef>) -> PollResponse {
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
            max_hold: HOLD,
            started: Instant::now(),
            received: now_ms(),
            cut: None,
        };
        dispatch::long_poll(d, poll).await.expect("poll")
    }

    /// A poll held here (it looked once and found nothing).
    async fn held(
        self: &Arc<Self>,
        free: u32,
        leases: Vec<LeaseRef>,
    ) -> tokio::task::JoinHandle<PollResponse> {
        let r = self.clone();
        let task = tokio::spawn(async move { r.poll(free, leases).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        if task.is_finished() {
            panic!("the poll answered before any change: {:?}", task.await);
        }
        task
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Its answer within [`BOUND`] (a 20 s hold: only a wake-up answers so soon).
async fn answered(task: tokio::task::JoinHandle<PollResponse>, what: &str) -> PollResponse {
    let since = Instant::now();
    let a = tokio::time::timeout(BOUND, task)
        .await
        .unwrap_or_else(|_| panic!("{what}: the held poll was not woken within {BOUND:?}"))
        .expect("join");
    eprintln!("{what}: answered {:?} after the change", since.elapsed());
    a
}

/// Until both replicas listen (their listeners start with the task).
async fn both_listening(url: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while testutil::listeners(url).await.len() < 2 {
        assert!(Instant::now() < until, "the listeners did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two replicas and agent `a1` enrolled for group `g`.
async fn pair(poll_only: bool) -> Option<(Arc<Replica>, Arc<Replica>, String, testutil::Scratch)> {
    let (url, guard) = testutil::scratch_database().await?;
    let a = Replica::open(&url, poll_only).await;
    let b = Replica::open(&url, poll_only).await;
    enrolled(&a.store, "a1", &["g"]).await;
    Some((a, b, url, guard))
}

async fn submit(r: &Replica) -> baton_proto::JobId {
    let done = r
        .jobs
        // A lease no test here outlives (nobody heartbeats).
        .submit(noop_job(600_000, RetryPolicy::default()), now_ms())
        .await
        .expect("submit");
    done.job.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_on_one_replica_wakes_a_poll_held_on_the_other() {
    let Some((a, b, url, _g)) = pair(false).await else {
        return;
    };
    both_listening(&url).await;
    let task = b.held(1, vec![]).await;
    let id = submit(&a).await;
    let answer = answered(task, "listening").await;
    assert_eq!(answer.grants.len(), 1, "{answer:?}");
    assert_eq!(answer.grants[0].job_id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_listener_killed_a_submit_still_reaches_the_other_replica() {
    let Some((a, b, url, _g)) = pair(false).await else {
        return;
    };
    both_listening(&url).await;
    let task = b.held(1, vec![]).await;
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&mut c)
    .await
    .expect("terminate");
    assert_eq!(killed, [true, true]);
    // Sent while nobody listens: this signal is lost.
    let id = submit(&a).await;
    let answer = answered(task, "listener killed").await;
    assert_eq!(answer.grants.len(), 1, "{answer:?}");
    assert_eq!(answer.grants[0].job_id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_only_replicas_never_listen_and_still_wake_each_other() {
    let Some((a, b, url, _g)) = pair(true).await else {
        return;
    };
    let task = b.held(1, vec![]).await;
    assert!(testutil::listeners(&url).await.is_empty(), "no LISTEN");
    let id = submit(&a).await;
    let answer = answered(task, "poll_only").await;
    assert_eq!(answer.grants.len(), 1, "{answer:?}");
    assert_eq!(answer.grants[0].job_id, id);
}

/// An operator's cancel on A reaches the holder's notices-only poll on B.
async fn cancel_reaches_the_other_replica(poll_only: bool) {
    let Some((a, b, url, _g)) = pair(poll_only).await else {
        return;
    };
    if !poll_only {
        both_listening(&url).await;
    }
    let id = submit(&a).await;
    let granted = b.poll(1, vec![]).await;
    assert_eq!(granted.grants.len(), 1, "{granted:?}");
    let lease = LeaseRef {
        job_id: id,
        token: granted.grants[0].token,
    };
    let task = b.held(0, vec![lease]).await;
    a.jobs.cancel(id, now_ms()).await.expect("cancel");
    let answer = answered(task, "cancel").await;
    assert_eq!(answer.cancels, [lease]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_one_replica_reaches_the_holder_polling_the_other() {
    cancel_reaches_the_other_replica(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_other_replica_in_poll_only_mode() {
    cancel_reaches_the_other_replica(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_on_one_replica_is_told_by_a_poll_held_on_the_other() {
    for poll_only in [false, true] {
        let Some((a, b, url, _g)) = pair(poll_only).await else {
            return;
        };
        if !poll_only {
            both_listening(&url).await;
        }
        let task = b.held(1, vec![]).await;
        a.jobs
            .set_drain("a1", true, "test", now_ms())
            .await
            .expect("drain");
        let answer = answered(
            task,
            if poll_only {
                "drain, poll_only"
            } else {
                "drain"
            },
        )
        .await;
        assert!(answer.drain, "{answer:?}");
    }
}

/// CPU of this process (user + system), in clock ticks.
fn cpu_ticks() -> u64 {
    proc_ticks("self")
}

/// CPU (user + system) of process `pid`, in clock ticks.
fn proc_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // Fields 14 and 15 (utime, stime); the first number after the name
    // is field 4 (field 3, the state, is a letter).
    f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)
}

/// What the signals cost an idle replica (a measurement, not a test):
/// `cargo test -p baton-controller --lib measure_an_idle_replica -- --ignored --nocapture`.
/// One replica with 50 groups polled, 10,000 agents (10 drained) and 1,000
/// queued jobs of other groups in the store, 20 s idle, listening and
/// poll_only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn measure_an_idle_replica() {
    for poll_only in [false, true] {
        let Some((url, _g)) = testutil::scratch_database().await else {
            return;
        };
        let r = Replica::open(&url, poll_only).await;
        fill(&url).await;
        for i in 0..50 {
            r.jobs.group(&format!("g{i}"));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The database's side: the backends of the scratch database (same host).
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
            .await
            .expect("connect");
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut c)
        .await
        .expect("backends");
        let db = || pids.iter().map(|p| proc_ticks(&p.to_string())).sum::<u64>();
        let (t0, c0, d0) = (Instant::now(), cpu_ticks(), db());
        tokio::time::sleep(Duration::from_secs(20)).await;
        let secs = t0.elapsed().as_secs_f64();
        let (ticks, dticks) = ((cpu_ticks() - c0) as f64, (db() - d0) as f64);
        eprintln!(
            "idle replica (poll_only: {poll_only}): controller {:.2} %, database {:.2} % of a core ({ticks} and {dticks} ticks in {secs:.1} s, {} backends)",
            ticks / secs,
            dticks / secs,
            pids.len()
        );
        r.shutdown.cancel();
    }
}

/// 10,000 agents (10 drained) and 1,000 queued jobs of groups nobody polls.
async fn fill(url: &str) {
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .expect("connect");
    sqlx::query(
        "INSERT INTO agents (id, groups, capabilities, version, os, first_seen, last_seen, metrics, drained_at) \
         SELECT 'agt_' || i, '[\"g' || (i % 50) || '\"]', '{}', '1', 'linux', 0, 0, repeat('m', 200), \
                CASE WHEN i % 1000 = 0 THEN 5 END FROM generate_series(1, 10000) AS i",
    )
    .execute(&mut c)
    .await
    .expect("agents");
    sqlx::query(
        "INSERT INTO jobs (grp, kind, spec, retry, lease_ttl_ms, state, not_before, created_at, updated_at) \
         SELECT 'other' || (i % 50), 'noop', '{}', '{}', 30000, 'queued', 0, 0, 0 FROM generate_series(1, 1000) AS i",
    )
    .execute(&mut c)
    .await
    .expect("jobs");
    sqlx::query("ANALYZE")
        .execute(&mut c)
        .await
        .expect("analyze");
}

/// Dispatch across replicas (a measurement, not a test): a poll held on B,
/// a submit on A (or on B itself, the baseline), the time from the
/// submit's start to B's answer; listening and poll_only.
/// `cargo test -p baton-controller --lib measure_dispatch_across -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn measure_dispatch_across_replicas() {
    for (poll_only, on_b, runs) in [(false, true, 100), (false, false, 100), (true, false, 20)] {
        let Some((a, b, url, _g)) = pair(poll_only).await else {
            return;
        };
        if !poll_only {
            both_listening(&url).await;
        }
        let mut ms = Vec::new();
        for _ in 0..runs {
            let task = b.held(1, vec![]).await;
            let t = Instant::now();
            submit(if on_b { &b } else { &a }).await;
            let answer = task.await.expect("join");
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(answer.grants.len(), 1);
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q) as usize];
        let what = match (poll_only, on_b) {
            (_, true) => "same replica",
            (false, false) => "other replica, listening",
            (true, false) => "other replica, poll_only",
        };
        eprintln!(
            "dispatch ({what}, {runs} runs): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
}

/// A resume on A lets the drained agent's poll held on B take the work
/// queued meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_on_one_replica_reaches_a_poll_held_on_the_other() {
    for poll_only in [false, true] {
        let Some((a, b, url, _g)) = pair(poll_only).await else {
            return;
        };
        if !poll_only {
            both_listening(&url).await;
        }
        a.jobs
            .set_drain("a1", true, "test", now_ms())
            .await
            .expect("drain");
        let id = submit(&a).await;
        // Held drained (a presence heartbeat): nothing is granted.
        let task = b.held(1, vec![]).await;
        // Let B's looks learn the drained agent and the queued job first.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!task.is_finished(), "a drained agent's poll answered");
        a.jobs
            .set_drain("a1", false, "test", now_ms())
            .await
            .expect("resume");
        let what = if poll_only {
            "resume, poll_only"
        } else {
            "resume"
        };
        let answer = answered(task, what).await;
        assert_eq!(answer.grants.len(), 1, "{answer:?}");
        assert_eq!(answer.grants[0].job_id, id);
    }
}
