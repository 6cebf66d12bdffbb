use super::*;
use crate::store::rows::AttemptRow;
use baton_proto::NoopSpec;
use baton_proto::drill::ExactlyOnce;
use baton_proto::drill::{DrillMethod, DrillReport, DrillState};
use baton_proto::{JobSpec, JobState};

fn attempt(number: i64, agent: &str, outcome: Option<&str>, result: Option<&str>) -> AttemptRow {
    AttemptRow {
        running_at: None,
        number,
        agent_id: agent.into(),
        token: number,
        started_at: number * 1000,
        ended_at: outcome.map(|_| number * 1000 + 500),
        outcome: outcome.map(str::to_owned),
        error: None,
        progress: None,
        log_tail: String::new(),
        result: result.map(str::to_owned),
    }
}

fn fault_sent(at: i64) -> EventRow {
    EventRow {
        at,
        kind: "fault_sent".into(),
        attempt: 1,
        agent: Some("a1".into()),
        detail: None,
    }
}

#[test]
fn two_successes_violate_exactly_once() {
    let spec = JobSpec::Noop(NoopSpec::default());
    let attempts = [
        attempt(1, "a1", Some("lease_expired"), None),
        attempt(2, "a2", Some("succeeded"), None),
        attempt(3, "a3", Some("succeeded"), None),
    ];
    let events = [fault_sent(1200)];
    let eval = evaluate(&Input {
        method: DrillMethod::Crash,
        rto_ms: 60_000,
        duration_ms: 4000,
        lease_ttl_ms: 2000,
        created_at: 0,
        fault_token: Some(1),
        job_state: JobState::Succeeded,
        finished_at: Some(3500),
        spec: &spec,
        attempts: &attempts,
        events: &events,
        now: 4000,
        group: "g",
        others: &[],
    });
    let (state, report) = eval.verdict.expect("verdict");
    assert_eq!(state, DrillState::Failed);
    assert_eq!(report.exactly_once, ExactlyOnce::Violated);
    assert!(report.reasons.iter().any(|r| r.contains("exactly-once")));
}

