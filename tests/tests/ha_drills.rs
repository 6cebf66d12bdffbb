//! The `controller_crash` drill on three controller replicas sharing one
//! PostgreSQL database, with real agents that know every replica and jobs
//! running through it (issue 17, point 7).
//!
//! - The drill is started through one replica and names an agent served by
//!   another: exactly that replica aborts itself (the drill hook), the others
//!   stay up, the report (read from a survivor) passes with the agent's
//!   failover time, and — checked from the API, independently of the report —
//!   every job ends once, tokens increase per job and no two attempts of a
//!   job overlap.
//! - The replica that started the drill (and ran its watcher) is the one that
//!   dies: another replica's sweep still gives the verdict, with nobody
//!   reading the drill (the test reads the database).
//! - A replica without `[drills] allow_controller_crash = true` refuses to
//!   start the drill (422 naming `method`); started through one that allows
//!   it for an agent served by one that does not, nothing crashes and the
//!   drill ends `error` saying why, never `passed`.
//!
//! They need PostgreSQL (`BATON_TEST_PG_URL`, or a server started here) and
//! skip, saying why, without it unless `BATON_TEST_REQUIRE_PG=1`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use baton_proto::drill::{DrillEventKind, DrillId, DrillState, DrillView, ExactlyOnce};
use baton_proto::{AttemptOutcome, JobId, JobState, JobView};
use baton_tests::api::Api;
use baton_tests::ha::{HaCluster, HaOpts};
use baton_tests::postgres::{self, Pg};
use baton_tests::proc::AgentOpts;
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);
const ALLOW: &str = "[drills]\nallow_controller_crash = true\n";
/// Lease TTL of the drill's job (its probe sleeps two of them).
const DRILL_TTL_MS: i64 = 4000;

/// Three replicas allowing the drill (but replica `deny`, if any), then three
/// two-slot agents: `agent-i` prefers replica `i - 1` and is alone in group
/// `solo-i` (so a drill of that group runs on it); all are in `default`.
async fn cluster(pg: &Pg, deny: Option<usize>) -> HaCluster {
    let opts = HaOpts {
        controller_extra: ALLOW.into(),
        ..HaOpts::default()
    };
    let mut c = HaCluster::start_in(pg, 3, 0, opts, |_| {})
        .await
        .expect("cluster");
    if let Some(i) = deny {
        let path = c.controllers[i].config.clone();
        let text = std::fs::read_to_string(&path).expect("config");
        let denied = text.replace(
            "allow_controller_crash = true",
            "allow_controller_crash = false",
        );
        assert_ne!(text, denied, "the setting is in the config");
        std::fs::write(&path, denied).expect("config");
        c.restart(i).await.expect("restart");
    }
    for i in 1..=3 {
        let mut o = AgentOpts::new(&format!("agent-{i}"));
        o.slots = 2;
        o.groups.push(format!("solo-{i}"));
        c.add_agent(o).await.expect("agent");
    }
    c.wait_agents_online().await.expect("online");
    c
}

/// A `controller_crash` drill of `agent-<n>` (group `solo-<n>`), through `api`.
async fn start_drill(api: &Api, n: usize) -> (u16, Value) {
    let raw = api
        .drill_start(json!({
            "group": format!("solo-{n}"),
            "method": "controller_crash",
            "agent": format!("agent-{n}"),
            "lease_ttl_ms": DRILL_TTL_MS,
            "rto_ms": 10_000,
        }))
        .await
        .expect("drill start");
    (raw.status.as_u16(), raw.body)
}

