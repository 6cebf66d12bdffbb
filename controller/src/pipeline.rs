//! Pipelines as pure values: the checks when one is defined
//! ([`mod@validate`]), the references between steps resolved when a step is
//! queued ([`resolve`], [`submission`]), and a run's next moves
//! ([`advance`], [`pin`], [`retry_reset`]). No I/O, no clock, no store: the
//! store calls these inside its transaction.
//!
//! A pipeline is a DAG of steps (`depends_on`), each a job template with a
//! condition (`on`): `success` runs when every dependency succeeded,
//! `failure` when at least one failed or was cancelled, `always` when all
//! have ended. A step whose condition is not met is skipped, and the skip
//! flows on to its own dependents. The run ends when every step has ended:
//! failed if any step failed or was cancelled (a failure handler that ran
//! does not make it succeed), else succeeded. References
//! (`${steps.<step>.<path>}`, see [`refs`]) and `same_agent_as` name
//! ancestors only: what they read is known when the step is queued.

pub mod refs;
mod run;

use std::collections::BTreeMap;

use baton_proto::pipeline::{MAX_STEPS, PipelineSpec, StepCondition};
use baton_proto::schedule::JobTemplate;
use baton_proto::{JobId, JobResult, JobSubmit};

use crate::validate;
use refs::{Piece, Reference, Slot};
pub use run::{Action, Advance, StepStatus, advance, pin, retry_reset};

/// A refused pipeline definition: the field at fault (a JSON path such as
/// `steps[2].job.spec.args[1]`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// JSON path of the field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Why a step could not be made into a job when it was queued (the step
/// then fails with this as its reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A templated field does not parse (the pipeline was not validated).
    #[error("{field}: {message}")]
    Malformed {
        /// Field of the template.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A reference has no value.
    #[error("{field}: cannot resolve {reference}: {reason}")]
    Unresolved {
        /// Field of the template.
        field: String,
        /// The reference as written.
        reference: String,
        /// Why it has no value.
        reason: String,
    },
    /// The resolved job fails the submission checks.
    #[error("{field}: {message} (after resolving references)")]
    Refused {
        /// Field of the resolved job.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// No step with this index.
    #[error("the pipeline has no step {0}")]
    NoStep(usize),
}

/// What a step left behind, for the references of later steps.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    /// Its job.
    pub job_id: JobId,
    /// The agent that ran it.
    pub agent: Option<String>,
    /// Its job's final result.
    pub result: Option<JobResult>,
}

/// The controller's bounds on a job (as for `POST /v1/jobs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// Lease TTL of a job that names none.
    pub default_lease_ttl_ms: u64,
    /// Largest spec, as JSON.
    pub max_spec_bytes: usize,
}

