//! What the `procedure` and `sql` executors of both engines share: the work
//! of a job taken from its spec, and the outcome built from the captured
//! results (succeeded, replayed from the ledger, failed, stopped).

use baton_proto::{JobResult, JobSpec, ProcedureSpec, Session};
use serde_json::{Value as Json, json};

use super::failure::Failure;
use super::ledger::{self, mark_committed};
use super::session::Done;
use crate::executor::stop::{self, Stop};
use crate::executor::{Job, Outcome};

/// The work of a job: a procedure call planned by the engine, or a batch.
#[derive(Debug, Clone)]
pub enum Work<P> {
    /// A procedure call.
    Call(P),
    /// A SQL batch (several statements allowed).
    Batch(String),
}

/// A job's work as the engine wants it.
#[derive(Debug, Clone)]
pub struct Planned<'a, P> {
    /// The connection it runs on.
    pub connection: &'a str,
    /// The call or the batch.
    pub work: Work<P>,
    /// Whether the run ledger is wanted (`exactly_once`).
    pub exactly_once: bool,
    /// The session settings to apply before the work (checked by the engine).
    pub session: &'a Session,
}

/// What each engine says when a spec is not for it.
#[derive(Debug, Clone, Copy)]
pub struct Wording {
    /// The engine's name in "a `<engine>` executor got a `<kind>` job".
    pub engine: &'static str,
    /// The message for an empty batch.
    pub empty_batch: &'static str,
}

/// The connection name, the work and whether the ledger is wanted; an
/// error text for a spec that cannot run (never retried).
pub fn prepare<'a, P>(
    spec: &'a JobSpec,
    plan: impl FnOnce(&ProcedureSpec) -> Result<P, String>,
    wording: Wording,
) -> Result<Planned<'a, P>, String> {
    match spec {
        JobSpec::Procedure(p) => Ok(Planned {
            connection: &p.connection,
            work: Work::Call(plan(p)?),
            exactly_once: p.exactly_once,
            session: &p.session,
        }),
        JobSpec::Sql(s) => {
            if s.sql.trim().is_empty() {
                return Err(wording.empty_batch.into());
            }
            Ok(Planned {
                connection: &s.connection,
                work: Work::Batch(s.sql.clone()),
                exactly_once: s.exactly_once,
                session: &s.session,
            })
        }
        other => Err(format!(
            "a {} executor got a {} job",
            wording.engine,
            other.kind()
        )),
    }
}

/// The result sets, counts and values a job captured, as reported.
pub trait Captured {
    /// `result.data`.
    fn to_json(&self) -> Json;
    /// Whether a bound cut something.
    fn truncated(&self) -> bool;
}

/// A result with `data`, truncated when the capture was.
pub fn result_with(data: Json, capture: Option<&dyn Captured>) -> JobResult {
    stop::result_with(data, capture.is_some_and(Captured::truncated))
}

/// The data of a successful run with the ledger, as written to the ledger
/// and reported; `ended_early` is the engine's warning for a job that ended
/// the ledger transaction itself.
pub fn committed_data(capture: &dyn Captured, ended: bool, ended_early: &str) -> Json {
    mark_committed(capture.to_json(), ended.then_some(ended_early))
}

/// A session that ended well: what ran (committed with its ledger row when
/// `ledger`), or the earlier committed result replayed.
pub fn succeeded(done: Done, ledger: bool, capture: &dyn Captured, ended_early: &str) -> Outcome {
    match done {
        Done::Ran {
            transaction_ended_early,
        } => {
            let data = if ledger {
                committed_data(capture, transaction_ended_early, ended_early)
            } else {
                capture.to_json()
            };
            Outcome::succeeded(result_with(data, Some(capture)))
        }
        Done::Replayed(committed) => {
            Outcome::succeeded(result_with(ledger::replayed(&committed), None))
        }
    }
}

/// A failed job: the failure with what was captured before it.
pub fn failed(failure: Failure, capture: Option<&dyn Captured>) -> Outcome {
    failure.outcome(
        capture.map_or_else(|| json!({}), Captured::to_json),
        capture.is_some_and(Captured::truncated),
    )
}

/// A stopped job: what was captured, plus what reached the server (the
/// kill, the attention) as `extra` keys and as text.
pub fn stopped(
    stop: Stop,
    job: &Job,
    capture: &dyn Captured,
    extra: Vec<(&str, Json)>,
    text: String,
) -> Outcome {
    let mut data = capture.to_json();
    if let Json::Object(m) = &mut data {
        for (key, value) in extra {
            m.insert(key.into(), value);
        }
    }
    stop::stopped_with(stop, job, result_with(data, Some(capture)), text)
}

#[cfg(test)]
mod tests;