/// Wait until a replica has exited; returns its index and exit code (None:
/// killed by a signal). Panics when none exits within [`WAIT`].
fn wait_one_replica_dead(c: &mut HaCluster) -> (usize, Option<i32>) {
    let end = Instant::now() + WAIT;
    loop {
        for (i, ctl) in c.controllers.iter_mut().enumerate() {
            if let Some(p) = ctl.proc.as_mut()
                && !p.running()
            {
                let code = p.wait_exit(Duration::from_secs(5)).expect("reaped");
                ctl.proc = None;
                return (i, code);
            }
        }
        assert!(Instant::now() < end, "no replica crashed\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Which replicas are running now.
fn running(c: &mut HaCluster) -> Vec<usize> {
    (0..c.controllers.len())
        .filter(|&i| c.controllers[i].proc.as_mut().is_some_and(|p| p.running()))
        .collect()
}

/// A workload job: `sleep` for 0.5-2.5 s, below the drill's priority (so the
/// drill's job is granted a free slot first), retried until it succeeds.
fn sleeper(k: usize) -> Value {
    let secs = 0.5 + (k % 5) as f64 * 0.5;
    json!({
        "group": "default",
        "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", format!("sleep {secs:.1}")]},
        "priority": -1,
        "lease_ttl_ms": 3000,
        "labels": {"ha_drill_k": k.to_string()},
        "retry": {"max_attempts": 100, "initial_backoff_ms": 100, "max_backoff_ms": 1000, "jitter": 0.2},
    })
}

/// Submit with an idempotency key, trying the replicas in turn from `first`
/// until one acknowledges it (a dead one is skipped).
async fn submit_acked(apis: &[Api], first: usize, body: &Value, key: &str) -> JobId {
    let bytes = serde_json::to_vec(body).expect("json");
    let end = Instant::now() + WAIT;
    for i in (0..apis.len()).cycle().skip(first) {
        let header = [(baton_proto::IDEMPOTENCY_KEY_HEADER, key)];
        let r = apis[i]
            .raw(Method::POST, "/v1/jobs", Some(bytes.clone()), &header)
            .await;
        match r {
            Ok(r) if r.status.is_success() => return r.body["id"].as_i64().expect("job id"),
            Ok(r) if r.status.is_client_error() && r.status != 429 => {
                panic!("submit {key} refused: {} {}", r.status, r.body)
            }
            _ => {}
        }
        assert!(Instant::now() < end, "submit {key} never acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!("cycle never ends")
}

/// Submit `n` workload jobs, 4 every 250 ms, in a task: they run before,
/// through and after the crash.
fn spawn_workload(apis: Vec<Api>, n: usize) -> tokio::task::JoinHandle<BTreeMap<usize, JobId>> {
    tokio::spawn(async move {
        let mut ids = BTreeMap::new();
        for k in 0..n {
            let id = submit_acked(&apis, k, &sleeper(k), &format!("ha-drill-{k}")).await;
            ids.insert(k, id);
            if k % 4 == 3 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        ids
    })
}

/// The job from whichever replica answers.
async fn job_anywhere(apis: &[Api], id: JobId) -> Option<JobView> {
    for a in apis {
        if let Ok(j) = a.job(id).await {
            return Some(j);
        }
    }
    None
}

/// Wait until every job of `ids` is terminal; returns them.
async fn wait_all_ended(apis: &[Api], ids: &[JobId]) -> Vec<JobView> {
    let end = Instant::now() + WAIT;
    let mut ended = Vec::new();
    for id in ids {
        loop {
            if let Some(j) = job_anywhere(apis, *id).await
                && j.state.is_terminal()
            {
                ended.push(j);
                break;
            }
            assert!(Instant::now() < end, "job {id} did not end");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    ended
}

/// Every violation of "ends once, tokens increase, one running attempt at a
/// time" for one job, read from the store through the API.
fn check_job(j: &JobView, out: &mut Vec<String>) {
    let id = j.id;
    if j.state != JobState::Succeeded {
        out.push(format!("job {id} ended {}: {:?}", j.state, j.error));
    }
    let mut by_number = j.attempts.clone();
    by_number.sort_by_key(|a| a.number);
    let wins: Vec<_> = by_number
        .iter()
        .filter(|a| a.outcome == Some(AttemptOutcome::Succeeded))
        .collect();
    if wins.len() != 1 {
        out.push(format!("job {id}: {} successful attempts", wins.len()));
    } else if by_number.last().map(|a| a.number) != Some(wins[0].number) {
        out.push(format!("job {id}: its success is not its last attempt"));
    }
    for w in by_number.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if b.token <= a.token {
            out.push(format!(
                "job {id}: attempt {} has token {} after attempt {}'s {}",
                b.number, b.token, a.number, a.token
            ));
        }
        if a.ended_at.is_none_or(|end| b.started_at < end) {
            out.push(format!(
                "job {id}: attempt {} began at {} before attempt {} ended ({:?})",
                b.number, b.started_at, a.number, a.ended_at
            ));
        }
    }
}

/// When the drill's fault took effect (the replica recorded it, then died).
fn injected_at(d: &DrillView) -> chrono::DateTime<chrono::Utc> {
    d.events
        .iter()
        .find(|e| e.kind == DrillEventKind::FaultInjected)
        .map(|e| e.at)
        .unwrap_or_else(|| panic!("no fault_injected: {d:#?}"))
}

/// The report of a passed `controller_crash` drill: the lease went on
/// through another replica, the job ran once, the failover was measured.
fn check_passed(d: &DrillView, agent: &str, c: &HaCluster) -> i64 {
    assert_eq!(d.state, DrillState::Passed, "{d:#?}\n{}", c.logs());
    let r = d.report.as_ref().expect("report");
    assert!(r.passed && r.reasons.is_empty(), "{r:?}");
    assert_eq!(r.holder.as_deref(), Some(agent), "{r:?}");
    assert_eq!(r.attempts, 1, "the lease went on, nothing re-ran: {r:?}");
    assert_eq!(r.job_state, Some(JobState::Succeeded), "{r:?}");
    assert_eq!(r.exactly_once, ExactlyOnce::Proven, "{r:?}");
    let ms = r.failover_ms.expect("the agent's failover time");
    // Bound: the agent re-sends the failed heartbeat at once; a lease TTL
    // plus 3 s is far beyond that even on a loaded machine.
    assert!(
        ms > 0 && ms <= DRILL_TTL_MS + 3000,
        "failover {ms} ms: {r:?}"
    );
    let kinds: Vec<DrillEventKind> = d.events.iter().map(|e| e.kind).collect();
    for k in [
        DrillEventKind::FaultSent,
        DrillEventKind::FaultInjected,
        DrillEventKind::AgentFailover,
        DrillEventKind::JobFinished,
        DrillEventKind::Verdict,
    ] {
        assert!(kinds.contains(&k), "{k:?} missing: {kinds:?}");
    }
    ms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_replica_serving_the_agent_crashes_and_no_job_is_lost_or_run_twice() {
    baton_tests::require_postgres!();
    let pg = postgres::shared().await.expect(postgres::INSTALL_HINT);
    let mut c = cluster(pg, None).await;
    let apis: Vec<Api> = (0..3).map(|i| c.api(i)).collect();
    let workload = spawn_workload(apis.clone(), 40);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Through replica 0, for agent-2, whose calls go to replica 1.
    let (status, body) = start_drill(&apis[0], 2).await;
    assert_eq!(status, 201, "{body}");
    let id: DrillId = body["id"].as_i64().expect("drill id");
    let drill_job: JobId = body["job_id"].as_i64().expect("drill job");

    let (dead, code) = wait_one_replica_dead(&mut c);
    assert_eq!(dead, 1, "the replica serving agent-2 crashed\n{}", c.logs());
    assert_eq!(code, None, "ended by a signal (abort), not an exit");
    let log = c.controllers[1].log_text();
    assert!(log.contains("this controller crashes now"), "{log}");
    assert_eq!(running(&mut c), vec![0, 2], "the others stay up");

    let d = apis[2]
        .wait_drill(id, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let failover_ms = check_passed(&d, "agent-2", &c);
    let crash = injected_at(&d);

    let ids = workload.await.expect("workload");
    let mut all: Vec<JobId> = ids.values().copied().collect();
    all.push(drill_job);
    let live = [apis[0].clone(), apis[2].clone()];
    let jobs = wait_all_ended(&live, &all).await;
    let mut violations = Vec::new();
    for j in &jobs {
        check_job(j, &mut violations);
    }
    assert!(
        violations.is_empty(),
        "{} violations:\n{}\n{}",
        violations.len(),
        violations.join("\n"),
        c.logs()
    );
    // Jobs were running when the replica died (and went on).
    let through = jobs
        .iter()
        .filter(|j| j.id != drill_job)
        .filter(|j| {
            j.attempts
                .iter()
                .any(|a| a.started_at < crash && a.ended_at.is_some_and(|e| e > crash))
        })
        .count();
    assert!(through > 0, "no workload job ran through the crash");
    let listed = apis[0]
        .raw(Method::GET, "/v1/jobs?limit=1000", None, &[])
        .await
        .expect("list");
    let n = listed.body["jobs"].as_array().map_or(0, Vec::len);
    assert_eq!(n, all.len(), "one job per submission, nothing else made");
    let attempts: usize = jobs.iter().map(|j| j.attempts.len()).sum();
    println!(
        "ha controller_crash drill: agent failover {failover_ms} ms; {} jobs ({through} running through the crash), {attempts} attempts",
        jobs.len()
    );
    assert_eq!(running(&mut c), vec![0, 2], "the others are still up");
}

/// The drill's state as the database has it (no API read: a read refreshes).
fn stored_state(pg: &Pg, id: DrillId) -> String {
    pg.sql(None, &format!("SELECT state FROM drills WHERE id = {id}"))
        .expect("select")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_verdict_comes_when_the_replica_that_started_the_drill_dies() {
    baton_tests::require_postgres!();
    let pg = postgres::shared().await.expect(postgres::INSTALL_HINT);
    let mut c = cluster(pg, None).await;
    let db = Pg::new(&c.store_url).expect("psql");
    // Through replica 0, for agent-1, whose calls go to replica 0: the
    // replica with the drill's watcher is the one that dies.
    let (status, body) = start_drill(&c.api(0), 1).await;
    assert_eq!(status, 201, "{body}");
    let id: DrillId = body["id"].as_i64().expect("drill id");
    let (dead, code) = wait_one_replica_dead(&mut c);
    assert_eq!(dead, 0, "the replica serving agent-1 crashed\n{}", c.logs());
    assert_eq!(code, None, "ended by a signal (abort)");
    assert_eq!(running(&mut c), vec![1, 2], "the others stay up");

    // Nobody reads the drill through the API until the database has its
    // verdict: the survivors' sweep must get there on its own.
    let end = Instant::now() + WAIT;
    while stored_state(&db, id) == "running" {
        assert!(
            Instant::now() < end,
            "drill {id} still running {WAIT:?} after its start with its watcher's replica dead\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let d = c.api(1).drill(id).await.expect("drill");
    let failover_ms = check_passed(&d, "agent-1", &c);
    println!("ha controller_crash drill, its starter killed: agent failover {failover_ms} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_does_not_allow_it_refuses_or_the_drill_ends_error() {
    baton_tests::require_postgres!();
    let pg = postgres::shared().await.expect(postgres::INSTALL_HINT);
    // Replica 1 does not allow the drill; agent-2's calls go to it.
    let mut c = cluster(pg, Some(1)).await;
    let (status, body) = start_drill(&c.api(1), 2).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "method", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("allow_controller_crash"), "{message}");

    // Through replica 0, which allows it: replica 1 gets the heartbeat,
    // refuses to crash, and the drill must not pass.
    let (status, body) = start_drill(&c.api(0), 2).await;
    assert_eq!(status, 201, "{body}");
    let id: DrillId = body["id"].as_i64().expect("drill id");
    let d = c
        .api(0)
        .wait_drill(id, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert_eq!(d.state, DrillState::Error, "{d:#?}\n{}", c.logs());
    let r = d.report.as_ref().expect("report");
    assert!(!r.passed, "{r:?}");
    let why = r.reasons.join("; ");
    assert!(
        why.contains("no controller crashed") && why.contains("allow_controller_crash"),
        "{why}"
    );
    assert_eq!(r.job_state, Some(JobState::Succeeded), "{r:?}");
    assert_eq!(running(&mut c), vec![0, 1, 2], "nothing crashed");
    let log = c.controllers[1].log_text();
    assert!(log.contains("does not allow it"), "{log}");
}
