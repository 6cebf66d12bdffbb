//! The verdict of a `controller_crash` drill (pure, like the rest of
//! [`super`]).
//!
//! The replica that received the chosen agent's heartbeat of the drill's job
//! recorded `fault_injected` and aborted; the agent went on through another
//! replica and reported how long that took (`agent_failover`, its own
//! measurement). The drill passes when:
//! - the job succeeded, with exactly one accepted success (the lease that was
//!   running when the replica died is meant to go on: its success is the
//!   expected one, not a violation);
//! - no two attempts overlapped (each began after the one before ended: one
//!   running attempt at a time), so nothing ran twice at once;
//! - the agent reported its failover, within the RTO.
//!
//! It is an `error` when it could not be carried out: given up, the job ended
//! before a heartbeat of the agent reached a replica, or no replica crashed
//! (the one that got the heartbeat does not allow it).

use baton_proto::JobState;
use baton_proto::drill::{DrillEventKind, DrillReport, DrillState, ExactlyOnce};

use super::{EventRow, FaultFacts, Input, exactly_once};
use crate::store::rows::AttemptRow;

/// The final state and report of an ended (or given-up) controller-crash drill.
pub(super) fn verdict(i: &Input<'_>, gave_up: bool) -> (DrillState, DrillReport) {
    let f = FaultFacts::of(i);
    let successes: Vec<&AttemptRow> = i
        .attempts
        .iter()
        .filter(|a| a.outcome.as_deref() == Some("succeeded"))
        .collect();
    let (exactly_once, evidence) = exactly_once(i, f.faulted, false, &successes);
    let mut report = DrillReport {
        holder: f.faulted.map(|a| a.agent_id.clone()),
        new_holder: f.regrant.map(|a| a.agent_id.clone()),
        detection_ms: f.since(f.expired_at),
        takeover_ms: f.since(f.regrant.map(|a| a.started_at)),
        total_ms: f.since(i.finished_at),
        failover_ms: failover_ms(i.events),
        attempts: i.attempts.len() as u32,
        job_state: Some(i.job_state),
        exactly_once,
        exactly_once_evidence: evidence,
        rto_ms: i.rto_ms.max(0) as u64,
        passed: false,
        reasons: Vec::new(),
    };
    if let Some(why) = not_carried_out(i, gave_up, &f) {
        report.reasons.push(why);
        return (DrillState::Error, report);
    }
    report.reasons = failures(i, &report);
    report.passed = report.reasons.is_empty();
    let state = if report.passed {
        DrillState::Passed
    } else {
        DrillState::Failed
    };
    (state, report)
}

/// The agent's failover time, from the `agent_failover` event (`"<ms> ms"`).
fn failover_ms(events: &[EventRow]) -> Option<i64> {
    events
        .iter()
        .filter(|e| e.kind == DrillEventKind::AgentFailover.as_str())
        .filter_map(|e| e.detail.as_deref()?.strip_suffix(" ms")?.parse().ok())
        .min()
}

/// Why the drill could not be carried out at all (verdict `error`), if so.
fn not_carried_out(i: &Input<'_>, gave_up: bool, f: &FaultFacts<'_>) -> Option<String> {
    if gave_up {
        return Some(format!(
            "gave up after {} s: the job is still {}",
            (i.now - i.created_at) / 1000,
            i.job_state
        ));
    }
    if f.faulted.is_none() {
        let ran_on: Vec<&str> = i.attempts.iter().map(|a| a.agent_id.as_str()).collect();
        return Some(format!(
            "the job ended {} before a heartbeat of the drill's agent for it reached a controller \
             (it ran on: {}; drill a group the agent serves alone)",
            i.job_state,
            if ran_on.is_empty() {
                "no agent".to_owned()
            } else {
                ran_on.join(", ")
            }
        ));
    }
    if !f.injected {
        return Some(
            "no controller crashed: the replica that got the agent's heartbeat does not allow it \
             (set [drills] allow_controller_crash = true on every replica)"
                .to_owned(),
        );
    }
    None
}

/// Why a carried-out drill failed (none: it passed).
fn failures(i: &Input<'_>, report: &DrillReport) -> Vec<String> {
    let mut reasons = Vec::new();
    if i.job_state != JobState::Succeeded {
        reasons.push(format!("the job ended {}, not succeeded", i.job_state));
    }
    if report.exactly_once == ExactlyOnce::Violated {
        reasons.push(format!(
            "exactly-once violated: {}",
            report.exactly_once_evidence
        ));
    }
    for pair in i.attempts.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.ended_at.is_none_or(|end| b.started_at < end) {
            reasons.push(format!(
                "attempts {} and {} overlapped: {} began before {} ended",
                a.number, b.number, b.number, a.number
            ));
        }
    }
    match report.failover_ms {
        None => reasons.push(
            "the agent reported no failover to another controller (does it know several \
             controller_urls?)"
                .to_owned(),
        ),
        Some(ms) if ms > i.rto_ms => reasons.push(format!(
            "the agent took {ms} ms to reach another controller, over the RTO of {} ms",
            i.rto_ms
        )),
        Some(_) => {}
    }
    reasons
}
