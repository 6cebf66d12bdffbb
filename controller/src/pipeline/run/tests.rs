use super::*;
use baton_proto::pipeline::StepSpec;
use serde_json::json;

use StepState::{Cancelled, Failed, Pending, Queued, Running, Skipped, Succeeded};

/// A pipeline of noop steps: `(name, depends_on, on)`.
fn dag(steps: &[(&str, &[&str], &str)]) -> PipelineSpec {
    let steps: Vec<StepSpec> = steps
        .iter()
        .map(|(name, deps, on)| {
            serde_json::from_value(json!({"name": name, "depends_on": deps, "on": on,
                "job": {"spec": {"kind": "noop"}}}))
            .expect("step")
        })
        .collect();
    PipelineSpec {
        name: "p".into(),
        group: "g".into(),
        timeout_ms: None,
        steps,
    }
}

fn at(states: &[(&str, StepState)]) -> Vec<StepStatus> {
    states
        .iter()
        .map(|(name, state)| StepStatus {
            name: (*name).into(),
            state: *state,
            agent: (!matches!(state, Pending | Skipped)).then(|| format!("agent-{name}")),
        })
        .collect()
}

fn queue(step: usize) -> Action {
    Action::Queue { step }
}

fn skip(step: usize, reason: &str) -> Action {
    Action::Skip {
        step,
        reason: reason.into(),
    }
}

#[test]
fn a_linear_chain_runs_one_step_at_a_time() {
    let p = dag(&[
        ("a", &[], "success"),
        ("b", &["a"], "success"),
        ("c", &["b"], "success"),
    ]);
    let a = advance(&p, &[]);
    assert_eq!(a.actions, [queue(0)]);
    assert_eq!(a.run, None);
    let a = advance(&p, &at(&[("a", Running)]));
    assert_eq!(a, Advance::default());
    let a = advance(&p, &at(&[("a", Succeeded), ("b", Pending)]));
    assert_eq!(a.actions, [queue(1)]);
    let a = advance(
        &p,
        &at(&[("a", Succeeded), ("b", Succeeded), ("c", Queued)]),
    );
    assert_eq!(a, Advance::default());
    let a = advance(
        &p,
        &at(&[("a", Succeeded), ("b", Succeeded), ("c", Succeeded)]),
    );
    assert_eq!(a.actions, []);
    assert_eq!(a.run, Some(RunState::Succeeded));
}

#[test]
fn fan_out_runs_in_parallel_and_fan_in_waits_for_all() {
    let p = dag(&[
        ("a", &[], "success"),
        ("b", &["a"], "success"),
        ("c", &["a"], "success"),
        ("d", &["b", "c"], "success"),
        ("e", &[], "success"),
    ]);
    assert_eq!(advance(&p, &[]).actions, [queue(0), queue(4)]);
    let a = advance(&p, &at(&[("a", Succeeded), ("e", Running)]));
    assert_eq!(a.actions, [queue(1), queue(2)]);
    let a = advance(
        &p,
        &at(&[
            ("a", Succeeded),
            ("b", Succeeded),
            ("c", Running),
            ("e", Succeeded),
        ]),
    );
    assert_eq!(a, Advance::default());
    let a = advance(
        &p,
        &at(&[
            ("a", Succeeded),
            ("b", Succeeded),
            ("c", Succeeded),
            ("e", Succeeded),
        ]),
    );
    assert_eq!(a.actions, [queue(3)]);
    assert_eq!(a.run, None);
}

#[test]
fn a_failing_step_runs_its_failure_handler_and_skips_the_rest() {
    let p = dag(&[
        ("dump", &[], "success"),
        ("verify", &["dump"], "success"),
        ("prune", &["verify"], "success"),
        ("alert", &["dump", "verify"], "failure"),
    ]);
    let a = advance(&p, &at(&[("dump", Failed)]));
    assert_eq!(
        a.actions,
        [
            skip(1, "dependency dump failed"),
            skip(2, "dependency verify was skipped"),
            queue(3),
        ]
    );
    assert_eq!(a.run, None, "the handler still runs");
    let a = advance(
        &p,
        &at(&[
            ("dump", Failed),
            ("verify", Skipped),
            ("prune", Skipped),
            ("alert", Succeeded),
        ]),
    );
    assert_eq!(
        a.run,
        Some(RunState::Failed),
        "a handled failure is still a failure"
    );

    // All went well: the handler is skipped and the run succeeds.
    let a = advance(
        &p,
        &at(&[
            ("dump", Succeeded),
            ("verify", Succeeded),
            ("prune", Running),
        ]),
    );
    assert_eq!(a.actions, [skip(3, "no dependency failed")]);
    assert_eq!(a.run, None);
    let done = at(&[
        ("dump", Succeeded),
        ("verify", Succeeded),
        ("prune", Succeeded),
    ]);
    let a = advance(&p, &done);
    assert_eq!(a.actions, [skip(3, "no dependency failed")]);
    assert_eq!(a.run, Some(RunState::Succeeded));
}

