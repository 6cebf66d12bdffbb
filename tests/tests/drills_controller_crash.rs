//! The `controller_crash` drill with the real binaries: the controller that
//! receives the named agent's heartbeat of the drill's job aborts itself
//! (a drill hook, no signal from outside), the agent keeps its lease through
//! the outage and reports how long it took to be answered again, and the
//! report says the job ran once.
//!
//! On SQLite there is one controller: the test restarts it after the crash,
//! on the same address, and the agent (one URL, as behind a load balancer)
//! is answered again by it. Several replicas on PostgreSQL are the same flow
//! with the agent answered by another replica.

use std::time::Duration;

use baton_proto::JobState;
use baton_proto::drill::{DrillEventKind, DrillState, ExactlyOnce};
use baton_tests::cluster::Cluster;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_serving_the_agent_crashes_and_the_job_still_runs_once() {
    let mut c = Cluster::start_with(1, "[drills]\nallow_controller_crash = true\n", |_| {})
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let raw = c
        .api
        .drill_start(json!({
            "group": "default",
            "method": "controller_crash",
            "agent": "agent-1",
            "lease_ttl_ms": 6000,
            "rto_ms": 30000,
        }))
        .await
        .expect("start");
    assert_eq!(raw.status.as_u16(), 201, "{}", raw.body);
    let id = raw.body["id"].as_i64().expect("drill id");

    // The drill hook aborts the controller at the agent's first heartbeat.
    let proc = c.controller.proc.as_mut().expect("running");
    let code = proc.wait_exit(WAIT).expect("the controller crashed");
    assert_eq!(code, None, "ended by a signal (abort), not an exit");
    let log = c.controller.log_text();
    assert!(log.contains("this controller crashes now"), "{log}");

    // Back on the same address; the agent's lease goes on.
    c.controller.restart().await.expect("restart");
    let d = c
        .api
        .wait_drill(id, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert_eq!(d.state, DrillState::Passed, "{d:#?}\n{}", c.logs());
    let r = d.report.clone().expect("report");
    assert_eq!(r.attempts, 1, "no takeover was needed: {r:?}");
    assert_eq!(r.job_state, Some(JobState::Succeeded));
    assert_eq!(r.exactly_once, ExactlyOnce::Proven);
    assert_eq!(r.holder.as_deref(), Some("agent-1"));
    let failover = r.failover_ms.expect("the agent reported its failover");
    assert!(failover > 0, "the outage took time: {failover} ms");
    println!(
        "controller_crash drill: agent answered again after {failover} ms (crash, restart included); total {:?} ms",
        r.total_ms
    );
    let kinds: Vec<DrillEventKind> = d.events.iter().map(|e| e.kind).collect();
    for k in [
        DrillEventKind::FaultSent,
        DrillEventKind::FaultInjected,
        DrillEventKind::AgentFailover,
        DrillEventKind::JobFinished,
    ] {
        assert!(kinds.contains(&k), "{k:?} missing: {kinds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_that_does_not_allow_it_refuses_the_drill_naming_the_field() {
    let c = Cluster::start(0).await.expect("cluster");
    let raw = c
        .api
        .drill_start(json!({
            "group": "default",
            "method": "controller_crash",
            "agent": "agent-1",
        }))
        .await
        .expect("start");
    assert_eq!(raw.status.as_u16(), 422, "{}", raw.body);
    assert_eq!(raw.body["error"]["field"], "method", "{}", raw.body);
    let message = raw.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("allow_controller_crash"), "{message}");
    assert!(c.controller.proc.is_some(), "still running");
}
