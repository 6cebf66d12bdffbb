use baton_proto::drill::{DrillEventKind, DrillMethod, DrillState, DrillView, ExactlyOnce};
use baton_proto::{
    CompleteRequest, Completion, FencingToken, JobKind, JobResult, JobSpec, JobSubmit, NoopSpec,
    RetryOn, RetryPolicy,
};

use crate::store::drills::NewDrill;
use crate::store::jobs::NewJob;
use crate::store::{Error, GrantRequest, Store};

fn probe(ttl: u64) -> NewJob {
    NewJob {
        submit: JobSubmit {
            allow_unplaced: false,
            group: "g".into(),
            spec: JobSpec::Noop(NoopSpec { sleep_ms: ttl }),
            priority: 0,
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff_ms: 0,
                jitter: 0.0,
                retry_on: vec![RetryOn::LeaseExpired],
                ..RetryPolicy::default()
            },
            timeout_ms: None,
            lease_ttl_ms: Some(ttl),
            labels: Default::default(),
        },
        lease_ttl_ms: ttl,
        idempotency_key: None,
        request_hash: "h".into(),
        audit: None,
    }
}

fn drill(method: DrillMethod, rto_ms: u64) -> NewDrill {
    NewDrill {
        group: "g".into(),
        method,
        duration_ms: 4000,
        lease_ttl_ms: 2000,
        rto_ms,
        created_by: "token:test".into(),
        agent: None,
    }
}

async fn grant(s: &Store, agent: &str, now: i64) -> Vec<baton_proto::Grant> {
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    s.grant(
        &GrantRequest {
            agent_id: agent,
            groups: &groups,
            kinds: &kinds,
            connections: &[],
            stores: &[],
            max: 1,
        },
        now,
    )
    .await
    .expect("grant")
    .grants
}

fn succeeded(token: FencingToken) -> CompleteRequest {
    CompleteRequest {
        started_after_ms: None,
        token,
        completion: Completion::Succeeded,
        result: JobResult::default(),
        error: None,
    }
}

/// Run a whole crash drill through the store: grant to a1, fault on the first
/// heartbeat, ack, expiry, re-grant to a2, success. Returns the drill view.
async fn run_drill(s: &Store, rto_ms: u64) -> DrillView {
    run_drill_read_at(s, rto_ms, 5_900).await
}

/// [`run_drill`], its verdict read at `read_at` (the job ends at 5,700).
async fn run_drill_read_at(s: &Store, rto_ms: u64, read_at: i64) -> DrillView {
    let d = s
        .create_drill(&drill(DrillMethod::Crash, rto_ms), probe(2000), 1_000)
        .await
        .expect("create");
    let job_id = d.job_id.expect("job");
    let job = s.get_job(job_id).await.expect("job");
    assert_eq!(
        job.labels.get("drill").map(String::as_str),
        Some(d.id.to_string().as_str())
    );
    let g = grant(s, "a1", 1_100).await;
    assert_eq!(g.len(), 1);
    s.heartbeat(job_id, "a1", &crate::store::lease::beat(1, ""), 1_700)
        .await
        .expect("hb");
    let fault = s
        .drill_fault_for(job_id, "a1", 1, 1_700)
        .await
        .expect("fault")
        .expect("the first heartbeat gets the fault");
    assert_eq!(fault.method, DrillMethod::Crash);
    assert_eq!(fault.drill_id, d.id);
    assert!(
        s.drill_fault_for(job_id, "a1", 1, 1_800)
            .await
            .expect("again")
            .is_none(),
        "the fault is sent once"
    );
    assert!(matches!(
        s.drill_fault_ack(d.id, job_id, "a2", 1, 1_710).await,
        Err(Error::Forbidden(_))
    ));
    assert!(
        s.drill_fault_ack(d.id, job_id, "a1", 1, 1_710)
            .await
            .expect("ack")
    );
    assert!(
        !s.drill_fault_ack(d.id, job_id, "a1", 1, 1_720)
            .await
            .expect("ack again")
    );
    // Still running: refreshing adds the grant but no verdict.
    let mid = s.refresh_drill(d.id, 2_000).await.expect("refresh");
    assert_eq!(mid.state, DrillState::Running);
    // The lease (renewed at 1700, TTL 2000) runs out at 3700.
    let e = s.expire_leases(3_701).await.expect("expire");
    assert_eq!(e.leases.len(), 1);
    let g2 = grant(s, "a2", 3_750).await;
    assert_eq!(g2[0].token, 2);
    s.complete(job_id, "a2", &succeeded(2), 5_700)
        .await
        .expect("complete");
    s.refresh_drill(d.id, read_at).await.expect("refresh")
}