#[test]
fn ledger_verdicts_prove_exactly_once_and_open_drills_give_up() {
    let spec: JobSpec = serde_json::from_value(serde_json::json!({
        "kind": "sql", "connection": "main", "sql": "UPDATE t SET n = n + 1", "exactly_once": true
    }))
    .expect("sql spec");
    let attempts = [
        attempt(1, "a1", Some("lease_expired"), None),
        attempt(
            2,
            "a2",
            Some("succeeded"),
            Some(r#"{"data":{"ledger":"replayed"}}"#),
        ),
    ];
    let events = [fault_sent(1200)];
    let mut input = Input {
        method: DrillMethod::Crash,
        rto_ms: 60_000,
        duration_ms: 4000,
        lease_ttl_ms: 2000,
        created_at: 0,
        fault_token: Some(1),
        job_state: JobState::Succeeded,
        finished_at: Some(2500),
        spec: &spec,
        attempts: &attempts,
        events: &events,
        now: 3000,
        group: "g",
        others: &[],
    };
    let (state, report) = evaluate(&input).verdict.expect("verdict");
    assert_eq!(state, DrillState::Passed, "{report:?}");
    assert_eq!(report.exactly_once, ExactlyOnce::Proven);
    assert!(report.exactly_once_evidence.contains("replayed"));
    assert_eq!(report.takeover_ms, Some(2000 - 1200));
    // Still running long after the give-up bound: error.
    input.job_state = JobState::Running;
    input.finished_at = None;
    assert!(evaluate(&input).verdict.is_none());
    input.now = 10_000_000;
    let (state, report) = evaluate(&input).verdict.expect("verdict");
    assert_eq!(state, DrillState::Error);
    assert!(report.reasons[0].starts_with("gave up"));
}

/// A probe drill faulted on a1 whose job attempt 2 ran on `new_holder`.
fn taken_over_by(new_holder: &str, others: &[Candidate]) -> (DrillState, DrillReport) {
    let spec = JobSpec::Noop(NoopSpec::default());
    let attempts = [
        attempt(1, "a1", Some("lease_expired"), None),
        attempt(2, new_holder, Some("succeeded"), None),
    ];
    let events = [fault_sent(1200)];
    evaluate(&Input {
        method: DrillMethod::Crash,
        rto_ms: 60_000,
        duration_ms: 4000,
        lease_ttl_ms: 2000,
        created_at: 0,
        fault_token: Some(1),
        job_state: JobState::Succeeded,
        finished_at: Some(2500),
        spec: &spec,
        attempts: &attempts,
        events: &events,
        now: 4000,
        group: "g",
        others,
    })
    .verdict
    .expect("verdict")
}

fn able(id: &str) -> Candidate {
    Candidate {
        id: id.into(),
        unable: None,
    }
}

#[test]
fn a_takeover_by_another_agent_passes() {
    let (state, report) = taken_over_by("a2", &[able("a2"), able("a3")]);
    assert_eq!(state, DrillState::Passed, "{report:?}");
    assert_eq!(report.holder.as_deref(), Some("a1"));
    assert_eq!(report.new_holder.as_deref(), Some("a2"));
}

#[test]
fn the_faulted_agent_taking_the_job_back_fails_the_drill() {
    let (state, report) = taken_over_by("a1", &[able("a2"), able("a3")]);
    assert_eq!(state, DrillState::Failed);
    assert!(!report.passed);
    let r = report.reasons.join(" | ");
    assert!(
        r.contains("faulted agent a1 took the job back itself"),
        "{r}"
    );
    assert!(r.contains("other agents could run it: a2, a3"), "{r}");
}

#[test]
fn a_drill_no_other_agent_could_take_over_fails_naming_why() {
    let others = [
        Candidate {
            id: "a2".into(),
            unable: Some("has no connection `shop`".into()),
        },
        Candidate {
            id: "a3".into(),
            unable: Some("drained".into()),
        },
    ];
    let (state, report) = taken_over_by("a1", &others);
    assert_eq!(state, DrillState::Failed);
    let r = report.reasons.join(" | ");
    assert!(
        r.contains(
            "no other agent of group `g` could run it: a2 has no connection `shop`; a3 drained"
        ),
        "{r}"
    );
    let (_, alone) = taken_over_by("a1", &[]);
    assert!(
        alone
            .reasons
            .join(" ")
            .contains("the faulted agent is the group's only agent"),
        "{alone:?}"
    );
}

#[test]
fn candidates_say_why_an_agent_could_not_take_over() {
    use baton_proto::{AgentView, Capabilities, ConnectionInfo, JobKind};
    let view = |id: &str, conns: &[&str], drained: bool, seen: i64| -> AgentView {
        serde_json::from_value(serde_json::json!({
            "id": id, "groups": ["g"],
            "capabilities": Capabilities {
                kinds: vec![JobKind::Sql, JobKind::Noop],
                connections: conns.iter().map(|c| ConnectionInfo { name: (*c).into(), kind: "mysql".into() }).collect(),
                stores: Vec::new(),
            },
            "version": "1", "os": "linux", "free_slots": 2, "online": true,
            "last_seen": crate::store::rows::ts(seen), "leases": [],
            "drained_at": drained.then(|| crate::store::rows::ts(1)),
        }))
        .expect("agent view")
    };
    let agents = [
        view("a1", &["shop"], false, 100_000),
        view("a2", &[], false, 100_000),
        view("a3", &["shop"], true, 100_000),
        view("a4", &["shop"], false, 1_000),
        view("a5", &["shop"], false, 100_000),
    ];
    let spec: JobSpec = serde_json::from_value(serde_json::json!({
        "kind": "sql", "connection": "shop", "sql": "SELECT 1"
    }))
    .expect("spec");
    let got = candidates(&agents, "g", &spec, "a1", 45_000, 100_000);
    let why: Vec<(&str, Option<&str>)> = got
        .iter()
        .map(|c| (c.id.as_str(), c.unable.as_deref()))
        .collect();
    assert_eq!(
        why,
        vec![
            ("a2", Some("has no connection `shop`")),
            ("a3", Some("drained")),
            ("a4", Some("offline")),
            ("a5", None),
        ]
    );
}

fn event(at: i64, kind: DrillEventKind, detail: Option<&str>) -> EventRow {
    EventRow {
        at,
        kind: kind.as_str().into(),
        attempt: if kind == DrillEventKind::AgentFailover {
            0
        } else {
            1
        },
        agent: Some("a1".into()),
        detail: detail.map(str::to_owned),
    }
}

/// A controller-crash drill of a probe on a1 with `attempts` and `events`.
fn controller_crash(attempts: &[AttemptRow], events: &[EventRow]) -> (DrillState, DrillReport) {
    let spec = JobSpec::Noop(NoopSpec::default());
    evaluate(&Input {
        method: DrillMethod::ControllerCrash,
        rto_ms: 5_000,
        duration_ms: 4000,
        lease_ttl_ms: 2000,
        created_at: 0,
        fault_token: Some(1),
        job_state: JobState::Succeeded,
        finished_at: Some(3500),
        spec: &spec,
        attempts,
        events,
        now: 4000,
        group: "g",
        others: &[],
    })
    .verdict
    .expect("verdict")
}

#[test]
fn a_controller_crash_passes_when_the_lease_goes_on_and_the_agent_reports_its_failover() {
    use DrillEventKind::*;
    let one = [attempt(1, "a1", Some("succeeded"), None)];
    let crashed = [
        event(1200, FaultSent, None),
        event(1200, FaultInjected, None),
        event(1900, AgentFailover, Some("35 ms")),
    ];
    let (state, r) = controller_crash(&one, &crashed);
    assert_eq!(state, DrillState::Passed, "{r:?}");
    assert_eq!(r.failover_ms, Some(35));
    assert_eq!(
        r.exactly_once,
        ExactlyOnce::Proven,
        "its own lease's success"
    );
    assert_eq!((r.attempts, r.holder.as_deref()), (1, Some("a1")));

    // No failover reported, or a slow one: failed, with the reason.
    let (state, r) = controller_crash(&one, &crashed[..2]);
    assert_eq!(state, DrillState::Failed);
    assert!(r.reasons[0].contains("reported no failover"), "{r:?}");
    let slow = [
        crashed[0].clone(),
        crashed[1].clone(),
        event(9000, AgentFailover, Some("7000 ms")),
    ];
    let (state, r) = controller_crash(&one, &slow);
    assert_eq!(state, DrillState::Failed);
    assert!(r.reasons[0].contains("over the RTO"), "{r:?}");

    // The replica never crashed: error naming the setting.
    let (state, r) = controller_crash(&one, &crashed[..1]);
    assert_eq!(state, DrillState::Error);
    assert!(r.reasons[0].contains("allow_controller_crash"), "{r:?}");
}

#[test]
fn a_controller_crash_fails_when_attempts_overlap_or_two_succeed() {
    use DrillEventKind::*;
    let crashed = [
        event(1200, FaultSent, None),
        event(1200, FaultInjected, None),
        event(1300, AgentFailover, Some("40 ms")),
    ];
    // Attempt 2 began (2000) before attempt 1 ended (2500).
    let mut overlapping = [
        attempt(1, "a1", Some("lease_expired"), None),
        attempt(2, "a2", Some("succeeded"), None),
    ];
    overlapping[0].ended_at = Some(2500);
    let (state, r) = controller_crash(&overlapping, &crashed);
    assert_eq!(state, DrillState::Failed);
    assert!(r.reasons.iter().any(|w| w.contains("overlapped")), "{r:?}");
    let twice = [
        attempt(1, "a1", Some("succeeded"), None),
        attempt(2, "a2", Some("succeeded"), None),
    ];
    let (state, r) = controller_crash(&twice, &crashed);
    assert_eq!(state, DrillState::Failed);
    assert_eq!(r.exactly_once, ExactlyOnce::Violated);
}
