//! The drill verdict, computed from the job's attempts and the recorded
//! events (pure: no I/O, no clock).
//!
//! - fault time = `fault_injected` (the holder's ack) or, without an ack, `fault_sent`;
//! - detection = fault → the faulted lease expired on the controller;
//! - takeover = fault → the next grant of the job;
//! - total = fault → the job's terminal state;
//! - exactly once: one accepted success and none from the faulted lease; for
//!   `exactly_once` procedure/sql jobs the succeeded attempt's run-ledger
//!   verdict (`committed`/`replayed`) is the proof; a `noop` probe has no
//!   effect outside the controller, so its accepted completion is the effect;
//!   other jobs: not provable (a fenced holder may have acted before it stopped).

use baton_proto::drill::{DrillEventKind, DrillReport, DrillState, ExactlyOnce};
use baton_proto::{JobSpec, JobState};

use super::EventRow;
use crate::store::rows::AttemptRow;

/// Everything [`evaluate`] looks at.
#[derive(Debug)]
pub(crate) struct Input<'a> {
    /// RTO target.
    pub rto_ms: i64,
    /// Fault duration.
    pub duration_ms: i64,
    /// Lease TTL of the job.
    pub lease_ttl_ms: i64,
    /// When the drill started.
    pub created_at: i64,
    /// The lease the fault was sent to.
    pub fault_token: Option<i64>,
    /// The job's state now.
    pub job_state: JobState,
    /// When it reached a terminal state.
    pub finished_at: Option<i64>,
    /// What it runs.
    pub spec: &'a JobSpec,
    /// Its attempts, by number.
    pub attempts: &'a [AttemptRow],
    /// The timeline recorded so far.
    pub events: &'a [EventRow],
    /// Now (Unix ms).
    pub now: i64,
}

/// What a refresh should store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Evaluation {
    /// Timeline rows derived from the attempts (insert-if-missing).
    pub derived: Vec<EventRow>,
    /// The final state and report, once the job has ended (or the drill gave up).
    pub verdict: Option<(DrillState, DrillReport)>,
}

/// How long a drill may run before it is given up (`error`).
pub fn give_up_after_ms(rto_ms: i64, duration_ms: i64, lease_ttl_ms: i64) -> i64 {
    (3 * rto_ms + duration_ms + 4 * lease_ttl_ms).max(600_000)
}

fn event(at: i64, kind: DrillEventKind, a: &AttemptRow, detail: Option<String>) -> EventRow {
    EventRow {
        at,
        kind: kind.as_str().to_owned(),
        attempt: a.number,
        agent: Some(a.agent_id.clone()),
        detail,
    }
}

/// Derive the timeline from the attempts and decide the verdict.
pub(crate) fn evaluate(i: &Input<'_>) -> Evaluation {
    let mut derived = Vec::new();
    for a in i.attempts {
        let kind = if a.number == 1 {
            DrillEventKind::JobGranted
        } else {
            DrillEventKind::JobRegranted
        };
        derived.push(event(
            a.started_at,
            kind,
            a,
            Some(format!("token {}", a.token)),
        ));
        if let (Some(end), Some(outcome)) = (a.ended_at, a.outcome.as_deref()) {
            match outcome {
                "lease_expired" => {
                    derived.push(event(end, DrillEventKind::LeaseExpired, a, None));
                }
                "succeeded" => {}
                other => {
                    derived.push(event(
                        end,
                        DrillEventKind::AttemptEnded,
                        a,
                        Some(other.to_owned()),
                    ));
                }
            }
        }
    }
    let terminal = i.job_state.is_terminal();
    if terminal {
        let last = i.attempts.last();
        derived.push(EventRow {
            at: i.finished_at.unwrap_or(i.now),
            kind: DrillEventKind::JobFinished.as_str().to_owned(),
            attempt: last.map_or(0, |a| a.number),
            agent: last.map(|a| a.agent_id.clone()),
            detail: Some(i.job_state.as_str().to_owned()),
        });
    }
    let gave_up = !terminal
        && i.now - i.created_at > give_up_after_ms(i.rto_ms, i.duration_ms, i.lease_ttl_ms);
    let verdict = (terminal || gave_up).then(|| verdict(i, gave_up));
    Evaluation { derived, verdict }
}

fn at_of(events: &[EventRow], kind: DrillEventKind) -> Option<i64> {
    events
        .iter()
        .filter(|e| e.kind == kind.as_str())
        .map(|e| e.at)
        .min()
}

