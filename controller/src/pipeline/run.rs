//! A run's next moves, from the state of each step.

use std::collections::BTreeMap;

use baton_proto::pipeline::{PipelineSpec, RunState, StepCondition, StepRunView, StepState};

/// Where a step of a run stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepStatus {
    /// The step's name.
    pub name: String,
    /// Its state ([`StepState::Pending`] before its job exists).
    pub state: StepState,
    /// The agent that ran (or runs) its job.
    pub agent: Option<String>,
}

impl From<&StepRunView> for StepStatus {
    fn from(v: &StepRunView) -> Self {
        StepStatus {
            name: v.name.clone(),
            state: v.state,
            agent: v.agent.clone(),
        }
    }
}

/// One move of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make the step's job: resolve its references
    /// ([`super::submission`]) and pin its agent ([`pin`]); either failing
    /// fails the step with that reason.
    Queue {
        /// Index in the pipeline's steps.
        step: usize,
    },
    /// The step's condition is not met.
    Skip {
        /// Index in the pipeline's steps.
        step: usize,
        /// Why.
        reason: String,
    },
}

/// What [`advance`] decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Advance {
    /// In step order; skips flow on to the steps after them in the same call.
    pub actions: Vec<Action>,
    /// How the run ended, once every step has (counting these skips).
    pub run: Option<RunState>,
}

/// The next moves of a run: each pending step whose dependencies have all
/// ended is queued or skipped by its condition (`success`: every
/// dependency succeeded; `failure`: one failed or was cancelled; `always`).
/// A step without dependencies is queued at once. Steps missing from
/// `steps` count as pending.
pub fn advance(spec: &PipelineSpec, steps: &[StepStatus]) -> Advance {
    let mut states: Vec<StepState> = spec
        .steps
        .iter()
        .map(|s| {
            steps
                .iter()
                .find(|t| t.name == s.name)
                .map_or(StepState::Pending, |t| t.state)
        })
        .collect();
    let index: BTreeMap<&str, usize> = spec
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut actions = Vec::new();
    loop {
        let before = actions.len();
        for (i, step) in spec.steps.iter().enumerate() {
            if states[i] != StepState::Pending {
                continue;
            }
            let deps: Vec<usize> = step
                .depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect();
            if !deps.iter().all(|&d| states[d].is_terminal()) {
                continue;
            }
            match unmet(spec, step.on, &deps, &states) {
                None => {
                    states[i] = StepState::Queued;
                    actions.push(Action::Queue { step: i });
                }
                Some(reason) => {
                    states[i] = StepState::Skipped;
                    actions.push(Action::Skip { step: i, reason });
                }
            }
        }
        if actions.len() == before {
            break;
        }
    }
    let run = states.iter().all(|s| s.is_terminal()).then(|| {
        if states
            .iter()
            .any(|s| matches!(s, StepState::Failed | StepState::Cancelled))
        {
            RunState::Failed
        } else {
            RunState::Succeeded
        }
    });
    Advance { actions, run }
}

/// Why a step whose dependencies have ended does not run, if it does not.
fn unmet(
    spec: &PipelineSpec,
    on: StepCondition,
    deps: &[usize],
    states: &[StepState],
) -> Option<String> {
    match on {
        StepCondition::Always => None,
        StepCondition::Success => deps.iter().find_map(|&d| {
            let how = match states[d] {
                StepState::Succeeded => return None,
                StepState::Failed => "failed",
                StepState::Cancelled => "was cancelled",
                StepState::Skipped => "was skipped",
                _ => "has not ended",
            };
            Some(format!("dependency {} {how}", spec.steps[d].name))
        }),
        StepCondition::Failure => {
            let failed = deps
                .iter()
                .any(|&d| matches!(states[d], StepState::Failed | StepState::Cancelled));
            (!failed).then(|| "no dependency failed".to_owned())
        }
    }
}

/// The agent step `step` must run on (`same_agent_as`), if it names one;
/// the error is the reason the step fails instead of moving to a host
/// without the other step's files.
pub fn pin(
    spec: &PipelineSpec,
    step: usize,
    steps: &[StepStatus],
) -> Result<Option<String>, String> {
    let Some(other) = spec.steps.get(step).and_then(|s| s.same_agent_as.as_ref()) else {
        return Ok(None);
    };
    let status = steps.iter().find(|s| &s.name == other);
    match status.and_then(|s| s.agent.clone()) {
        Some(agent) => Ok(Some(agent)),
        None => Err(format!(
            "same_agent_as = {other:?}: step {other} has no agent (it {})",
            match status.map_or(StepState::Pending, |s| s.state) {
                StepState::Skipped => "was skipped",
                StepState::Cancelled => "was cancelled before it ran",
                StepState::Failed => "failed before it ran",
                _ => "has not run",
            }
        )),
    }
}

/// The steps a retry of an ended run runs again, in step order: every step
/// that did not succeed, and every step downstream of one (a failure
/// handler or an `always` step decides again on the new outcomes). Steps
/// that succeeded with every ancestor succeeded keep their results.
pub fn retry_reset(spec: &PipelineSpec, steps: &[StepStatus]) -> Vec<usize> {
    let mut reset: Vec<bool> = spec
        .steps
        .iter()
        .map(|s| {
            steps
                .iter()
                .find(|t| t.name == s.name)
                .is_none_or(|t| t.state != StepState::Succeeded)
        })
        .collect();
    let index: BTreeMap<&str, usize> = spec
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut changed = true;
    while changed {
        changed = false;
        for (i, step) in spec.steps.iter().enumerate() {
            if !reset[i]
                && step
                    .depends_on
                    .iter()
                    .any(|d| index.get(d.as_str()).is_some_and(|&j| reset[j]))
            {
                reset[i] = true;
                changed = true;
            }
        }
    }
    (0..reset.len()).filter(|&i| reset[i]).collect()
}

#[cfg(test)]
mod tests;
