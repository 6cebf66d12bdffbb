//! A faulted agent takes no work for the fault's duration, and a drill
//! passes only when another agent took the job over (issue 16, point 15).
//! Real controller and agents; the controller sends the fault.

use std::time::Duration;

use baton_proto::JobState;
use baton_proto::drill::{DrillEventKind, DrillState, DrillView};
use baton_tests::api::Api;
use baton_tests::cluster::Cluster;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);
const TTL: u64 = 2000;
const DURATION: u64 = 6000;

/// Wait until `id`'s holder acknowledged the fault; the drill then.
async fn wait_injected(api: &Api, id: i64) -> DrillView {
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        let d = api.drill(id).await.expect("drill");
        if d.events
            .iter()
            .any(|e| e.kind == DrillEventKind::FaultInjected)
        {
            return d;
        }
        assert_eq!(d.state, DrillState::Running, "no fault injected: {d:#?}");
        assert!(
            tokio::time::Instant::now() < end,
            "no fault injected: {d:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(api: &Api, body: serde_json::Value) -> i64 {
    let raw = api.drill_start(body).await.expect("start");
    assert_eq!(raw.status.as_u16(), 201, "{}", raw.body);
    raw.body["id"].as_i64().expect("drill id")
}

/// Three agents with 2 slots each.
async fn cluster() -> Cluster {
    let c = Cluster::start_with(3, "", |o| o.slots = 2)
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    c
}

/// One drill of `method`: while the fault lasts, jobs submitted to the
/// group go to the other agents only (the faulted agent has a free slot but
/// must take no work), and the report names a different new holder.
async fn round(c: &Cluster, method: &str, round: usize) {
    let id = start(
        &c.api,
        json!({"group": "default", "method": method, "lease_ttl_ms": TTL,
               "duration_ms": DURATION, "rto_ms": 30_000}),
    )
    .await;
    let d = wait_injected(&c.api, id).await;
    let injected = d
        .events
        .iter()
        .find(|e| e.kind == DrillEventKind::FaultInjected)
        .expect("injected");
    let (holder, fault_at) = (injected.agent.clone().expect("holder"), injected.at);
    // More work than the other agents' 4 slots: with a free slot, the
    // faulted agent would get some of it if it still polled.
    let mut jobs = Vec::new();
    for _ in 0..6 {
        let j = c
            .api
            .submit(json!({"group": "default", "spec": {"kind": "noop", "sleep_ms": 1500}}))
            .await
            .expect("submit");
        jobs.push(j.id);
    }
    let fault_end = fault_at + chrono::Duration::milliseconds(DURATION as i64);
    for j in jobs {
        let v = c.api.wait_terminal(j, WAIT).await.expect("job");
        assert_eq!(v.state, JobState::Succeeded, "{v:#?}");
        for a in &v.attempts {
            assert!(
                a.agent_id != holder || a.started_at >= fault_end,
                "{method} round {round}: job {j} was granted to the faulted agent {holder} at {} \
                 during its fault ({fault_at} .. {fault_end})\n{}",
                a.started_at,
                c.logs()
            );
        }
    }
    let d = c.api.wait_drill(id, WAIT).await.expect("verdict");
    let r = d.report.as_ref().expect("report");
    assert_eq!(
        d.state,
        DrillState::Passed,
        "{method} round {round}: {d:#?}"
    );
    assert_eq!(r.holder.as_deref(), Some(holder.as_str()));
    let new_holder = r.new_holder.clone().expect("new holder");
    assert_ne!(new_holder, holder, "{method} round {round}: {d:#?}");
    if method == "crash" {
        let log = c
            .agents
            .iter()
            .find(|a| a.opts.id == holder)
            .map(|a| a.log_text())
            .unwrap_or_default();
        assert!(
            log.contains("Drill crash: taking no work until the fault ends"),
            "{log}"
        );
    }
    // Let the fault end before the next round, so all three poll again.
    tokio::time::sleep(Duration::from_millis(DURATION)).await;
}

/// Three crash drills on three 2-slot agents: each time another agent takes
/// over, and the crashed one takes no work while the crash lasts.
#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_agent_takes_no_work_and_another_agent_takes_over() {
    let c = cluster().await;
    for r in 1..=3 {
        round(&c, "crash", r).await;
    }
}

/// The same for a freeze and a partition: the gate holds or refuses every
/// call, the held poll included.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_or_partitioned_agent_takes_no_work() {
    let c = cluster().await;
    round(&c, "freeze", 1).await;
    round(&c, "partition", 1).await;
}

/// Only agent-1 runs commands: a crash drill of a command job cannot move
/// anywhere, the job comes back to agent-1 after the fault, and the drill
/// fails naming why.
#[tokio::test(flavor = "multi_thread")]
async fn a_drill_only_the_faulted_agent_could_run_fails_naming_why() {
    let c = Cluster::start_with(3, "", |o| {
        o.slots = 2;
        if o.id != "agent-1" {
            o.allow.clear();
        }
    })
    .await
    .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let id = start(
        &c.api,
        json!({"group": "default", "method": "crash", "lease_ttl_ms": TTL,
               "duration_ms": 4000, "rto_ms": 30_000,
               "job": {"group": "default",
                       "spec": {"kind": "command", "program": "/bin/sleep", "args": ["2"]},
                       "retry": {"max_attempts": 3, "initial_backoff_ms": 0,
                                 "retry_on": ["lease_expired"]}}}),
    )
    .await;
    let d = c
        .api
        .wait_drill(id, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let r = d.report.as_ref().expect("report");
    assert_eq!(d.state, DrillState::Failed, "{d:#?}\n{}", c.logs());
    assert_eq!(r.holder.as_deref(), Some("agent-1"), "{d:#?}");
    assert_eq!(r.new_holder.as_deref(), Some("agent-1"), "{d:#?}");
    let reasons = r.reasons.join(" | ");
    assert!(
        reasons.contains("the faulted agent agent-1 took the job back itself"),
        "{reasons}"
    );
    assert!(
        reasons.contains(
            "no other agent of group `default` could run it: agent-2 does not run `command` jobs; \
             agent-3 does not run `command` jobs"
        ),
        "{reasons}"
    );
}
