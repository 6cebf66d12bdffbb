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
//!   other jobs: not provable (a fenced holder may have acted before it stopped);
//! - takeover by another agent: a re-grant to the faulted agent itself fails
//!   the drill, and so does no re-grant; the reason names which other agents
//!   of the group could have run the job, or why none could ([`Candidate`]).

use baton_proto::drill::{DrillEventKind, DrillMethod, DrillReport, DrillState, ExactlyOnce};
use baton_proto::{AgentView, JobSpec, JobState};

use super::EventRow;
use crate::store::rows::AttemptRow;

mod controller_crash;

/// Everything [`evaluate`] looks at.
#[derive(Debug)]
pub(crate) struct Input<'a> {
    /// The drill's method (`controller_crash` is judged by [`controller_crash`]).
    pub method: DrillMethod,
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
    /// The drill's group.
    pub group: &'a str,
    /// The group's other agents (all but the faulted holder), read when a
    /// verdict is due; empty otherwise.
    pub others: &'a [Candidate],
}

/// Another agent of the drill's group, and why it could not run the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Agent id.
    pub id: String,
    /// Why it could not take the job over (`None`: it could).
    pub unable: Option<String>,
}

/// The agents of `group` other than `holder`, each with why it could not
/// run a job of `spec` (offline: not seen within `online_window_ms`).
pub fn candidates(
    agents: &[AgentView],
    group: &str,
    spec: &JobSpec,
    holder: &str,
    online_window_ms: i64,
    now: i64,
) -> Vec<Candidate> {
    let (kind, connection) = (spec.kind(), spec.connection());
    agents
        .iter()
        .filter(|a| a.id != holder && a.groups.iter().any(|g| g == group))
        .map(|a| {
            let unable = if a.revoked_at.is_some() {
                Some("revoked".to_owned())
            } else if now - a.last_seen.timestamp_millis() > online_window_ms {
                Some("offline".to_owned())
            } else if a.drained_at.is_some() {
                Some("drained".to_owned())
            } else if !a.capabilities.kinds.contains(&kind) {
                Some(format!("does not run `{kind}` jobs"))
            } else {
                connection
                    .filter(|c| !a.capabilities.connections.iter().any(|x| x.name == *c))
                    .map(|c| format!("has no connection `{c}`"))
                    .or_else(|| {
                        spec.store()
                            .filter(|s| !a.capabilities.stores.iter().any(|x| x == s))
                            .map(|s| format!("has no store `{s}`"))
                    })
            };
            Candidate {
                id: a.id.clone(),
                unable,
            }
        })
        .collect()
}

/// What the other agents of the group could do, for a failed takeover.
fn others_note(i: &Input<'_>) -> String {
    let able: Vec<&str> = i
        .others
        .iter()
        .filter(|c| c.unable.is_none())
        .map(|c| c.id.as_str())
        .collect();
    if !able.is_empty() {
        return format!("other agents could run it: {}", able.join(", "));
    }
    if i.others.is_empty() {
        return format!(
            "no other agent of group `{}` could run it: the faulted agent is the group's only agent",
            i.group
        );
    }
    let why: Vec<String> = i
        .others
        .iter()
        .map(|c| format!("{} {}", c.id, c.unable.as_deref().unwrap_or("")))
        .collect();
    format!(
        "no other agent of group `{}` could run it: {}",
        i.group,
        why.join("; ")
    )
}

/// What a refresh should store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Evaluation {
    /// Timeline rows derived from the attempts (insert-if-missing).
    pub derived: Vec<EventRow>,
    /// The final state and report, once the job has ended (or the drill gave up).
    pub verdict: Option<(DrillState, DrillReport)>,
    /// When the verdict is stamped: now, but never before an event it
    /// judges (a completion may carry a later `now` than the read that
    /// evaluates it, taken before the job was read).
    pub verdict_at: i64,
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
    let verdict_at = derived.iter().map(|e| e.at).fold(i.now, i64::max);
    Evaluation {
        derived,
        verdict,
        verdict_at,
    }
}

pub(super) fn at_of(events: &[EventRow], kind: DrillEventKind) -> Option<i64> {
    events
        .iter()
        .filter(|e| e.kind == kind.as_str())
        .map(|e| e.at)
        .min()
}

/// What happened around the fault, read from the events and attempts.
pub(super) struct FaultFacts<'a> {
    /// When the fault took effect (ack) or, without an ack, was sent.
    pub at: Option<i64>,
    /// Whether the holder acknowledged the fault.
    pub injected: bool,
    /// The attempt whose lease the fault was sent to.
    pub faulted: Option<&'a AttemptRow>,
    /// The first attempt after the faulted one.
    pub regrant: Option<&'a AttemptRow>,
    /// When the faulted lease expired on the controller.
    pub expired_at: Option<i64>,
}

