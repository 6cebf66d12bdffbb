use super::*;
use crate::store::rows::AttemptRow;
use baton_proto::NoopSpec;
use baton_proto::drill::DrillState;
use baton_proto::drill::ExactlyOnce;
use baton_proto::{JobSpec, JobState};

fn attempt(number: i64, agent: &str, outcome: Option<&str>, result: Option<&str>) -> AttemptRow {
    AttemptRow {
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