/// Conformance case `crash_drill_timeline_and_report`.
pub async fn crash_drill_timeline_and_report(s: &Store) {
    let v = run_drill(s, 10_000).await;
    assert_eq!(v.state, DrillState::Passed, "{v:#?}");
    let kinds: Vec<DrillEventKind> = v.events.iter().map(|e| e.kind).collect();
    use DrillEventKind::*;
    assert_eq!(
        kinds,
        vec![
            Started,
            JobGranted,
            FaultSent,
            FaultInjected,
            LeaseExpired,
            JobRegranted,
            JobFinished,
            Verdict
        ]
    );
    let r = v.report.expect("report");
    assert_eq!(r.holder.as_deref(), Some("a1"));
    assert_eq!(r.new_holder.as_deref(), Some("a2"));
    // Fault time = the ack at 1710.
    assert_eq!(r.detection_ms, Some(3_701 - 1_710));
    assert_eq!(r.takeover_ms, Some(3_750 - 1_710));
    assert_eq!(r.total_ms, Some(5_700 - 1_710));
    assert_eq!(r.attempts, 2);
    assert_eq!(r.exactly_once, ExactlyOnce::Proven);
    assert!(r.passed);
    // A second refresh changes nothing.
    let again = s.refresh_drill(v.id, 9_000).await.expect("refresh");
    assert_eq!(again.events.len(), v.events.len());
    let list = s.list_drills(10).await.expect("list");
    assert_eq!(list.drills.len(), 1);
    assert!(list.drills[0].events.is_empty());
    assert_eq!(
        s.drill_outcomes().await.expect("outcomes"),
        vec![("crash".to_string(), "passed".to_string(), 1)]
    );
    // Last renewal 1700 (= expiry 3701 − TTL 2000, +1) → re-grant 3750.
    assert_eq!(
        s.takeover_samples_ms().await.expect("samples"),
        vec![3_750 - (3_701 - 2_000)]
    );
}

/// Conformance case `the_verdict_never_precedes_the_finish_it_judges`: a
/// read whose `now` was taken before a completion with a later one
/// committed still stamps the verdict after the job's end.
pub async fn the_verdict_never_precedes_the_finish_it_judges(s: &Store) {
    let v = run_drill_read_at(s, 10_000, 5_650).await;
    assert_eq!(v.state, DrillState::Passed, "{v:#?}");
    let finished = v
        .events
        .iter()
        .find(|e| e.kind == DrillEventKind::JobFinished)
        .expect("job_finished");
    let verdict = v.events.last().expect("events");
    assert_eq!(verdict.kind, DrillEventKind::Verdict, "{v:#?}");
    assert!(verdict.at >= finished.at, "{v:#?}");
    assert!(v.finished_at >= Some(finished.at), "{v:#?}");
}

/// Conformance case `rto_shorter_than_the_takeover_fails_with_the_reason`.
pub async fn rto_shorter_than_the_takeover_fails_with_the_reason(s: &Store) {
    let v = run_drill(s, 500).await;
    assert_eq!(v.state, DrillState::Failed);
    let r = v.report.expect("report");
    assert!(!r.passed);
    assert_eq!(
        r.reasons,
        vec![format!(
            "takeover took {} ms, over the RTO of 500 ms",
            3_750 - 1_710
        )]
    );
    assert!(
        v.events
            .last()
            .and_then(|e| e.detail.as_deref())
            .is_some_and(|d| d.starts_with("failed: takeover took"))
    );
}