fn verdict(i: &Input<'_>, gave_up: bool) -> (DrillState, DrillReport) {
    let fault_at = at_of(i.events, DrillEventKind::FaultInjected)
        .or_else(|| at_of(i.events, DrillEventKind::FaultSent));
    let injected = at_of(i.events, DrillEventKind::FaultInjected).is_some();
    let faulted = i
        .fault_token
        .and_then(|t| i.attempts.iter().find(|a| a.token == t));
    let regrant = faulted.and_then(|f| i.attempts.iter().find(|a| a.number > f.number));
    let expired_at = faulted
        .filter(|f| f.outcome.as_deref() == Some("lease_expired"))
        .and_then(|f| f.ended_at);
    let since = |t: Option<i64>| fault_at.zip(t).map(|(f, t)| t - f);
    let successes: Vec<&AttemptRow> = i
        .attempts
        .iter()
        .filter(|a| a.outcome.as_deref() == Some("succeeded"))
        .collect();
    let (exactly_once, evidence) = exactly_once(i, faulted, injected, &successes);
    let mut report = DrillReport {
        holder: faulted.map(|a| a.agent_id.clone()),
        new_holder: regrant.map(|a| a.agent_id.clone()),
        detection_ms: since(expired_at),
        takeover_ms: since(regrant.map(|a| a.started_at)),
        total_ms: since(i.finished_at),
        attempts: i.attempts.len() as u32,
        job_state: Some(i.job_state),
        exactly_once,
        exactly_once_evidence: evidence,
        rto_ms: i.rto_ms.max(0) as u64,
        passed: false,
        reasons: Vec::new(),
    };
    // Could the drill be carried out at all?
    let error = if gave_up {
        Some(format!(
            "gave up after {} s: the job is still {}",
            (i.now - i.created_at) / 1000,
            i.job_state
        ))
    } else if faulted.is_none() {
        Some(format!(
            "the job ended {} before the fault could be sent (no heartbeat while it ran)",
            i.job_state
        ))
    } else if expired_at.is_none() {
        Some(format!(
            "no takeover: the holder's lease did not expire (attempt ended {}){}",
            faulted
                .and_then(|f| f.outcome.clone())
                .unwrap_or_else(|| "not at all".into()),
            if injected {
                ""
            } else {
                "; the holder never acknowledged the fault"
            }
        ))
    } else {
        None
    };
    if let Some(why) = error {
        report.reasons.push(why);
        return (DrillState::Error, report);
    }
    if regrant.is_none() {
        report.reasons.push(format!(
            "the job was not re-granted (it ended {})",
            i.job_state
        ));
    }
    if let Some(t) = report.takeover_ms
        && t > i.rto_ms
    {
        report.reasons.push(format!(
            "takeover took {t} ms, over the RTO of {} ms",
            i.rto_ms
        ));
    }
    if i.job_state != JobState::Succeeded {
        report
            .reasons
            .push(format!("the job ended {}, not succeeded", i.job_state));
    }
    if exactly_once == ExactlyOnce::Violated {
        report.reasons.push(format!(
            "exactly-once violated: {}",
            report.exactly_once_evidence
        ));
    }
    report.passed = report.reasons.is_empty();
    let state = if report.passed {
        DrillState::Passed
    } else {
        DrillState::Failed
    };
    (state, report)
}

fn exactly_once(
    i: &Input<'_>,
    faulted: Option<&AttemptRow>,
    injected: bool,
    successes: &[&AttemptRow],
) -> (ExactlyOnce, String) {
    let [one] = successes else {
        if successes.is_empty() {
            return (
                ExactlyOnce::NoEffect,
                "no attempt succeeded: the job had no accepted effect".into(),
            );
        }
        let list: Vec<String> = successes
            .iter()
            .map(|a| format!("attempt {} (token {})", a.number, a.token))
            .collect();
        return (
            ExactlyOnce::Violated,
            format!(
                "{} successes accepted: {}",
                successes.len(),
                list.join(", ")
            ),
        );
    };
    if injected && faulted.is_some_and(|f| f.token == one.token) {
        return (
            ExactlyOnce::Violated,
            format!(
                "a completion was accepted from the faulted lease (token {}) after the fault",
                one.token
            ),
        );
    }
    let faulted_note = faulted.map_or_else(String::new, |f| {
        format!(
            "; the faulted lease (token {}) ended {} and no completion from it was accepted",
            f.token,
            f.outcome.as_deref().unwrap_or("open")
        )
    });
    let accepted = format!(
        "one success accepted: attempt {} (token {}, agent {})",
        one.number, one.token, one.agent_id
    );
    let ledger_job = match i.spec {
        JobSpec::Procedure(p) => p.exactly_once,
        JobSpec::Sql(s) => s.exactly_once,
        _ => false,
    };
    if ledger_job {
        let ledger = one
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
            .and_then(|v| {
                v.pointer("/data/ledger")
                    .and_then(|l| l.as_str().map(str::to_owned))
            });
        return match ledger.as_deref() {
            Some("committed") => (
                ExactlyOnce::Proven,
                format!(
                    "{accepted}; the run ledger row was committed with the work by that attempt{faulted_note}"
                ),
            ),
            Some("replayed") => (
                ExactlyOnce::Proven,
                format!(
                    "{accepted}; it found an earlier attempt's run ledger row and replayed its result without running again{faulted_note}"
                ),
            ),
            _ => (
                ExactlyOnce::NotProven,
                format!("{accepted}; but its result carries no run-ledger verdict{faulted_note}"),
            ),
        };
    }
    if matches!(i.spec, JobSpec::Noop(_)) {
        return (
            ExactlyOnce::Proven,
            format!("probe (noop, no outside effect): {accepted}{faulted_note}"),
        );
    }
    (
        ExactlyOnce::NotProven,
        format!(
            "{accepted}{faulted_note}; the job has no run ledger, so an effect of the fenced holder before it stopped cannot be ruled out"
        ),
    )
}