#[test]
fn a_cancelled_step_counts_as_failed() {
    let p = dag(&[
        ("a", &[], "success"),
        ("b", &["a"], "success"),
        ("h", &["a"], "failure"),
    ]);
    let a = advance(&p, &at(&[("a", Cancelled)]));
    assert_eq!(a.actions, [skip(1, "dependency a was cancelled"), queue(2)]);
    let a = advance(&p, &at(&[("a", Cancelled), ("b", Skipped), ("h", Failed)]));
    assert_eq!(a.run, Some(RunState::Failed));
}

#[test]
fn always_steps_run_however_their_dependencies_ended() {
    let p = dag(&[
        ("a", &[], "success"),
        ("b", &["a"], "success"),
        ("cleanup", &["b"], "always"),
        ("report", &[], "always"),
    ]);
    assert_eq!(advance(&p, &[]).actions, [queue(0), queue(3)]);
    let a = advance(&p, &at(&[("a", Failed), ("report", Succeeded)]));
    assert_eq!(a.actions, [skip(1, "dependency a failed"), queue(2)]);
    let a = advance(
        &p,
        &at(&[("a", Succeeded), ("b", Failed), ("report", Succeeded)]),
    );
    assert_eq!(a.actions, [queue(2)]);
    let a = advance(
        &p,
        &at(&[
            ("a", Succeeded),
            ("b", Succeeded),
            ("cleanup", Succeeded),
            ("report", Failed),
        ]),
    );
    assert_eq!(a.run, Some(RunState::Failed));
}

#[test]
fn pin_follows_same_agent_as() {
    let mut p = dag(&[
        ("dump", &[], "success"),
        ("copy", &["dump"], "success"),
        ("x", &[], "success"),
    ]);
    p.steps[1].same_agent_as = Some("dump".into());
    let done = at(&[("dump", Succeeded)]);
    assert_eq!(pin(&p, 1, &done), Ok(Some("agent-dump".into())));
    assert_eq!(pin(&p, 2, &done), Ok(None));
    assert_eq!(pin(&p, 7, &done), Ok(None));
    let e = pin(&p, 1, &at(&[("dump", Skipped)])).expect_err("no agent");
    assert!(e.contains("dump") && e.contains("was skipped"), "{e}");
    let e = pin(&p, 1, &[]).expect_err("no agent");
    assert!(e.contains("has not run"), "{e}");
}

#[test]
fn retry_resets_what_did_not_succeed_and_what_follows_it() {
    let p = dag(&[
        ("dump", &[], "success"),
        ("verify", &["dump"], "success"),
        ("prune", &["verify"], "success"),
        ("alert", &["verify"], "failure"),
        ("stats", &["dump"], "success"),
    ]);
    let ended = at(&[
        ("dump", Succeeded),
        ("verify", Failed),
        ("prune", Skipped),
        ("alert", Succeeded),
        ("stats", Succeeded),
    ]);
    assert_eq!(advance(&p, &ended).run, Some(RunState::Failed));
    // dump and stats keep their results; alert decides again after verify.
    assert_eq!(retry_reset(&p, &ended), [1, 2, 3]);
    // After the reset, verify is queued at once (its dependency succeeded).
    let mut again = ended.clone();
    for i in [1, 2, 3] {
        again[i].state = Pending;
    }
    assert_eq!(advance(&p, &again).actions, [queue(1)]);
    // A cancelled or never-run step is run again too.
    let ended = at(&[("dump", Cancelled)]);
    assert_eq!(retry_reset(&p, &ended), [0, 1, 2, 3, 4]);
}

#[test]
fn a_step_view_gives_its_status() {
    let v: StepRunView = serde_json::from_value(json!({"name": "dump", "state": "succeeded",
        "job_id": 4, "agent": "db-1", "attempts": 1}))
    .expect("view");
    assert_eq!(
        StepStatus::from(&v),
        StepStatus {
            name: "dump".into(),
            state: Succeeded,
            agent: Some("db-1".into())
        }
    );
}