/// Conformance case `a_job_that_ends_before_any_heartbeat_is_an_error`.
pub async fn a_job_that_ends_before_any_heartbeat_is_an_error(s: &Store) {
    let d = s
        .create_drill(&drill(DrillMethod::Freeze, 10_000), probe(2000), 0)
        .await
        .expect("create");
    let job_id = d.job_id.expect("job");
    grant(s, "a1", 10).await;
    s.complete(job_id, "a1", &succeeded(1), 20)
        .await
        .expect("complete");
    let v = s.refresh_drill(d.id, 30).await.expect("refresh");
    assert_eq!(v.state, DrillState::Error);
    let r = v.report.expect("report");
    assert!(
        r.reasons[0].contains("before the fault could be sent"),
        "{r:?}"
    );
    // No heartbeat of a finished drill gets a fault.
    assert!(
        s.drill_fault_for(job_id, "a1", 1, 40)
            .await
            .expect("fault")
            .is_none()
    );
}

/// Conformance case `unknown_drills_are_missing`.
pub async fn unknown_drills_are_missing(s: &Store) {
    assert!(matches!(s.get_drill(9).await, Err(Error::Missing(_))));
    assert!(matches!(
        s.drill_fault_ack(9, 1, "a1", 1, 0).await,
        Err(Error::Missing(_))
    ));
    assert!(s.running_drills().await.expect("running").is_empty());
}

/// Conformance case `a_controller_crash_drill_claims_only_for_its_agent_and_records_the_failover`:
/// only the named agent's heartbeat claims the fault; its failover report is
/// recorded once, and only after the crash; the lease that went on through
/// the crash completes the job once, which passes the drill.
pub async fn a_controller_crash_drill_claims_only_for_its_agent_and_records_the_failover(
    s: &Store,
) {
    let d = NewDrill {
        agent: Some("a1".into()),
        ..drill(DrillMethod::ControllerCrash, 10_000)
    };
    let v = s
        .create_drill(&d, probe(2000), 1_000)
        .await
        .expect("create");
    assert_eq!(v.method, DrillMethod::ControllerCrash);
    let job_id = v.job_id.expect("job");
    assert_eq!(grant(s, "a1", 1_100).await.len(), 1);
    s.heartbeat(job_id, "a1", &crate::store::lease::beat(1, ""), 1_700)
        .await
        .expect("hb");
    assert!(
        s.drill_fault_for(job_id, "a2", 1, 1_700)
            .await
            .expect("other agent")
            .is_none(),
        "another agent's heartbeat does not claim it"
    );
    assert!(
        !s.drill_agent_failover("a1", 20, 1_650)
            .await
            .expect("early"),
        "no failover counts before the fault"
    );
    let fault = s
        .drill_fault_for(job_id, "a1", 1, 1_700)
        .await
        .expect("fault")
        .expect("the named agent's heartbeat claims it");
    assert_eq!(fault.method, DrillMethod::ControllerCrash);
    assert!(
        !s.drill_agent_failover("a1", 20, 1_705)
            .await
            .expect("not yet crashed")
    );
    // The replica records the crash, then aborts.
    assert!(
        s.drill_fault_ack(d_id(&v), job_id, "a1", 1, 1_710)
            .await
            .expect("crash recorded")
    );
    assert!(!s.drill_agent_failover("a2", 10, 1_760).await.expect("a2"));
    assert!(s.drill_agent_failover("a1", 35, 1_760).await.expect("a1"));
    assert!(
        !s.drill_agent_failover("a1", 50, 1_900)
            .await
            .expect("again"),
        "recorded once"
    );
    // The lease went on through another replica and completes the job.
    s.heartbeat(job_id, "a1", &crate::store::lease::beat(1, ""), 2_300)
        .await
        .expect("hb on another replica");
    s.complete(job_id, "a1", &succeeded(1), 3_000)
        .await
        .expect("complete");
    let v = s.refresh_drill(v.id, 3_100).await.expect("refresh");
    assert_eq!(v.state, DrillState::Passed, "{v:#?}");
    let r = v.report.expect("report");
    assert_eq!(r.failover_ms, Some(35));
    assert_eq!(r.attempts, 1);
    assert_eq!(r.exactly_once, ExactlyOnce::Proven);
    assert!(
        v.events
            .iter()
            .any(|e| e.kind == DrillEventKind::AgentFailover && e.agent.as_deref() == Some("a1"))
    );
    assert_eq!(
        s.drill_outcomes().await.expect("outcomes"),
        vec![("controller_crash".to_string(), "passed".to_string(), 1)]
    );
}

fn d_id(v: &DrillView) -> baton_proto::drill::DrillId {
    v.id
}