/// Check a definition: names, groups, the graph (known dependencies, no
/// cycle, `same_agent_as` an ancestor), every reference, and each step's
/// job as a submission to its group (references stand in as `ref`).
pub fn validate(spec: &PipelineSpec, limits: &JobLimits) -> Result<(), Invalid> {
    if !baton_proto::schedule::valid_name(&spec.name) {
        return Err(invalid(
            "name",
            "must be 1-64 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    if !baton_proto::valid_name(&spec.group) {
        return Err(invalid(
            "group",
            "must be 1-128 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    if spec.timeout_ms == Some(0) {
        return Err(invalid("timeout_ms", "must be positive"));
    }
    if spec.steps.is_empty() || spec.steps.len() > MAX_STEPS {
        return Err(invalid(
            "steps",
            format!("1 to {MAX_STEPS} steps (got {})", spec.steps.len()),
        ));
    }
    let index = step_names(spec)?;
    dependencies(spec, &index)?;
    if let Some((at, cycle)) = find_cycle(spec, &index) {
        return Err(invalid(
            &format!("steps[{at}].depends_on"),
            format!("a cycle: {}", cycle.join(" -> ")),
        ));
    }
    let anc = ancestors(spec, &index);
    for (i, step) in spec.steps.iter().enumerate() {
        if let Some(other) = &step.same_agent_as {
            let field = format!("steps[{i}].same_agent_as");
            let j = *index
                .get(other.as_str())
                .ok_or_else(|| invalid(&field, format!("unknown step {other:?}")))?;
            if anc[i] & (1 << j) == 0 {
                return Err(invalid(
                    &field,
                    format!(
                        "step {other:?} is not an ancestor of this step (list it in depends_on, \
                         directly or through another step): its agent is not known when this \
                         step is queued"
                    ),
                ));
            }
        }
        step_job(spec, i, &index, &anc, limits)?;
    }
    Ok(())
}

/// Step names valid and unique; name → index.
fn step_names(spec: &PipelineSpec) -> Result<BTreeMap<&str, usize>, Invalid> {
    let mut index = BTreeMap::new();
    for (i, step) in spec.steps.iter().enumerate() {
        let field = format!("steps[{i}].name");
        if !baton_proto::schedule::valid_name(&step.name) {
            return Err(invalid(
                &field,
                "must be 1-64 characters of A-Z a-z 0-9 _ . -",
            ));
        }
        if let Some(j) = index.insert(step.name.as_str(), i) {
            return Err(invalid(
                &field,
                format!("{:?} is also the name of steps[{j}]", step.name),
            ));
        }
    }
    Ok(index)
}

/// Groups valid; dependencies known, not the step itself, not repeated; a
/// failure handler has something to handle.
fn dependencies(spec: &PipelineSpec, index: &BTreeMap<&str, usize>) -> Result<(), Invalid> {
    for (i, step) in spec.steps.iter().enumerate() {
        if let Some(g) = &step.group
            && !baton_proto::valid_name(g)
        {
            return Err(invalid(
                &format!("steps[{i}].group"),
                "must be 1-128 characters of A-Z a-z 0-9 _ . -",
            ));
        }
        if step.on == StepCondition::Failure && step.depends_on.is_empty() {
            return Err(invalid(
                &format!("steps[{i}].on"),
                "a step with on = \"failure\" needs depends_on (the steps whose failure it handles)",
            ));
        }
        for (k, dep) in step.depends_on.iter().enumerate() {
            let field = format!("steps[{i}].depends_on[{k}]");
            match index.get(dep.as_str()) {
                None => return Err(invalid(&field, format!("unknown step {dep:?}"))),
                Some(&j) if j == i => {
                    return Err(invalid(&field, "a step cannot depend on itself"));
                }
                Some(_) if step.depends_on[..k].contains(dep) => {
                    return Err(invalid(&field, format!("{dep:?} is listed twice")));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Indices of a step's dependencies (unknown names left out).
fn deps_of(spec: &PipelineSpec, i: usize, index: &BTreeMap<&str, usize>) -> Vec<usize> {
    spec.steps[i]
        .depends_on
        .iter()
        .filter_map(|d| index.get(d.as_str()).copied())
        .collect()
}

/// A cycle through `depends_on`, if any: the step where it was found and
/// the names around it (`a -> b -> a`).
fn find_cycle(spec: &PipelineSpec, index: &BTreeMap<&str, usize>) -> Option<(usize, Vec<String>)> {
    // 0 = unseen, 1 = on the current path, 2 = done.
    let mut mark = vec![0u8; spec.steps.len()];
    let mut path = Vec::new();
    (0..spec.steps.len()).find_map(|i| visit(spec, index, i, &mut mark, &mut path))
}

fn visit(
    spec: &PipelineSpec,
    index: &BTreeMap<&str, usize>,
    i: usize,
    mark: &mut [u8],
    path: &mut Vec<usize>,
) -> Option<(usize, Vec<String>)> {
    match mark[i] {
        2 => return None,
        1 => {
            let from = path.iter().position(|&p| p == i).unwrap_or(0);
            let mut names: Vec<String> = path[from..]
                .iter()
                .map(|&p| spec.steps[p].name.clone())
                .collect();
            names.push(spec.steps[i].name.clone());
            return Some((i, names));
        }
        _ => {}
    }
    mark[i] = 1;
    path.push(i);
    for d in deps_of(spec, i, index) {
        if let Some(found) = visit(spec, index, d, mark, path) {
            return Some(found);
        }
    }
    path.pop();
    mark[i] = 2;
    None
}

/// Each step's ancestors (transitively through `depends_on`) as a bit set
/// (at most [`MAX_STEPS`] = 64 steps). The graph must have no cycle.
fn ancestors(spec: &PipelineSpec, index: &BTreeMap<&str, usize>) -> Vec<u64> {
    let n = spec.steps.len();
    let mut anc: Vec<Option<u64>> = vec![None; n];
    // Fixpoint: a step's set is known once its dependencies' are (depth ≤ n).
    for _ in 0..=n {
        for i in 0..n {
            if anc[i].is_some() {
                continue;
            }
            let deps = deps_of(spec, i, index);
            if let Some(sets) = deps.iter().map(|&d| anc[d]).collect::<Option<Vec<u64>>>() {
                let own = deps.iter().fold(0u64, |acc, &d| acc | (1 << d));
                anc[i] = Some(sets.into_iter().fold(own, |acc, s| acc | s));
            }
        }
    }
    anc.into_iter().map(|a| a.unwrap_or(0)).collect()
}

/// Check the references of step `i` and its job as a submission.
fn step_job(
    spec: &PipelineSpec,
    i: usize,
    index: &BTreeMap<&str, usize>,
    anc: &[u64],
    limits: &JobLimits,
) -> Result<(), Invalid> {
    let step = &spec.steps[i];
    let mut job = step.job.clone();
    refs::each_string(&mut job.spec, &mut |field, slot, text| {
        let at = format!("steps[{i}].job.{field}");
        match slot {
            Slot::Plain(why) if refs::names_a_step(text) => Err(invalid(&at, why)),
            Slot::Plain(_) => Ok(()),
            Slot::Templated => {
                let mut stand_in = String::new();
                for piece in refs::parse(text).map_err(|m| invalid(&at, m))? {
                    match piece {
                        Piece::Text(t) => stand_in.push_str(&t),
                        Piece::Ref(r) => {
                            check_ref(spec, i, &r, index, anc)
                                .map_err(|m| invalid(&at, format!("{}: {m}", r.raw)))?;
                            stand_in.push_str("ref");
                        }
                    }
                }
                *text = stand_in;
                Ok(())
            }
        }
    })?;
    let group = step.group.as_deref().unwrap_or(&spec.group);
    validate::submission(
        &job.submit(group),
        limits.default_lease_ttl_ms,
        limits.max_spec_bytes,
    )
    .map(|_| ())
    .map_err(|e| invalid(&format!("steps[{i}].job.{}", e.field), e.message))
}

/// A reference of step `i`: a known ancestor, and a path its kind produces.
fn check_ref(
    spec: &PipelineSpec,
    i: usize,
    r: &Reference,
    index: &BTreeMap<&str, usize>,
    anc: &[u64],
) -> Result<(), String> {
    let j = *index.get(r.step.as_str()).ok_or_else(|| {
        let dotted = format!("{}.", r.step);
        match spec.steps.iter().find(|s| s.name.starts_with(&dotted)) {
            Some(s) => format!(
                "unknown step {:?} (step {:?} cannot be referenced: a path starts at its first \
                 `result`, `data`, `agent` or `job_id` segment)",
                r.step, s.name
            ),
            None => format!("unknown step {:?}", r.step),
        }
    })?;
    if j == i {
        return Err("a step cannot refer to its own outputs".into());
    }
    if anc[i] & (1 << j) == 0 {
        return Err(format!(
            "step {:?} is not an ancestor of this step (list it in depends_on, directly or \
             through another step): its outputs are not known when this step is queued",
            r.step
        ));
    }
    refs::check_path(&r.path, &spec.steps[j].job.spec)
}

/// `template` with every reference replaced by its value's text, read
/// from `outputs` (by step name; `None` for a step without a job).
pub fn resolve(
    template: &JobTemplate,
    outputs: &dyn Fn(&str) -> Option<StepOutput>,
) -> Result<JobTemplate, Error> {
    let mut job = template.clone();
    refs::each_string(&mut job.spec, &mut |field, slot, text| {
        if slot != Slot::Templated {
            return Ok(());
        }
        let pieces = refs::parse(text).map_err(|message| Error::Malformed {
            field: field.to_owned(),
            message,
        })?;
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(t) => out.push_str(&t),
                Piece::Ref(r) => {
                    let value = outputs(&r.step)
                        .ok_or_else(|| format!("step {} has no job", r.step))
                        .and_then(|o| refs::value(&r, &o))
                        .map_err(|reason| Error::Unresolved {
                            field: field.to_owned(),
                            reference: r.raw.clone(),
                            reason,
                        })?;
                    out.push_str(&value);
                }
            }
        }
        *text = out;
        Ok(())
    })?;
    Ok(job)
}

/// The worker group of step `step`: its own, else the schedule's that
/// started the run, else the pipeline's.
pub fn step_group<'a>(
    spec: &'a PipelineSpec,
    step: usize,
    schedule_group: Option<&'a str>,
) -> Option<&'a str> {
    let s = spec.steps.get(step)?;
    Some(
        s.group
            .as_deref()
            .or(schedule_group)
            .unwrap_or(spec.group.as_str()),
    )
}

/// The job of step `step`, references resolved, checked as a submission
/// to its group; with its effective lease TTL. An error is the reason the
/// step fails without being queued.
pub fn submission(
    spec: &PipelineSpec,
    step: usize,
    schedule_group: Option<&str>,
    outputs: &dyn Fn(&str) -> Option<StepOutput>,
    limits: &JobLimits,
) -> Result<(JobSubmit, u64), Error> {
    let group = step_group(spec, step, schedule_group).ok_or(Error::NoStep(step))?;
    let job = resolve(&spec.steps[step].job, outputs)?.submit(group);
    let ttl = validate::submission(&job, limits.default_lease_ttl_ms, limits.max_spec_bytes)
        .map_err(|e| Error::Refused {
            field: e.field,
            message: e.message,
        })?;
    Ok((job, ttl))
}

#[cfg(test)]
mod tests;