impl<'a> FaultFacts<'a> {
    pub(super) fn of(i: &Input<'a>) -> Self {
        let faulted = i
            .fault_token
            .and_then(|t| i.attempts.iter().find(|a| a.token == t));
        FaultFacts {
            at: at_of(i.events, DrillEventKind::FaultInjected)
                .or_else(|| at_of(i.events, DrillEventKind::FaultSent)),
            injected: at_of(i.events, DrillEventKind::FaultInjected).is_some(),
            faulted,
            regrant: faulted.and_then(|f| i.attempts.iter().find(|a| a.number > f.number)),
            expired_at: faulted
                .filter(|f| f.outcome.as_deref() == Some("lease_expired"))
                .and_then(|f| f.ended_at),
        }
    }

    /// Milliseconds from the fault to `t`.
    pub(super) fn since(&self, t: Option<i64>) -> Option<i64> {
        self.at.zip(t).map(|(f, t)| t - f)
    }
}

/// The final state and report of an ended (or given-up) drill.
fn verdict(i: &Input<'_>, gave_up: bool) -> (DrillState, DrillReport) {
    if i.method == DrillMethod::ControllerCrash {
        return controller_crash::verdict(i, gave_up);
    }
    let f = FaultFacts::of(i);
    let successes: Vec<&AttemptRow> = i
        .attempts
        .iter()
        .filter(|a| a.outcome.as_deref() == Some("succeeded"))
        .collect();
    let (exactly_once, evidence) = exactly_once(i, f.faulted, f.injected, &successes);
    let mut report = DrillReport {
        holder: f.faulted.map(|a| a.agent_id.clone()),
        new_holder: f.regrant.map(|a| a.agent_id.clone()),
        detection_ms: f.since(f.expired_at),
        takeover_ms: f.since(f.regrant.map(|a| a.started_at)),
        total_ms: f.since(i.finished_at),
        failover_ms: None,
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
    report.reasons = failures(i, &f, &report);
    report.passed = report.reasons.is_empty();
    let state = if report.passed {
        DrillState::Passed
    } else {
        DrillState::Failed
    };
    (state, report)
}

/// Why the drill could not be carried out at all (verdict `error`), if so.
fn not_carried_out(i: &Input<'_>, gave_up: bool, f: &FaultFacts<'_>) -> Option<String> {
    if gave_up {
        Some(format!(
            "gave up after {} s: the job is still {}",
            (i.now - i.created_at) / 1000,
            i.job_state
        ))
    } else if f.faulted.is_none() {
        Some(format!(
            "the job ended {} before the fault could be sent (no heartbeat while it ran)",
            i.job_state
        ))
    } else if f.expired_at.is_none() {
        Some(format!(
            "no takeover: the holder's lease did not expire (attempt ended {}){}",
            f.faulted
                .and_then(|a| a.outcome.clone())
                .unwrap_or_else(|| "not at all".into()),
            if f.injected {
                ""
            } else {
                "; the holder never acknowledged the fault"
            }
        ))
    } else {
        None
    }
}

/// Why a carried-out drill failed (none: it passed).
fn failures(i: &Input<'_>, f: &FaultFacts<'_>, report: &DrillReport) -> Vec<String> {
    let mut reasons = Vec::new();
    match (f.faulted, f.regrant) {
        (_, None) => reasons.push(format!(
            "the job was not re-granted (it ended {}); {}",
            i.job_state,
            others_note(i)
        )),
        (Some(old), Some(new)) if old.agent_id == new.agent_id => reasons.push(format!(
            "no takeover by another agent: the faulted agent {} took the job back itself; {}",
            new.agent_id,
            others_note(i)
        )),
        _ => {}
    }
    if let Some(t) = report.takeover_ms
        && t > i.rto_ms
    {
        reasons.push(format!(
            "takeover took {t} ms, over the RTO of {} ms",
            i.rto_ms
        ));
    }
    if i.job_state != JobState::Succeeded {
        reasons.push(format!("the job ended {}, not succeeded", i.job_state));
    }
    if report.exactly_once == ExactlyOnce::Violated {
        reasons.push(format!(
            "exactly-once violated: {}",
            report.exactly_once_evidence
        ));
    }
    reasons
}

/// The exactly-once verdict and its evidence (see the module doc).
pub(super) fn exactly_once(
    i: &Input<'_>,
    faulted: Option<&AttemptRow>,
    injected: bool,
    successes: &[&AttemptRow],
) -> (ExactlyOnce, String) {
    let [one] = successes else {
        return not_one_success(successes);
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
        return by_ledger(one, &accepted, &faulted_note);
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

/// The verdict when not exactly one success was accepted: none is no
/// effect, several violate exactly-once.
fn not_one_success(successes: &[&AttemptRow]) -> (ExactlyOnce, String) {
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
    (
        ExactlyOnce::Violated,
        format!(
            "{} successes accepted: {}",
            successes.len(),
            list.join(", ")
        ),
    )
}

/// The verdict of an `exactly_once` job from the run-ledger verdict in the
/// succeeded attempt's result: proven when `committed` or `replayed`.
fn by_ledger(one: &AttemptRow, accepted: &str, faulted_note: &str) -> (ExactlyOnce, String) {
    let ledger = one
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
        .and_then(|v| {
            v.pointer("/data/ledger")
                .and_then(|l| l.as_str().map(str::to_owned))
        });
    match ledger.as_deref() {
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
    }
}
